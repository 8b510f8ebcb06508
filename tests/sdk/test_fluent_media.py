"""log_figure, log_image and log_table on the embedded default: the files land in the run's
artifacts (each recorded on the log with its digest), laid out as MLflow lays them out."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import eventflow
from eventflow.validation import InvalidInput
from test_fluent import home, log_size  # noqa: F401  (the fixture)


def artifacts_of(run_id: str) -> tuple[str, list[str]]:
    client = eventflow.Client()
    root = client.get_run(run_id)["info"]["artifact_uri"].removeprefix("file://")
    return root, [f["path"] for f in client.store.artifact_digests(run_id)]


def tags_of(run_id: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in eventflow.Client().get_run(run_id)["data"]["tags"]}


def test_log_figure_stores_a_matplotlib_png_and_a_plotly_html(home):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3], [3, 1, 2])
    with eventflow.start_run() as run:
        eventflow.log_figure(figure, "plots/loss.png")
        eventflow.log_figure(go.Figure(go.Scatter(x=[1, 2], y=[2, 1])), "plots/loss.html")
    root, paths = artifacts_of(run.run_id)
    assert {"plots/loss.png", "plots/loss.html"} <= set(paths)
    assert open(os.path.join(root, "plots", "loss.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in open(os.path.join(root, "plots", "loss.html")).read()


def test_log_figure_refuses_what_is_not_a_figure(home):
    with eventflow.start_run():
        with pytest.raises(InvalidInput, match="matplotlib or plotly figure, not builtins.str"):
            eventflow.log_figure("a plot", "plot.png")


def test_a_plotly_image_without_kaleido_is_a_clear_error_and_logs_nothing(home):
    import importlib.util

    import plotly.graph_objects as go

    if importlib.util.find_spec("kaleido") is not None:
        pytest.skip("kaleido is installed here: plotly can write images")
    with eventflow.start_run():
        eventflow.flush()
        before = log_size(home)
        with pytest.raises(InvalidInput, match="save it as '.html', or pip install kaleido"):
            eventflow.log_figure(go.Figure(), "plot.png")
        eventflow.flush()
        assert log_size(home) == before


def test_log_image_stores_pngs_from_arrays_and_pil_images(home):
    gradient = np.linspace(0, 1, 12, dtype=float).reshape(3, 4)
    with eventflow.start_run() as run:
        eventflow.log_image(gradient, "static/gradient.png")
        eventflow.log_image(Image.new("RGB", (5, 2), "red"), artifact_file="static/red.png")
        import mlflow

        eventflow.log_image(mlflow.Image(np.zeros((2, 3), dtype=np.uint8)), "static/mlflow.png")
        for step in range(2):
            eventflow.log_image(np.full((4, 4, 3), 40 * step, dtype=np.uint8), key="samples/train", step=step)
    root, paths = artifacts_of(run.run_id)
    back = Image.open(os.path.join(root, "static", "gradient.png"))
    assert back.format == "PNG" and back.size == (4, 3) and np.asarray(back)[2, 3] == 255
    assert Image.open(os.path.join(root, "static", "red.png")).getpixel((0, 0)) == (255, 0, 0)
    assert Image.open(os.path.join(root, "static", "mlflow.png")).size == (3, 2)
    series = sorted(p for p in paths if p.startswith("images/samples~train+step+"))
    assert [p.split("+")[2] for p in series if p.endswith(".png")] == ["0", "1"]
    assert len([p for p in series if p.endswith("+compressed.webp")]) == 2
    assert tags_of(run.run_id)["mlflow.loggedImages"] == "True"


@pytest.mark.parametrize(
    "image, arguments, message",
    [
        (np.zeros((2, 2, 2)), {"artifact_file": "x.png"}, "shape"),
        (np.full((2, 2), 300), {"artifact_file": "x.png"}, "between 0 and 255"),
        (np.full((2, 2), 1.5), {"artifact_file": "x.png"}, "between 0 and 1"),
        ([[0, 1]], {"artifact_file": "x.png"}, "numpy array or a PIL image"),
        (np.zeros((2, 2)), {}, "needs artifact_file"),
        (np.zeros((2, 2)), {"artifact_file": "x.png", "step": 1}, "not both"),
        (np.zeros((2, 2)), {"key": "bad#key"}, "Invalid image key"),
    ],
)
def test_log_image_refuses_bad_input_and_logs_nothing(home, image, arguments, message):
    with eventflow.start_run():
        eventflow.flush()
        before = log_size(home)
        with pytest.raises(InvalidInput, match=message):
            eventflow.log_image(image, **arguments)
        eventflow.flush()
        assert log_size(home) == before


def test_log_table_writes_mlflow_table_json_and_appends(home):
    import pandas as pd

    with eventflow.start_run() as run:
        eventflow.log_table({"inputs": ["a", "b"], "score": [0.5, 1.0]}, "eval/results.json")
        eventflow.log_table(pd.DataFrame({"inputs": ["c"], "score": [0.25]}), "eval/results.json")
        eventflow.log_table({"question": "one row?"}, "single.json")
    root, _ = artifacts_of(run.run_id)
    table = json.load(open(os.path.join(root, "eval", "results.json")))
    assert table == {"columns": ["inputs", "score"], "data": [["a", 0.5], ["b", 1.0], ["c", 0.25]]}
    # what MLflow reads it with gives the same frame
    assert pd.read_json(os.path.join(root, "eval", "results.json"), orient="split")["inputs"].tolist() == ["a", "b", "c"]
    assert json.load(open(os.path.join(root, "single.json")))["data"] == [["one row?"]]
    listed = json.loads(tags_of(run.run_id)["mlflow.loggedArtifacts"])
    assert listed == [{"path": "eval/results.json", "type": "table"}, {"path": "single.json", "type": "table"}]


@pytest.mark.parametrize(
    "data, artifact_file, message",
    [
        ({"a": [1]}, "table.csv", "stored as '.json'"),
        ({"a": [1]}, "ta,ble.json", "forbidden character ,"),
        ({"a": [1], "b": [1, 2]}, "table.json", "same length"),
        ([1, 2], "table.json", "dict of columns or a pandas DataFrame"),
    ],
)
def test_log_table_refuses_bad_input_and_logs_nothing(home, data, artifact_file, message):
    with eventflow.start_run():
        eventflow.flush()
        before = log_size(home)
        with pytest.raises(InvalidInput, match=message):
            eventflow.log_table(data, artifact_file)
        eventflow.flush()
        assert log_size(home) == before
