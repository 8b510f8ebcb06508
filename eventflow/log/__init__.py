"""The log: one interface (``base``), two implementations (``kafka``, ``embedded``)."""

from eventflow.log.base import Consumer, Log, LogError, Message, Position, Record, TopicPartition

__all__ = ["Consumer", "Log", "LogError", "Message", "Position", "Record", "TopicPartition", "open_log"]


def open_log(uri: str, **options: object) -> Log:
    """Open a log by URI: ``kafka://host:port[,host:port]`` or a directory for the embedded log."""
    if uri.startswith("kafka://"):
        import os

        try:
            from eventflow.log.kafka import KafkaLog
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] != "kafka":
                raise
            raise LogError(f"{uri} is a Kafka log, and Kafka's client is not installed: pip install 'eventflow[kafka]'") from None

        # New topics' shape, for clusters that need more than the single-broker defaults.
        options.setdefault("partitions", int(os.environ.get("EVENTFLOW_KAFKA_PARTITIONS", "3")))
        options.setdefault("replication_factor", int(os.environ.get("EVENTFLOW_KAFKA_REPLICATION", "1")))
        return KafkaLog(uri.removeprefix("kafka://"), **options)  # type: ignore[arg-type]
    from eventflow.log.embedded import EmbeddedLog

    return EmbeddedLog(uri.removeprefix("file://"), **options)  # type: ignore[arg-type]
