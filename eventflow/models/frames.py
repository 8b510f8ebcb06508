"""pandas and numpy, imported only when a model needs them.

eventflow's core does not depend on them; models do (scikit-learn brings both). A model
command run without them says what to install instead of failing deep in an import.
"""

from __future__ import annotations

import sys
from types import ModuleType


class MissingDependency(ImportError):
    pass


def pandas() -> ModuleType:
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - pandas is a test dependency
        raise MissingDependency("eventflow models need pandas for tabular input: pip install pandas") from exc
    return pandas


def loaded_pandas() -> ModuleType | None:
    """pandas if this process imported it, else None: then no input can be a DataFrame, and
    numpy input needs no pandas at all."""
    return sys.modules.get("pandas")


def numpy() -> ModuleType:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy comes with pandas
        raise MissingDependency("eventflow models need numpy: pip install numpy") from exc
    return numpy
