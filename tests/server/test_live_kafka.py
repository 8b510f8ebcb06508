"""Several servers on one Kafka log, as behind a load balancer: each pushes to its own
clients. (A module of its own: the projector's consumer group is shared on the broker,
so no other module's server may be running beside these two.)"""

from __future__ import annotations

import httpx
import pytest

from live_client import LiveClient
from serving import kafka_postgres_options, running_server
from test_live import caught_up, log_steps, new_run


@pytest.mark.kafka
def test_every_server_on_one_kafka_pushes(request, tmp_path):
    """Behind a load balancer: a write through one server reaches the pages on each."""
    options = kafka_postgres_options(request, "live")
    with running_server(tmp_path / "first", *options) as url, running_server(tmp_path / "second", *options) as second:
        caught_up(url)
        caught_up(second)
        clients = [LiveClient(url), LiveClient(second)]
        with httpx.Client(base_url=second, timeout=30) as http:
            run_id = new_run(http)
            for client in clients:
                client.subscribe("run", "runs", run_ids=[run_id])
                client.until(lambda c=client: "run" in c.snapshots)
            log_steps(http, run_id, range(20))
        for client in clients:
            client.until(lambda c=client: len(c.points["run"]) >= 20)
            assert sorted(s for (_, _, s) in client.points["run"]) == list(range(20))
            client.close()
