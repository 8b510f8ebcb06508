"""The log as a portable record (issue 15): ``eventflow log export`` writes Avro Object
Container Files that fastavro alone reads in full, with a manifest that catches a changed
file; ``eventflow log import`` replays them into another log keeping event ids, keys,
headers and per-key order, and adds nothing the second time.

Every command runs as a user runs it (``python -m eventflow log ...``), on real embedded
logs; a partition here holds events of several writer schemas (a run.created v1 written
the old way beside v2 events)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid

from fastavro import schemaless_reader, schemaless_writer

from eventflow import commands
from eventflow.codec import decode, registry
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.log.reading import read_through

READER = r'''
import datetime, json, sys, uuid
import fastavro

def plain(value):  # logical types back to what was written: ms since the epoch, uuid text
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value))

out = []
for path in sys.argv[1:]:
    with open(path, "rb") as handle:
        for item in fastavro.reader(handle):
            event = item["event"]
            out.append({"topic": item["topic"], "partition": item["partition"], "offset": item["offset"],
                        "key": item["key"].decode() if item["key"] is not None else None,
                        "event": None if event is None else json.loads(json.dumps(event, default=plain))})
print(json.dumps({"records": out, "modules": sorted(m for m in sys.modules if m.startswith("eventflow"))}))
'''


def run_v1_created(run_id: str, experiment_id: str) -> bytes:
    """A run.created written with schema v1, as an old producer wrote it."""
    v1 = registry().get("run.created", 1)
    record = {
        "event_id": str(uuid.uuid4()), "event_type": "run.created", "time": 1_700_000_000_000, "actor": "old-sdk",
        "source": {"host": "h", "process": "1", "sdk_version": "0.0.1"}, "correlation_id": None, "causation_id": None,
        "payload": {"run_id": run_id, "experiment_id": experiment_id, "run_name": "old", "user_id": "u",
                    "start_time": 1_700_000_000_000, "parent_run_id": None, "tags": [], "artifact_uri": "file:///a"},
    }
    body = io.BytesIO()
    schemaless_writer(body, v1.wire, record)
    return v1.header + body.getvalue()


def history(log) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Experiments and runs, each run with params, metrics and tags; plus one v1 event per run."""
    events = EventLog(log)
    experiment = str(uuid.uuid4().int % 10**12)
    events.append(commands.create_experiment(experiment, f"export-{experiment}", "file:///a"))
    runs: dict[str, list[str]] = {}
    for r in range(6):
        run_id = commands.new_run_id()
        batch = [commands.create_run(run_id, experiment, run_name=f"r{r}", user_id="u", artifact_uri="file:///a/r")]
        batch += [commands.log_params(run_id, {f"p{i}": i}) for i in range(3)]
        batch += [commands.log_metrics(run_id, commands.metric_columns([("loss", 0.5 * s, 1000 + s, s)])) for s in range(4)]
        batch.append(commands.set_tags(run_id, {"stage": "dev"}))
        events.append_many(batch)
        old = run_v1_created(commands.new_run_id(), experiment)
        # keyed by this run, so it shares the run's partition: two writer schemas in one file
        log.append("eventflow.runs", run_id.encode(), old, (("event_type", b"run.created"), ("event_id", decode(old).event_id.encode())))
        runs[run_id] = [e.event_id for e in batch] + [decode(old).event_id]
    return runs


def eventflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", "log", *args], capture_output=True, text=True, timeout=300)


