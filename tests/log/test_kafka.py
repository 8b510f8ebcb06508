"""The log on a real Apache Kafka broker: the shared contract, unchanged."""

from __future__ import annotations

import pytest

from contract import LogContract


@pytest.mark.kafka
class TestKafkaLog(LogContract):
    @pytest.fixture
    def log_uri(self, kafka_bootstrap: str) -> str:
        return f"kafka://{kafka_bootstrap}"


@pytest.mark.kafka
def test_one_log_serves_admin_calls_from_many_threads_at_once(kafka_bootstrap):
    """A server's threads (the request path, the scheduler, the watchdog, the feed) share
    one log; kafka-python's admin client is not safe across threads, and calls made at
    once failed with NodeNotReadyError ("Node paused: max_in_flight") under load."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from eventflow.log import open_log

    log = open_log(f"kafka://{kafka_bootstrap}")
    prefix = f"threads-{uuid.uuid4().hex[:6]}"
    try:
        def work(i: int) -> list[str]:
            log.create_topic(f"{prefix}-{i % 4}")
            found = []
            for _ in range(20):
                found = log.topics()
                log.expiring_topics([f"{prefix}-{i % 4}"])
            return found

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(16)))
        assert all({f"{prefix}-{k}" for k in range(4)} <= set(found) for found in results[-4:])
    finally:
        log.close()
