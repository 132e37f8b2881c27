"""The embedding runs' blob reads (vize.services.embeddings._Prefetch): ahead of the forwards,
in order, bounded, and an image deleted meanwhile is left out rather than failing the run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from vize.services.embeddings import FETCH_AHEAD, _Prefetch
from vize.storage import LocalBlobStore


class CountingStore(LocalBlobStore):
    """A real store on disk that records which keys were read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: list[str] = []
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        data = super().get(key)
        with self._lock:
            self.read.append(key)
        return data


def _chunks(store: LocalBlobStore, n_chunks: int, size: int) -> list[list[tuple[str, str]]]:
    chunks = []
    for c in range(n_chunks):
        chunk = []
        for i in range(size):
            key = f"images/{c:02d}-{i}"
            store.put(key, f"bytes {c} {i}".encode())
            chunk.append((f"img-{c}-{i}", key))
        chunks.append(chunk)
    return chunks


def test_reads_stay_a_bounded_number_of_chunks_ahead(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    chunks = _chunks(store, 12, 3)
    prefetch = _Prefetch(store, chunks)
    try:
        first = prefetch.take(0)
        assert first == [(f"img-0-{i}", f"bytes 0 {i}".encode()) for i in range(3)]
        ahead = prefetch.take(FETCH_AHEAD)  # waits for its chunk; later ones may still read
        assert [i for i, _ in ahead] == [i for i, _ in chunks[FETCH_AHEAD]]
        # Never more than FETCH_AHEAD chunks beyond the furthest one taken.
        submitted = len(prefetch._reads)
        assert submitted == 2 * FETCH_AHEAD + 1 <= len(chunks)
        for index in [i for i in range(len(chunks)) if i not in (0, FETCH_AHEAD)]:
            assert [i for i, _ in prefetch.take(index)] == [i for i, _ in chunks[index]]
            # Taken chunks are let go of: only the reads ahead hold bytes.
            assert not any(prefetch._reads[: index + 1])
    finally:
        prefetch.close()
    assert sorted(store.read) == sorted(key for chunk in chunks for _, key in chunk)
    assert not [t for t in threading.enumerate() if t.name.startswith("vize-fetch")]


def test_an_image_deleted_meanwhile_is_left_out(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    chunks = _chunks(store, 2, 3)
    store.delete(chunks[1][1][1])
    prefetch = _Prefetch(store, chunks)
    try:
        assert [i for i, _ in prefetch.take(1)] == ["img-1-0", "img-1-2"]
    finally:
        prefetch.close()


def test_a_failing_store_fails_the_chunk_that_needs_it(tmp_path: Path) -> None:
    class Down(LocalBlobStore):
        def get(self, key: str) -> bytes:
            raise OSError("storage unreachable")

    prefetch = _Prefetch(Down(tmp_path), [[("img", "images/x")]])
    try:
        with pytest.raises(OSError, match="unreachable"):
            prefetch.take(0)
    finally:
        prefetch.close()
