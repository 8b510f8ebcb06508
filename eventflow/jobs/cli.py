"""``eventflow jobs ...``: projects that run on a schedule or when something happens."""

from __future__ import annotations

import click

from eventflow.cli_common import server_url, tracking_uri_option
from eventflow.projects.cli import _parameters
from eventflow.webhooks.cli import _calling, _when

_tracking_option = tracking_uri_option("The eventflow server whose jobs these are.")


def _jobs(tracking_uri):
    from eventflow.sdk.jobs import Jobs
    from eventflow.validation import InvalidInput

    url = server_url(tracking_uri, "jobs", "its scheduler fires them and its agents run them")
    try:
        return Jobs(url)
    except InvalidInput as error:
        raise click.UsageError(error.message) from None


def _when_line(job) -> str:
    parts = []
    if job["cron"]:
        parts.append(f"cron '{job['cron']}' {job['timezone']}")
    if job["on_events"]:
        on = f"on {', '.join(job['on_events'])}"
        for name, shown in (("experiment_id", "experiment"), ("model_name", "model"), ("alias", "alias"), ("condition", "if")):
            if job.get(name):
                on += f" {shown} {job[name]}"
        parts.append(on)
    return "; ".join(parts) or "run-now only"


def _show(job, full: bool = False) -> None:
    state = "PAUSED" if job["paused"] else "ACTIVE"
    click.echo(f"{job['job_id']}  {state:6}  {job['name']}: {job['project_uri']} -e {job['entry_point']}")
    click.echo(f"    {_when_line(job)}" + (f"; next run {_when(job['next_run'])} UTC" if job.get("next_run") else ""))
    if full:
        params = " ".join(f"-P {k}={v}" for k, v in job["parameters"].items())
        click.echo(f"    parameters: {params or '-'}")
        click.echo(f"    retries {job['retries']} (delay {job['retry_delay']:g} s), timeout {job['timeout'] or '-'} s, "
                   f"max concurrent {job['max_concurrent']} ({job['on_overlap']} an overlapping run), queue {job['queue']}"
                   + (", catch-up" if job["catch_up"] else ""))


@click.group()
def jobs() -> None:
    """Projects that run on a schedule or when something happens.

    A job is a project (a directory or git URL, an entry point, parameters) plus when it
    runs: a cron schedule in a time zone and/or events that trigger it, with the webhook
    filters. A parameter may take a field of the triggering event: {event.FIELD}
    ({event.model_uri} is models:/NAME/VERSION for a model version's event). The server's
    scheduler records job.triggered, exactly once per tick or event; agents
    (eventflow agent) run it as a project run.

    \b
    Examples:
      eventflow jobs add nightly-retrain /srv/projects/churn -e train \\
          --cron '0 3 * * *' --tz Europe/Berlin --retries 2 --retry-delay 600
      eventflow jobs add evaluate-on-staging /srv/projects/churn -e evaluate \\
          --on model_version.alias_set --model churn --alias staging -P model_uri={event.model_uri}
      eventflow jobs list
      eventflow jobs run-now JOB_ID -P epochs=1
      eventflow jobs pause JOB_ID
    """


