"""SDK objects of similarity search (``client.similar``) and data health (``client.insights``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vize.client.objects import Json


@dataclass(frozen=True)
class SimilarImage:
    """One of your training images, ``similarity`` the cosine (1 = identical)."""

    id: str
    similarity: float
    labels: list[tuple[str, str]]  # (id, name)
    thumb_img_path: str = ""

    @classmethod
    def from_json(cls, data: Json) -> SimilarImage:
        return cls(
            id=str(data.get("id", "")),
            similarity=float(data.get("similarity") or 0.0),
            labels=[(str(x.get("id", "")), str(x.get("name", ""))) for x in data["labels"]],
            thumb_img_path=str(data.get("thumb_img_path") or ""),
        )


@dataclass
class SimilarResult:
    """The images most similar to one query, best first; ``ok`` False when the server could
    not read the query (``error`` says why)."""

    source: str
    status_code: int
    status_text: str
    similar: list[SimilarImage]
    raw: Json = field(default_factory=dict, repr=False, compare=False)
    # Images of the task not searched yet (their embedding runs in the background).
    not_indexed: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def error(self) -> str | None:
        return None if self.ok else self.status_text

    @classmethod
    def from_json(cls, data: Json, source: str, not_indexed: int = 0) -> SimilarResult:
        status = data.get("_status") or {}
        return cls(
            not_indexed=not_indexed,
            source=source,
            status_code=int(status.get("code") or 200),
            status_text=str(status.get("text") or "OK"),
            similar=[SimilarImage.from_json(x) for x in data.get("similar") or []],
            raw=data,
        )


@dataclass
class Insights:
    """A task's data health: groups of near-duplicate images, images whose label the data
    disagrees with (most suspicious first), test images with a copy in the training set."""

    near_duplicates: list[Json]
    suspected_mislabels: list[Json]
    test_leaks: list[Json]
    computed: str | None
    model_version: int | None = None  # the training the suspects come from
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Insights:
        return cls(
            near_duplicates=list(data.get("near_duplicates") or []),
            suspected_mislabels=list(data.get("suspected_mislabels") or []),
            test_leaks=list(data.get("test_leaks") or []),
            computed=data.get("computed"),
            model_version=data.get("model_version"),
            raw=data,
        )
