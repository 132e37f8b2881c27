"""``POST /v2/similar`` (similarity search) and ``/v2/task/{id}/insights/`` (data health)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Query, Request
from starlette.concurrency import run_in_threadpool

from vize.api.deps import (
    AppState,
    CurrentCaller,
    FieldsAfterAuth,
    HasCredentials,
    State,
    authenticate,
)
from vize.api.routing import SlashRouter, min_role
from vize.api.schemas import base_url
from vize.db.states import Role
from vize.errors import VizeError
from vize.services import insights as insights_service
from vize.services import search as svc
from vize.services import similarity
from vize.services.fairpool import Priority

router = SlashRouter(tags=["similarity"])

SIMILAR_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["task_id", "records"],
                    "properties": {
                        "task_id": {"type": "string", "format": "uuid"},
                        "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                        "label": {"type": "string", "format": "uuid"},
                        "records": {
                            "type": "array",
                            "maxItems": 10,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "_url": {"type": "string"},
                                    "_base64": {"type": "string"},
                                    "_id": {"type": "string", "format": "uuid"},
                                },
                            },
                        },
                    },
                }
            }
        }
    }
}


def _admit(state: AppState, request: Request, fields: dict[str, Any] | VizeError) -> Any:
    with state.sessions() as db:
        caller = authenticate(request, state, db)  # first: a bad token is a 401 whatever else
    if isinstance(fields, VizeError):
        raise fields
    services = state.services
    budget = services.fetcher.budget(state.settings, caller.actor)
    return svc.admit(
        state.sessions,
        state.blobs,
        services.recognizer,
        state.settings,
        caller,
        fields,
        budget,
        limiter=services.limiter,
        on_pending=services.after_upload,
    )


@router.post(
    "/similar/", summary="Find your most similar training images", openapi_extra=SIMILAR_DOC
)
@min_role(Role.VIEWER)  # a search: it changes nothing
async def similar(
    request: Request, state: State, _: HasCredentials, fields: FieldsAfterAuth
) -> dict[str, Any]:
    job = await run_in_threadpool(_admit, state, request, fields)
    recognizer = state.services.recognizer
    # Decoding, the backbones and the scan in the fair pool, keyed by the caller like
    # classification; a large task's scan is costly (at most the user's share of workers).
    future = recognizer.pool.submit_for(
        job.user_id,
        Priority.INTERACTIVE,
        svc.answer,
        state.sessions,
        state.blobs,
        recognizer,
        state.settings,
        job,
        capped=job.costly,
    )
    await asyncio.wrap_future(future)
    root = base_url(request, state.settings)
    prefix = "/recognition/v2" if request.url.path.startswith("/recognition/") else "/v2"

    def thumb(image_id: str) -> str:
        return f"{root}{prefix}/training-image/{image_id}/thumb"

    records, failed = await run_in_threadpool(svc.results, state.sessions, job, thumb)
    return {
        "task_id": job.task.id,
        "status": {"code": 200, "text": "OK" if not failed else f"{failed} record(s) failed"},
        "records": records,
        # Task images not searched: their embedding is under way in the background.
        "not_indexed": job.not_indexed,
    }


@router.get("/task/{task_id}/insights/", summary="Near-duplicates, suspected mislabels, test leaks")
def insights(
    task_id: str,
    state: State,
    caller: CurrentCaller,
    recompute: bool = Query(False, description="Recompute now instead of the stored report."),
) -> dict[str, Any]:
    return insights_service.get_insights(
        state.sessions, state.blobs, state.services.recognizer, caller, task_id, recompute
    )


def upload_duplicates(state: AppState, workspace_id: str, image_id: str) -> list[str]:
    """The upload route's hook: ids of the workspace's images the new one nearly duplicates."""
    recognizer = state.services.recognizer
    return similarity.near_duplicates_of(
        state.sessions, state.blobs, recognizer, workspace_id, image_id
    )
