"""Classification of up to 10 records with a task's deployed (or a chosen) model version.

``Classifier`` is the entry point, in two steps a route hands to two pools: ``admit`` (the
credential check, the request, limits, the model, each record's bytes, ``_url`` ones fetched
from remote servers) in the general pool, so slow URLs never hold an inference thread; then
``infer`` (decoding, inference, usage count, the answer) as one task of the bounded inference
pool ``Classifier.pool``, so decoding is bounded by the cores like inference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.db.tables import Label, Model, Task
from vize.errors import InvalidInput, PayloadTooLarge, VizeError
from vize.ml.backbones import get_backbone_config
from vize.ml.predictor import Head
from vize.ml.preprocess import ImageDecodeError, ImageTooLarge, UnsupportedFormat, decode_cost
from vize.services import batch, unknown
from vize.services import models as models_service
from vize.services import tasks as tasks_service
from vize.services import usage as usage_service
from vize.services.common import int_in_range
from vize.services.fairpool import FairPool
from vize.services.fetch import FetchBudget, UrlFetcher, record_bytes
from vize.services.jsonvalue import check_echoed_records
from vize.services.limits import Limiter
from vize.services.recognition import Prepared, Recognizer
from vize.services.workspaces import Caller
from vize.storage import BlobStore

MAX_RECORDS = 10
# A request whose images take more than this to decode (ten 512-px photos take ~4 MB, ten
# 12 MP phone JPEGs ~11 MB; ten 1080p PNG screenshots ~120 MB) runs on at most all inference
# workers but one while its user has another running.
COSTLY_REQUEST_BYTES = 32 * 1024 * 1024
# A record of another format is refused like an upload of it (same allow-list, same code),
# with the 400 classify records have always answered for images they cannot read.
UNSUPPORTED = InvalidInput(
    "The file is not a recognised image; send JPEG, PNG or WebP.", code="unsupported_image_type"
)


@dataclass(frozen=True)
class Ask:
    """What a classification asks for, read from the body after authentication."""

    task_id: Any
    version: Any
    records: list[Any]
    descriptor: bool
    threshold: str | None = None  # "off" | "auto" | a probability; None: the task's setting
    store_images: bool = False  # keep each image with its answer for review


# The request's user from a database session: raises Unauthorized for a bad credential.
Authenticate = Callable[[Session], Caller]
Parse = Callable[[dict[str, Any]], Ask]
# (job, decoded records, probabilities, decision scores or None, the answered records)
StoreHook = Callable[
    ["Admitted", list[Any], np.ndarray, np.ndarray | None, list[dict[str, Any]]], None
]


def _checked_records(records: Any) -> list[Any]:
    checked = batch.check_records(records, MAX_RECORDS)
    check_echoed_records(checked)  # before any fetch or billing: the response echoes them
    return checked


def parse_v2(fields: dict[str, Any]) -> Ask:
    """The ``/v2/classify`` JSON body."""
    return Ask(
        task_id=fields.get("task_id") or fields.get("task"),
        version=fields.get("version"),
        records=_checked_records(fields.get("records")),
        descriptor=str(fields.get("descriptor", 0)).lower() in ("1", "true"),
        threshold=unknown.parse_setting(fields.get("threshold")),
        store_images=truthy(fields.get("store_images")),
    )


def truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true") if value is not None else False


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
    caller: Caller,
    task_id: Any,
    version: Any = None,
) -> Deployed:
    if not task_id:
        raise InvalidInput("Field 'task_id' (or 'task') is required.", code="required")
    task = tasks_service.get_task(db, caller, task_id)
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


@dataclass(frozen=True)
class Admitted:
    """A classification let in: whose, what, with which model, and each record's bytes (or
    why there are none)."""

    caller: Caller
    ask: Ask
    dep: Deployed
    data: list[bytes | VizeError]
    cost: int = 0  # bytes its decodes will hold, from the headers

    @property
    def costly(self) -> bool:
        """Costly enough that one user may not run several at once (see ``FairPool``)."""
        return self.cost > COSTLY_REQUEST_BYTES


class Classifier:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        recognizer: Recognizer,
        limiter: Limiter | None = None,
        fetcher: UrlFetcher | None = None,
    ) -> None:
        self.settings, self.sessions, self.blobs = settings, sessions, blobs
        self.recognizer, self.limiter, self.fetcher = recognizer, limiter, fetcher
        # Keeps the images of a request with ``store_images`` for review (the app sets it).
        self.on_stored: StoreHook | None = None
        self.calibrations = unknown.calibrations()

    @property
    def pool(self) -> FairPool:
        """The bounded inference pool ``infer`` runs in."""
        return self.recognizer.pool

    def admit(
        self, authenticate: Authenticate, fields: dict[str, Any] | VizeError, parse: Parse
    ) -> Admitted:
        """Everything before decoding. Authentication first: a bad credential is a 401
        whatever else is wrong (``fields`` is the body, or why it did not parse)."""
        with self.sessions() as db:
            caller = authenticate(db)
            if isinstance(fields, VizeError):
                raise fields
            ask = parse(fields)
            if self.limiter is not None:
                self.limiter.check(caller, len(ask.records))
            dep = resolve(db, self.recognizer, self.blobs, caller, ask.task_id, ask.version)
        # Uploads waiting for embedding are held to what the machine embeds while serving.
        self.recognizer.backlog.serving()
        # One deadline for every `_url` of the request, and the caller's cap on fetches.
        budget = FetchBudget.start(self.settings, caller.actor, self.fetcher)
        data = record_data(self.settings, ask.records, budget)
        size = max(get_backbone_config(name).input_size for name in dep.head.backbones)
        limit = self.settings.max_image_pixels
        cost = sum(decode_cost(d, size, limit) for d in data if isinstance(d, bytes))
        return Admitted(caller, ask, dep, data, cost)

    def answer_unknown(
        self, job: Admitted, probs: np.ndarray, desc: np.ndarray, results: list[dict[str, Any]]
    ) -> np.ndarray | None:
        """ "unknown" answers (vize.services.unknown): the request's threshold, else the
        task's setting."""
        setting = job.ask.threshold or job.dep.task.unknown or unknown.OFF
        cal = None
        if setting == unknown.AUTO and len(probs):
            model = job.dep.model
            cal = unknown.calibration(self.calibrations, model.id, model.artifact_key, self.blobs)
        return unknown.apply(setting, job.dep.head, cal, probs, desc, results)

    def infer(self, job: Admitted) -> dict[str, Any]:
        """Decode, predict, count the usage, and answer every record."""
        prepared = decode_records(self.recognizer, job.data, job.dep.head.backbones)
        good = [p for p in prepared if isinstance(p, Prepared)]
        probs = desc = np.zeros((0, 0))
        if good:
            probs, desc = self.recognizer.predict(job.dep.head, good)
            with self.sessions.begin() as db:
                usage_service.record_classifications(db, job.caller, len(good))
        results = build_records(job.dep, job.ask, prepared, probs, desc)
        scores = self.answer_unknown(job, probs, desc, results)
        if job.ask.store_images and self.on_stored is not None:
            self.on_stored(job, prepared, probs, scores, results)
        return batch.envelope(results, task_id=job.dep.task.id, version=job.dep.model.version)


