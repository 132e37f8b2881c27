"""Every endpoint answers under /v2 and /recognition/v2, with and without the trailing slash."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import png_bytes
from tests.inprocess import AppClient

PREFIXES = ["/v2", "/recognition/v2"]


@pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_endpoint(client: AppClient, alice: dict, prefix: str, slash: str) -> None:
    h = alice["headers"]

    def call(method: str, path: str, status: int, **kw: Any) -> Any:
        url = f"{prefix}/{path.strip('/')}{slash}"
        r = client.request(method, url, headers=h, **kw)
        assert r.status_code == status, f"{method} {url}: {r.status_code} {r.text}"
        assert not r.is_redirect  # answered where asked, no 307 to the other spelling
        return r.json() if r.content else None

    task = call("POST", "task", 201, data={"name": "t"})
    t = f"task/{task['id']}"
    label = call("POST", "label", 201, json={"name": "l"})
    lb = f"label/{label['id']}"
    assert call("GET", "task", 200)["count"] == 1
    assert call("GET", t, 200)["id"] == task["id"]
    assert call("PATCH", t, 200, json={"name": "t2"})["name"] == "t2"
    assert call("PUT", t, 200, json={"description": "d"})["description"] == "d"
    assert len(call("POST", f"{t}/add-label", 200, json={"label_id": label["id"]})["labels"]) == 1
    assert len(call("GET", f"{t}/labels", 200)) == 1
    assert call("POST", f"{t}/remove-label", 200, json={"label_id": label["id"]})["labels"] == []
    assert call("GET", "label", 200)["count"] == 1
    assert call("GET", lb, 200)["id"] == label["id"]
    assert call("PATCH", lb, 200, json={"name": "l2"})["name"] == "l2"
    assert call("PUT", lb, 200, json={"name": "l3"})["name"] == "l3"
    assert call("POST", f"{lb}/add-task", 200, json={"task_id": task["id"]})["tasks_count"] == 1
    assert call("POST", f"{lb}/remove-task", 200, json={"task_id": task["id"]})["tasks_count"] == 0
    files = {"img_path": ("a.png", png_bytes(1), "image/png")}
    image = call("POST", "training-image", 201, files=files)
    im = f"training-image/{image['id']}"
    assert call("GET", "training-image", 200)["count"] == 1
    assert call("GET", im, 200)["id"] == image["id"]
    assert call("PATCH", im, 200, json={"test_image": True})["test_image"] is True
    assert call("PUT", im, 200, json={"meta_data": {"a": 1}})["meta_data"] == {"a": 1}
    assert len(call("POST", f"{im}/add-label", 200, json={"label_id": label["id"]})["labels"]) == 1
    assert call("POST", f"{im}/remove-label", 200, json={"label_id": label["id"]})["labels"] == []
    for sub in ("file", "thumb"):
        url = f"{prefix}/{im}/{sub}{slash}"
        assert client.get(url, headers=h).status_code == 200, url
    assert call("GET", "account", 200)["username"] == "alice"
    assert call("PATCH", "account", 200, json={"email": "a@b.org"})["email"] == "a@b.org"
    assert call("GET", "usage", 200)["total"] == 0
    call("DELETE", im, 204)
    call("DELETE", lb, 204)
    call("DELETE", t, 204)
    token = call("POST", "account/regenerate-token", 200)["token"]
    h = {"Authorization": f"Token {token}"}
    assert call("GET", "account", 200)["username"] == "alice"


@pytest.mark.parametrize("path", ["task", "label", "training-image", "account", "usage"])
def test_unauthenticated_under_both_prefixes(client: AppClient, path: str) -> None:
    for prefix in PREFIXES:
        for slash in ("/", ""):
            r = client.get(f"{prefix}/{path}{slash}")
            assert r.status_code == 401 and r.json()["code"] == "not_authenticated", r.url
