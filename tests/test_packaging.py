"""What ships: the wheel carries the schemas and consumers, the CLI teaches, compose runs real commands."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from eventflow import __version__
from eventflow.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    [built] = out.glob("eventflow-*.whl")
    return built


def test_the_wheel_carries_every_schema_and_consumer(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (ROOT / "schemas").glob("*.avsc"):
        assert f"eventflow/schemas/{schema.name}" in names
    for module in (ROOT / "consumers").glob("*.py"):
        assert f"eventflow/consumers/{module.name}" in names
    for page in (ROOT / "eventflow" / "server" / "dashboard").iterdir():  # the dashboard's static files
        assert f"eventflow/server/dashboard/{page.name}" in names
    for package in (p for p in (ROOT / "eventflow").rglob("__init__.py")):
        assert package.relative_to(ROOT).as_posix() in names, f"{package} is not listed in pyproject's packages"


def test_the_installed_wheel_loads_schemas_from_itself(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)], check=True, timeout=300)
    probe = (
        "import eventflow.codec as c, eventflow.schemas as s; "
        "r = c.registry(); print(len(r.event_types()), s.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    count, location = done.stdout.split()
    assert int(count) == len({p.name.rsplit(".v", 1)[0] for p in (ROOT / "schemas").glob("*.avsc")})
    assert location.startswith(str(target)), "schemas come from the installed package, not the source tree"


def test_every_command_has_help_and_the_version_is_reported():
    runner = CliRunner()
    assert __version__ in runner.invoke(main, ["--version"]).output

    def walk(group, path):
        for name, command in group.commands.items():
            result = runner.invoke(main, [*path, name, "--help"])
            assert result.exit_code == 0, result.output
            assert "Usage:" in result.output and len(result.output.splitlines()) > 3
            if hasattr(command, "commands"):
                walk(command, [*path, name])

    walk(main, [])


def test_compose_runs_only_commands_the_cli_has():
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    commands = []
    for name, service in compose["services"].items():
        command = service.get("command")
        if command and command[0] == "eventflow":
            commands.append((name, command[1:]))
        assert "healthcheck" in service or command, f"{name} has neither a health check nor a command"
    assert {name for name, _ in commands} >= {"server", "projector"}
    for name, args in commands:
        # Parse (not run) the command line: unknown commands or options fail here.
        command, rest, context = main, list(args), None
        while isinstance(command, click.Group):
            sub_name, *rest = rest
            context = click.Context(command, info_name=sub_name, parent=context)
            command = command.get_command(context, sub_name)
            assert command is not None, f"service {name}: no command {sub_name!r}"
        command.make_context(args[0], rest, parent=context)
    assert (ROOT / "compose" / "Dockerfile").exists()


def test_compose_runs_every_consumer_and_an_agent():
    """The compose server runs with --no-consumers: a consumer without its own service
    (alerts, the watchdog, the scheduler) would silently never run there."""
    from eventflow.cli import CONSUMERS

    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    commands = [service.get("command") or [] for service in compose["services"].values()]
    consumed = {command[2] for command in commands if command[:2] == ["eventflow", "consume"]}
    assert consumed == set(CONSUMERS), f"consumers without a compose service: {sorted(set(CONSUMERS) - consumed)}"
    assert any(command[:2] == ["eventflow", "agent"] for command in commands), "no agent runs the jobs"
