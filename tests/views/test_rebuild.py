"""``eventflow views rebuild``: the log rebuilds the views from offset zero, and swaps them in."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import create_engine

import eventflow
from projector_contract import dump


def test_rebuild_replays_the_log_into_fresh_views_and_swaps_them_in(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(str(home))
    eventflow.set_experiment("rebuilt")
    for r in range(3):
        with eventflow.start_run(run_name=f"r{r}"):
            eventflow.log_params({"r": r})
            for step in range(300):
                eventflow.log_metric("loss", 1 / (step + 1), step=step)
    eventflow.Client(str(home)).search_experiments()  # let the views catch up
    eventflow.set_tracking_uri(None)
    before = dump(create_engine(f"sqlite:///{home / 'views.db'}"), "projector")
    # Damage the views: a rebuild must not need them.
    engine = create_engine(f"sqlite:///{home / 'views.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM metrics")
        connection.exec_driver_sql("DELETE FROM runs")
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home)],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert "events/s" in done.stdout and "swapped the rebuilt views" in done.stdout
    after = dump(create_engine(f"sqlite:///{home / 'views.db'}"), "projector")
    assert after == before
    assert len(after["metrics"]) == 900
