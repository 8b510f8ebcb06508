"""A model trained on numpy arrays is logged, loaded and scored without pandas (issue 16).

pandas is not a dependency of eventflow; ``log_model`` on numpy input used to fail with
"need pandas" after training, ending the run FAILED. Each test runs in a process where
``import pandas`` fails, as it does where pandas is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")

# `import pandas` fails as if it were not installed (scikit-learn copes with that; it would not
# with sys.modules["pandas"] = None, which it takes for an imported pandas).
NO_PANDAS = """
import sys
class _NoPandas:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
sys.meta_path.insert(0, _NoPandas())
"""

TRAIN = NO_PANDAS + """
import json
import numpy as np
import eventflow, eventflow.models as models
from sklearn.linear_model import LinearRegression

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
y = X @ np.array([2.0, 1.0])
with eventflow.start_run() as run:
    info = models.log_model(LinearRegression().fit(X, y), "model", input_example=X[:2])
model = models.load_model(info.model_uri)
status = eventflow.Client().get_run(run.info.run_id)["info"]["status"]
print(json.dumps({"status": status, "prediction": [float(v) for v in model.predict(np.array([[1.0, 1.0]]))],
                  "inputs": info.signature.inputs.to_json(), "pandas_loaded": "pandas" in sys.modules}))
"""


def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EVENTFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")}
    env.update(EVENTFLOW_HOME=str(tmp_path / "home"), EVENTFLOW_CAPTURE_ENV="false")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)


def test_a_numpy_model_is_logged_and_loaded_without_pandas(tmp_path):
    done = _python(TRAIN, tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == "FINISHED"
    assert found["prediction"] == pytest.approx([3.0])
    assert json.loads(found["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}]
    assert not found["pandas_loaded"]


def test_a_table_example_without_pandas_is_refused_before_anything_is_written(tmp_path):
    code = NO_PANDAS + """
import eventflow, eventflow.models as models
from sklearn.linear_model import LinearRegression
import numpy as np
with eventflow.start_run() as run:
    model = LinearRegression().fit(np.array([[0.0], [1.0]]), [0.0, 1.0])
    try:
        models.log_model(model, "model", input_example={"x": [0.0, 1.0]})
    except ImportError as error:
        print("refused:", error)
print(eventflow.Client().get_run(run.info.run_id)["info"]["status"], len(eventflow.Client().store.artifact_digests(run.info.run_id)))
"""
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and "pip install pandas" in lines[0]
    assert lines[1] == "FINISHED 0"  # the run goes on, nothing of the model was logged
