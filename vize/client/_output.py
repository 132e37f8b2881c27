"""Plain-text output of the CLI: aligned tables, JSON, messages on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from vize.client.errors import (
    AuthError,
    NotEnoughData,
    VizeAPIError,
    VizeConnectionError,
    VizeError,
)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    for row in [list(headers), *cells]:
        padded = [v.ljust(widths[i]) for i, v in enumerate(row[:-1])] + [row[-1]]
        print("  ".join(padded).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def dump_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def note(message: str) -> None:
    print(message, file=sys.stderr)


def error_message(exc: VizeError) -> str:
    """One clear sentence (or a few lines) for a failure, with a hint where one helps."""
    if isinstance(exc, VizeConnectionError):
        return f"{exc.detail}\nIs the server running? Check --url / VIZE_URL."
    if isinstance(exc, AuthError) and exc.status == 401:
        return f"{exc.detail} Run `vize login` or check VIZE_TOKEN."
    if isinstance(exc, NotEnoughData) and exc.labels:
        lines = [exc.detail] + [
            f"  {lbl.get('name')}: {lbl.get('images_count')} of {lbl.get('required')} images"
            for lbl in exc.labels
        ]
        return "\n".join(lines)
    if isinstance(exc, VizeAPIError):
        fields = exc.body.get("errors") or []
        extra = "".join(f"\n  {e.get('field') or 'body'}: {e.get('message')}" for e in fields)
        return f"{exc.detail} ({exc.code}){extra}"
    return str(exc)
