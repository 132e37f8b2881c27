"""What each kind of job runs: a thin table from job kind to its service entry points."""

from __future__ import annotations

from collections.abc import Callable

from vize.db.states import JobKind
from vize.db.tables import Job
from vize.services import embeddings, training
from vize.services.context import JobContext, ProgressFn

Handler = Callable[[JobContext, Job, ProgressFn], str]
# Called when the job failed for good, so its objects (a model version) can say so.
FailureHook = Callable[[JobContext, Job, str], None]

HANDLERS: dict[str, tuple[Handler, FailureHook | None]] = {
    JobKind.TRAIN: (training.run, training.failed),
    JobKind.EMBED: (embeddings.embed_new, None),
}
