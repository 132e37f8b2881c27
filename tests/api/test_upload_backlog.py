"""Uploads are admitted at the rate background embedding keeps up: beyond
``VIZE_EMBED_BACKLOG`` images waiting, 429 ``embedding_backlog`` with ``Retry-After``; once an
embed job has run, uploads are accepted again."""

from __future__ import annotations

import time

import pytest

from tests.helpers import images
from tests.inprocess import app_client
from vize.app import create_app
from vize.config import Settings
from vize.services.backlog import EmbedBacklog


def _upload(client, h: dict, path) -> object:  # type: ignore[no-untyped-def]
    return client.post(
        "/v2/training-image/", headers=h, files={"img_path": (path.name, path.read_bytes())}
    )


@pytest.mark.parametrize("embedded_worker", [False])
def test_uploads_beyond_the_backlog_get_429_until_embedding_catches_up(
    settings: Settings, alice: dict
) -> None:
    h = alice["headers"]
    files = images("frog", 0, 5)
    # First without a worker: the embed job waits in the table, so the backlog stays full.
    full = settings.model_copy(update={"embed_backlog": 3})
    app = create_app(full)
    with app_client(app) as client:
        for f in files[:3]:
            assert _upload(client, h, f).status_code == 201
        r = _upload(client, h, files[3])
        assert r.status_code == 429, r.text
        assert r.json()["code"] == "embedding_backlog"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert client.get("/v2/training-image/", headers=h).json()["count"] == 3  # not stored
        # Now the worker starts: the queued embed job runs and the backlog drains.
        app.state.vize.services.runner.start()
        deadline = time.monotonic() + 60
        while (r := _upload(client, h, files[3])).status_code == 429:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert r.status_code == 201, r.text


def test_the_backlog_counts_per_user_and_corrects_itself() -> None:
    backlog = EmbedBacklog(limit=5)
    backlog.added("a", 3)
    backlog.added("b", 2)
    with pytest.raises(Exception, match="waiting") as err:
        backlog.admit()
    assert getattr(err.value, "status", None) == 429
    share = backlog.started("a")
    backlog.added("a", 1)  # uploaded while the job runs: left for the next job
    backlog.finished("a", share, embedded=0, seconds=0.1)
    assert backlog.total() == 3
    backlog.admit()
    share = backlog.started("b")
    backlog.finished("b", share + 7, embedded=0, seconds=0.1)  # images embedded elsewhere
    assert backlog.total() == 1
    assert EmbedBacklog(limit=0).admit() is None  # 0: no limit


def test_the_backlog_admits_what_the_measured_rate_embeds_in_its_seconds() -> None:
    """Under load the embed jobs run slower, and fewer waiting images are admitted: the
    backlog stays a few seconds of embedding work instead of a fixed count."""
    backlog = EmbedBacklog(limit=256, seconds=3.0)
    assert backlog.current_limit() == 256  # nobody is being served: the count alone
    backlog.serving()  # a classification
    assert backlog.current_limit() == 60  # the first guess: 20 images/s for 3 s
    limits = []
    for _ in range(4):  # embed jobs at 4 images/s while classifications take the cores
        backlog.finished("a", backlog.started("a"), embedded=40, seconds=10.0)
        limits.append(backlog.current_limit())
    assert limits == [36, 24, 18, 16]  # 12, 8, 6 and 5 images/s x 3 s; never below 16
    backlog.added("a", 16)
    with pytest.raises(Exception, match="waiting") as err:
        backlog.admit()
    assert getattr(err.value, "headers", {}).get("Retry-After") == "1"
    capped = EmbedBacklog(limit=10, seconds=3.0)
    capped.serving()
    assert capped.current_limit() == 10  # the count still caps
    assert EmbedBacklog(limit=256, seconds=0).current_limit() == 256  # 0: the count only


def test_a_full_backlog_still_admits_another_workspace_its_share() -> None:
    """One workspace flooding uploads fills the backlog; another one still gets an equal
    share of it, then is refused too."""
    backlog = EmbedBacklog(limit=10)
    backlog.added("flood", 10)
    with pytest.raises(Exception, match="waiting"):
        backlog.admit("flood")
    backlog.admit("quiet")  # nothing of its own waiting
    backlog.added("quiet", 4)
    backlog.admit("quiet")  # 4 < 10 / 2 workspaces
    backlog.added("quiet", 1)
    with pytest.raises(Exception, match="waiting"):
        backlog.admit("quiet")
