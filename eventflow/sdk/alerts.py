"""``Client(...).alerts``: metric alert rules of an ``eventflow server``, and what fires.

    alerts = eventflow.Client("http://localhost:5000").alerts
    alerts.add("loss is NaN", "metrics.loss is NaN", experiment_id="1", level="error")
    alerts.firing()  # the alerts firing now
"""

from __future__ import annotations

from typing import Any

from eventflow.sdk.server_api import ServerApi


class Alerts(ServerApi):
    path = "/api/2.0/eventflow/alerts"
    what = "alert rules"

    def add(self, name: str, condition: str, *, experiment_id: str | None = None, level: str | None = None,
            description: str | None = None) -> dict[str, Any]:
        """A rule (``metrics.loss > 10``, ``metrics.loss is NaN``, ``metrics.accuracy drops 5% from best``);
        it judges the points logged after it returns."""
        body = {"name": name, "condition": condition, "experiment_id": experiment_id, "level": level, "description": description}
        return self._call("POST", "/rules", json={k: v for k, v in body.items() if v is not None})["rule"]

    def rules(self) -> list[dict[str, Any]]:
        return self._call("GET", "/rules")["rules"]

    def delete(self, rule_id: str) -> None:
        self._call("DELETE", f"/rules/{rule_id}")

    def firing(self, run_id: str | None = None, *, everything: bool = False) -> list[dict[str, Any]]:
        """The alerts firing now (``everything``: every series a rule has judged)."""
        params = {**({"run_id": run_id} if run_id else {}), **({"all": "true"} if everything else {})}
        return self._call("GET", params=params)["alerts"]
