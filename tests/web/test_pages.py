"""The web pages in-process: accounts, CSRF, task pages, evaluation, preview, ownership."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from tests.helpers import png_bytes
from tests.inprocess import AppClient
from tests.web.helpers import (
    add_label,
    add_model,
    api_csrf,
    create_task,
    form_csrf,
    log_in,
    metrics_for,
    post_form,
    sign_up,
)

# ---- accounts -------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client: AppClient) -> None:
    for path, target in [
        ("/", "/login"),
        ("/tasks", "/login?next=/tasks"),
        ("/account", "/login?next=/account"),
        ("/tasks/abc/training?version=2", "/login?next=/tasks/abc/training%3Fversion%3D2"),
    ]:
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == target


def test_sign_up_logs_in_with_a_safe_cookie(client: AppClient) -> None:
    response = sign_up(client, "carol")
    assert response.status_code == 303 and response.headers["location"] == "/tasks"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("vize_session=")
    )
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = client.get("/tasks")
    assert page.status_code == 200
    assert "Welcome, carol" in page.text and "Your tasks" in page.text
    # The session works for the API too (reads need no CSRF header).
    assert client.get("/v2/account/").json()["username"] == "carol"


def test_sign_up_errors_keep_the_form(client: AppClient) -> None:
    token = form_csrf(client.get("/signup").text)
    base = {"csrf_token": token, "username": "dave", "email": "dave@example.com"}
    response = client.post(
        "/signup", data={**base, "password": "long-enough", "password2": "different!"}
    )
    assert response.status_code == 400 and "The two passwords differ" in response.text
    assert 'value="dave"' in response.text
    response = client.post("/signup", data={**base, "password": "short", "password2": "short"})
    assert response.status_code == 400 and "at least 8 characters" in response.text
    assert sign_up(client, "dave").status_code == 303
    client.post("/logout", data={"csrf_token": form_csrf(client.get("/tasks").text)})
    response = sign_up(client, "dave")
    assert response.status_code == 409 and "already exists" in response.text


def test_log_in_and_out(client: AppClient, alice_with_password: dict[str, Any]) -> None:
    response = log_in(client, "alice", "wrong-password")
    assert response.status_code == 400 and "Wrong username or password" in response.text
    response = log_in(client, "alice", "alice-password", next_url="/account")
    assert response.status_code == 303 and response.headers["location"] == "/account"
    assert "alice" in client.get("/account").text
    assert client.get("/login").headers["location"] == "/tasks"  # already logged in
    response = client.post("/logout", data={"csrf_token": form_csrf(client.get("/tasks").text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/tasks").status_code == 303


def test_login_never_redirects_off_site(
    client: AppClient, alice_with_password: dict[str, Any]
) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = log_in(client, "alice", "alice-password", next_url=target)
        assert response.headers["location"] == "/tasks"
        client.post("/logout", data={"csrf_token": form_csrf(client.get("/tasks").text)})


def test_forms_reject_missing_or_foreign_csrf(
    client: AppClient, alice_with_password: dict[str, Any]
) -> None:
    client.get("/login")
    assert (
        client.post("/login", data={"username": "alice", "password": "alice-password"}).status_code
        == 403
    )
    assert log_in(client, "alice", "alice-password").status_code == 303
    response = client.post("/tasks", data={"name": "No token"})
    assert response.status_code == 403 and "Reload the page" in response.text
    response = client.post("/tasks", data={"name": "Bad", "csrf_token": "0" * 64})
    assert response.status_code == 403
    good = form_csrf(client.get("/tasks").text)
    client.post("/logout", data={"csrf_token": good})
    sign_up(client, "mallory")
    response = client.post("/account/token", data={"csrf_token": good})  # alice's old token
    assert response.status_code == 403
    assert "No token" not in client.get("/tasks").text


def test_api_writes_with_the_cookie_need_the_header(client: AppClient) -> None:
    sign_up(client, "erin")
    task_id = create_task(client, "Shapes")
    label_id = add_label(client, task_id, "square")
    upload = {"img_path": ("a.png", png_bytes(3), "image/png")}
    response = client.post("/v2/training-image/", files=upload, data={"labels": label_id})
    assert response.status_code == 403
    header = {"X-CSRFToken": api_csrf(client.get(f"/tasks/{task_id}").text)}
    response = client.post(
        "/v2/training-image/", files=upload, data={"labels": label_id}, headers=header
    )
    assert response.status_code == 201, response.text


def test_account_page_token_usage_and_notifications(client: AppClient, app: FastAPI) -> None:
    from vize.db.states import Role
    from vize.services import usage as usage_service
    from vize.services.workspaces import Caller, default_workspace

    sign_up(client, "frank")
    me = client.get("/v2/account/").json()
    with app.state.vize.sessions.begin() as db:
        home = Caller(default_workspace(me["id"]), Role.OWNER, me["id"])
        usage_service.record_classifications(db, home, 7)
    page = client.get("/account").text
    assert 'id="usage-today">7<' in page and 'id="usage-total">7<' in page
    old_token = page.split('id="api-token" class="mono" value="')[1].split('"')[0]
    assert len(old_token) == 40 and "data-copy" in page
    response = post_form(client, "/account/token", {}, "/account")
    assert response.status_code == 303
    page = client.get("/account").text
    assert old_token not in page and "new API token" in page
    assert (
        client.get("/v2/task/", headers={"Authorization": f"Token {old_token}"}).status_code == 401
    )
    assert 'name="notify_email" checked' not in page  # off until asked (issue 15)
    assert client.get("/v2/account/").json()["notify_email"] is False
    form = {"email": "f@example.com", "notify_email": "on"}
    post_form(client, "/account/preferences", form, "/account")
    assert client.get("/v2/account/").json()["notify_email"] is True
    post_form(client, "/account/preferences", {"email": "f@example.com"}, "/account")
    assert client.get("/v2/account/").json()["notify_email"] is False
    response = post_form(
        client, "/account/preferences", {"email": "nope", "notify_email": "on"}, "/account"
    )
    assert response.status_code == 303
    assert "Email address is not valid" in client.get("/account").text


# ---- tasks ----------------------------------------------------------------------------------


def test_create_tasks_of_both_types(client: AppClient) -> None:
    sign_up(client, "gina")
    plain = create_task(client, "Vehicles")
    tags = create_task(client, "Scenes", "multi_label")
    listing = client.get("/tasks").text
    assert "Vehicles" in listing and "Categorization" in listing and "Tagging" in listing
    assert client.get(f"/v2/task/{plain}").json()["type"] == "multi_class"
    task = client.get(f"/v2/task/{tags}").json()
    assert task["type"] == "multi_label" and task["labels"][0]["name"] == "negative"
    response = post_form(client, "/tasks", {"name": "  "})
    assert response.status_code == 303
    assert "Give the task a name" in client.get(response.headers["location"]).text


def test_label_management(client: AppClient) -> None:
    sign_up(client, "hugo")
    task_id = create_task(client, "Animals")
    cat = add_label(client, task_id, "cat")
    add_label(client, task_id, "dog")
    page = client.get(f"/tasks/{task_id}").text
    assert "cat" in page and "dog" in page and "0 / 5" in page
    assert "Each label needs at least <strong>5</strong> images" in page
    response = post_form(client, f"/tasks/{task_id}/labels/{cat}/rename", {"name": "kitten"})
    assert response.status_code == 303
    assert "kitten" in client.get(f"/tasks/{task_id}").text
    post_form(client, f"/tasks/{task_id}/labels/{cat}/detach", {})
    assert [lbl["name"] for lbl in client.get(f"/v2/task/{task_id}").json()["labels"]] == ["dog"]
    page = client.get(f"/tasks/{task_id}").text
    assert 'id="attach-label"' in page and "kitten" in page
    post_form(client, f"/tasks/{task_id}/labels/attach", {"label_id": cat})
    assert len(client.get(f"/v2/task/{task_id}").json()["labels"]) == 2
    post_form(client, f"/tasks/{task_id}/labels/{cat}/delete", {})
    assert client.get(f"/v2/label/{cat}").status_code == 404


def test_negative_label_cannot_be_removed(client: AppClient) -> None:
    sign_up(client, "ivy")
    task_id = create_task(client, "Tags", "multi_label")
    negative = client.get(f"/v2/task/{task_id}").json()["negative_label"]
    response = post_form(
        client, f"/tasks/{task_id}/labels/{negative}/detach", {}, f"/tasks/{task_id}"
    )
    assert response.status_code == 303
    assert "cannot be removed" in client.get(response.headers["location"]).text


def test_task_page_lists_images_per_label_with_paging(client: AppClient) -> None:
    sign_up(client, "jack")
    task_id = create_task(client, "Colours")
    red = add_label(client, task_id, "red")
    header = {"X-CSRFToken": api_csrf(client.get(f"/tasks/{task_id}").text)}
    for seed in range(26):
        files = {"img_path": (f"red{seed}.png", png_bytes(seed), "image/png")}
        response = client.post(
            "/v2/training-image/", files=files, data={"labels": red}, headers=header
        )
        assert response.status_code == 201
    page = client.get(f"/tasks/{task_id}?label={red}").text
    assert page.count('class="image-card') == 24
    assert "Page 1 of 2" in page and "26 / 5" in page and "/thumb/" in page
    page2 = client.get(f"/tasks/{task_id}?label={red}&page=2").text
    assert page2.count('class="image-card') == 2
    assert 'id="dropzone"' in page and 'data-upload-url="/v2/training-image/"' in page
    thumb = re.search(r'<img src="(/v2/training-image/[^"]+/thumb/)"', page).group(1)  # type: ignore[union-attr]
    assert client.get(thumb).headers["content-type"] == "image/jpeg"


def test_tagging_task_page_offers_tags(client: AppClient) -> None:
    sign_up(client, "tess")
    task_id = create_task(client, "Scenes", "multi_label")
    sky = add_label(client, task_id, "sky")
    add_label(client, task_id, "sea")
    header = {"X-CSRFToken": api_csrf(client.get(f"/tasks/{task_id}").text)}
    files = {"img_path": ("s.png", png_bytes(5), "image/png")}
    client.post("/v2/training-image/", files=files, data={"labels": sky}, headers=header)
    page = client.get(f"/tasks/{task_id}?label={sky}").text
    assert "Tags for these images" in page and 'type="checkbox" name="labels"' in page
    assert 'aria-label="Remove tag sky"' in page and "Add tag…" in page
    assert "Move to…" not in page
    training = client.get(f"/tasks/{task_id}/training").text
    # Train is disabled and the page says what is missing (issue 15).
    assert "sky</a> needs 4 more images" in training and "at least one tag" not in training
    assert 'id="train-btn" class="btn btn-primary" disabled' in training


def test_another_users_task_is_404(client: AppClient, bob: dict[str, Any]) -> None:
    task = client.post("/v2/task/", headers=bob["headers"], data={"name": "Bob's"}).json()
    sign_up(client, "kate")
    for suffix in ("", "/training", "/preview", "/settings"):
        response = client.get(f"/tasks/{task['id']}{suffix}")
        assert response.status_code == 404, suffix
        assert "Not found" in response.text and "Bob's" not in response.text
    response = post_form(client, f"/tasks/{task['id']}/delete", {})
    assert response.status_code == 404
    assert client.get("/tasks/not-a-uuid").status_code == 404
    assert client.get("/tasks?page=abc").status_code == 400
    assert client.get(f"/v2/task/{task['id']}", headers=bob["headers"]).status_code == 200


def test_task_settings_and_delete(client: AppClient) -> None:
    sign_up(client, "liam")
    task_id = create_task(client, "Draft")
    response = post_form(
        client, f"/tasks/{task_id}/settings", {"name": "Final", "description": "Better name"}
    )
    assert response.status_code == 303
    page = client.get(f"/tasks/{task_id}/settings").text
    assert "Final" in page and "Better name" in page and "Task saved" in page
    response = post_form(client, f"/tasks/{task_id}/delete", {})
    assert response.headers["location"] == "/tasks"
    assert client.get(f"/tasks/{task_id}").status_code == 404


# ---- training, evaluation, preview -----------------------------------------------------------


def test_training_page_before_any_model(client: AppClient) -> None:
    sign_up(client, "mia")
    task_id = create_task(client, "Empty")
    add_label(client, task_id, "only")
    page = client.get(f"/tasks/{task_id}/training").text
    assert 'id="train-btn"' in page and f"/v2/task/{task_id}/train/" in page
    assert "at least two labels" in page and "No model yet" in page
    assert "ready to train" not in page


def test_evaluation_shows_metrics_heatmap_and_mistakes(client: AppClient, app: FastAPI) -> None:
    sign_up(client, "noah")
    task_id = create_task(client, "Vehicles")
    plane, car = add_label(client, task_id, "airplane"), add_label(client, task_id, "automobile")
    header = {"X-CSRFToken": api_csrf(client.get(f"/tasks/{task_id}").text)}
    image = client.post(
        "/v2/training-image/",
        headers=header,
        data={"labels": plane},
        files={"img_path": ("p.png", png_bytes(9), "image/png")},
    ).json()
    metrics = metrics_for([(plane, "airplane"), (car, "automobile")], image["id"])
    add_model(app, task_id, 1, metrics)
    add_model(app, task_id, 2, {**metrics, "accuracy": 0.95})
    page = client.get(f"/tasks/{task_id}/training").text
    assert "Deployed v2" in page and 'id="model-accuracy">95.0%' in page
    assert 'id="confusion-matrix"' in page and "heat hit h8" in page and "heat miss h2" in page
    assert "80.0%" in page and "83.3%" in page  # recall and precision
    assert f"/v2/training-image/{image['id']}/thumb/" in page and "Predicted automobile" in page
    assert "Deploy v1" in page
    # The mistake opens a larger view with its file name; the threshold has the predictions.
    assert 'data-file-name="p.png"' in page and 'id="image-dialog"' in page
    assert 'id="threshold-range"' in page and "data-thresholds=" in page
    assert 'id="deploy-policy">Deploy only if better<' in page
    response = post_form(client, f"/tasks/{task_id}/deploy", {"version": "1"})
    assert response.status_code == 303
    assert client.get(f"/v2/task/{task_id}").json()["production_version"] == 1
    page = client.get(response.headers["location"]).text
    assert "Version 1 is now deployed" in page and 'id="model-accuracy">90.0%' in page
    listing = client.get("/tasks").text
    assert "v1" in listing and "90.0%" in listing
    response = post_form(client, f"/tasks/{task_id}/deploy", {"version": "7"})
    assert "not a trained model" in client.get(response.headers["location"]).text


def test_preview_page_has_the_api_snippets(client: AppClient, app: FastAPI) -> None:
    sign_up(client, "olga")
    task_id = create_task(client, "Vehicles")
    page = client.get(f"/tasks/{task_id}/preview").text
    assert "no trained model yet" in page
    add_model(app, task_id, 1, {"accuracy": 0.5})
    page = client.get(f"/tasks/{task_id}/preview").text
    assert 'data-classify-url="/v2/classify"' in page and 'id="preview-file"' in page
    # curl with a file upload, Python and JavaScript, with the user's real token (blurred
    # until revealed) next to the endpoint URL (issue 15).
    token = client.get("/account").text.split('id="api-token" class="mono" value="')[1][:40]
    assert f'-F "task={task_id}"' in page and "image_file=@photo.jpg" in page
    assert page.count(f'<span class="token-slot masked">{token}</span>') == 3
    assert 'id="token-toggle" aria-pressed="false"' in page
    assert 'id="endpoint-url">http://testserver/v1/classify/' in page
    assert "import requests" in page and "node:fs/promises" in page


# ---- assets and headers -----------------------------------------------------------------------


def test_pages_send_security_headers_and_assets_are_local(client: AppClient) -> None:
    page = client.get("/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for asset in (
        "/static/vize.css",
        "/static/js/common.js",
        "/static/js/upload.js",
        "/static/js/grid.js",
        "/static/js/train.js",
        "/static/js/preview.js",
        "/static/favicon.svg",
    ):
        assert client.get(asset).status_code == 200, asset
