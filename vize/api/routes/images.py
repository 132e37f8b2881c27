"""/v2/training-image/ — upload (file or JSON batch), list, label, serve to the owner."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from vize.api.deps import (
    DB,
    Blobs,
    CurrentUser,
    Fields,
    PagingDep,
    SettingsDep,
    State,
    strict_json,
)
from vize.api.routes.similar import upload_duplicates
from vize.api.routing import SlashRouter, body_doc
from vize.api.schemas import ImagePatch, LabelIdIn, base_url, image_out, page_out
from vize.config import Settings
from vize.db.tables import Label, User
from vize.errors import InvalidInput, NotFound, PayloadTooLarge, VizeError
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service
from vize.services.fetch import record_bytes
from vize.storage import BlobStore

router = SlashRouter(prefix="/training-image", tags=["training images"])
MAX_BATCH = 100

UPLOAD_DOC = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "img_path": {"type": "string", "format": "binary"},
                        "labels": {"type": "array", "items": {"type": "string"}},
                        "meta_data": {"type": "string", "description": "JSON object"},
                        "test_image": {"type": "boolean"},
                    },
                    "required": ["img_path"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "records": {
                            "type": "array",
                            "items": {"type": "object"},
                            "description": "Each with _base64 or _url, labels, meta_data",
                        }
                    },
                }
            },
        }
    }
}


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            out.extend(_as_list(v))
        return out
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(v) for v in strict_json(text)]
        except ValueError as exc:
            raise InvalidInput("labels must be a list of label ids.", code="invalid") from exc
    return [part.strip() for part in text.split(",") if part.strip()]


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _meta(value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = strict_json(value)
        except ValueError as exc:
            raise InvalidInput(
                "meta_data must be a JSON object.", code="invalid_meta_data"
            ) from exc
    if not isinstance(value, dict):
        raise InvalidInput("meta_data must be a JSON object.", code="invalid_meta_data")
    return value


def _labels(db: DB, user: User, fields: dict[str, Any]) -> list[Label]:
    ids = _as_list(fields.get("labels")) + _as_list(fields.get("label_id"))
    return [labels_service.get_label(db, user, lid) for lid in dict.fromkeys(ids)]


def _store(
    request: Request,
    settings: Settings,
    user: User,
    data: bytes,
    fields: dict[str, Any],
    file_name: str,
    db: Session,
    blobs: BlobStore,
) -> tuple[images_service.Upload, dict[str, Any]]:
    up = images_service.upload_image(
        db,
        blobs,
        settings,
        user,
        data,
        file_name=file_name,
        labels=_labels(db, user, fields),
        meta_data=_meta(fields.get("meta_data")),
        test_image=_bool(fields.get("test_image", False)),
    )
    if not up.created:
        for label in _labels(db, user, fields):
            images_service.add_label(db, up.image, label)
    return up, image_out(up.image, base_url(request, settings))


def _duplicate_body(image_json: dict[str, Any]) -> dict[str, Any]:
    return {
        **image_json,
        "detail": f"Image already exists: {image_json['id']}",
        "code": "already_exists",
    }


@router.post("/", status_code=201, summary="Upload training image(s)", openapi_extra=UPLOAD_DOC)
async def upload(
    request: Request, response: Response, state: State, user: CurrentUser, fields: Fields
) -> dict[str, Any]:
    if "records" in fields:
        return await _upload_batch(request, response, state, user, fields)
    upload_file = fields.get("img_path") or fields.get("file")
    if not isinstance(upload_file, UploadFile):
        raise InvalidInput(
            "Send the image as multipart field 'img_path' (or JSON 'records').", code="required"
        )
    data = await upload_file.read(state.settings.max_upload_bytes + 1)
    if len(data) > state.settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"Image is larger than {state.settings.max_upload_bytes // (1024 * 1024)} MB."
        )

    def work() -> dict[str, Any]:
        name = upload_file.filename or ""
        store = partial(_store, request, state.settings, user, data, fields, name)
        up, out = images_service.store_upload(state.sessions, state.blobs, store)
        if not up.created:
            response.status_code = 200
            return _duplicate_body(out)
        out["near_duplicate_of"] = upload_duplicates(state, user.id, up.image.id)
        state.services["after_upload"](user.id)
        return out

    return await run_in_threadpool(work)


async def _upload_batch(
    request: Request, response: Response, state: State, user: User, fields: dict[str, Any]
) -> dict[str, Any]:
    records = fields["records"]
    if not isinstance(records, list) or not records:
        raise InvalidInput("'records' must be a non-empty list.", code="invalid_records")
    if len(records) > MAX_BATCH:
        raise InvalidInput(f"At most {MAX_BATCH} records per request.", code="too_many_records")
    results = [await run_in_threadpool(_one_record, request, state, user, r) for r in records]
    created = [r["id"] for r in results if r.get("_status", {}).get("code") == 201]
    if created:
        state.services["after_upload"](user.id)
    failed = sum(1 for r in results if r["_status"]["code"] >= 400)
    response.status_code = 200
    return {
        "records": results,
        "status": {"code": 200, "text": "OK" if not failed else f"{failed} record(s) failed"},
    }


def _one_record(request: Request, state: Any, user: User, record: Any) -> dict[str, Any]:
    """One record, one transaction: its failure is reported in place and touches no other."""
    settings: Settings = state.settings
    echo = {k: v for k, v in record.items() if k != "_base64"} if isinstance(record, dict) else {}
    try:
        if not isinstance(record, dict):
            raise InvalidInput("Each record must be a JSON object.", code="invalid_record")
        data = record_bytes(record, settings)
        name = str(record.get("file_name", ""))
        store = partial(_store, request, settings, user, data, record, name)
        up, out = images_service.store_upload(state.sessions, state.blobs, store)
        if up.created:
            out["near_duplicate_of"] = upload_duplicates(state, user.id, up.image.id)
            return {**echo, **out, "_status": {"code": 201, "text": "Created"}}
        return {**echo, **_duplicate_body(out), "_status": {"code": 200, "text": out["id"]}}
    except VizeError as exc:
        return {**echo, "_status": {"code": exc.status, "text": exc.detail, "error": exc.code}}


@router.get("/", summary="List training images (?task=, ?label=, ?test=)")
def list_images(
    request: Request,
    db: DB,
    user: CurrentUser,
    settings: SettingsDep,
    paging: PagingDep,
    task: str | None = None,
    # Lists: ?labels=a&labels=b works like ?labels=a,b (images carrying all of them).
    label: Annotated[list[str] | None, Query()] = None,
    labels: Annotated[list[str] | None, Query()] = None,
    test: bool | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    task_id = tasks_service.get_task(db, user, task).id if task else None
    label_ids = [labels_service.get_label(db, user, lid).id for lid in _as_list(label)]
    label_ids += [labels_service.get_label(db, user, lid).id for lid in _as_list(labels)]
    page = images_service.list_images(
        db,
        user,
        paging.offset,
        paging.page_size,
        task_id=task_id,
        label_ids=label_ids,
        test=test,
        search=search,
    )
    root = base_url(request, settings)
    items = [image_out(img, root) for img in page.items]
    return page_out(request, page, paging.page, paging.page_size, items)


@router.get("/{image_id}/", summary="Retrieve a training image")
def get_image(
    image_id: str, request: Request, db: DB, user: CurrentUser, settings: SettingsDep
) -> dict[str, Any]:
    image = images_service.get_image(db, user, image_id)
    return image_out(image, base_url(request, settings))


@router.api_route(
    "/{image_id}/",
    methods=["PATCH", "PUT"],
    summary="Update meta_data / test_image",
    openapi_extra=body_doc(ImagePatch),
)
def update_image(
    image_id: str,
    request: Request,
    db: DB,
    user: CurrentUser,
    settings: SettingsDep,
    fields: Fields,
) -> dict[str, Any]:
    image = images_service.get_image(db, user, image_id)
    if "meta_data" in fields:
        fields["meta_data"] = _meta(fields["meta_data"])
    if "test_image" in fields:
        fields["test_image"] = _bool(fields["test_image"])
    image = images_service.update_image(db, image, fields)
    return image_out(image, base_url(request, settings))


@router.delete("/{image_id}/", status_code=204, summary="Delete a training image")
def delete_image(image_id: str, state: State, user: CurrentUser) -> Response:
    with state.sessions.begin() as db:
        keys = images_service.delete_image(db, images_service.get_image(db, user, image_id))
    images_service.purge_unused_blobs(state.sessions, state.blobs, keys)
    return Response(status_code=204)


def _label_op(
    image_id: str,
    request: Request,
    db: DB,
    user: User,
    settings: Settings,
    fields: dict[str, Any],
    add: bool,
) -> dict[str, Any]:
    image = images_service.get_image(db, user, image_id)
    label_id = fields.get("label_id") or fields.get("label")
    if not label_id:
        raise InvalidInput("Field 'label_id' is required.", code="required")
    label = labels_service.get_label(db, user, label_id)
    op = images_service.add_label if add else images_service.remove_label
    return image_out(op(db, image, label), base_url(request, settings))


@router.api_route(
    "/{image_id}/add-label/",
    methods=["POST", "DELETE"],
    summary="Add a label",
    openapi_extra=body_doc(LabelIdIn),
)
def add_label(
    image_id: str,
    request: Request,
    db: DB,
    user: CurrentUser,
    settings: SettingsDep,
    fields: Fields,
) -> dict[str, Any]:
    # DELETE is accepted too: the Vize docs' Python sample sends add-label with DELETE.
    return _label_op(image_id, request, db, user, settings, fields, add=True)


@router.post(
    "/{image_id}/remove-label/", summary="Remove a label", openapi_extra=body_doc(LabelIdIn)
)
def remove_label(
    image_id: str,
    request: Request,
    db: DB,
    user: CurrentUser,
    settings: SettingsDep,
    fields: Fields,
) -> dict[str, Any]:
    return _label_op(image_id, request, db, user, settings, fields, add=False)


def _serve(db: DB, blobs: Blobs, user: User, image_id: str, thumb: bool) -> Response:
    image = images_service.get_image(db, user, image_id)
    key = image.thumb_key if thumb else image.blob_key
    try:
        data = blobs.get(key)
    except KeyError:
        if not images_service.still_exists(db, image):  # deleted since: not a lost file
            raise NotFound("Training image not found.") from None
        raise NotFound("The image file is missing from storage.", code="blob_missing") from None
    return Response(
        data,
        media_type="image/jpeg" if thumb else image.content_type,
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/{image_id}/file/", summary="The image itself (owner only)")
def image_file(image_id: str, db: DB, blobs: Blobs, user: CurrentUser) -> Response:
    return _serve(db, blobs, user, image_id, thumb=False)


@router.get("/{image_id}/thumb/", summary="A thumbnail (owner only)")
def image_thumb(image_id: str, db: DB, blobs: Blobs, user: CurrentUser) -> Response:
    return _serve(db, blobs, user, image_id, thumb=True)
