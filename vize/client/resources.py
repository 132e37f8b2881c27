"""Resource groups of the client: ``client.tasks``, ``.labels``, ``.images``, ``.models``."""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vize.client._http import Http
from vize.client.errors import (
    AmbiguousName,
    AuthError,
    NotFound,
    VizeAPIError,
    VizeError,
    error_class,
    existing_image_id,
)
from vize.client.imageio import ImageInput, Prepared, describe, prepare
from vize.client.objects import Image, Json, Label, Model, Page, Task

T = TypeVar("T")
Ref = str | Task | Label | Image | Model  # an object or its id


def ref(value: Ref) -> str:
    return value if isinstance(value, str) else value.id


def looks_like_id(key: str) -> bool:
    try:
        uuid.UUID(key)
    except ValueError:
        return False
    return True


def _one(matches: Sequence[T], what: str, key: str) -> T:
    if not matches:
        raise NotFound(404, f"No {what} with id or name {key!r}.", "not_found")
    if len(matches) > 1:
        ids = ", ".join(getattr(m, "id", "?") for m in matches)
        raise AmbiguousName(f"{len(matches)} {what}s are named {key!r} ({ids}); use the id.")
    return matches[0]


def _drop_none(**fields: Any) -> Json:
    return {k: v for k, v in fields.items() if v is not None}


class _Resource:
    def __init__(self, http: Http) -> None:
        self._http = http


class Tasks(_Resource):
    """``/v2/task/``: tasks and the labels attached to them."""

    def list(self, search: str | None = None, page: int = 1, page_size: int = 25) -> Page[Task]:
        params = {"search": search, "page": page, "page_size": page_size}
        return self._http.page("task/", Task.from_json, params)

    def iter(self, search: str | None = None, page_size: int = 200) -> Iterator[Task]:
        """Every task, following all pages."""
        return self._http.iterate("task/", Task.from_json, {"search": search}, page_size)

    def get(self, task: Ref) -> Task:
        return Task.from_json(self._http.json("GET", f"task/{ref(task)}/"))

    def find(self, name: str) -> Task | None:
        """The task called exactly ``name`` (None if there is none)."""
        return next((t for t in self.iter(search=name) if t.name == name), None)

    def resolve(self, key: str) -> Task:
        """The task whose id or exact name is ``key``: what a user types on a command line.
        Raises ``NotFound``, or ``AmbiguousName`` when several tasks share the name."""
        if looks_like_id(key):
            try:
                return self.get(key)
            except NotFound:
                pass  # a task may be named like a UUID
        matches = [t for t in self.iter(search=key) if t.name == key]
        return _one(matches, "task", key)

    def create(self, name: str, description: str = "", type: str = "multi_class") -> Task:
        body = {"name": name, "description": description, "type": type}
        return Task.from_json(self._http.json("POST", "task/", json=body))

    def update(
        self,
        task: Ref,
        *,
        name: str | None = None,
        description: str | None = None,
        production_version: int | None = None,
        webhook_url: str | None = None,
        deploy_policy: str | None = None,
    ) -> Task:
        """``deploy_policy``: what a finished training does (always, if_better, never)."""
        body = _drop_none(
            name=name,
            description=description,
            production_version=production_version,
            webhook_url=webhook_url,
            deploy_policy=deploy_policy,
        )
        return Task.from_json(self._http.json("PATCH", f"task/{ref(task)}/", json=body))

    def delete(self, task: Ref) -> None:
        self._http.request("DELETE", f"task/{ref(task)}/")

    def add_label(self, task: Ref, label: Ref) -> Task:
        body = {"label_id": ref(label)}
        # Attaching twice is harmless, so a retry after a lost answer is too.
        data = self._http.json("POST", f"task/{ref(task)}/add-label/", json=body, idempotent=True)
        return Task.from_json(data)

    def remove_label(self, task: Ref, label: Ref) -> Task:
        body = {"label_id": ref(label)}
        path = f"task/{ref(task)}/remove-label/"
        return Task.from_json(self._http.json("POST", path, json=body, idempotent=True))


