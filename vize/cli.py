"""The ``vize`` command: server administration (serve, migrate, users)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Set before numpy loads: ONNX Runtime and the request pool already use every core, and
# BLAS threads on top of them oversubscribe a small machine (spinning OpenBLAS threads
# slowed training several-fold under load). Head training is small enough for one thread.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from vize.config import Settings  # noqa: E402  (after the thread limits above)
from vize.errors import ConfigError  # noqa: E402


def _ensure_default_user(settings: Settings) -> tuple[str, str] | None:
    from sqlalchemy import select

    from vize.db.engine import make_engine, make_sessionmaker, session_scope
    from vize.db.migrate import upgrade
    from vize.db.tables import User
    from vize.services import users

    engine = make_engine(settings)
    upgrade(engine)
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            if not settings.default_user or db.scalar(select(User.id).limit(1)):
                return None
            user = users.create_user(db, settings.default_user)
            return user.username, user.api_token
    finally:
        engine.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vize.app import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    created = _ensure_default_user(settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"Vize {url}  (API docs {url}/docs, web UI {url}/)", flush=True)
    if created:
        print(f"Created user {created[0]!r}; API token:\n{created[1]}", flush=True)
    from vize.observability.logs import configure_logging

    app = create_app(settings)  # a configuration error stops here, before logging is changed
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,  # ours above (VIZE_LOG_FORMAT), not uvicorn's
        timeout_graceful_shutdown=20,
        # Forwarded headers (client address, scheme) only from the configured proxies; the
        # app applies the same rule to X-Forwarded-For for the limits (vize.services.limits).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    from vize.db.engine import make_engine
    from vize.db.migrate import upgrade

    settings = Settings()
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    print(f"Database is up to date ({engine.url.render_as_string(hide_password=True)}).")
    return 0


def cmd_users_create(args: argparse.Namespace) -> int:
    from vize.db.engine import make_engine, make_sessionmaker, session_scope
    from vize.db.migrate import upgrade
    from vize.errors import VizeError
    from vize.services import users

    engine = make_engine(Settings())
    upgrade(engine)
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            # The administrator vouches for the address: no confirmation link.
            user = users.create_user(
                db, args.username, email=args.email, password=args.password, email_verified=True
            )
            token = user.api_token
    except VizeError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"Created user {args.username!r}. API token:")
    print(token)
    return 0


def cmd_users_invite(args: argparse.Namespace) -> int:
    """Print a sign-up link for USERNAME (VIZE_SIGNUP=invite): valid once, for 7 days."""
    from urllib.parse import quote

    from vize.app import load_secret
    from vize.services.invites import INVITE_DAYS, make_invite
    from vize.services.users import USERNAME_RE

    settings = Settings()
    if not USERNAME_RE.match(args.username):
        print("error: usernames are 1-150 letters, digits or _.@+-", file=sys.stderr)
        return 1
    token = make_invite(load_secret(settings), args.username)
    base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    print(f"Invitation for {args.username!r}, valid {INVITE_DAYS} days, once:")
    print(f"{base}/signup?invite={quote(token)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from vize.db.engine import make_engine
    from vize.db.migrate import upgrade
    from vize.jobs.worker import run_worker

    settings = Settings()
    if not settings.broker_url:
        print("error: set VIZE_BROKER_URL (e.g. redis://127.0.0.1:6379/0)", file=sys.stderr)
        return 1
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    from vize.observability.logs import use_our_logging_in_celery

    use_our_logging_in_celery(settings.log_format, args.loglevel or settings.log_level)
    run_worker(settings, concurrency=args.concurrency, loglevel=args.loglevel)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vize", description="Vize image recognition service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run a Celery worker (needs VIZE_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)
    migrate = sub.add_parser("migrate", help="create or upgrade the database")
    migrate.set_defaults(func=cmd_migrate)
    users_p = sub.add_parser("users", help="manage users")
    users_sub = users_p.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create a user and print their API token")
    create.add_argument("username")
    create.add_argument("--email", default="")
    create.add_argument("--password")
    create.set_defaults(func=cmd_users_create)
    invite = users_sub.add_parser("invite", help="print a sign-up link (VIZE_SIGNUP=invite)")
    invite.add_argument("username")
    invite.set_defaults(func=cmd_users_invite)
    from vize.client.cli import register

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:  # a setting to fix: its message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
