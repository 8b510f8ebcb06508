"""The reproducibility report: what a rerun changed, and what it reproduced.

Pure: it compares two ``RunFacts`` (what went into a run and what came out of it) and
knows nothing of stores or processes, so every rule here is testable on plain data.
The report is JSON-safe (no NaN or infinity: a dashboard parses it with JSON.parse) and
is what ``reproducibility.json`` holds on the rerun; ``render`` prints it for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

REPORT_ARTIFACT = "reproducibility.json"
# Files that are not outputs of the training code: the report itself, the runner's copy
# of the output and of the patch, the SDK's package list (compared as an input).
NOT_OUTPUTS = frozenset({REPORT_ARTIFACT, "project/stdout.txt", "project/patch.diff", "environment/requirements.txt"})


@dataclass(frozen=True)
class RunFacts:
    """A run's inputs and outputs, as the report compares them."""

    run_id: str
    commit: str | None = None
    patch: str | None = None  # sha256 of the uncommitted changes it ran with
    parameters: dict[str, str] = field(default_factory=dict)
    packages: str | None = None  # ``pip freeze`` text
    python: str | None = None
    datasets: dict[str, str] = field(default_factory=dict)  # name (and context) -> digest
    # key -> [(step, value)] in logging order; the last value at a step is the one kept
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # path -> sha256


def parse_packages(text: str | None) -> dict[str, str]:
    """``pip freeze`` lines as name -> what pins it (a version, or a direct reference),
    names normalised as PEP 503 does; an editable line (``-e …``) is its own key."""
    found: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith("-e"):
            found[line] = line
            continue
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        for separator in ("===", "==", " @ "):
            if separator in line:
                name, pin = line.split(separator, 1)
                found[_normal(name)] = pin.strip()
                break
        else:
            found[_normal(line)] = ""
    return found


def _normal(name: str) -> str:
    return "-".join(part for part in name.strip().lower().replace("_", "-").replace(".", "-").split("-") if part)


def _same_value(a: Any, b: Any) -> dict[str, Any]:
    return {"same": a == b, "original": a, "rerun": b}


def _dict_diff(original: dict[str, str], rerun: dict[str, str], label: str) -> dict[str, Any]:
    differences = [
        {label: key, "original": original.get(key), "rerun": rerun.get(key)}
        for key in sorted(set(original) | set(rerun))
        if original.get(key) != rerun.get(key)
    ]
    return {"same": not differences, "differences": differences}


def _by_step(points: list[tuple[int, float]]) -> dict[int, float]:
    values: dict[int, float] = {}
    for step, value in points:
        values[int(step)] = float(value)
    return values


