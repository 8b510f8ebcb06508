"""Alert conditions on one metric of a run, and their edge semantics.

Three forms::

    metrics.loss > 10                  (any of > >= < <= = !=, against a number)
    metrics.loss is NaN                (or: is not finite — NaN or ±infinity)
    metrics.accuracy drops 5% from best
    metrics.loss rises 20% from best

A rule holds or not after each point of its metric, in log order; an alert *fires* when
it starts to hold and *resolves* when it stops, so a loss that stays NaN for 1,000 steps
is one alert, not 1,000 (webhook conditions, by contrast, match every event). "best" is
the highest value so far for ``drops`` and the lowest for ``rises``, NaN left out; the
point that sets a new best is compared with the best before it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from eventflow.validation import InvalidInput

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "=": operator.eq, "==": operator.eq, "!=": operator.ne,
}
_KEY = r"metrics\.(?P<key>`[^`]+`|\"[^\"]+\"|[\w\-/.]+?)"
_NUMBER = r"(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_FORMS = (
    ("compare", re.compile(rf"^{_KEY}\s*(?P<op>==|!=|>=|<=|=|>|<)\s*{_NUMBER}$")),
    ("nan", re.compile(rf"^{_KEY}\s+is\s+nan$", re.IGNORECASE)),
    ("not_finite", re.compile(rf"^{_KEY}\s+is\s+not\s+finite$", re.IGNORECASE)),
    ("relative", re.compile(rf"^{_KEY}\s+(?P<way>drops|rises)\s+{_NUMBER}\s*%\s+from\s+(?:its\s+)?best$", re.IGNORECASE)),
)
MAX_LENGTH = 500
EXAMPLES = "metrics.loss > 10, metrics.loss is NaN, metrics.loss is not finite, metrics.accuracy drops 5% from best"


@dataclass(frozen=True)
class Condition:
    text: str
    metric: str
    kind: str  # compare | nan | not_finite | drops | rises
    op: str = ""
    number: float = 0.0

    def holds(self, value: float, best: float | None) -> bool:
        """Whether the condition holds for this point, given the best value before it."""
        if self.kind == "nan":
            return math.isnan(value)
        if self.kind == "not_finite":
            return not math.isfinite(value)
        if math.isnan(value):
            return False
        if self.kind == "compare":
            return _OPS[self.op](value, self.number)
        if best is None:
            return False
        margin = abs(best) * self.number / 100
        return value <= best - margin if self.kind == "drops" else value >= best + margin

    def best_after(self, value: float, best: float | None) -> float | None:
        """The best value once this point is counted (only relative conditions keep one)."""
        if self.kind not in ("drops", "rises") or math.isnan(value):
            return best
        if best is None:
            return value
        return max(best, value) if self.kind == "drops" else min(best, value)


def parse(text: object) -> Condition:
    """A condition from its text, or InvalidInput naming the forms it may take."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"Missing value for required parameter 'condition': write one of {EXAMPLES}")
    given = " ".join(text.split())
    if len(given) > MAX_LENGTH:
        raise InvalidInput(f"Invalid value for parameter 'condition': at most {MAX_LENGTH} characters")
    for kind, form in _FORMS:
        match = form.match(given)
        if match is None:
            continue
        metric = match["key"].strip('`"')
        if kind == "compare":
            return Condition(given, metric, kind, match["op"], float(match["number"]))
        if kind == "relative":
            percent = float(match["number"])
            if not 0 < percent < 1000:
                raise InvalidInput(f"Invalid value {given!r} for parameter 'condition': the percentage must be above 0 and below 1000")
            return Condition(given, metric, match["way"].lower(), number=percent)
        return Condition(given, metric, kind)
    raise InvalidInput(f"Invalid value {given[:200]!r} for parameter 'condition': write one of {EXAMPLES}")
