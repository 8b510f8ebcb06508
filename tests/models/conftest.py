"""Fixtures for the model tests: a trained scikit-learn model and a custom pyfunc whose
class lives in a module outside the test tree (shipped with the model as a code path)."""

from __future__ import annotations

import sys
import textwrap

import pytest

import eventflow

pd = pytest.importorskip("pandas")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

SCORER = textwrap.dedent(
    '''
    class Scorer:
        """Doubles x and adds the offset; takes params to show they reach the model."""

        def __init__(self, offset):
            self.offset = offset

        def predict(self, frame, params=None):
            scale = (params or {}).get("scale", 1)
            return [(2 * x + self.offset) * scale for x in frame["x"]]
    '''
)


@pytest.fixture
def frame():
    return pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1, 0, 1, 0, 1, 0]})


@pytest.fixture
def estimator(frame):
    return sklearn_linear.LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1])


@pytest.fixture
def scorer_module(tmp_path, monkeypatch):
    """A module importable only from its own directory: the model must carry it."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "scorer_mod.py").write_text(SCORER)
    monkeypatch.syspath_prepend(str(code))
    import scorer_mod

    yield code / "scorer_mod.py"
    sys.modules.pop("scorer_mod", None)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """The fluent SDK on a fresh embedded home."""
    path = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(path))
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(str(path))
    yield path
    while eventflow.active_run():
        eventflow.end_run()
    eventflow.set_tracking_uri(None)
