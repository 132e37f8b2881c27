"""Blob storage behind an interface: images, thumbnails and model artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vize.storage.blobs import BlobStore, LocalBlobStore

if TYPE_CHECKING:
    from vize.config import Settings

__all__ = ["BlobStore", "LocalBlobStore", "open_blob_store"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The store the settings choose: ``VIZE_STORAGE_URL=s3://bucket/prefix`` for object
    storage, else the local (or shared) folder ``blob_dir``."""
    if settings.storage_url:
        from vize.storage.s3 import S3BlobStore  # boto3 loads only when S3 is used

        return S3BlobStore.from_url(settings.storage_url)
    return LocalBlobStore(settings.blob_dir)
