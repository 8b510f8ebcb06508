"""``eventflow rerun``: real git repositories, real child processes, the embedded log.

A deterministic training script rerun from its run id reproduces its metrics and artifact
digests and the report says so; a rerun with ``--set`` or at another commit reports
exactly what differs; a project run reruns as well as a plain SDK run; a run without its
commit is refused, naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from rerun_repos import git, run_script, training_repo  # noqa: E402

from eventflow.codec import decode  # noqa: E402
from eventflow.sdk.client import Client  # noqa: E402


def cli(*args: str, home: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EVENTFLOW_TRACKING_URI": home})


def rerun_json(run_id: str, home: str, *options: str) -> dict:
    done = cli("rerun", run_id, "--env-manager", "local", "--json", *options, home=home)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def tags(client: Client, run_id: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in client.get_run(run_id)["data"]["tags"]}


def differing(report: dict) -> dict[str, object]:
    """Each input that differs, with what differs."""
    out: dict[str, object] = {}
    for name, item in report["inputs"].items():
        if not item["same"]:
            out[name] = item.get("differences") or (item["original"], item["rerun"])
    return out


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "home")


@pytest.fixture
def repo(tmp_path):
    return training_repo(tmp_path / "repo")


def test_a_plain_sdk_run_reruns_identically_linked_both_ways_on_the_log(repo, home):
    original = run_script(repo, home, "--lr", "0.25")
    answer = rerun_json(original, home)
    report, new = answer["report"], answer["run_id"]
    assert answer["status"] == "FINISHED"
    assert report["inputs_identical"] and report["outputs_identical"], report
    assert {m["key"]: (m["same"], m["steps_compared"]) for m in report["metrics"]} == {"loss": (True, 5), "accuracy": (True, 5)}
    [weights] = report["artifacts"]  # the runner's stdout and the package list are not outputs
    assert weights["path"] == "model/weights.txt" and weights["same"]
    assert weights["original_sha256"] == weights["rerun_sha256"] and len(weights["rerun_sha256"]) == 64
    with Client(home) as client:
        assert tags(client, new)["eventflow.rerun_of"] == original
        assert client.get_run(new)["info"]["experiment_id"] == client.get_run(original)["info"]["experiment_id"]
        assert {p["key"]: p["value"] for p in client.get_run(new)["data"]["params"]} == {"lr": "0.25", "epochs": "5"}
        # the report is on the new run, as its digest on the log says
        digests = {f["path"]: f["sha256"] for f in client.store.artifact_digests(new)}
        assert "reproducibility.json" in digests
        log = client.store.log
        with log.consumer(["eventflow.runs"]) as consumer:
            consumer.seek_to_beginning()
            events = []
            while records := consumer.poll(timeout=0.2, max_records=5000):
                events += [decode(r.value) for r in records]
    created = next(e for e in events if e.type == "run.created" and e.payload["run_id"] == original)
    link = [e for e in events if e.type == "run.tags_set" and e.payload["run_id"] == new
            and {"key": "eventflow.rerun_of", "value": original} in e.payload["tags"]]
    assert [e.causation_id for e in link] == [created.event_id]


def test_set_and_another_commit_report_exactly_what_differs(repo, home):
    original = run_script(repo, home, "--lr", "0.25")
    changed = rerun_json(original, home, "--set", "lr=0.5")["report"]
    assert differing(changed) == {"parameters": [{"key": "lr", "original": "0.25", "rerun": "0.5"}]}
    loss = next(m for m in changed["metrics"] if m["key"] == "loss")
    assert (loss["original_final"], loss["rerun_final"]) == (0.75 ** 5, 0.5 ** 5)
    assert loss["max_abs_difference"] == pytest.approx(max(abs(0.75 ** (s + 1) - 0.5 ** (s + 1)) for s in range(5)))
    assert [a["same"] for a in changed["artifacts"]] == [False]

    first, second = git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse", "main")
    moved = rerun_json(original, home, "--version", "main")["report"]
    assert differing(moved) == {"commit": (first, second)}  # the same parameters, packages, python
    assert not moved["outputs_identical"]
    text = cli("rerun", original, "--env-manager", "local", "--version", "main", home=home).stdout
    assert f"commit      differs: {first[:12]} -> {second[:12]}" in text and "parameters  same" in text


def test_a_project_run_reruns_and_a_changed_parameter_is_expanded_into_its_command(tmp_path, home):
    from eventflow import projects

    repo = training_repo(tmp_path / "project", mlproject=True)
    submitted = projects.run(str(repo), parameters={"lr": "0.2"}, env_manager="local", tracking_uri=home)
    same = rerun_json(submitted.run_id, home)
    assert same["report"]["inputs_identical"] and same["report"]["outputs_identical"], same["report"]
    shorter = rerun_json(submitted.run_id, home, "--set", "epochs=3")
    assert differing(shorter["report"]) == {"parameters": [{"key": "epochs", "original": "5", "rerun": "3"}]}
    loss = next(m for m in shorter["report"]["metrics"] if m["key"] == "loss")
    assert (loss["steps_compared"], loss["steps_only_in_original"], loss["steps_differing"]) == (3, 2, 0)
    with Client(home) as client:
        record = projects.project_of(shorter["run_id"], tracking_uri=home)
        assert record.command == "python train.py --lr 0.2 --epochs 3"  # recorded without the watcher
        assert tags(client, shorter["run_id"])["mlflow.source.type"] == "PROJECT"
    # a rerun of a rerun runs the command once, and reproduces the rerun
    again = rerun_json(shorter["run_id"], home)
    assert again["report"]["inputs_identical"] and again["report"]["outputs_identical"]


def test_a_run_without_its_commit_is_refused_naming_it(tmp_path, home):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text((training_repo(tmp_path / "repo") / "train.py").read_text())
    original = run_script(plain, home, GIT_CEILING_DIRECTORIES=str(tmp_path))
    done = cli("rerun", original, "--env-manager", "local", home=home)
    assert done.returncode == 1
    assert f"run {original} cannot be rerun: it lacks a git commit (tag mlflow.source.git.commit" in done.stderr
    with Client(home) as client:  # nothing was started
        runs = client.search_runs([e["experiment_id"] for e in client.search_experiments()])
    assert [r["info"]["run_id"] for r in runs] == [original]


def test_bad_input_is_refused_at_the_edge(repo, home):
    original = run_script(repo, home)
    assert "--set takes KEY=VALUE, not 'lr'" in cli("rerun", original, "--set", "lr", home=home).stderr
    assert "Run with id=nope not found" in cli("rerun", "nope", "--env-manager", "local", home=home).stderr


def test_the_python_api(repo, home):
    from eventflow import projects

    original = run_script(repo, home, "--epochs", "2")
    result = projects.rerun(original, set={"epochs": 3}, env_manager="local", tracking_uri=home)
    assert result.status == "FINISHED" and result.original_run_id == original
    assert differing(result.report) == {"parameters": [{"key": "epochs", "original": "2", "rerun": "3"}]}
    assert "epochs: 2 -> 3" in result.text


def test_a_dirty_project_run_reruns_with_its_recorded_patch(tmp_path, home):
    from eventflow import projects

    repo = training_repo(tmp_path / "project", mlproject=True)
    (repo / "train.py").write_text((repo / "train.py").read_text().replace("SHRINK = 1.0", "SHRINK = 1.5"))
    submitted = projects.run(str(repo), env_manager="local", tracking_uri=home)
    patched = projects.project_of(submitted.run_id, tracking_uri=home)
    assert patched.patch_sha256
    git(repo, "checkout", "--", "train.py")  # the tree is clean again: only the log has the change
    answer = rerun_json(submitted.run_id, home)
    report = answer["report"]
    assert report["inputs_identical"] and report["outputs_identical"], report
    assert report["inputs"]["patch"] == {"same": True, "original": patched.patch_sha256, "rerun": patched.patch_sha256}
    loss = next(m for m in report["metrics"] if m["key"] == "loss")
    assert loss["original_final"] == pytest.approx(0.85 ** 5)  # SHRINK 1.5, from the patch, not the commit
    # at another commit the patch (a difference against the original commit) is left out, and that is reported
    moved = rerun_json(submitted.run_id, home, "--version", "main")["report"]
    assert set(differing(moved)) == {"commit", "patch"}


def test_a_project_run_in_a_built_environment_reruns_from_its_exact_package_list(tmp_path, home):
    """One real environment from PyPI (uv): the rerun rebuilds it from what pip froze."""
    from eventflow import projects

    repo = tmp_path / "env-project"
    training_repo(repo, mlproject=True)
    (repo / "MLproject").write_text((repo / "MLproject").read_text().replace("name: shrink\n", "name: shrink\npython_env: python_env.yaml\n"))
    (repo / "python_env.yaml").write_text("python: \"%d.%d\"\nbuild_dependencies: [pip]\ndependencies: [six==1.16.0]\n" % sys.version_info[:2])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "an environment")
    submitted = projects.run(str(repo), env_manager="uv", tracking_uri=home)
    original = projects.project_of(submitted.run_id, tracking_uri=home)
    assert "six==1.16.0" in original.packages.splitlines()
    done = cli("rerun", submitted.run_id, "--json", home=home)  # the original's manager: uv
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["report"]["inputs_identical"] and answer["report"]["outputs_identical"], answer["report"]
    rebuilt = projects.project_of(answer["run_id"], tracking_uri=home)
    assert rebuilt.env_manager == "uv" and rebuilt.python_version == original.python_version
    assert sorted(rebuilt.packages.splitlines()) == sorted(original.packages.splitlines())


def test_a_rerun_that_fails_is_failed_and_still_reports(repo, home):
    original = run_script(repo, home)
    done = cli("rerun", original, "--env-manager", "local", "--set", "epochs=many", "--json", home=home)
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "FAILED"
    assert "argument --epochs: invalid int value: 'many'" in done.stderr  # the script's own error, streamed
    with Client(home) as client:
        run = client.get_run(answer["run_id"])
        assert run["info"]["status"] == "FAILED"
        assert "reproducibility.json" in {f["path"] for f in client.store.artifact_digests(answer["run_id"])}
    assert not answer["report"]["outputs_identical"]
    assert {m["key"]: m["steps_only_in_original"] for m in answer["report"]["metrics"]} == {"loss": 5, "accuracy": 5}


def test_a_plain_sdk_run_in_a_small_environment_reruns_in_one_built_from_its_package_list(repo, home):
    """The default for a plain SDK run: a virtualenv built from the requirements.txt its SDK
    logged (the environment it ran in is one of ours here, so its list is short)."""
    from eventflow.projects.environments import EnvironmentSpec, build

    env = build(EnvironmentSpec("uv", None, ("pip",), ("six==1.16.0",)))
    done = subprocess.run([str(env.python), str(repo / "train.py")], capture_output=True, text=True, timeout=120,
                          env={**env.environ(dict(os.environ)), "EVENTFLOW_TRACKING_URI": home})
    assert done.returncode == 0, done.stderr
    with Client(home) as client:
        [run] = client.search_runs([e["experiment_id"] for e in client.search_experiments()])
    done = cli("rerun", run["info"]["run_id"], "--json", home=home)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert "building the virtualenv environment" in done.stderr
    assert answer["report"]["inputs_identical"] and answer["report"]["outputs_identical"], answer["report"]
    from eventflow import projects

    rebuilt = projects.project_of(answer["run_id"], tracking_uri=home)
    assert rebuilt.env_manager == "virtualenv" and "six==1.16.0" in rebuilt.packages.splitlines()


HOLD = """\
import os, time
where = os.environ.get("HOLD_PID_FILE")
if where:  # the rerun: say who we are, then hold on until stopped
    with open(where + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.rename(where + ".tmp", where)
    time.sleep(600)
print("done", flush=True)
"""


def test_sigterm_while_a_rerun_is_set_up_stops_its_entry_point_and_leaves_no_run_running(tmp_path, home):
    """On the embedded log the entry point starts before the rerun is written (opening the
    views takes seconds): SIGTERM then, and the launcher must still stop the child and end
    what it wrote KILLED, not vanish and leave a RUNNING run and an orphan."""
    import signal
    import time

    from eventflow import projects

    repo = tmp_path / "hold"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "MLproject").write_text("name: hold\nentry_points:\n  main:\n    command: python hold.py\n")
    (repo / "hold.py").write_text(HOLD)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hold")
    original = projects.run(str(repo), env_manager="local", tracking_uri=home)
    pid_file = tmp_path / "child.pid"
    launcher = subprocess.Popen([sys.executable, "-m", "eventflow", "rerun", original.run_id, "--env-manager", "local"],
                                env={**os.environ, "EVENTFLOW_TRACKING_URI": home, "HOLD_PID_FILE": str(pid_file)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not pid_file.exists():
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline, "the rerun's entry point never started"
        time.sleep(0.01)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 128 + signal.SIGTERM, stderr
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while _alive(child):
        assert time.monotonic() < deadline, f"the entry point (pid {child}) outlived its launcher"
        time.sleep(0.05)
    with Client(home) as client:
        runs = client.search_runs([client.get_run(original.run_id)["info"]["experiment_id"]])
    statuses = {r["info"]["run_id"]: r["info"]["status"] for r in runs}
    assert statuses.pop(original.run_id) == "FINISHED"
    assert set(statuses.values()) <= {"KILLED"}, statuses


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead; reaped by init since its parent (the launcher) is gone
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
