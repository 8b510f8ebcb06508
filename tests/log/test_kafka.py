"""The log on a real Apache Kafka broker: the shared contract, unchanged."""

from __future__ import annotations

import pytest

from contract import LogContract


@pytest.mark.kafka
class TestKafkaLog(LogContract):
    @pytest.fixture
    def log_uri(self, kafka_bootstrap: str) -> str:
        return f"kafka://{kafka_bootstrap}"
