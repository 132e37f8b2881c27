"""Workspaces: shared objects, roles, members, service tokens.

The sweep: every route, for every object kind, with ids, filters and pagination, answers a
non-member 404 when the request names the workspace (Ximilar's way: query parameter on reads,
body field on writes); a viewer is refused every write (403 ``forbidden_role``) and may read
and classify; removing a member ends their access on their next request."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.api.helpers import assert_error, create_label, create_task, upload, upload_ok
from tests.api.test_isolation import _by_id_requests
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from vize.db.tables import Prediction
from vize.services.workspaces import default_workspace

SAFE = ("GET", "HEAD")
FILE = ("x.png", png_bytes(5), "image/png")


def in_ws(method: str, kw: dict[str, Any], workspace: str) -> dict[str, Any]:
    """The request as Ximilar's client sends it with a workspace: ``?workspace=`` on reads and
    deletes, a ``workspace`` body field on writes (JSON, or a form field for multipart)."""
    kw = dict(kw)
    if method in SAFE or method == "DELETE" or ("json" not in kw and "data" not in kw):
        kw["params"] = {**kw.get("params", {}), "workspace": workspace}
        return kw
    if "json" in kw:
        kw["json"] = {**kw["json"], "workspace": workspace}
    else:
        kw["data"] = {**kw["data"], "workspace": workspace}
    return kw


def new_workspace(client: AppClient, h: dict, name: str = "team") -> str:
    r = client.post("/v2/workspace/", headers=h, json={"name": name})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "owner" and r.json()["default"] is False
    return str(r.json()["id"])


def add_member(client: AppClient, h: dict, ws: str, who: str, role: str) -> Any:
    return client.post(
        f"/v2/workspace/{ws}/member/", headers=h, json={"username": who, "role": role}
    )


@pytest.fixture
def team(client: AppClient, alice: dict) -> dict[str, Any]:
    """A second workspace of alice's with a task, a label and a labelled image in it."""
    h = alice["headers"]
    ws = new_workspace(client, h)
    task = client.post("/v2/task/", headers=h, json={"name": "team task", "workspace": ws}).json()
    label = client.post(
        "/v2/label/", headers=h, json={"name": "team label", "task": task["id"], "workspace": ws}
    ).json()
    image = upload(client, h, png_bytes(21), labels=label["id"], workspace=ws)
    assert image.status_code == 201, image.text
    # A classified image kept for review, as the classifier writes it (no trained model here).
    prediction = Prediction(
        id=str(uuid.uuid4()), owner_id=alice["id"], workspace_id=ws, task_id=task["id"],
        model_version=1, sha256="1" * 64, blob_key="", thumb_key="", label_id=label["id"],
        prob=0.9, uncertainty=0.1, labels={label["id"]: 0.9},
    )  # fmt: skip
    with client.transport.app.state.vize.sessions.begin() as db:  # type: ignore[attr-defined]
        db.add(prediction)
    return {"ws": ws, "task": task, "label": label, "image": image.json(), "pred": prediction.id}


def _list_requests(w: dict[str, Any]) -> list[tuple[str, str, dict]]:
    """Lists with filters and pagination, and the routes of the other object kinds."""
    t, lb, im = w["task"]["id"], w["label"]["id"], w["image"]["id"]
    return [
        ("GET", "/v2/task/?page=1&page_size=1", {}), ("GET", "/v2/task/?search=team", {}),
        ("GET", "/v2/label/?page_size=5", {}), ("GET", f"/v2/label/?task={t}", {}),
        ("GET", "/v2/training-image/?page=2&page_size=1", {}),
        ("GET", f"/v2/training-image/?task={t}", {}),
        ("GET", f"/v2/training-image/?label={lb}", {}),
        ("GET", f"/v2/training-image/?labels={lb}&not_labels={lb}", {}),
        ("GET", "/v2/model/", {}), ("GET", f"/v2/model/?task={t}", {}),
        ("GET", f"/v2/task/{t}/training/", {}), ("POST", f"/v2/task/{t}/train/", {"json": {}}),
        ("GET", f"/v2/task/{t}/insights/", {}), ("GET", "/v2/usage/", {}),
        ("POST", "/v2/similar/", {"json": {"task_id": t, "records": [{"_id": im}]}}),
        ("POST", "/v2/classify/", {"json": {"task_id": t, "records": [{"_base64": "AA=="}]}}),
        ("POST", "/v2/task/", {"json": {"name": "intruder"}}),
        ("POST", "/v2/label/", {"json": {"name": "intruder"}}),
        ("POST", "/v2/training-image/", {"data": {}, "files": {"img_path": FILE}}),
        ("POST", "/v2/training-image/update/", {"json": {"images": [im], "mark_test": True}}),
        ("GET", "/account/v2/user/", {}),
        ("GET", f"/v2/task/{t}/predictions/?order=uncertain&status=pending", {}),
        ("GET", f"/v2/prediction/{w['pred']}/", {}),
        ("GET", f"/v2/prediction/{w['pred']}/thumb/", {}),
        ("POST", f"/v2/prediction/{w['pred']}/accept/", {"json": {}}),
        ("DELETE", f"/v2/prediction/{w['pred']}/", {}),
    ]  # fmt: skip


