"""Similarity search, near-duplicates at upload and data-health insights, through the API
with the real backbone (generated pictures; one app for the module)."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from fastapi import FastAPI

from tests.api.helpers import assert_error
from tests.inprocess import AppClient
from tests.similar.conftest import COOL, MISLABELLED, WARM, train, upload
from tests.similar.images import altered, mirrored, png
from vize.services import similarity
from vize.services.fairpool import Priority


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _search(client: AppClient, h: dict, body: dict, prefix: str = "/v2") -> Any:
    return client.post(f"{prefix}/similar", headers=h, json=body)


def test_an_altered_copy_finds_its_original(mclient: AppClient, owner: dict, task: dict) -> None:
    h = owner["headers"]
    for prefix in ("/v2", "/recognition/v2"):
        body = {
            "task_id": task["id"],
            "k": 3,
            "records": [{"_base64": _b64(altered(COOL[2], "cool")), "mine": 1}],
        }
        r = _search(mclient, h, body, prefix)
        assert r.status_code == 200, r.text
        rec = r.json()["records"][0]
        assert rec["mine"] == 1 and rec["_status"]["code"] == 200 and "_base64" not in rec
        hits = rec["similar"]
        assert len(hits) == 3
        assert hits[0]["id"] == task["images"][COOL[2]]
        assert hits[0]["labels"] == [{"id": task["labels"]["cool"], "name": "cool"}]
        assert hits[0]["thumb_img_path"].endswith(f"{prefix}/training-image/{hits[0]['id']}/thumb")
        sims = [x["similarity"] for x in hits]
        assert sims == sorted(sims, reverse=True) and 0.7 < sims[0] <= 1.0


def test_search_by_id_and_label(mclient: AppClient, owner: dict, task: dict) -> None:
    h = owner["headers"]
    me = task["images"][WARM[0]]
    r = _search(mclient, h, {"task_id": task["id"], "k": 100, "records": [{"_id": me}]})
    hits = r.json()["records"][0]["similar"]
    assert me not in {x["id"] for x in hits}  # never its own hit
    assert len(hits) == len(task["images"]) - 1
    cool = task["labels"]["cool"]
    body = {"task_id": task["id"], "label": cool, "records": [{"_id": me}]}
    hits = _search(mclient, h, body).json()["records"][0]["similar"]
    assert len(hits) == 7 and all(x["labels"][0]["id"] == cool for x in hits)


def test_bad_requests(mclient: AppClient, owner: dict, stranger: dict, task: dict) -> None:
    h, tid = owner["headers"], task["id"]
    one = [{"_id": task["images"][WARM[0]]}]
    assert_error(_search(mclient, h, {"task_id": tid, "k": 0, "records": one}), 400)
    assert_error(_search(mclient, h, {"task_id": tid, "k": 101, "records": one}), 400)
    assert_error(_search(mclient, h, {"task_id": tid, "records": one * 11}), 400)
    assert_error(_search(mclient, h, {"task_id": tid, "records": []}), 400)
    assert_error(_search(mclient, h, {"records": one}), 400, "required")
    assert_error(_search(mclient, {}, {"task_id": tid, "records": one}), 401)
    # Another user's task is not found; nor are their images, record by record.
    assert_error(_search(mclient, stranger["headers"], {"task_id": tid, "records": one}), 404)
    other_task = mclient.post("/v2/task/", headers=stranger["headers"], json={"name": "t"}).json()
    body = {"task_id": tid, "label": other_task["id"], "records": one}
    assert_error(_search(mclient, h, body), 404)
    records = [{"_base64": "@@not base64"}, {"_id": other_task["id"]}, *one]
    r = _search(mclient, h, {"task_id": tid, "records": records})
    assert r.status_code == 200, r.text
    codes = [x["_status"]["code"] for x in r.json()["records"]]
    assert codes == [400, 404, 200]
    assert r.json()["status"]["text"] == "2 record(s) failed"


def _wait_embedded(client: AppClient, h: dict, task: dict) -> None:
    """A search embeds whatever the background job has not embedded yet."""
    body = {"task_id": task["id"], "records": [{"_id": task["images"][WARM[0]]}]}
    assert _search(client, h, body).status_code == 200


@pytest.fixture(scope="module")
def copies(mclient: AppClient, owner: dict, task: dict) -> dict[str, Any]:
    """Uploads after the task's images are embedded: a near copy, a distinct picture, the
    same bytes again, and a test-image copy of a training image labelled differently."""
    h, warm = owner["headers"], task["labels"]["warm"]
    _wait_embedded(mclient, h, task)
    return {
        "copy": upload(mclient, h, mirrored(WARM[3], "warm"), warm),
        "distinct": upload(mclient, h, png(300, "warm"), warm),
        "same": upload(mclient, h, png(WARM[3], "warm"), warm),
        "leak": upload(mclient, h, mirrored(COOL[4], "cool"), warm, test_image="true"),
    }


def test_upload_reports_near_duplicates(copies: dict, task: dict) -> None:
    for name in ("copy", "distinct", "leak"):
        assert copies[name].status_code == 201, copies[name].text
    assert copies["copy"].json()["near_duplicate_of"] == [task["images"][WARM[3]]]
    assert copies["distinct"].json()["near_duplicate_of"] == []
    assert copies["leak"].json()["near_duplicate_of"] == [task["images"][COOL[4]]]
    # Exact copies keep their answer: 200, already exists.
    assert copies["same"].status_code == 200
    assert copies["same"].json()["code"] == "already_exists"


def test_insights(
    mclient: AppClient, owner: dict, stranger: dict, task: dict, copies: dict
) -> None:
    h, images = owner["headers"], task["images"]
    copy, leak = copies["copy"].json()["id"], copies["leak"].json()["id"]
    url = f"/v2/task/{task['id']}/insights/"
    assert_error(mclient.get(url, headers=stranger["headers"]), 404)
    assert_error(mclient.get(url), 401)
    before = mclient.get(url, headers=h).json()
    assert before["computed"] and before["suspected_mislabels"] == []  # never trained
    groups = {frozenset(g["images"]): g for g in before["near_duplicates"]}
    assert groups[frozenset({images[WARM[3]], copy})]["labels_differ"] is False
    assert groups[frozenset({images[COOL[4]], leak})]["labels_differ"] is True
    assert len(groups) == 2  # distinct pictures are not reported
    assert before["test_leaks"] == [
        {
            "test_image": leak,
            "train_image": images[COOL[4]],
            "similarity": groups[frozenset({images[COOL[4]], leak})]["similarity"],
        }
    ]
    train(mclient, h, task["id"])
    after = mclient.get(url, headers=h).json()
    assert after["computed"] > before["computed"]  # recomputed by the training
    # The two cool pictures labelled warm (one of them the leaked test copy) are suspected.
    suspects = after["suspected_mislabels"]
    assert {s["id"] for s in suspects[:2]} == {images[MISLABELLED], leak}
    top = next(s for s in suspects if s["id"] == images[MISLABELLED])
    assert top["labels"] == [{"id": task["labels"]["warm"], "name": "warm"}]
    assert top["predicted"]["name"] == "cool" and top["predicted"]["prob"] > 0.5
    # Relabelled: no longer suspected, without recomputing.
    warm, cool = task["labels"]["warm"], task["labels"]["cool"]
    img = f"/v2/training-image/{images[MISLABELLED]}"
    assert mclient.post(f"{img}/remove-label/", headers=h, json={"label_id": warm}).is_success
    assert mclient.post(f"{img}/add-label/", headers=h, json={"label_id": cool}).is_success
    again = mclient.get(url, headers=h).json()
    assert again["computed"] == after["computed"]
    assert images[MISLABELLED] not in {s["id"] for s in again["suspected_mislabels"]}
    # A deleted image leaves the groups; ?recompute=true computes anew.
    assert mclient.delete(f"/v2/training-image/{copy}", headers=h).status_code == 204
    fresh = mclient.get(url + "?recompute=true", headers=h).json()
    assert fresh["computed"] > after["computed"]
    assert all(copy not in g["images"] for g in fresh["near_duplicates"])


def test_the_search_runs_in_the_fair_pool_as_its_user(
    mclient: AppClient, module_app: FastAPI, owner: dict, task: dict
) -> None:
    """The query's decoding and backbones are an interactive task of the inference pool keyed
    by the user: with the workers held, it queues under the owner's key, so the owner's next
    task waits for another user's (round robin), as it would not under a shared key."""
    pool = module_app.state.vize.services.recognizer.pool
    gates = [threading.Event() for _ in range(pool.workers)]
    started = threading.Semaphore(0)

    def hold(gate: threading.Event) -> None:
        started.release()
        gate.wait(60)

    held = [
        pool.submit_for(f"holder-{i}", Priority.INTERACTIVE, hold, g) for i, g in enumerate(gates)
    ]
    order: list[str] = []
    result: dict[str, Any] = {}
    body = {"task_id": task["id"], "records": [{"_base64": _b64(altered(WARM[1], "warm"))}]}
    searching = threading.Thread(
        target=lambda: result.update(r=_search(mclient, owner["headers"], body))
    )
    try:
        for _ in gates:
            assert started.acquire(timeout=60)
        searching.start()
        deadline = time.monotonic() + 60
        while pool.queued(Priority.INTERACTIVE) < 1:
            assert time.monotonic() < deadline, "the search never reached the pool"
            time.sleep(0.01)
        mine = pool.submit_for(owner["id"], Priority.INTERACTIVE, order.append, "owner")
        other = pool.submit_for("someone-else", Priority.INTERACTIVE, order.append, "other")
        gates[0].set()  # one worker: the search, then the queue in its fair order
        mine.result(60), other.result(60)
    finally:
        for gate in gates:
            gate.set()
        for future in held:
            future.result(60)
        if searching.ident is not None:  # started
            searching.join(60)
    assert order == ["other", "owner"]
    assert result["r"].status_code == 200, result["r"].text


def test_an_upload_unlike_every_image_runs_no_forward(
    mclient: AppClient, owner: dict, task: dict, copies: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The near-duplicate check compares colour layouts first: a picture whose layout is like
    none of the task's is not embedded during its upload (no forward in the pool that
    classifications wait on); a near copy still is, and is still reported."""
    real = similarity.load_vectors
    embedded_inline: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        embedded_inline.extend(row[0] for row in args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(similarity, "load_vectors", counting)
    h, warm = owner["headers"], task["labels"]["warm"]
    made = []
    try:
        distinct = upload(mclient, h, png(301, "warm"), warm)
        assert distinct.status_code == 201, distinct.text
        made.append(distinct.json()["id"])
        assert distinct.json()["near_duplicate_of"] == []
        assert embedded_inline == []
        near = upload(mclient, h, altered(WARM[5], "warm"), warm)
        assert near.status_code == 201, near.text
        made.append(near.json()["id"])
        assert near.json()["near_duplicate_of"] == [task["images"][WARM[5]]]
        assert embedded_inline == [near.json()["id"]]
    finally:
        for image_id in made:
            mclient.delete(f"/v2/training-image/{image_id}", headers=h)
