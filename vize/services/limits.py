"""Rate limits and quotas: a per-minute window kept in Redis when configured (shared by all
replicas) or in process memory (embedded default), and a monthly quota from the usage table."""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vize.db.tables import Usage, WorkspaceUsage
from vize.errors import TooManyRequests
from vize.services.usage import month_total
from vize.services.workspaces import Caller

WINDOW = 60


def window_left(now: float) -> int:
    """Whole seconds until the current one-minute window ends (at least 1)."""
    return max(1, math.ceil((int(now // WINDOW) + 1) * WINDOW - now))


class Counter:
    """Fixed one-minute windows: ``hit(key, n)`` returns the count in the current window."""

    def __init__(self, redis_url: str = "") -> None:
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = defaultdict(int)

    def hit(self, key: str, n: int = 1) -> tuple[int, int]:
        """(count after this hit, seconds until the window resets)."""
        now = time.time()
        window = int(now // WINDOW)
        retry = window_left(now)
        if self._redis is not None:
            rkey = f"vize:rate:{key}:{window}"
            pipe = self._redis.pipeline()
            pipe.incrby(rkey, n)
            pipe.expire(rkey, WINDOW * 2)
            count = int(pipe.execute()[0])
            return count, retry
        with self._lock:
            for old in [k for k in self._counts if k[1] < window]:
                del self._counts[old]
            self._counts[(key, window)] += n
            return self._counts[(key, window)], retry

    def peek(self, key: str) -> int:
        window = int(time.time() // WINDOW)
        if self._redis is not None:
            value: Any = self._redis.get(f"vize:rate:{key}:{window}")
            return int(value or 0)
        with self._lock:
            return self._counts.get((key, window), 0)


class Limiter:
    def __init__(
        self, sessions: sessionmaker[Session], counter: Counter, per_minute: int, monthly: int
    ) -> None:
        self.sessions, self.counter = sessions, counter
        self.per_minute, self.monthly = per_minute, monthly

    def check(self, caller: Caller, n: int) -> None:
        """Raise 429 (with Retry-After) if classifying n more images exceeds a limit: the
        monthly quota holds for the user and for the workspace alike, the per-minute rate
        for the caller (a user, or a service token)."""
        if self.monthly:
            self._check_monthly(caller, n)
        if self.per_minute:
            key = f"classify:{caller.actor}"
            count, retry = self.counter.hit(key, n)
            if count > self.per_minute:
                self.counter.hit(key, -n)  # a refused request uses none of the allowance
                raise TooManyRequests(
                    f"Rate limit: at most {self.per_minute} images per minute; retry in {retry} s.",
                    headers={"Retry-After": str(retry)},
                )

    def _check_monthly(self, caller: Caller, n: int) -> None:
        now = datetime.now(UTC)
        month = now.strftime("%Y-%m")
        with self.sessions() as db:
            mine = month_total(db, Usage, Usage.user_id, caller.user_id, month)
            space = WorkspaceUsage.workspace_id
            shared = month_total(db, WorkspaceUsage, space, caller.workspace_id, month)
        for used, whose in ((mine, "by you"), (shared, "in this workspace")):
            if used + n > self.monthly:
                nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
                retry = max(1, int((nxt - now).total_seconds()))
                raise TooManyRequests(
                    f"Monthly quota of {self.monthly} classified images reached "
                    f"({used} used {whose} this month).",
                    code="quota_exceeded",
                    headers={"Retry-After": str(retry)},
                )


def check_auth_failures(counter: Counter, client: str, limit: int) -> None:
    """Before checking a credential: refuse clients that failed too often this minute."""
    if limit and counter.peek(f"authfail:{client}") >= limit:
        retry = window_left(time.time())  # the count is per window: it resets then
        raise TooManyRequests(
            f"Too many failed authentication attempts; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )


def record_auth_failure(counter: Counter, client: str, limit: int = 0) -> None:
    """Count a failed credential; 429 if it is beyond the limit. Count and check are one step
    (the count after this hit): concurrent guessers cannot all pass a check made before any
    of them counted, so at most ``limit`` failures per window are answered as such."""
    count, retry = counter.hit(f"authfail:{client}")
    if limit and count > limit:
        raise TooManyRequests(
            f"Too many failed authentication attempts; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)  # a pure function of the setting: parsed once, not per request
def parse_networks(text: str) -> list[Network]:
    """``VIZE_TRUSTED_PROXIES``: comma-separated addresses or networks (CIDR)."""
    return [ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()]


def _trusted(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded_for: str, networks: list[Network]) -> str:
    """The address limits count against: the connecting peer, unless it is a trusted proxy;
    then the nearest address of ``X-Forwarded-For`` (read from the right: each proxy appends
    the address it saw) that is not a trusted proxy. Anything left of it is the client's say
    and is ignored, so a client cannot pick the address it is counted as."""
    if not forwarded_for or not _trusted(peer, networks):
        return peer
    address = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip().strip("[]")
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage: stop at the last address a trusted proxy vouched for
        address = hop
        if not _trusted(hop, networks):
            break
    return address
