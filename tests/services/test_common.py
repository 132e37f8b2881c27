"""Shared service helpers: field checks, LIKE escaping, ownership lookups, pagination."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.services.conftest import me
from vize.db.tables import Task, User
from vize.errors import InvalidInput, NotFound
from vize.services import tasks as tasks_service
from vize.services.common import (
    get_owned,
    int_field,
    like_pattern,
    paginate,
    parse_uuid,
    text_field,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), ("abc", "abc"), (" a b ", " a b "), (12, "12"), (1.5, "1.5"), ("é" * 5, "é" * 5)],
)
def test_text_field_accepts(value: object, expected: str) -> None:
    assert text_field(value, "f", 5) == expected


@pytest.mark.parametrize("value", [True, [1], {"a": 1}, b"bytes", "x\x00y", "123456"])
def test_text_field_refuses(value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        text_field(value, "name", 5)
    assert err.value.code == "invalid_field" and "'name'" in err.value.detail


def test_text_field_strips_before_measuring() -> None:
    assert text_field("  abcde  ", "f", 5, strip=True) == "abcde"


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (" -1 ", -1), (7, 7)])
def test_int_field(value: object, expected: int) -> None:
    assert int_field(value, "v") == expected


@pytest.mark.parametrize("value", ["abc", "1.5", None, True, [1]])
def test_int_field_refuses(value: object) -> None:
    with pytest.raises(InvalidInput):
        int_field(value, "v")


@pytest.mark.parametrize(
    ("search", "pattern"),
    [
        ("cat", "%cat%"),
        ("50%", "%50\\%%"),
        ("a_b", "%a\\_b%"),
        ("a\\b", "%a\\\\b%"),
        ("\x00x", "%x%"),
    ],
)
def test_like_pattern(search: str, pattern: str) -> None:
    assert like_pattern(search) == pattern


def test_parse_uuid() -> None:
    assert parse_uuid("0A8C8186-AEE8-47C8-9EAF-348103FEB14D", "id") == (
        "0a8c8186-aee8-47c8-9eaf-348103feb14d"
    )
    with pytest.raises(InvalidInput):
        parse_uuid("nope", "id")


def test_get_owned_is_404_for_missing_foreign_and_malformed(
    db: Session, carol: User, dave: User
) -> None:
    task = tasks_service.create_task(db, me(carol), "t")
    mine, theirs = me(carol).workspace_id, me(dave).workspace_id
    assert get_owned(db, Task, task.id.upper(), mine, "Task") is task
    for obj_id, owner in ((task.id, theirs), ("0a8c8186-aee8-47c8-9eaf-348103feb14d", mine),
                          ("x' OR 1=1 --", mine), (None, mine)):  # fmt: skip
        with pytest.raises(NotFound) as err:
            get_owned(db, Task, obj_id, owner, "Task")
        assert err.value.status == 404 and err.value.detail == "Task not found."


def test_paginate_counts_all_and_slices(db: Session, carol: User) -> None:
    for i in range(7):
        tasks_service.create_task(db, me(carol), f"t{i}")
    stmt = select(Task).where(Task.owner_id == carol.id).order_by(Task.name)
    page = paginate(db, stmt, 5, 5)
    assert page.count == 7 and [t.name for t in page.items] == ["t5", "t6"]
    assert paginate(db, stmt, 10, 5).items == []
