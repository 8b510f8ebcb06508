"""The check every process makes at start: the lifecycle topics keep their records for ever.

A rebuild, an audit, the deployer's fold from offset zero and a replay all read the whole
log; a topic that expires (a cluster's default ``log.retention.hours=168``, a topic made
by hand, ``cleanup.policy=compact``) makes them silently wrong a week later. So the server
and every consumer refuse to run on one, unless told otherwise, and say how to fix it.
The embedded log never deletes a record: it has nothing to check.
"""

from __future__ import annotations

import logging
import sys

from eventflow.events import DEAD_LETTER_TOPIC, LIFECYCLE_TOPICS
from eventflow.log.base import Log, LogError

logger = logging.getLogger(__name__)

# Every topic whose history matters: the dead letters too (an audit looks for them).
KEPT_TOPICS: tuple[str, ...] = (*LIFECYCLE_TOPICS, DEAD_LETTER_TOPIC)

OVERRIDE = "--allow-finite-retention"


class FiniteRetention(LogError):
    """A lifecycle topic deletes records, and the operator did not allow it."""


def _fix(bootstrap: str, topic: str, settings: list[str]) -> str:
    changes = "retention.ms=-1,retention.bytes=-1"
    if any(s.startswith("cleanup.policy=") for s in settings):
        changes += ",cleanup.policy=delete"
    return (f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
            f"--entity-name {topic} --add-config {changes}")


def describe(bootstrap: str, expiring: dict[str, list[str]]) -> str:
    """What is wrong with each topic, and the command that fixes it."""
    lines = [f"  {topic}: {', '.join(settings)}\n    fix: {_fix(bootstrap, topic, settings)}" for topic, settings in expiring.items()]
    return "\n".join(lines)


def check_retention(log: Log, *, allow_finite: bool = False) -> None:
    """Make sure the lifecycle topics exist and keep their records for ever.

    Missing topics are created (eventflow creates them to be kept); then one request
    reads the settings of all of them. A topic that expires raises FiniteRetention,
    naming it and the fix; with ``allow_finite`` it is a loud warning instead.
    """
    kafka = sys.modules.get("eventflow.log.kafka")  # not imported: no KafkaLog exists, nor Kafka's client maybe
    if kafka is None or not isinstance(log, kafka.KafkaLog):
        return
    for topic in KEPT_TOPICS:
        log.create_topic(topic)
    expiring = log.expiring_topics(KEPT_TOPICS)
    if not expiring:
        return
    bootstrap = ",".join(log.bootstrap)
    problems = describe(bootstrap, expiring)
    if not allow_finite:
        raise FiniteRetention(
            "refusing to run: these Kafka topics delete records, and eventflow's log must keep every event "
            "(a rebuild, an audit or a replay from offset zero would silently lose history):\n"
            f"{problems}\n"
            f"Run the commands above (kafka-configs.sh is in Kafka's bin/), or start with {OVERRIDE} "
            "to run anyway, knowing that history will be lost."
        )
    warning = (
        "\n" + "!" * 78 + "\n"
        f"WARNING: {OVERRIDE}: running on Kafka topics that delete records. The log deletes history:\n"
        "rebuilds, audits and replays will miss every event older than the retention.\n"
        f"{problems}\n" + "!" * 78
    )
    print(warning, file=sys.stderr, flush=True)  # where the operator looks, whatever the logging setup
    if logging.getLogger().handlers:  # and into the configured log (without handlers it would print twice)
        logger.warning(warning)


def check_kafka(bootstrap: str) -> None:
    """check_retention on a Kafka cluster, refusing finite retention (the server's
    check before it starts its workers, so that a refusal is an error, not a traceback)."""
    from eventflow.log import open_log

    log = open_log(f"kafka://{bootstrap}")
    try:
        check_retention(log)
    finally:
        log.close()
