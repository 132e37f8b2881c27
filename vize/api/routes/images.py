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
    AppState,
    CurrentCaller,
    Fields,
    Links,
    PagingDep,
    SettingsDep,
    State,
    authenticate,
    image_links,
    strict_json,
)
from vize.api.routes.similar import upload_duplicates
from vize.api.routing import SlashRouter, body_doc
from vize.api.schemas import (
    ImageJsonIn,
    ImagePatch,
    ImagesUpdateIn,
    LabelIdIn,
    LabelValueIn,
    base_url,
    image_out,
    page_out,
)
from vize.api.signing import ImageLinks, Kind
from vize.config import Settings
from vize.db.tables import Image, Label
from vize.errors import InvalidInput, NotFound, PayloadTooLarge, VizeError
from vize.services import batch
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service
from vize.services.fetch import FetchBudget, record_bytes
from vize.services.jsonvalue import echoable
from vize.services.workspaces import Caller
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
                        "move": {
                            "type": "boolean",
                            "description": "If the image is already there with another label "
                            "of a categorization task: move it to the label sent (else 409 "
                            "label_conflict)",
                        },
                    },
                    "required": ["img_path"],
                }
            },
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "title": "Batch",
                            "properties": {
                                "records": {
                                    "type": "array",
                                    "items": {"type": "object"},
                                    "description": "Each with _base64 or _url, labels, meta_data",
                                }
                            },
                            "required": ["records"],
                        },
                        {**ImageJsonIn.model_json_schema(), "title": "One image (Ximilar)"},
                    ]
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


def _labels(db: DB, caller: Caller, fields: dict[str, Any]) -> list[Label]:
    ids = _as_list(fields.get("labels")) + _as_list(fields.get("label_id"))
    return [labels_service.get_label(db, caller, lid) for lid in dict.fromkeys(ids)]


def _store(
    request: Request,
    settings: Settings,
    caller: Caller,
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
        caller,
        data,
        file_name=file_name,
        labels=_labels(db, caller, fields),
        meta_data=_meta(fields.get("meta_data")),
        test_image=_bool(fields.get("test_image", False)),
        budget=request.app.state.vize.services.recognizer.budget,
    )
    added: list[str] = []
    moved: list[str] = []
    if not up.created:
        # The same bytes again: the labels sent are put on the image already there, and the
        # answer says which were new (none: nothing changed) and which ``move`` took off.
        added, moved = _relabel_existing(db, up.image, _labels(db, caller, fields), fields)
    out = image_out(up.image, base_url(request, settings), image_links(request.app.state.vize))
    if not up.created:
        out["labels_added"], out["labels_removed"] = added, moved
    return up, out


def _relabel_existing(
    db: Session, image: Image, labels: list[Label], fields: dict[str, Any]
) -> tuple[list[str], list[str]]:
    move = _bool(fields.get("move", False))
    added: list[str] = []
    removed: list[str] = []
    for label in labels:
        if label in image.labels:
            continue
        removed += [lbl.id for lbl in images_service.add_label(db, image, label, move=move)]
        added.append(label.id)
    return added, removed


def _duplicate_body(image_json: dict[str, Any]) -> dict[str, Any]:
    # Worded so that Ximilar's client finds the id ("image" + one character + "ID" + two
    # characters + the uuid) and sees "already exists".
    return {
        **image_json,
        "detail": f"Training image ID: {image_json['id']} already exists.",
        "code": "already_exists",
    }


@router.post("/", status_code=201, summary="Upload training image(s)", openapi_extra=UPLOAD_DOC)
async def upload(
    request: Request, response: Response, state: State, caller: CurrentCaller, fields: Fields
) -> dict[str, Any]:
    # Before any decoding: 429 while embedding is behind (the workspace's share of it).
    state.services.admit_upload(caller.workspace_id)
    if "records" in fields:
        return await _upload_batch(request, response, state, caller, fields)
    upload_file = fields.get("img_path") or fields.get("file")
    if not isinstance(upload_file, UploadFile):
        if "base64" in fields:  # one image as JSON, as Ximilar's client sends it
            return await run_in_threadpool(_upload_base64, request, response, state, caller, fields)
        raise InvalidInput(
            "Send the image as multipart field 'img_path', or JSON 'base64' or 'records'.",
            code="required",
        )
    data = await upload_file.read(state.settings.max_upload_bytes + 1)
    if len(data) > state.settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"Image is larger than {state.settings.max_upload_bytes // (1024 * 1024)} MB."
        )
    name = upload_file.filename or ""
    return await run_in_threadpool(_store_one, request, response, state, caller, data, fields, name)


def _upload_base64(
    request: Request, response: Response, state: AppState, caller: Caller, fields: dict[str, Any]
) -> dict[str, Any]:
    if not isinstance(fields["base64"], str) or not fields["base64"]:
        raise InvalidInput("'base64' must be the image as a base64 string.", code="invalid_base64")
    data = record_bytes({"_base64": fields["base64"]}, state.settings)
    return _store_one(request, response, state, caller, data, fields, "")


