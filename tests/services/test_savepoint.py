"""A write guarded by a savepoint stays part of the request's transaction on every database.

pysqlite opens a transaction only at the first write, so on SQLite a SAVEPOINT issued before
any write used to be the outermost transaction: its release committed at once, and the row
outlived the rollback of the request that made it (e.g. a model version reserved for a
training whose job could then not be created)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import png_bytes
from tests.services.conftest import me
from vize.config import Settings
from vize.db.tables import Image, Model, TaskLabel, User
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service
from vize.services import training
from vize.storage import LocalBlobStore


class RequestFailed(Exception):
    """Whatever makes a request roll back after its guarded write."""


def count(sessions: sessionmaker[Session], table: type) -> int:
    with sessions() as db:
        return int(db.scalar(select(func.count()).select_from(table)) or 0)


def test_an_image_insert_rolls_back_with_its_request(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    with pytest.raises(RequestFailed), sessions.begin() as db:
        up = images_service.upload_image(db, blobs, settings, me(carol), png_bytes(31))
        assert up.created
        raise RequestFailed
    assert count(sessions, Image) == 0


def test_a_reserved_model_version_rolls_back_with_its_request(
    sessions: sessionmaker[Session], settings: Settings, carol: User
) -> None:
    with sessions.begin() as db:
        task = tasks_service.create_task(db, me(carol), "t")
        for name in ("cat", "dog"):
            labels_service.create_label(db, me(carol), {"name": name}, task)
    with pytest.raises(RequestFailed), sessions.begin() as db:
        task = tasks_service.get_task(db, me(carol), task.id)
        training.start_training(db, me(carol), task, min_images=0)
        raise RequestFailed
    assert count(sessions, Model) == 0


def test_a_new_link_rolls_back_with_its_request(
    sessions: sessionmaker[Session], carol: User
) -> None:
    with sessions.begin() as db:
        task = tasks_service.create_task(db, me(carol), "t")
        label = labels_service.create_label(db, me(carol), {"name": "cat"}, None)
    with pytest.raises(RequestFailed), sessions.begin() as db:
        tasks_service.add_label(
            db, tasks_service.get_task(db, me(carol), task.id),
            labels_service.get_label(db, me(carol), label.id),
        )  # fmt: skip
        raise RequestFailed
    assert count(sessions, TaskLabel) == 0
