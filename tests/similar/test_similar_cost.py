"""The cost of one similarity search is bounded whatever the size of the task: the images it
embeds itself are few and charged like classified images (rate limit, usage), the rest is
left to the background embedding and said so, and a large scan takes at most its user's
share of the inference pool."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.helpers import assert_error
from tests.hardening.test_limits import fresh_window
from tests.helpers import task_with_images
from tests.inprocess import app_client
from tests.similar.images import altered
from vize.app import create_app
from vize.config import Settings
from vize.db.states import JobKind
from vize.db.tables import Job
from vize.services import search
from vize.services.fairpool import Priority


def _body(task_id: str) -> dict[str, Any]:
    query = base64.b64encode(altered(100, "warm")).decode()
    return {"task_id": task_id, "k": 100, "records": [{"_base64": query}]}


async def _state(client: Any) -> Any:
    return client._client._transport.app.state.vize


def test_a_search_embeds_few_images_itself_charged_like_classify(
    settings: Settings, alice: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No background worker here: nothing is embedded but by the search itself."""
    monkeypatch.setattr(search, "INLINE_EMBED", 2)
    h = alice["headers"]
    capped = settings.model_copy(update={"embedded_worker": False, "classify_rate_per_minute": 5})
    with app_client(create_app(capped)) as client:
        task_id = task_with_images(client, h, n=3)["task"]["id"]  # 6 images, none embedded
        fresh_window(20)  # the per-minute count resets each minute: both searches in one
        r = client.post("/v2/similar", headers=h, json=_body(task_id))
        assert r.status_code == 200, r.text
        assert len(r.json()["records"][0]["similar"]) == 2  # the two it embedded
        assert r.json()["not_indexed"] == 4
        # Charged: the query and the two images it embedded.
        assert client.get("/v2/usage/", headers=h).json()["today"] == 3
        state = client.call(_state, client)
        with state.sessions() as db:
            jobs = db.scalars(select(Job).where(Job.kind == JobKind.EMBED)).all()
        assert jobs and all(j.owner_id == alice["id"] for j in jobs)  # the rest: queued
        # The next search would embed 2 more and its query: 6 > 5 per minute.
        refused = client.post("/v2/similar", headers=h, json=_body(task_id))
        assert_error(refused, 429)
        assert "Retry-After" in refused.headers
        assert client.get("/v2/usage/", headers=h).json()["today"] == 3
        # Searching by an embedded image id embeds nothing new but the next two images.
        hit = r.json()["records"][0]["similar"][0]["id"]
        monkeypatch.setattr(search, "INLINE_EMBED", 0)
        by_id = {"task_id": task_id, "records": [{"_id": hit}]}
        r = client.post("/v2/similar", headers=h, json=by_id)
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["records"][0]["similar"]] != [hit]
        assert r.json()["not_indexed"] == 4
        assert client.get("/v2/usage/", headers=h).json()["today"] == 3


def test_a_large_scan_holds_at_most_its_users_share_of_the_pool(
    settings: Settings, alice: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan of a large index is a costly task: while its user already holds their share
    of the workers it waits, and another user's work takes the idle worker."""
    monkeypatch.setattr(search, "COSTLY_INDEX", 0)  # every index counts as large here
    h = alice["headers"]
    with app_client(create_app(settings.model_copy(update={"inference_threads": 2}))) as client:
        task_id = task_with_images(client, h, n=3)["task"]["id"]
        warm = client.post("/v2/similar", headers=h, json=_body(task_id))  # embeds the index
        assert warm.status_code == 200, warm.text
        pool = client.call(_state, client).services.recognizer.pool
        assert pool.per_key == 1
        gate, started = threading.Event(), threading.Event()

        def hold() -> None:
            started.set()
            gate.wait(60)

        held = pool.submit_for(alice["id"], Priority.INTERACTIVE, hold)  # alice's one worker
        assert started.wait(60)
        result: dict[str, Any] = {}
        searching = threading.Thread(
            target=lambda: result.update(
                r=client.post("/v2/similar", headers=h, json=_body(task_id))
            )
        )
        searching.start()
        try:
            deadline = time.monotonic() + 60
            while pool.queued(Priority.INTERACTIVE) < 1:
                assert time.monotonic() < deadline, "the search never reached the pool"
                time.sleep(0.01)
            time.sleep(0.3)
            assert pool.queued(Priority.INTERACTIVE) == 1  # one worker idle, yet it waits
            other = pool.submit_for("someone-else", Priority.INTERACTIVE, lambda: "done")
            assert other.result(30) == "done"  # the idle worker serves another user
            assert "r" not in result
        finally:
            gate.set()
            held.result(60)
            searching.join(60)
        assert result["r"].status_code == 200, result["r"].text
