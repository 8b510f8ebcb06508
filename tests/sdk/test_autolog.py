"""eventflow.autolog() with real scikit-learn: a fit logs its params, MLflow's training_*
metrics, the training dataset and the model (loadable, and registered on a real server
when asked); nested fits log once; disable puts scikit-learn back."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
from sklearn import metrics
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import eventflow
import eventflow.models
from test_fluent import home  # noqa: F401  (the fixture)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import ok, running_server  # noqa: E402

X, Y = load_iris(return_X_y=True)


@pytest.fixture(autouse=True)
def off_afterwards():
    yield
    eventflow.autolog(disable=True)


def test_a_classifier_fit_logs_params_metrics_dataset_and_a_loadable_model(home):
    eventflow.autolog()
    model = LogisticRegression(max_iter=300, C=0.5).fit(X, Y)
    run = eventflow.last_active_run()
    assert run.info.status == "FINISHED" and eventflow.active_run() is None  # its own run, ended
    assert run.data.params == {key: str(value) for key, value in model.get_params(deep=True).items()}
    assert run.data.params["C"] == "0.5" and run.data.params["max_iter"] == "300"
    assert run.data.tags["estimator_name"] == "LogisticRegression"
    assert run.data.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    predicted = model.predict(X)
    expected = {
        "training_accuracy_score": metrics.accuracy_score(Y, predicted),
        "training_precision_score": metrics.precision_score(Y, predicted, average="weighted"),
        "training_recall_score": metrics.recall_score(Y, predicted, average="weighted"),
        "training_f1_score": metrics.f1_score(Y, predicted, average="weighted"),
        "training_log_loss": metrics.log_loss(Y, model.predict_proba(X)),
        "training_score": model.score(X, Y),
    }
    for key, value in expected.items():
        assert run.data.metrics[key] == pytest.approx(value), key
    assert "training_roc_auc" in run.data.metrics
    [dataset] = run.inputs["dataset_inputs"]
    assert dataset["tags"] == [{"key": "mlflow.data.context", "value": "train"}]
    assert dataset["dataset"]["digest"] == eventflow.data.from_numpy(X, targets=Y, name="dataset").digest
    loaded = eventflow.models.load_model(f"runs:/{run.info.run_id}/model")
    assert (loaded.predict(X[:10]) == predicted[:10]).all()


def test_a_regressor_gets_mlflows_regression_metrics(home):
    X_reg, y_reg = load_diabetes(return_X_y=True)
    eventflow.autolog(log_models=False, extra_tags={"team": "ml"})
    model = LinearRegression().fit(X_reg, y_reg)
    run = eventflow.last_active_run()
    mse = metrics.mean_squared_error(y_reg, model.predict(X_reg))
    assert run.data.metrics["training_mean_squared_error"] == pytest.approx(mse)
    assert run.data.metrics["training_root_mean_squared_error"] == pytest.approx(np.sqrt(mse))
    assert run.data.metrics["training_r2_score"] == pytest.approx(model.score(X_reg, y_reg))
    assert "training_mean_absolute_error" in run.data.metrics and run.data.tags["team"] == "ml"
    assert eventflow.Client().store.artifact_digests(run.info.run_id, "model") == []  # log_models=False


def test_nested_fits_log_once_and_an_active_run_is_logged_into_and_left_open(home):
    eventflow.set_experiment("nested")
    eventflow.autolog(log_models=False)
    search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=300))]),
                          {"clf__C": [0.1, 1.0]}, cv=2)
    with eventflow.start_run() as mine:
        search.fit(X, Y)
        assert eventflow.active_run() is mine
    runs = eventflow.search_runs(output_format="list")
    assert [r.info.run_id for r in runs] == [mine.run_id]  # one run: the candidates' fits did not log
    run = eventflow.get_run(mine.run_id)
    assert run.data.tags["estimator_name"] == "GridSearchCV" and "training_score" in run.data.metrics


def test_a_failing_fit_fails_its_run_and_raises(home):
    eventflow.autolog()
    with pytest.raises(ValueError):
        LogisticRegression().fit(X, np.zeros(len(X)))  # one class only: scikit-learn refuses
    run = eventflow.last_active_run()
    assert run.info.status == "FAILED" and run.data.params["C"] == "1.0"


def test_disable_puts_scikit_learn_back(home):
    original = LogisticRegression.fit
    eventflow.autolog()
    assert getattr(LogisticRegression.fit, "__eventflow_autolog__", False)
    eventflow.autolog(disable=True)
    assert LogisticRegression.fit is original
    eventflow.set_experiment("off")
    LogisticRegression(max_iter=300).fit(X, Y)
    assert eventflow.search_runs().empty


def test_the_model_is_registered_on_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    with running_server(tmp_path / "server-home") as url:
        eventflow.set_tracking_uri(url)
        try:
            eventflow.autolog(registered_model_name="iris-classifier")
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no "could not log" warning
                LogisticRegression(max_iter=300).fit(X, Y)
            run = eventflow.last_active_run()
        finally:
            eventflow.set_tracking_uri(None)
        version = ok(url, "GET", "model-versions/get", name="iris-classifier", version="1")["model_version"]
        assert version["run_id"] == run.info.run_id and version["source"] == f"runs:/{run.info.run_id}/model"
        assert run.data.metrics["training_accuracy_score"] > 0.9