def test_an_export_is_read_in_full_by_fastavro_alone(tmp_path):
    log = open_log(str(tmp_path / "home" / "log"))
    runs = history(log)
    originals = {(r.topic, r.partition, r.offset): r for r in read_through(log, log.topics())}
    log.close()

    done = eventflow("export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "export"))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    files = sorted((tmp_path / "export").glob("*.avro"))
    assert {f["file"] for f in manifest["files"]} == {f.name for f in files}
    assert manifest["records"] == len(originals) == sum(f["records"] for f in manifest["files"])

    # A reader with fastavro and nothing of eventflow (-I: not even this checkout on the path).
    read = subprocess.run([sys.executable, "-I", "-c", READER, *map(str, files)], capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    result = json.loads(read.stdout)
    assert result["modules"] == [], "the reader imported eventflow"
    records = result["records"]
    assert len(records) == len(originals)
    fingerprints = set()
    for item in records:
        original = originals[(item["topic"], item["partition"], item["offset"])]
        assert item["key"] == original.key.decode()
        # the event exactly as its writer schema wrote it: every field, every value
        writer = registry().by_fingerprint(original.value[2:10])
        assert item["event"] == schemaless_reader(io.BytesIO(original.value[10:]), writer.wire, None)
        fingerprints.add((item["topic"], item["partition"], original.value[2:10]))
    # several writer schemas in one partition's file
    per_partition: dict[tuple[str, int], int] = {}
    for topic, partition, _ in fingerprints:
        per_partition[(topic, partition)] = per_partition.get((topic, partition), 0) + 1
    assert max(per_partition.values()) >= 2
    assert sum(len(ids) for ids in runs.values()) + 1 == len(records)


def test_a_changed_export_file_is_caught_by_its_manifest(tmp_path):
    log = open_log(str(tmp_path / "home" / "log"))
    history(log)
    log.close()
    assert eventflow("export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "export")).returncode == 0
    done = eventflow("verify", "--export", str(tmp_path / "export"))
    assert done.returncode == 0 and "the export is intact" in done.stdout, done.stdout + done.stderr
    victim = max((tmp_path / "export").glob("eventflow.runs-*.avro"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[-40] ^= 0x01
    victim.write_bytes(bytes(data))
    done = eventflow("verify", "--export", str(tmp_path / "export"))
    assert done.returncode == 1
    assert f"{victim.name}: its SHA-256 differs" in done.stdout, done.stdout
    # and an import refuses it before appending anything
    done = eventflow("import", str(tmp_path / "export"), "--to", str(tmp_path / "target"))
    assert done.returncode != 0 and victim.name in done.stderr
    target = open_log(str(tmp_path / "target" / "log"))
    assert sum(sum(target.end_offsets(t).values()) for t in target.topics()) == 0
    target.close()


def test_import_keeps_ids_keys_and_per_key_order_and_adds_nothing_twice(tmp_path):
    log = open_log(str(tmp_path / "home" / "log"))
    runs = history(log)
    source = list(read_through(log, log.topics()))
    log.close()
    assert eventflow("export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "export")).returncode == 0

    done = eventflow("import", str(tmp_path / "export"), "--to", str(tmp_path / "target"))
    assert done.returncode == 0, done.stderr
    assert f"appended {len(source):,} records, skipped 0" in done.stdout, done.stdout
    again = eventflow("import", str(tmp_path / "export"), "--to", str(tmp_path / "target"))
    assert again.returncode == 0, again.stderr
    assert f"appended 0 records, skipped {len(source):,}" in again.stdout, again.stdout

    target = open_log(str(tmp_path / "target" / "log"))
    copied = list(read_through(target, target.topics()))
    target.close()
    assert len(copied) == len(source)
    by_id = {decode(r.value).event_id: r for r in copied}
    for record in source:
        twin = by_id[decode(record.value).event_id]
        assert (twin.topic, twin.key, twin.value, twin.headers) == (record.topic, record.key, record.value, record.headers)
    for run_id, ids in runs.items():
        in_order = [decode(r.value).event_id for r in sorted(copied, key=lambda r: (r.partition, r.offset)) if r.key == run_id.encode()]
        assert in_order == ids, f"run {run_id}'s events changed order"


def test_export_since_and_topic_take_only_what_they_name(tmp_path):
    log = open_log(str(tmp_path / "home" / "log"))
    history(log)
    everything = list(read_through(log, log.topics()))
    cut = sorted(r.timestamp for r in everything)[len(everything) // 2]
    log.close()
    done = eventflow("export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "runs"),
                     "--topic", "eventflow.runs", "--since", str(cut))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "runs" / "manifest.json").read_text())
    assert list(manifest["topics"]) == ["eventflow.runs"]
    expected = [r for r in everything if r.topic == "eventflow.runs" and r.timestamp >= cut]
    assert manifest["records"] == len(expected) > 0
    # a partial export still checks: its chain is anchored at its first record
    done = eventflow("verify", "--export", str(tmp_path / "runs"), "--home", str(tmp_path / "home"))
    assert done.returncode == 0 and "matches the log" in done.stdout, done.stdout + done.stderr
    bad = eventflow("export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "x"), "--topic", "nope")
    assert bad.returncode != 0 and "no such topic on the log: nope" in bad.stderr
    bad = eventflow("export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "y"), "--since", "yesterday")
    assert bad.returncode != 0 and "--since" in bad.stderr
