"""``GET /v2/task/{id}/labels/?search=`` filters the task's labels by name."""

from __future__ import annotations

from typing import Any

from tests.inprocess import AppClient


def test_search_filters_a_tasks_labels_by_name(client: AppClient, alice: dict[str, Any]) -> None:
    h = alice["headers"]
    task = client.post("/v2/task/", headers=h, json={"name": "t"}).json()
    for name in ("Red Apple", "green apple", "pear"):
        r = client.post("/v2/label/", headers=h, json={"name": name, "task": task["id"]})
        assert r.status_code == 201, r.text
    url = f"/v2/task/{task['id']}/labels/"

    def names(params: dict[str, str]) -> list[str]:
        return sorted(lbl["name"] for lbl in client.get(url, headers=h, params=params).json())

    assert names({}) == ["Red Apple", "green apple", "pear"]
    assert names({"search": "APPLE"}) == ["Red Apple", "green apple"]
    assert names({"search": "pe"}) == ["pear"]
    assert names({"search": "plum"}) == []
