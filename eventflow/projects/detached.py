"""The background launcher of ``eventflow run --detach``: start the run, say its id, end it.

Invoked as ``python -m eventflow.projects.detached FD URI ENTRY`` with the rest of the
request in ``EVENTFLOW_DETACHED_REQUEST`` (JSON); answers ``run <id>`` or ``error <why>``
as one line on file descriptor FD, then waits for the entry point and ends the run.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main(argv: list[str]) -> int:
    from eventflow.projects import launch

    # SIGTERM at any moment (while the run is set up, or before the wait begins) stops the
    # entry point and ends the run KILLED, instead of leaving it RUNNING with nobody to end it.
    with launch.sigterm_raises():
        try:
            return _launch(argv)
        except launch.Terminated:
            return 128 + signal.SIGTERM


def _launch(argv: list[str]) -> int:
    from eventflow.projects import launch

    fd, uri, entry_point = int(argv[0]), argv[1], argv[2]
    request = json.loads(os.environ.pop("EVENTFLOW_DETACHED_REQUEST", "{}"))
    answer = os.fdopen(fd, "w")
    try:
        submitted = launch.run(uri, entry_point, request.get("parameters") or {}, version=request.get("version"),
                               env_manager=request.get("env_manager"), experiment_name=request.get("experiment_name"),
                               experiment_id=request.get("experiment_id"), run_name=request.get("run_name"),
                               synchronous=False, tracking_uri=request.get("tracking_uri"), progress=lambda line: None)
    except Exception as error:
        answer.write(f"error {str(error).replace(chr(10), ' ')}\n")
        answer.close()
        return 1
    try:
        answer.write(f"run {submitted.run_id}\n")
        answer.close()
    except BaseException:
        submitted.cancel()
        raise
    try:
        launch.wait_cancelling_on_signals(submitted)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0 if submitted.get_status() == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
