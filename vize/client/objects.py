"""Typed views of the API's JSON documents.

Each class keeps the whole document in ``raw``: fields a newer server adds stay reachable
without an SDK release, and parsing never fails on a field it does not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Json = dict[str, Any]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Label:
    id: str
    name: str
    description: str = ""
    output_name: str = ""
    type: str = "category"
    images_count: int | None = None
    tasks_count: int | None = None
    created: str | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Label:
        return cls(
            id=_str(data.get("id")),
            name=_str(data.get("name")),
            description=_str(data.get("description")),
            output_name=_str(data.get("output_name")),
            type=_str(data.get("type") or "category"),
            images_count=_opt_int(data.get("images_count")),
            tasks_count=_opt_int(data.get("tasks_count")),
            created=data.get("created"),
            raw=data,
        )


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    description: str = ""
    type: str = "multi_class"
    production_version: int = -1
    last_train_status: str | None = None
    negative_label: str | None = None
    webhook_url: str | None = None
    labels: list[Label] = field(default_factory=list)
    created: str | None = None
    deploy_policy: str = "if_better"
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def trained(self) -> bool:
        """True once a model is deployed (the API uses -1 for "never trained")."""
        return self.production_version >= 0

    def label(self, name: str) -> Label | None:
        """This task's label called ``name``, if any."""
        return next((lbl for lbl in self.labels if lbl.name == name), None)

    @classmethod
    def from_json(cls, data: Json) -> Task:
        return cls(
            id=_str(data.get("id")),
            name=_str(data.get("name")),
            description=_str(data.get("description")),
            type=_str(data.get("type") or "multi_class"),
            production_version=_int(data.get("production_version"), -1),
            # Vize's own word (the Ximilar-facing last_train_status is upper case).
            last_train_status=data.get("last_train_state", data.get("last_train_status")),
            negative_label=data.get("negative_label"),
            webhook_url=data.get("webhook_url"),
            labels=[Label.from_json(lbl) for lbl in data.get("labels") or []],
            created=data.get("created"),
            deploy_policy=_str(data.get("deploy_policy") or "if_better"),
            raw=data,
        )


@dataclass(frozen=True)
class Image:
    """A training image. ``duplicate`` is True when the upload found the same content already
    stored, and this is that existing image (now also carrying the labels just sent)."""

    id: str
    img_path: str = ""
    thumb_img_path: str = ""
    img_width: int = 0
    img_height: int = 0
    file_name: str = ""
    content_type: str = ""
    labels: list[Label] = field(default_factory=list)
    meta_data: Json = field(default_factory=dict)
    test_image: bool = False
    created: str | None = None
    duplicate: bool = False
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def sha256(self) -> str | None:
        """The content hash when the server reports one (lets imports skip known files)."""
        value = self.raw.get("sha256")
        return str(value) if value else None

    @classmethod
    def from_json(cls, data: Json, duplicate: bool = False) -> Image:
        return cls(
            id=_str(data.get("id")),
            img_path=_str(data.get("img_path")),
            thumb_img_path=_str(data.get("thumb_img_path")),
            img_width=_int(data.get("img_width")),
            img_height=_int(data.get("img_height")),
            file_name=_str(data.get("file_name")),
            content_type=_str(data.get("content_type")),
            labels=[Label.from_json(lbl) for lbl in data.get("labels") or []],
            meta_data=dict(data.get("meta_data") or {}),
            test_image=bool(data.get("test_image")),
            created=data.get("created"),
            duplicate=duplicate,
            raw=data,
        )


@dataclass(frozen=True)
class Model:
    id: str
    task: str
    version: int
    train_status: str
    progress: float = 0.0
    images_count: int | None = None
    accuracy: float | None = None
    cv_accuracy: float | None = None
    metrics: Json = field(default_factory=dict)
    error: str | None = None
    created: str | None = None
    finished: str | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Model:
        return cls(
            id=_str(data.get("id")),
            task=_str(data.get("task")),
            version=_int(data.get("version"), -1),
            train_status=_str(data.get("train_state", data.get("train_status"))),
            progress=float(data.get("progress") or 0.0),
            images_count=_opt_int(data.get("images_count")),
            accuracy=_opt_float(data.get("accuracy")),
            cv_accuracy=_opt_float(data.get("cv_accuracy")),
            metrics=dict(data.get("metrics") or {}),
            error=data.get("error"),
            created=data.get("created"),
            finished=data.get("finished"),
            raw=data,
        )


