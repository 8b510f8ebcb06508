"""``eventflow sync``: send what training processes spooled while their target was down."""

from __future__ import annotations

import os
import sys

import click

from eventflow.cli_common import checked_tracking_uri


@click.command("sync")
@click.option("--tracking-uri", callback=checked_tracking_uri, default=None,
              help="Send only what was spooled for this target (http://..., kafka://..., or a home directory). "
                   "Default: every target that has spooled events.")
@click.option("--home", type=click.Path(file_okay=False), default=None,
              help="The eventflow home whose spool to send. Default: EVENTFLOW_HOME, or ~/.eventflow.")
@click.option("--wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait while another process (a training script) is sending the same spool.")
def sync(tracking_uri: str | None, home: str | None, wait: float) -> None:
    """Send the events spooled in the eventflow home to the server or broker they were for.

    A training process that had to stop (Ctrl-C, SIGTERM, or the end of the script after
    EVENTFLOW_FLUSH_TIMEOUT seconds) while its target was unreachable writes what it had
    not sent to EVENTFLOW_HOME/spool/, and says so on stderr. The next process that logs
    to the same target sends it first; this command sends it now. Files go oldest first
    and each is removed only once the target took all its events; sending one twice is
    harmless (events keep their ids and are applied once).

    Exits with status 1, keeping the spool, if a target is still unreachable.

    \b
      eventflow sync
      eventflow sync --tracking-uri http://tracking:5000
    """
    from eventflow.sdk import spool

    if home is not None:
        os.environ["EVENTFLOW_HOME"] = home  # a kafka:// target keeps its views in the same home
    where = spool.root(home)
    found = spool.targets(where)
    if tracking_uri is not None:
        wanted = spool.normalize(tracking_uri)
        found = {uri: path for uri, path in found.items() if uri == wanted}
    if not found:
        click.echo(f"nothing to send: no spooled events {'for ' + tracking_uri + ' ' if tracking_uri else ''}in {where}")
        return
    failed = 0
    for uri, directory in found.items():
        failed += not _send(uri, directory, wait)
    if failed:
        sys.exit(1)


def _send(uri: str, directory, wait: float) -> bool:  # type: ignore[no-untyped-def]
    """Send one target's spool; True when all of it went."""
    from eventflow.codec import CodecError
    from eventflow.sdk import spool
    from eventflow.sdk.stores import HomeUnavailable, open_store
    from eventflow.validation import InvalidInput

    total = spool.count(directory)
    try:
        store = open_store(uri)
    except HomeUnavailable as error:
        click.echo(f"error: {error}", err=True)
        return False
    try:
        with click.progressbar(length=total, label=f"sending to {uri}", show_pos=True, file=sys.stderr) as bar:
            sent = spool.send(directory, store.append, progress=bar.update, lock_wait=wait)
    except spool.SpoolBusy as error:
        click.echo(f"error: {error} (a training process that logs to {uri}); run `eventflow sync` again once it is done", err=True)
        return False
    except (CodecError, InvalidInput) as error:
        left = spool.count(directory)
        click.echo(f"error: {uri} refused spooled events ({error}); {left} events stay in {directory}", err=True)
        return False
    except Exception as error:  # unreachable: the spool stays as it is
        left = spool.count(directory)
        click.echo(
            f"error: {uri} is unreachable ({type(error).__name__}: {error}); {left} events stay spooled in "
            f"{directory}: run `eventflow sync` again once it is up",
            err=True,
        )
        return False
    finally:
        store.close()
    click.echo(f"sent {sent} events to {uri}")
    return True