def _store_one(
    request: Request,
    response: Response,
    state: AppState,
    caller: Caller,
    data: bytes,
    fields: dict[str, Any],
    name: str,
) -> dict[str, Any]:
    store = partial(_store, request, state.settings, caller, data, fields, name)
    up, out = images_service.store_upload(state.sessions, state.blobs, store)
    if not up.created:
        response.status_code = 200
        return _duplicate_body(out)
    out["near_duplicate_of"] = upload_duplicates(state, caller.workspace_id, up.image.id)
    state.services.after_upload(caller, 1)
    return out


async def _upload_batch(
    request: Request, response: Response, state: State, caller: Caller, fields: dict[str, Any]
) -> dict[str, Any]:
    records = batch.check_records(fields["records"], MAX_BATCH)
    budget = state.services.fetcher.budget(state.settings, caller.actor)  # one for the request
    results = [
        await run_in_threadpool(_one_record, request, state, caller, r, budget) for r in records
    ]
    created = [r["id"] for r in results if r.get("_status", {}).get("code") == 201]
    if created:
        state.services.after_upload(caller, len(created))
    response.status_code = 200
    return batch.envelope(results)


def _one_record(
    request: Request, state: AppState, caller: Caller, record: Any, budget: FetchBudget
) -> dict[str, Any]:
    """One record, one transaction: its failure is reported in place and touches no other."""
    settings: Settings = state.settings
    echo, bad = echoable(batch.echo(record))  # before the fetch: the answer must be encodable
    try:
        checked = batch.check_record(record)
        if bad is not None:
            raise bad
        data = record_bytes(checked, settings, budget)
        name = str(record.get("file_name", ""))
        store = partial(_store, request, settings, caller, data, record, name)
        up, out = images_service.store_upload(state.sessions, state.blobs, store)
        if up.created:
            out["near_duplicate_of"] = upload_duplicates(state, caller.workspace_id, up.image.id)
            return {**echo, **out, "_status": batch.ok_status("Created", 201)}
        return {**echo, **_duplicate_body(out), "_status": batch.ok_status(out["id"])}
    except VizeError as exc:
        return {**echo, "_status": batch.error_status(exc)}


