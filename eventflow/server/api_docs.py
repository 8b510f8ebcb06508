"""``/api/2.0/eventflow/docs``: the OpenAPI document, browsable.

The page is Swagger UI, served from the installed ``swagger-ui-bundle`` package (its wheel
carries the built ``swagger-ui-bundle.js`` and ``swagger-ui.css``), as the dashboard serves
Plotly from ``plotly``: nothing is fetched from a CDN and no third-party code lives in this
repository. Without the package (``pip install 'eventflow[docs]'``) the page says so.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

PATH = "/api/2.0/eventflow/docs"
PAGE = Path(__file__).parent / "dashboard" / "api-docs.html"
# Only what the page loads: the package's other files (templates, source maps) stay unserved.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
MISSING = "The API docs page needs Swagger UI: pip install 'eventflow[docs]' (the swagger-ui-bundle package). " \
          "The document itself is at /api/2.0/eventflow/openapi.json."


def swagger_ui_directory() -> Path | None:
    """The built Swagger UI inside the installed swagger-ui-bundle package, or None."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


def routes() -> list[Route]:
    async def page(request: Request) -> Response:
        if swagger_ui_directory() is None:
            return PlainTextResponse(MISSING, status_code=501)
        return FileResponse(PAGE, headers={"cache-control": "no-cache"})

    async def page_script(request: Request) -> Response:
        return FileResponse(PAGE.with_suffix(".js"), media_type="text/javascript", headers={"cache-control": "no-cache"})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        directory = swagger_ui_directory()
        if name not in ASSETS or directory is None:
            return PlainTextResponse(MISSING if directory is None else f"no such file: {name}", status_code=404)
        return FileResponse(directory / name, media_type=ASSETS[name], headers={"cache-control": "max-age=86400"})

    return [
        Route(PATH, page, methods=["GET"]),
        Route(PATH + "/api-docs.js", page_script, methods=["GET"]),
        Route(PATH + "/{name}", asset, methods=["GET"]),
    ]
