"""``eventflow models``: serve a model, or write a Docker build context for it.

Attached to the main CLI in eventflow/cli.py; the registry's commands join this group.
"""

from __future__ import annotations

from pathlib import Path

import click

from eventflow.cli_common import tracking_uri_option

URI_HELP = "The model: runs:/<run_id>/<path>, models:/<name>/<version>, models:/<name>@<alias> or a local directory."
_tracking = tracking_uri_option("Where runs:/ and models:/ URIs are read from.")


def _fetch_or_exit(model_uri: str, tracking_uri: str | None, dst_path: Path | None = None) -> Path:
    """The model's verified local directory, or a CLI error that says what went wrong."""
    from eventflow.models import ModelLoadError, ModelUriError, UnsupportedModel
    from eventflow.models.pyfunc import local_copy

    try:
        return local_copy(model_uri, tracking_uri, dst_path)
    except (ModelLoadError, ModelUriError, UnsupportedModel, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def models() -> None:
    """Serve models and package them (the MLflow model format)."""


@models.command()
@click.option("-m", "--model-uri", required=True, metavar="URI", help=URI_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Scoring processes.")
@_tracking
def serve(model_uri: str, host: str, port: int, workers: int, tracking_uri: str | None) -> None:
    """Score a model over HTTP with MLflow's scoring protocol.

    The model's files are fetched and each is checked before anything is unpickled
    against the sha256 a registered version pinned for it when it was created (for
    runs:/ URIs, the one the log recorded); a changed file stops here.

    \b
    Endpoints:
      POST /invocations   JSON with one of dataframe_split, dataframe_records,
                          instances or inputs (+ optional params), or text/csv;
                          answers {"predictions": [...]}
      GET  /ping, /health 200 once the model is loaded
      GET  /version       eventflow's version

    \b
    Examples:
      eventflow models serve -m runs:/0a1b2c3d/model --port 8080
      eventflow models serve -m models:/churn@production --tracking-uri http://127.0.0.1:5000
      curl -d '{"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2]]}}' \\
           -H 'content-type: application/json' http://127.0.0.1:8080/invocations
    """
    import os

    import uvicorn

    from eventflow.models import load_model
    from eventflow.models.serving import MODEL_DIR_ENV, create_app

    directory = _fetch_or_exit(model_uri, tracking_uri)
    try:
        model = load_model(directory)  # fail here, with the reason, rather than in a worker
    except Exception as exc:  # noqa: BLE001 - any unpickling error is the model's, say it plainly
        raise click.ClickException(f"cannot load {model_uri}: {type(exc).__name__}: {exc}") from None
    click.echo(f"serving {model_uri} on http://{host}:{port} (POST /invocations)", err=True)
    if workers == 1:
        uvicorn.run(create_app(model), host=host, port=port, log_level="warning")
    else:
        os.environ[MODEL_DIR_ENV] = str(directory)
        uvicorn.run("eventflow.models.serving:app_from_environment", factory=True, host=host, port=port,
                    workers=workers, log_level="warning")


@models.command("build-docker")
@click.option("-m", "--model-uri", required=True, metavar="URI", help=URI_HELP)
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), default=Path("eventflow-model-docker"),
              show_default=True, help="Directory to write the build context into (must not exist or be empty).")
@click.option("--base-image", default=None, help="Base image. Default: python:<the model's major.minor>-slim.")
@_tracking
def build_docker(model_uri: str, output: Path, base_image: str | None, tracking_uri: str | None) -> None:
    """Write a self-contained Docker build context that serves the model.

    The context holds a Dockerfile, the model (verified against the log), its
    requirements, and eventflow itself, so `docker build` needs no eventflow on any
    index. The image runs `eventflow models serve` on port 8080.

    \b
    Examples:
      eventflow models build-docker -m runs:/0a1b2c3d/model -o churn-image
      docker build -t churn churn-image && docker run -p 8080:8080 churn
    """
    from eventflow.models.docker import write_context

    if output.exists() and any(output.iterdir()):
        raise click.ClickException(f"{output} exists and is not empty: give a new directory with --output")
    directory = _fetch_or_exit(model_uri, tracking_uri)
    write_context(directory, output, base_image=base_image)
    click.echo(f"wrote a Docker build context for {model_uri} to {output}")
    click.echo(f"build it with: docker build -t my-model {output}")
