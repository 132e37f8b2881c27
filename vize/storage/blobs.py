"""Blob store for images, thumbnails and model artifacts. The local-disk one writes atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from vize.errors import StorageError


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def path(self, key: str) -> Path | None: ...
    def scan(self) -> Iterator[tuple[str, float]]: ...


TMP_PREFIX = ".tmp-"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class LocalBlobStore:
    """Blobs as files under one root; a shared folder lets many processes use it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self._file(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target then rename: readers never see a half-written blob.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as fh:
                    self._write(fh, data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(
                f"Could not store the file: {exc.strerror or exc}.", code="storage_error"
            ) from exc

    @staticmethod
    def _write(fh: BinaryIO, data: bytes) -> None:
        # Its own method: where a full disk fails, and where tests make it fail (ENOSPC).
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())

    def get(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def path(self, key: str) -> Path | None:
        return self._file(key)

    def scan(self) -> Iterator[tuple[str, float]]:
        """Every stored file as (key, modification time), unfinished temporary files too
        (their names start with ``TMP_PREFIX``), for the orphan sweep."""
        for folder, _, files in os.walk(self.root):
            for name in files:
                path = Path(folder) / name
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield path.relative_to(self.root).as_posix(), mtime
