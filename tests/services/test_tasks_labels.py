"""Tasks and labels at the service level: field rules, the negative label, deployment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.services.conftest import me
from vize.db.tables import Label, Model, User
from vize.errors import InvalidInput
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service


def test_create_task_cleans_and_checks(db: Session, carol: User) -> None:
    task = tasks_service.create_task(db, me(carol), "  t  ", "d")
    assert (task.name, task.description, task.production_version) == ("t", "d", -1)
    for name, desc, kind in (
        ("", "", "multi_class"),
        ("t", "", "other"),
        ("t", "\x00", "multi_class"),
    ):
        with pytest.raises(InvalidInput):
            tasks_service.create_task(db, me(carol), name, desc, kind)


def test_update_task_treats_none_as_not_sent(db: Session, carol: User) -> None:
    task = tasks_service.create_task(db, me(carol), "t", "d")
    tasks_service.update_task(db, task, {"name": None, "description": None, "type": None})
    assert (task.name, task.description) == ("t", "d")
    tasks_service.update_task(db, task, {"webhook_url": ""})
    assert task.webhook_url == ""


def test_production_version_pins_a_trained_model(db: Session, carol: User) -> None:
    task = tasks_service.create_task(db, me(carol), "t")
    db.add_all([Model(task_id=task.id, version=1, train_status="trained"),
                Model(task_id=task.id, version=2, train_status="failed")])  # fmt: skip
    db.flush()
    tasks_service.update_task(db, task, {"production_version": "1"})
    assert (task.production_version, task.production_pinned) == (1, True)
    with pytest.raises(InvalidInput):
        tasks_service.update_task(db, task, {"production_version": 2})
    assert task.production_version == 1


def test_negative_label_lives_and_dies_with_its_task(db: Session, carol: User) -> None:
    task = tasks_service.create_task(db, me(carol), "tags", type="multi_label")
    negative = db.get(Label, task.negative_label_id)
    assert negative is not None and negative.type == "tag"
    with pytest.raises(InvalidInput):
        tasks_service.remove_label(db, task, negative)
    with pytest.raises(InvalidInput):
        labels_service.delete_label(db, negative)
    tasks_service.delete_task(db, task)
    assert db.get(Label, negative.id) is None


def test_negative_label_attached_elsewhere_survives(db: Session, carol: User) -> None:
    task = tasks_service.create_task(db, me(carol), "tags", type="multi_label")
    # A categorization task: another tagging task has a "negative" label of its own already.
    other = tasks_service.create_task(db, me(carol), "other")
    negative = db.get(Label, task.negative_label_id)
    assert negative is not None
    tasks_service.add_label(db, other, negative)
    tasks_service.delete_task(db, task)
    assert db.get(Label, negative.id) is negative
    tasks_service.remove_label(db, other, negative)  # not *this* task's negative label
    assert negative not in other.labels


def test_label_fields(db: Session, carol: User) -> None:
    tagging = tasks_service.create_task(db, me(carol), "tags", type="multi_label")
    tag = labels_service.create_label(db, me(carol), {"name": " red ", "type": ""}, tagging)
    assert (tag.name, tag.type) == ("red", "tag")
    labels_service.update_label(db, tag, {"name": None, "description": "x", "output_name": "R"})
    assert (tag.name, tag.description, tag.output_name) == ("red", "x", "R")
    for fields in ({"name": ""}, {"output_name": "o" * 256}, {"type": "blob"}, {"name": ["a"]}):
        with pytest.raises(InvalidInput):
            labels_service.update_label(db, tag, fields)
    assert tag.name == "red"


def test_concurrent_attach_of_the_same_label_is_idempotent(
    sessions: sessionmaker[Session], carol: User
) -> None:
    """Two parallel add-label requests: the second must not fail on the primary key."""
    with sessions.begin() as db:
        task_id = tasks_service.create_task(db, me(carol), "t").id
        label_id = labels_service.create_label(db, me(carol), {"name": "l"}, None).id

    def attach(db: Session) -> list[str]:
        task = tasks_service.get_task(db, me(carol), task_id)
        label = labels_service.get_label(db, me(carol), label_id)
        return [lbl.id for lbl in tasks_service.add_label(db, task, label).labels]

    first, second = race(sessions, attach)
    assert first == second == [label_id]


def race(sessions: sessionmaker[Session], op: Callable[[Session], object]) -> tuple[object, object]:
    """``op`` in a first transaction (not yet committed), then in a second one that runs into
    it; the first commits while the second waits. Returns both results."""
    results: list[object] = []

    def second() -> None:
        try:
            with sessions.begin() as db:
                results.append(op(db))
        except BaseException as exc:  # reported by the caller's assertion
            results.append(exc)

    with sessions() as db:
        first = op(db)
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # let the second reach its insert and wait on the first's lock
        db.commit()
    thread.join(60)
    [other] = results
    assert not isinstance(other, BaseException), repr(other)
    return first, other
