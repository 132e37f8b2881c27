"""Bounds for free-form JSON a client stores or has echoed back (image ``meta_data``, the
extra fields of classify records).

Checked before anything is stored or billed: a value nested a few hundred levels deep parses,
and may even be stored, but then fails when a response is encoded (recursion), a 500 on
every later list that includes it."""

from __future__ import annotations

import json
from typing import Any

from vize.errors import InvalidInput

MAX_DEPTH = 32
MAX_CHARS = 64 * 1024


def depth(value: Any) -> int:
    """Nesting depth of lists and objects (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:  # no need to walk the rest
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_json(
    value: Any, what: str, *, max_chars: int = MAX_CHARS, code: str = "invalid_meta_data"
) -> Any:
    """``value`` if it is at most MAX_DEPTH deep and ``max_chars`` long as JSON, else 400.
    Serialised here, the way it will be stored, so that what can fail fails now."""
    if depth(value) > MAX_DEPTH:
        raise InvalidInput(f"{what} is nested deeper than {MAX_DEPTH} levels.", code=code)
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not storable JSON ({exc}).", code=code) from None
    if size > max_chars:
        raise InvalidInput(f"{what} is larger than {max_chars // 1024} KB.", code=code)
    return value


def echoable(echo: dict[str, Any]) -> tuple[dict[str, Any], InvalidInput | None]:
    """(the fields of a record to echo, why not): a record too deep or too large to be
    encoded is answered without its fields, and with its error."""
    try:
        check_json(echo, "A record's fields", max_chars=4 * MAX_CHARS)
    except InvalidInput as exc:
        return {}, exc
    return echo, None


def check_echoed_records(records: list[Any]) -> None:
    """The fields of classify records that the response echoes (all but the image itself)."""
    for record in records:
        if isinstance(record, dict):
            echo = {k: v for k, v in record.items() if k not in ("_base64", "_raw", "_url")}
            check_json(echo, "A record's extra fields")
