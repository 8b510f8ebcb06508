"""The edges of every command line and of the SDK: one ``--tracking-uri`` with one default,
and one clear line when the server it names cannot be reached (issue 16).

Every test runs ``eventflow`` (or Python with the SDK) as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.serving import free_port

HINT = "is eventflow server running? Check --tracking-uri / EVENTFLOW_TRACKING_URI"
DEFAULT_TEXT = "default: the embedded home, EVENTFLOW_HOME or ~/.eventflow"

# Every command that reads or writes through a tracking URI, with {uri} where it goes.
REMOTE = [
    ["registry", "--tracking-uri", "{uri}", "models", "list"],
    ["registry", "alias-history", "m", "a", "--tracking-uri", "{uri}"],
    ["webhooks", "list", "--tracking-uri", "{uri}"],
    ["deployments", "list", "--tracking-uri", "{uri}"],
    ["deployments", "history", "--tracking-uri", "{uri}"],
    ["users", "list", "--tracking-uri", "{uri}"],
    ["audit", "models:/m", "--tracking-uri", "{uri}"],
    ["lineage", "models:/m/1", "--tracking-uri", "{uri}"],
    ["models", "serve", "-m", "models:/m/1", "--tracking-uri", "{uri}"],
]
# ...and those that run something first (a project): their option is checked, not called.
ALL = [*REMOTE, ["run", ".", "--tracking-uri", "{uri}"], ["rerun", "0123", "--tracking-uri", "{uri}"],
       ["models", "build-docker", "-m", "models:/m/1", "--tracking-uri", "{uri}"]]


def _with(command: list[str], uri: str) -> list[str]:
    return [uri if part == "{uri}" else part for part in command]


def _help(command: list[str]) -> list[str]:
    """The --help of the group or command that takes --tracking-uri."""
    before = command[: command.index("--tracking-uri")]
    words = [w for w in before if not w.startswith(("models:/", "-")) and w not in (".", "m", "a", "0123")]
    return [*words[:2], "--help"] if words[0] in ("registry", "webhooks", "deployments", "users", "models") else [words[0], "--help"]


def _id(command: list[str]) -> str:
    return " ".join(w for w in command if w not in ("--tracking-uri", "{uri}"))


def eventflow(*args: str, home: Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("EVENTFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")}
    environment.update(EVENTFLOW_HOME=str(home), **(env or {}))
    return subprocess.run([sys.executable, "-m", "eventflow", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", REMOTE, ids=_id)
def test_an_unreachable_server_is_one_line_naming_it(command, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    done = eventflow(*_with(command, url), home=tmp_path / "home", cwd=tmp_path, env={"EVENTFLOW_TRACKING_USERNAME": "u", "EVENTFLOW_TRACKING_PASSWORD": "p"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert url in lines[0] and HINT in lines[0]


def test_the_sdk_names_an_unreachable_server(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    code = ("import eventflow\n"
            "try:\n    eventflow.start_run()\n"
            "except Exception as e:\n    print(type(e).__name__, '|', e)\n")
    environment = {**os.environ, "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("ServerUnreachable |"), done.stdout + done.stderr
    assert url in done.stdout and HINT in done.stdout


@pytest.mark.parametrize("command", ALL, ids=_id)
def test_every_command_documents_the_same_tracking_uri_default(command, tmp_path):
    done = eventflow(*_help(command), home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--tracking-uri URI" in text and DEFAULT_TEXT in text and "EVENTFLOW_TRACKING_URI" in text, text


@pytest.mark.parametrize("command", ALL, ids=_id)
def test_every_command_refuses_a_wrong_uri_the_same_way(command, tmp_path):
    done = eventflow(*_with(command, "htp://127.0.0.1:5000"), home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown scheme 'htp'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "htp:").exists()


def test_deployments_read_the_embedded_home_by_default(tmp_path):
    """Like the registry, with no --tracking-uri: the embedded home the SDK logs into."""
    done = eventflow("deployments", "list", home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no deployments yet" in done.stdout
    done = eventflow("deployments", "history", home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 0 and "no deployment events" in done.stdout, done.stderr


@pytest.mark.parametrize("command", [["webhooks", "list"], ["users", "list"]], ids=" ".join)
def test_server_only_commands_say_why_they_need_a_server(command, tmp_path):
    done = eventflow(*command, home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "need an eventflow server" in done.stderr and "--tracking-uri http://HOST:PORT" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
