"""Blob store for images, thumbnails and model artifacts. The local-disk one writes atomically."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Protocol

from vize.errors import StorageError


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_unless(self, key: str, in_use: Callable[[], bool]) -> bool: ...
    def scan(self) -> Iterator[tuple[str, float]]: ...


TMP_PREFIX = ".tmp-"
# Trash names: TMP_PREFIX + TRASH_MARK + a random token + "-" + the file's own name, so the
# sweep can tell where a leftover came from. mkstemp's random part never holds a "-": no
# temporary file of ``put`` looks like trash.
TRASH_MARK = "del-"


def trash_origin(key: str) -> str | None:
    """The key a trash file was renamed from, or None when ``key`` is not a trash name."""
    folder, _, name = key.rpartition("/")
    if not name.startswith(TMP_PREFIX + TRASH_MARK):
        return None
    _, _, original = name[len(TMP_PREFIX + TRASH_MARK) :].partition("-")
    if not original:
        return None
    return f"{folder}/{original}" if folder else original


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
        target = self._file(key)
        # A file ``delete_unless`` is deciding on is away under a trash name, and comes back if
        # a row uses it: read the trash meanwhile (same bytes) rather than report it missing.
        # A few rounds: it may move back between our two looks.
        for _ in range(3):
            with suppress(FileNotFoundError):
                return target.read_bytes()
            # Only on a miss: listing the folder on every read cost up to ~1.5 ms per file.
            for path in self._trash_of(target):
                with suppress(FileNotFoundError):
                    return path.read_bytes()
        raise KeyError(key)

    @staticmethod
    def _trash_of(target: Path) -> list[Path]:
        try:
            names = os.listdir(target.parent)
        except FileNotFoundError:
            return []
        return [target.parent / n for n in names if trash_origin(n) == target.name]

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def delete_unless(self, key: str, in_use: Callable[[], bool]) -> bool:
        """Delete ``key`` unless ``in_use()``, asked only once the file is out of the way;
        True when a file was deleted.

        For keys whose every writer writes the same bytes (content addressed): a writer whose
        row is committed before ``in_use`` reads gets its file back; one committed later finds
        the file gone when it checks after its commit, and writes it again."""
        target = self._file(key)
        trash = target.with_name(f"{TMP_PREFIX}{TRASH_MARK}{uuid.uuid4().hex}-{target.name}")
        try:
            # Touched first: the renamed file keeps its mtime, and an old-looking trash file
            # would be fair game for another process's orphan sweep while we decide.
            os.utime(target)
            os.rename(target, trash)
        except FileNotFoundError:
            return False
        try:
            keep = in_use()
        except BaseException:
            os.replace(trash, target)  # undecided: an orphan is harmless, a lost file is not
            raise
        if keep:
            os.replace(trash, target)  # a writer may have put it again: the same bytes
            return False
        trash.unlink()
        return True

    def check(self) -> None:
        """Raise unless the folder is there and writable (the readiness probe)."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"Blob folder {self.root} is missing or not writable.")

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
