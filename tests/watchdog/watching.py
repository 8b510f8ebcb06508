"""What the watchdog tests read of a run, and how they wait for it."""

from __future__ import annotations

import httpx
from serving import ok, wait_for  # noqa: F401 - the watchdog tests import it from here


def run_of(url: str, run_id: str) -> dict:
    return ok(url, "GET", "runs/get", run_id=run_id)["run"]


def tags_of(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def history_of(url: str, run_id: str) -> list[str]:
    """The event types of the run's audit history, in order."""
    entries = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": run_id}, timeout=60).json()["entries"]
    return [e["event_type"] for e in entries]

