"""The requests Ximilar's Python client (``ximilar.client.RecognitionClient``) sends, written
from reading it (the client itself is not part of this repository).

Every request carries ``Content-Type: application/json`` (also GETs, DELETEs and a POST
without a body), ``Authorization: Token <token>`` and ``User-Agent: Ximilar Client/Python``.
Paths are under ``recognition/v2/``; the client joins them without a leading slash and with
the trailing slash as written in its code (both kinds occur). A POST/PUT body is
``json.dumps(data)``; no body at all when there is no data. With a non-default workspace,
GET and DELETE add ``?workspace=<id>`` and POST/PUT add ``"workspace": <id>`` to the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.inprocess import AppClient

P = "/recognition/v2"
# The client finds the id of an already uploaded image in the reply's detail with this.
ALREADY_INSERTED = re.compile(
    r".*image.ID..([a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89aAbB][a-f0-9]{3}-[a-f0-9]{12}).*"
)


class Ximilar:
    """Sends requests the way the client does, for one user (and optionally a workspace)."""

    def __init__(self, client: AppClient, token: str, workspace: str | None = None) -> None:
        self.client = client
        self.workspace = workspace
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Token {token}",
            "User-Agent": "Ximilar Client/Python",
        }

    def get(self, path: str) -> Any:
        params = {"workspace": self.workspace} if self.workspace else None
        return self.client.get(path, headers=self.headers, params=params)

    def post(self, path: str, data: dict[str, Any] | None = None, method: str = "POST") -> Any:
        if self.workspace:
            data = {**(data or {}), "workspace": self.workspace}
        body = json.dumps(data) if data is not None else None
        return self.client.request(method, path, headers=self.headers, content=body)

    def put(self, path: str, data: dict[str, Any]) -> Any:
        return self.post(path, data, method="PUT")

    def delete(self, path: str) -> Any:
        params = {"workspace": self.workspace} if self.workspace else None
        return self.client.delete(path, headers=self.headers, params=params)

    def upload(self, b64: str, test_image: bool = False, meta: dict | None = None) -> Any:
        """``upload_images``: one JSON POST per record; labels are added afterwards."""
        body = {"base64": b64, "noresize": False, "test_image": test_image, "meta_data": meta or {}}
        return self.post(f"{P}/training-image/", body)

    def classify(self, task_id: str, records: list[dict], version: int | None = None) -> Any:
        return self.post(
            f"{P}/classify/", {"records": records, "task_id": task_id, "version": version}
        )

    def all_pages(self, path: str) -> list[dict[str, Any]]:
        """``get_all_paginated_items``: follows ``next`` with the endpoint prefix removed."""
        items: list[dict[str, Any]] = []
        while True:
            body = self.get(path).json()
            items += body["results"]
            if body["next"] is None:
                return items
            path = body["next"].replace(str(self.client._client.base_url), "")


def check_json_status(result: dict[str, Any]) -> None:
    """What the client's ``check_json_status`` requires of a classification reply: a
    ``status`` (KeyError otherwise) whose ``code`` is 200, else its code and text raise."""
    status = result["status"]
    if status["code"] != 200:
        raise ClientError(status["code"], status["text"])


class ClientError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
