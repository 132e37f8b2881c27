"""Application factory: ``create_app(settings)`` assembles everything; nothing is module-level."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from itsdangerous import URLSafeTimedSerializer

from vize import __version__, web
from vize.api.deps import AppState, authenticate_scope
from vize.api.limits import install_request_gate
from vize.api.routes import account, classify, images, labels, models, tasks, training
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.db.migrate import upgrade
from vize.errors import install_error_handlers
from vize.observability.http import install_operations
from vize.observability.lifecycle import start_operations
from vize.storage import open_blob_store

API_PREFIXES = ("/v2", "/recognition/v2")
Extension = Callable[[FastAPI, AppState], Any]


def load_secret(settings: Settings) -> str:
    """The configured secret, else one generated on first start and kept in the data dir."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def api_router() -> APIRouter:
    router = APIRouter()
    for module in (tasks, labels, images, account, training, models, classify):
        router.include_router(module.router)
    return router


def create_app(
    settings: Settings | None = None, extensions: list[Extension] | None = None
) -> FastAPI:
    settings = settings or Settings()
    hooks = list(extensions or []) + default_extensions()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        upgrade(engine)
        state = AppState(
            settings=settings,
            sessions=make_sessionmaker(engine),
            blobs=open_blob_store(settings),
            signer=URLSafeTimedSerializer(load_secret(settings), salt="vize-session"),
            services={},
        )
        app.state.vize = state
        closers = []
        for hook in hooks:
            closer = hook(app, state)
            if closer is not None:
                closers.append(closer)
        try:
            yield
        finally:
            for closer in reversed(closers):
                closer()
            engine.dispose()

    app = FastAPI(
        title="Vize",
        version=__version__,
        description="Trainable image recognition API (Vize / Ximilar compatible).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    install_request_gate(app, settings, authenticate_scope)
    install_operations(app, settings)  # outermost: request ids, logs, metrics, health
    router = api_router()
    app.include_router(router, prefix=API_PREFIXES[0])
    app.include_router(router, prefix=API_PREFIXES[1], include_in_schema=False)
    app.include_router(classify.v1_router, prefix="/v1")
    _add_meta_routes(app)
    web.install(app)
    return app


def default_extensions() -> list[Extension]:
    return [install_jobs, start_operations]  # operations last: it uses the jobs' services


def install_jobs(app: FastAPI, state: AppState) -> Callable[[], None]:
    """Recognizer for serving, job context and runner; returns the shutdown callback."""
    from vize.jobs.setup import build_context, make_runner, queue_embedding
    from vize.services.limits import Counter, Limiter
    from vize.services.recognition import Recognizer

    recognizer = Recognizer(state.settings)
    # Embedded mode trains with the serving sessions: one copy of each backbone in memory
    # (bench/memory_bench.py), and a training cannot take both cores from classification.
    shared = None if state.settings.broker_url else recognizer
    ctx = build_context(
        state.settings, sessions=state.sessions, blobs=state.blobs, recognizer=shared
    )
    runner = make_runner(ctx)
    counter = Counter(state.settings.broker_url)
    limiter = Limiter(
        state.sessions,
        counter,
        state.settings.classify_rate_per_minute,
        state.settings.monthly_quota,
    )
    state.services.update(
        counter=counter,
        limiter=limiter,
        recognizer=recognizer,
        runner=runner,
        job_context=ctx,
        after_upload=(
            (lambda owner_id: queue_embedding(ctx, runner, owner_id))
            if state.settings.embed_on_upload
            else (lambda owner_id: None)
        ),
    )
    if state.settings.embedded_worker:  # off: jobs wait in the table (tests, API-only nodes)
        runner.start()
    if state.settings.warm_up:
        # Convert/load the backbones now, off the request path, not on the first request.
        threading.Thread(target=_warm_up, args=(recognizer,), daemon=True).start()

    def close() -> None:
        runner.stop()
        recognizer.close()
        if ctx.services["trainer_recognizer"] is not recognizer:
            ctx.services["trainer_recognizer"].close()

    return close


def _warm_up(recognizer: Any) -> None:
    try:
        recognizer.warm_up()
    except Exception:  # a broken backbone is reported by the request that needs it
        logging.getLogger("vize").exception("backbone warm-up failed")


def _add_meta_routes(app: FastAPI) -> None:
    @app.get("/recognition/swagger/", include_in_schema=False)
    @app.get("/recognition/swagger", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Vize API")

    @app.get("/health", tags=["meta"], summary="Liveness and version")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}
