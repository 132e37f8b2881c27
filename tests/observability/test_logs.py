"""Structured logs: one line per request and per job event, with the request id, user id,
route template, status and duration; never image bytes, tokens, passwords or query strings."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import make_user, png_bytes
from tests.inprocess import AppClient, app_client
from tests.web.helpers import log_in
from vize.app import create_app
from vize.config import Settings
from vize.db.tables import Job
from vize.observability.logs import configure_logging, unconfigure_logging


@pytest.fixture
def logging_as(settings: Settings) -> Iterator[Callable[[str], Settings]]:
    """What ``vize serve`` does with VIZE_LOG_FORMAT, undone after the test."""

    def configure(log_format: str) -> Settings:
        configured = settings.model_copy(update={"log_format": log_format})
        configure_logging(configured.log_format, configured.log_level)
        return configured

    yield configure
    unconfigure_logging()


def wait_jobs_done(client: AppClient) -> None:
    state = client.transport.app.state.vize  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while True:
        with state.sessions() as db:
            states = {j.state for j in db.query(Job)}
        if states and states <= {"succeeded", "failed"}:
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.05)


def json_lines(err: str) -> list[dict[str, Any]]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_json_lines_carry_the_fields_and_no_secrets(
    logging_as: Callable[[str], Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    configured = logging_as("json").model_copy(update={"embedded_worker": True})
    image = png_bytes(7, size=(64, 64))
    encoded = base64.b64encode(image).decode()
    with app_client(create_app(configured)) as client:
        user = make_user(configured, "alice", "a-password-never-logged")
        h = {"Authorization": f"Token {user['token']}"}
        r = client.post("/v2/training-image/", headers={**h, "X-Request-ID": "trace-42"},
                        files={"img_path": ("a.png", image, "image/png")})  # fmt: skip
        assert r.status_code == 201 and r.headers["x-request-id"] == "trace-42"
        image_id = r.json()["id"]
        batch = {"records": [{"_base64": base64.b64encode(png_bytes(8)).decode()}]}
        assert client.post("/v2/training-image/", headers=h, json=batch).status_code == 200
        r = client.get(f"/v2/training-image/{image_id}/?search=query-never-logged", headers=h)
        assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32  # one made up
        records = {"task_id": "none", "records": [{"_base64": encoded}]}
        client.post("/v2/classify", headers=h, json=records)
        bad = {"Authorization": "Token wrong-token-never-logged"}
        assert client.get("/v2/task/", headers=bad).status_code == 401
        assert log_in(client, "alice", "a-password-never-logged").status_code in (302, 303)
        wait_jobs_done(client)  # the upload's embedding job ran in the embedded worker
    err = capsys.readouterr().err
    lines = json_lines(err)
    requests = [x for x in lines if x.get("event") == "request"]
    upload_line = next(x for x in requests if x["request_id"] == "trace-42")
    assert upload_line["user_id"] == user["id"] and upload_line["status"] == 201
    assert upload_line["route"] == "/v2/training-image/"
    assert upload_line["method"] == "POST" and upload_line["duration_ms"] > 0
    read = next(x for x in requests if x["route"] == "/v2/training-image/{image_id}/")
    assert read["user_id"] == user["id"] and read["status"] == 200  # a read knows its user
    assert any(x["status"] == 401 and x["route"] == "/v2/task/" for x in requests)
    jobs = [x for x in lines if x.get("event") == "job"]
    assert jobs and all(x["job_kind"] == "embed" and x["user_id"] == user["id"] for x in jobs)
    for job_id in {x["job_id"] for x in jobs}:  # each job: started, then its outcome
        events = [x for x in jobs if x["job_id"] == job_id]
        assert [x["job_state"] for x in events] == ["started", "succeeded"]
        assert events[1]["duration_ms"] >= 0 and events[1]["attempt"] == 1
    for secret in (user["token"], "wrong-token-never-logged", "a-password-never-logged",
                   "query-never-logged", image_id, encoded[:24],
                   batch["records"][0]["_base64"][:24], "PNG"):  # fmt: skip
        assert secret not in err, secret


def test_text_format_keeps_the_fields(
    logging_as: Callable[[str], Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    with app_client(create_app(logging_as("text"))) as client:
        assert client.get("/health", headers={"X-Request-ID": "abc"}).status_code == 200
        # A caller's id that is not tame is replaced, not logged.
        r = client.get("/health", headers={"X-Request-ID": "a b {evil}"})
        assert r.headers["x-request-id"] != "a b {evil}"
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "request_id=abc" in x)
    assert "vize.request" in line and "route=/health" in line and "status=200" in line
    assert "evil" not in err