def test_non_member_gets_404_on_every_route_of_the_workspace(
    client: AppClient, alice: dict, bob: dict, team: dict
) -> None:
    hb = bob["headers"]
    mine = {"task": create_task(client, hb)["id"], "label": create_label(client, hb)["id"]}
    requests = _by_id_requests(team, mine) + _list_requests(team)
    for prefix in ("/v2", "/recognition/v2"):
        for method, url, kw in requests:
            url = url.replace("/v2", prefix, 1) if url.startswith("/v2") else url
            r = client.request(method, url, headers=hb, **in_ws(method, kw, team["ws"]))
            assert_error(r, 404, "workspace_not_found")
    # Nor does bob reach the workspace's objects from his own (ids alone, no workspace).
    for method, url, kw in _by_id_requests(team, mine):
        assert_error(client.request(method, url, headers=hb, **kw), 404)
    # Nothing of the workspace changed; its owner sees exactly its objects there.
    ha, ws = alice["headers"], team["ws"]
    tasks = client.get("/v2/task/", headers=ha, params={"workspace": ws}).json()
    assert [t["name"] for t in tasks["results"]] == ["team task"]
    assert tasks["results"][0]["workspace"] == ws and len(tasks["results"][0]["labels"]) == 1
    image = client.get(
        f"/v2/training-image/{team['image']['id']}", headers=ha, params={"workspace": ws}
    )
    assert image.json()["test_image"] is False and image.json()["workspace"] == ws
    # ... and the workspace's objects are not in alice's default workspace either.
    assert client.get(f"/v2/task/{team['task']['id']}", headers=ha).status_code == 404
    assert client.get("/v2/task/", headers=ha).json()["count"] == 0


def test_workspace_api_itself_is_404_for_a_non_member(
    client: AppClient, bob: dict, team: dict
) -> None:
    hb, ws = bob["headers"], team["ws"]
    for method, url, kw in [
        ("GET", f"/v2/workspace/{ws}/", {}),
        ("PATCH", f"/v2/workspace/{ws}/", {"json": {"name": "x"}}),
        ("DELETE", f"/v2/workspace/{ws}/", {}), ("GET", f"/v2/workspace/{ws}/member/", {}),
        ("POST", f"/v2/workspace/{ws}/member/", {"json": {"username": "bob", "role": "owner"}}),
        ("PATCH", f"/v2/workspace/{ws}/member/", {"json": {"username": "bob", "role": "owner"}}),
        ("DELETE", f"/v2/workspace/{ws}/member/?username=alice", {}),
        ("GET", f"/v2/workspace/{ws}/token/", {}),
        ("POST", f"/v2/workspace/{ws}/token/", {"json": {}}),
    ]:  # fmt: skip
        assert_error(client.request(method, url, headers=hb, **kw), 404, "not_found")
    assert [w["name"] for w in client.get("/v2/workspace/", headers=hb).json()["results"]] == [
        "Default"
    ]


def test_members_share_the_workspace(client: AppClient, alice: dict, bob: dict, team: dict) -> None:
    ha, hb, ws = alice["headers"], bob["headers"], team["ws"]
    r = add_member(client, ha, ws, "bob", "editor")
    assert r.status_code == 201 and r.json()["role"] == "editor"
    assert_error(add_member(client, ha, ws, "bob", "viewer"), 409, "already_member")
    mine = client.get("/v2/workspace/", headers=hb).json()["results"]
    assert [(w["name"], w["role"], w["default"]) for w in mine] == [
        ("Default", "owner", True), ("team", "editor", False),
    ]  # fmt: skip
    # bob works in the team's workspace: alice sees what he adds, and the reverse.
    task = client.post("/v2/task/", headers=hb, json={"name": "bob's", "workspace": ws}).json()
    assert task["workspace"] == ws
    names = {
        t["name"]
        for t in client.get("/v2/task/", headers=ha, params={"workspace": ws}).json()["results"]
    }
    assert names == {"team task", "bob's"}
    got = client.get(
        f"/v2/training-image/{team['image']['id']}", headers=hb, params={"workspace": ws}
    )
    assert got.status_code == 200
    # The same bytes uploaded by bob into the workspace are its existing image.
    again = upload(client, hb, png_bytes(21), workspace=ws)
    assert again.status_code == 200 and again.json()["id"] == team["image"]["id"]
    # His own default workspace stays his own.
    assert client.get("/v2/task/", headers=hb).json()["count"] == 0
    # An editor manages no members.
    assert_error(add_member(client, hb, ws, "alice", "viewer"), 403, "forbidden_role")
    assert_error(client.delete(f"/v2/workspace/{ws}/", headers=hb), 403, "forbidden_role")


