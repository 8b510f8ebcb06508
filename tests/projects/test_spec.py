"""The MLproject format: MLflow's rules, checked against MLflow's own reading of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventflow.projects import spec
from eventflow.projects.spec import ProjectError, load_project

# The example of MLflow's Projects documentation ("Specifying Projects"), verbatim.
MLFLOW_DOCS_MLPROJECT = """\
name: My Project

python_env: python_env.yaml
# or
# conda_env: my_env.yaml
# or
# docker_env:
#    image:  mlflow-docker-example

entry_points:
  main:
    parameters:
      data_file: path
      regularization: {type: float, default: 0.1}
    command: "python train.py -r {regularization} {data_file}"
  validate:
    parameters:
      data_file: path
    command: "python validate.py {data_file}"
"""


def project(tmp_path: Path, mlproject: str, **files: str) -> Path:
    (tmp_path / "MLproject").write_text(mlproject)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_documented_mlproject_expands_as_mlflow_expands_it(tmp_path):
    from mlflow.projects import _project_spec

    root = project(tmp_path, MLFLOW_DOCS_MLPROJECT, **{"python_env.yaml": "python: '3.11'\n", "data.csv": "x\n"})
    data = str(root / "data.csv")
    ours = load_project(root)
    theirs = _project_spec.load_project(str(root))
    assert ours.name == theirs.name == "My Project"
    assert ours.env_type == "python_env" and ours.env_file == root / "python_env.yaml"
    for given in ({"data_file": data}, {"data_file": data, "regularization": "0.5", "extra one": "it's"}):
        expected = theirs.get_entry_point("main").compute_command(given, str(tmp_path / "storage"))
        assert ours.entry_point("main").command_for(given) == expected
    assert ours.entry_point("validate").command_for({"data_file": data}) == f"python validate.py {data}"


def test_values_are_shell_quoted_and_undeclared_parameters_go_last(tmp_path):
    root = project(tmp_path, "entry_points:\n  main:\n    parameters:\n      msg: string\n    command: echo {msg}\n")
    command = load_project(root).entry_point("main").command_for({"msg": "a b; rm -rf /", "x": "1"})
    assert command == "echo 'a b; rm -rf /' --x 1"


def test_typed_parameters_are_checked_and_defaults_filled(tmp_path):
    root = project(tmp_path, "entry_points:\n  main:\n    parameters:\n      n: {type: int, default: 3}\n"
                             "      lr: {type: float, default: 0.1}\n      u: uri\n    command: t {n} {lr} {u}\n")
    point = load_project(root).entry_point("main")
    assert point.command_for({"u": "s3://b/k"}) == "t 3 0.1 s3://b/k"
    with pytest.raises(ProjectError, match="'n' is an integer, and 'x' is not one"):
        point.command_for({"u": "s3://b/k", "n": "x"})
    with pytest.raises(ProjectError, match="'lr' is a float"):
        point.command_for({"u": "s3://b/k", "lr": "fast"})
    with pytest.raises(ProjectError, match="Expected URI for parameter u"):
        point.command_for({"u": "not-a-uri"})
    with pytest.raises(ProjectError, match="No value given for missing parameters: 'u'"):
        point.command_for({})


def test_a_path_parameter_is_a_local_path_as_mlflow_reads_it_and_other_uris_are_refused(tmp_path):
    from mlflow.projects import _project_spec

    root = project(tmp_path, MLFLOW_DOCS_MLPROJECT, **{"python_env.yaml": "python: '3.11'\n", "data.csv": "x\n"})
    data = root / "data.csv"
    point = load_project(root).entry_point("validate")
    theirs = _project_spec.load_project(str(root)).get_entry_point("validate")
    assert point.command_for({"data_file": data.as_uri()}) == f"python validate.py {data}"
    assert theirs.compute_command({"data_file": data.as_uri()}, str(tmp_path / "storage")) == f"python validate.py {data}"
    with pytest.raises(ProjectError, match=r"'data_file' is a path, and 's3://bucket/data.csv' is a s3: URI: eventflow does not download"):
        point.command_for({"data_file": "s3://bucket/data.csv"})
    with pytest.raises(ProjectError, match="no such file or directory"):
        point.command_for({"data_file": (root / "absent.csv").as_uri()})


def test_without_an_mlproject_scripts_are_entry_points(tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "prep.sh").write_text("echo 1\n")
    found = load_project(tmp_path)
    assert found.env_file is None
    assert found.entry_point("train.py").command_for({"a": "1"}) == "python train.py --a 1"
    assert found.entry_point("prep.sh").command == "bash prep.sh"
    with pytest.raises(ProjectError, match="Could not find main among entry points"):
        found.entry_point("main")


@pytest.mark.parametrize(
    ("mlproject", "line", "problem"),
    [
        ("name: x\npython_env: a.yaml\nconda_env: b.yaml\n", 3, "multiple environment fields"),
        ("name: x\ndocker_env:\n  volumes: [a]\n", 2, "no image attribute found"),
        ("docker_env:\n  image: img\n  volumes: 3\n", 3, "Docker volumes must be a list of strings"),
        ("name: x\npython_env: missing.yaml\n", 2, "but no such file was found"),
        ("entry_points:\n  main:\n    parameters: {a: string}\n", 2, "entry point 'main' has no command"),
        ("entry_points:\n  main:\n    command: [1, 2]\n", 3, "command must be a non-empty string"),
        ("entry_points:\n  main:\n    command: x\n    parameters:\n      a: [1]\n", 5, "must be a type or a mapping"),
        ("entry_points: [main]\n", 1, "entry_points must be a mapping"),
        ("name: x\nentry_points:\n  main:\n    command: 'unclosed\n", 5, "not valid YAML"),
    ],
)
def test_a_refused_mlproject_names_its_line(tmp_path, mlproject, line, problem):
    project(tmp_path, mlproject)
    with pytest.raises(ProjectError) as refused:
        load_project(tmp_path)
    assert f"line {line}" in str(refused.value)
    assert problem in str(refused.value)


def test_the_same_mlprojects_are_refused_by_mlflow(tmp_path):
    """The refusals above are MLflow's too (those MLflow itself checks)."""
    from mlflow.exceptions import MlflowException
    from mlflow.projects import _project_spec

    for i, text in enumerate(["python_env: a.yaml\nconda_env: b.yaml\n", "docker_env:\n  volumes: [a]\n", "python_env: missing.yaml\n"]):
        root = tmp_path / str(i)
        root.mkdir()
        project(root, text)
        with pytest.raises(MlflowException):
            _project_spec.load_project(str(root))
        with pytest.raises(ProjectError):
            load_project(root)


def test_python_env_yaml(tmp_path):
    path = tmp_path / "python_env.yaml"
    path.write_text("python: 3.11\nbuild_dependencies:\n  - pip\ndependencies:\n  - six==1.16.0\n")
    assert spec.load_python_env(path) == spec.PythonEnv("3.11", ("pip",), ("six==1.16.0",))
    path.write_text("python: '3.11'\ndependencies: six\n")
    with pytest.raises(ProjectError, match="line 2.*must be a list"):
        spec.load_python_env(path)
