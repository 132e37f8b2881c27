"""The review loop: classified images kept with their answers (``store_images: true``),
listed most uncertain first, and turned into training images (accept) or dropped (dismiss).

Files are content addressed like training images (``images/<owner>/<sha>``), so accepting one
copies nothing, and an image classified twice is kept once (one row per task and content:
classifying it again refreshes a pending row; a reviewed one stays reviewed). Reviewed rows
keep no file of their own: an accepted image's file is the training image's."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.db.engine import savepoint
from vize.db.states import PredictionStatus
from vize.db.tables import Label, Prediction, Task
from vize.errors import InvalidInput
from vize.ml.predictor import Head
from vize.services import images as images_service
from vize.services.common import Page, get_owned, paginate
from vize.services.imaging import check_image, make_thumbnail
from vize.services.workspaces import Caller
from vize.storage import BlobStore

log = logging.getLogger("vize.review")
ORDERS = ("uncertain", "recent")
STATUSES = (*(s.value for s in PredictionStatus), "all")


def uncertainty(head: Head, probs: np.ndarray) -> float:
    """How unsure the answer is, in [0, 1]: 1 - the top probability (multi_class), or how
    close the most undecided tag is to 0.5 (multi_label)."""
    if head.kind == "multi_class":
        return float(1.0 - probs.max())
    return float(1.0 - 2.0 * np.abs(probs - 0.5).min())


class Review:
    """Stores predictions (the classifier's ``on_stored`` hook) and reviews them."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], blobs: BlobStore):
        self.settings, self.sessions, self.blobs = settings, sessions, blobs

    def store(
        self,
        job: Any,
        prepared: list[Any],
        probs: np.ndarray,
        scores: np.ndarray | None,
        results: list[dict[str, Any]],
    ) -> None:
        """After a classification with ``store_images``: keep each answered image. A failure
        is logged: the answer stands (and was counted) whatever happens here."""
        row = 0
        for data, record in zip(job.data, results, strict=True):
            if "best_label" not in record or not isinstance(data, bytes):
                continue
            try:
                self._store_one(job.caller, job.dep, data, probs[row], record)
            except Exception:
                log.exception("could not keep a classified image for review")
            row += 1
        try:
            self.enforce_retention(job.dep.task.id)
        except Exception:
            log.exception("could not apply the review retention of task %s", job.dep.task.id)

    def _store_one(
        self, caller: Caller, dep: Any, data: bytes, probs: np.ndarray, record: dict[str, Any]
    ) -> None:
        sha = hashlib.sha256(data).hexdigest()
        fields = {
            "model_version": dep.model.version,
            "label_id": record["best_label"]["id"],
            "prob": float(record["best_label"]["prob"]),
            "uncertainty": uncertainty(dep.head, probs),
            "labels": {lbl["id"]: lbl["prob"] for lbl in record["labels"]},
        }
        with self.sessions.begin() as db:
            found = db.scalar(
                select(Prediction).where(
                    Prediction.task_id == dep.task.id, Prediction.sha256 == sha
                )
            )
            if found is not None:
                if found.status == PredictionStatus.PENDING:
                    for key, value in fields.items():
                        setattr(found, key, value)
                return
        key, thumb_key = images_service.blob_keys(caller.workspace_id, sha)
        checked = check_image(
            data,
            max_bytes=self.settings.max_upload_bytes,
            max_pixels=self.settings.max_image_pixels,
            max_decode_bytes=self.settings.max_decode_bytes,
        )
        with images_service.discard_on_failure(self.blobs, self.sessions) as store:
            if not self.blobs.exists(key):
                store.put(key, data)
            store.put(thumb_key, make_thumbnail(checked.image))
            with self.sessions.begin() as db:
                try:
                    with savepoint(db):
                        db.add(
                            Prediction(
                                owner_id=caller.user_id,
                                workspace_id=caller.workspace_id,
                                task_id=dep.task.id,
                                sha256=sha,
                                blob_key=key,
                                thumb_key=thumb_key,
                                **fields,
                            )
                        )
                        db.flush()
                except IntegrityError:
                    return  # the same image, kept by a concurrent request

    def enforce_retention(self, task_id: str) -> None:
        """At most ``review_max_predictions`` rows per task: the oldest go (files too)."""
        limit = self.settings.review_max_predictions
        with self.sessions.begin() as db:
            count = db.scalar(select(func.count()).where(Prediction.task_id == task_id)) or 0
            if count <= limit:
                return
            old = db.scalars(
                select(Prediction)
                .where(Prediction.task_id == task_id)
                .order_by(Prediction.created, Prediction.id)
                .limit(count - limit)
            ).all()
            keys = [k for p in old for k in (p.blob_key, p.thumb_key) if k]
            db.execute(delete(Prediction).where(Prediction.id.in_([p.id for p in old])))
        self._remove_files(keys)

    def _remove_files(self, keys: list[str]) -> None:
        for key in keys:
            try:
                images_service.remove_blob(self.sessions, self.blobs, key)
            except Exception:  # the orphan sweep takes what is left
                log.exception("could not remove %s", key)

    # -- reviewing -----------------------------------------------------------------------
    def accept(
        self, caller: Caller, prediction_id: str, label_id: Any = None
    ) -> tuple[Prediction, str]:
        """Turn a pending prediction into a training image of ``label_id`` (default: the
        predicted label); returns it with the new image's id."""
        with self.sessions() as db:
            pred = get_prediction(db, caller, prediction_id)
            _check_pending(pred)
            label = _label_of_task(db, caller, pred, label_id or pred.label_id)
            data = self.blobs.get(pred.blob_key)

        def store(db: Session, blobs: BlobStore) -> tuple[images_service.Upload, None]:
            up = images_service.upload_image(db, blobs, self.settings, caller, data)
            image = up.image
            if label not in image.labels:
                images_service.add_label(db, image, label)
            row = get_prediction(db, caller, prediction_id)
            _check_pending(row)
            row.status, row.image_id, row.label_id = PredictionStatus.ACCEPTED, image.id, label.id
            row.blob_key = row.thumb_key = ""  # the file is the training image's now
            return up, None

        up, _ = images_service.store_upload(self.sessions, self.blobs, store)
        with self.sessions() as db:
            return get_prediction(db, caller, prediction_id), up.image.id

    def dismiss(self, caller: Caller, prediction_id: str) -> None:
        with self.sessions.begin() as db:
            pred = get_prediction(db, caller, prediction_id)
            keys = [k for k in (pred.blob_key, pred.thumb_key) if k]
            pred.status, pred.blob_key, pred.thumb_key = PredictionStatus.DISMISSED, "", ""
        self._remove_files(keys)


def get_prediction(db: Session, caller: Caller, prediction_id: object) -> Prediction:
    return get_owned(db, Prediction, prediction_id, caller.workspace_id, "Prediction")


def _check_pending(pred: Prediction) -> None:
    if pred.status != PredictionStatus.PENDING:
        raise InvalidInput(
            f"This prediction was {pred.status} already.", code="prediction_reviewed"
        )


def _label_of_task(db: Session, caller: Caller, pred: Prediction, label_id: Any) -> Label:
    if not label_id:
        raise InvalidInput(
            "The answer was 'unknown': name the image's label with 'label_id'.",
            code="label_required",
        )
    label = get_owned(db, Label, label_id, caller.workspace_id, "Label")
    task = db.get(Task, pred.task_id)
    if task is None or label not in task.labels:
        raise InvalidInput("That label is not one of the task's labels.", code="label_not_in_task")
    return label


def list_predictions(
    db: Session, task: Task, order: str, status: str, offset: int, limit: int
) -> Page[Prediction]:
    if order not in ORDERS:
        raise InvalidInput(f"'order' must be one of {', '.join(ORDERS)}.", code="invalid_order")
    if status not in STATUSES:
        raise InvalidInput(f"'status' must be one of {', '.join(STATUSES)}.", code="invalid_status")
    stmt = select(Prediction).where(Prediction.task_id == task.id)
    if status != "all":
        stmt = stmt.where(Prediction.status == status)
    if order == "uncertain":
        stmt = stmt.order_by(
            Prediction.uncertainty.desc(), Prediction.created.desc(), Prediction.id
        )
    else:
        stmt = stmt.order_by(Prediction.created.desc(), Prediction.id)
    return paginate(db, stmt, offset, limit)


def prediction_out(pred: Prediction, names: dict[str, str], prefix: str) -> dict[str, Any]:
    labels = sorted(pred.labels.items(), key=lambda kv: -kv[1])
    best = (
        {"id": pred.label_id, "name": names.get(pred.label_id, ""), "prob": pred.prob}
        if pred.label_id
        else {"id": None, "name": "unknown", "prob": pred.prob}
    )
    url = f"{prefix}/prediction/{pred.id}"
    return {
        "id": pred.id,
        "task": pred.task_id,
        "model_version": pred.model_version,
        "status": pred.status,
        "best_label": best,
        "labels": [{"id": lid, "name": names.get(lid, ""), "prob": p} for lid, p in labels],
        "uncertainty": round(pred.uncertainty, 6),
        "image_id": pred.image_id,
        "img_path": f"{url}/file" if pred.blob_key else None,
        "thumb_img_path": f"{url}/thumb" if pred.thumb_key else None,
        "created": pred.created.isoformat(),
    }
