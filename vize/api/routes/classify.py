"""Classification endpoints: ``/v2/classify`` (JSON batches) and ``/v1/classify/`` (multipart)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from vize.api.deps import AppState, FieldsAfterAuth, HasCredentials, State, authenticate
from vize.api.routing import SlashRouter
from vize.errors import InvalidInput, PayloadTooLarge, VizeError
from vize.services import classify as svc
from vize.services import usage as usage_service
from vize.services.fetch import FetchBudget
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


@dataclass
class Ask:
    """What a classification asks for, read from the body after authentication."""

    task_id: Any
    version: Any
    records: list[Any]
    descriptor: bool


Parse = Callable[[AppState, dict[str, Any]], Ask]


@dataclass
class Admitted:
    user_id: str
    ask: Ask
    dep: svc.Deployed
    data: list[bytes | VizeError]  # per record: its bytes, or why there are none


def _admit(
    state: AppState, request: Request, fields: dict[str, Any] | VizeError, parse: Parse
) -> Admitted:
    """Everything before decoding: authentication (first: a bad token is a 401 whatever
    else), the body, limits, the model, and each record's bytes (``_url`` ones fetched)."""
    with state.sessions() as db:
        user = authenticate(request, state, db)
        if isinstance(fields, VizeError):
            raise fields
        ask = parse(state, fields)
        limiter = state.services.get("limiter")
        if limiter is not None:
            limiter.check(user.id, len(ask.records))
        recognizer = state.services["recognizer"]
        dep = svc.resolve(db, recognizer, state.blobs, user, ask.task_id, ask.version)
    budget = FetchBudget.start(state.settings, user.id, state.services)
    return Admitted(user.id, ask, dep, svc.record_data(state.settings, ask.records, budget))


def _infer(state: AppState, job: Admitted) -> dict[str, Any]:
    """Decoding, inference and the usage count in one task of the bounded inference pool, so
    decoding is bounded by the cores like inference."""
    recognizer: Recognizer = state.services["recognizer"]
    prepared = svc.decode_records(recognizer, job.data)
    good = [p for p in prepared if isinstance(p, Prepared)]
    probs = desc = None
    if good:
        probs, desc = recognizer.predict(job.dep.head, good)
        with state.sessions.begin() as db:
            usage_service.record_classifications(db, job.user_id, len(good))
    ask, dep = job.ask, job.dep
    results, ok = svc.build_records(dep, ask.records, prepared, probs, desc, ask.descriptor)  # type: ignore[arg-type]
    failed = len(ask.records) - ok
    return {
        "task_id": dep.task.id,
        "version": dep.model.version,
        "status": {"code": 200, "text": "OK" if not failed else f"{failed} record(s) failed"},
        "records": results,
    }


async def classify_batch(
    state: AppState, request: Request, fields: dict[str, Any] | VizeError, parse: Parse
) -> dict[str, Any]:
    # Admission (which fetches ``_url`` records from remote servers) runs in the general pool,
    # so slow URLs never hold the inference threads; decoding and inference go there after.
    job = await run_in_threadpool(_admit, state, request, fields, parse)
    pool = state.services["recognizer"].pool
    return await asyncio.get_running_loop().run_in_executor(pool, _infer, state, job)


def _v2_request(state: AppState, fields: dict[str, Any]) -> Ask:
    return Ask(
        task_id=fields.get("task_id") or fields.get("task"),
        version=fields.get("version"),
        records=svc.check_records(fields.get("records")),
        descriptor=str(fields.get("descriptor", 0)).lower() in ("1", "true"),
    )


@router.post("/classify/", summary="Classify up to 10 images", openapi_extra=CLASSIFY_DOC)
async def classify_v2(
    request: Request, state: State, _: HasCredentials, fields: FieldsAfterAuth
) -> dict[str, Any]:
    return await classify_batch(state, request, fields, _v2_request)


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
async def classify_v1(
    request: Request, state: State, _: HasCredentials, fields: FieldsAfterAuth
) -> dict[str, Any]:
    out = await classify_batch(state, request, fields, _v1_request)
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


def _v1_request(state: AppState, fields: dict[str, Any]) -> Ask:
    return Ask(
        task_id=fields.get("task") or fields.get("task_id"),
        version=fields.get("version"),
        records=[_v1_record(state, fields)],
        descriptor=False,
    )


def _v1_record(state: AppState, fields: dict[str, Any]) -> dict[str, Any]:
    upload = fields.get("image_file") or fields.get("image")
    if isinstance(upload, UploadFile):
        # The spooled file itself: this runs in a worker thread, not on the event loop.
        data = upload.file.read(state.settings.max_upload_bytes + 1)
        if len(data) > state.settings.max_upload_bytes:
            raise PayloadTooLarge("Image is larger than the limit.")
        return {"_raw": data}
    if fields.get("image_url"):
        return {"_url": fields["image_url"]}
    if fields.get("image_base64"):
        return {"_base64": fields["image_base64"]}
    raise InvalidInput("Send 'image_file', 'image_url' or 'image_base64'.", code="required")