class Labels(_Resource):
    """``/v2/label/``: your labels, each attachable to any number of tasks."""

    def list(
        self,
        task: Ref | None = None,
        search: str | None = None,
        page: int = 1,
        page_size: int = 25,
    ) -> Page[Label]:
        params = {
            "task": ref(task) if task else None,
            "search": search,
            "page": page,
            "page_size": page_size,
        }
        return self._http.page("label/", Label.from_json, params)

    def iter(
        self, task: Ref | None = None, search: str | None = None, page_size: int = 200
    ) -> Iterator[Label]:
        params = {"task": ref(task) if task else None, "search": search}
        return self._http.iterate("label/", Label.from_json, params, page_size)

    def get(self, label: Ref) -> Label:
        return Label.from_json(self._http.json("GET", f"label/{ref(label)}/"))

    def resolve(self, key: str, task: Ref | None = None) -> Label:
        """The label whose id or exact name is ``key`` (among ``task``'s labels if given)."""
        if looks_like_id(key):
            try:
                return self.get(key)
            except NotFound:
                pass
        matches = [lbl for lbl in self.iter(task=task, search=key) if lbl.name == key]
        return _one(matches, "label", key)

    def create(
        self,
        name: str,
        task: Ref | None = None,
        *,
        description: str = "",
        output_name: str = "",
        type: str | None = None,
    ) -> Label:
        body = _drop_none(
            name=name,
            description=description,
            output_name=output_name,
            type=type,
            task=ref(task) if task else None,
        )
        return Label.from_json(self._http.json("POST", "label/", json=body))

    def update(
        self,
        label: Ref,
        *,
        name: str | None = None,
        description: str | None = None,
        output_name: str | None = None,
        type: str | None = None,
    ) -> Label:
        body = _drop_none(name=name, description=description, output_name=output_name, type=type)
        return Label.from_json(self._http.json("PATCH", f"label/{ref(label)}/", json=body))

    def delete(self, label: Ref) -> None:
        self._http.request("DELETE", f"label/{ref(label)}/")

    def add_task(self, label: Ref, task: Ref) -> Label:
        path = f"label/{ref(label)}/add-task/"
        data = self._http.json("POST", path, json={"task_id": ref(task)}, idempotent=True)
        return Label.from_json(data)

    def remove_task(self, label: Ref, task: Ref) -> Label:
        path = f"label/{ref(label)}/remove-task/"
        data = self._http.json("POST", path, json={"task_id": ref(task)}, idempotent=True)
        return Label.from_json(data)


@dataclass(frozen=True)
class UploadItem:
    """One image of a bulk upload with its own labels and metadata."""

    image: ImageInput
    labels: Sequence[Ref] = ()
    meta_data: Json | None = None
    test_image: bool = False
    file_name: str | None = None


@dataclass(frozen=True)
class UploadResult:
    """Outcome of one bulk-upload item: ``status`` is created, exists or failed."""

    item: UploadItem
    source: str
    image: Image | None = None
    error: Exception | None = field(default=None)

    @property
    def status(self) -> str:
        if self.image is None:
            return "failed"
        return "exists" if self.image.duplicate else "created"