@dataclass(frozen=True)
class Job:
    """A background job (training) as reported by ``/v2/job/{id}/`` or ``task/{id}/training/``."""

    id: str
    state: str
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    kind: str = "train"
    task_id: str | None = None
    model_id: str | None = None
    model_version: int | None = None
    attempts: int = 0
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")

    @classmethod
    def from_json(cls, data: Json) -> Job:
        return cls(
            id=_str(data.get("id") or data.get("job_id")),
            state=_str(data.get("state")),
            progress=float(data.get("progress") or 0.0),
            message=_str(data.get("message")),
            error=data.get("error"),
            kind=_str(data.get("kind") or "train"),
            task_id=data.get("task_id"),
            model_id=data.get("model_id"),
            model_version=_opt_int(data.get("model_version")),
            attempts=_int(data.get("attempts")),
            created=data.get("created"),
            started=data.get("started"),
            finished=data.get("finished"),
            raw=data,
        )


@dataclass(frozen=True)
class LabelScore:
    id: str
    name: str
    prob: float

    @classmethod
    def from_json(cls, data: Json) -> LabelScore:
        return cls(
            _str(data.get("id")),
            _str(data.get("name") or data.get("label_name")),
            float(data.get("prob") or 0.0),
        )


@dataclass(frozen=True)
class Classification:
    """One classified image. ``source`` is what the caller passed (path, URL, ``"<bytes>"``);
    a record the server could not process has ``ok`` False and ``error`` set."""

    source: str
    status_code: int
    status_text: str
    best_label: LabelScore | None
    labels: list[LabelScore]
    version: int | None = None
    descriptor: list[float] | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def error(self) -> str | None:
        return None if self.ok else self.status_text

    @classmethod
    def from_json(cls, data: Json, source: str, version: int | None) -> Classification:
        status = data.get("_status") or {}
        best = data.get("best_label")
        return cls(
            source=source,
            status_code=_int(status.get("code"), 200),
            status_text=_str(status.get("text") or "OK"),
            best_label=LabelScore.from_json(best) if best else None,
            labels=[LabelScore.from_json(x) for x in data.get("labels") or []],
            version=version,
            descriptor=data.get("_descriptor"),
            raw=data,
        )


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    role: str  # owner, editor or viewer
    default: bool  # the user's default workspace
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Workspace:
        return cls(
            _str(data.get("id")),
            _str(data.get("name")),
            _str(data.get("role")),
            bool(data.get("default")),
            raw=data,
        )


@dataclass(frozen=True)
class UsageDay:
    day: str
    classifications: int


@dataclass(frozen=True)
class Usage:
    today: int
    this_month: int
    total: int
    daily: list[UsageDay]
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Usage:
        daily = [
            UsageDay(_str(d.get("day")), _int(d.get("classifications")))
            for d in data.get("daily") or []
        ]
        return cls(
            _int(data.get("today")),
            _int(data.get("this_month")),
            _int(data.get("total")),
            daily,
            raw=data,
        )


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    email: str = ""
    notify_email: bool = False
    created: str | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Account:
        return cls(
            _str(data.get("id")),
            _str(data.get("username")),
            _str(data.get("email")),
            bool(data.get("notify_email")),
            data.get("created"),
            raw=data,
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: ``count`` is the total over all pages."""

    count: int
    results: list[T]
    next: str | None = None
    previous: str | None = None

    @classmethod
    def from_json(cls, data: Json, parse: Callable[[Json], T]) -> Page[T]:
        results = [parse(item) for item in data.get("results") or []]
        return cls(
            _int(data.get("count"), len(results)), results, data.get("next"), data.get("previous")
        )
