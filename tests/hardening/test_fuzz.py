"""Fuzz every operation of the published OpenAPI spec against a real `vize serve` on loopback,
as a real user, with schemathesis (v4): valid and invalid inputs alike never get a 5xx, and
every error is the JSON envelope.

Valid cases aim at real objects (a task, labels, images, a training), so they get past the 404
of a random id into the code behind it. Bounded: ``VIZE_FUZZ_EXAMPLES`` examples per operation
and generation mode (default 15; derandomized, so the same run every time). Fetching stays on
loopback: any URL field the fuzzer fills is replaced by a loopback address before sending."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.procs import create_user, serve, stop
from tests.hardening.live import record
from tests.helpers import png_bytes

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("VIZE_FUZZ_EXAMPLES", "15"))
URL_FIELDS = {"_url", "image_url", "webhook_url"}
LOOPBACK = "http://127.0.0.1:9/x.png"  # the discard port: refused at once, never external


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, pg_database: str | None
) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`vize serve` on the suite's database: SQLite, or PostgreSQL in the PostgreSQL pass."""
    data = tmp_path_factory.mktemp("fuzz")
    env = {"VIZE_DATA_DIR": str(data / "data"), "VIZE_DATABASE_URL": pg_database or "",
           "VIZE_DEFAULT_USER": "", "VIZE_SECRET_KEY": "fuzz", "VIZE_BROKER_URL": "",
           "VIZE_URL_FETCH_TIMEOUT": "2", "VIZE_MIN_IMAGES_PER_LABEL": "1"}  # fmt: skip
    token = create_user(env, "fuzzer")
    log = data / "server.log"
    proc, url = serve(env, log)
    try:
        yield url, {"Authorization": f"Token {token}"}, log
    finally:
        stop(proc)


def real_objects(url: str, auth: dict[str, str]) -> dict[str, str]:
    """A task with two labels, an image each and a training: ids the fuzzer can aim at, so
    that it gets past the 404 of a random id to the code behind it."""
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
        task = c.post("/v2/task/", json={"name": "fuzz"}).json()
        labels = [c.post("/v2/label/", json={"name": n, "task": task["id"]}).json()["id"]
                  for n in ("a", "b")]  # fmt: skip
        images = []
        for i, label in enumerate(labels):
            files = {"img_path": ("a.png", png_bytes(random.randrange(10**6) + i), "image/png")}
            images.append(c.post("/v2/training-image/", data={"labels": label}, files=files))
        started = c.post(f"/v2/task/{task['id']}/train/").json()
    return {"task_id": task["id"], "label_id": labels[0], "image_id": images[0].json()["id"],
            "model_id": started["model"]["id"], "job_id": started["job_id"]}  # fmt: skip


def loopback_only(value: Any) -> Any:
    """The same body with every URL field pointing at loopback."""
    if isinstance(value, dict):
        return {k: LOOPBACK if k in URL_FIELDS else loopback_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [loopback_only(v) for v in value]
    return value


def tracebacks(log: Path) -> str:
    """The server's first tracebacks, for the failure message."""
    text = log.read_text()
    parts = text.split("Traceback (most recent call last):")[1:3]
    return "\n---\n".join(p[:6000] for p in parts) or text[-3000:]


def is_envelope(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("detail"), str) and "code" in body


class Fuzzer:
    def __init__(self, url: str, auth: dict[str, str]) -> None:
        self.url, self.auth = url, auth
        self.ids = real_objects(url, auth)
        self.failures: list[str] = []
        self.statuses: Counter[int] = Counter()

    def send(self, label: str, mode: GenerationMode, case: Any) -> None:
        if isinstance(case.body, dict | list):
            case.body = loopback_only(case.body)
        if mode is GenerationMode.POSITIVE and case.path_parameters:
            case.path_parameters = {k: self.ids.get(k, v) for k, v in case.path_parameters.items()}
        response = case.call(base_url=self.url, headers=self.auth, timeout=30)
        status = response.status_code
        self.statuses[status] += 1
        if status >= 500 or (status >= 400 and not is_envelope(response)):
            self.failures.append(f"{label} [{mode.value}] -> {status} {response.text[:200]}")
        if case.method == "DELETE" and status == 204:
            self.ids.update(real_objects(self.url, self.auth))  # aim at live objects again
        if label.endswith("regenerate-token/") and status == 200:
            self.auth["Authorization"] = f"Token {response.json()['token']}"

    def fuzz(self, operation: Any, mode: GenerationMode) -> bool:
        """False if the operation has no input to make invalid."""

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: Any) -> None:
            self.send(operation.label, mode, case)

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label
            return False
        return True


def test_fuzz_the_openapi_spec(live: tuple[str, dict[str, str], Path]) -> None:
    url, auth, log = live
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    fuzzer = Fuzzer(url, auth)
    started = time.monotonic()
    no_invalid = [
        op.label for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if not fuzzer.fuzz(op, mode)
    ]  # fmt: skip
    seconds = time.monotonic() - started
    statuses = dict(sorted(fuzzer.statuses.items()))
    total = sum(statuses.values())
    print(f"\nfuzz: {len(operations)} operations x 2 modes, {EXAMPLES} examples each: "
          f"{total} requests in {seconds:.1f} s; statuses {statuses}; "
          f"{len(no_invalid)} operations without invalid inputs")  # fmt: skip
    record("fuzz", {"operations": len(operations), "examples": EXAMPLES, "requests": total,
                    "seconds": round(seconds, 1), "statuses": statuses,
                    "failures": len(fuzzer.failures)})  # fmt: skip
    assert not fuzzer.failures, "\n".join(fuzzer.failures[:20]) + "\n" + tracebacks(log)
    assert total >= len(operations) * EXAMPLES  # the loop ran
    assert statuses.get(200, 0) > 100  # and reached real objects, not only 404s
