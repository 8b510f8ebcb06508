"""The CLI reads a home directory directly (no server), and events written to the log
without the server are shown as the client's claim."""

from __future__ import annotations

import json
import subprocess
import sys

from eventflow.config import Home
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.registry import commands as rc
from eventflow.views.db import open_views


def test_events_written_without_the_server_are_a_clients_claim(tmp_path):
    home = Home.resolve(str(tmp_path / "home"))
    log = open_log(str(home.log_dir))
    EventLog(log).append_many([rc.create_registered_model("m"), rc.create_model_version("m", "1", "models:/x"),
                               rc.set_alias("m", "production", "1"), rc.rename_registered_model("m", "n")])
    engine = open_views(home.views_url)
    ConsumerLoop(log, Projector(engine), join_group=False).catch_up(timeout=120)
    log.close()
    engine.dispose()
    done = subprocess.run([sys.executable, "-m", "eventflow", "audit", "models:/n", "--json", "--tracking-uri", str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["what"] for e in entries] == ["model 'm' created", "version 1 created (source models:/x)",
                                            "alias production: → version 1", "model renamed 'm' → 'n'"]
    assert all(e["stamped_by"] == "client" and not e["authenticated"] for e in entries)
    assert entries[0]["trust"] == "client's claim (written to the log without the server)"
