"""moto's standalone S3 server as a child process on loopback: a real S3 protocol endpoint
for the tests (HTTP, signatures, listings, copies), no cloud account needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# Fixed dummy credentials: moto accepts any, boto3 needs some to sign.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "vize-test",
    "AWS_SECRET_ACCESS_KEY": "vize-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The AWS variables that point boto3 (in this process or a child) at the server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_REGION"],
        }

    def new_bucket(self) -> str:
        """A fresh bucket: tests never see each other's objects."""
        from vize.storage.s3 import make_client

        name = f"vize-{uuid.uuid4().hex[:12]}"
        make_client(**self.client_kwargs()).create_bucket(Bucket=name)
        return name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(log: Path) -> Iterator[S3Server]:
    """Start ``moto_server`` and wait until it answers; raise (never skip) when it cannot."""
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited ({proc.returncode}); see {log}")
            try:
                if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer on {endpoint}; see {log}")
            time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
