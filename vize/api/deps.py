"""Typed dependencies: settings, database session, blob store, the authenticated caller."""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.types import Scope

from vize.api.limits import gate_request, user_id_from_gate
from vize.api.routing import MIN_ROLE_ATTR
from vize.api.signing import ImageLinks
from vize.config import Settings
from vize.db.engine import session_scope
from vize.db.states import Role
from vize.db.tables import User, WorkspaceToken
from vize.errors import InvalidInput, Unauthorized, VizeError
from vize.jobs.runners import JobRunner
from vize.observability.metrics import Metrics
from vize.services import sessions as sessions_service
from vize.services import users as users_service
from vize.services import workspaces as workspaces_service
from vize.services.classify import Classifier
from vize.services.context import JobContext
from vize.services.fetch import UrlFetcher
from vize.services.limits import (
    Counter,
    Limiter,
    check_auth_failures,
    client_address,
    parse_networks,
    record_auth_failure,
)
from vize.services.orphans import OrphanSweeper
from vize.services.recognition import Recognizer
from vize.services.workspaces import Caller
from vize.storage import BlobStore

SESSION_COOKIE = "vize_session"
# The web's workspace switcher: a browser's API calls without a ``workspace`` act there too.
WORKSPACE_COOKIE = "vize_workspace"
SESSION_MAX_AGE = 14 * 24 * 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
INLINE_JSON_BYTES = 64 * 1024
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TOKEN_KEY = "token:"  # the gate's note of a service token, before its id
NOT_AUTHENTICATED = (
    "Authentication required: send the header 'Authorization: Token <your API token>'."
)


@dataclass(frozen=True)
class Services:
    """The long-lived objects the lifespan builds on top of the state, for the routes."""

    counter: Counter  # rate-limit windows (Redis with a broker, else in process)
    limiter: Limiter
    recognizer: Recognizer
    classifier: Classifier
    runner: JobRunner
    jobs: JobContext | None  # None with a broker: the workers run the jobs, with their own
    after_upload: Callable[[Caller, int], None]  # the uploader and how many new images
    admit_upload: Callable[[str], None]  # 429 while the embedding backlog is full
    fetcher: UrlFetcher  # per-user cap on URL fetches, one TLS context
    metrics: Metrics  # this process's /metrics
    sweeper: OrphanSweeper | None  # the background orphan sweep (VIZE_ORPHAN_SWEEP)


@dataclass
class AppState:
    """Everything the lifespan builds; routes reach it through ``request.app.state.vize``.
    ``services`` is set last, after the app's extensions had their say on the rest."""

    settings: Settings
    sessions: sessionmaker[Session]
    blobs: BlobStore
    signer: URLSafeTimedSerializer
    services: Services = field(init=False)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.vize
    return state


State = Annotated[AppState, Depends(get_state)]


# Async on purpose, like the two below: a sync dependency costs a worker-thread hop.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.vize.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_classifier(services: ServicesDep) -> Classifier:
    return services.classifier


async def get_runner(services: ServicesDep) -> JobRunner:
    return services.runner


