"""The rerun's watcher: ``python -m eventflow.projects.rerun_watcher --report-against RUN_ID -- COMMAND``.

The project runner runs this in place of the rerun's command. It runs COMMAND (one shell
word), and when it exits — while the new run (``EVENTFLOW_RUN_ID``) is still open, as
its files freeze when it ends — compares the two runs and logs ``reproducibility.json``.
It prints nothing of its own on stdout (the run's output stays the command's) and exits
as COMMAND did, by the same signal if one killed it; cancelled, it writes no report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from eventflow.projects.reruns import _MARK, WATCHER, build_report, log_report
from eventflow.sdk.stores import open_store




def main(argv: list[str] | None = None) -> int:
    """Run COMMAND, log the report on the run in EVENTFLOW_RUN_ID, exit as COMMAND did."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != _MARK or "--" not in args:
        print(f"usage: python -m {WATCHER} {_MARK} RUN_ID -- COMMAND", file=sys.stderr)
        return 2
    original, command = args[1], " ".join(args[args.index("--") + 1 :])  # one word, as watched() writes it
    child = subprocess.Popen(["bash", "-c", command] if _has_bash() else command, shell=not _has_bash())

    stopped: list[int] = []

    def note(signum: int, frame: object) -> None:
        # The runner signals the whole process group, the command included: no need to
        # forward; only remember, so that a cancelled rerun ends at once, with no report.
        stopped.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)
    code = child.wait()
    new_run_id = os.environ.get("EVENTFLOW_RUN_ID")
    if new_run_id and not stopped:
        try:
            store = open_store(os.environ.get("EVENTFLOW_TRACKING_URI"))
            try:
                log_report(store, new_run_id, build_report(store, original, new_run_id))
            finally:
                store.close()
        except Exception as error:  # the report is a bonus on top of the run's own outcome
            print(f"eventflow: the reproducibility report could not be logged: {error}", file=sys.stderr, flush=True)
    if code < 0:  # died by a signal: die by it too, as the runner expects
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _has_bash() -> bool:
    return shutil.which("bash") is not None


if __name__ == "__main__":
    sys.exit(main())
