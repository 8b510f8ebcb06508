"""What every command line of eventflow shares: the ``--tracking-uri`` check."""

from __future__ import annotations

import click

from eventflow.config import InvalidTrackingUri, check_tracking_uri


def checked_tracking_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: a wrong ``--tracking-uri`` (or ``EVENTFLOW_TRACKING_URI``) is a usage
    error naming the accepted forms, before anything opens it."""
    if value is None:
        return None
    try:
        return check_tracking_uri(value)
    except InvalidTrackingUri as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
