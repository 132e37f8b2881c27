"""Helpers shared by the domain services."""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vize.db.engine import savepoint
from vize.db.tables import Base
from vize.errors import InvalidInput, NotFound

T = TypeVar("T")
B = TypeVar("B", bound=Base)

# Text columns without a declared length still get a cap: a request must not store megabytes.
LONG_TEXT = 10_000
# The range of the Integer columns on PostgreSQL (int4); SQLite would overflow at 2^63. A
# value outside it would fail in the driver (a 500), so it is refused before, as a 400.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


@dataclass
class Page(Generic[T]):
    count: int
    items: list[T]


def paginate(db: Session, stmt: Select[Any], offset: int, limit: int) -> Page[Any]:
    count = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(db.scalars(stmt.offset(offset).limit(limit)).unique())
    return Page(count, items)


def parse_uuid(value: object, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise InvalidInput(f"{what} must be a UUID, got {value!r}.", code="invalid_id") from exc


def id_or_404(value: object, what: str) -> str:
    """The id in canonical form; one that is no UUID names no object: 404, like a missing one."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound(f"{what} not found.") from None


def get_owned(db: Session, table: type[B], obj_id: object, workspace_id: str, what: str) -> B:
    """Fetch by id within the caller's workspace (``caller.workspace_id``), answering 404 alike
    for a missing row and a row of another workspace. ``table`` needs a ``workspace_id``."""
    obj = db.get(table, id_or_404(obj_id, what))
    if obj is None or getattr(obj, "workspace_id", None) != workspace_id:
        raise NotFound(f"{what} not found.")
    return obj


def in_workspace(table: Any, workspace_id: str) -> ColumnElement[bool]:
    """The WHERE clause that scopes a query of ``table`` to one workspace: every list of a
    workspace's objects goes through it,
    ``select(T).where(in_workspace(T, caller.workspace_id))``."""
    clause: ColumnElement[bool] = table.workspace_id == workspace_id
    return clause


def text_field(value: object, field: str, max_len: int, *, strip: bool = False) -> str:
    """A client-sent text value checked the same on every database.

    SQLite stores any length, any type and NUL characters; PostgreSQL refuses all three with
    an error the client would see as a 500. So they are refused here, alike, as a 400."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"Field '{field}' must be a string.", code="invalid_field")
    text = str(value).strip() if strip else str(value)
    if "\x00" in text:
        raise InvalidInput(
            f"Field '{field}' must not contain NUL characters.", code="invalid_field"
        )
    if len(text) > max_len:
        raise InvalidInput(
            f"Field '{field}' is longer than {max_len} characters.", code="invalid_field"
        )
    return text


def name_field(value: object, field: str, max_len: int = 255) -> str:
    """A name: one line of text. A CR/LF would end a mail header early (the name is in the
    subject of notifications) or break a webhook; other control characters hide in pages."""
    text = text_field(value, field, max_len, strip=True)
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text):
        raise InvalidInput(
            f"Field '{field}' must be a single line without control characters.",
            code="invalid_name",
        )
    return text


def int_field(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"Field '{field}' must be an integer.", code="invalid_field")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidInput(f"Field '{field}' must be an integer.", code="invalid_field") from None
    return int_in_range(number, field)


def int_in_range(number: int, field: str) -> int:
    """``number`` if a database column can hold it, else 400 ``invalid_value``."""
    if not INT_MIN <= number <= INT_MAX:
        raise InvalidInput(
            f"Field '{field}' is out of range ({INT_MIN} to {INT_MAX}).", code="invalid_value"
        )
    return number


def like_pattern(search: str) -> str:
    """``%search%`` for ILIKE with the wildcards of the search text taken literally (escape
    ``\\``); NULs are dropped because PostgreSQL cannot even receive them."""
    text = search.replace("\x00", "")
    for ch in ("\\", "%", "_"):
        text = text.replace(ch, "\\" + ch)
    return f"%{text}%"


def append_link(db: Session, owner: Base, collection: str, item: Base) -> None:
    """Add ``item`` to a many-to-many collection of ``owner``, idempotently, also when a
    parallel request adds the same link first (its primary key then refuses our row)."""
    items = getattr(owner, collection)
    if item in items:
        return
    try:
        with savepoint(db):
            items.append(item)
            db.flush()
    except IntegrityError:
        pass  # the other request's link is there: the outcome asked for
    db.expire(owner, [collection])  # reloaded from the database, in the relationship's order
