"""``eventflow alerts ...``: metric alert rules, and the alerts firing now."""

from __future__ import annotations

import click

from eventflow.cli_common import server_url, tracking_uri_option
from eventflow.webhooks.cli import _calling, _when

_tracking_option = tracking_uri_option("The eventflow server whose alerts these are.")


def _alerts(tracking_uri):
    from eventflow.sdk.alerts import Alerts
    from eventflow.validation import InvalidInput

    url = server_url(tracking_uri, "alerts", "its alert watcher keeps the rules and fires them")
    try:
        return Alerts(url)
    except InvalidInput as error:
        raise click.UsageError(error.message) from None


@click.group()
def alerts() -> None:
    """Alert rules on runs' metrics, and the alerts they fire.

    A rule fires once when its condition starts to hold on a run's metric and resolves
    once when it stops (alert.fired / alert.resolved events); training code raises its own
    with eventflow.alert(title, text, level). Deliver them with a webhook on 'alert.*'
    (--format slack or teams for chat).

    \b
    Conditions:
      metrics.loss > 10                    any of > >= < <= = != against a number
      metrics.loss is NaN                  or: metrics.loss is not finite
      metrics.accuracy drops 5% from best  or: metrics.loss rises 20% from best

    \b
    Examples:
      eventflow alerts add 'loss is NaN' 'metrics.loss is NaN' --experiment-id 1 --level error
      eventflow webhooks add https://hooks.slack.com/services/T/B/X --event 'alert.*' --format slack
      eventflow alerts list
      eventflow alerts firing
    """


@alerts.command("add")
@click.argument("name")
@click.argument("condition")
@click.option("--experiment-id", default=None, help="Only runs of this experiment [default: every run].")
@click.option("--level", type=click.Choice(["info", "warning", "error"]), default="warning", show_default=True)
@click.option("--description", default=None, help="What the rule is for.")
@_tracking_option
def alerts_add(name, condition, experiment_id, level, description, tracking_uri) -> None:
    """Add a rule NAME that fires when CONDITION starts to hold."""
    rule = _calling(lambda: _alerts(tracking_uri).add(name, condition, experiment_id=experiment_id, level=level, description=description))
    click.echo(f"{rule['rule_id']}  {rule['name']}: {rule['condition']} ({rule['level']}, "
               f"{'experiment ' + rule['experiment_id'] if rule['experiment_id'] else 'every run'})")


@alerts.command("list")
@_tracking_option
def alerts_list(tracking_uri) -> None:
    """The rules."""
    found = _calling(lambda: _alerts(tracking_uri).rules())
    if not found:
        click.echo("no alert rules (add one with: eventflow alerts add NAME CONDITION)")
    for rule in found:
        click.echo(f"{rule['rule_id']}  {rule['name']}: {rule['condition']} ({rule['level']}, "
                   f"{'experiment ' + rule['experiment_id'] if rule['experiment_id'] else 'every run'}, since {_when(rule['created_time'])})")


@alerts.command("delete")
@click.argument("rule_id")
@_tracking_option
def alerts_delete(rule_id, tracking_uri) -> None:
    """Delete a rule (the alerts it fired stay on the log)."""
    _calling(lambda: _alerts(tracking_uri).delete(rule_id))
    click.echo(f"deleted alert rule {rule_id}")


@alerts.command("firing")
@click.option("--run-id", default=None, help="Only this run's.")
@_tracking_option
def alerts_firing(run_id, tracking_uri) -> None:
    """The alerts firing now."""
    found = _calling(lambda: _alerts(tracking_uri).firing(run_id))
    if not found:
        click.echo("no alert is firing")
    for a in found:
        click.echo(f"{_when(a['since'])}  {a['level']:7}  run {a['run_id']}  {a['rule']}: {a['condition']} "
                   f"({a['metric']} = {a['value']} at step {a['step']})")
