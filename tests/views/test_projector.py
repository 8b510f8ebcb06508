"""The projector's contract on each log × database pair, with real SQLite, PostgreSQL and Kafka."""

from __future__ import annotations

import uuid

import pytest

from projector_contract import ProjectorContract


class TestEmbeddedLogSQLiteViews(ProjectorContract):
    @pytest.fixture
    def log_uri(self, tmp_path) -> str:
        return str(tmp_path / "log")

    @pytest.fixture
    def database(self, tmp_path):
        return lambda: f"sqlite:///{tmp_path / ('views-' + uuid.uuid4().hex[:8] + '.db')}"


@pytest.mark.postgres
class TestEmbeddedLogPostgresViews(ProjectorContract):
    @pytest.fixture
    def log_uri(self, tmp_path) -> str:
        return str(tmp_path / "log")

    @pytest.fixture
    def database(self, new_postgres_database):
        return lambda: new_postgres_database("views")


@pytest.mark.kafka
@pytest.mark.postgres
class TestKafkaLogPostgresViews(ProjectorContract):
    @pytest.fixture
    def log_uri(self, kafka_bootstrap) -> str:
        return f"kafka://{kafka_bootstrap}"

    @pytest.fixture
    def database(self, new_postgres_database):
        return lambda: new_postgres_database("views")
