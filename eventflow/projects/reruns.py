"""Rerun any past run from its log: same code, same command, same packages — as a new run.

    from eventflow.projects import rerun
    result = rerun("0a1b2c…", set={"lr": "0.2"}, env_manager="local")
    print(result.text)          # the reproducibility report, for people
    result.report["inputs"]     # and as data

The recipe (``recipe.py``) says what went into the run; this module fetches the source at
its commit (plus the recorded patch of a dirty tree), builds the environment from the
exact package list and Python version, and runs the entry point's command (a project
run) or the script's command line (a plain SDK run) through the project runner, as a new
run in the original's experiment tagged ``eventflow.rerun_of`` — whose tag event names
the original's ``run.created`` as its cause, so the link is on the log, not only in a tag.

The report must be an artifact of the new run, and a run's files are frozen once it
ends. So the command runs under a small watcher (``rerun_watcher.py``) which runs it,
then, while the run is still open, compares the two runs and logs
``reproducibility.json``, and exits as the command did.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eventflow import commands
from eventflow.events import family_of
from eventflow.projects import recipe as recipes
from eventflow.projects import report as reports
from eventflow.sdk.stores import Store, open_store
from eventflow.validation import InvalidInput

WATCHER = "eventflow.projects.rerun_watcher"
_MARK = "--report-against"


@dataclass
class Rerun:
    """A finished rerun: the new run's id, its status and the report."""

    run_id: str
    original_run_id: str
    status: str
    report: dict[str, Any]

    @property
    def text(self) -> str:
        return reports.render(self.report)


def parse_settings(pairs: list[str] | tuple[str, ...] | dict[str, Any] | None) -> dict[str, str]:
    """``--set k=v`` pairs (or a dict) as a dict; a pair without ``=`` or a key is refused."""
    if pairs is None:
        return {}
    if isinstance(pairs, dict):
        return {str(k): str(v) for k, v in pairs.items()}
    found: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise InvalidInput(f"--set takes KEY=VALUE, not {pair!r}")
        found[key.strip()] = value
    return found


# -- the command ---------------------------------------------------------------------


def with_settings(args: list[str], settings: dict[str, str]) -> list[str]:
    """A command line's arguments with ``--key value`` / ``--key=value`` replaced by the
    settings; a setting the line does not have is appended as ``--key value`` (MLflow's
    rule for parameters an entry point does not declare)."""
    args = list(args)
    for key, value in settings.items():
        flag = f"--{key}"
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                args[i + 1] = value
                break
            if arg.startswith(flag + "="):
                args[i] = f"{flag}={value}"
                break
        else:
            args += [flag, value]
    return args


def script_in(directory: Path, script: str) -> str:
    """Where a script that ran from ``script`` (an absolute path on the original machine)
    is in a checkout: the longest tail of its path that is a file there."""
    parts = Path(script).parts
    for start in range(1, len(parts)):
        candidate = Path(*parts[start:])
        if (directory / candidate).is_file():
            return candidate.as_posix()
    raise InvalidInput(f"the script {script!r} is not in the checked-out repository at {directory}")


def script_command(run: recipes.Recipe, directory: Path, settings: dict[str, str], python: str) -> str:
    """A plain SDK run's command line, rebuilt for the checkout: the same script and
    arguments (with the settings), under the environment's Python."""
    argv = shlex.split(run.command or "")
    return shlex.join([python, script_in(directory, run.script or argv[0]), *with_settings(argv[1:], settings)])


