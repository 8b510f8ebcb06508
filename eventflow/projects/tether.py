"""A project run's processes tied to the process that started them.

If the starter dies — however: kill -9, its machine going — the run's whole process group
goes with it, instead of training on unwatched (a job agent's retry would otherwise run
beside it, and the run would stay RUNNING with nobody to end it).

Run as ``python -I -S tether.py FD ARGV...`` in a new session: FD is the read end of a pipe
whose write end only the starter holds. The kernel closes that end when the starter
exits, so the read returns; then the tether ends its process group (it leads it). Until
then it waits for ARGV and exits as ARGV did, by the same signal or with the same code.
Only the standard library, and isolated (``-I``: nothing of the environment or its own
folder on its path): it starts before every run and must start fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

# After SIGTERM, how long the run has to end before SIGKILL.
GRACE_SECONDS = 10.0


def _end_group_when_closed(fd: int, child: subprocess.Popen[bytes], starter_gone: threading.Event) -> None:
    while True:
        try:
            if not os.read(fd, 512):
                break  # the starter is gone
        except InterruptedError:
            continue
        except OSError:
            break
    starter_gone.set()
    os.killpg(0, signal.SIGTERM)  # the tether itself shrugs it off (below)
    try:
        child.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)  # what is left of the group, the tether with it


def main(argv: list[str]) -> int:
    fd, command = int(argv[0]), argv[1:]
    child = subprocess.Popen(command, close_fds=True)
    # A signal to the group (a cancel, Ctrl-C) is for the run: the tether waits for it to
    # end and reports how. Handlers, not SIG_IGN, so the child does not inherit them.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)
    starter_gone = threading.Event()
    ending = threading.Thread(target=_end_group_when_closed, args=(fd, child, starter_gone), daemon=True)
    ending.start()
    code = child.wait()
    if starter_gone.is_set():
        ending.join()  # its children may outlive it: the group's SIGKILL ends them (and us)
    if code < 0:  # ended by a signal: end by it too, so the starter sees the same
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # the two no handler can hold
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def tethered(argv: list[str]) -> tuple[list[str], int, int]:
    """``argv`` behind a tether: the command to start (in a new session, passing the
    read end), the read end (close it once started) and the write end (keep it open
    as long as the run is yours; closing it ends the run)."""
    read, write = os.pipe()
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(read), *argv], read, write


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
