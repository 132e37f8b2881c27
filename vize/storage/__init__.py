"""Blob storage behind an interface: images, thumbnails and model artifacts."""

from vize.storage.blobs import BlobStore, LocalBlobStore

__all__ = ["BlobStore", "LocalBlobStore"]
