"""The browsable API docs at /api/2.0/eventflow/docs, in real headless Chromium: Swagger UI
(from the installed ``swagger-ui-bundle`` package, nothing copied into the repository)
renders every operation of /api/2.0/eventflow/openapi.json (issue 16)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from browsing import browser, page  # noqa: F401 - fixtures
from serving import server  # noqa: F401 - fixture

swagger_ui_bundle = pytest.importorskip("swagger_ui_bundle")

DOCS = "/api/2.0/eventflow/docs"
METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(url: str) -> list[tuple[str, str]]:
    document = httpx.get(url + "/api/2.0/eventflow/openapi.json", timeout=30).json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS]


def test_the_docs_page_renders_every_operation(server, page):  # noqa: F811 - fixtures
    operations = _operations(server)
    assert len(operations) > 50
    page.goto(server + DOCS)
    blocks = page.locator(".opblock")
    blocks.first.wait_for(timeout=30_000)
    page.wait_for_function(f"document.querySelectorAll('.opblock').length >= {len(operations)}", timeout=60_000)
    assert blocks.count() == len(operations)
    shown = set(zip(page.locator(".opblock .opblock-summary-method").all_inner_texts(),
                    [p.replace("\u200b", "") for p in page.locator(".opblock .opblock-summary-path").all_inner_texts()]))
    assert ("POST", "/api/2.0/mlflow/runs/create") in shown
    assert shown == set(operations)
    assert "eventflow" in page.locator(".info .title").inner_text()


def test_the_assets_are_the_installed_packages(server):  # noqa: F811 - fixture
    installed = Path(swagger_ui_bundle.swagger_ui_path)
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        answer = httpx.get(f"{server}{DOCS}/{name}", timeout=30)
        assert answer.status_code == 200, name
        assert answer.content == (installed / name).read_bytes()
    assert httpx.get(f"{server}{DOCS}/index.j2", timeout=30).status_code == 404  # only the assets the page uses