def _equal(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _json_number(x: float | None) -> float | str | None:
    """Finite numbers as they are; NaN and infinities as strings (as MLflow's REST API does)."""
    if x is None or math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def compare_metric(key: str, original: list[tuple[int, float]] | None, rerun: list[tuple[int, float]] | None) -> dict[str, Any]:
    """Final values, and the largest difference over the steps both runs logged."""
    a, b = _by_step(original or []), _by_step(rerun or [])
    final_a = a[max(a)] if a else None
    final_b = b[max(b)] if b else None
    largest: float | None = 0.0
    at_step: int | None = None
    differing_steps = 0
    for step in sorted(set(a) & set(b)):
        x, y = a[step], b[step]
        if _equal(x, y):
            continue
        differing_steps += 1
        gap = abs(x - y)
        if not math.isfinite(gap):  # NaN or infinity on one side only: no finite size to it
            if largest is not None:
                at_step = step
            largest = None
        elif largest is not None and gap > largest:
            largest, at_step = gap, step
    only_original = len(set(a) - set(b))
    only_rerun = len(set(b) - set(a))
    same = differing_steps == 0 and not only_original and not only_rerun and bool(a)
    return {
        "key": key,
        "same": same,
        "original_final": _json_number(final_a),
        "rerun_final": _json_number(final_b),
        "max_abs_difference": largest if (a and b) else None,
        "at_step": at_step,
        "steps_compared": len(set(a) & set(b)),
        "steps_differing": differing_steps,
        "steps_only_in_original": only_original,
        "steps_only_in_rerun": only_rerun,
    }


def compare(original: RunFacts, rerun: RunFacts) -> dict[str, Any]:
    """The report of ``rerun`` against ``original`` (see the module's docstring)."""
    inputs = {
        "commit": _same_value(original.commit, rerun.commit),
        "patch": _same_value(original.patch, rerun.patch),
        "parameters": _dict_diff(original.parameters, rerun.parameters, "key"),
        "python": _same_value(original.python, rerun.python),
        "packages": _dict_diff(parse_packages(original.packages), parse_packages(rerun.packages), "name"),
        "datasets": _dict_diff(original.datasets, rerun.datasets, "name"),
    }
    if original.packages is None or rerun.packages is None:
        inputs["packages"] = {**inputs["packages"], "same": original.packages == rerun.packages,
                              "note": "no package list recorded for the " + ("original" if original.packages is None else "rerun")}
    metrics = [compare_metric(key, original.metrics.get(key), rerun.metrics.get(key))
               for key in sorted(set(original.metrics) | set(rerun.metrics))]
    artifacts = [
        {"path": path, "same": original.artifacts.get(path) == rerun.artifacts.get(path),
         "original_sha256": original.artifacts.get(path), "rerun_sha256": rerun.artifacts.get(path)}
        for path in sorted((set(original.artifacts) | set(rerun.artifacts)) - NOT_OUTPUTS)
    ]
    return {
        "original_run_id": original.run_id,
        "rerun_run_id": rerun.run_id,
        "inputs_identical": all(item["same"] for item in inputs.values()),
        "outputs_identical": all(m["same"] for m in metrics) and all(a["same"] for a in artifacts),
        "inputs": inputs,
        "metrics": metrics,
        "artifacts": artifacts,
    }


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return text[:12] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text


def render(report: dict[str, Any]) -> str:
    """The report as a person reads it in a terminal."""
    lines = [f"Reproducibility of run {report['original_run_id']} by run {report['rerun_run_id']}", ""]
    verdict = "identical" if report["inputs_identical"] else "DIFFERENT"
    lines.append(f"Inputs: {verdict}")
    inputs = report["inputs"]
    for name in ("commit", "patch", "python"):
        item = inputs[name]
        state = f"same ({_short(item['rerun']) if item['rerun'] is not None else 'none'})" if item["same"] else f"differs: {_short(item['original'])} -> {_short(item['rerun'])}"
        lines.append(f"  {name:<11} {state}")
    for name, label in (("parameters", "key"), ("packages", "name"), ("datasets", "name")):
        item = inputs[name]
        if item["same"]:
            lines.append(f"  {name:<11} same" + (f" ({item['note']})" if item.get("note") else ""))
            continue
        lines.append(f"  {name:<11} {len(item['differences'])} differ" + (f" ({item['note']})" if item.get("note") else ""))
        for d in item["differences"]:
            lines.append(f"    {d[label]}: {_short(d['original'])} -> {_short(d['rerun'])}")
    lines += ["", "Metrics: " + ("identical" if all(m["same"] for m in report["metrics"]) else "DIFFERENT")]
    for m in report["metrics"]:
        if m["same"]:
            lines.append(f"  {m['key']}: same at all {m['steps_compared']} steps, final {m['rerun_final']}")
            continue
        detail = f"final {m['original_final']} -> {m['rerun_final']}"
        if m["max_abs_difference"] is not None and m["steps_differing"]:
            detail += f", largest difference {m['max_abs_difference']:.6g} at step {m['at_step']}"
        elif m["steps_differing"]:
            detail += f", a non-finite difference at step {m['at_step']}"
        if m["steps_only_in_original"] or m["steps_only_in_rerun"]:
            detail += f", steps only in original {m['steps_only_in_original']}, only in rerun {m['steps_only_in_rerun']}"
        lines.append(f"  {m['key']}: differs: {detail}")
    lines += ["", "Artifacts: " + ("identical" if all(a["same"] for a in report["artifacts"]) else "DIFFERENT")]
    for a in report["artifacts"]:
        state = "same sha256" if a["same"] else (
            "only in original" if a["rerun_sha256"] is None else "only in rerun" if a["original_sha256"] is None else
            f"differs: {a['original_sha256'][:12]} -> {a['rerun_sha256'][:12]}")
        lines.append(f"  {a['path']}: {state}")
    return "\n".join(lines) + "\n"
