"""Classification of up to 10 records with a task's deployed (or a chosen) model version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.config import Settings
from vize.db.tables import Label, Model, Task, User
from vize.errors import InvalidInput, PayloadTooLarge, VizeError
from vize.ml.predictor import Head
from vize.ml.preprocess import ImageDecodeError, ImageTooLarge
from vize.services import models as models_service
from vize.services import tasks as tasks_service
from vize.services.common import int_in_range
from vize.services.fetch import FetchBudget, record_bytes
from vize.services.jsonvalue import check_echoed_records
from vize.services.recognition import Prepared, Recognizer
from vize.storage import BlobStore

MAX_RECORDS = 10


@dataclass
class Deployed:
    task: Task
    model: Model
    head: Head
    names: dict[str, str]


def resolve(
    db: Session,
    recognizer: Recognizer,
    blobs: BlobStore,
    user: User,
    task_id: Any,
    version: Any = None,
) -> Deployed:
    if not task_id:
        raise InvalidInput("Field 'task_id' (or 'task') is required.", code="required")
    task = tasks_service.get_task(db, user, task_id)
    if version in (None, "", -1, "-1"):
        if task.production_version < 1:
            raise InvalidInput(
                "This task has no trained model yet; train it first (POST .../train/).",
                code="not_trained",
            )
        version = task.production_version
    try:
        number = int(version)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput("'version' must be an integer.", code="invalid_version") from None
    number = int_in_range(number, "version")  # 1e308 is an int of 309 digits
    model = models_service.trained_version(db, task, number)
    head = recognizer.head(model.id, model.artifact_key, blobs)
    rows = db.execute(select(Label.id, Label.name).where(Label.id.in_(head.label_ids))).all()
    names = {lid: name for lid, name in rows}
    return Deployed(task, model, head, names)


def check_records(records: Any) -> list[Any]:
    if not isinstance(records, list) or not records:
        raise InvalidInput("'records' must be a non-empty list.", code="invalid_records")
    if len(records) > MAX_RECORDS:
        raise InvalidInput(f"At most {MAX_RECORDS} records per request.", code="too_many_records")
    check_echoed_records(records)  # before any fetch or billing: the response echoes them
    return records


def record_data(
    settings: Settings, records: list[Any], budget: FetchBudget | None = None
) -> list[bytes | VizeError]:
    """Each record's bytes (``_base64``, or ``_url`` fetched through the SSRF guard, all
    within one ``budget``); a bad record becomes its own error, not the batch's."""
    budget = budget or FetchBudget.start(settings)
    out: list[bytes | VizeError] = []
    for record in records:
        try:
            if not isinstance(record, dict):
                raise InvalidInput("Each record must be a JSON object.", code="invalid_record")
            data = record_bytes(record, settings, budget)
            if len(data) > settings.max_upload_bytes:
                raise PayloadTooLarge("Image is larger than the limit.")
            out.append(data)
        except VizeError as exc:
            out.append(exc)
    return out


def decode_records(
    recognizer: Recognizer, items: list[bytes | VizeError]
) -> list[Prepared | VizeError]:
    """Decode the records' bytes into model inputs; an undecodable one becomes its error."""
    out: list[Prepared | VizeError] = []
    for item in items:
        if isinstance(item, VizeError):
            out.append(item)
            continue
        try:
            out.append(recognizer.prepare(item))
        except ImageTooLarge as exc:
            out.append(PayloadTooLarge(f"Cannot read the image: {exc}", code="too_many_pixels"))
        except (ImageDecodeError, OSError, ValueError) as exc:
            out.append(InvalidInput(f"Cannot read the image: {exc}", code="invalid_image"))
    return out


def labels_out(dep: Deployed, probs: np.ndarray) -> list[dict[str, Any]]:
    order = np.argsort(-probs, kind="stable")
    return [
        {
            "id": dep.head.label_ids[j],
            "name": dep.names.get(dep.head.label_ids[j], ""),
            "prob": round(float(probs[j]), 6),
        }
        for j in order
    ]


def build_records(
    dep: Deployed,
    records: list[Any],
    prepared: list[Prepared | VizeError],
    probs: np.ndarray,
    desc: np.ndarray,
    descriptor: bool,
) -> tuple[list[dict[str, Any]], int]:
    results, ok, row = [], 0, 0
    for record, item in zip(records, prepared, strict=True):
        echo = (
            {k: v for k, v in record.items() if k not in ("_base64", "_raw")}
            if isinstance(record, dict)
            else {}
        )
        if isinstance(item, VizeError):
            results.append(
                {**echo, "_status": {"code": item.status, "text": item.detail, "error": item.code}}
            )
            continue
        labels = labels_out(dep, probs[row])
        out = {
            **echo,
            "_status": {"code": 200, "text": "OK"},
            "best_label": labels[0],
            "labels": labels,
        }
        if dep.head.kind == "multi_label":
            out["tags"] = [lbl for lbl in labels if lbl["prob"] >= dep.head.threshold]
        if descriptor:
            out["_descriptor"] = [round(float(v), 6) for v in desc[row]]
        results.append(out)
        ok, row = ok + 1, row + 1
    return results, ok