def test_viewer_is_refused_every_write_and_may_read(
    client: AppClient, alice: dict, bob: dict, team: dict
) -> None:
    ha, hb, ws = alice["headers"], bob["headers"], team["ws"]
    assert add_member(client, ha, ws, "bob", "viewer").status_code == 201
    mine = {"task": team["task"]["id"], "label": team["label"]["id"]}
    requests = _by_id_requests(team, mine) + _list_requests(team)
    reads = 0
    for method, url, kw in requests:
        r = client.request(method, url, headers=hb, **in_ws(method, kw, ws))
        if url.startswith(("/v2/similar", "/v2/classify")):
            assert r.status_code != 403, (url, r.text)  # reads: classify / search
        elif method in SAFE:
            assert r.status_code in (200, 404), (url, r.text)  # 404: no training yet
            reads += r.status_code == 200
        else:
            assert_error(r, 403, "forbidden_role")
    assert reads > 10
    # Nothing changed.
    task = client.get(f"/v2/task/{team['task']['id']}", headers=ha, params={"workspace": ws})
    assert task.json()["name"] == "team task"
    assert client.get("/v2/label/", headers=ha, params={"workspace": ws}).json()["count"] == 1


def test_removing_a_member_ends_their_access_at_the_next_request(
    client: AppClient, alice: dict, bob: dict, team: dict
) -> None:
    ha, hb, ws = alice["headers"], bob["headers"], team["ws"]
    add_member(client, ha, ws, "bob", "editor")
    url = f"/v2/task/{team['task']['id']}/"
    assert client.get(url, headers=hb, params={"workspace": ws}).status_code == 200
    r = client.delete(f"/v2/workspace/{ws}/member/", headers=ha, params={"username": "bob"})
    assert r.status_code == 204
    assert_error(client.get(url, headers=hb, params={"workspace": ws}), 404, "workspace_not_found")
    patch = client.patch(url, headers=hb, json={"name": "x", "workspace": ws})
    assert_error(patch, 404, "workspace_not_found")


def test_roles_change_and_a_workspace_keeps_an_owner(
    client: AppClient, alice: dict, bob: dict, team: dict
) -> None:
    ha, hb, ws = alice["headers"], bob["headers"], team["ws"]
    members = f"/v2/workspace/{ws}/member/"
    assert_error(
        client.patch(members, headers=ha, json={"username": "alice", "role": "viewer"}),
        409,
        "last_owner",
    )
    add_member(client, ha, ws, "bob", "viewer")
    assert_error(
        client.patch(members, headers=ha, json={"username": "bob", "role": "boss"}),
        400,
        "invalid_role",
    )
    r = client.patch(members, headers=ha, json={"username": "bob", "role": "editor"})
    assert r.status_code == 200 and r.json()["role"] == "editor"
    created = client.post("/v2/label/", headers=hb, json={"name": "now I may", "workspace": ws})
    assert created.status_code == 201
    # The default workspace's user stays its owner.
    home = default_workspace(alice["id"])
    add_member(client, ha, home, "bob", "owner")
    demote = client.patch(
        f"/v2/workspace/{home}/member/", headers=hb, json={"username": "alice", "role": "viewer"}
    )
    assert_error(demote, 409, "default_owner")
    assert_error(client.delete(f"/v2/workspace/{home}/", headers=ha), 409, "default_workspace")


def test_delete_workspace_removes_its_data(client: AppClient, alice: dict, team: dict) -> None:
    ha, ws = alice["headers"], team["ws"]
    assert client.get(team["image"]["img_path"]).status_code == 200  # the signed link works
    assert client.delete(f"/v2/workspace/{ws}/", headers=ha).status_code == 204
    assert_error(
        client.get("/v2/task/", headers=ha, params={"workspace": ws}), 404, "workspace_not_found"
    )
    assert client.get(team["image"]["img_path"]).status_code == 404
    assert [w["name"] for w in client.get("/v2/workspace/", headers=ha).json()["results"]] == [
        "Default"
    ]


