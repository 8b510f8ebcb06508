"""The model format on disk and through the embedded log: MLmodel, environment, flavors,
signatures, runs:/ loading checked against the sha256 on the log, and MLflow compatibility."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

import eventflow
import eventflow.models as models

pd = pytest.importorskip("pandas")


def test_sklearn_model_directory_is_mlflow_shaped_and_loads_back(tmp_path, estimator, frame):
    models.save_model(estimator, tmp_path / "m", input_example=frame.head(2))
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["MLmodel", "input_example.json", "model.pkl", "python_env.yaml", "requirements.txt", "serving_input_example.json"]
    descriptor = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert descriptor["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert descriptor["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert len(descriptor["model_uuid"]) == 32 and descriptor["utc_time_created"] and descriptor["model_size_bytes"] > 0
    assert json.loads(descriptor["signature"]["inputs"]) == [
        {"type": "double", "name": "a", "required": True},
        {"type": "long", "name": "b", "required": True},
    ]
    assert json.loads(descriptor["signature"]["outputs"])[0]["tensor-spec"]["dtype"] == "int64"
    requirements = (tmp_path / "m" / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "cloudpickle==" in requirements
    assert yaml.safe_load((tmp_path / "m" / "python_env.yaml").read_text())["dependencies"] == ["-r requirements.txt"]
    serving = json.loads((tmp_path / "m" / "serving_input_example.json").read_text())
    assert serving["dataframe_split"]["columns"] == ["a", "b"]

    model = models.load_model(tmp_path / "m")
    assert list(model.predict(frame)) == list(estimator.predict(frame))
    # Other tabular shapes are read through the signature's column order.
    assert list(model.predict([{"b": 1, "a": 5.0}])) == list(estimator.predict(frame.iloc[[4]]))
    assert list(model.predict({"a": [5.0], "b": [1]})) == list(estimator.predict(frame.iloc[[4]]))
    assert list(model.predict([[5.0, 1]])) == list(estimator.predict(frame.iloc[[4]]))


def test_signature_mismatches_are_named(tmp_path, estimator, frame):
    models.save_model(estimator, tmp_path / "m", input_example=frame)
    model = models.load_model(tmp_path / "m")
    with pytest.raises(models.SignatureMismatch, match=r"needs input column\(s\) \['b'\].*columns \['a', 'c'\].*not in the signature: \['c'\]"):
        model.predict(pd.DataFrame({"a": [1.0], "c": [2]}))
    with pytest.raises(models.SignatureMismatch, match="column 'a': cannot safely convert .* to double"):
        model.predict(pd.DataFrame({"a": ["one"], "b": [1]}))
    with pytest.raises(models.SignatureMismatch, match="column 'b': cannot safely convert float64 to long"):
        model.predict(pd.DataFrame({"a": [1.0], "b": [0.5]}))
    with pytest.raises(models.SignatureMismatch, match="each row needs 2 values"):
        model.predict([[1.0, 2, 3]])
    # An integer where a double is declared is widened, as JSON cannot tell 1 from 1.0.
    assert len(model.predict(pd.DataFrame({"a": [1], "b": [1]}))) == 1


def test_custom_pyfunc_carries_its_code_and_loads_in_a_fresh_process(tmp_path, scorer_module):
    import scorer_mod

    signature = models.ModelSignature(models.Schema((models.ColSpec("double", "x"),)))
    models.save_model(scorer_mod.Scorer(offset=1), tmp_path / "m", signature=signature, code_paths=[str(scorer_module)])
    assert (tmp_path / "m" / "code" / "scorer_mod.py").is_file()
    model = models.load_model(tmp_path / "m")
    assert model.predict(pd.DataFrame({"x": [1.0, 2.0]})) == [3.0, 5.0]
    assert model.predict({"x": [1.0]}, params={"scale": 10}) == [30.0]
    # A process that never saw scorer_mod loads it from the model's code/ directory.
    script = f"import eventflow.models as m; print(m.load_model({str(tmp_path / 'm')!r}).predict({{'x': [4]}}))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[9.0]"


def test_a_plain_function_is_a_model(tmp_path):
    models.save_model(lambda frame: [len(frame)], tmp_path / "f")
    assert models.load_model(tmp_path / "f").predict([[1], [2], [3]]) == [3]
    with pytest.raises(models.UnsupportedModel, match="callable or have a predict"):
        models.save_model(object(), tmp_path / "bad")


def test_logged_model_loads_from_runs_uri_and_a_changed_file_is_refused(home, estimator, frame):
    with eventflow.start_run() as run:
        info = models.log_model(estimator, "model", input_example=frame.head(3))
        eventflow.log_text("not the model's", "model-notes/readme.txt")
    assert info.model_uri == f"runs:/{run.run_id}/model"
    model = models.load_model(info.model_uri)
    assert model.metadata.run_id == run.run_id and model.metadata.artifact_path == "model"
    assert list(model.predict(frame)) == list(estimator.predict(frame))
    digests = eventflow.Client().store.artifact_digests(run.run_id, "model")
    assert {d["path"] for d in digests} >= {"model/MLmodel", "model/model.pkl", "model/requirements.txt"}
    assert not any(d["path"].startswith("model-notes") for d in digests)

    # Change the pickled model in the artifact store after it was logged.
    stored = next((home / "artifacts").rglob("model/model.pkl"))
    stored.write_bytes(stored.read_bytes() + b"\x00")
    with pytest.raises(models.ModelIntegrityError, match=r"refusing to load runs:/.*'model/model.pkl' has sha256 .* but the log recorded"):
        models.load_model(info.model_uri)


def test_a_file_added_behind_the_logs_back_is_never_fetched(home, estimator):
    with eventflow.start_run():
        info = models.log_model(estimator, "model")
    stored = next((home / "artifacts").rglob("model/MLmodel")).parent
    (stored / "evil.pkl").write_bytes(b"not logged")
    model = models.load_model(info.model_uri)
    assert not (model.path / "evil.pkl").exists()


def test_runs_uri_without_a_model_says_what_the_run_has(home):
    with eventflow.start_run() as run:
        eventflow.log_text("hi", "notes/readme.txt")
    with pytest.raises(models.ModelLoadError, match=r"logged no model at 'model'.*\['notes'\]"):
        models.load_model(f"runs:/{run.run_id}/model")
    with pytest.raises(models.ModelUriError, match="runs:/<run_id>/<path>"):
        models.load_model("runs:/only-a-run")
    with pytest.raises(models.ModelUriError, match="models:/<name>/<version> or models:/<name>@<alias>"):
        models.load_model("models:/name/notanumber")
    with pytest.raises(models.ModelLoadError, match="logged model m-0123456789abcdef does not exist"):
        models.load_model("models:/m-0123456789abcdef")


def test_eventflow_models_load_with_mlflow(tmp_path, estimator, frame, scorer_module):
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    import scorer_mod

    models.save_model(estimator, tmp_path / "sk", input_example=frame.head(2))
    loaded = mlflow_pyfunc.load_model(str(tmp_path / "sk"))
    assert list(loaded.predict(frame)) == list(estimator.predict(frame))
    assert loaded.metadata.get_input_schema().input_names() == ["a", "b"]

    models.save_model(scorer_mod.Scorer(offset=0), tmp_path / "custom", input_example=pd.DataFrame({"x": [1.0]}), code_paths=[str(scorer_module)])
    assert list(mlflow_pyfunc.load_model(str(tmp_path / "custom")).predict(pd.DataFrame({"x": [2.0]}))) == [4.0]


def test_mlflow_saved_sklearn_model_loads_with_eventflow(tmp_path, estimator, frame):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from mlflow.models import infer_signature

    signature = infer_signature(frame, estimator.predict(frame))
    mlflow_sklearn.save_model(estimator, str(tmp_path / "m"), signature=signature, serialization_format="cloudpickle")
    model = models.load_model(tmp_path / "m")
    assert list(model.predict(frame)) == list(estimator.predict(frame))
    with pytest.raises(models.SignatureMismatch, match="'b'"):
        model.predict(pd.DataFrame({"a": [1.0]}))


def test_signature_types_round_trip_and_read_as_mlflows():
    frame = pd.DataFrame({
        "s": ["a", "b"], "t": pd.to_datetime(["2024-01-01", "2024-02-01"]), "f": [True, False], "n": [1, 2], "x": [0.5, 1.5],
    })
    signature = models.infer_signature(frame, [0, 1])
    assert [(spec.name, spec.type) for spec in signature.inputs.specs] == [
        ("s", "string"), ("t", "datetime"), ("f", "boolean"), ("n", "long"), ("x", "double"),
    ]
    assert models.ModelSignature.from_dict(signature.to_dict()) == signature
    # Records from JSON: strings become datetimes, whole floats integers.
    enforced = signature.inputs.enforce([{"s": "z", "t": "2024-03-01", "f": True, "n": 3.0, "x": 2}])
    assert str(enforced["t"].dtype).startswith("datetime64") and enforced["n"].dtype == "int64" and enforced["x"].dtype == "float64"
    with pytest.raises(models.SignatureMismatch, match="column 's': cannot safely convert int64 to string"):
        signature.inputs.enforce([{"s": 1, "t": "2024-03-01", "f": True, "n": 3, "x": 2.0}])
    with pytest.raises(models.SignatureMismatch, match="column 'f'"):
        signature.inputs.enforce([{"s": "z", "t": "2024-03-01", "f": 0.5, "n": 3, "x": 2.0}])
    mlflow_models = pytest.importorskip("mlflow.models")
    theirs = mlflow_models.ModelSignature.from_dict(signature.to_dict())
    assert theirs.inputs.input_names() == ["s", "t", "f", "n", "x"]
    assert models.ModelSignature.from_dict(theirs.to_dict()) == signature