def project_command(run: recipes.Recipe, directory: Path, settings: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A project run's command and parameters: the recorded ones, or with settings the
    entry point's command expanded again from the MLproject with the changed parameters."""
    command = unwatched(run.command) or ""
    if not settings:
        return command, dict(run.project.parameters if run.project is not None else run.parameters)
    from eventflow.projects import spec

    point = spec.load_project(directory).entry_point(run.entry_point or "main")
    given = {**(run.project.parameters if run.project is not None else {}), **settings}
    declared, extra = point.resolve(given)
    return point.command_for(given), {**declared, **extra}


def watched(command: str, original_run_id: str) -> str:
    """``command`` under the watcher that writes the report before the run ends."""
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    return shlex.join([sys.executable, *flags, "-m", WATCHER, _MARK, original_run_id, "--", command])


def unwatched(command: str | None) -> str | None:
    """The command a rerun ran, without its watcher (so a rerun of a rerun runs it once)."""
    if not command or f" -m {WATCHER} {_MARK} " not in command:
        return command
    words = shlex.split(command)
    return words[-1] if len(words) >= 2 and words[-2] == "--" else command


# -- the link on the log -------------------------------------------------------------


def created_event_id(store: Store, run: dict[str, Any]) -> str | None:
    """The event id of a run's ``run.created``, read from the log near its start time."""
    run_id, since = run["info"]["run_id"], max(0, int(run["info"]["start_time"]) - 10 * 60 * 1000)
    topic = family_of("run.created").topic
    if hasattr(store, "log"):  # embedded or Kafka: read the log itself
        from eventflow.codec import decode

        log = store.log  # type: ignore[attr-defined]
        with log.consumer([topic]) as consumer:
            consumer.seek_to_time(since)
            ends = {tp: log.end_offsets(tp.topic)[tp.partition] for tp in consumer.assignment()}
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                for record in consumer.poll(timeout=1.0, max_records=1000):
                    if record.key == run_id.encode() and record.header("event_type") == b"run.created":
                        return decode(record.value).event_id
        return None
    if hasattr(store, "http"):  # a server: its audit view of the log
        token = None
        while True:
            params: dict[str, Any] = {"topic": topic, "type": "run.created", "from_time": since, "max_results": 1000}
            if token:
                params = {"page_token": token, "topic": topic, "type": "run.created", "max_results": 1000}
            answer = store.http.get("/api/2.0/eventflow/events", params=params)  # type: ignore[attr-defined]
            if answer.status_code != 200:
                return None
            body = answer.json()
            for item in body.get("events", []):
                event = item.get("event") or {}
                if event.get("payload", {}).get("run_id") == run_id:
                    return event["event_id"]
            token = body.get("next_page_token")
            if not token:
                return None
    return None


def link(store: Store, new_run_id: str, original: dict[str, Any]) -> None:
    """Tag the new run as a rerun of the original, caused by the original's creation."""
    event = commands.set_tags(new_run_id, {recipes.RERUN_OF_TAG: original["info"]["run_id"]})
    cause = created_event_id(store, original)
    if cause is not None:
        event = replace(event, causation_id=cause)
    store.append([event])


# -- the report ----------------------------------------------------------------------


def build_report(store: Store, original_run_id: str, new_run_id: str) -> dict[str, Any]:
    return reports.compare(recipes.facts_of(store, original_run_id), recipes.facts_of(store, new_run_id))


def log_report(store: Store, run_id: str, report: dict[str, Any]) -> None:
    """``reproducibility.json`` on the (still open) new run, its digest on the log."""
    run = recipes.get_run(store, run_id)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / reports.REPORT_ARTIFACT
        path.write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
        size, sha256 = store.upload_artifact(run["info"]["artifact_uri"], path, reports.REPORT_ARTIFACT)
    if not store.records_uploads:
        store.append([commands.log_artifact(run_id, reports.REPORT_ARTIFACT, size, sha256)])


def stored_report(store: Store, run_id: str) -> dict[str, Any] | None:
    data = recipes.read_artifact(store, recipes.get_run(store, run_id), reports.REPORT_ARTIFACT)
    return json.loads(data) if data is not None else None


# -- rerunning -----------------------------------------------------------------------


def _environment(run: recipes.Recipe, manager: str, directory: Path) -> Any:
    """The environment from the run's exact package list and Python version."""
    from eventflow.projects import environments

    pinned = tuple(line.strip() for line in (run.packages or "").splitlines() if line.strip() and not line.startswith("#"))
    spec = environments.EnvironmentSpec(manager=manager, python=run.python, dependencies=pinned, directory=directory)
    return environments.build(spec, progress=lambda line: print(f"eventflow: {line}", file=sys.stderr, flush=True))


def start(
    run_id: str,
    set: dict[str, Any] | list[str] | None = None,  # noqa: A002 (the CLI's --set)
    env_manager: str | None = None,
    tracking_uri: str | None = None,
    version: str | None = None,
) -> Any:
    """Start the rerun of ``run_id``; returns the runner's ``SubmittedRun`` (the checkout
    is removed when it ends). A run the recipe cannot rebuild is refused before anything starts.

    ``version`` (a commit, tag or branch) reruns other code with everything else as it
    was; the recorded patch, a difference against the original commit, is then left out."""
    from eventflow.projects import environments, runner, sources
    from eventflow.projects.records import ProjectRecord

    settings = parse_settings(set)
    if env_manager is not None:
        environments.check_manager(env_manager)
    uri = runner.resolve_tracking_uri(tracking_uri)
    store = open_store(uri)
    try:
        original = recipes.get_run(store, run_id)
        plan = recipes.read(store, run_id).require()
        checkout = sources.fetch(str(plan.source) + (f"#{plan.subdirectory}" if plan.subdirectory else ""), version=version or plan.commit)
        try:
            if plan.patch and checkout.commit == plan.commit:
                sources.apply_patch(checkout, plan.patch)
                checkout = replace(checkout, patch=plan.patch)  # recorded again on the rerun
            manager = env_manager or plan.env_manager or "virtualenv"
            environment = _environment(plan, manager, Path(checkout.directory))
            directory = Path(checkout.directory)
            if plan.kind == "project":
                command, parameters = project_command(plan, directory, settings)
                record = replace(plan.project, command=command, parameters=parameters, version=version or plan.commit,
                                 commit=checkout.commit, patch_path=None, patch_sha256=None)
            else:
                # ``python`` is the built environment's (first on PATH), so the recorded command
                # stays valid for a rerun of this rerun in an environment built anew; the local
                # manager's interpreter is named, as a system one may have no ``python``.
                command = script_command(plan, directory, settings, str(environment.python) if manager == "local" else "python")
                record = ProjectRecord(uri=str(plan.source), entry_point=script_in(directory, plan.script or ""), command=command,
                                       env_manager=manager, subdirectory=checkout.subdirectory, commit=checkout.commit,
                                       repo_url=checkout.repo_url)
            submitted = runner.execute(
                checkout, watched(command, run_id), environment, tracking_uri=uri, experiment_id=plan.experiment_id,
                run_name=f"rerun of {plan.run_name}", tags={recipes.RERUN_OF_TAG: run_id}, project_record=record,
                echo=sys.stderr,  # the command's output is context; stdout is the report's (--json stays parseable)
            )
        except BaseException:
            checkout.cleanup()
            raise
        try:
            link(store, submitted.run_id, original)
        except BaseException:  # SIGTERM or a failure here must not leave the rerun RUNNING
            submitted.cancel()
            raise
    finally:
        store.close()
    from eventflow.projects.launch import cleanup_after

    cleanup_after(submitted, checkout)
    return submitted


def rerun(
    run_id: str,
    set: dict[str, Any] | list[str] | None = None,  # noqa: A002 (the CLI's --set)
    env_manager: str | None = None,
    tracking_uri: str | None = None,
    version: str | None = None,
) -> Rerun:
    """Rerun ``run_id`` as a new run, wait for it, and return the reproducibility report.
    SIGTERM or Ctrl-C while waiting cancel the rerun (KILLED). See ``start`` for ``version``."""
    import signal

    from eventflow.projects import runner
    from eventflow.projects.launch import Terminated, sigterm_raises, wait_cancelling_on_signals

    with sigterm_raises():  # during the setup too: a rerun written but not waited for must not stay RUNNING
        try:
            submitted = start(run_id, set=set, env_manager=env_manager, tracking_uri=tracking_uri, version=version)
        except Terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        wait_cancelling_on_signals(submitted)
    store = open_store(runner.resolve_tracking_uri(tracking_uri))
    try:
        report = stored_report(store, submitted.run_id) or build_report(store, run_id, submitted.run_id)
    finally:
        store.close()
    return Rerun(submitted.run_id, run_id, submitted.get_status(), report)
