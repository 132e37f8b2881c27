"""Service tests talk to the database directly: a migrated engine on the test database (SQLite
in tmp, or the scratch PostgreSQL database), a session factory and a blob store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.db.migrate import upgrade
from vize.db.states import Role
from vize.db.tables import User
from vize.services import users as users_service
from vize.services.workspaces import Caller, default_workspace
from vize.storage import LocalBlobStore


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session
        session.rollback()


@pytest.fixture
def blobs(settings: Settings) -> LocalBlobStore:
    return LocalBlobStore(settings.blob_dir)


def new_user(sessions: sessionmaker[Session], name: str) -> User:
    with sessions.begin() as db:
        user = users_service.create_user(db, name, email=f"{name}@example.com")
    return user


@pytest.fixture
def carol(sessions: sessionmaker[Session]) -> User:
    return new_user(sessions, "carol")


@pytest.fixture
def dave(sessions: sessionmaker[Session]) -> User:
    return new_user(sessions, "dave")


def me(user: User) -> Caller:
    """The user acting in their default workspace, as the API resolves a request that names
    no workspace (``create_user`` made it)."""
    return Caller(default_workspace(user.id), Role.OWNER, user.id, user=user)
