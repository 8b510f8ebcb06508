"""The MLproject file, read as MLflow reads it — and refused where MLflow refuses it.

An MLproject written for ``mlflow run`` must run unchanged here, so the rules are
MLflow's (mlflow/projects/_project_spec.py): one of ``python_env``, ``conda_env`` or
``docker_env``; entry points with typed, defaulted parameters; a ``command`` whose
``{name}`` placeholders get shell-quoted values; parameters nobody declared appended as
``--name value``; no MLproject at all: ``python x.py`` / ``bash x.sh`` entry points.

Where MLflow would refuse the file (or crash on it), the refusal here names the file, the
line and the problem: the YAML is composed into nodes first (PyYAML keeps their marks),
so every check can point at the line the author has to fix.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

MLPROJECT = "MLproject"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
ENV_FIELDS = ("python_env", "conda_env", "docker_env")
PARAMETER_TYPES = ("string", "float", "int", "integer", "path", "uri")
SCRIPT_RUNNERS = {".py": "python", ".sh": "bash"}


class ProjectError(ValueError):
    """An MLproject (or a run request against it) that cannot run, with where and why."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "string"
    default: Any = None

    def value(self, raw: Any) -> str:
        """The value as the command receives it, checked against the declared type.

        MLflow passes floats and ints through unchecked and fails later inside the
        script; checking here gives the error at the edge, before any run exists."""
        text = str(raw)
        if self.type == "float":
            try:
                float(text)
            except ValueError:
                raise ProjectError(f"parameter {self.name!r} is a float, and {text!r} is not a number") from None
        elif self.type in ("int", "integer"):
            try:
                int(text)
            except ValueError:
                raise ProjectError(f"parameter {self.name!r} is an integer, and {text!r} is not one") from None
        elif self.type == "uri" and not urlparse(text).scheme:
            raise ProjectError(f"Expected URI for parameter {self.name} but got {text}")
        elif self.type == "path":
            scheme = urlparse(text).scheme
            if scheme and scheme != "file" and not (len(scheme) == 1 and os.name == "nt"):
                # MLflow downloads such a URI through its artifact stores; eventflow has none for
                # s3:, gs:, http: …, and passing the URI on would hand the command a path that is not one.
                raise ProjectError(
                    f"parameter {self.name!r} is a path, and {text!r} is a {scheme}: URI: eventflow does not download "
                    "path parameters; pass a local path (or file://), or declare the parameter as uri and fetch it in the entry point"
                )
            path = Path(unquote(urlparse(text).path) if scheme == "file" else text).expanduser()
            if not path.exists():
                raise ProjectError(
                    f"Got value {text} for parameter {self.name}, but no such file or directory was found."
                )
            return str(path.resolve())
        return text


@dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def resolve(self, given: dict[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
        """(declared parameters with defaults filled in, undeclared ones), as strings."""
        given = {str(k): v for k, v in (given or {}).items()}
        missing = [n for n, p in self.parameters.items() if n not in given and p.default is None]
        if missing:
            raise ProjectError("No value given for missing parameters: " + ", ".join(f"'{n}'" for n in missing))
        declared = {n: p.value(given[n] if n in given else p.default) for n, p in self.parameters.items()}
        extra = {k: str(v) for k, v in given.items() if k not in self.parameters}
        return declared, extra

    def command_for(self, given: dict[str, Any] | None) -> str:
        """The shell command: placeholders get quoted values; extras go last as ``--k v``."""
        declared, extra = self.resolve(given)
        try:
            command = self.command.format(**{k: shlex.quote(v) for k, v in declared.items()})
        except KeyError as missing:
            raise ProjectError(
                f"entry point {self.name!r}: the command uses {{{missing.args[0]}}}, which is not a declared parameter"
            ) from None
        except (IndexError, ValueError) as error:
            raise ProjectError(f"entry point {self.name!r}: its command is not a valid template ({error})") from None
        return " ".join([command, *(f"--{shlex.quote(k)} {shlex.quote(v)}" for k, v in extra.items())])


@dataclass(frozen=True)
class Project:
    directory: Path
    name: str | None
    env_type: str  # python_env | conda_env | docker_env
    env_file: Path | None = None  # python_env.yaml or conda.yaml, when there is one
    docker_env: dict[str, Any] | None = None
    entry_points: dict[str, EntryPoint] = field(default_factory=dict)

    def entry_point(self, name: str) -> EntryPoint:
        """A declared entry point, or a script of the project run as MLflow runs it."""
        if name in self.entry_points:
            return self.entry_points[name]
        runner = SCRIPT_RUNNERS.get(os.path.splitext(name)[1])
        if runner is not None:
            if not (self.directory / name).is_file():
                raise ProjectError(f"entry point {name!r}: there is no such file in {self.directory}")
            return EntryPoint(name, f"{runner} {shlex.quote(name)}")
        declared = ", ".join(sorted(self.entry_points)) or "none"
        raise ProjectError(
            f"Could not find {name} among entry points [{declared}] or interpret {name} as a runnable script "
            f"(supported script extensions: {', '.join(SCRIPT_RUNNERS)})"
        )


def find_mlproject(directory: Path) -> Path | None:
    """MLflow matches the file name without regard to case."""
    for entry in sorted(os.listdir(directory)):
        if entry.lower() == "mlproject" and (directory / entry).is_file():
            return directory / entry
    return None


class _Reader:
    """Checks over the composed YAML, each refusal naming the line of the node at fault."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, node: yaml.Node | None, problem: str) -> ProjectError:
        where = f"{self.path.name}, line {node.start_mark.line + 1}" if node is not None else self.path.name
        return ProjectError(f"{self.path}: {where}: {problem}")

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of names to values")
        out = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, f"{what} has a key that is not a name")
            out.append((key.value, key, value))
        return out

    @staticmethod
    def value(node: yaml.Node) -> Any:
        return yaml.safe_load(yaml.serialize(node))


def load_project(directory: str | os.PathLike[str]) -> Project:
    """The project in ``directory``, from its MLproject or, without one, as MLflow infers it."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ProjectError(f"{root} is not a directory: a project is a directory (or a git URL)")
    path = find_mlproject(root)
    if path is None:
        return _inferred(root, None, {})
    reader = _Reader(path)
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ProjectError(f"{path}: {line}not valid YAML: {error.problem or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ProjectError(f"{path}: not valid YAML: {error}") from None
    if document is None:
        return _inferred(root, None, {})
    top = {name: (key, value) for name, key, value in reader.mapping(document, "an MLproject")}
    envs = [name for name in top if name in ENV_FIELDS]
    if len(envs) > 1:
        raise reader.fail(top[envs[1]][0], f"Project cannot contain multiple environment fields: {', '.join(envs)}")
    name = reader.value(top["name"][1]) if "name" in top else None
    entry_points = _entry_points(reader, top["entry_points"][1]) if "entry_points" in top else {}
    if "docker_env" in top:
        return Project(root, _text(name), "docker_env", None, _docker_env(reader, *top["docker_env"]), entry_points)
    for env_name, env_type in (("python_env", "python_env"), ("conda_env", "conda_env")):
        if env_name in top:
            value_node = top[env_name][1]
            file_name = reader.value(value_node)
            if not isinstance(file_name, str) or not file_name:
                raise reader.fail(value_node, f"{env_name} must name a file in the project, e.g. {env_name}: "
                                  f"{PYTHON_ENV_FILE if env_type == 'python_env' else CONDA_ENV_FILE}")
            env_file = root / file_name
            if not env_file.is_file():
                raise reader.fail(value_node, f"Project specified {env_name} file {env_file}, but no such file was found.")
            return Project(root, _text(name), env_type, env_file, None, entry_points)
    return _inferred(root, _text(name), entry_points)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _inferred(root: Path, name: str | None, entry_points: dict[str, EntryPoint]) -> Project:
    """No environment field: python_env.yaml, then conda.yaml, then none (MLflow's order)."""
    if (root / PYTHON_ENV_FILE).is_file():
        return Project(root, name, "python_env", root / PYTHON_ENV_FILE, None, entry_points)
    if (root / CONDA_ENV_FILE).is_file():
        return Project(root, name, "conda_env", root / CONDA_ENV_FILE, None, entry_points)
    return Project(root, name, "python_env", None, None, entry_points)


def _entry_points(reader: _Reader, node: yaml.Node) -> dict[str, EntryPoint]:
    out: dict[str, EntryPoint] = {}
    for name, key, body in reader.mapping(node, "entry_points"):
        fields = {k: (kn, v) for k, kn, v in reader.mapping(body, f"entry point {name!r}")}
        if "command" not in fields:
            raise reader.fail(key, f"entry point {name!r} has no command")
        command = reader.value(fields["command"][1])
        if not isinstance(command, str) or not command.strip():
            raise reader.fail(fields["command"][1], f"entry point {name!r}: command must be a non-empty string")
        parameters: dict[str, Parameter] = {}
        if "parameters" in fields and not (isinstance(fields["parameters"][1], yaml.ScalarNode) and fields["parameters"][1].value in ("", "null", "~")):
            for pname, pkey, pbody in reader.mapping(fields["parameters"][1], f"the parameters of entry point {name!r}"):
                parameters[pname] = _parameter(reader, name, pname, pbody)
        out[name] = EntryPoint(name, command, parameters)
    return out


def _parameter(reader: _Reader, entry: str, name: str, node: yaml.Node) -> Parameter:
    """``name: type`` or ``name: {type: T, default: D}`` (type defaults to string)."""
    if isinstance(node, yaml.ScalarNode):
        kind, default = reader.value(node), None
    elif isinstance(node, yaml.MappingNode):
        fields = {k: v for k, _, v in reader.mapping(node, f"parameter {name!r}")}
        kind = reader.value(fields["type"]) if "type" in fields else "string"
        default = reader.value(fields["default"]) if "default" in fields else None
        node = fields.get("type", node)
    else:
        raise reader.fail(node, f"parameter {name!r} of entry point {entry!r} must be a type or a mapping with type and default")
    if not isinstance(kind, str):
        raise reader.fail(node, f"parameter {name!r} of entry point {entry!r}: its type must be one of "
                          f"{', '.join(PARAMETER_TYPES)}")
    # MLflow passes a value of a type it does not know through as a string: so does this.
    return Parameter(name, kind, default)


def _docker_env(reader: _Reader, key: yaml.Node, node: yaml.Node) -> dict[str, Any]:
    value = reader.value(node)
    if not isinstance(value, dict) or not value.get("image"):
        raise reader.fail(key, "Project configuration (MLproject file) was invalid: Docker environment specified but no image attribute found.")
    fields = {k: v for k, _, v in reader.mapping(node, "docker_env")}
    volumes = value.get("volumes")
    if volumes and not (isinstance(volumes, list) and all(isinstance(v, str) for v in volumes)):
        raise reader.fail(fields["volumes"], "Docker volumes must be a list of strings, e.g.: [\"/path1/:/path1\", \"/path2/:/path2\"]")
    environment = value.get("environment")
    if environment and not (isinstance(environment, list) and all(isinstance(v, (list, str)) for v in environment)):
        raise reader.fail(fields["environment"], "docker_env environment must be a list of names to copy from the host "
                          "or [NAME, value] pairs, e.g. [[\"NEW_VAR\", \"new_value\"], \"VAR_TO_COPY_FROM_HOST\"]")
    return value


@dataclass(frozen=True)
class PythonEnv:
    """A python_env.yaml: the interpreter version and what to install, build tools first."""

    python: str | None
    build_dependencies: tuple[str, ...]
    dependencies: tuple[str, ...]


def load_python_env(path: Path) -> PythonEnv:
    reader = _Reader(path)
    try:
        document = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise ProjectError(f"{path}: line {mark.line + 1 if mark else '?'}: not valid YAML: {error.problem}") from None
    if document is None:
        return PythonEnv(None, (), ())
    fields = {k: (kn, v) for k, kn, v in reader.mapping(document, "a python_env.yaml")}
    unknown = [k for k in fields if k not in ("python", "build_dependencies", "dependencies")]
    if unknown:
        raise reader.fail(fields[unknown[0]][0], f"unknown field {unknown[0]!r}: a python_env.yaml has python, build_dependencies and dependencies")
    python = reader.value(fields["python"][1]) if "python" in fields else None
    if python is not None and not isinstance(python, (str, int, float)):
        raise reader.fail(fields["python"][1], "python must be a version string, e.g. \"3.11\"")
    lists = {}
    for name in ("build_dependencies", "dependencies"):
        value = reader.value(fields[name][1]) if name in fields else None
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise reader.fail(fields[name][1], f"`{name}` must be a list of requirement strings")
        lists[name] = tuple(value or ())
    return PythonEnv(None if python is None else str(python), lists["build_dependencies"], lists["dependencies"])
