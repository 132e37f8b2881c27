"""Reliability against real `vize serve` processes (embedded mode: SQLite, files, job thread):
load from many clients, SIGKILL mid-upload and mid-training, SQLite write contention, SIGTERM
with requests in flight. Each test records its figures (see RELIABILITY.md)."""

from __future__ import annotations

import base64
import hashlib
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hardening.live import (
    Server,
    integrity,
    labelled_task,
    percentiles,
    record,
    storage_versus_rows,
    unique_png,
    wait_training,
)
from tests.hardening.servers import http_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    node = Server(tmp_path / "data")
    try:
        yield node
    finally:
        node.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def all_image_ids(c: httpx.Client) -> set[str]:
    ids: set[str] = set()
    page = 1
    while True:
        body = c.get(f"/v2/training-image/?page={page}&page_size=1000").json()
        ids |= {img["id"] for img in body["results"]}
        if not body["next"]:
            return ids
        page += 1


def assert_consistent(server: Server) -> dict[str, int]:
    orphans, missing = storage_versus_rows(server)
    assert orphans == set(), f"files without a row: {sorted(orphans)[:5]}"
    assert missing == set(), f"rows without a file: {sorted(missing)[:5]}"
    assert integrity(server) == "ok"
    return {"orphan_files": len(orphans), "rows_without_file": len(missing)}


# ---- load --------------------------------------------------------------------------------------
CLIENTS, ROUNDS = 16, 20


