"""Helpers for the web page tests: CSRF tokens out of pages, signing up and logging in."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi import FastAPI

from tests.inprocess import AppClient
from vize.db.tables import Model, Task

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
META_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def form_csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF form field"
    return match.group(1)


def api_csrf(html: str) -> str:
    match = META_RE.search(html)
    assert match, "page has no csrf-token meta tag"
    return match.group(1)


def post_form(client: AppClient, url: str, data: dict[str, str], page: str = "/tasks") -> Any:
    """Post a form the way a browser does: with the CSRF token of a page just loaded."""
    token = form_csrf(client.get(page).text)
    return client.post(url, data={"csrf_token": token, **data})


def sign_up(client: AppClient, username: str, password: str = "secret-pass-1") -> httpx.Response:
    token = form_csrf(client.get("/signup").text)
    data = {
        "csrf_token": token,
        "username": username,
        "email": f"{username}@example.com",
        "password": password,
        "password2": password,
    }
    return client.post("/signup", data=data)


def log_in(client: AppClient, username: str, password: str, next_url: str = "") -> httpx.Response:
    token = form_csrf(client.get("/login").text)
    data = {"csrf_token": token, "username": username, "password": password, "next": next_url}
    return client.post("/login", data=data)


def create_task(client: AppClient, name: str, kind: str = "multi_class") -> str:
    response = post_form(client, "/tasks", {"name": name, "type": kind})
    assert response.status_code == 303, response.text
    return str(response.headers["location"]).rsplit("/", 1)[-1]


def add_label(client: AppClient, task_id: str, name: str) -> str:
    response = post_form(client, f"/tasks/{task_id}/labels", {"name": name}, f"/tasks/{task_id}")
    assert response.status_code == 303, response.text
    return str(response.headers["location"]).split("label=")[-1]


def metrics_for(labels: list[tuple[str, str]], wrong_image: str) -> dict[str, Any]:
    """Contract-shaped metrics of a two-label model with one mistake."""
    (a_id, a_name), (b_id, b_name) = labels
    return {
        "accuracy": 0.9,
        "cv_accuracy": 0.85,
        "per_label": [
            {
                "label_id": a_id,
                "name": a_name,
                "precision": 1.0,
                "recall": 0.8,
                "f1": 0.889,
                "support": 5,
            },
            {
                "label_id": b_id,
                "name": b_name,
                "precision": 0.833,
                "recall": 1.0,
                "f1": 0.909,
                "support": 5,
            },
        ],
        "confusion_matrix": {
            "labels": [a_id, b_id],
            "names": [a_name, b_name],
            "matrix": [[4, 1], [0, 5]],
        },
        "test_predictions": [
            {
                "image_id": wrong_image,
                "true": [a_id],
                "predicted": b_id,
                "prob": 0.71,
                "correct": False,
            },
        ],
        "train_images": 40,
        "test_images": 10,
        "backbone": "efficientnet_lite0",
        "train_seconds": 3.2,
    }


def add_model(app: FastAPI, task_id: str, version: int, metrics: dict[str, Any]) -> None:
    """A finished model row, as the training worker would leave it."""
    with app.state.vize.sessions.begin() as db:
        db.add(
            Model(
                task_id=task_id,
                version=version,
                train_status="trained",
                progress=1.0,
                metrics=metrics,
                images_count=50,
            )
        )
        task = db.get(Task, task_id)
        assert task is not None
        task.production_version = version