ClassifierDep = Annotated[Classifier, Depends(get_classifier)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


def get_settings(state: State) -> Settings:
    return state.settings


def get_db(state: State) -> Iterator[Session]:
    with session_scope(state.sessions) as session:
        yield session


def get_blobs(state: State) -> BlobStore:
    return state.blobs


def get_image_links(state: State) -> ImageLinks:
    return image_links(state)


def image_links(state: AppState) -> ImageLinks:
    """Signer of image URLs, with the app's secret (the session signer's key, another salt)."""
    return ImageLinks(state.signer.secret_key, state.settings.image_url_ttl_seconds)


SettingsDep = Annotated[Settings, Depends(get_settings)]
Links = Annotated[ImageLinks, Depends(get_image_links)]
# scope="function": commit before the response is sent. With the default ("request") FastAPI
# sends the response first, so a client could read a 201 for a row not yet committed (its
# next request 404s) or for a commit that then fails.
DB = Annotated[Session, Depends(get_db, scope="function")]
Blobs = Annotated[BlobStore, Depends(get_blobs)]


def csrf_token(signer: URLSafeTimedSerializer, session_value: str) -> str:
    key = str(signer.secret_key).encode()
    return hmac.new(key, b"csrf:" + session_value.encode(), sha256).hexdigest()


def session_claims(state: AppState, request: Request) -> tuple[str, str] | None:
    """(user id, session id) of a correctly signed session cookie; not yet checked against
    the sessions table (``session_user`` does that)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = state.signer.loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not data.get("uid"):
        return None
    return str(data["uid"]), str(data.get("sid") or "")


def session_user_id(state: AppState, request: Request) -> str | None:
    claims = session_claims(state, request)
    return claims[0] if claims else None


def session_user(state: AppState, request: Request, db: Session) -> User | None:
    """The user of the session cookie if its session is live (not logged out)."""
    claims = session_claims(state, request)
    return sessions_service.user_for(db, *claims) if claims else None


def _token_from_header(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        raise Unauthorized(
            "Authorization header must be 'Token <your API token>'.", code="bad_auth_header"
        )
    return value.strip()


def client_ip(request: Request) -> str:
    """The address rate limits count against (``X-Forwarded-For`` only from trusted proxies)."""
    peer = request.client.host if request.client else "unknown"
    trusted = parse_networks(get_state(request).settings.trusted_proxies)
    return client_address(peer, request.headers.get("x-forwarded-for", ""), trusted)


def check_credential_allowed(state: AppState, request: Request) -> None:
    """Before checking a token or password: 429 for an address that guessed too often."""
    limit = state.settings.auth_failures_per_minute
    check_auth_failures(state.services.counter, client_ip(request), limit)


def note_credential_failure(state: AppState, request: Request) -> None:
    """Count the failure; 429 instead of the 401 once beyond the limit (counted atomically)."""
    limit = state.settings.auth_failures_per_minute
    record_auth_failure(state.services.counter, client_ip(request), limit)


def get_current_caller(request: Request, state: State, db: DB) -> Caller:
    caller = authenticate(request, state, db)
    request.scope.setdefault("state", {})["vize_log_user_id"] = caller.actor  # the log line
    # End the lookup's transaction: its pooled connection goes back now, not when the request
    # ends. Routes that then open their own sessions (uploads, classify, training) would
    # otherwise hold two connections each, and under load every request would wait for a
    # second one that no request gives back (pool exhausted: 500 after 30 s). The user stays
    # loaded (expire_on_commit=False) and attached for the route's own use of ``db``.
    db.commit()
    return caller


def authenticate_scope(scope: Scope) -> str:
    """The request gate's check (headers only, body unread): the credential's key (a user
    id, or ``token:<id>`` for a service token), or the refusal."""
    state: AppState = scope["app"].state.vize
    with state.sessions() as db:
        credential = _credential(gate_request(scope), state, db)
    return credential.id if isinstance(credential, User) else TOKEN_KEY + credential.id


def authenticate(request: Request, state: AppState, db: Session) -> Caller:
    """The request's caller: its credential (API token, service token, or session cookie +
    CSRF for writes), the workspace the request names (the default one if none; 404 unless
    a member) and the role there, which must allow the route (403 ``forbidden_role``).
    Plain function as well as the dependency: a route may run it in its own worker thread."""
    credential = _credential(request, state, db)
    ref = _workspace_ref(request)
    if ref is None and "authorization" not in request.headers:  # the page's own calls
        ref = request.cookies.get(WORKSPACE_COOKIE)
    if isinstance(credential, User):
        caller = workspaces_service.resolve_user(db, credential, ref)
    else:
        caller = workspaces_service.resolve_token(credential, ref)
    caller.require(needed_role(request))
    return caller


def needed_role(request: Request) -> Role:
    """The route's own (``routing.min_role``), else: reads for viewers, writes for editors."""
    marked = getattr(request.scope.get("endpoint"), MIN_ROLE_ATTR, None)
    if isinstance(marked, Role):
        return marked
    return Role.VIEWER if request.method in SAFE_METHODS else Role.EDITOR


def _credential(request: Request, state: AppState, db: Session) -> User | WorkspaceToken:
    checked = user_id_from_gate(request.scope)
    if checked is not None:  # the gate checked this request's credential already
        known: User | WorkspaceToken | None
        if checked.startswith(TOKEN_KEY):
            known = db.get(WorkspaceToken, checked.removeprefix(TOKEN_KEY))
        else:
            known = db.get(User, checked)
        if known is not None:
            return known
    token = _token_from_header(request)
    if token is not None:
        check_credential_allowed(state, request)
        found: User | WorkspaceToken | None = workspaces_service.token_by_secret(db, token)
        if found is None:
            found = users_service.by_token(db, token)
        if found is None:
            note_credential_failure(state, request)
            raise Unauthorized("Invalid API token.", code="invalid_token")
        check_credential_allowed(state, request)  # others' failures may have locked it since
        return found
    user = session_user(state, request, db)
    if user is not None:
        _check_csrf(state, request)
        return user
    raise Unauthorized(
        NOT_AUTHENTICATED,
        code="not_authenticated",
    )


def caller_user(caller: Caller) -> User:
    """The caller's user account: routes about a person (account, workspaces) refuse a
    service token."""
    if caller.user is None:
        raise VizeError(
            "A service token acts in its workspace only; this needs a user's API token.",
            code="user_token_required",
            status=403,
        )
    return caller.user


