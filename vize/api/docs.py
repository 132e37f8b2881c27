"""The interactive API reference (Swagger UI) at ``/docs`` and ``/recognition/swagger/``,
served entirely by this process: the Swagger UI files come from the installed
``swagger-ui-py`` package (no CDN, no copy in this repository), so the page works offline,
as a self-hosted service must. A bar above it links back to the app."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from vize import __version__

ASSETS_URL = "/docs/assets"
# The page's own script sets Swagger UI up (no inline script); Swagger UI styles some
# elements inline, hence 'unsafe-inline' for styles only.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>API reference · Vize</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="stylesheet" href="/static/docs.css?v={version}">
  <script src="{assets}/swagger-ui-bundle.js" defer></script>
  <script src="/static/js/docs.js?v={version}" defer></script>
</head>
<body>
  <header class="docs-bar">
    <a class="docs-brand" href="/tasks">
      <img src="/static/favicon.svg" alt="" width="22" height="22"> Vize
    </a>
    <span class="docs-title">API reference</span>
    <a class="docs-back" href="/tasks">← Back to the app</a>
  </header>
  <div id="swagger-ui" data-openapi-url="/openapi.json"></div>
</body>
</html>
"""


def swagger_assets() -> Path:
    """The ``static`` folder of the installed swagger-ui-py (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (pip install swagger-ui-py)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=swagger_assets()), name="swagger-ui")
    html = PAGE.format(assets=ASSETS_URL, version=__version__)
    headers = {"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"}

    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    for path in ("/docs", "/recognition/swagger/", "/recognition/swagger"):
        app.add_api_route(path, docs, methods=["GET"], include_in_schema=False)
