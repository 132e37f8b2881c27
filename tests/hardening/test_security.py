"""Authentication everywhere, isolation between users, password storage.

The route lists come from the app itself (``iter_route_contexts``), so a route added later is
checked without anyone updating these tests; a route of a kind they cannot classify fails
them until it is classified."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import MetaData, create_engine, select
from starlette.routing import Mount, Route

from tests.api.helpers import assert_error, create_label, create_task, upload_ok
from tests.helpers import make_user
from tests.inprocess import AppClient
from tests.web.helpers import sign_up
from vize.api.deps import SESSION_COOKIE
from vize.config import Settings
from vize.db.engine import normalize_url
from vize.db.tables import Prediction
from vize.services.workspaces import default_workspace
from vize.web.routing import WebRoute

UUID = "0a8c8186-aee8-47c8-9eaf-348103feb14d"
PUBLIC_API = {"/health", "/recognition/swagger", "/recognition/swagger/"}
PROBES = {"/health/live", "/health/ready"}  # public: load balancers and orchestrators
OPERATOR = {"/metrics"}  # its own access rule: 404 unless an operator's token or network
DOCS = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/docs/assets"}
PUBLIC_PAGES = {"/login", "/signup"}  # GET; every other page needs a session
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.auth_failures_per_minute = 0  # these tests send hundreds of bad tokens on purpose
    settings.min_images_per_label = 1
    return settings


def routes(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, route) for every endpoint of the app, nested routers flattened."""
    out = []
    for rc in iter_route_contexts(app.routes):
        route = rc.original_route
        for method in sorted(rc.methods or {"*"}):
            out.append((method, str(rc.path), route))
    return out


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for method, path, route in routes(app):
        if isinstance(route, WebRoute) or path in PUBLIC_API | PROBES | OPERATOR:
            continue
        if isinstance(route, APIRoute) and path not in DOCS:
            out.append((method, path))
        else:  # a new kind of endpoint: decide whether it is public, then list it above
            assert isinstance(route, Route | Mount), (method, path, route)
            assert path in DOCS or path == "/static", f"unclassified endpoint {method} {path}"
    return out


def fill(path: str, ids: dict[str, str] | None = None) -> str:
    def value(match: re.Match[str]) -> str:
        if ids is None:
            return UUID
        assert match[1] in ids, f"no object of another user for path parameter {match[1]!r}"
        return ids[match[1]]

    return PARAM.sub(value, path)


def forged_cookie() -> str:
    return URLSafeTimedSerializer("not-the-secret", salt="vize-session").dumps({"uid": UUID})


def test_every_api_endpoint_requires_authentication(client: AppClient, alice: dict) -> None:
    endpoints = api_routes(client.transport.app)  # type: ignore[attr-defined]
    assert len(endpoints) >= 70  # both prefixes, with and without slash: never an empty loop
    attempts = [
        ({}, "not_authenticated"),
        ({"Authorization": "Token " + "0" * 40}, "invalid_token"),
        ({"Authorization": "Bearer " + alice["token"][:-1]}, "invalid_token"),
        ({"Cookie": f"{SESSION_COOKIE}=garbage"}, "not_authenticated"),
        ({"Cookie": f"{SESSION_COOKIE}={forged_cookie()}"}, "not_authenticated"),
    ]
    for method, path in endpoints:
        for headers, code in attempts:
            r = client.request(method, fill(path), content=b"{}",
                               headers={**headers, "Content-Type": "application/json"})  # fmt: skip
            assert_error(r, 401, code)
            assert r.headers["www-authenticate"] == "Token", (method, path)


