"""Scale-out, shown rather than assumed: API replicas and Celery workers each pinned to a core
of their own (``taskset``), each in its own network namespace as a separate host (own address,
own data dir), sharing only PostgreSQL, Redis and an S3 bucket (moto's server, started here;
or s3rver with ``--s3rver PATH``, a lighter S3 server from npm, for the core it shares).

Topology (root only: ``ip netns``, veth pairs on a bridge ``vzb0`` 10.231.0.1/24):

    root namespace, core 0: this script (the load generator), moto (S3), a private Redis,
                            socat forwarding 10.231.0.1:5432 -> PostgreSQL on 127.0.0.1:5432
    vz-r1  10.231.0.11  `vize serve`, core 1       vz-w1  10.231.0.21  `vize worker`, core 1
    vz-r2  10.231.0.12  `vize serve`, core 0       vz-w2  10.231.0.22  `vize worker`, core 0
    vz-up  10.231.0.30  `vize serve` taking the uploads of the embedding phase, core 1

Per round: classify throughput through 1 then 2 replicas (batches of 10 JPEGs, 3 clients per
replica, fixed duration), then uploads through ``vz-up`` with no worker running (embed jobs
wait in Redis), then 1 or 2 workers started, the waiting jobs released at once, and the time
until every image has its embedding; each round also measures the machine's own two-core
ceiling for the classify work (bare in-process forwards, pinned). Everything's CPU is read
from /proc (and Redis' INFO), so the client's and the shared services' cost per image is
measured, not guessed. Counts per operation (for docs/deploy.md's capacity model):
PostgreSQL transactions / table scans / rows (pg_stat_database, pg_stat_user_tables of a
scratch database), Redis commands (INFO commandstats of the private Redis), S3 requests
(moto's request log), RSS of each process.

Usage:  sudo .venv/bin/python bench/scale_bench.py --dataset DIR [--rounds 3] [--seconds 20]
            [--pg postgresql://postgres@127.0.0.1:5432/test] [--s3rver node_modules/.bin/s3rver]
Needs root, taskset, socat, redis-server, PostgreSQL on 127.0.0.1:5432. Everything it creates
(namespaces, bridge, scratch database, processes) is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import http.client
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import redis
from botocore.exceptions import ClientError
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vize.db.engine import normalize_url

NET, BRIDGE = "10.231.0", "vzb0"
HOSTS = {"r1": (11, 1), "r2": (12, 0), "w1": (21, 1), "w2": (22, 0), "up": (30, 1)}
SERVICE_CORE = 0  # the load generator and the shared services
REDIS_PORT, S3_PORT, API_PORT, WORKER_METRICS_PORT = 6390, 5055, 8000, 9808
CLK = os.sysconf("SC_CLK_TCK")
# Embedding phase: 16 embed jobs of 20 images each (an upload batch queues one job). Smaller
# jobs than a round's share let the two workers finish together; with 8 jobs of 40, the
# worker on the busier core (beside the client and the services) set the end alone.
USERS, PER_USER = 16, 20
POLL_SECONDS = 0.5  # the end of the window is read from the jobs' own finish times
DATASET_HELP = "CIFAR-10-style folder <label>/<label>_NNN.png (BENCHMARKS.md: 10 x 100 cifar10-dev)"


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(args, check=check, capture_output=True)


# -- the network: one namespace per host on a bridge -------------------------------------------
def net_down() -> None:
    for name in HOSTS:
        sh("ip", "netns", "del", f"vz-{name}", check=False)  # takes its veth pair along
    sh("ip", "link", "del", BRIDGE, check=False)


def net_up() -> None:
    net_down()  # leftovers of an interrupted run
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    for name, (octet, _) in HOSTS.items():
        ns, outside, inside = f"vz-{name}", f"vzv-{name}", f"vzp-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "link", "set", outside, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "addr", "add", f"{NET}.{octet}/24", "dev", inside)
        sh("ip", "-n", ns, "link", "set", inside, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


# -- processes and their CPU -------------------------------------------------------------------
def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )


def on_host(name: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`vize ARGS` in the host's namespace, pinned to its core (ip netns exec and taskset
    exec, so the pid is the Python process's)."""
    core = HOSTS[name][1]
    cmd = [
        "ip",
        "netns",
        "exec",
        f"vz-{name}",
        "taskset",
        "-c",
        str(core),
        sys.executable,
        "-m",
        "vize.cli",
        *args,
    ]
    return start(cmd, log, {**env, "VIZE_DATA_DIR": str(log.parent / name)})


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def rss_mb(pid: int) -> dict[str, float]:
    status = dict(re.findall(r"^(\w+):\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M))
    return {
        "rss_mb": round(int(status["VmRSS"]) / 1024, 1),
        "peak_rss_mb": round(int(status["VmHWM"]) / 1024, 1),
    }


def machine_busy() -> float:
    """CPU seconds all cores spent not idle (from /proc/stat)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(parts) - parts[3] - parts[4]) / CLK


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer: {log.read_text()[-3000:]}")


class Cluster:
    """The shared services, the scratch database and the hosts' processes."""

    def __init__(self, pg: str, tmp: Path, stack: ExitStack, s3rver: str = "") -> None:
        self.tmp, self.stack, self.s3rver = tmp, stack, s3rver
        self.db_name = f"vize_scale_{uuid.uuid4().hex[:8]}"
        self.admin = create_engine(normalize_url(pg), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        stack.callback(self._drop)
        local = make_url(pg).set(database=self.db_name)
        self.db: Engine = create_engine(normalize_url(local.render_as_string(False)))
        pg_port = local.port or 5432
        self.procs: list[subprocess.Popen[bytes]] = []
        stack.callback(self._stop_all)
        pin = ["taskset", "-c", str(SERVICE_CORE)]
        self.socat = self._service(
            [
                *pin,
                "socat",
                f"TCP-LISTEN:5432,bind={NET}.1,fork,reuseaddr",
                f"TCP:{local.host}:{pg_port}",
            ],
            "socat",
        )
        self.redis_proc = self._service(
            [
                *pin,
                "redis-server",
                "--port",
                str(REDIS_PORT),
                "--bind",
                f"{NET}.1",
                "--protected-mode",
                "no",  # bound to the private bridge only
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            "redis",
        )
        # The S3 server: moto's (the default, also what the tests use), or s3rver (npm), which
        # costs about half the CPU per request (1.7 vs ~3.5 ms per GET here) on the core it
        # shares with the second replica / worker. Its process is still called "moto" below.
        s3_cmd = (
            [self.s3rver, "-d", str(tmp / "s3rver"), "-a", f"{NET}.1", "-p", str(S3_PORT)]
            if s3rver
            else [sys.executable, "-m", "moto.server", "-H", f"{NET}.1", "-p", str(S3_PORT)]
        )
        self.moto = self._service([*pin, *s3_cmd], "moto", {"PYTHONWARNINGS": "ignore"})
        self.redis = redis.Redis(host=f"{NET}.1", port=REDIS_PORT)
        ready = "/" if s3rver else "/moto-api/"
        for _ in range(100):
            try:
                self.redis.ping()
                httpx.get(f"http://{NET}.1:{S3_PORT}{ready}", timeout=1)
                break
            except (redis.RedisError, httpx.HTTPError):
                time.sleep(0.2)
        key, secret = ("S3RVER", "S3RVER") if s3rver else ("bench", "bench-secret")
        creds = {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{NET}.1:{S3_PORT}",
        }
        import boto3

        self.s3 = boto3.client(
            "s3",
            endpoint_url=creds["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        self.s3.create_bucket(Bucket="vize-scale")
        self.env = {
            **creds,
            "VIZE_DATABASE_URL": local.set(host=f"{NET}.1", port=5432).render_as_string(False),
            "VIZE_BROKER_URL": f"redis://{NET}.1:{REDIS_PORT}/0",
            "VIZE_STORAGE_URL": "s3://vize-scale/bench",
            "VIZE_ONNX_DIR": str(tmp / "onnx"),  # the software install, not data: converted once
            "VIZE_SECRET_KEY": "bench",
            "VIZE_DEFAULT_USER": "",
            "VIZE_INFERENCE_THREADS": "1",
            "VIZE_TRAIN_THREADS": "1",  # one core each
            "VIZE_ORPHAN_SWEEP": "false",
            "VIZE_MIN_IMAGES_PER_LABEL": "5",
            "VIZE_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "VIZE_METRICS_ALLOW": f'["{NET}.0/24"]',
            "VIZE_WORKER_METRICS_ADDRESS": f"0.0.0.0:{WORKER_METRICS_PORT}",
        }
        root_env = {
            **self.env,
            "VIZE_DATABASE_URL": local.render_as_string(False),
            "AWS_ENDPOINT_URL": creds["AWS_ENDPOINT_URL"],
        }
        self.root_env = {**os.environ, **root_env, "VIZE_DATA_DIR": str(tmp / "admin")}
        subprocess.run(
            [sys.executable, "-m", "vize.cli", "migrate"],
            env=self.root_env,
            check=True,
            capture_output=True,
        )
        from vize.ml.embedder import Embedder

        Embedder(tmp / "onnx").session("efficientnet_lite0")  # convert once, before any host

    def _service(self, cmd: list[str], name: str, env: dict[str, str] | None = None) -> Any:
        proc = start(cmd, self.tmp / f"{name}.log", env)
        self.procs.append(proc)
        return proc

    def _stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    def _drop(self) -> None:
        if hasattr(self, "db"):
            self.db.dispose()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self.admin.dispose()

    def host(self, name: str, args: list[str], extra: dict[str, str] | None = None) -> Any:
        log = self.tmp / f"{name}.log"
        proc = on_host(name, args, {**self.env, **(extra or {})}, log)
        self.procs.append(proc)
        return proc

    def serve(self, name: str, extra: dict[str, str] | None = None) -> tuple[Any, str]:
        proc = self.host(name, ["serve", "--host", "0.0.0.0", "--port", str(API_PORT)], extra)
        url = f"http://{NET}.{HOSTS[name][0]}:{API_PORT}"
        wait_http(url + "/health/ready", proc, self.tmp / f"{name}.log")
        return proc, url

    def user(self, name: str) -> str:
        """As `vize users create NAME` (in this process: 48 CLI starts would cost minutes)."""
        from sqlalchemy.orm import Session

        from vize.services.users import create_user

        with Session(self.db) as db, db.begin():
            user = create_user(
                db, name, email=f"{name}@example.com", password=None, email_verified=True
            )
            return str(user.api_token)

    # -- what the shared services did ----------------------------------------------------------
    def counters(self) -> dict[str, float]:
        """A snapshot of every count the capacity model uses (deltas are taken later)."""
        time.sleep(1.5)  # PostgreSQL 15 flushes a backend's statistics at most once a second
        out: dict[str, float] = {}
        with self.db.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = conn.execute(
                text(
                    "SELECT xact_commit + xact_rollback, tup_returned, tup_fetched,"
                    " tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
                    " WHERE datname = current_database()"
                )
            ).one()
            scans = conn.execute(
                text(
                    "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0)"
                    " FROM pg_stat_user_tables"
                )
            ).one()
        names = (
            "pg_transactions",
            "pg_rows_returned",
            "pg_rows_fetched",
            "pg_rows_inserted",
            "pg_rows_updated",
            "pg_rows_deleted",
        )
        out.update(zip(names, (float(x) for x in row), strict=True))
        out["pg_seq_scans"], out["pg_index_scans"] = float(scans[0]), float(scans[1])
        stats = self.redis.info("commandstats")
        out["redis_commands"] = float(sum(v["calls"] for v in stats.values()))
        for key, v in stats.items():
            out[f"redis_{key.removeprefix('cmdstat_')}"] = float(v["calls"])
        if self.s3rver:  # s3rver logs no requests: the counts come from moto runs only
            return out
        moto_log = (self.tmp / "moto.log").read_text(errors="replace")
        for method, n in Counter(re.findall(r'"(GET|PUT|HEAD|POST|DELETE) /', moto_log)).items():
            out[f"s3_{method}"] = float(n)
        out["s3_requests"] = sum(v for k, v in out.items() if k.startswith("s3_"))
        return out

    def pg_backends(self) -> list[int]:
        with self.db.connect() as conn:
            return [
                int(p)
                for (p,) in conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    )
                )
            ]

    def service_cpu(self) -> dict[str, float]:
        socat = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(self.socat.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        cpu = self.redis.info("cpu")
        return {
            "postgres": sum(cpu_seconds(p) for p in self.pg_backends()),
            "redis": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            "moto": cpu_seconds(self.moto.pid),
            "socat": sum(cpu_seconds(p) for p in [self.socat.pid, *socat]),
        }


def delta(after: dict[str, float], before: dict[str, float], per: float) -> dict[str, float]:
    return {
        k: round((v - before.get(k, 0.0)) / per, 2)
        for k, v in after.items()
        if v - before.get(k, 0.0) > 0
    }


class Window:
    """CPU of the given processes, of this script (the client) and of the shared services,
    and the whole machine's busy time, between start and stop."""

    def __init__(self, cluster: Cluster, procs: dict[str, Any]) -> None:
        self.cluster, self.procs = cluster, procs

    def __enter__(self) -> Window:
        self.cpu0 = {k: cpu_seconds(p.pid) for k, p in self.procs.items()}
        self.services0 = self.cluster.service_cpu()
        self.client0, self.busy0, self.t0 = time.process_time(), machine_busy(), time.time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.time() - self.t0
        self.client = time.process_time() - self.client0
        self.busy = machine_busy() - self.busy0
        self.cpu = {k: cpu_seconds(p.pid) - self.cpu0[k] for k, p in self.procs.items()}
        end = self.cluster.service_cpu()
        self.services = {k: max(0.0, end[k] - self.services0.get(k, 0.0)) for k in end}

    def report(self, work: float) -> dict[str, Any]:
        """CPU as cores busy during the window, and as milliseconds per unit of work."""
        pinned = sum(self.cpu.values())
        other = self.busy - pinned - self.client - sum(self.services.values())
        return {
            "wall_s": round(self.wall, 2),
            "cores_pinned": {k: round(v / self.wall, 2) for k, v in self.cpu.items()},
            "ms_per_unit": {
                "pinned": round(1000 * pinned / work, 2),
                "client": round(1000 * self.client / work, 2),
                **{k: round(1000 * v / work, 2) for k, v in self.services.items()},
                "rest_of_machine": round(1000 * other / work, 2),
            },
            "per_pinned_core_s": round(work / pinned, 1) if pinned else None,
        }


# -- classification ----------------------------------------------------------------------------
def classify_body(dataset: Path, task_id: str) -> bytes:
    img = Image.open(dataset / "ship" / "ship_099.png").convert("RGB").resize((512, 512))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    b64 = base64.b64encode(buf.getvalue()).decode()
    return json.dumps({"task_id": task_id, "records": [{"_base64": b64}] * 10}).encode()


def hammer(urls: list[str], token: str, body: bytes, seconds: float, per_replica: int = 3) -> int:
    """Requests answered 200 within ``seconds``, from ``per_replica`` keep-alive clients each
    (plain http.client and a prepared body: the lightest client Python offers)."""
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    done: list[int] = []

    def run(url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        conn, n = http.client.HTTPConnection(host, int(port), timeout=120), 0
        while True:
            conn.request("POST", "/v2/classify", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"classify answered {resp.status}")
            n += 1
            if time.monotonic() > deadline:
                break
        conn.close()
        done.append(n)

    threads = [threading.Thread(target=run, args=(u,)) for u in urls for _ in range(per_replica)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done)


def classify_phase(
    cluster: Cluster, replicas: dict[str, Any], token: str, body: bytes, seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (1, 2):
        names = list(replicas)[:n]
        urls = [replicas[k][1] for k in names]
        hammer(urls, token, body, 2)  # warm: the head loaded, connections open
        before = cluster.counters()
        with Window(cluster, {k: replicas[k][0] for k in names}) as w:
            requests = hammer(urls, token, body, seconds)
        after = cluster.counters()
        images = requests * 10
        out[f"{n}_replica"] = {
            "images_per_s": round(images / w.wall, 1),
            **w.report(images),
            "per_request": delta(after, before, requests),
        }
    return out


# -- uploads, then embedding by 1 or 2 workers -------------------------------------------------
def upload_all(url: str, tokens: list[str], dataset: Path, offset: int) -> tuple[int, list[str]]:
    labels = sorted(p.name for p in dataset.iterdir() if p.is_dir())
    files = [f for name in labels for f in sorted((dataset / name).glob("*.png"))]

    def one_user(i: int, token: str) -> str:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120
        ) as c:
            task = c.post("/v2/task/", json={"name": "scale"}).json()["id"]
            label = c.post("/v2/label/", json={"name": "x", "task": task}).json()["id"]
            start = (offset + i * PER_USER) % (len(files) - PER_USER)
            for f in files[start : start + PER_USER]:
                r = c.post(
                    "/v2/training-image/",
                    data={"labels": label},
                    files={"img_path": (f.name, f.read_bytes(), "image/png")},
                )
                r.raise_for_status()
            return str(task)

    with ThreadPoolExecutor(4) as pool:
        tasks = list(pool.map(one_user, range(len(tokens)), tokens))
    return len(tokens) * PER_USER, tasks


def park(r: redis.Redis) -> list[bytes]:
    """Move the queued job messages aside, so that the workers start on an empty queue."""
    keys = [k for k in r.keys("celery*") if r.type(k) == b"list"]
    for k in keys:
        r.rename(k, b"parked:" + k)
    return keys


def release(r: redis.Redis, keys: list[bytes]) -> None:
    for k in keys:
        while r.lmove(b"parked:" + k, k, "RIGHT", "LEFT") is not None:
            pass


def jobs_run(scraper: httpx.Client, workers: list[str]) -> float:
    """Embed jobs the workers' own /metrics count. One kept-alive client: ``httpx.get``
    builds a TLS context per call (~40 ms of CPU), which showed as the load generator's cost
    on the core the second worker shares."""
    total = 0.0
    for name in workers:
        url = f"http://{NET}.{HOSTS[name][0]}:{WORKER_METRICS_PORT}/metrics"
        for line in scraper.get(url, timeout=10).text.splitlines():
            if line.startswith('vize_worker_jobs_total{kind="embed"'):
                total += float(line.rsplit(" ", 1)[1])
    return total


def last_finished(cluster: Cluster, owners: list[str]) -> float:
    """When the last embed job of these users finished (epoch seconds, the workers' clock,
    which is this machine's): the window ends there, not at the next poll."""
    with cluster.db.connect() as conn:
        last = conn.execute(
            text(
                "SELECT max(j.finished) FROM jobs j JOIN users u ON u.id = j.owner_id"
                " WHERE j.kind = 'embed' AND u.username = ANY(:names)"
            ),
            {"names": owners},
        ).scalar_one()
    return float(last.replace(tzinfo=last.tzinfo or UTC).timestamp())


def embedded_count(cluster: Cluster, owners: list[str]) -> tuple[int, int]:
    with cluster.db.connect() as conn:
        open_jobs = conn.execute(
            text(
                "SELECT count(*) FROM jobs WHERE kind = 'embed' AND state IN ('queued', 'running')"
            )
        ).scalar_one()
        done = conn.execute(
            text(
                "SELECT count(DISTINCT e.image_id) FROM embeddings e JOIN images i"
                " ON i.id = e.image_id JOIN users u ON u.id = i.owner_id"
                " WHERE u.username = ANY(:names)"
            ),
            {"names": owners},
        ).scalar_one()
    return int(done), int(open_jobs)


def embed_phase(
    cluster: Cluster, up_url: str, up_proc: Any, dataset: Path, workers: int, tag: str
) -> dict[str, Any]:
    names = [f"{tag}-u{i}" for i in range(USERS)]
    tokens = [cluster.user(n) for n in names]
    before = cluster.counters()
    with Window(cluster, {"up": up_proc}) as w:
        images, _ = upload_all(up_url, tokens, dataset, offset=37 * len(tag) * sum(map(ord, tag)))
    mid = cluster.counters()
    upload = {
        "images_per_s": round(images / w.wall, 1),
        **w.report(images),
        "per_upload": delta(mid, before, images),
    }
    keys = park(cluster.redis)
    procs = {f"w{i + 1}": cluster.host(f"w{i + 1}", ["worker"]) for i in range(workers)}
    try:
        for name, proc in procs.items():  # ready: backbones loaded, consuming
            log = cluster.tmp / f"{name}.log"
            url = f"http://{NET}.{HOSTS[name][0]}:{WORKER_METRICS_PORT}/metrics"
            wait_http(url, proc, log)
            deadline = time.monotonic() + 60
            while b" ready." not in log.read_bytes()[-20000:] and time.monotonic() < deadline:
                time.sleep(0.1)
        before = cluster.counters()
        with httpx.Client() as scraper, Window(cluster, procs) as w:
            release(cluster.redis, keys)
            # Done when the workers' own /metrics count every job: polling the database
            # would add its queries to the per-image counts. Polled slowly (each scrape costs
            # the workers and this client CPU). The throughput's wall time comes from the
            # jobs' rows; the CPU shares use the window as measured (up to one poll longer).
            while jobs_run(scraper, list(procs)) < USERS:
                time.sleep(POLL_SECONDS)
        jobs_wall = last_finished(cluster, names) - w.t0
        done, open_jobs = embedded_count(cluster, names)
        if done != images or open_jobs:
            raise RuntimeError(f"{done} of {images} embedded, {open_jobs} jobs open")
        after = cluster.counters()
        rss = {k: rss_mb(p.pid) for k, p in procs.items()}
    finally:
        for proc in procs.values():
            stop(proc)
    return {
        "upload": upload,
        "embed": {
            "images": done,
            "images_per_s": round(done / jobs_wall, 1),
            "jobs_wall_s": round(jobs_wall, 2),
            **w.report(done),
            "per_image": delta(after, before, done),
            "rss": rss,
        },
    }


# -- the run -----------------------------------------------------------------------------------
def train_classifier(cluster: Cluster, url: str, token: str, dataset: Path) -> str:
    worker = cluster.host("w1", ["worker"])
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120
        ) as c:
            task = c.post("/v2/task/", json={"name": "classify"}).json()["id"]
            for name in ("ship", "horse"):
                label = c.post("/v2/label/", json={"name": name, "task": task}).json()["id"]
                for f in sorted((dataset / name).glob("*.png"))[:30]:
                    c.post(
                        "/v2/training-image/",
                        data={"labels": label},
                        files={"img_path": (f.name, f.read_bytes(), "image/png")},
                    ).raise_for_status()
            c.post(f"/v2/task/{task}/train/").raise_for_status()
            deadline = time.monotonic() + 300
            while c.get(f"/v2/task/{task}/training/").json()["state"] != "succeeded":
                if time.monotonic() > deadline:
                    raise RuntimeError("training did not finish")
                time.sleep(0.2)
        return str(task)
    finally:
        stop(worker)


def storage_footprint(cluster: Cluster) -> dict[str, Any]:
    with cluster.db.connect() as conn:
        images = conn.execute(text("SELECT count(*) FROM images")).scalar_one()
        tables = dict(
            conn.execute(
                text("SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables")
            ).all()
        )
    objects: int | None = 0
    size = 0
    try:
        for page in cluster.s3.get_paginator("list_objects_v2").paginate(Bucket="vize-scale"):
            for obj in page.get("Contents", []):
                objects, size = (objects or 0) + 1, size + obj["Size"]
    except ClientError as exc:  # s3rver 3 answered InternalError to this listing
        print(f"bucket listing failed, no S3 footprint: {exc}", file=sys.stderr)
        objects = None
    return {
        "images": images,
        "db_bytes_per_image": {
            k: round(v / images)
            for k, v in tables.items()
            if k in ("images", "embeddings", "image_labels")
        },
        "db_bytes_total_per_image": round(sum(tables.values()) / images),
        "s3_objects_per_image": None if objects is None else round(objects / images, 2),
        "s3_bytes_per_image": None if objects is None else round(size / images),
    }


# -- the machine's own ceiling ------------------------------------------------------------------
CEILING_CODE = """
import sys, time
import numpy as np
from pathlib import Path
from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess
jpeg, seconds = Path(sys.argv[1]).read_bytes(), float(sys.argv[3])
emb = Embedder(Path(sys.argv[2]), intra_op_threads=1)
cfg = get_backbone_config("efficientnet_lite0")
def batch():
    emb.embed("efficientnet_lite0", np.stack([preprocess(jpeg, cfg) for _ in range(10)]))
for _ in range(3):
    batch()
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    batch(); n += 10
print(n / (time.perf_counter() - t0))
"""


def forward_ceiling(cluster: Cluster, jpeg: Path, seconds: float) -> dict[str, float]:
    """The same work as a classified image (decode + preprocess + Lite0 forward, batches of
    10, one thread) in a bare process pinned to each core: alone on core 1, then one per core
    at once. Their ratio is what this machine's two cores give for this work, the reference
    of the replicas' ratio (two busy cores share caches and memory bandwidth)."""

    def run(cores: list[int]) -> list[float]:
        procs = [
            subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    str(c),
                    sys.executable,
                    "-c",
                    CEILING_CODE,
                    str(jpeg),
                    str(cluster.tmp / "onnx"),
                    str(seconds),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for c in cores
        ]
        try:
            for proc in procs:  # all loaded and warm, then started together
                if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("a ceiling process did not start")
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
            return [float(proc.communicate()[0].strip()) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    alone = run([1])[0]
    both = run([0, 1])
    return {
        "one_core_images_per_s": round(alone, 1),
        "two_cores_images_per_s": round(sum(both), 1),
        "ratio": round(sum(both) / alone, 3),
    }


def median_of(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in rounds:
        v: Any = r
        for p in path:
            v = v[p]
        values.append(v)
    return round(statistics.median(values), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help=DATASET_HELP)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20, help="each classify measurement")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument(
        "--s3rver",
        default="",
        help="path of an s3rver executable (npm install s3rver) to use instead of moto",
    )
    args = p.parse_args()
    if os.geteuid() != 0 or not shutil.which("socat") or os.cpu_count() != 2:
        sys.exit("needs root, socat, and is laid out for 2 cores (see the docstring)")
    faulthandler.register(signal.SIGUSR1)  # where is it? kill -USR1 <pid>

    def interrupted(*_: object) -> None:
        raise SystemExit("terminated")  # so that the clean-up below runs

    signal.signal(signal.SIGTERM, interrupted)
    os.sched_setaffinity(0, {SERVICE_CORE})  # the load generator, and every thread it starts
    results: dict[str, Any] = {"uptime": [], "rounds": []}
    with tempfile.TemporaryDirectory() as tmp_s, ExitStack() as stack:
        net_up()
        stack.callback(net_down)
        cluster = Cluster(args.pg, Path(tmp_s), stack, args.s3rver)
        replicas = {"r1": cluster.serve("r1"), "r2": cluster.serve("r2")}
        up = cluster.serve("up")
        token = cluster.user("classifier")
        task = train_classifier(cluster, replicas["r1"][1], token, args.dataset)
        body = classify_body(args.dataset, task)
        for r in range(args.rounds):
            results["uptime"].append(
                subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            )
            one_round: dict[str, Any] = {
                "classify": classify_phase(cluster, replicas, token, body, args.seconds)
            }
            jpeg = cluster.tmp / "classify.jpg"
            jpeg.write_bytes(base64.b64decode(json.loads(body)["records"][0]["_base64"]))
            one_round["ceiling"] = forward_ceiling(cluster, jpeg, args.seconds / 2)
            for n in (1, 2):
                one_round[f"embed_{n}_worker"] = embed_phase(
                    cluster, up[1], up[0], args.dataset, n, f"r{r}n{n}"
                )
            one_round["rss"] = {k: rss_mb(v[0].pid) for k, v in {**replicas, "up": up}.items()}
            results["rounds"].append(one_round)
            print(json.dumps(one_round, indent=1), file=sys.stderr)
        results["storage"] = storage_footprint(cluster)
        with cluster.db.connect() as conn:
            results["pg_connections_with_3_servers_idle"] = (
                conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                ).scalar_one()
                - 1
            )
    rounds = results["rounds"]
    results["medians"] = {
        "classify_1": median_of(rounds, "classify", "1_replica", "images_per_s"),
        "classify_2": median_of(rounds, "classify", "2_replica", "images_per_s"),
        "classify_per_core_1": median_of(rounds, "classify", "1_replica", "per_pinned_core_s"),
        "classify_per_core_2": median_of(rounds, "classify", "2_replica", "per_pinned_core_s"),
        "embed_1": median_of(rounds, "embed_1_worker", "embed", "images_per_s"),
        "embed_2": median_of(rounds, "embed_2_worker", "embed", "images_per_s"),
        "embed_per_core_1": median_of(rounds, "embed_1_worker", "embed", "per_pinned_core_s"),
        "embed_per_core_2": median_of(rounds, "embed_2_worker", "embed", "per_pinned_core_s"),
        "upload_per_core": median_of(rounds, "embed_1_worker", "upload", "per_pinned_core_s"),
        "ceiling_ratio": median_of(rounds, "ceiling", "ratio"),
    }
    text_out = json.dumps(results, indent=1)
    if args.out:
        args.out.write_text(text_out)
    print(text_out)


if __name__ == "__main__":
    main()