class Images(_Resource):
    """``/v2/training-image/``: upload (one, or many in parallel), list, label, download."""

    def list(
        self,
        task: Ref | None = None,
        label: Ref | None = None,
        *,
        test: bool | None = None,
        search: str | None = None,
        page: int = 1,
        page_size: int = 25,
    ) -> Page[Image]:
        params = self._filters(task, label, test, search)
        params.update(page=page, page_size=page_size)
        return self._http.page("training-image/", Image.from_json, params)

    def iter(
        self,
        task: Ref | None = None,
        label: Ref | None = None,
        *,
        test: bool | None = None,
        search: str | None = None,
        page_size: int = 200,
    ) -> Iterator[Image]:
        params = self._filters(task, label, test, search)
        return self._http.iterate("training-image/", Image.from_json, params, page_size)

    @staticmethod
    def _filters(
        task: Ref | None, label: Ref | None, test: bool | None, search: str | None
    ) -> Json:
        return _drop_none(
            task=ref(task) if task else None,
            label=ref(label) if label else None,
            test=None if test is None else str(test).lower(),
            search=search,
        )

    def get(self, image: Ref) -> Image:
        return Image.from_json(self._http.json("GET", f"training-image/{ref(image)}/"))

    def upload(
        self,
        image: ImageInput,
        labels: Sequence[Ref] = (),
        *,
        meta_data: Json | None = None,
        test_image: bool = False,
        file_name: str | None = None,
    ) -> Image:
        """Upload one image (path, bytes, PIL image or URL). Content the server already has
        comes back as that existing image with ``duplicate=True`` (its labels merged)."""
        item = UploadItem(image, labels, meta_data, test_image, file_name)
        return self._upload(item, prepare(image))

    def _upload(self, item: UploadItem, prepared: Prepared) -> Image:
        label_ids = [ref(lbl) for lbl in item.labels]
        if prepared.url:
            return self._upload_url(item, prepared.url, label_ids)
        form: dict[str, Any] = {"test_image": "true" if item.test_image else "false"}
        if label_ids:
            form["labels"] = ",".join(label_ids)
        if item.meta_data is not None:
            form["meta_data"] = json.dumps(item.meta_data)
        name = item.file_name or prepared.file_name
        files = {"img_path": (name, prepared.data or b"", prepared.content_type)}
        try:
            # Safe to retry: the server deduplicates by content, so a repeat cannot add twice.
            response = self._http.request(
                "POST", "training-image/", data=form, files=files, idempotent=True
            )
        except VizeAPIError as exc:
            # Some servers refuse duplicates with an error that names the existing image.
            existing = existing_image_id(exc.detail)
            if existing is None:
                raise
            return self._adopt_existing(existing, label_ids)
        body = response.json()
        duplicate = response.status_code == 200 or body.get("code") == "already_exists"
        return Image.from_json(body, duplicate=duplicate)

    def _upload_url(self, item: UploadItem, url: str, label_ids: Sequence[str]) -> Image:
        record: Json = {"_url": url, "labels": [*label_ids], "test_image": item.test_image}
        if item.meta_data is not None:
            record["meta_data"] = item.meta_data
        if item.file_name:
            record["file_name"] = item.file_name
        body = self._http.json(
            "POST", "training-image/", json={"records": [record]}, idempotent=True
        )
        out = (body.get("records") or [{}])[0]
        status = out.get("_status") or {}
        code = int(status.get("code") or 500)
        if code >= 400:
            error = str(status.get("error") or "upload_failed")
            detail = str(status.get("text") or "Upload failed.")
            raise error_class(code, error)(code, detail, error, out)
        return Image.from_json(out, duplicate=code == 200)

    def _adopt_existing(self, image_id: str, label_ids: Sequence[str]) -> Image:
        for label_id in label_ids:
            self.add_label(image_id, label_id)
        found = self.get(image_id)
        return Image.from_json(found.raw, duplicate=True)

    def upload_many(
        self,
        items: Iterable[UploadItem | ImageInput],
        labels: Sequence[Ref] = (),
        *,
        workers: int = 4,
        on_result: Callable[[UploadResult], object] | None = None,
    ) -> builtins.list[UploadResult]:
        """Upload in parallel (``workers`` threads) and return one result per item, in input
        order. A failing item does not stop the others; an authentication error does, since
        every other item would fail the same way. Bare inputs get ``labels``."""
        todo = [it if isinstance(it, UploadItem) else UploadItem(it, labels) for it in items]
        results: list[UploadResult | None] = [None] * len(todo)
        with ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="vize-upload"
        ) as pool:
            futures: dict[Future[UploadResult], int] = {
                pool.submit(self._upload_item, item): i for i, item in enumerate(todo)
            }
            try:
                for future in as_completed(futures):
                    result = future.result()
                    results[futures[future]] = result
                    if on_result is not None:
                        on_result(result)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return [r for r in results if r is not None]

    def _upload_item(self, item: UploadItem) -> UploadResult:
        source = describe(item.image)
        try:
            return UploadResult(item, source, self._upload(item, prepare(item.image)))
        except AuthError:
            raise
        except (VizeError, OSError, ValueError) as exc:
            return UploadResult(item, source, error=exc)

    def update(
        self, image: Ref, *, meta_data: Json | None = None, test_image: bool | None = None
    ) -> Image:
        body = _drop_none(meta_data=meta_data, test_image=test_image)
        path = f"training-image/{ref(image)}/"
        return Image.from_json(self._http.json("PATCH", path, json=body))

    def delete(self, image: Ref) -> None:
        self._http.request("DELETE", f"training-image/{ref(image)}/")

    def add_label(self, image: Ref, label: Ref, *, move: bool = False) -> Image:
        """Put ``label`` on the image. In a categorization task an image has one label: a
        second one raises ``Conflict`` (``label_conflict``) unless ``move`` replaces it."""
        path = f"training-image/{ref(image)}/add-label/"
        body: dict[str, Any] = {"label_id": ref(label)}
        if move:
            body["move"] = True
        data = self._http.json("POST", path, json=body, idempotent=True)
        return Image.from_json(data)

    def remove_label(self, image: Ref, label: Ref) -> Image:
        path = f"training-image/{ref(image)}/remove-label/"
        data = self._http.json("POST", path, json={"label_id": ref(label)}, idempotent=True)
        return Image.from_json(data)

    def download(self, image: Ref, thumbnail: bool = False) -> bytes:
        """The stored image file (or its JPEG thumbnail)."""
        kind = "thumb" if thumbnail else "file"
        return self._http.request("GET", f"training-image/{ref(image)}/{kind}/").content


class Models(_Resource):
    """``/v2/model/``: the trained versions of your tasks."""

    def list(self, task: Ref | None = None, page: int = 1, page_size: int = 25) -> Page[Model]:
        params = {"task": ref(task) if task else None, "page": page, "page_size": page_size}
        return self._http.page("model/", Model.from_json, params)

    def iter(self, task: Ref | None = None, page_size: int = 200) -> Iterator[Model]:
        params = {"task": ref(task) if task else None}
        return self._http.iterate("model/", Model.from_json, params, page_size)

    def get(self, model: Ref) -> Model:
        return Model.from_json(self._http.json("GET", f"model/{ref(model)}/"))

    def version(self, task: Ref, version: int) -> Model | None:
        """The model of ``task`` with this version number, if it exists."""
        return next((m for m in self.iter(task) if m.version == version), None)

    def export(self, model: Ref) -> bytes:
        """The model as a zip to run without the server: ``model.onnx`` (uint8 images in,
        ``probabilities`` out), ``labels.json``, ``preprocess.json``, ``thresholds.json``
        and a README with an onnxruntime example."""
        return self._http.request("GET", f"model/{ref(model)}/export/").content

    def deploy(self, task: Ref, version: int) -> Task:
        """Serve ``version`` for classifications that do not ask for a version."""
        body = {"production_version": version}
        return Task.from_json(self._http.json("PATCH", f"task/{ref(task)}/", json=body))
