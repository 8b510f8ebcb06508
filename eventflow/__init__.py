"""eventflow: the machine-learning lifecycle as a log of events.

The fluent tracking API lives here, under MLflow's names::

    import eventflow
    with eventflow.start_run():
        eventflow.log_metric("loss", 0.1, step=1)
"""

__version__ = "0.1.0"

from eventflow.sdk.fluent import (  # noqa: E402  (the version must exist first)
    ActiveRun,
    active_run,
    alert,
    delete_tag,
    end_run,
    flush,
    get_run,
    get_tracking_uri,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    set_experiment,
    set_experiment_tag,
    set_experiment_tags,
    set_tag,
    set_tags,
    search_runs,
    set_tracking_uri,
    start_run,
)

from eventflow.sdk.client import Client  # noqa: E402
from eventflow import data  # noqa: E402  (eventflow.data.from_pandas, as mlflow.data)
from eventflow.sdk.media import log_figure, log_image, log_table  # noqa: E402
from eventflow.sdk.autolog import autolog  # noqa: E402

__all__ = [
    "ActiveRun",
    "Client",
    "__version__",
    "active_run",
    "alert",
    "autolog",
    "data",
    "delete_tag",
    "end_run",
    "flush",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "search_runs",
    "set_tracking_uri",
    "start_run",
]
