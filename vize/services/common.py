"""Helpers shared by the domain services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from vize.db.tables import Base
from vize.errors import InvalidInput, NotFound

T = TypeVar("T")
B = TypeVar("B", bound=Base)


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


def get_owned(db: Session, table: type[B], obj_id: object, owner_id: str, what: str) -> B:
    """Fetch by id, answering 404 alike for a missing row and another user's row."""
    try:
        key = str(uuid.UUID(str(obj_id)))
    except ValueError:
        raise NotFound(f"{what} not found.") from None
    obj = db.get(table, key)
    if obj is None or getattr(obj, "owner_id", None) != owner_id:
        raise NotFound(f"{what} not found.")
    return obj
