"""The log on Apache Kafka (kafka-python), for real deployments.

The producer is idempotent with ``acks=all``: a record is acknowledged once every in-sync
replica has it, and retries never duplicate it. Topics are created on first use with the
configured partition count and replication factor, since brokers here run with
``auto.create.topics.enable=false`` (a mistyped topic should fail, not appear). They are
created to be kept for ever: the log is the source of truth, and a cluster's default
retention (a week) would make a rebuild or an audit silently lose history.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from eventflow.log.base import (
    Consumer,
    Headers,
    Log,
    LogError,
    Message,
    Position,
    RebalanceCallback,
    Record,
    TopicPartition,
)

DEFAULT_PARTITIONS = 3

logger = logging.getLogger(__name__)

# What keeps a topic's records for ever: no age limit, no size limit, never compacted.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


def topic_configs(replication_factor: int) -> dict[str, str]:
    """The configs every topic eventflow creates has.

    With replicas, ``min.insync.replicas`` is one fewer than their number: with
    ``acks=all`` an append then survives one broker down, and is refused (never
    acknowledged on a single copy) when two are.
    """
    configs = {
        # The broker stamps records, as the embedded log does, so that seeking by time
        # means "appended at or after".
        "message.timestamp.type": "LogAppendTime",
        **KEEP_FOREVER,
    }
    if replication_factor > 1:
        configs["min.insync.replicas"] = str(replication_factor - 1)
    return configs


def expiring(configs: dict[str, str]) -> list[str]:
    """The settings among a topic's ``configs`` that delete records, as ``key=value``."""
    found = [f"{key}={configs[key]}" for key in ("retention.ms", "retention.bytes") if configs.get(key, "-1") != "-1"]
    if "compact" in configs.get("cleanup.policy", "delete"):
        found.append(f"cleanup.policy={configs['cleanup.policy']}")
    return found


def _ours(tps: Iterable[KafkaTopicPartition]) -> set[TopicPartition]:
    return {TopicPartition(tp.topic, tp.partition) for tp in tps}


