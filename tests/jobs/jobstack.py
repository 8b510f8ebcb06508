"""Helpers for the job tests: a tiny project, agent processes, waiting on a job's runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from serving import wait_for  # noqa: F401 - the job tests import it from here

MLPROJECT = """\
name: work
entry_points:
  main:
    parameters:
      seconds: {type: float, default: 0}
      marker: {type: string, default: ""}
      exit_code: {type: float, default: 0}
    command: "python work.py {seconds} {marker} {exit_code}"
  evaluate:
    parameters:
      model_uri: {type: string}
    command: "python evaluate.py {model_uri}"
"""

WORK = """\
import os, sys, time
seconds, marker, code = float(sys.argv[1]), sys.argv[2], int(float(sys.argv[3]))
with open(marker, "a") as out:  # one line per execution: the run, this process
    out.write(f"{os.environ['MLFLOW_RUN_ID']} {os.getpid()}\\n")
time.sleep(seconds)
sys.exit(code)
"""

EVALUATE = """\
import sys
import eventflow
with eventflow.start_run():  # the run the agent started (EVENTFLOW_RUN_ID)
    eventflow.log_param("model_uri", sys.argv[1])
    eventflow.log_metric("accuracy", 0.9)
"""


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(MLPROJECT)
    (root / "work.py").write_text(WORK)
    (root / "evaluate.py").write_text(EVALUATE)
    return root


def agent_env(**extra: str) -> dict[str, str]:
    # the project's `python` is this one (eventflow importable), first on PATH
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""), **extra}


def start_agent(home: Path, url: str, log: Path, *args: str, lease: float = 5.0) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "eventflow", "agent", "--home", str(home), "--tracking-uri", url, *args],
                            stdout=out, stderr=subprocess.STDOUT, env=agent_env(EVENTFLOW_JOB_LEASE_SECONDS=str(lease)))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()




def executions(marker: Path) -> list[tuple[str, int]]:
    if not marker.exists():
        return []
    return [(run_id, int(pid)) for run_id, pid in (line.split() for line in marker.read_text().splitlines() if line.strip())]
