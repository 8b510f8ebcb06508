"""``eventflow.Client``: explicit reads (and the same store the fluent API uses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eventflow.config import tracking_uri_from_env
from eventflow.registry.client import RegistryMethods
from eventflow.sdk.stores import Store, open_store

if TYPE_CHECKING:
    from eventflow.sdk.alerts import Alerts
    from eventflow.sdk.jobs import Jobs
    from eventflow.sdk.webhooks import Webhooks


class Client(RegistryMethods):
    """Reads experiments, runs and metric histories from a tracking URI, and works the
    model registry (``create_registered_model``, ``register_model``, aliases, stages...).

    ``Client()`` uses ``EVENTFLOW_TRACKING_URI`` or the embedded default; every read sees
    what was logged before it (the local store catches its views up first; a server
    answers writes only once applied).
    """

    def __init__(self, tracking_uri: str | None = None):
        self.tracking_uri = tracking_uri or tracking_uri_from_env()
        self.store: Store = open_store(self.tracking_uri)

    def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        return self.store.get_experiment(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        return self.store.get_experiment_by_name(name)

    def search_experiments(self, view_type: str = "ACTIVE_ONLY", max_results: int = 1000) -> list[dict[str, Any]]:
        return self.store.search_experiments(view_type, max_results)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        return self.store.get_run(run_id)

    def search_runs(self, experiment_ids: Sequence[str], max_results: int = 1000, order_by: Sequence[str] = (),
                    filter_string: str | None = None, run_view_type: str = "ACTIVE_ONLY") -> list[dict[str, Any]]:
        return self.store.search_runs([str(e) for e in experiment_ids], max_results, order_by, filter_string, run_view_type)

    def get_metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        return self.store.metric_history(run_id, key)

    @property
    def webhooks(self) -> "Webhooks":
        """Webhook subscriptions of the server this client points at (http(s) URIs only)."""
        from eventflow.sdk.webhooks import Webhooks

        if getattr(self, "_webhooks", None) is None:
            self._webhooks = Webhooks(self.tracking_uri or "")
        return self._webhooks

    @property
    def alerts(self) -> "Alerts":
        """Metric alert rules of the server this client points at, and what fires (http(s) URIs only)."""
        from eventflow.sdk.alerts import Alerts

        if getattr(self, "_alerts", None) is None:
            self._alerts = Alerts(self.tracking_uri or "")
        return self._alerts

    @property
    def jobs(self) -> "Jobs":
        """The jobs of the server this client points at (http(s) URIs only)."""
        from eventflow.sdk.jobs import Jobs

        if getattr(self, "_jobs", None) is None:
            self._jobs = Jobs(self.tracking_uri or "")
        return self._jobs

    def close(self) -> None:
        self.store.close()
        for api in ("_webhooks", "_alerts", "_jobs"):
            if getattr(self, api, None) is not None:
                getattr(self, api).close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