def test_many_clients_upload_and_classify(server: Server) -> None:
    headers = server.user("load")
    server.start()
    with server.client(headers) as c:
        task_id, labels = labelled_task(c, per_label=5)
        assert c.post(f"/v2/task/{task_id}/train/").status_code == 202
        assert wait_training(c, task_id, ("succeeded", "failed"), 120)["state"] == "succeeded"
    times: dict[str, list[float]] = {"upload": [], "classify_v2": [], "classify_v1": []}
    statuses: Counter[str] = Counter()
    uploaded: list[str] = []
    classified = [0]
    backlogged = [0]  # uploads refused with 429 embedding_backlog, then retried
    lock = threading.Lock()

    def timed(kind: str, send: Any, url: str, **kw: Any) -> httpx.Response:
        t = time.perf_counter()
        r: httpx.Response = send(url, **kw)
        with lock:
            times[kind].append(time.perf_counter() - t)
            statuses[f"{kind} {r.status_code}"] += 1
        return r

    def client(k: int) -> None:
        with server.client(headers) as c:
            for i in range(ROUNDS):
                data = unique_png(100_000 + k * 1000 + i)
                image = {"img_path": (f"c{k}-{i}.png", data, "image/png")}
                r = timed("upload", c.post, "/v2/training-image/",
                          data={"labels": labels[i % 2]}, files=image)  # fmt: skip
                while r.status_code == 429 and r.json()["code"] == "embedding_backlog":
                    # Uploads beyond what the server can embed wait, as a client should.
                    with lock:
                        backlogged[0] += 1
                    time.sleep(float(r.headers["retry-after"]))
                    r = timed("upload", c.post, "/v2/training-image/",
                              data={"labels": labels[i % 2]}, files=image)  # fmt: skip
                if r.status_code == 201:
                    with lock:
                        uploaded.append(r.json()["id"])
                records = [{"_base64": b64(data)}, {"_base64": b64(unique_png(i))}]
                r = timed("classify_v2", c.post, "/v2/classify",
                          json={"task_id": task_id, "records": records})  # fmt: skip
                ok = sum(rec["_status"]["code"] == 200 for rec in r.json().get("records", []))
                if i % 3 == 0:
                    r = timed("classify_v1", c.post, "/v1/classify/", data={"task": task_id},
                              files={"image_file": ("x.png", data, "image/png")})  # fmt: skip
                    ok += r.status_code == 200
                with lock:
                    classified[0] += ok

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    seconds = time.perf_counter() - started
    requests = sum(len(v) for v in times.values())
    statuses["upload 429"] -= backlogged[0]  # each was retried after its Retry-After
    errors = {k: v for k, v in statuses.items() if v and not k.endswith((" 200", " 201"))}
    with server.client(headers) as c:
        ids = all_image_ids(c)
        usage = c.get("/v2/usage/").json()
        counts = {lbl["id"]: lbl["images_count"] for lbl in c.get("/v2/label/").json()["results"]}
    record("load", {
        "clients": CLIENTS, "rounds": ROUNDS, "requests": requests, "seconds": round(seconds, 1),
        "requests_per_s": round(requests / seconds, 1), "errors": errors,
        "images_uploaded": len(uploaded), "images_classified": classified[0],
        "uploads_backlogged": backlogged[0],
        "latency": {kind: percentiles(v) for kind, v in times.items()},
    })  # fmt: skip
    assert errors == {}
    assert len(uploaded) == CLIENTS * ROUNDS and set(uploaded) <= ids
    assert len(ids) == 10 + CLIENTS * ROUNDS
    assert sorted(counts.values()) == [5 + CLIENTS * ROUNDS // 2] * 2
    assert usage["today"] == classified[0] == CLIENTS * (ROUNDS * 2 + len(range(0, ROUNDS, 3)))
    assert_consistent(server)


# ---- SIGKILL during uploads ----------------------------------------------------------------------
def uploader(server: Server, headers: dict[str, str], k: int, acked: dict[str, str],
             stop: threading.Event) -> None:  # fmt: skip
    """Upload distinct images until the server dies; keep (id -> sha256) of every 201 read."""
    with server.client(headers, timeout=10) as c:
        n = 0
        while not stop.is_set():
            data = unique_png(k * 100_000 + n)
            n += 1
            try:
                r = c.post("/v2/training-image/",
                           files={"img_path": (f"{k}-{n}.png", data, "image/png")})  # fmt: skip
            except httpx.HTTPError:
                return  # the server is gone
            assert r.status_code == 201, r.text
            acked[r.json()["id"]] = hashlib.sha256(data).hexdigest()


KILLS, UPLOADERS = 3, 6


def test_sigkill_during_uploads_loses_no_acknowledged_image(server: Server) -> None:
    headers = server.user("killme")
    acked: dict[str, str] = {}
    for cycle in range(KILLS):
        server.start()
        stop = threading.Event()
        threads = [threading.Thread(target=uploader, args=(server, headers, cycle * 100 + k,
                                                            acked, stop))
                   for k in range(UPLOADERS)]  # fmt: skip
        for t in threads:
            t.start()
        before, deadline = len(acked), time.monotonic() + 60
        while len(acked) < before + 40:
            assert time.monotonic() < deadline and any(t.is_alive() for t in threads), acked
            time.sleep(0.02)
        server.kill()  # mid-upload: six requests in flight
        stop.set()
        for t in threads:
            t.join(30)
    server.start()
    with server.client(headers) as c:
        ids = all_image_ids(c)
        for image_id, sha in acked.items():
            r = c.get(f"/v2/training-image/{image_id}/file/")
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha
    swept = [int(n) for n in re.findall(r"removed (\d+) orphaned file", server.log.read_text())]
    record("kill_uploads", {
        "kills": KILLS, "uploaders": UPLOADERS, "acknowledged": len(acked),
        "rows_after_restart": len(ids), "committed_unacknowledged": len(ids) - len(acked),
        "orphans_swept_at_restarts": swept, **assert_consistent(server),
    })  # fmt: skip
    assert set(acked) <= ids


# ---- SIGKILL during training -------------------------------------------------------------------
def test_sigkill_during_training_resumes_after_restart(server: Server) -> None:
    # The training itself embeds all 60 images (none on upload), with the larger backbone and
    # flipped copies: several seconds of work to interrupt.
    server.extra_env.update(VIZE_EMBED_ON_UPLOAD="false", VIZE_BACKBONE="efficientnet_lite2",
                            VIZE_FLIP_AUGMENT="true")  # fmt: skip
    headers = server.user("trainer")
    server.start()
    with server.client(headers) as c:
        task_id, _ = labelled_task(c, per_label=30)
        job_id = c.post(f"/v2/task/{task_id}/train/").json()["job_id"]
        deadline = time.monotonic() + 60
        # Killed as soon as a worker has it: on a quiet machine the whole training takes about
        # a second, so waiting for a later progress mark could see it finished.
        while (job := c.get(f"/v2/job/{job_id}/").json())["state"] != "running":
            assert job["state"] == "queued" and time.monotonic() < deadline, job
            time.sleep(0.01)
    server.kill()
    killed_at = job["progress"]
    assert job["state"] == "running" and killed_at < 0.8, job  # killed while embedding
    started = time.monotonic()
    server.start()
    with server.client(headers) as c:
        st = wait_training(c, task_id, ("succeeded", "failed"), 120)
        recovered = time.monotonic() - started
        assert st["state"] == "succeeded", st
        job = c.get(f"/v2/job/{job_id}/").json()
        models = c.get(f"/v2/model/?task={task_id}").json()["results"]
        r = c.post("/v2/classify", json={"task_id": task_id,
                                         "records": [{"_base64": b64(unique_png(5))}]})  # fmt: skip
        assert r.status_code == 200 and r.json()["version"] == 1
    with server.db() as conn:
        active = conn.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
        assert active.fetchone()[0] == 0  # no job stuck
    record("kill_training", {
        "killed_at_progress": killed_at, "attempts": job["attempts"],
        "seconds_to_success_after_restart": round(recovered, 1),
        "model_versions": [m["version"] for m in models], **assert_consistent(server),
    })  # fmt: skip
    assert job["attempts"] == 2 and [m["version"] for m in models] == [1]
    assert models[0]["train_state"] == "trained"


# ---- SQLite write contention -------------------------------------------------------------------
WRITERS, WRITES = 16, 12


def test_sqlite_write_contention(server: Server) -> None:
    headers = server.user("writer")
    server.start()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    times: list[float] = []

    def writer(k: int) -> tuple[int, int]:
        """Each round: a label, an image with it, a relabel, a task edit; some deletes."""
        made_labels = kept_images = 0
        with server.client(headers) as c:
            task = c.post("/v2/task/", json={"name": f"w{k}"}).json()["id"]
            for i in range(WRITES):
                t = time.perf_counter()
                rs = [c.post("/v2/label/", json={"name": f"l{k}-{i}", "task": task})]
                label = rs[-1].json().get("id")
                data = unique_png(200_000 + k * 100 + i)
                rs.append(c.post("/v2/training-image/", data={"labels": label},
                                 files={"img_path": ("x.png", data, "image/png")}))  # fmt: skip
                image = rs[-1].json().get("id")
                relabel = {"label_id": label}
                rs.append(c.post(f"/v2/training-image/{image}/add-label/", json=relabel))
                rs.append(c.patch(f"/v2/task/{task}/", json={"description": f"round {i}"}))
                if i % 4 == 3:
                    rs.append(c.delete(f"/v2/training-image/{image}/"))
                else:
                    kept_images += 1
                made_labels += 1
                with lock:
                    times.append(time.perf_counter() - t)
                    statuses.update(r.status_code for r in rs)
        return made_labels, kept_images

    started = time.perf_counter()
    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    seconds = time.perf_counter() - started
    with server.client(headers) as c:
        labels = c.get("/v2/label/?page_size=1000").json()["count"]
        images = c.get("/v2/training-image/?page_size=1000").json()["count"]
    log = server.log.read_text()
    record("sqlite_contention", {
        "writers": WRITERS, "rounds": WRITES, "requests": sum(statuses.values()),
        "seconds": round(seconds, 1), "statuses": dict(statuses),
        "round_latency": percentiles(times), "database_locked_in_log": log.count("locked"),
    })  # fmt: skip
    assert set(statuses) <= {200, 201, 204}, statuses
    assert labels == sum(r[0] for r in results) and images == sum(r[1] for r in results)
    assert "database is locked" not in log
    assert_consistent(server)


# ---- SIGTERM with requests in flight --------------------------------------------------------
SLOW = 2.0


def slow_images(path: str) -> tuple[int, dict[str, str], bytes]:
    n = int(path.strip("/").split(".")[0])
    return 200, {"Content-Type": "image/png"}, unique_png(300_000 + n)


def test_sigterm_finishes_requests_in_flight(server: Server) -> None:
    with http_server(slow_images, "127.0.0.1", delay=SLOW) as images:
        server.extra_env["VIZE_URL_ALLOW_HOSTS"] = '["127.0.0.1"]'
        headers = server.user("graceful")
        server.start()
        results: dict[str, Any] = {}

        def by_url(n: int) -> None:
            with server.client(headers) as c:
                body = {"records": [{"_url": f"{images.url}/{n}.png"}]}
                results[f"url{n}"] = c.post("/v2/training-image/", json=body)

        def slow_body() -> None:
            boundary = "slowboundary"
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="img_path"; '
                    'filename="slow.png"\r\nContent-Type: image/png\r\n\r\n').encode()  # fmt: skip
            data = unique_png(999)

            def chunks() -> Iterator[bytes]:
                yield head
                for i in range(0, len(data), 256):
                    time.sleep(SLOW / (len(data) / 256))
                    yield data[i : i + 256]
                yield f"\r\n--{boundary}--\r\n".encode()

            with server.client(headers) as c:
                ctype = f"multipart/form-data; boundary={boundary}"
                results["slow_body"] = c.post("/v2/training-image/", content=chunks(),
                                              headers={"Content-Type": ctype})  # fmt: skip

        threads = [threading.Thread(target=by_url, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=slow_body))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(images.seen) < 4:  # every URL fetch is waiting on the slow server
            assert time.monotonic() < deadline, images.seen
            time.sleep(0.02)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for t in threads:
            t.join(30)
        code = server.proc.wait(30)  # uvicorn re-raises the signal once shut down: -15
        exited_after = time.monotonic() - signalled
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/health", timeout=2)
    statuses = {k: r.status_code for k, r in results.items()}
    records = {k: r.json()["records"][0]["_status"]["code"] for k, r in results.items()
               if k != "slow_body"}  # fmt: skip
    server.start()
    with server.client(headers) as c:
        stored = c.get("/v2/training-image/").json()["count"]
    record("sigterm", {"in_flight": len(threads), "statuses": statuses, "records": records,
                       "exit_code": code,
                       "exit_seconds_after_sigterm": round(exited_after, 1),
                       "images_after_restart": stored})  # fmt: skip
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()  # the graceful path
    assert statuses == {f"url{n}": 200 for n in range(4)} | {"slow_body": 201}, statuses
    assert set(records.values()) == {201} and stored == 5
