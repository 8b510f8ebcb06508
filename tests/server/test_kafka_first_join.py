"""A server starting on a fresh Kafka broker: its consumer groups are assigned their
partitions at the first join, not after a metadata refresh brings a second rebalance."""

from __future__ import annotations

import logging

import pytest

from eventflow import commands
from eventflow.log import open_log
from eventflow.server.runtime import Runtime


@pytest.mark.kafka
def test_a_server_on_a_fresh_broker_assigns_every_group_its_partitions_at_the_first_join(tmp_path, caplog):
    """Its five group consumers used to join before their own metadata knew their topics:
    the leader assigned nothing ("No partition metadata for topic"), and only a metadata
    refresh brought the partitions. In CI the projector once stayed without them for
    longer than a write waits: the views "did not apply it within 60 s"."""
    from eventflow.dev.kafka import LocalKafka

    # A broker of its own: fresh, as a new deployment's, with no topic and no group yet.
    kafka = LocalKafka(data_dir=tmp_path / "kafka", stop_timeout=20, quiet=True).start()
    try:
        caplog.set_level(logging.WARNING, logger="kafka.coordinator.assignors")
        runtime = Runtime(open_log(f"kafka://{kafka.bootstrap}"), f"sqlite:///{tmp_path / 'views.db'}",
                          tmp_path / "artifacts", write_timeout=60)
        runtime.start()
        try:
            run_id = commands.new_run_id()
            runtime.write([commands.create_run(run_id, "0", run_name="first", user_id="t", artifact_uri="file:///tmp")])
        finally:
            runtime.stop()
        unassigned = [r.getMessage() for r in caplog.records if "No partition metadata" in r.getMessage()]
        assert unassigned == []
    finally:
        kafka.stop()
