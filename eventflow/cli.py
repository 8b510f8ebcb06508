"""The ``eventflow`` command line."""

from __future__ import annotations

import click

from eventflow import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventflow")
def main() -> None:
    """eventflow: the machine-learning lifecycle as a log of events.

    Every parameter, metric, tag, artifact, run transition and model promotion is an
    Avro event on a log (Kafka, or an embedded log on local disk); SQL views, webhooks,
    the live dashboard and the deployer are consumers of it.
    """


@main.group()
def dev() -> None:
    """Start real services for development and tests, without Docker."""
