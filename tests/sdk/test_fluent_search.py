"""search_runs, get_run and last_active_run through the fluent API, on the embedded default
and through a real server: MLflow's filter grammar, order, limits, and its DataFrame."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

import eventflow
from eventflow.sdk import http_store
from eventflow.validation import InvalidInput
from test_fluent import home  # noqa: F401  (the fixture)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import running_server  # noqa: E402


def log_three_runs() -> list[str]:
    ids = []
    for i, (lr, acc) in enumerate([("0.1", 0.7), ("0.01", 0.9), ("0.001", 0.8)]):
        with eventflow.start_run(run_name=f"r{i}", tags={"team": "ml" if i else "data"}) as run:
            eventflow.log_param("lr", lr)
            eventflow.log_metric("acc", acc)
            if i == 2:
                eventflow.log_metric("loss", 0.3)
        ids.append(run.run_id)
    return ids


def test_search_runs_gives_mlflows_dataframe(home):
    eventflow.set_experiment("search")
    ids = log_three_runs()
    frame = eventflow.search_runs()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert {"metrics.acc", "metrics.loss", "params.lr", "tags.team", "tags.mlflow.runName"} <= set(frame.columns)
    assert set(frame["run_id"]) == set(ids) and set(frame["status"]) == {"FINISHED"}
    assert isinstance(frame["start_time"].dtype, pd.DatetimeTZDtype) and str(frame["end_time"].dt.tz) == "UTC"
    assert frame.set_index("run_id")["metrics.loss"].isna().tolist() == [False if i == ids[2] else True for i in frame["run_id"]]


def test_filter_order_and_max_results(home):
    eventflow.set_experiment("search")
    ids = log_three_runs()
    good = eventflow.search_runs(filter_string="metrics.acc > 0.75 and tags.team = 'ml'", order_by=["metrics.acc DESC"])
    assert good["run_id"].tolist() == [ids[1], ids[2]]
    assert eventflow.search_runs(filter_string="params.lr = '0.1'")["run_id"].tolist() == [ids[0]]
    assert eventflow.search_runs(order_by=["metrics.acc ASC"], max_results=1)["run_id"].tolist() == [ids[0]]
    listed = eventflow.search_runs(filter_string="attributes.run_name = 'r1'", output_format="list")
    assert [r.info.run_id for r in listed] == [ids[1]] and listed[0].data.metrics == {"acc": 0.9}


def test_which_experiments_are_searched(home):
    eventflow.set_experiment("first")
    with eventflow.start_run() as first:
        pass
    eventflow.set_experiment("second")
    with eventflow.start_run() as second:
        pass
    assert eventflow.search_runs()["run_id"].tolist() == [second.run_id]  # the active experiment
    assert eventflow.search_runs(experiment_names=["first", "no-such"])["run_id"].tolist() == [first.run_id]
    assert set(eventflow.search_runs(search_all_experiments=True)["run_id"]) == {first.run_id, second.run_id}
    first_id = eventflow.get_run(first.run_id).info.experiment_id
    assert eventflow.search_runs([first_id])["run_id"].tolist() == [first.run_id]
    assert eventflow.search_runs(experiment_names=["no-such"]).empty


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"filter_string": "metrics.acc >>> 1"}, "metric or numeric attribute 'acc'"),
        ({"order_by": ["metrics.acc SIDEWAYS"]}, "order"),
        ({"output_format": "csv"}, "Unsupported output format"),
        ({"experiment_ids": ["1"], "experiment_names": ["x"]}, "not both"),
        ({"max_results": 0}, "Invalid max_results"),
        ({"run_view_type": 7}, "Invalid run_view_type"),
    ],
)
def test_bad_searches_say_what_is_wrong(home, arguments, message):
    with pytest.raises(InvalidInput, match=message):
        eventflow.search_runs(**arguments)


def test_get_run_and_last_active_run(home):
    assert eventflow.last_active_run() is None
    with eventflow.start_run(run_name="now") as run:
        eventflow.log_param("p", 1)
        eventflow.log_metric("m", 2.0)
        live = eventflow.last_active_run()
        assert live.info.run_id == run.run_id and live.info.status == "RUNNING" and live.data.params == {"p": "1"}
    ended = eventflow.last_active_run()
    assert ended.info.status == "FINISHED" and ended.info.end_time >= ended.info.start_time
    assert ended.data.metrics == {"m": 2.0} and ended.data.tags["mlflow.runName"] == "now"
    assert eventflow.get_run(run.run_id).info.run_name == "now"
    with pytest.raises(InvalidInput, match="not found"):
        eventflow.get_run("f" * 32)


def test_search_runs_through_a_server_pages_and_filters(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    monkeypatch.setattr(http_store, "SEARCH_PAGE", 2)  # several pages from five runs
    with running_server(tmp_path / "server-home") as url:
        eventflow.set_tracking_uri(url)
        try:
            eventflow.set_experiment("remote")
            ids = []
            for i in range(5):
                with eventflow.start_run() as run:
                    eventflow.log_metric("i", i)
                ids.append(run.run_id)
            frame = eventflow.search_runs(order_by=["metrics.i ASC"])
            assert frame["run_id"].tolist() == ids and frame["metrics.i"].tolist() == [0, 1, 2, 3, 4]
            assert eventflow.search_runs(filter_string="metrics.i >= 3", order_by=["metrics.i DESC"])["run_id"].tolist() == ids[:2:-1]
            assert len(eventflow.search_runs(max_results=3)) == 3
            assert eventflow.get_run(ids[0]).data.metrics == {"i": 0.0}
        finally:
            eventflow.set_tracking_uri(None)


def test_without_pandas_search_runs_gives_a_list_and_says_so(tmp_path):
    import subprocess

    script = (
        "import sys, warnings\n"
        "sys.modules['pandas'] = None  # as if pandas were not installed\n"
        "import eventflow\n"
        "with eventflow.start_run() as run:\n"
        "    eventflow.log_metric('m', 1.0)\n"
        "with warnings.catch_warnings(record=True) as said:\n"
        "    warnings.simplefilter('always')\n"
        "    found = eventflow.search_runs()\n"
        "print(type(found).__name__, [r.info.run_id for r in found] == [run.run_id], [str(w.message) for w in said])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EVENTFLOW_HOME": str(tmp_path / "home"), "EVENTFLOW_CAPTURE_ENV": "false"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "list True ['search_runs returns a list of runs: pandas is not installed']"
