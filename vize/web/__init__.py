"""Server-rendered web application (Jinja2 + small vanilla JS)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Add the web pages and static assets to ``app`` (filled in by the web UI work)."""
