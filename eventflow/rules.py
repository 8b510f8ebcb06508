"""The rules that need state, each in one place.

A rule that needs state (does the run exist, was this param logged with another value,
is the name free) is decided for good by the projector, in log order, so that a replay
decides it the same way; the write that carried the event is answered with that
decision (``Runtime.write``). The API also checks the same rules against the views
before appending, to answer at once and keep a request that is sure to fail off the log.
Both call the functions here, so a rule and its message cannot drift apart.

Each function takes the state as plain values (what the caller looked up, in its own
transaction) and raises ``Refused`` with MLflow's error code and message.
"""

from __future__ import annotations

from typing import Any

from eventflow.validation import InvalidInput


class Refused(InvalidInput):
    """A command the current state refuses; ``error_code`` is MLflow's code for it."""


def run_usable(run_id: str, lifecycle_stage: str | None, *, active: bool = True) -> None:
    """The run exists (and, for writes to it, is not deleted)."""
    if lifecycle_stage is None:
        raise Refused(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
    if active and lifecycle_stage != "active":
        raise Refused(f"The run {run_id} must be in the 'active' state. Current state is {lifecycle_stage}.")


def run_id_free(run_id: str, taken: bool) -> None:
    if taken:
        raise Refused(f"Run with id={run_id} already exists.", "RESOURCE_ALREADY_EXISTS")


def param_unchanged(run_id: str, key: str, before: Any, value: Any) -> None:
    """A param never changes value once logged (MLflow's rule and message)."""
    if before is not None and before != value:
        raise Refused(
            f"Changing param values is not allowed. Param with key='{key}' was already logged "
            f"with value='{before}' for run ID='{run_id}'. Attempted logging new value '{value}'."
        )


def experiment_name_free(name: str, holder: str | None, claimant: str) -> None:
    """No two experiments share a name (a deleted one keeps its name, as in MLflow)."""
    if holder is not None and holder != claimant:
        raise Refused(f"Experiment '{name}' already exists.", "RESOURCE_ALREADY_EXISTS")


def experiment_id_free(experiment_id: str, name_there: str | None, name: str) -> None:
    """An experiment id names one experiment for ever (creating the same one twice, as two
    servers ensuring the Default experiment do, is not a conflict)."""
    if name_there is not None and name_there != name:
        raise Refused(
            f"Experiment with id={experiment_id} already exists (named {name_there!r}).", "RESOURCE_ALREADY_EXISTS"
        )


def experiment_exists(experiment_id: str, found: bool) -> None:
    if not found:
        raise Refused(f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST")


def logged_model_exists(model_id: str, found: bool) -> None:
    if not found:
        raise Refused(f"Logged model with ID '{model_id}' not found.", "RESOURCE_DOES_NOT_EXIST")


def logged_model_id_free(model_id: str, taken: bool) -> None:
    if taken:
        raise Refused(f"Logged model with ID '{model_id}' already exists.", "RESOURCE_ALREADY_EXISTS")


def registered_model_name_free(name: str, taken: bool) -> None:
    if taken:
        raise Refused(f"Registered Model (name={name}) already exists.", "RESOURCE_ALREADY_EXISTS")


def model_version_free(name: str, version: int, taken: bool) -> None:
    if taken:
        raise Refused(f"Model Version (name={name}, version={version}) already exists", "RESOURCE_ALREADY_EXISTS")


def model_version_exists(name: str, version: int, found: bool) -> None:
    if not found:
        raise Refused(f"Model Version (name={name}, version={version}) not found", "RESOURCE_DOES_NOT_EXIST")


def username_free(username: str, taken: bool) -> None:
    if taken:
        raise Refused(f"User '{username}' already exists.", "RESOURCE_ALREADY_EXISTS")


def user_exists(username: str, exists: bool) -> None:
    """A token or a permission is only ever given to a user that exists."""
    if not exists:
        raise Refused(f"User with username={username} not found", "RESOURCE_DOES_NOT_EXIST")


OPEN_RUN_STATUSES = ("RUNNING", "SCHEDULED")


def run_files_open(run_id: str, state: str | None) -> None:
    """A run's files are frozen once it has ended (``state``: its status, or "deleted"), so
    that what was logged — and perhaps registered or deployed — stays what is served."""
    if state is not None and state not in OPEN_RUN_STATUSES:
        raise Refused(
            f"Run {run_id} is {state}: its artifacts cannot be changed once it has ended, so that what was "
            f"logged (and perhaps registered or deployed) stays what is served. Log to a new run instead.",
            "RESOURCE_CONFLICT",
        )


def run_stoppable(run_id: str, lifecycle_stage: str | None, status: str | None) -> None:
    """Only a run still going can be asked to stop: the request is for its training process,
    and an ended run has none left to hear it."""
    run_usable(run_id, lifecycle_stage)
    if status not in OPEN_RUN_STATUSES:
        raise Refused(f"Run {run_id} is {status}: only a RUNNING or SCHEDULED run can be stopped.")
