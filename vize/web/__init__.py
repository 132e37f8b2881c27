"""Server-rendered web application (Jinja2 + small vanilla JS)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def install(app: FastAPI) -> None:
    """Add the web pages and static assets to ``app``."""
    from vize.web import (
        pages_account,
        pages_health,
        pages_models,
        pages_review,
        pages_tasks,
        pages_workspaces,
    )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    modules = (
        pages_account,
        pages_tasks,
        pages_models,
        pages_health,
        pages_review,
        pages_workspaces,
    )
    for module in modules:
        app.include_router(module.router)
