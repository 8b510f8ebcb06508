"""``eventflow models build-docker`` writes a complete, coherent build context.

No Docker engine here, so the image is not built: the test checks that every COPY source
is in the context, that the pinned requirements are the ones the model was saved with,
and runs the image's command against the context itself — eventflow imported from the
context's lib/, the model from its model/ — and scores a request."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import httpx
import pytest

import eventflow
import eventflow.models as models

sys.path.insert(0, os.path.dirname(__file__))
from scoring import free_port  # noqa: E402

pd = pytest.importorskip("pandas")


def build(model_uri: str, output, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eventflow", "models", "build-docker", "-m", model_uri, "-o", str(output), *options],
        capture_output=True, text=True, timeout=120,
    )


def test_the_context_is_complete_and_its_command_serves_the_model(home, estimator, frame, tmp_path):
    with eventflow.start_run():
        info = models.log_model(estimator, "model", input_example=frame.head(2))
    context = tmp_path / "context"
    result = build(info.model_uri, context, "--tracking-uri", str(home))
    assert result.returncode == 0, result.stderr
    assert f"docker build -t my-model {context}" in result.stdout

    dockerfile = (context / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+-slim$", dockerfile, re.M)
    assert dockerfile.count("FROM ") == 1
    # Every COPY source exists in the context, and the targets are what ENV and CMD use.
    copies = dict(re.findall(r"^COPY (\S+) (\S+)$", dockerfile, re.M))
    assert copies == {"requirements/": "/opt/eventflow/requirements/", "lib/": "/opt/eventflow/lib/", "model/": "/opt/ml/model/"}
    for source in copies:
        assert (context / source).is_dir(), source
    assert "ENV PYTHONPATH=/opt/eventflow/lib" in dockerfile
    command = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))
    assert command[:6] == ["python", "-m", "eventflow", "models", "serve", "-m"] and command[6] == "/opt/ml/model"
    port = command[command.index("--port") + 1]
    assert f"EXPOSE {port}" in dockerfile and f"127.0.0.1:{port}/ping" in dockerfile
    for requirement_file in re.findall(r"-r /opt/eventflow/requirements/(\S+)", dockerfile):
        assert (context / "requirements" / requirement_file).is_file()

    # The model: the verified files of the run, and its pinned requirements, minus eventflow itself.
    assert {p.name for p in (context / "model").iterdir()} >= {"MLmodel", "model.pkl", "python_env.yaml", "requirements.txt"}
    assert models.Model.load(context / "model").run_id == info.run_id
    model_requirements = (context / "requirements" / "model.txt").read_text().split()
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in model_requirements
    assert not any(r.startswith("eventflow") for r in model_requirements)
    eventflow_requirements = (context / "requirements" / "eventflow.txt").read_text()
    for needed in ("starlette", "uvicorn", "click", "cloudpickle", "fastavro", "pyyaml", "httpx"):
        assert needed in eventflow_requirements
    # eventflow's source, with its schemas and consumers inside, as in a wheel.
    lib = context / "lib" / "eventflow"
    assert (lib / "models" / "serving.py").is_file() and (lib / "consumers" / "__init__.py").is_file()
    assert len(list((lib / "schemas").glob("*.avsc"))) > 10
    assert not list(lib.rglob("__pycache__"))

    # Run the image's command with the context's paths in place of the container's.
    env = {**os.environ, "PYTHONPATH": str(context / "lib")}
    where = subprocess.run([sys.executable, "-c", "import eventflow.models.serving as s, eventflow.schemas as sc; print(s.__file__); print(sc.__path__[0])"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(context / "lib")) for line in where.stdout.split())
    free = free_port()
    argv = [sys.executable, *command[1:]]
    argv[argv.index("/opt/ml/model")] = str(context / "model")
    argv[argv.index("--port") + 1] = str(free)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        import time

        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{free}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the context's server did not answer /ping"
                time.sleep(0.1)
        serving_input = json.loads((context / "model" / "serving_input_example.json").read_text())
        response = httpx.post(f"http://127.0.0.1:{free}/invocations", json=serving_input)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [int(v) for v in estimator.predict(frame.head(2))]}
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_build_docker_refuses_a_non_empty_output_and_a_tampered_model(home, estimator, tmp_path):
    with eventflow.start_run():
        info = models.log_model(estimator, "model")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    result = build(info.model_uri, busy, "--tracking-uri", str(home))
    assert result.returncode != 0 and "exists and is not empty" in result.stderr
    stored = next((home / "artifacts").rglob("model/model.pkl"))
    stored.write_bytes(b"tampered")
    result = build(info.model_uri, tmp_path / "out", "--tracking-uri", str(home))
    assert result.returncode != 0
    assert "refusing to load" in result.stderr and "model/model.pkl" in result.stderr
    assert not (tmp_path / "out" / "Dockerfile").exists()
