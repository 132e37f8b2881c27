"""Classification endpoints: ``/v2/classify`` (JSON batches) and ``/v1/classify/`` (multipart)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from vize.api.deps import AppState, CurrentUser, Fields, State
from vize.api.routing import SlashRouter
from vize.db.tables import User
from vize.errors import InvalidInput, PayloadTooLarge, VizeError
from vize.services import classify as svc
from vize.services import usage as usage_service
from vize.services.recognition import Prepared, Recognizer

router = SlashRouter(tags=["classification"])
v1_router = SlashRouter(tags=["classification"])

CLASSIFY_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["records"],
                    "properties": {
                        "task_id": {"type": "string", "format": "uuid"},
                        "task": {"type": "string", "format": "uuid"},
                        "version": {"type": "integer"},
                        "descriptor": {"type": "integer", "enum": [0, 1]},
                        "records": {
                            "type": "array",
                            "maxItems": 10,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "_url": {"type": "string"},
                                    "_base64": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            }
        }
    }
}


def _resolve_and_prepare(
    state: AppState, user: User, task_id: Any, version: Any, records: list[Any]
) -> tuple[svc.Deployed, list[Prepared | VizeError]]:
    """Everything before inference in one worker-thread hop: limits, model, decoding."""
    limiter = state.services.get("limiter")
    if limiter is not None:
        limiter.check(user.id, len(records))
    with state.sessions() as db:
        dep = svc.resolve(db, state.services["recognizer"], state.blobs, user, task_id, version)
    prepared = svc.prepare_records(state.services["recognizer"], state.settings, records)
    return dep, prepared


def _predict_and_count(
    state: AppState, user_id: str, head: Any, good: list[Prepared]
) -> tuple[Any, Any]:
    """Inference, then the usage count, in the same pool thread (no extra hop)."""
    probs, desc = state.services["recognizer"].predict(head, good)
    with state.sessions.begin() as db:
        usage_service.record_classifications(db, user_id, len(good))
    return probs, desc


async def classify_batch(
    state: AppState, user: User, task_id: Any, version: Any, records: list[Any], descriptor: bool
) -> dict[str, Any]:
    recognizer: Recognizer = state.services["recognizer"]
    dep, prepared = await run_in_threadpool(
        _resolve_and_prepare, state, user, task_id, version, records
    )
    good = [p for p in prepared if isinstance(p, Prepared)]
    probs = desc = None
    if good:
        loop = asyncio.get_running_loop()
        probs, desc = await loop.run_in_executor(
            recognizer.pool, _predict_and_count, state, user.id, dep.head, good
        )
    results, ok = svc.build_records(dep, records, prepared, probs, desc, descriptor)  # type: ignore[arg-type]
    failed = len(records) - ok
    return {
        "task_id": dep.task.id,
        "version": dep.model.version,
        "status": {"code": 200, "text": "OK" if not failed else f"{failed} record(s) failed"},
        "records": results,
    }


@router.post("/classify/", summary="Classify up to 10 images", openapi_extra=CLASSIFY_DOC)
async def classify_v2(state: State, user: CurrentUser, fields: Fields) -> dict[str, Any]:
    records = svc.check_records(fields.get("records"))
    descriptor = str(fields.get("descriptor", 0)).lower() in ("1", "true")
    task_id = fields.get("task_id") or fields.get("task")
    return await classify_batch(state, user, task_id, fields.get("version"), records, descriptor)


V1_DOC = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["task"],
                    "properties": {
                        "task": {"type": "string"},
                        "image_file": {"type": "string", "format": "binary"},
                        "image_url": {"type": "string"},
                        "image_base64": {"type": "string"},
                        "version": {"type": "integer"},
                    },
                }
            }
        }
    }
}


@v1_router.post("/classify/", summary="Classify one image (Vize v1)", openapi_extra=V1_DOC)
async def classify_v1(state: State, user: CurrentUser, fields: Fields) -> dict[str, Any]:
    record = await _v1_record(state, fields)
    task_id = fields.get("task") or fields.get("task_id")
    out = await classify_batch(state, user, task_id, fields.get("version"), [record], False)
    rec = out["records"][0]
    if rec["_status"]["code"] != 200:
        raise VizeError(
            rec["_status"]["text"],
            code=rec["_status"].get("error", "invalid"),
            status=rec["_status"]["code"],
        )
    best = {**rec["best_label"], "label_name": rec["best_label"]["name"]}
    return {
        "status": out["status"],
        "task_id": out["task_id"],
        "version": out["version"],
        "best_label": best,
        "labels": rec["labels"],
    }


async def _v1_record(state: AppState, fields: dict[str, Any]) -> dict[str, Any]:
    upload = fields.get("image_file") or fields.get("image")
    if isinstance(upload, UploadFile):
        data = await upload.read(state.settings.max_upload_bytes + 1)
        if len(data) > state.settings.max_upload_bytes:
            raise PayloadTooLarge("Image is larger than the limit.")
        return {"_raw": data}
    if fields.get("image_url"):
        return {"_url": fields["image_url"]}
    if fields.get("image_base64"):
        return {"_base64": fields["image_base64"]}
    raise InvalidInput("Send 'image_file', 'image_url' or 'image_base64'.", code="required")