@jobs.command("add")
@click.argument("name")
@click.argument("project_uri")
@click.option("-e", "--entry-point", default="main", show_default=True, help="A name from the MLproject, or a .py / .sh file of the project.")
@click.option("-P", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter (repeat for several); {event.FIELD} in VALUE is filled from the triggering event.")
@click.option("--cron", default=None, metavar="'M H DOM MON DOW'", help="A cron schedule, e.g. '0 3 * * *' (03:00 every day).")
@click.option("--tz", "timezone", default=None, metavar="ZONE", help="The time zone of --cron, e.g. Europe/Berlin [default: UTC].")
@click.option("--on", "on_events", multiple=True, metavar="EVENT_PATTERN",
              help="An event type that triggers the job (repeat for several): model_version.alias_set, run.failed, 'run.*'.")
@click.option("--model", "model_name", default=None, metavar="NAME", help="With --on: only events of this registered model.")
@click.option("--alias", default=None, help="With --on: only alias events of this alias (e.g. staging).")
@click.option("--condition", default=None, metavar="EXPR", help="With --on: a condition on the event, e.g. \"status = 'FAILED'\".")
@click.option("--on-experiment", "on_experiment", default=None, metavar="ID", help="With --on: only events of this experiment (its id).")
@click.option("--retries", type=int, default=None, help="Try a failed run again this many times [default: 0].")
@click.option("--retry-delay", type=float, default=None, metavar="SECONDS", help="Wait this long before a retry [default: 0].")
@click.option("--timeout", type=float, default=None, metavar="SECONDS", help="Kill a run that takes longer [default: no limit].")
@click.option("--max-concurrent", type=int, default=None, metavar="N", help="Runs of this job active at once [default: 1].")
@click.option("--on-overlap", type=click.Choice(["skip", "queue"]), default=None,
              help="A trigger while --max-concurrent runs are active: skip it, or queue it [default: skip].")
@click.option("--queue", default=None, metavar="NAME", help="The agents' queue (eventflow agent --queue NAME) [default: default].")
@click.option("--catch-up", is_flag=True, help="After the scheduler was stopped, fire every tick it missed, not only the latest.")
@click.option("--env-manager", default=None, help="local, virtualenv, uv, conda or docker [default: the project's own].")
@click.option("--experiment-name", default=None, help="The experiment its runs go into [default: the default one].")
@_tracking_option
def jobs_add(name, project_uri, entry_point, params, cron, timezone, on_events, model_name, alias, condition, on_experiment, retries, retry_delay,
             timeout, max_concurrent, on_overlap, queue, catch_up, env_manager, experiment_name, tracking_uri) -> None:
    """Add a job NAME that runs the project at PROJECT_URI (an absolute directory or a git URL)."""
    job = _calling(lambda: _jobs(tracking_uri).add(
        name, project_uri, entry_point=entry_point, parameters=_parameters(params), cron=cron, timezone=timezone,
        on_events=list(on_events), model_name=model_name, alias=alias, condition=condition, experiment_id=on_experiment, retries=retries,
        retry_delay=retry_delay, timeout=timeout, max_concurrent=max_concurrent, on_overlap=on_overlap, queue=queue,
        catch_up=catch_up, env_manager=env_manager, experiment_name=experiment_name))
    _show(job, full=True)


@jobs.command("list")
@_tracking_option
def jobs_list(tracking_uri) -> None:
    """The jobs, with their schedules, triggers and next runs."""
    found = _calling(lambda: _jobs(tracking_uri).list())
    if not found:
        click.echo("no jobs (add one with: eventflow jobs add NAME PROJECT_URI --cron '0 3 * * *')")
    for job in found:
        _show(job)


@jobs.command("show")
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many of its runs, newest first.")
@_tracking_option
def jobs_show(job_id, limit, tracking_uri) -> None:
    """A job and its latest runs."""
    api = _jobs(tracking_uri)
    job = _calling(lambda: api.get(job_id))
    _show(job, full=True)
    runs = _calling(lambda: api.runs(job_id, limit))
    click.echo(f"    runs: {'none yet' if not runs else ''}")
    for run in runs:
        cause = run["cause_event_id"] or (f"tick {_when(run['tick'])}" if run["tick"] else "")
        click.echo(f"      {_when(run['triggered_time'])}  {run['status']:9}  {run['reason']:6} {cause}  {run['trigger_id']}")


def _simple(name: str, verb: str, call):
    @jobs.command(name, help=f"{verb} a job.")
    @click.argument("job_id")
    @_tracking_option
    def command(job_id, tracking_uri) -> None:
        result = _calling(lambda: call(_jobs(tracking_uri), job_id))
        if isinstance(result, dict):
            _show(result)
        else:
            click.echo(f"deleted job {job_id}")

    return command


_simple("pause", "Pause (no tick or event triggers it until resumed)", lambda api, job_id: api.pause(job_id))
_simple("resume", "Resume (from its next tick: the paused ones stay skipped)", lambda api, job_id: api.resume(job_id))
_simple("delete", "Delete (its history stays on the log)", lambda api, job_id: api.delete(job_id))


@jobs.command("cancel")
@click.argument("job_id")
@click.argument("trigger_id")
@_tracking_option
def jobs_cancel(job_id, trigger_id, tracking_uri) -> None:
    """Cancel a run of a job (TRIGGER_ID from eventflow jobs show): a pending one never
    starts, the agent running one kills it."""
    run = _calling(lambda: _jobs(tracking_uri).cancel(job_id, trigger_id))
    click.echo(f"cancel asked for {run['trigger_id']} ({run['status']})")


@click.command("agent")
@click.option("--queue", default="default", show_default=True, help="Run the jobs of this queue (eventflow jobs add --queue).")
@click.option("--max-parallel", type=click.IntRange(1, 1000), default=1, show_default=True, help="Runs this agent runs at once.")
@click.option("--lease", type=click.FloatRange(1, 3600), default=None, metavar="SECONDS",
              help="How long a claim lasts unrenewed before other agents give it up. [env EVENTFLOW_JOB_LEASE_SECONDS; default 30]")
@click.option("--home", envvar="EVENTFLOW_HOME", type=click.Path(file_okay=False), default=None,
              help="The embedded log's home, as the server's. [env EVENTFLOW_HOME; default ~/.eventflow]")
@click.option("--kafka", envvar="EVENTFLOW_KAFKA", metavar="HOST:PORT[,HOST:PORT]", default=None,
              help="The server's Kafka cluster instead. [env EVENTFLOW_KAFKA]")
@_tracking_option
def agent(queue, max_parallel, lease, home, kafka, tracking_uri) -> None:
    """Run triggered jobs: claim each run, run it as a project run, record how it ended.

    Start several, on several machines: every run is claimed by exactly one agent (the
    first claim in log order wins). A claim is renewed while its run lasts; an agent
    that stops renewing (killed, its machine lost) has its runs retried or failed by the
    others, as each job's --retries says.

    
    Examples:
      eventflow agent --tracking-uri http://127.0.0.1:5000
      eventflow agent --queue gpu --max-parallel 2 --kafka kafka:9092 --tracking-uri http://eventflow:5000
    """
    import signal
    import threading

    from eventflow import environment_variables as env
    from eventflow.config import Home
    from eventflow.jobs.agent import Agent
    from eventflow.log import open_log

    url = server_url(tracking_uri, "agents", "the runs they start log into it")
    log = open_log(f"kafka://{kafka}" if kafka else str(Home.resolve(home).log_dir))
    worker = Agent(log, url, queue=queue, max_parallel=max_parallel, lease_seconds=lease or env.JOB_LEASE_SECONDS.get() or 30.0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"agent {worker.id}: running queue {queue!r} (Ctrl-C to stop)", err=True)
    worker.run(stop)
    log.close()
    click.echo(f"agent {worker.id}: stopped", err=True)


@jobs.command("run-now")
@click.argument("job_id")
@click.option("-P", "--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a parameter for this run.")
@_tracking_option
def jobs_run_now(job_id, params, tracking_uri) -> None:
    """Trigger a run of a job now."""
    run = _calling(lambda: _jobs(tracking_uri).run_now(job_id, _parameters(params) or None))
    click.echo(f"triggered {run['trigger_id']} of job {job_id}")
