"""Figures, images and tables as run artifacts, under MLflow's names and file layouts.

    eventflow.log_figure(fig, "plots/loss.png")          # matplotlib, or plotly (.html)
    eventflow.log_image(array, key="samples", step=3)    # images/samples+step+3+timestamp+...png
    eventflow.log_table({"x": [1, 2]}, "eval.json")      # {"columns": [...], "data": [[...]]}

MLflow's UI reads these paths and the ``mlflow.loggedImages`` / ``mlflow.loggedArtifacts``
tags, so they are kept as MLflow writes them.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventflow import commands
from eventflow import validation as v

LOGGED_IMAGES_TAG = "mlflow.loggedImages"
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
# MLflow refuses these in a table's file name (they break its UI's artifact lists).
_TABLE_FORBIDDEN = ('"', "'", ",", ":", "[", "]", "{", "}")
_IMAGE_KEY = re.compile(r"^[a-zA-Z0-9_\-./ ]+$")
THUMBNAIL_SIDE = 256


def log_written(artifact_file: str, write: Callable[[Path], None]) -> None:
    """Store under ``artifact_file`` what ``write`` puts in a temporary file of that name."""
    from eventflow.sdk import fluent

    commands.artifact_path(artifact_file, "run")  # a bad path fails before any work
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / Path(artifact_file).name
        write(path)
        fluent._store_file(path, artifact_file)


# -- figures --------------------------------------------------------------------------


def _is_plotly(figure: Any) -> bool:
    return type(figure).__module__.startswith("plotly.")


def _is_matplotlib(figure: Any) -> bool:
    return type(figure).__module__.startswith("matplotlib.") and hasattr(figure, "savefig")


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: dict[str, Any] | None = None) -> None:
    """A matplotlib figure in any format ``savefig`` knows (by the file's extension), or a
    plotly figure as ``.html`` (or an image format, when plotly's kaleido is installed)."""
    options = dict(save_kwargs or {})
    if _is_matplotlib(figure):
        log_written(artifact_file, lambda path: figure.savefig(path, **options))
    elif _is_plotly(figure):
        if artifact_file.endswith(".html"):
            options.setdefault("include_plotlyjs", "cdn")
            log_written(artifact_file, lambda path: figure.write_html(str(path), **options))
        else:
            import importlib.util

            if importlib.util.find_spec("kaleido") is None:  # plotly writes images only through kaleido
                raise v.InvalidInput(
                    f"cannot store a plotly figure as {artifact_file!r} without kaleido: save it as '.html', or pip install kaleido"
                )
            log_written(artifact_file, lambda path: figure.write_image(str(path), **options))
    else:
        raise v.InvalidInput(
            f"log_figure takes a matplotlib or plotly figure, not {type(figure).__module__}.{type(figure).__name__}"
        )


# -- images ---------------------------------------------------------------------------


def to_pil(image: Any) -> Any:
    """A PIL image from a PIL image, an ``mlflow.Image`` or a numpy array (H×W, H×W×1,
    H×W×3 or H×W×4; integers 0..255, or floats 0..1 as MLflow takes them)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if callable(getattr(image, "to_pil", None)):  # mlflow.Image
        return image.to_pil()
    import numpy as np

    if not isinstance(image, np.ndarray):
        raise v.InvalidInput(f"log_image takes a numpy array or a PIL image, not {type(image).__name__}")
    array = image
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise v.InvalidInput(f"log_image takes an array of shape H×W, H×W×1, H×W×3 or H×W×4, not {image.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
            raise v.InvalidInput("a float image's values must be between 0 and 1")
        array = (array * 255).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise v.InvalidInput("an integer image's values must be between 0 and 255")
        array = array.astype(np.uint8)
    else:
        raise v.InvalidInput(f"an image array must hold integers or floats, not {array.dtype}")
    return Image.fromarray(array)


def log_image(
    image: Any,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
    synchronous: bool | None = None,  # MLflow's; eventflow stores images before it returns
) -> None:
    """An image as a PNG: at ``artifact_file``, or (with ``key``) one of a series over steps,
    stored as MLflow stores it (``images/KEY+step+S+timestamp+T+UUID.png`` and a small
    ``…+compressed.webp``), tagging the run ``mlflow.loggedImages``."""
    from eventflow.sdk import fluent

    if artifact_file is not None and any(x is not None for x in (key, step, timestamp)):
        raise v.InvalidInput("log_image takes either artifact_file, or key (with step and timestamp), not both")
    if artifact_file is None and key is None:
        raise v.InvalidInput("log_image needs artifact_file (a static image) or key (an image per step)")
    if key is not None and not _IMAGE_KEY.match(key):
        raise v.InvalidInput(
            f"Invalid image key {key!r}: it may only contain alphanumerics, underscores (_), dashes (-), "
            "periods (.), spaces ( ) and slashes (/)"
        )
    picture = to_pil(image)
    if artifact_file is not None:
        log_written(artifact_file, lambda path: picture.save(path, format="PNG") if path.suffix.lower() == ".png" else picture.save(path))
        return
    step = step or 0
    timestamp = timestamp or int(time.time() * 1000)
    stem = f"images/{key.replace('/', '~')}+step+{step}+timestamp+{timestamp}+{uuid.uuid4()}"
    thumbnail = picture.copy()
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    log_written(f"{stem}.png", lambda path: picture.save(path, format="PNG"))
    log_written(f"{stem}+compressed.webp", lambda path: thumbnail.save(path, format="WEBP"))
    fluent.set_tag(LOGGED_IMAGES_TAG, True)


# -- tables ---------------------------------------------------------------------------


def _columns_and_rows(data: Any) -> tuple[list[str], list[list[Any]]]:
    """A table's columns and rows: from a pandas DataFrame, or a dict of columns (equal
    lengths, or all scalars for one row)."""
    if type(data).__name__ == "DataFrame" and hasattr(data, "to_json"):
        split = json.loads(data.to_json(orient="split", index=False, date_format="iso"))
        return [str(c) for c in split["columns"]], split["data"]
    if not isinstance(data, dict):
        raise v.InvalidInput(f"log_table takes a dict of columns or a pandas DataFrame, not {type(data).__name__}")
    columns = [str(c) for c in data]
    values = [list(c) if isinstance(c, (list, tuple)) or hasattr(c, "tolist") else None for c in data.values()]
    if all(c is None for c in values):  # {"inputs": "What is eventflow?"}: one row, as MLflow takes it
        return columns, [list(data.values())]
    if any(c is None for c in values) or len({len(c) for c in values}) > 1:
        lengths = {name: (len(c) if c is not None else "a scalar") for name, c in zip(columns, values)}
        raise v.InvalidInput(f"log_table's columns must all have the same length: {lengths}")
    rows = [list(row) for row in zip(*(c.tolist() if hasattr(c, "tolist") else c for c in data.values()))]
    return columns, rows


def log_table(data: Any, artifact_file: str, run_id: str | None = None) -> None:
    """A table as JSON in MLflow's table format (pandas' ``split`` orient without the index);
    logging again to the same file appends the rows, as MLflow does. The run is tagged
    ``mlflow.loggedArtifacts`` so MLflow's UI lists it as a table."""
    from eventflow.sdk import fluent

    if not artifact_file.endswith(".json"):
        raise v.InvalidInput(f"Invalid table file {artifact_file!r}: a table is stored as '.json'")
    for character in _TABLE_FORBIDDEN:
        if character in artifact_file:
            raise v.InvalidInput(f"Invalid table file {artifact_file!r}: it contains the forbidden character {character}")
    commands.artifact_path(artifact_file, "run")
    columns, rows = _columns_and_rows(data)
    if run_id is not None and (fluent.active_run() is None or fluent.active_run().run_id != run_id):
        raise v.InvalidInput("log_table logs into the active run; give no run_id, or the active run's")
    active = fluent._run()
    fluent.flush()
    store = fluent._session.store
    existing = _existing_table(store, active.info, artifact_file)
    if existing is not None:
        if existing["columns"] != columns:
            raise v.InvalidInput(
                f"{artifact_file!r} already holds a table with columns {existing['columns']}; these rows have {columns}"
            )
        rows = existing["data"] + rows
    text = json.dumps({"columns": columns, "data": rows}, default=str)
    log_written(artifact_file, lambda path: path.write_text(text, encoding="utf-8"))
    run = store.get_run(active.run_id) or {"data": {}}
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    listed = json.loads(tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in listed:
        fluent.set_tag(LOGGED_ARTIFACTS_TAG, json.dumps(listed + [entry]))


def _existing_table(store: Any, info: Any, artifact_file: str) -> dict[str, Any] | None:
    if not any(f["path"] == artifact_file for f in store.artifact_digests(info.run_id, artifact_file)):
        return None
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / "table.json"
        store.download_artifact(info.artifact_uri, artifact_file, local)
        return json.loads(local.read_text(encoding="utf-8"))
