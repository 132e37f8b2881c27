"""What a background job may use, built by the server's lifespan or by a Celery worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.services.notify import Notifier
from vize.services.recognition import Recognizer
from vize.storage import BlobStore

# A job's progress report: fraction done (0..1) and an optional message for the user.
ProgressFn = Callable[[float, str | None], None]


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    sessions: sessionmaker[Session]
    blobs: BlobStore
    recognizer: Recognizer  # embeds training images (the server's own one in embedded mode)
    notifier: Notifier

    @property
    def views(self) -> tuple[str, ...]:
        """The image views a training embeds: the image, and its mirror with flip_augment."""
        return ("orig", "flip") if self.settings.flip_augment else ("orig",)
