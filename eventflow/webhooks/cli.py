"""``eventflow webhooks ...``: subscribe endpoints to events, see and redo deliveries."""

from __future__ import annotations

import click

from eventflow.cli_common import server_url, tracking_uri_option

_tracking_option = tracking_uri_option("The eventflow server whose webhooks these are.")


def _hooks(tracking_uri):
    from eventflow.sdk.webhooks import Webhooks
    from eventflow.validation import InvalidInput

    url = server_url(tracking_uri, "webhooks", "its dispatcher sends them and keeps their secrets")
    try:
        return Webhooks(url)
    except InvalidInput as error:
        raise click.UsageError(error.message) from None


def _calling(call):
    """Run an SDK call, turning its errors into messages that say what to do (an
    unreachable server: ``ServerUnreachable``, printed by the main command)."""
    from eventflow.validation import InvalidInput

    try:
        return call()
    except InvalidInput as error:
        raise click.ClickException(f"{error.message} [{error.error_code}]") from None


def _when(ms) -> str:
    import datetime

    if ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _show_webhook(hook) -> None:
    filters = []
    if hook.get("experiment_id"):
        filters.append(f"experiment {hook['experiment_id']}")
    if hook.get("model_name"):
        filters.append(f"model {hook['model_name']}")
    if hook.get("condition"):
        filters.append(f"if {hook['condition']}")
    status = hook["status"] + (f" ({hook['disabled_reason']})" if hook.get("disabled_reason") else "")
    click.echo(f"{hook['subscription_id']}  {status:8}  {hook['url']}")
    click.echo(f"    events: {', '.join(hook['events'])}" + (f"; {'; '.join(filters)}" if filters else ""))


@click.group()
def webhooks() -> None:
    """Subscribe HTTP endpoints to lifecycle events: signed, retried, logged deliveries.

    \b
    Examples:
      eventflow webhooks add https://ci.example.com/hook --event run.failed
      eventflow webhooks add https://ops.example.com/hook --event 'model_version.*' --model churn
      eventflow webhooks add https://x.example.com/hook --event run.metrics_logged \\
          --experiment vision --condition 'metrics.accuracy > 0.9'
      eventflow webhooks list
      eventflow webhooks deliveries SUBSCRIPTION_ID --status FAILED
      eventflow webhooks redeliver SUBSCRIPTION_ID DELIVERY_ID
    """


@webhooks.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, metavar="TYPE",
              help="An event type or pattern to deliver (repeat it): run.failed, 'run.*', 'model_version.*', '*'. [default: *]")
@click.option("--experiment", metavar="NAME", default=None, help="Only events of this experiment (by name).")
@click.option("--model", metavar="NAME", default=None, help="Only events of this registered model.")
@click.option("--condition", metavar="EXPR", default=None,
              help="Only events whose payload satisfies it, e.g. 'metrics.accuracy > 0.9' or \"status = 'FAILED'\".")
@click.option("--secret", metavar="whsec_...", default=None, help="Use this signing secret instead of a new one.")
@click.option("--format", "body_format", type=click.Choice(["eventflow", "slack", "teams"]), default=None,
              help="The body: eventflow's JSON [default], or a Slack / Microsoft Teams incoming-webhook message.")
@_tracking_option
def webhooks_add(url, events, experiment, model, condition, secret, body_format, tracking_uri) -> None:
    """Subscribe URL to events; prints the subscription and its signing secret.

    The secret (whsec_...) is shown once: receivers verify the webhook-signature header
    with it (Standard Webhooks). Private and loopback targets are refused unless the
    server's operator allows their network (EVENTFLOW_WEBHOOK_ALLOW_NETWORKS).

    \b
    Example:
      eventflow webhooks add https://ci.example.com/hook --event run.failed --event 'model_version.*'
      eventflow webhooks add https://hooks.slack.com/services/T/B/X --event 'alert.*' --format slack
    """
    hooks = _hooks(tracking_uri)
    created = _calling(lambda: hooks.create(url, list(events) or ["*"], experiment_name=experiment, model_name=model,
                                            condition=condition, secret=secret, format=body_format))
    _show_webhook(created["webhook"])
    click.echo(f"    secret: {created['secret']}  (keep it: it is not shown again; rotate it with rotate-secret)")


@webhooks.command("list")
@_tracking_option
def webhooks_list(tracking_uri) -> None:
    """List the subscriptions, with their filters and status."""
    found = _calling(lambda: _hooks(tracking_uri).list())
    if not found:
        click.echo("no webhook subscriptions (add one with: eventflow webhooks add URL --event TYPE)")
    for hook in found:
        _show_webhook(hook)


