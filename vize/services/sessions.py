"""Browser sessions as rows: the signed cookie names one, and only a row makes it valid, so
logging out, "log out everywhere" and a new API token end sessions on the server."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from vize.db.tables import User, WebSession, utcnow

MAX_AGE = 14 * 24 * 3600  # the cookie's lifetime; older rows are of no use


def start(db: Session, user: User) -> str:
    """A new session of ``user``; its id goes into the signed cookie."""
    # Expired rows of this user go now: a table that only grows would hold every login.
    old = utcnow() - timedelta(seconds=MAX_AGE)
    db.execute(delete(WebSession).where(WebSession.user_id == user.id, WebSession.created < old))
    sid = secrets.token_hex(32)
    db.add(WebSession(id=sid, user_id=user.id))
    db.flush()
    return sid


def user_for(db: Session, uid: str, sid: str) -> User | None:
    """The user of a live session, else None (logged out, ended everywhere, expired)."""
    row = db.get(WebSession, sid) if sid else None
    if row is None or row.user_id != uid:
        return None
    if row.created < utcnow() - timedelta(seconds=MAX_AGE):
        return None
    return db.get(User, uid)


def end(db: Session, sid: str) -> None:
    db.execute(delete(WebSession).where(WebSession.id == sid))


def end_all(db: Session, user_id: str, keep: str | None = None) -> None:
    """End every session of the user (but ``keep``, the one asking, if given)."""
    stmt = delete(WebSession).where(WebSession.user_id == user_id)
    if keep:
        stmt = stmt.where(WebSession.id != keep)
    db.execute(stmt)
