"""``views rebuild`` carries the watchdog's offsets, so it must carry what it knows of the
runs it watches: else a run that went silent before the rebuild is never judged."""

from __future__ import annotations

from sqlalchemy import create_engine, insert, select

from eventflow.consumers.watchdog import create_tables, watched
from eventflow.views.kept import carry_kept
from eventflow.views.db import open_views


def test_a_rebuild_carries_the_runs_the_watchdog_watches(tmp_path):
    old = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    create_tables(old)
    row = {"run_id": "a" * 32, "last_seen": 1_000, "every_ms": 30_000, "crashed": False, "last_step": 900, "stalled_since": None}
    with old.begin() as c:
        c.execute(insert(watched).values(**row))
    new = open_views(f"sqlite:///{tmp_path / 'views.rebuild.db'}")
    carried = carry_kept(old, new)
    assert carried["watched_runs"] == 1
    with new.connect() as c:
        assert dict(c.execute(select(watched)).one()._mapping) == row
