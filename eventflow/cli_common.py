"""What every command line of eventflow shares: the ``--tracking-uri`` option, its check,
and the one-line answer when the server it names cannot be reached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from eventflow.config import InvalidTrackingUri, check_tracking_uri

F = TypeVar("F", bound=Callable[..., Any])

# The SDK's own default (eventflow.get_tracking_uri): the variable, else the embedded home.
TRACKING_URI_HELP = (
    "An eventflow server (http(s)://HOST:PORT), a Kafka broker (kafka://HOST:PORT) or a home directory "
    "(/path, ./path, ~/path, file://). [env EVENTFLOW_TRACKING_URI; default: the embedded home, EVENTFLOW_HOME or ~/.eventflow]"
)


def checked_tracking_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: a wrong ``--tracking-uri`` (or ``EVENTFLOW_TRACKING_URI``) is a usage
    error naming the accepted forms, before anything opens it."""
    if value is None:
        return None
    try:
        return check_tracking_uri(value)
    except InvalidTrackingUri as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def tracking_uri_option(purpose: str = "") -> Callable[[F], F]:
    """``--tracking-uri URI``, the same on every command: checked, from EVENTFLOW_TRACKING_URI,
    None meaning the embedded home. ``purpose`` says what this command does with it."""
    return click.option("--tracking-uri", callback=checked_tracking_uri, envvar="EVENTFLOW_TRACKING_URI", metavar="URI",
                        default=None, help=f"{purpose} {TRACKING_URI_HELP}".strip())


def server_url(tracking_uri: str | None, what: str, why: str) -> str:
    """The server a command that only a server can answer talks to, or a usage error saying
    why it needs one (the default, the embedded home, has no server to ask)."""
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return tracking_uri
    where = f"the tracking URI {tracking_uri!r}" if tracking_uri else "the default, the embedded home,"
    raise click.UsageError(
        f"{what} need an eventflow server ({why}), and {where} is not one: give --tracking-uri http://HOST:PORT "
        "or set EVENTFLOW_TRACKING_URI (e.g. http://127.0.0.1:5000 for `eventflow server`)"
    )


class EventflowGroup(click.Group):
    """The main command: a server that cannot be reached, or a home that cannot be written,
    is one line saying what to check, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            from eventflow.sdk.stores import HomeUnavailable  # here: only a failing command pays for it
            from eventflow.sdk.unreachable import ServerUnreachable

            if isinstance(error, (ServerUnreachable, HomeUnavailable)):
                raise click.ClickException(str(error)) from None
            raise
