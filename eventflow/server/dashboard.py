"""The dashboard's page and static files: served from the installed package.

The page is plain JavaScript modules under ``dashboard/`` (package data). Charts are
Plotly's, taken from the installed ``plotly`` Python package — its wheel carries
``plotly.min.js`` — and the lineage graph is vis-network's, taken from the installed
``pyvis`` package (its wheel carries ``vis-network.min.js``), so nothing is fetched from a
CDN and no third-party code lives in this repository. pyvis comes with ``eventflow[lineage]``
(it brings IPython and networkx); without it the graph's place says what to install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent / "dashboard"


def plotly_js() -> Path:
    """plotly.min.js inside the installed plotly package."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def vis_network_js() -> Path:
    """vis-network.min.js (the standalone build, with its DataSet) inside the installed pyvis
    package; without pyvis, a stand-in of ours that shows how to install it."""
    try:
        return Path(str(resources.files("pyvis") / "lib" / "vis-9.1.2" / "vis-network.min.js"))
    except ModuleNotFoundError:
        return HERE / "vis-missing.js"


def routes() -> list[Route | Mount]:
    async def index(request: Request) -> Response:
        return FileResponse(HERE / "index.html", headers={"cache-control": "no-cache"})

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript", headers={"cache-control": "max-age=86400"})

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico whatever the page says; an SVG answers it.
        return FileResponse(HERE / "favicon.svg", media_type="image/svg+xml", headers={"cache-control": "max-age=86400"})

    async def vis_network(request: Request) -> Response:
        return FileResponse(vis_network_js(), media_type="text/javascript", headers={"cache-control": "max-age=86400"})

    return [
        Route("/", index, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/static/vendor/plotly.min.js", plotly, methods=["GET"]),
        Route("/static/vendor/vis-network.min.js", vis_network, methods=["GET"]),
        Mount("/static/dashboard", StaticFiles(directory=HERE), name="dashboard"),
    ]
