"""Application factory: ``create_app(settings)`` assembles everything; nothing is module-level."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.orm import Session, sessionmaker

from vize import __version__, web
from vize.api.deps import AppState, Services, authenticate_scope, note_workspace
from vize.api.docs import install_docs
from vize.api.limits import install_request_gate
from vize.api.routes import (
    account,
    classify,
    images,
    labels,
    models,
    review,
    similar,
    tasks,
    training,
    workspaces,
)
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.db.migrate import upgrade
from vize.errors import install_error_handlers
from vize.jobs.runners import JobRunner
from vize.jobs.setup import build_context, make_runner, queue_embedding
from vize.observability.http import install_operations
from vize.observability.lifecycle import start_operations
from vize.observability.metrics import Metrics
from vize.services.backlog import EmbedBacklog
from vize.services.classify import Classifier
from vize.services.fetch import UrlFetcher
from vize.services.limits import Counter, Limiter
from vize.services.orphans import OrphanSweeper
from vize.services.recognition import Recognizer, check_backbones
from vize.services.review import Review
from vize.services.workspaces import Caller
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
    router = APIRouter(dependencies=[Depends(note_workspace)])
    modules = (
        tasks,
        labels,
        images,
        account,
        training,
        models,
        classify,
        similar,
        review,
        workspaces,
    )
    for module in modules:
        router.include_router(module.router)
    return router


def create_app(
    settings: Settings | None = None, extensions: list[Extension] | None = None
) -> FastAPI:
    """``extensions`` run in the lifespan on the state before the services are built on it
    (tests swap the blob store or hook the sessions there)."""
    settings = settings or Settings()
    check_backbones(settings.backbone_list)  # a bad VIZE_BACKBONE fails here, not at a request
    hooks = list(extensions or [])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        upgrade(engine)
        state = AppState(
            settings=settings,
            sessions=make_sessionmaker(engine),
            blobs=open_blob_store(settings),
            signer=URLSafeTimedSerializer(load_secret(settings), salt="vize-session"),
        )
        app.state.vize = state
        # No orphan sweep here: the background sweeper (start_operations) runs one right
        # after start, off the start-up path, and one node at a time.
        closers = [closer for hook in hooks if (closer := hook(app, state)) is not None]
        with ExitStack() as stack:
            stack.callback(engine.dispose)
            for closer in closers:
                stack.callback(closer)
            state.services = build_services(state, stack)
            # Registered last, so it stops first: the sweeper, and the running jobs handed
            # back before the runner is stopped.
            stack.callback(start_operations(state))
            yield

    app = FastAPI(
        title="Vize",
        version=__version__,
        description="Trainable image recognition API (Vize / Ximilar compatible).",
        lifespan=lifespan,
        docs_url=None,  # served by vize.api.docs from the installed Swagger UI package
        redoc_url=None,
    )
    install_error_handlers(app)
    install_request_gate(app, settings, authenticate_scope)
    install_operations(app, settings)  # outermost: request ids, logs, metrics, health
    router = api_router()
    app.include_router(router, prefix=API_PREFIXES[0])
    app.include_router(router, prefix=API_PREFIXES[1], include_in_schema=False)
    app.include_router(classify.v1_router, prefix="/v1", dependencies=[Depends(note_workspace)])
    app.include_router(
        account.ximilar_router, prefix="/account/v2", dependencies=[Depends(note_workspace)]
    )
    _add_meta_routes(app)
    web.install(app)
    return app


def build_services(state: AppState, stack: ExitStack) -> Services:
    """The recognizer, limits, classifier and job runner; ``stack`` closes them (in reverse
    order: the runner and any thread first, then the pools they use)."""
    settings = state.settings
    recognizer = Recognizer(settings)
    stack.callback(recognizer.close)
    jobs = None
    if not settings.broker_url:
        # Embedded mode trains with the serving sessions: one copy of each backbone in memory
        # (bench/memory_bench.py), and a training cannot take both cores from classification.
        # With a broker the workers train; this process only sends them job ids.
        jobs = build_context(settings, state.sessions, state.blobs, recognizer)
    runner = make_runner(settings, jobs)
    stack.callback(runner.stop)
    counter = Counter(settings.broker_url)
    limiter = Limiter(
        state.sessions, counter, settings.classify_rate_per_minute, settings.monthly_quota
    )
    if settings.embedded_worker:  # off: jobs wait in the table (tests, API-only nodes)
        runner.start()
    if settings.warm_up:
        # Convert/load the backbones now, off the request path, not on the first request;
        # joined at shutdown, so it never outlives the app (nor runs into a closed pool).
        warm = threading.Thread(target=_warm_up, args=(recognizer,), name="vize-warm-up")
        warm.start()
        stack.callback(warm.join)
    fetcher = UrlFetcher(settings)
    metrics = Metrics(state.sessions, recognizer.pool.queued)
    # Counted where the embedding happens: trainings and embed jobs of this process.
    recognizer.on_embeddings = metrics.observe_embeddings
    classifier = Classifier(settings, state.sessions, state.blobs, recognizer, limiter, fetcher)
    classifier.on_stored = Review(settings, state.sessions, state.blobs).store  # store_images
    return Services(
        counter=counter,
        limiter=limiter,
        recognizer=recognizer,
        classifier=classifier,
        runner=runner,
        jobs=jobs,
        after_upload=(
            partial(_after_upload, recognizer.backlog, state.sessions, runner)
            if settings.embed_on_upload
            else _nothing
        ),
        # Only a process that embeds its uploads itself can tell its backlog.
        admit_upload=(
            recognizer.backlog.admit
            if settings.embed_on_upload and not settings.broker_url
            else _admit_all
        ),
        fetcher=fetcher,
        metrics=metrics,
        sweeper=(
            OrphanSweeper(state.sessions, state.blobs, settings) if settings.orphan_sweep else None
        ),
    )


def _nothing(caller: Caller, images: int) -> None:
    return None


def _admit_all(workspace_id: str) -> None:
    return None


def _after_upload(
    backlog: EmbedBacklog,
    sessions: sessionmaker[Session],
    runner: JobRunner,
    caller: Caller,
    images: int,
) -> None:
    backlog.added(caller.workspace_id, images)  # embed jobs run per workspace
    queue_embedding(sessions, runner, caller)


def _warm_up(recognizer: Recognizer) -> None:
    try:
        recognizer.warm_up()
    except Exception:  # a broken backbone is reported by the request that needs it
        logging.getLogger("vize").exception("backbone warm-up failed")


def _add_meta_routes(app: FastAPI) -> None:
    install_docs(app)

    @app.get("/health", tags=["meta"], summary="Liveness and version")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}