@router.get("/", summary="List training images (?task=, ?labels=, ?not_labels=, ?test=, ?real=)")
def list_images(
    request: Request,
    db: DB,
    caller: CurrentCaller,
    settings: SettingsDep,
    links: Links,
    paging: PagingDep,
    task: str | None = None,
    # Lists: ?labels=a&labels=b works like ?labels=a,b (images carrying all of them).
    label: Annotated[list[str] | None, Query()] = None,
    labels: Annotated[list[str] | None, Query()] = None,
    # Images carrying none of these (Ximilar's label.get_training_images(not_label=True)).
    not_labels: Annotated[list[str] | None, Query()] = None,
    test: bool | None = None,
    real: bool | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    task_id = tasks_service.get_task(db, caller, task).id if task else None
    label_ids = [labels_service.get_label(db, caller, lid).id for lid in _as_list(label)]
    label_ids += [labels_service.get_label(db, caller, lid).id for lid in _as_list(labels)]
    not_ids = [labels_service.get_label(db, caller, lid).id for lid in _as_list(not_labels)]
    page = images_service.list_images(
        db,
        caller,
        paging.offset,
        paging.page_size,
        task_id=task_id,
        label_ids=label_ids,
        not_label_ids=not_ids,
        test=test,
        real=real,
        search=search,
    )
    root = base_url(request, settings)
    items = [image_out(img, root, links) for img in page.items]
    return page_out(request, page, paging.page, paging.page_size, items)


@router.post(
    "/update/",
    summary="Change many images at once (Ximilar's modify_images)",
    openapi_extra=body_doc(ImagesUpdateIn),
)
def update_images(db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    ask = _parse(ImagesUpdateIn, fields)
    if not ask.images and not ask.labels:
        raise InvalidInput("Send 'images' (ids) or 'labels' (a filter).", code="required")
    if (ask.mark_test and ask.unmark_test) or (ask.mark_real and ask.unmark_real):
        raise InvalidInput("Mark and unmark the same flag at once?", code="invalid")
    change = images_service.BulkChange(
        add=[labels_service.get_label(db, caller, lid) for lid in ask.labels_add],
        remove=[labels_service.get_label(db, caller, lid) for lid in ask.labels_remove],
        test=True if ask.mark_test else (False if ask.unmark_test else None),
        real=True if ask.mark_real else (False if ask.unmark_real else None),
        move=ask.move,
    )
    images = [images_service.get_image(db, caller, iid) for iid in dict.fromkeys(ask.images)]
    filter_ids = [labels_service.get_label(db, caller, lid).id for lid in ask.labels]
    count = images_service.bulk_update(db, caller, images, filter_ids, change)
    return {"status": "OK", "count": count}


def _parse(model: Any, fields: dict[str, Any]) -> Any:
    try:
        return model.model_validate(fields)
    except ValueError as exc:
        raise InvalidInput(f"Invalid input: {exc}", code="invalid") from exc


@router.get("/{image_id}/", summary="Retrieve a training image")
def get_image(
    image_id: str,
    request: Request,
    db: DB,
    caller: CurrentCaller,
    settings: SettingsDep,
    links: Links,
) -> dict[str, Any]:
    image = images_service.get_image(db, caller, image_id)
    return image_out(image, base_url(request, settings), links)


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
    caller: CurrentCaller,
    settings: SettingsDep,
    links: Links,
    fields: Fields,
) -> dict[str, Any]:
    image = images_service.get_image(db, caller, image_id)
    if "meta_data" in fields:
        fields["meta_data"] = _meta(fields["meta_data"])
    for flag in ("test_image", "real"):
        if flag in fields:
            fields[flag] = _bool(fields[flag])
    image = images_service.update_image(db, image, fields)
    return image_out(image, base_url(request, settings), links)


@router.delete("/{image_id}/", status_code=204, summary="Delete a training image")
def delete_image(image_id: str, state: State, caller: CurrentCaller) -> Response:
    with state.sessions.begin() as db:
        keys = images_service.delete_image(db, images_service.get_image(db, caller, image_id))
    images_service.purge_unused_blobs(state.sessions, state.blobs, keys)
    return Response(status_code=204)


def _label_op(
    image_id: str,
    request: Request,
    db: DB,
    caller: Caller,
    settings: Settings,
    fields: dict[str, Any],
    op: str,
) -> dict[str, Any]:
    image = images_service.get_image(db, caller, image_id)
    label_id = fields.get("label_id") or fields.get("label")
    if not label_id:
        raise InvalidInput("Field 'label_id' is required.", code="required")
    label = labels_service.get_label(db, caller, label_id)
    if op == "remove":
        image = images_service.remove_label(db, image, label)
    elif op == "update":
        image = images_service.set_label_value(db, image, label, _value(fields.get("value")))
    else:
        images_service.add_label(db, image, label, move=_bool(fields.get("move", False)))
        if fields.get("value") is not None:
            image = images_service.set_label_value(db, image, label, _value(fields["value"]))
    links = image_links(request.app.state.vize)
    return image_out(image, base_url(request, settings), links)


def _value(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number != number or number in (float("inf"), float("-inf")):
        raise InvalidInput("'value' must be a finite number.", code="invalid_value")
    return number


@router.api_route(
    "/{image_id}/add-label/",
    methods=["POST", "DELETE"],
    summary="Add a label",
    openapi_extra=body_doc(LabelValueIn),
)
def add_label(
    image_id: str,
    request: Request,
    db: DB,
    caller: CurrentCaller,
    settings: SettingsDep,
    fields: Fields,
) -> dict[str, Any]:
    # DELETE is accepted too: the Vize docs' Python sample sends add-label with DELETE.
    return _label_op(image_id, request, db, caller, settings, fields, "add")


@router.post(
    "/{image_id}/remove-label/", summary="Remove a label", openapi_extra=body_doc(LabelIdIn)
)
def remove_label(
    image_id: str,
    request: Request,
    db: DB,
    caller: CurrentCaller,
    settings: SettingsDep,
    fields: Fields,
) -> dict[str, Any]:
    return _label_op(image_id, request, db, caller, settings, fields, "remove")


@router.post(
    "/{image_id}/update-label/",
    summary="Set the value of a label on the image",
    openapi_extra=body_doc(LabelValueIn),
)
def update_label(
    image_id: str,
    request: Request,
    db: DB,
    caller: CurrentCaller,
    settings: SettingsDep,
    fields: Fields,
) -> dict[str, Any]:
    return _label_op(image_id, request, db, caller, settings, fields, "update")


def _serve(db: Session, blobs: BlobStore, image: Image, thumb: bool) -> Response:
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


def _serve_file(
    request: Request, state: AppState, image_id: str, kind: Kind, sig: str | None
) -> Response:
    """With a valid signature for this image and kind: to anyone holding the link (its
    ``img_path``). Without one: to its owner, authenticated as for any API call."""
    links: ImageLinks = image_links(state)
    with state.sessions() as db:
        if sig and links.valid(sig, image_id, kind):
            image = db.get(Image, image_id)
            if image is None:
                raise NotFound("Training image not found.")
        else:
            image = images_service.get_image(db, authenticate(request, state, db), image_id)
        return _serve(db, state.blobs, image, thumb=kind == "thumb")


@router.get("/{image_id}/file/", summary="The image itself (signed link, or its owner)")
def image_file(image_id: str, request: Request, state: State, sig: str | None = None) -> Response:
    return _serve_file(request, state, image_id, "file", sig)


@router.get("/{image_id}/thumb/", summary="A thumbnail (signed link, or its owner)")
def image_thumb(image_id: str, request: Request, state: State, sig: str | None = None) -> Response:
    return _serve_file(request, state, image_id, "thumb", sig)