def test_only_health_and_docs_are_public(client: AppClient, alice: dict) -> None:
    for path in ("/health", "/openapi.json", "/docs", "/recognition/swagger", "/static/vize.css",
                 *PROBES):  # fmt: skip
        assert client.get(path).status_code == 200, path
    for path in OPERATOR:  # not public, and a user's API token is not an operator's
        assert_error(client.get(path), 404, "not_found")
        assert_error(client.get(path, headers=alice["headers"]), 404, "not_found")
        bearer = {"Authorization": f"Bearer {alice['token']}"}
        assert_error(client.get(path, headers=bearer), 404, "not_found")
    spec = client.get("/openapi.json").json()
    # Every operation of the published spec is one of the checked endpoints (nothing hidden).
    checked = {p for _, p in api_routes(client.transport.app)}  # type: ignore[attr-defined]
    assert set(spec["paths"]) - {"/health"} - PROBES <= checked


def test_pages_need_a_session(client: AppClient) -> None:
    app = client.transport.app  # type: ignore[attr-defined]
    pages = [(m, p) for m, p, r in routes(app) if isinstance(r, WebRoute)]
    assert len(pages) >= 15
    for method, path in pages:
        r = client.request(method, fill(path), headers={"Cookie": f"{SESSION_COOKIE}=garbage"})
        if method == "GET" and path in PUBLIC_PAGES:
            assert r.status_code == 200, path
        elif method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        else:  # a form post without a session: refused by its CSRF check or sent to log in
            assert r.status_code in (303, 403), (method, path, r.status_code)
            assert r.status_code == 403 or r.headers["location"].startswith("/login")


@pytest.fixture
def alice_world(client: AppClient, alice: dict) -> dict[str, str]:
    """One object of every kind alice can own, as ids by the path parameter naming them."""
    h = alice["headers"]
    task = create_task(client, h, name="alice task")
    labels = [create_label(client, h, name=n, task=task["id"])["id"] for n in ("a", "b")]
    image = upload_ok(client, h, 1, labels=labels[0])
    upload_ok(client, h, 2, labels=labels[1])
    started = client.post(f"/v2/task/{task['id']}/train/", headers=h)  # stays queued: no worker
    assert started.status_code == 202, started.text
    job = started.json()
    space = client.post("/v2/workspace/", headers=h, json={"name": "alice team"}).json()["id"]
    token = client.post(f"/v2/workspace/{space}/token/", headers=h, json={"role": "editor"})
    # A prediction kept for review: classify with store_images needs a trained model, which
    # this world (no worker) has not, so the row is written as the classifier would.
    prediction = Prediction(
        id=str(uuid.uuid4()), owner_id=alice["id"], workspace_id=default_workspace(alice["id"]),
        task_id=task["id"],
        model_version=1, sha256="0" * 64, blob_key="", thumb_key="", label_id=labels[0],
        prob=0.5, uncertainty=0.5, labels={labels[0]: 0.5, labels[1]: 0.5},
    )  # fmt: skip
    with client.transport.app.state.vize.sessions.begin() as db:  # type: ignore[attr-defined]
        db.add(prediction)
    return {"task_id": task["id"], "label_id": labels[0], "image_id": image["id"],
            "model_id": job["model"]["id"], "job_id": job["job_id"], "workspace_id": space,
            "token_id": token.json()["id"], "prediction_id": prediction.id}  # fmt: skip


def test_every_object_of_another_user_is_404(
    client: AppClient, alice: dict, bob: dict, alice_world: dict[str, str]
) -> None:
    hb = bob["headers"]
    own = {"task_id": create_task(client, hb)["id"], "label_id": create_label(client, hb)["id"]}
    body = {**own, "name": "taken", "production_version": 1, "test_image": True}
    checked = 0
    for method, path in api_routes(client.transport.app):  # type: ignore[attr-defined]
        if not PARAM.search(path):
            continue
        r = client.request(method, fill(path, alice_world), headers=hb, json=body)
        assert_error(r, 404, "not_found")
        checked += 1
    assert checked >= 100  # both prefixes, with and without the slash
    ha = alice["headers"]
    task = client.get(f"/v2/task/{alice_world['task_id']}/", headers=ha).json()
    assert task["name"] == "alice task" and len(task["labels"]) == 2
    image = client.get(f"/v2/training-image/{alice_world['image_id']}/", headers=ha).json()
    assert image["test_image"] is False and len(image["labels"]) == 1
    job = client.get(f"/v2/job/{alice_world['job_id']}/", headers=ha).json()
    assert job["state"] == "queued"


