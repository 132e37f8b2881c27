"""The "Data health" tab, its one-click fixes, "find similar" and the evaluation's leak marks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import make_user
from tests.inprocess import AppClient
from tests.similar.conftest import train, upload
from tests.similar.images import mirrored, png
from tests.web.helpers import form_csrf, log_in
from vize.config import Settings


@pytest.fixture(scope="module")
def web(mclient: AppClient, module_settings: Settings) -> Iterator[dict[str, Any]]:
    """A signed-in browser (its own cookies) and a trained task of hers with two mislabels,
    one leaked test copy and one near-duplicate pair."""
    user = make_user(module_settings, "webber", "webber-password")
    h = {"Authorization": f"Token {user['token']}"}
    task = mclient.post("/v2/task/", headers=h, json={"name": "health"}).json()
    labels = {
        n: mclient.post("/v2/label/", headers=h, json={"name": n, "task": task["id"]}).json()["id"]
        for n in ("warm", "cool")
    }
    ids = {}
    for seed in range(400, 406):
        ids[seed] = upload(mclient, h, png(seed, "warm"), labels["warm"]).json()["id"]
        ids[seed + 10] = upload(mclient, h, png(seed + 10, "cool"), labels["cool"]).json()["id"]
    ids["wrong"] = upload(mclient, h, png(420, "cool"), labels["warm"]).json()["id"]
    ids["wrong2"] = upload(mclient, h, png(421, "warm"), labels["cool"]).json()["id"]
    ids["leak"] = upload(
        mclient, h, mirrored(401, "warm"), labels["warm"], test_image="true"
    ).json()["id"]
    train(mclient, h, task["id"])
    with mclient.from_address("10.9.9.9") as browser:
        assert log_in(browser, "webber", "webber-password").status_code == 303
        yield {"b": browser, "task": task["id"], "labels": labels, "ids": ids, "h": h}


def _ids_in(html: str, section: str) -> set[str]:
    """Image ids shown inside the element with id ``section`` (none when it is absent)."""
    if f'id="{section}"' not in html:
        return set()
    part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    return set(re.findall(r"/v2/training-image/([0-9a-f-]{36})/thumb/", part))


def test_data_health_tab(web: dict, mclient: AppClient) -> None:
    b, tid, ids = web["b"], web["task"], web["ids"]
    page = b.get(f"/tasks/{tid}/health")
    assert page.status_code == 200, page.text
    assert 'aria-current="page"><span class="tab-long">Data health' in page.text
    assert ids["wrong"] in _ids_in(page.text, "suspects")
    assert {ids[401], ids["leak"]} <= _ids_in(page.text, "leaks")
    assert {ids[401], ids["leak"]} <= _ids_in(page.text, "duplicates")
    # The images tab links every image to its similar ones; the page lists the copy first.
    assert f"/tasks/{tid}/similar/{ids[410]}" in b.get(f"/tasks/{tid}").text  # "cool" first
    similar = b.get(f"/tasks/{tid}/similar/{ids[401]}")
    assert similar.status_code == 200
    first = re.search(r'id="similar-hits".*?data-image-id="([0-9a-f-]{36})"', similar.text, re.S)
    assert first and first.group(1) == ids["leak"]
    # The evaluation marks the leaked test image.
    training = b.get(f"/tasks/{tid}/training").text
    assert 'id="leak-warning"' in training
    assert ids["leak"] in set(
        re.findall(r"/similar/([0-9a-f-]{36})", training.split("leak-warning")[1])
    )


def _post(b: AppClient, url: str, page: str, data: dict[str, str] | None = None) -> Any:
    token = form_csrf(b.get(page).text)
    return b.post(url, data={"csrf_token": token, **(data or {})})


def test_keep_relabel_delete(web: dict, mclient: AppClient) -> None:
    b, tid, ids, h = web["b"], web["task"], web["ids"], web["h"]
    health = f"/tasks/{tid}/health"
    suspects = _ids_in(b.get(health).text, "suspects")
    assert {ids["wrong"], ids["wrong2"]} <= suspects
    kept = ids["wrong2"]
    r = _post(b, f"{health}/{kept}/keep", health)
    assert r.status_code == 303 and r.headers["location"] == health
    assert kept not in _ids_in(b.get(health).text, "suspects")  # remembered
    r = _post(b, f"{health}/{ids['wrong']}/relabel", health, {"label": web["labels"]["cool"]})
    assert r.status_code == 303
    image = mclient.get(f"/v2/training-image/{ids['wrong']}", headers=h).json()
    assert [lbl["name"] for lbl in image["labels"]] == ["cool"]
    assert ids["wrong"] not in _ids_in(b.get(health).text, "suspects")
    r = _post(b, f"{health}/{ids['leak']}/delete", health)
    assert r.status_code == 303
    assert mclient.get(f"/v2/training-image/{ids['leak']}", headers=h).status_code == 404
    page = b.get(health).text
    assert ids["leak"] not in _ids_in(page, "leaks") and 'id="leak-title"' in page


def test_health_of_others_is_not_found(web: dict, mclient: AppClient, task: dict) -> None:
    b = web["b"]
    assert b.get(f"/tasks/{task['id']}/health").status_code == 404
    assert b.get(f"/tasks/{web['task']}/similar/{task['images'][100]}").status_code == 404
    health = f"/tasks/{web['task']}/health"
    r = _post(b, f"/tasks/{task['id']}/health/{task['images'][100]}/keep", health)
    assert r.status_code == 404