def _theirs(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


class KafkaLog(Log):
    """A log on a Kafka cluster reached through ``bootstrap`` (``host:port[,host:port]``)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        replication_factor: int = 1,
        compression: str | None = "gzip",
        linger_ms: int = 0,
        timeout: float = 30.0,
        client_id: str = "eventflow",
    ):
        self.bootstrap = [server.strip() for server in bootstrap.split(",") if server.strip()]
        if not self.bootstrap:
            raise LogError("no Kafka bootstrap server given: use host:port[,host:port]")
        self.default_partitions = partitions
        self.replication_factor = replication_factor
        self.timeout = timeout
        self.client_id = client_id
        self._producer_options = {"compression_type": compression, "linger_ms": linger_ms}
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._metadata: KafkaConsumer | None = None
        self._known_topics: set[str] = set()
        # kafka-python's admin client and metadata consumer are not safe across threads
        # (calls at once fail with NodeNotReadyError, "max_in_flight"): one call at a time.
        self._lock = threading.RLock()
        self._closed = False

    # -- clients, made on first use ---------------------------------------------------

    def _connect(self, make):  # type: ignore[no-untyped-def]
        try:
            return make()
        except KafkaError as error:
            raise LogError(f"cannot reach Kafka at {','.join(self.bootstrap)}: {error}") from error

    @property
    def producer(self) -> KafkaProducer:
        with self._lock:
            self._check_open()
            if self._producer is None:
                self._producer = self._connect(
                    lambda: KafkaProducer(
                        bootstrap_servers=self.bootstrap,
                        client_id=self.client_id,
                        acks="all",
                        enable_idempotence=True,
                        max_in_flight_requests_per_connection=5,
                        request_timeout_ms=int(self.timeout * 1000),
                        **self._producer_options,
                    )
                )
            return self._producer

    @property
    def admin(self) -> KafkaAdminClient:
        with self._lock:
            self._check_open()
            if self._admin is None:
                self._admin = self._connect(
                    lambda: KafkaAdminClient(
                        bootstrap_servers=self.bootstrap,
                        client_id=self.client_id + "-admin",
                        request_timeout_ms=int(self.timeout * 1000),
                    )
                )
            return self._admin

    @property
    def metadata(self) -> KafkaConsumer:
        """A group-less consumer used only to ask for partitions and offsets."""
        with self._lock:
            self._check_open()
            if self._metadata is None:
                self._metadata = self._connect(
                    lambda: KafkaConsumer(
                        bootstrap_servers=self.bootstrap,
                        client_id=self.client_id + "-metadata",
                        enable_auto_commit=False,
                        request_timeout_ms=int(self.timeout * 1000) + 1000,
                    )
                )
            return self._metadata

    # -- topics ---------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        if topic in self._known_topics:
            return
        try:
            new = NewTopic(topic, partitions or self.default_partitions, self.replication_factor,
                           topic_configs=topic_configs(self.replication_factor))
            with self._lock:
                self.admin.create_topics([new], timeout_ms=int(self.timeout * 1000))
        except TopicAlreadyExistsError:
            pass
        except KafkaError as error:
            raise LogError(f"cannot create topic {topic!r}: {error}") from error
        self._wait_for_partitions(topic)
        self._known_topics.add(topic)

    def _wait_for_partitions(self, topic: str) -> set[int]:
        """Block until the cluster metadata knows the topic's partitions (just created)."""
        deadline = time.monotonic() + self.timeout
        while True:
            with self._lock:
                found = self.metadata.partitions_for_topic(topic)
            if found:
                return found
            if time.monotonic() > deadline:
                raise LogError(f"topic {topic!r} has no partitions after {self.timeout:.0f} s")
            time.sleep(0.05)

    def expiring_topics(self, topics: Sequence[str]) -> dict[str, list[str]]:
        """The topics among ``topics`` whose settings delete records, with those settings
        (``{"eventflow.runs": ["retention.ms=604800000"]}``): one request for all."""
        keys = dict.fromkeys(("retention.ms", "retention.bytes", "cleanup.policy"))
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic, dict(keys)) for topic in topics]
        try:
            with self._lock:
                found = self.admin.describe_configs(resources, config_filter="all")
        except KafkaError as error:
            raise LogError(f"cannot read the settings of topics {', '.join(topics)}: {error}") from error
        described = found.get("topic", {})
        out = {}
        for topic in topics:
            if not described.get(topic):
                raise LogError(f"cannot read the settings of topic {topic!r}: the broker did not describe it")
            settings = expiring({key: entry["value"] for key, entry in described[topic].items()})
            if settings:
                out[topic] = settings
        return out

    def topics(self) -> list[str]:
        try:
            with self._lock:
                names = self.admin.list_topics()
        except KafkaError as error:
            raise LogError(f"cannot list topics: {error}") from error
        return sorted(name for name in names if not name.startswith("__"))

    def partitions(self, topic: str) -> list[int]:
        with self._lock:
            found = self.metadata.partitions_for_topic(topic)
        if not found:
            raise LogError(f"topic {topic!r} does not exist")
        return sorted(found)

    def end_offsets(self, topic: str) -> dict[int, int]:
        tps = [KafkaTopicPartition(topic, p) for p in self.partitions(topic)]
        with self._lock:
            ends = self.metadata.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}

    # -- appending ------------------------------------------------------------------

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> Position:
        return self.append_batch([Message(topic, key, value, headers)])[0]

    def append_batch(self, messages: Sequence[Message]) -> list[Position]:
        for topic in {m.topic for m in messages}:
            self.create_topic(topic)
        producer = self.producer
        try:
            # No flush(): it waits for every record buffered by any thread, so concurrent
            # writers would wait on each other. With no linger the sender ships at once
            # and records that arrive meanwhile batch up behind the request in flight.
            futures = [producer.send(m.topic, value=m.value, key=m.key, headers=list(m.headers)) for m in messages]
            results = [future.get(timeout=self.timeout) for future in futures]
        except KafkaError as error:
            raise LogError(f"append to Kafka failed: {error}") from error
        return [Position(r.topic, r.partition, r.offset) for r in results]

    # -- consuming ------------------------------------------------------------------

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        from_beginning: bool = True,
        session_timeout: float = 10.0,
        patience: float = 0.0,
    ) -> "KafkaLogConsumer":
        if isinstance(topics, str):
            topics = [topics]
        for topic in topics:
            self.create_topic(topic)
        return KafkaLogConsumer(
            self,
            list(topics),
            group,
            on_assign=on_assign,
            on_revoke=on_revoke,
            from_beginning=from_beginning,
            session_timeout=session_timeout,
            patience=patience,
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._producer is not None:
                self._producer.flush(timeout=self.timeout)
                self._producer.close(timeout=self.timeout)
            for client in (self._admin, self._metadata):
                if client is not None:
                    client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("the Kafka log is closed")


def _fetch_waits(patience: float) -> dict[str, int]:
    """The fetch settings of a reader this patient: kafka-python's defaults for none."""
    if patience > 0:
        return {"fetch_min_bytes": 1 << 20, "fetch_max_wait_ms": max(1, int(patience * 1000))}
    return {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}


class _Listener(AsyncConsumerRebalanceListener):
    """Runs the user's rebalance callbacks on kafka-python's IO loop.

    kafka-python 3 forbids blocking consumer calls from a rebalance callback, yet a
    revoke callback must be able to commit before the partitions move on. So while a
    callback runs, ``commit`` only collects the offsets, and the listener awaits the
    commit itself before the rebalance continues.
    """

    def __init__(self, consumer: "KafkaLogConsumer"):
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        consumer = self.consumer
        ours = _ours(revoked) & consumer._assigned
        consumer._in_rebalance = True
        try:
            if ours and consumer._on_revoke:
                consumer._on_revoke(ours)  # still assigned: it may read positions and commit
        finally:
            consumer._in_rebalance = False
            consumer._assigned -= ours
            for tp in ours:
                consumer._positions.pop(tp, None)
        offsets, consumer._deferred_commit = consumer._deferred_commit, {}
        if offsets:
            try:
                await consumer._consumer._coordinator._commit_offsets_sync_async(offsets)
            except Exception as error:
                # The group moved on (a slow member was expelled): the next owner re-reads
                # from the last committed offset — a redelivery, never a stuck member.
                logger.warning("commit while handing over %s failed: %s", sorted(ours), error)

    async def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        consumer = self.consumer
        ours = _ours(assigned) - consumer._assigned
        consumer._assigned |= ours
        if ours and consumer._on_assign:
            consumer._in_rebalance = True
            try:
                consumer._on_assign(ours)
            finally:
                consumer._in_rebalance = False


class KafkaLogConsumer(Consumer):
    """A kafka-python consumer behind the log's consumer interface (manual commits)."""

    def __init__(
        self,
        log: KafkaLog,
        topics: list[str],
        group: str | None,
        *,
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
        from_beginning: bool,
        session_timeout: float,
        patience: float = 0.0,
    ):
        self._group = group
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: set[TopicPartition] = set()
        # Next offsets as this consumer knows them (read or sought), so position() never
        # has to ask the broker while a rebalance callback runs.
        self._positions: dict[TopicPartition, int] = {}
        self._in_rebalance = False
        self._deferred_commit: dict[KafkaTopicPartition, OffsetAndMetadata] = {}
        self._closed = False
        session_ms = int(session_timeout * 1000)
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=log.bootstrap,
                client_id=log.client_id + "-consumer",
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest" if from_beginning else "latest",
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),
                request_timeout_ms=max(int(log.timeout * 1000), session_ms + 5000),
                # A patient reader's fetch waits at the broker until a megabyte or its
                # patience is there. Without it every append answered every reader's fetch
                # at once: a server's six consumers woke on each write, and the projector
                # a writer waits for shared the machine with them (mlflow_client_bench:
                # sync log_metric on Kafka 37–54 → 75–110 calls/s, A/B).
                **_fetch_waits(patience),
            )
        except KafkaError as error:
            raise LogError(f"cannot reach Kafka at {','.join(log.bootstrap)}: {error}") from error
        if group is not None:
            # Learn the topics' partitions before joining: a member that joined first
            # was assigned nothing ("No partition metadata for topic") and waited for a
            # metadata refresh to bring a second rebalance.
            for topic in topics:
                self._consumer.partitions_for_topic(topic)
            self._consumer.subscribe(topics, listener=_Listener(self))
            # ... and tell the coordinator, whose snapshot of them is taken at metadata
            # updates only: compared with a stale one after the join, it rebalanced again.
            coordinator = self._consumer._coordinator
            coordinator._handle_metadata_update(coordinator._cluster)
        else:
            tps = [KafkaTopicPartition(topic, p) for topic in topics for p in log.partitions(topic)]
            self._consumer.assign(tps)
            if from_beginning:
                self._consumer.seek_to_beginning(*tps)
            else:
                self._consumer.seek_to_end(*tps)
            self._assigned = _ours(tps)
            if on_assign:
                on_assign(set(self._assigned))

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        self._check_open()
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as error:
            raise LogError(f"poll from Kafka failed: {error}") from error
        records: list[Record] = []
        for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
            for r in batches[tp]:
                records.append(
                    Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, tuple(r.headers or ()))
                )
            if batches[tp]:
                self._positions[TopicPartition(tp.topic, tp.partition)] = batches[tp][-1].offset + 1
        return records

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if self._group is None:
            raise LogError("commit needs a consumer group: this consumer was opened without one")
        if offsets is None:
            offsets = {tp: self.position(tp) for tp in self._assigned}
        if not offsets:
            return
        theirs = {_theirs(tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
        if self._in_rebalance:
            self._deferred_commit.update(theirs)  # the listener commits before going on
            return
        try:
            self._consumer.commit(theirs)
        except KafkaError as error:
            raise LogError(f"commit to Kafka failed: {error}") from error

    def committed(self, tp: TopicPartition) -> int | None:
        if self._group is None:
            return None
        return self._consumer.committed(_theirs(tp))

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def set_patience(self, seconds: float) -> None:
        # The fetcher reads its settings as it builds each fetch request.
        self._consumer._fetcher.config.update(_fetch_waits(seconds))

    def position(self, tp: TopicPartition) -> int:
        self._require_assigned([tp])
        known = self._positions.get(tp)
        if known is not None:
            return known
        if self._in_rebalance:
            consumed = self._consumer._subscription.all_consumed_offsets().get(_theirs(tp))
            if consumed is not None:
                return consumed.offset
            committed = self._consumer._subscription.assignment[_theirs(tp)].committed
            return committed.offset if committed else 0
        return self._consumer.position(_theirs(tp))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._require_assigned([tp])
        if offset < 0:
            raise LogError(f"cannot seek to a negative offset ({offset})")
        self._consumer.seek(_theirs(tp), offset)
        self._positions[tp] = offset

    def seek_to_beginning(self, tps: Iterable[TopicPartition] | None = None) -> None:
        selected = self._selected(tps)
        if selected:
            self._consumer.seek_to_beginning(*map(_theirs, selected))
            for tp in selected:
                self._positions.pop(tp, None)

    def seek_to_time(self, timestamp_ms: int, tps: Iterable[TopicPartition] | None = None) -> None:
        selected = self._selected(tps)
        if not selected:
            return
        found = self._consumer.offsets_for_times({_theirs(tp): timestamp_ms for tp in selected})
        for tp in selected:
            hit = found.get(_theirs(tp))
            self._positions.pop(tp, None)
            if hit is None:
                self._consumer.seek_to_end(_theirs(tp))
            else:
                self._consumer.seek(_theirs(tp), hit.offset)
                self._positions[tp] = hit.offset

    def _selected(self, tps: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        self._check_open()
        if tps is None:
            return sorted(self._assigned)
        selected = list(tps)
        self._require_assigned(selected)
        return selected

    def _require_assigned(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            if tp not in self._assigned:
                raise LogError(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")

    def close(self) -> None:
        if self._closed:
            return
        if self._group is not None and self._assigned and self._on_revoke:
            self._on_revoke(set(self._assigned))  # still open: it may commit
        self._closed = True
        self._assigned = set()
        self._consumer.close(autocommit=False)

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("this consumer is closed")
