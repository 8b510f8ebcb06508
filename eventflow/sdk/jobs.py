"""``Client(...).jobs``: the jobs of an ``eventflow server`` — a project and when it runs.

    jobs = eventflow.Client("http://localhost:5000").jobs
    jobs.add("nightly", "/srv/projects/train", cron="0 3 * * *", timezone="Europe/Berlin")
    jobs.add("evaluate", "/srv/projects/evaluate", on_events=["model_version.alias_set"], alias="staging",
             parameters={"model_uri": "{event.model_uri}"})
    jobs.run_now(job_id)
"""

from __future__ import annotations

from typing import Any

from eventflow.sdk.server_api import ServerApi


class Jobs(ServerApi):
    path = "/api/2.0/eventflow/jobs"
    what = "jobs"

    def add(self, name: str, project_uri: str, **definition: Any) -> dict[str, Any]:
        """A job (fields as ``eventflow jobs add`` takes them: entry_point, parameters, cron,
        timezone, on_events, model_name, alias, condition, retries, retry_delay, timeout,
        max_concurrent, on_overlap, queue, catch_up, env_manager, experiment_name); its
        triggers judge the events appended after it returns."""
        body = {"name": name, "project_uri": project_uri, **{k: v for k, v in definition.items() if v is not None}}
        return self._call("POST", json=body)["job"]

    def list(self) -> list[dict[str, Any]]:
        return self._call("GET")["jobs"]

    def get(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/{job_id}")["job"]

    def update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/{job_id}", json=changes)["job"]

    def pause(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/{job_id}/pause", json={})["job"]

    def resume(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/{job_id}/resume", json={})["job"]

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"/{job_id}")

    def run_now(self, job_id: str, parameters: dict[str, str] | None = None) -> dict[str, Any]:
        """Trigger a run now (``parameters`` override the job's for this run)."""
        return self._call("POST", f"/{job_id}/run", json={"parameters": parameters} if parameters else {})["run"]

    def cancel(self, job_id: str, trigger_id: str) -> dict[str, Any]:
        """Cancel a run: a pending one never starts, its agent kills a running one."""
        return self._call("POST", f"/{job_id}/runs/{trigger_id}/cancel", json={})["run"]

    def runs(self, job_id: str, max_results: int = 100) -> list[dict[str, Any]]:
        """The job's runs, newest first."""
        return self._call("GET", f"/{job_id}/runs", params={"max_results": max_results})["runs"]
