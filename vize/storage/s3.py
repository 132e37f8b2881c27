"""Blob store on an S3-compatible object store (AWS S3, MinIO, Ceph, R2), through boto3.

Chosen by ``VIZE_STORAGE_URL=s3://bucket/prefix``. Endpoint, region and credentials come from
the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID`` ...) and
boto3's credential chain; nothing S3-specific is a Vize setting.

The same guarantees as the local store, by other means (docs/deploy.md, "Object storage"):

- A PUT is atomic: readers see the whole old object or the whole new one, never a part, so no
  temporary file is needed (the local store writes beside the target and renames).
- The safe-removal protocol (``delete_unless``) has no atomic rename to lean on. It copies the
  object to a trash key (a new object: its LastModified is now, so no orphan sweep takes it
  while we decide), deletes the original, and only then asks the database. Keep: copy the
  trash back, then delete the trash; drop: delete the trash. A reader that misses the key in
  between finds the trash copy (same bytes), as on disk. S3 has been strongly consistent for
  reads after writes, deletes and listings since December 2020 (MinIO and Ceph always were),
  which is what makes "the original is gone before the database is asked" hold.
- ``scan`` lists the prefix with each object's LastModified, which the orphan sweep's grace
  period compares as it does file mtimes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vize.errors import StorageError
from vize.storage.blobs import TMP_PREFIX, TRASH_MARK, _check_key, trash_origin

log = logging.getLogger("vize.storage")
MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix/"); the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"VIZE_STORAGE_URL must look like s3://bucket/prefix, not {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def make_client(**kwargs: Any) -> Any:
    config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 3})
    return boto3.session.Session().client("s3", config=config, **kwargs)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in MISSING


def _storage_error(exc: Exception) -> StorageError:
    # 503, not the disk-full 507: the store is unreachable or refused, a retry may work. The
    # client sees the error's name only (no bucket, endpoint or key); the log has the rest.
    log.error("object storage request failed: %s", exc)
    if isinstance(exc, ClientError):
        reason = str(exc.response.get("Error", {}).get("Code", "error"))
    else:
        reason = type(exc).__name__
    return StorageError(
        f"Object storage is unavailable ({reason}).", code="storage_unavailable", status=503
    )


class S3BlobStore:
    """Blobs as objects under ``prefix`` in one bucket; every replica and worker shares it."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        # Thread-safe (unlike a boto3 session); the pool is sized for the inference, upload
        # and job threads that use the store at once.
        self.client = client or make_client()

    @classmethod
    def from_url(cls, url: str, **client_kwargs: Any) -> S3BlobStore:
        """``client_kwargs`` (endpoint_url, credentials) override the AWS variables."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, make_client(**client_kwargs))

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise KeyError(kwargs.get("Key", "")) from exc
            raise _storage_error(exc) from exc
        except BotoCoreError as exc:  # unreachable endpoint, bad credentials config ...
            raise _storage_error(exc) from exc

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        # As on disk: a key ``delete_unless`` is deciding on is away under a trash key, and
        # comes back if a row uses it; read the trash meanwhile (same bytes).
        for _ in range(3):
            try:
                return self._read(self._key(key))
            except KeyError:
                pass
            for trash in self._trash_of(key):
                try:
                    return self._read(trash)
                except KeyError:
                    continue
        raise KeyError(key)

    def _read(self, full_key: str) -> bytes:
        body = self._call("get_object", Key=full_key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _trash_of(self, key: str) -> list[str]:
        folder = key.rpartition("/")[0]
        start = self.prefix + (f"{folder}/" if folder else "") + TMP_PREFIX + TRASH_MARK
        found = []
        for full, _ in self._list(start):
            if trash_origin(full[len(self.prefix) :]) == key:
                found.append(full)
        return found

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._key(key))
        except KeyError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self._key(key))  # no error when already gone

    def _copy(self, source: str, target: str) -> None:
        self._call("copy_object", Key=target, CopySource={"Bucket": self.bucket, "Key": source})

    def delete_unless(self, key: str, in_use: Callable[[], bool]) -> bool:
        """Delete ``key`` unless ``in_use()``, asked only once the object is out of the way;
        True when an object was deleted. The local store's protocol with copy + delete for
        its rename (see the module docstring)."""
        source = self._key(key)
        folder, _, name = key.rpartition("/")
        trash_key = f"{folder}/" if folder else ""
        trash = self.prefix + f"{trash_key}{TMP_PREFIX}{TRASH_MARK}{uuid.uuid4().hex}-{name}"
        try:
            self._copy(source, trash)
        except KeyError:
            return False  # gone already (another remover took it)
        try:
            # A writer of the same bytes may put the key again between the copy and this
            # delete: its upload checks for its file after its commit and writes it back.
            self._call("delete_object", Key=source)
            keep = in_use()
        except BaseException:
            self._restore(trash, source)  # undecided: an orphan is harmless, a lost file is not
            raise
        if keep:
            self._restore(trash, source)  # a writer may have put it again: the same bytes
            return False
        self._call("delete_object", Key=trash)
        return True

    def _restore(self, trash: str, source: str) -> None:
        self._copy(trash, source)
        self._call("delete_object", Key=trash)

    def scan(self) -> Iterator[tuple[str, float]]:
        """Every stored object as (key, last-modified time), for the orphan sweep."""
        for full, mtime in self._list(self.prefix):
            yield full[len(self.prefix) :], mtime

    def _list(self, start: str) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["LastModified"].timestamp()
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc) from exc

    def check(self) -> None:
        """Raise unless the bucket answers (the readiness probe)."""
        self._call("head_bucket")
