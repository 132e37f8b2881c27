"""Alembic migrations create exactly the schema of ``vize.db.tables`` and are idempotent.

Runs on SQLite and on PostgreSQL (a scratch database on VIZE_TEST_DATABASE_URL, default the
local server `make test` starts); an unreachable PostgreSQL fails the test, never skips it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from vize.db.engine import normalize_url
from vize.db.migrate import MIGRATIONS_DIR, alembic_config, upgrade
from vize.db.tables import Base

PG_URL = os.environ.get("VIZE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
        yield engine
        engine.dispose()
        return
    name = f"vize_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(normalize_url(PG_URL)).set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(str(fk) for fk in insp.get_foreign_keys(table)),
            "indexes": sorted(str(ix) for ix in insp.get_indexes(table)),
            "unique": sorted(str(uc) for uc in insp.get_unique_constraints(table)),
        }
    return out


def _version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_fresh_database_gets_exactly_the_models_tables(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    tables = set(inspect(fresh_engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert _version(fresh_engine) == [head]


def test_autogenerate_finds_no_difference(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_migrating_twice_is_a_no_op(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    before, version = _schema(fresh_engine), _version(fresh_engine)
    upgrade(fresh_engine)
    assert _schema(fresh_engine) == before and _version(fresh_engine) == version


def test_every_migration_has_a_docstring_and_one_head() -> None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1
    for rev in script.walk_revisions():
        assert rev.doc, f"revision {rev.revision} has no message"


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_dropping_job_payload_keeps_the_jobs(fresh_engine: Engine) -> None:
    """0003 drops the never-used ``jobs.payload``: existing jobs survive it both ways."""
    _migrate(fresh_engine, "0002")
    now = datetime.now(UTC)
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, password_hash, api_token,"
                " notify_email, created) VALUES ('u1', 'u', '', '', 't', false, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (id, kind, state, owner_id, payload, progress, message,"
                " attempts, max_attempts, error, worker, created) VALUES ('j1', 'train',"
                " 'queued', 'u1', '{\"x\": 1}', 0, '', 0, 3, '', '', :now)"
            ),
            {"now": now},
        )
    _migrate(fresh_engine, "0003")
    assert "payload" not in {c["name"] for c in inspect(fresh_engine).get_columns("jobs")}
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT id, kind FROM jobs")).all() == [("j1", "train")]
    _migrate(fresh_engine, "0002", down=True)
    with fresh_engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM jobs WHERE id = 'j1'")).scalar_one()
    assert payload in ({}, "{}")


def test_0005_keeps_users_and_starts_their_addresses_unconfirmed(fresh_engine: Engine) -> None:
    """Sessions table and users.email_verified (issue 12, items 4 and 13) on a database
    that already has a user: the row survives, its address is not taken as confirmed."""
    _migrate(fresh_engine, "0002")
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, password_hash, api_token, notify_email,"
                " created) VALUES ('u1', 'old', 'old@example.com', '', 'tok', :t, :c)"
            ),
            {"t": True, "c": "2026-01-01 00:00:00+00:00"},
        )
    upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        row = conn.execute(text("SELECT username, email_verified FROM users")).one()
        assert (row[0], bool(row[1])) == ("old", False)
        conn.execute(
            text("INSERT INTO web_sessions (id, user_id, created) VALUES ('s1', 'u1', :c)"),
            {"c": "2026-01-01 00:00:00+00:00"},
        )
    _migrate(fresh_engine, "0002", down=True)
    assert "web_sessions" not in inspect(fresh_engine).get_table_names()
    upgrade(fresh_engine)
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert _version(fresh_engine) == [head]


def test_0006_adds_task_insights_and_keeps_the_tasks(fresh_engine: Engine) -> None:
    """0006 (issue 16) adds ``task_insights`` on top of 0005; an existing task survives it
    both ways, and the downgrade drops only the new table."""
    _migrate(fresh_engine, "0005")
    assert "task_insights" not in inspect(fresh_engine).get_table_names()
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, password_hash, api_token, notify_email,"
                " email_verified, created) VALUES ('u1', 'u', '', '', 't', false, false, :c)"
            ),
            {"c": "2026-01-01 00:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO tasks (id, owner_id, name, description, type, production_version,"
                " production_pinned, last_train_status, webhook_url, webhook_secret, created,"
                " updated) VALUES ('t1', 'u1', 'cats', '', 'multi_class', 0, false, '', '',"
                " '', :c, :c)"
            ),
            {"c": "2026-01-01 00:00:00+00:00"},
        )
    _migrate(fresh_engine, "0006")
    assert _version(fresh_engine) == ["0006"]
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO task_insights (task_id, predictions, report, kept)"
                " VALUES ('t1', '{}', '{}', '{}')"
            )
        )
    _migrate(fresh_engine, "0005", down=True)
    assert "task_insights" not in inspect(fresh_engine).get_table_names()
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM tasks")).all() == [("t1", "cats")]


def test_0007_adds_the_deploy_policy_and_keeps_hand_picked_versions(fresh_engine: Engine) -> None:
    """0007 (issue 15) adds ``tasks.deploy_policy`` and ``models.deploy_decision``: a task
    whose owner had picked its version by hand gets "never" (what it did), others the
    default "if_better"; the downgrade drops both columns and keeps the rows."""
    _migrate(fresh_engine, "0006")
    now = "2026-01-01 00:00:00+00:00"
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, password_hash, api_token, notify_email,"
                " email_verified, created) VALUES ('u1', 'u', '', '', 't', false, false, :c)"
            ),
            {"c": now},
        )
        for task_id, pinned in (("t1", True), ("t2", False)):
            conn.execute(
                text(
                    "INSERT INTO tasks (id, owner_id, name, description, type,"
                    " production_version, production_pinned, last_train_status, webhook_url,"
                    " webhook_secret, created, updated) VALUES (:id, 'u1', :id, '',"
                    " 'multi_class', 0, :pinned, '', '', '', :c, :c)"
                ),
                {"id": task_id, "pinned": pinned, "c": now},
            )
    _migrate(fresh_engine, "0007")
    with fresh_engine.connect() as conn:
        rows = conn.execute(text("SELECT id, deploy_policy FROM tasks ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("t1", "never"), ("t2", "if_better")]
    _migrate(fresh_engine, "0006", down=True)
    assert "deploy_policy" not in {c["name"] for c in inspect(fresh_engine).get_columns("tasks")}
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 2


def test_0009_moves_existing_data_into_each_owners_default_workspace(
    fresh_engine: Engine,
) -> None:
    """0009 (issue 18): every user gets the default workspace whose id Ximilar's client has
    seen (uuid5 of the user id), as its owner; their tasks, labels, images, jobs and usage
    move into it. Downgrading keeps the objects."""
    from vize.services.workspaces import default_workspace

    _migrate(fresh_engine, "0006")
    c = {"c": "2026-01-01 00:00:00+00:00"}
    rows = [
        "INSERT INTO users (id, username, email, password_hash, api_token, notify_email,"
        " email_verified, created) VALUES ('u1', 'ann', '', '', 't1', false, false, :c),"
        " ('u2', 'ben', '', '', 't2', false, false, :c)",
        "INSERT INTO tasks (id, owner_id, name, description, type, production_version,"
        " production_pinned, last_train_status, webhook_url, webhook_secret, created, updated)"
        " VALUES ('t1', 'u1', 'cats', '', 'multi_class', 0, false, '', '', '', :c, :c),"
        " ('t2', 'u2', 'dogs', '', 'multi_class', 0, false, '', '', '', :c, :c)",
        "INSERT INTO labels (id, owner_id, name, description, output_name, type, created)"
        " VALUES ('l1', 'u1', 'cat', '', '', 'category', :c)",
        "INSERT INTO images (id, owner_id, sha256, blob_key, thumb_key, content_type, size,"
        " width, height, file_name, meta_data, test_image, real_image, created) VALUES"
        " ('i1', 'u1', 'abc', 'images/u1/ab/abc', 'thumbs/u1/ab/abc.jpg', 'image/png', 1, 1, 1,"
        " '', '{}', false, false, :c), ('i2', 'u2', 'abc', 'images/u2/ab/abc',"
        " 'thumbs/u2/ab/abc.jpg', 'image/png', 1, 1, 1, '', '{}', false, false, :c)",
        "INSERT INTO jobs (id, kind, state, owner_id, progress, message, attempts,"
        " max_attempts, error, worker, created) VALUES ('j1', 'embed', 'queued', 'u2', 0, '',"
        " 0, 3, '', '', :c)",
        "INSERT INTO usage (user_id, day, classifications) VALUES ('u1', '2026-01-02', 7)",
    ]
    with fresh_engine.begin() as conn:
        for sql in rows:
            conn.execute(text(sql), c)
    _migrate(fresh_engine, "0009")
    w1, w2 = default_workspace("u1"), default_workspace("u2")
    with fresh_engine.connect() as conn:
        spaces = conn.execute(text("SELECT id, name, default_for FROM workspaces")).all()
        assert sorted(spaces) == sorted([(w1, "Default", "u1"), (w2, "Default", "u2")])
        members = conn.execute(text("SELECT workspace_id, user_id, role FROM workspace_members"))
        assert sorted(members.all()) == sorted([(w1, "u1", "owner"), (w2, "u2", "owner")])
        for table, expected in (
            ("tasks", [("t1", w1), ("t2", w2)]),
            ("labels", [("l1", w1)]),
            ("images", [("i1", w1), ("i2", w2)]),
            ("jobs", [("j1", w2)]),
        ):
            got = conn.execute(text(f"SELECT id, workspace_id FROM {table} ORDER BY id")).all()
            assert [tuple(r) for r in got] == expected, table
        usage = conn.execute(text("SELECT workspace_id, day, classifications FROM workspace_usage"))
        assert usage.all() == [(w1, "2026-01-02", 7)]
    # One image per (workspace, content) from now on.
    with fresh_engine.connect() as conn, pytest.raises(IntegrityError):
        conn.execute(
            text(
                "INSERT INTO images (id, owner_id, workspace_id, sha256, blob_key, thumb_key,"
                " content_type, size, width, height, file_name, meta_data, test_image,"
                " real_image, created) VALUES ('i3', 'u2', :w, 'abc', 'k', 'k', 'image/png', 1,"
                " 1, 1, '', '{}', false, false, :c)"
            ),
            {"w": w1, **c},
        )
    _migrate(fresh_engine, "0006", down=True)
    assert "workspaces" not in inspect(fresh_engine).get_table_names()
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM images ORDER BY id")).scalars().all() == [
            "i1",
            "i2",
        ]
        assert "workspace_id" not in {c["name"] for c in inspect(fresh_engine).get_columns("tasks")}