FILTERS = {"task": "task_id", "label": "label_id", "labels": "label_id"}


def test_lists_and_their_filters_hide_other_users(
    client: AppClient, bob: dict, alice_world: dict[str, str]
) -> None:
    hb = bob["headers"]
    filtered = 0
    for method, path, route in routes(client.transport.app):  # type: ignore[attr-defined]
        if method != "GET" or PARAM.search(path) or path in PUBLIC_API | PROBES | OPERATOR | DOCS:
            continue
        if not isinstance(route, APIRoute) or isinstance(route, WebRoute):
            continue
        r = client.get(path, headers=hb)
        assert r.status_code == 200, path
        if path.rstrip("/").endswith("/workspace"):  # the caller's own: bob's default alone
            assert [w["default"] for w in r.json()["results"]] == [True], path
            continue
        if isinstance(r.json(), dict) and "count" in r.json():
            assert r.json()["count"] == 0 and r.json()["results"] == [], path
        for param in route.dependant.query_params:
            if param.name in FILTERS:
                url = f"{path}?{param.name}={alice_world[FILTERS[param.name]]}"
                assert_error(client.get(url, headers=hb), 404, "not_found")
                filtered += 1
    assert filtered >= 20  # task on labels, images, models; label(s) on images; 4 variants each
    usage = client.get("/v2/usage/", headers=hb).json()
    assert usage["total"] == 0
    record = {"_base64": "AAAA"}
    r = client.post("/v2/classify", headers=hb,
                    json={"task_id": alice_world["task_id"], "records": [record]})  # fmt: skip
    assert_error(r, 404, "not_found")
    r = client.post("/v1/classify/", headers=hb,
                    data={"task": alice_world["task_id"], "image_base64": "AAAA"})  # fmt: skip
    assert_error(r, 404, "not_found")


PASSWORD = "Correct-Horse-Battery-9f3b"


def _all_values(settings: Settings) -> list[str]:
    engine = create_engine(normalize_url(settings.resolved_database_url))
    meta = MetaData()
    meta.reflect(engine)
    values = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                values.extend(str(v) for v in row)
    engine.dispose()
    return values


def test_passwords_are_stored_only_as_argon2_hashes(client: AppClient, settings: Settings) -> None:
    assert sign_up(client, "webuser", PASSWORD).status_code == 303  # the web sign-up form
    make_user(settings, "cliuser", PASSWORD + "2")  # what `vize users create --password` runs
    engine = create_engine(normalize_url(settings.resolved_database_url))
    with engine.connect() as conn:
        rows = dict(conn.exec_driver_sql("SELECT username, password_hash FROM users").all())
    engine.dispose()
    hasher = PasswordHasher()
    for name, password in (("webuser", PASSWORD), ("cliuser", PASSWORD + "2")):
        assert rows[name].startswith("$argon2id$"), rows[name]
        assert hasher.verify(rows[name], password)
    assert rows["webuser"] != rows["cliuser"]
    values = _all_values(settings)
    assert not [v for v in values if PASSWORD in v]  # in no column of any table
    if settings.is_sqlite:  # nor anywhere in the database files (free pages, the WAL)
        for path in settings.data_dir.glob("vize.sqlite3*"):
            assert PASSWORD.encode() not in path.read_bytes(), path
    me = client.get("/v2/account/", headers={"Authorization": f"Token {_token(client)}"})
    assert "password" not in me.text


def _token(client: AppClient) -> str:
    html = client.get("/account").text  # the signed-in web user's page shows the token
    match = re.search(r"\b([0-9a-f]{40})\b", html)
    assert match, "no API token on the account page"
    return match.group(1)
