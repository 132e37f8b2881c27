"""Usage: every classified image counts once, batch or not, for the user who asked (a service
token's maker) and for the workspace whose model answered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vize.db.engine import savepoint
from vize.db.tables import Usage, WorkspaceUsage
from vize.services.workspaces import Caller


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def record_classifications(db: Session, caller: Caller, n: int) -> None:
    if n <= 0:
        return
    day = today()
    _count(db, Usage, Usage.user_id, caller.user_id, day, n)
    _count(db, WorkspaceUsage, WorkspaceUsage.workspace_id, caller.workspace_id, day, n)


def _count(db: Session, table: Any, key: Any, value: str, day: str, n: int) -> None:
    # An atomic increment: concurrent requests must not lose counts.
    increment = (
        update(table)
        .where(key == value, table.day == day)
        .values(classifications=table.classifications + n)
    )
    if db.execute(increment).rowcount:  # type: ignore[attr-defined]
        return
    try:
        with savepoint(db):
            db.add(table(**{key.key: value, "day": day, "classifications": n}))
    except IntegrityError:  # another request created today's row first
        db.execute(increment)


def month_total(db: Session, table: Any, key: Any, value: str, month: str) -> int:
    """Images classified in ``month`` (YYYY-MM) by a user (``Usage.user_id``) or in a
    workspace (``WorkspaceUsage.workspace_id``)."""
    stmt = select(func.coalesce(func.sum(table.classifications), 0)).where(
        key == value, table.day.like(f"{month}-%")
    )
    return int(db.scalar(stmt) or 0)


def summary(db: Session, user_id: str) -> dict[str, object]:
    return _summary(db, Usage, Usage.user_id, user_id)


def workspace_summary(db: Session, workspace_id: str) -> dict[str, object]:
    return _summary(db, WorkspaceUsage, WorkspaceUsage.workspace_id, workspace_id)


def _summary(db: Session, table: Any, key: Any, value: str) -> dict[str, object]:
    rows = db.execute(
        select(table.day, table.classifications)
        .where(key == value)
        .order_by(table.day.desc())
        .limit(62)
    ).all()
    month = today()[:7]
    total = db.scalar(select(func.coalesce(func.sum(table.classifications), 0)).where(key == value))
    return {
        "today": next((c for d, c in rows if d == today()), 0),
        "this_month": sum(c for d, c in rows if d.startswith(month)),
        "total": int(total or 0),
        "daily": [{"day": d, "classifications": c} for d, c in rows],
    }