def _check_csrf(state: AppState, request: Request) -> None:
    """Cookie-authenticated writes must echo the CSRF token (header), else any site could."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get("x-csrftoken", "")
    expected = csrf_token(state.signer, request.cookies.get(SESSION_COOKIE, ""))
    if not hmac.compare_digest(sent, expected):
        raise VizeError("CSRF token missing or wrong.", code="csrf_failed", status=403)


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]


async def note_workspace(request: Request) -> AsyncIterator[None]:
    """Dependency of every API route (run first): keep what names a workspace, the
    ``workspace`` query parameter or JSON body field (Ximilar's client sends both) or form
    field, for ``authenticate`` to check once it knows the user. A JSON body is read (bounded
    by the body limit, and the routes read it anyway) but parsed only after authentication."""
    request.state.workspace_query = request.query_params.get("workspace")
    request.state.workspace_body = None
    request.state.workspace_form = None
    if request.method in SAFE_METHODS:
        yield
        return
    if _is_form(request):
        # Parsed once (the API gate has checked the credential of every write already) and
        # kept by the request: the route's ``read_fields`` gets the same form. Ignoring the
        # field would store an upload in the default workspace while the caller meant another.
        form = await request.form()
        try:
            value = form.get("workspace")
            request.state.workspace_form = value if isinstance(value, str) else None
            yield
        finally:
            await form.close()  # also when the request was refused before the route read it
        return
    body = await request.body()  # cached: the route's own body reader gets the same bytes
    if b'"workspace"' in body:
        request.state.workspace_body = body
    yield


def _workspace_ref(request: Request) -> Any:
    query = getattr(request.state, "workspace_query", None)
    if query is not None:
        return query
    form = getattr(request.state, "workspace_form", None)
    if form is not None:
        return form
    body = getattr(request.state, "workspace_body", None)
    if body is None:
        return None
    try:
        data = strict_json(body)
    except ValueError:
        return None  # the route's body reader answers the JSON error
    return data.get("workspace") if isinstance(data, dict) else None


async def has_credentials(request: Request) -> bool:
    """Cheap check without the database, for routes that authenticate later in their own
    worker thread: a request with no credential at all is refused before its body is read.
    Async on purpose: a sync dependency would cost a worker-thread hop."""
    if request.headers.get("authorization") or request.cookies.get(SESSION_COOKIE):
        return True
    raise Unauthorized(
        NOT_AUTHENTICATED,
        code="not_authenticated",
    )


HasCredentials = Annotated[bool, Depends(has_credentials)]


@dataclass
class Paging:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def get_paging(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 25,
) -> Paging:
    return Paging(page, page_size)


PagingDep = Annotated[Paging, Depends(get_paging)]


async def read_fields(request: Request) -> AsyncIterator[dict[str, Any]]:
    """Body as a dict, from JSON, urlencoded or multipart: the Vize docs use all three."""
    if _is_form(request):
        async with request.form() as form:  # closes spooled upload files afterwards
            yield _form_fields(form)
        return
    yield await parse_json_body(await request.body())


async def parse_json_body(body: bytes) -> dict[str, Any]:
    """Parse on the event loop only when small: a large body parses in a worker thread, so
    one client's 20 MB batch does not stall every other request."""
    if len(body) <= INLINE_JSON_BYTES:
        return _parse_json(body)
    return await run_in_threadpool(_parse_json, body)


def _is_form(request: Request) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype in FORM_TYPES


def _form_fields(form: FormData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        out[key] = values if len(values) > 1 else values[0]
    return out


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = strict_json(body)
    except ValueError as exc:
        raise InvalidInput("Request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise InvalidInput("Request body must be a JSON object.", code="invalid_json")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # cheap pre-check before a full scan


def strict_json(text: str | bytes) -> Any:
    """json.loads that raises ValueError alone, for anything that is not plain JSON."""
    try:
        data = json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except (UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, absurd nesting
        raise ValueError(str(exc)) from exc
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(data):
        # "\ud800" alone decodes to a str no database driver can encode (a 500 on insert).
        raise ValueError("unpaired UTF-16 surrogate escape")
    return data


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON: PostgreSQL's json type refuses them and so does our own
    # response encoder, so accepting them would store a value that later answers 500.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 overflows to Infinity: refused for the same reason
        raise ValueError(f"number {text[:20]} is out of range")
    return value


Fields = Annotated[dict[str, Any], Depends(read_fields)]


async def read_fields_after_auth(request: Request) -> AsyncIterator[dict[str, Any] | VizeError]:
    """``read_fields`` for routes that authenticate later, in their own worker thread: a JSON
    body that does not parse is handed over as the error, to be raised after the credential
    check (a bad token must answer 401 whatever the body)."""
    if _is_form(request):
        async with request.form() as form:
            yield _form_fields(form)
        return
    body = await request.body()
    try:
        parsed: dict[str, Any] | VizeError = await parse_json_body(body)
    except VizeError as exc:
        parsed = exc
    yield parsed


FieldsAfterAuth = Annotated[dict[str, Any] | VizeError, Depends(read_fields_after_auth)]