@webhooks.command("deliveries")
@click.argument("subscription_id")
@click.option("--status", type=click.Choice(["PENDING", "SUCCEEDED", "FAILED"]), default=None, help="Only deliveries in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many, newest first.")
@click.option("--attempts/--no-attempts", default=True, show_default=True, help="Show every attempt under its delivery.")
@_tracking_option
def webhooks_deliveries(subscription_id, status, limit, attempts, tracking_uri) -> None:
    """Show a subscription's deliveries, newest first, and each attempt (time, status
    code, latency, error, start of the answer)."""
    found = _calling(lambda: _hooks(tracking_uri).deliveries(subscription_id, status, limit))
    if not found:
        click.echo("no deliveries")
    for d in found:
        code = d["last_status_code"] if d["last_status_code"] is not None else "-"
        click.echo(f"{d['delivery_id']:>8}  {d['status']:9}  {d['event_type']:28} {d['entity'][:36]:36}  tries {d['attempt_count']}  last {code}")
        if d["status"] == "PENDING" and d["next_attempt_time"]:
            click.echo(f"{'':10}next attempt {_when(d['next_attempt_time'])} UTC")
        for a in d["attempts"] if attempts else ():
            what = a["status_code"] if a["status_code"] is not None else "no answer"
            detail = a["error"] or (a["response"] or "").replace("\n", " ")[:80]
            click.echo(f"{'':10}{_when(a['time'])}  {what}  {a['latency_ms']} ms  {detail}")


@webhooks.command("redeliver")
@click.argument("subscription_id")
@click.argument("delivery_id", type=int)
@_tracking_option
def webhooks_redeliver(subscription_id, delivery_id, tracking_uri) -> None:
    """Send a finished (failed or succeeded) delivery again: same body, same webhook-id."""
    d = _calling(lambda: _hooks(tracking_uri).redeliver(subscription_id, delivery_id))
    click.echo(f"delivery {d['delivery_id']} is pending again; follow it with: eventflow webhooks deliveries {subscription_id}")


@webhooks.command("test")
@click.argument("subscription_id")
@_tracking_option
def webhooks_test(subscription_id, tracking_uri) -> None:
    """Send a webhook.test message now and show what the endpoint answered."""
    d = _calling(lambda: _hooks(tracking_uri).test(subscription_id))
    a = d["attempts"][-1]
    answer = a["status_code"] if a["status_code"] is not None else "no answer"
    click.echo(f"{d['status']}: {answer} in {a['latency_ms']} ms" + (f" ({a['error']})" if a["error"] else ""))
    if d["status"] != "SUCCEEDED":
        raise SystemExit(1)


@webhooks.command("rotate-secret")
@click.argument("subscription_id")
@click.option("--expire-in", type=click.IntRange(0, 30 * 86400), default=None, metavar="SECONDS",
              help="How long the old secret keeps signing beside the new one. [default: the server's grace, 1 day]")
@_tracking_option
def webhooks_rotate(subscription_id, expire_in, tracking_uri) -> None:
    """Make a new signing secret; both are sent until the old one expires."""
    rotated = _calling(lambda: _hooks(tracking_uri).rotate_secret(subscription_id, expire_in))
    click.echo(f"secret: {rotated['secret']}  (the previous one signs until {_when(rotated['previous_expires_time'])} UTC)")


@webhooks.command("disable")
@click.argument("subscription_id")
@_tracking_option
def webhooks_disable(subscription_id, tracking_uri) -> None:
    """Stop delivering: events meanwhile are not recorded for it; deliveries already
    pending wait until it is enabled again."""
    _show_webhook(_calling(lambda: _hooks(tracking_uri).update(subscription_id, status="DISABLED")))


@webhooks.command("enable")
@click.argument("subscription_id")
@_tracking_option
def webhooks_enable(subscription_id, tracking_uri) -> None:
    """Deliver again (after a 410, too many failures, or disable)."""
    _show_webhook(_calling(lambda: _hooks(tracking_uri).update(subscription_id, status="ACTIVE")))


@webhooks.command("delete")
@click.argument("subscription_id")
@_tracking_option
def webhooks_delete(subscription_id, tracking_uri) -> None:
    """Delete a subscription: nothing more is recorded or sent for it."""
    _calling(lambda: _hooks(tracking_uri).delete(subscription_id))
    click.echo(f"deleted {subscription_id}")
