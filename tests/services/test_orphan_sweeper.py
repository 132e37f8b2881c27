"""The orphan sweep in the background, one node at a time (issue 19, item 5)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.services.orphans import OrphanSweeper, sweep_if_first, sweep_lock
from vize.storage import LocalBlobStore

OLD = "images/u/ab/crashed"


def aged(blobs: LocalBlobStore) -> None:
    blobs.put(OLD, b"written, never committed")
    old = time.time() - 7200
    os.utime(blobs.root / OLD, (old, old))


def test_one_holder_at_a_time(sessions: sessionmaker[Session], settings: Settings) -> None:
    """Another node (here another connection or file handle) is refused while one holds it,
    and gets it once released."""
    with sweep_lock(sessions, settings) as first:
        assert first
        with sweep_lock(sessions, settings) as second:
            assert not second
    with sweep_lock(sessions, settings) as again:
        assert again


def test_a_node_skips_while_another_sweeps(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings
) -> None:
    aged(blobs)
    with sweep_lock(sessions, settings):
        assert sweep_if_first(sessions, blobs, settings) is False
        assert blobs.exists(OLD)
    assert sweep_if_first(sessions, blobs, settings) is True
    assert not blobs.exists(OLD)


class FailingOnce(LocalBlobStore):
    def __init__(self, root: os.PathLike[str]) -> None:
        super().__init__(root)  # type: ignore[arg-type]
        self.failures = 1

    def scan(self) -> Iterator[tuple[str, float]]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage unreachable")
        return super().scan()


def test_rounds_repeat_and_a_failed_round_does_not_stop_them(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    blobs = FailingOnce(settings.blob_dir)
    aged(blobs)
    fast = settings.model_copy(update={"orphan_sweep_interval_seconds": 0.05})
    sweeper = OrphanSweeper(sessions, blobs, fast).start()
    try:
        deadline = time.monotonic() + 30
        while sweeper.rounds < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        sweeper.stop()
    assert blobs.failures == 0 and not blobs.exists(OLD)  # the second round swept
    assert not sweeper.thread.is_alive()
