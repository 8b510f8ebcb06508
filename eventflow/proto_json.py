"""Doubles in MLflow's proto3 JSON: NaN and infinities are strings.

JSON has no spelling for NaN or ±inf, and a training loss that diverges is exactly that.
Proto3's JSON mapping, which MLflow's server writes and its client reads, spells them
"NaN", "Infinity" and "-Infinity", in requests and responses alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

SPELLING = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def spelled(number: float) -> str:
    """A non-finite double as proto3 JSON writes it."""
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def double(value: Any) -> Any:
    """A double read from proto3 JSON: a number, or a string ("NaN", "Infinity",
    "-Infinity", "0.5"). Anything else comes back as it is, for the field's own rule to
    refuse by name."""
    if isinstance(value, str):
        if value in SPELLING:
            return SPELLING[value]
        try:
            return float(value)
        except ValueError:
            return value
    return value


def replace_non_finite(value: Any, spelling: Callable[[float], Any]) -> Any:
    """``value`` with every NaN or infinite float (at any depth) replaced by ``spelling(it)``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else spelling(value)
    if isinstance(value, dict):
        return {k: replace_non_finite(v, spelling) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [replace_non_finite(v, spelling) for v in value]
    return value
