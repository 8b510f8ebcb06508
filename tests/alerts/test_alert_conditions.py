"""Alert conditions: what they accept, what they refuse, and their edges."""

from __future__ import annotations

import math

import pytest

from eventflow.alerts import conditions
from eventflow.validation import InvalidInput


def edges(text: str, values: list[float]) -> list[str]:
    """fired/resolved at each point where the condition starts or stops holding."""
    condition, firing, best, out = conditions.parse(text), False, None, []
    for n, value in enumerate(values):
        holds = condition.holds(value, best)
        if holds != firing:
            out.append(f"{'fired' if holds else 'resolved'}@{n}")
            firing = holds
        best = condition.best_after(value, best)
    return out


def test_a_threshold_fires_once_while_it_holds_and_resolves_once():
    assert edges("metrics.loss > 10", [1, 11, 12, 13, 9, 8, 20]) == ["fired@1", "resolved@4", "fired@6"]


def test_nan_and_not_finite():
    nan, inf = math.nan, math.inf
    assert edges("metrics.loss is NaN", [1, nan, nan, 0.5, inf]) == ["fired@1", "resolved@3"]
    assert edges("metrics.loss is not finite", [1, nan, inf, 0.5]) == ["fired@1", "resolved@3"]
    assert edges("metrics.loss > 10", [nan, 11]) == ["fired@1"]  # NaN compares false


def test_relative_to_the_best_so_far():
    assert edges("metrics.accuracy drops 5% from best", [0.80, 0.90, 0.86, 0.856, 0.85, 0.95, 0.90]) == ["fired@4", "resolved@5", "fired@6"]
    assert edges("metrics.loss rises 50% from its best", [2.0, 1.0, 1.4, 1.5, 0.9]) == ["fired@3", "resolved@4"]


def test_keys_with_slashes_and_quotes():
    assert conditions.parse("metrics.system/cpu_utilization_percentage >= 90").metric == "system/cpu_utilization_percentage"
    assert conditions.parse("metrics.`val loss` < 0.1").metric == "val loss"


@pytest.mark.parametrize("text", ["", "loss > 1", "metrics.loss >", "metrics.loss ~ 3", "metrics.loss drops 0% from best",
                                  "metrics.loss drops 5 from best", "metrics.loss > 1 AND metrics.acc < 2"])
def test_what_is_refused_names_the_forms(text):
    with pytest.raises(InvalidInput) as refused:
        conditions.parse(text)
    assert "metrics.loss is NaN" in refused.value.message or "percentage" in refused.value.message
