"""Readiness: can this process do its work now? Each dependency is checked for real (a query,
a ping, a storage request, the backbones loaded), with the error's kind (never its text: it
may hold a URL with a password) when it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from vize.api.deps import AppState

Check = dict[str, Any]


def _timed(fn: Callable[[], str | None]) -> Check:
    started = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__, "ms": _ms(started)}
    out: Check = {"ok": True, "ms": _ms(started)}
    if detail:
        out["detail"] = detail
    return out


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def check_database(state: AppState) -> str | None:
    with state.sessions() as db:
        db.execute(text("SELECT 1"))
    return None


def check_broker(state: AppState) -> str | None:
    import redis

    client = redis.Redis.from_url(
        state.settings.broker_url, socket_connect_timeout=2, socket_timeout=2
    )
    try:
        client.ping()
    finally:
        client.close()
    return None


def check_storage(state: AppState) -> str | None:
    blobs = state.blobs
    probe = getattr(blobs, "check", None)
    if probe is not None:
        probe()
    else:  # any store: a real request that must answer (absent is fine, an error is not)
        blobs.exists("health/probe")
    return None


def check_models(state: AppState) -> str | None:
    state.services.recognizer.warm_up()  # loads what the warm-up has not yet; a no-op once loaded
    return None


def readiness(state: AppState) -> dict[str, Check]:
    checks = {
        "database": _timed(lambda: check_database(state)),
        "storage": _timed(lambda: check_storage(state)),
        "models": _timed(lambda: check_models(state)),
    }
    if state.settings.broker_url:
        checks["broker"] = _timed(lambda: check_broker(state))
    return checks
