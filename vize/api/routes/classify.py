"""Classification endpoints: ``/v2/classify`` (JSON batches) and ``/v1/classify/`` (multipart)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from vize.api.deps import (
    ClassifierDep,
    FieldsAfterAuth,
    HasCredentials,
    SettingsDep,
    authenticate,
)
from vize.api.routing import SlashRouter, min_role
from vize.db.states import Role
from vize.errors import InvalidInput, PayloadTooLarge, VizeError
from vize.services import unknown
from vize.services.classify import Ask, Classifier, Parse, parse_v2, truthy
from vize.services.fairpool import Priority

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
                        "threshold": {
                            "description": "off | auto | a probability: below it the "
                            "answer is 'unknown' (default: the task's 'unknown' setting)"
                        },
                        "store_images": {
                            "type": "boolean",
                            "description": "Keep the images with their answers for review",
                        },
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


async def classify_batch(
    classifier: Classifier, request: Request, fields: dict[str, Any] | VizeError, parse: Parse
) -> dict[str, Any]:
    """Admission (which fetches ``_url`` records) in the general pool, then decoding and
    inference as one task of the bounded inference pool (see ``Classifier``)."""
    authenticate_now = partial(authenticate, request, request.app.state.vize)
    job = await run_in_threadpool(classifier.admit, authenticate_now, fields, parse)
    # Keyed by user and cost: one client's flood of costly images cannot hold every worker.
    future = classifier.pool.submit_for(
        job.caller.actor, Priority.INTERACTIVE, classifier.infer, job, capped=job.costly
    )
    return await asyncio.wrap_future(future)


@router.post("/classify/", summary="Classify up to 10 images", openapi_extra=CLASSIFY_DOC)
@min_role(Role.VIEWER)  # viewers read and classify
async def classify_v2(
    request: Request, classifier: ClassifierDep, _: HasCredentials, fields: FieldsAfterAuth
) -> dict[str, Any]:
    return await classify_batch(classifier, request, fields, parse_v2)


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
                        "threshold": {"type": "string"},
                        "store_images": {"type": "boolean"},
                    },
                }
            }
        }
    }
}


@v1_router.post("/classify/", summary="Classify one image (Vize v1)", openapi_extra=V1_DOC)
@min_role(Role.VIEWER)
async def classify_v1(
    request: Request,
    classifier: ClassifierDep,
    settings: SettingsDep,
    _: HasCredentials,
    fields: FieldsAfterAuth,
) -> dict[str, Any]:
    parse = partial(_v1_request, settings.max_upload_bytes)
    out = await classify_batch(classifier, request, fields, parse)
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


def _v1_request(max_bytes: int, fields: dict[str, Any]) -> Ask:
    return Ask(
        task_id=fields.get("task") or fields.get("task_id"),
        version=fields.get("version"),
        records=[_v1_record(max_bytes, fields)],
        descriptor=False,
        threshold=unknown.parse_setting(fields.get("threshold")),
        store_images=truthy(fields.get("store_images")),
    )


def _v1_record(max_bytes: int, fields: dict[str, Any]) -> dict[str, Any]:
    upload = fields.get("image_file") or fields.get("image")
    if isinstance(upload, UploadFile):
        # The spooled file itself: this runs in a worker thread, not on the event loop.
        data = upload.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PayloadTooLarge("Image is larger than the limit.")
        return {"_raw": data}
    if fields.get("image_url"):
        return {"_url": fields["image_url"]}
    if fields.get("image_base64"):
        return {"_base64": fields["image_base64"]}
    raise InvalidInput("Send 'image_file', 'image_url' or 'image_base64'.", code="required")
