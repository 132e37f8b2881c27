"""The batch envelope shared by image uploads and classification: a list of records in, each
answered in place with its own ``_status``, and one ``status`` for the whole request."""

from __future__ import annotations

from typing import Any

from vize.errors import InvalidInput, VizeError

# Never echoed back: the image itself (large, and the client has it).
IMAGE_KEYS = ("_base64", "_raw")


def check_records(records: Any, max_records: int) -> list[Any]:
    """The request's ``records``: a non-empty list of at most ``max_records``."""
    if not isinstance(records, list) or not records:
        raise InvalidInput("'records' must be a non-empty list.", code="invalid_records")
    if len(records) > max_records:
        raise InvalidInput(f"At most {max_records} records per request.", code="too_many_records")
    return records


def check_record(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise InvalidInput("Each record must be a JSON object.", code="invalid_record")
    return record


def echo(record: Any) -> dict[str, Any]:
    """What of a record goes back in its answer: everything but the image."""
    if not isinstance(record, dict):
        return {}
    return {k: v for k, v in record.items() if k not in IMAGE_KEYS}


def ok_status(text: str = "OK", code: int = 200) -> dict[str, Any]:
    return {"code": code, "text": text}


def error_status(exc: VizeError) -> dict[str, Any]:
    """A failed record's ``_status``: the error's HTTP status, message and machine code."""
    return {"code": exc.status, "text": exc.detail, "error": exc.code}


def envelope(results: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The response: ``fields``, the records, and a ``status`` counting the failed ones."""
    failed = sum(1 for r in results if r["_status"]["code"] >= 400)
    text = "OK" if not failed else f"{failed} record(s) failed"
    return {**fields, "status": {"code": 200, "text": text}, "records": results}