def test_service_tokens(client: AppClient, alice: dict, team: dict) -> None:
    ha, ws = alice["headers"], team["ws"]
    made = client.post(
        f"/v2/workspace/{ws}/token/", headers=ha, json={"name": "ci", "role": "viewer"}
    )
    assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    listed = client.get(f"/v2/workspace/{ws}/token/", headers=ha).json()["results"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    hs = {"Authorization": f"Token {token}"}
    # It acts in its workspace, without naming it, and only there.
    assert [t["name"] for t in client.get("/v2/task/", headers=hs).json()["results"]] == [
        "team task"
    ]
    home = default_workspace(alice["id"])
    assert_error(
        client.get("/v2/task/", headers=hs, params={"workspace": home}), 404, "workspace_not_found"
    )
    assert_error(client.post("/v2/task/", headers=hs, json={"name": "x"}), 403, "forbidden_role")
    assert_error(client.get("/v2/account/", headers=hs), 403, "user_token_required")
    assert_error(client.get("/v2/workspace/", headers=hs), 403, "user_token_required")
    editor = client.post(f"/v2/workspace/{ws}/token/", headers=ha, json={"role": "editor"}).json()
    he = {"Authorization": f"Token {editor['token']}"}
    assert client.post("/v2/task/", headers=he, json={"name": "from ci"}).status_code == 201
    assert upload(client, he, png_bytes(22)).json()["workspace"] == ws
    # Revoked: refused at once.
    assert client.delete(f"/v2/workspace/{ws}/token/{token_id}/", headers=ha).status_code == 204
    assert_error(client.get("/v2/task/", headers=hs), 401, "invalid_token")


def test_members_by_email_and_invitations(
    client: AppClient, alice: dict, bob: dict, team: dict
) -> None:
    ha, ws = alice["headers"], team["ws"]
    patch = client.patch("/v2/account/", headers=bob["headers"], json={"email": "Bob@Example.com"})
    assert patch.status_code == 200
    members = f"/v2/workspace/{ws}/member/"
    r = client.post(members, headers=ha, json={"email": "bob@example.com", "role": "editor"})
    assert r.status_code == 201 and r.json()["username"] == "bob"
    listed = client.get(members, headers=ha).json()["results"]
    assert [(m["username"], m["role"]) for m in listed] == [("alice", "owner"), ("bob", "editor")]
    invited = client.post(members, headers=ha, json={"username": "carol", "role": "viewer"})
    assert invited.status_code == 202, invited.text
    body = invited.json()
    assert body["invited"] == "carol" and "/signup?invite=" in body["invitation"]
    assert_error(client.post(members, headers=ha, json={"role": "viewer"}), 400, "required")


def test_workspace_names_are_checked(client: AppClient, alice: dict) -> None:
    ha = alice["headers"]
    assert_error(client.post("/v2/workspace/", headers=ha, json={"name": ""}), 400, "invalid_name")
    assert_error(
        client.post("/v2/workspace/", headers=ha, json={"name": "a\nb"}), 400, "invalid_name"
    )
    ws = new_workspace(client, ha, "first")
    r = client.patch(f"/v2/workspace/{ws}/", headers=ha, json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert_error(client.get("/v2/workspace/nonsense/", headers=ha), 404, "not_found")


def test_upload_form_field_names_the_workspace(client: AppClient, alice: dict, team: dict) -> None:
    """A multipart upload's ``workspace`` field is honoured, never ignored."""
    ha = alice["headers"]
    r = upload_ok(client, ha, 23, workspace=team["ws"])
    assert r["workspace"] == team["ws"]
    bogus = upload(client, ha, png_bytes(24), workspace="0b0c0d0e-0000-4000-8000-000000000000")
    assert_error(bogus, 404, "workspace_not_found")
    assert json.loads(client.get("/v2/training-image/", headers=ha).text)["count"] == 0


def test_invitations_follow_vize_signup(
    client: AppClient, alice: dict, team: dict, settings: Any
) -> None:
    """Closed sign-up: only existing users can be added (404 ``user_not_found``); by
    invitation: the link works for the invited name alone and joins the workspace."""
    from vize.app import load_secret
    from vize.services import invites
    from vize.services.invites import SignupMode, SignupRefused

    members = f"/v2/workspace/{team['ws']}/member/"
    settings.signup = SignupMode.CLOSED
    r = client.post(members, headers=alice["headers"], json={"username": "zed", "role": "editor"})
    assert_error(r, 404, "user_not_found")
    settings.signup = SignupMode.INVITE
    r = client.post(
        members, headers=alice["headers"], json={"email": "zed@x.org", "role": "editor"}
    )
    assert r.status_code == 202
    token = r.json()["invitation"].split("invite=", 1)[1]
    secret = load_secret(settings)
    with pytest.raises(SignupRefused):
        invites.check_signup(SignupMode.INVITE, secret, token, "zed", "other@x.org")
    invitation = invites.check_signup(SignupMode.INVITE, secret, token, "zed", "ZED@x.org")
    assert invitation is not None
    assert (invitation.workspace_id, invitation.role) == (team["ws"], "editor")