def record_data(
    settings: Settings, records: list[Any], budget: FetchBudget | None = None
) -> list[bytes | VizeError]:
    """Each record's bytes (``_base64``, or ``_url`` fetched through the SSRF guard, all
    within one ``budget``); a bad record becomes its own error, not the batch's."""
    budget = budget or FetchBudget.start(settings)
    out: list[bytes | VizeError] = []
    for record in records:
        try:
            data = record_bytes(batch.check_record(record), settings, budget)
            if len(data) > settings.max_upload_bytes:
                raise PayloadTooLarge("Image is larger than the limit.")
            out.append(data)
        except VizeError as exc:
            out.append(exc)
    return out


def decode_records(
    recognizer: Recognizer, items: list[bytes | VizeError], backbones: Sequence[str]
) -> list[Prepared | VizeError]:
    """Decode the records' bytes into the inputs of ``backbones`` (the model's own, whatever
    the server now trains with); an undecodable one becomes its error."""
    out: list[Prepared | VizeError] = []
    for item in items:
        if isinstance(item, VizeError):
            out.append(item)
            continue
        try:
            out.append(recognizer.prepare(item, backbones))
        except ImageTooLarge as exc:
            out.append(PayloadTooLarge(f"Cannot read the image: {exc}", code="too_many_pixels"))
        except UnsupportedFormat:
            out.append(UNSUPPORTED)
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
    ask: Ask,
    prepared: list[Prepared | VizeError],
    probs: np.ndarray,
    desc: np.ndarray,
) -> list[dict[str, Any]]:
    """Each record's answer, in request order; ``probs`` and ``desc`` have a row per decoded
    record."""
    results, row = [], 0
    for record, item in zip(ask.records, prepared, strict=True):
        echo = batch.echo(record)
        if isinstance(item, VizeError):
            results.append({**echo, "_status": batch.error_status(item)})
            continue
        labels = labels_out(dep, probs[row])
        out = {**echo, "_status": batch.ok_status(), "best_label": labels[0], "labels": labels}
        if dep.head.kind == "multi_label":
            out["tags"] = [lbl for lbl in labels if lbl["prob"] >= dep.head.threshold]
        if ask.descriptor:
            out["_descriptor"] = [round(float(v), 6) for v in desc[row]]
        results.append(out)
        row += 1
    return results
