"""Logging set-up: ``VIZE_LOG_FORMAT=text`` (readable) or ``json`` (one object per line, for a
log collector). Request and job events carry their fields (request id, user id, route,
status, duration) as attributes of the record; both formats show them.

What never goes into a line: request bodies (image bytes), headers (tokens, cookies) and
query strings (a signed or token-bearing URL). Only the route *template* is logged
(``/v2/training-image/{image_id}/``), so not even ids typed into a path reach the logs."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

# Fields a request or job line may carry; anything else passed in ``extra`` is dropped.
EVENT_FIELDS = (
    "event", "request_id", "user_id", "method", "route", "status", "duration_ms",
    "job_id", "job_kind", "job_state", "worker", "attempt",
)  # fmt: skip
HANDLER_MARK = "_vize_handler"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{n}={getattr(record, n)}" for n in EVENT_FIELDS[1:] if hasattr(record, n)]
        return f"{line} {' '.join(fields)}" if fields else line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the line (not at set-up): the
    handler outlives an app in a test process whose stderr is swapped per test."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """One handler on the root logger, replaced (not added to) on every call. Called by the
    process entry points (``vize serve``, ``vize worker``), never by ``create_app``: an app
    embedded in another process (tests, the client CLI's in-process runs) leaves that
    process's logging alone. Uvicorn's own access log repeats our request line
    without its fields, so it is turned down to warnings; so is httpx's (URLs)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, HANDLER_MARK, False)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    setattr(handler, HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every URL it fetches at INFO: an ``_url`` image's URL may carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if log_format == "json":  # uvicorn's error/startup lines through our formatter too
        for name in ("uvicorn", "uvicorn.error"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True


def unconfigure_logging() -> None:
    """Remove what ``configure_logging`` installed (tests)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, HANDLER_MARK, False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


request_log = logging.getLogger("vize.request")
job_log = logging.getLogger("vize.job")


def log_request(fields: dict[str, Any]) -> None:
    level = logging.ERROR if fields["status"] >= 500 else logging.INFO
    request_log.log(
        level,
        "%s %s %s %.1f ms",
        fields["method"],
        fields["route"],
        fields["status"],
        fields["duration_ms"],
        extra={"event": "request", **fields},
    )


def log_job_event(job: Any, state: str, worker: str, started: float | None = None) -> None:
    """One line per job event (started, succeeded, failed, lost). ``job`` is the Job row."""
    extra: dict[str, Any] = {
        "event": "job",
        "job_id": job.id,
        "job_kind": job.kind,
        "job_state": state,
        "user_id": job.owner_id,
        "worker": worker,
        "attempt": job.attempts,
    }
    if started is not None:
        extra["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    job_log.log(
        logging.WARNING if state == "failed" else logging.INFO,
        "job %s %s %s",
        job.kind,
        job.id,
        state,
        extra=extra,
    )


def use_our_logging_in_celery(log_format: str, level: str) -> None:
    """``vize worker``: Celery leaves the logging set-up to whoever answers its
    ``setup_logging`` signal, so job events come out in ``VIZE_LOG_FORMAT`` there too."""
    from celery.signals import setup_logging

    def setup(**_: Any) -> None:
        configure_logging(log_format, level)

    setup_logging.connect(setup, weak=False)
