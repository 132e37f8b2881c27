"""``VizeClient``: the entry point of the SDK."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import httpx

from vize.client._http import Http
from vize.client.errors import TrainingFailed, TrainingTimeout, VizeAPIError
from vize.client.imageio import ImageInput, is_single, prepare
from vize.client.objects import (
    Account,
    Classification,
    Image,
    Job,
    Json,
    Model,
    Usage,
    Workspace,
)
from vize.client.resources import Images, Labels, Models, Ref, Tasks, ref
from vize.client.similarity import Insights, SimilarResult

CLASSIFY_BATCH = 10  # the API's limit of records per /v2/classify call
DEFAULT_TIMEOUT = 60.0


class VizeClient:
    """A synchronous client of one Vize (or Ximilar recognition) server.

    >>> with VizeClient("http://127.0.0.1:8000", token) as vize:
    ...     task = vize.tasks.create("Cats and dogs")

    ``transport`` replaces the network (any ``httpx.BaseTransport``: tests pass one that
    calls the app in-process). ``retries`` is how many times a request is repeated after a
    connection failure, timeout, 429 or 5xx, with exponential backoff from ``backoff`` seconds;
    requests that are not safe to repeat are only retried when they cannot have been processed.
    ``workspace`` (an id) is the workspace every call acts in; None: the user's default one.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.5,
        workspace: str | None = None,
    ) -> None:
        self.url = url
        self.workspace = workspace
        self._http = Http(
            url,
            token,
            transport=transport,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            workspace=workspace,
        )
        self.tasks = Tasks(self._http)
        self.labels = Labels(self._http)
        self.images = Images(self._http)
        self.models = Models(self._http)

    def __enter__(self) -> VizeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- account -----------------------------------------------------------------------------

    def account(self) -> Account:
        return Account.from_json(self._http.json("GET", "account/"))

    def update_account(
        self, *, email: str | None = None, notify_email: bool | None = None
    ) -> Account:
        body = {
            k: v for k, v in (("email", email), ("notify_email", notify_email)) if v is not None
        }
        return Account.from_json(self._http.json("PATCH", "account/", json=body))

    def regenerate_token(self) -> str:
        """Replace the API token; this client switches to the new one (the old one is dead)."""
        token = str(self._http.json("POST", "account/regenerate-token/")["token"])
        self._http.set_token(token)
        return token

    def usage(self) -> Usage:
        return Usage.from_json(self._http.json("GET", "usage/"))

    # -- workspaces --------------------------------------------------------------------------

    def workspaces(self) -> list[Workspace]:
        """The user's workspaces with their role in each (the default one first)."""
        data = self._http.json("GET", "workspace/")
        return [Workspace.from_json(w) for w in data.get("results") or []]

    def create_workspace(self, name: str) -> Workspace:
        """A new workspace, owned by the user (pass its ``id`` as ``workspace=``)."""
        return Workspace.from_json(self._http.json("POST", "workspace/", json={"name": name}))

    # -- training ----------------------------------------------------------------------------

    def train(
        self,
        task: Ref,
        *,
        wait: bool = True,
        progress: Callable[[Job], None] | None = None,
        poll_interval: float = 2.0,
        timeout: float | None = None,
    ) -> Model:
        """Start a training. With ``wait``, poll until it ends, calling ``progress`` with each
        job state, and return the trained model; raise ``TrainingFailed`` with the server's
        reason if it fails. Without ``wait``, return the queued model at once."""
        task_id = ref(task)
        started = self._http.json("POST", f"task/{task_id}/train/")
        model_json: Json = started.get("model") or {}
        job_id = str(started.get("job_id") or "")
        if not wait:
            return Model.from_json(model_json)
        job = self._wait(task_id, job_id, progress, poll_interval, timeout)
        if job.state == "failed":
            raise TrainingFailed(
                job.error or job.message or "unknown reason", task_id=task_id, job=job
            )
        model = self._trained_model(task_id, job, model_json)
        if model.train_status == "failed":
            raise TrainingFailed(model.error or "unknown reason", task_id=task_id, job=job)
        return model

    def job(self, job_id: str) -> Job:
        return Job.from_json(self._http.json("GET", f"job/{job_id}/"))

    def training_status(self, task: Ref) -> Job:
        """The latest training of ``task`` (``NotFound`` with code ``no_training`` if none)."""
        return Job.from_json(self._http.json("GET", f"task/{ref(task)}/training/"))

    def _wait(
        self,
        task_id: str,
        job_id: str,
        progress: Callable[[Job], None] | None,
        poll_interval: float,
        timeout: float | None,
    ) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Poll the job itself when known: "latest training" could be a newer one.
            job = self.job(job_id) if job_id else self.training_status(task_id)
            if progress is not None:
                progress(job)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TrainingTimeout(
                    f"Training of task {task_id} still {job.state} after {timeout:g} s; "
                    "it goes on on the server."
                )
            time.sleep(poll_interval)

    def _trained_model(self, task_id: str, job: Job, model_json: Json) -> Model:
        model_id = job.model_id or model_json.get("id")
        if model_id:
            return self.models.get(str(model_id))
        version = job.model_version if job.model_version is not None else model_json.get("version")
        found = self.models.version(task_id, int(version)) if version is not None else None
        if found is None:
            raise VizeAPIError(
                0, "Training finished but its model cannot be found.", "model_missing"
            )
        return found

    # -- classification ----------------------------------------------------------------------

    def classify(
        self,
        task: Ref,
        images: ImageInput | Iterable[ImageInput],
        *,
        version: int | None = None,
        descriptor: bool = False,
        resize: int | None = 512,
    ) -> list[Classification]:
        """Classify images (paths, URLs, bytes, PIL images), ``CLASSIFY_BATCH`` per request.

        Images whose shorter side exceeds ``resize`` px are scaled down and sent as JPEG
        (``resize=None`` sends them untouched). One result per input, in order; an image
        the server could not read has ``ok`` False instead of failing the whole call.
        """
        if is_single(images):
            inputs = [cast(ImageInput, images)]
        else:
            inputs = list(cast(Iterable[ImageInput], images))
        out: list[Classification] = []
        for start in range(0, len(inputs), CLASSIFY_BATCH):
            out += self._classify_batch(
                ref(task), inputs[start : start + CLASSIFY_BATCH], version, descriptor, resize
            )
        return out

    def _classify_batch(
        self,
        task_id: str,
        batch: list[ImageInput],
        version: int | None,
        descriptor: bool,
        resize: int | None,
    ) -> list[Classification]:
        prepared = [prepare(item, resize) for item in batch]
        records: list[Json] = []
        for p in prepared:
            if p.url:
                records.append({"_url": p.url})
            else:
                records.append({"_base64": base64.b64encode(p.data or b"").decode("ascii")})
        body: dict[str, Any] = {
            "task_id": task_id,
            "records": records,
            "descriptor": 1 if descriptor else 0,
        }
        if version is not None:
            body["version"] = version
        # Classifying changes nothing on the server, so a retry after a lost answer is safe.
        answer = self._http.json("POST", "classify/", json=body, idempotent=True)
        used = answer.get("version")
        version_used = int(used) if used is not None else None
        rows = answer.get("records") or []
        return [
            Classification.from_json(
                rows[i] if i < len(rows) else _missing(), p.source, version_used
            )
            for i, p in enumerate(prepared)
        ]

    # -- similarity and data health ----------------------------------------------------------

    def similar(
        self,
        task: Ref,
        images: ImageInput | Image | Iterable[ImageInput | Image],
        *,
        k: int = 10,
        label: Ref | None = None,
        resize: int | None = 512,
    ) -> list[SimilarResult]:
        """Your training images of ``task`` most similar to each query, best first (``k`` per
        query, at most 100; ``label`` keeps one label's images). A query is an image (path,
        URL, bytes, PIL image) or one of your training images (an ``Image``)."""
        single = isinstance(images, Image) or is_single(images)
        inputs = [images] if single else list(cast(Iterable[ImageInput | Image], images))
        out: list[SimilarResult] = []
        for start in range(0, len(inputs), CLASSIFY_BATCH):
            batch = inputs[start : start + CLASSIFY_BATCH]
            records, sources = [], []
            for item in batch:
                if isinstance(item, Image):
                    records.append({"_id": item.id})
                    sources.append(item.id)
                    continue
                p = prepare(cast(ImageInput, item), resize)
                sources.append(p.source)
                data = base64.b64encode(p.data or b"").decode("ascii")
                records.append({"_url": p.url} if p.url else {"_base64": data})
            body: dict[str, Any] = {"task_id": ref(task), "k": k, "records": records}
            if label is not None:
                body["label"] = ref(label)
            answer = self._http.json("POST", "similar/", json=body, idempotent=True)
            rows = answer.get("records") or []
            out += [
                SimilarResult.from_json(
                    rows[i] if i < len(rows) else _missing(),
                    src,
                    int(answer.get("not_indexed") or 0),
                )
                for i, src in enumerate(sources)
            ]
        return out

    def insights(self, task: Ref, *, recompute: bool = False) -> Insights:
        """The task's data health: near-duplicates, suspected mislabels, test leaks."""
        params = {"recompute": "true"} if recompute else None
        answer = self._http.json("GET", f"task/{ref(task)}/insights/", params=params)
        return Insights.from_json(answer)


def _missing() -> Json:
    return {"_status": {"code": 500, "text": "The server returned no result for this image."}}
