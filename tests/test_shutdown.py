"""Nothing the app starts outlives it: a thread still running at interpreter exit (the
backbone warm-up was one) can crash the process after every test passed."""

from __future__ import annotations

import threading

import pytest

from tests.inprocess import app_client
from vize.app import create_app
from vize.config import Settings

# The in-process client's own threads (its event loop portal and AnyIO's pool) wind down
# on their own schedule after the app stopped; they are not the app's.
CLIENT_THREADS = ("asyncio-portal-", "AnyIO worker thread")


def test_shutdown_leaves_no_thread_behind(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def recording_start(self: threading.Thread) -> None:
        started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    warm = settings.model_copy(update={"warm_up": True, "embedded_worker": True})
    with app_client(create_app(warm)) as client:
        assert client.get("/health").status_code == 200
    ours = [t for t in started if not t.name.startswith(CLIENT_THREADS)]
    assert {"vize-warm-up", "vize-worker"} <= {t.name for t in ours}
    assert [t.name for t in ours if t.is_alive()] == []
