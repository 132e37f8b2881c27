"""Per-user usage: every classified image counts once, batch or not."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vize.db.engine import savepoint
from vize.db.tables import Usage


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def record_classifications(db: Session, user_id: str, n: int) -> None:
    if n <= 0:
        return
    day = today()
    # An atomic increment: concurrent requests must not lose counts.
    increment = (
        update(Usage)
        .where(Usage.user_id == user_id, Usage.day == day)
        .values(classifications=Usage.classifications + n)
    )
    if db.execute(increment).rowcount:  # type: ignore[attr-defined]
        return
    try:
        with savepoint(db):
            db.add(Usage(user_id=user_id, day=day, classifications=n))
    except IntegrityError:  # another request created today's row first
        db.execute(increment)


def summary(db: Session, user_id: str) -> dict[str, object]:
    rows = db.execute(
        select(Usage.day, Usage.classifications)
        .where(Usage.user_id == user_id)
        .order_by(Usage.day.desc())
        .limit(62)
    ).all()
    month = today()[:7]
    total = db.scalar(
        select(func.coalesce(func.sum(Usage.classifications), 0)).where(Usage.user_id == user_id)
    )
    return {
        "today": next((c for d, c in rows if d == today()), 0),
        "this_month": sum(c for d, c in rows if d.startswith(month)),
        "total": int(total or 0),
        "daily": [{"day": d, "classifications": c} for d, c in rows],
    }
