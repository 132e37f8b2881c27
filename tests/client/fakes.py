"""A scripted stand-in for the server's training endpoints (a real failed training cannot be
provoked on demand): the SDK and CLI run unchanged over it as an ``httpx.MockTransport``."""

from __future__ import annotations

import json

import httpx


def fake_training_server(final_state: str, error: str | None = None) -> httpx.MockTransport:
    """A server whose training ends in ``final_state`` after two polls."""
    polls = {"n": 0}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/train/"):
            return httpx.Response(
                202,
                json={
                    "job_id": "j1",
                    "task_id": "t1",
                    "model": {"id": "m1", "task": "t1", "version": 4, "train_status": "queued"},
                },
            )
        if path == "/v2/job/j1/":
            polls["n"] += 1
            state = final_state if polls["n"] >= 3 else "running"
            return httpx.Response(
                200,
                json={
                    "id": "j1",
                    "state": state,
                    "progress": 0.3,
                    "error": error if state == "failed" else None,
                    "model_id": "m1",
                },
            )
        if path == "/v2/model/m1/":
            return httpx.Response(
                200,
                json={
                    "id": "m1",
                    "task": "t1",
                    "version": 4,
                    "train_status": "trained",
                    "accuracy": 0.9,
                },
            )
        if path == "/v2/task/":  # name lookup by the CLI
            task = {"id": "t1", "name": "t1", "production_version": 4, "labels": []}
            return httpx.Response(
                200, json={"count": 1, "next": None, "previous": None, "results": [task]}
            )
        if path == "/v2/task/t1/":
            return httpx.Response(200, json={"id": "t1", "name": "t1", "production_version": 4})
        return httpx.Response(404, content=json.dumps({"detail": "no", "code": "not_found"}))

    return httpx.MockTransport(handle)
