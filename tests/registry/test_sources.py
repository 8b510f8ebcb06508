"""A model version's source must stay inside the artifact store (MLflow's CVE-2023-1177)."""

from __future__ import annotations

import os

import pytest

from eventflow.registry.sources import check_source
from eventflow.validation import InvalidInput

RUN = "0123456789abcdef0123456789abcdef"
MODEL = "m-" + "ab" * 16


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "artifacts"
    (root / "0" / RUN / "artifacts" / "model").mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    ("source", "kind", "target", "path"),
    [
        (f"runs:/{RUN}/model", "runs", RUN, "model"),
        (f"runs:/{RUN}/deep/er/model", "runs", RUN, "deep/er/model"),
        (f"models:/{MODEL}", "models", MODEL, ""),
        (f"mlflow-artifacts:/0/{RUN}/artifacts/model", "store", "", f"0/{RUN}/artifacts/model"),
    ],
)
def test_sources_inside_the_store_are_taken(store, source, kind, target, path):
    found = check_source(source, store)
    assert (found.uri, found.kind, found.target, found.path) == (source, kind, target, path)


def test_local_paths_and_file_uris_inside_the_store_are_taken(store):
    inside = store / "0" / RUN / "artifacts" / "model"
    assert check_source(str(inside), store).path == f"0/{RUN}/artifacts/model"
    assert check_source(inside.as_uri(), store).path == f"0/{RUN}/artifacts/model"


@pytest.mark.parametrize(
    "source",
    [
        "file:///etc",
        "file:///etc/passwd",
        "file://evil.example/share/model",
        "/etc/passwd",
        "mlflow-artifacts:/../../etc",
        "mlflow-artifacts:/0/%2e%2e/%2e%2e/etc",
        "mlflow-artifacts:/0/%252e%252e/etc",
        "mlflow-artifacts://other-host/0/model",
        f"runs:/{RUN}/../../../etc",
        f"runs:/{RUN}/..%2F..%2Fetc",
        "runs:/../etc",
        f"models:/{MODEL}/../../etc",
        "models:/churn/1",
        "models:/churn@production",
        "http://169.254.169.254/latest/meta-data",
        "https://example.com/model.tar.gz",
        "s3://bucket/model",
        "hdfs:///models/x",
        "C:\\Windows\\system32",
        "relative/path",
        "model\x00.pkl",
        "",
        None,
        42,
    ],
)
def test_anything_else_is_refused(store, source):
    with pytest.raises(InvalidInput) as refused:
        check_source(source, store)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_symlink_out_of_the_store_is_refused(store, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    os.symlink(secret, store / "0" / "escape")
    with pytest.raises(InvalidInput, match="outside the artifact store"):
        check_source(str(store / "0" / "escape"), store)
    with pytest.raises(InvalidInput, match="must not hold '..'"):
        check_source(f"{store}/0/../../secret", store)
