"""Fetch an image by URL without letting callers reach internal addresses (SSRF guard)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from vize.config import Settings
from vize.errors import InvalidInput, PayloadTooLarge, TooManyRequests
from vize.services.imaging import decode_base64

MAX_REDIRECTS = 5
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges that carry an IPv4 address in their low 32 bits. Each reaches that IPv4 address
# through a translator (NAT64, SIIT) or is treated as it by some stacks (IPv4-compatible).
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64: public if its IPv4 is
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215)
SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d, IPv4-translated
V4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d, deprecated
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


class UrlRefused(InvalidInput):
    code = "url_refused"


@dataclass(frozen=True)
class Target:
    """Where to connect: the checked address, so DNS cannot change between check and use."""

    url: str  # the URL with its host replaced by the checked IP address
    host_header: str
    server_name: str  # for TLS (SNI and certificate check)


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"Cannot resolve host {host!r}.", code="url_unreachable") from exc
    addrs = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        addrs.append(addr)
    return addrs


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address ``addr`` carries: mapped, SIIT, IPv4-compatible, NAT64 (both
    prefixes), 6to4, and both of Teredo's (server and de-obfuscated client)."""
    low32 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped:
        found.append(addr.ipv4_mapped)
    if any(addr in net for net in (SIIT, V4_COMPATIBLE, NAT64)):
        found.append(low32)
    if addr in LOCAL_NAT64:  # the IPv4 sits in the last 32 bits for a /96 inside it
        found.append(low32)
    if addr.sixtofour:
        found.append(addr.sixtofour)
    if addr.teredo:
        found.extend(addr.teredo)
    return found


def _public(addr: Address) -> bool:
    """Globally routable unicast, and so is every IPv4 address it carries (6to4, Teredo,
    NAT64, SIIT forms reach e.g. 127.0.0.1 through a gateway)."""
    if isinstance(addr, ipaddress.IPv4Address):
        return addr.is_global and not addr.is_multicast
    if addr.ipv4_mapped:
        return _public(addr.ipv4_mapped)
    inner = embedded_ipv4(addr)
    if inner and not all(_public(v4) for v4 in inner):
        return False
    if addr in NAT64 and inner:  # the well-known prefix: as public as the IPv4 it names
        return True
    # Only 2000::/3 is global unicast; outside it (site-local fec0::/10, local NAT64,
    # SIIT, IPv4-compatible) nothing is routable on the internet, whatever Python thinks.
    if addr not in GLOBAL_UNICAST or addr.is_site_local or addr in LOCAL_NAT64:
        return False
    return addr.is_global and not addr.is_multicast


def _split(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # "http://[::1", "http://host:99999"
        raise UrlRefused(f"The image URL is not valid ({exc}).") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("Only http and https image URLs are accepted.")
    if not host:
        raise UrlRefused("The image URL has no host.")
    return parts, host, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, allow_hosts: list[str]) -> Target:
    """Refuse URLs whose host resolves to any non-public address; pin the address used."""
    parts, host, port = _split(url)
    addrs = _resolve(host, port)
    if host not in allow_hosts:
        for addr in addrs:
            if not _public(addr):
                raise UrlRefused(f"URL host {host!r} points to a non-public address; refused.")
    ip = str(addrs[0])
    netloc = f"[{ip}]" if ":" in ip else ip
    if parts.port:
        netloc += f":{parts.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = parts.netloc.rsplit("@", 1)[-1]  # never forward userinfo
    return Target(pinned, host_header, host)


def fetch_image(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allow_hosts: list[str],
    deadline: float | None = None,
    verify: ssl.SSLContext | bool = True,
) -> bytes:
    """GET with a size cap and one deadline for all of it (redirects, and a body trickling in
    a byte at a time, which per-read timeouts never stop), re-checking every redirect. The
    deadline may be the request's, shared by all its records (``FetchBudget``)."""
    deadline = deadline if deadline is not None else time.monotonic() + timeout
    # trust_env=False: a proxy from the environment would connect to the name, not the checked
    # address, and void the guard.
    client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify)
    with client:
        for _ in range(MAX_REDIRECTS + 1):
            target = check_url(url, allow_hosts)
            try:
                with client.stream(
                    "GET",
                    target.url,
                    headers={"Host": target.host_header},
                    extensions={"sni_hostname": target.server_name},
                    timeout=_time_left(deadline, timeout),
                ) as resp:
                    if resp.is_redirect and resp.headers.get("location"):
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code != 200:
                        raise InvalidInput(
                            f"Fetching the image URL answered HTTP {resp.status_code}.",
                            code="url_unreachable",
                        )
                    return _read_capped(resp, max_bytes, deadline, timeout)
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                raise InvalidInput(
                    f"Could not fetch the image URL: {type(exc).__name__}.",
                    code="url_unreachable",
                ) from exc
    raise InvalidInput("Too many redirects fetching the image URL.", code="url_unreachable")


def _time_left(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise InvalidInput(
            f"Fetching the image URLs of this request took longer than {timeout:g} s.",
            code="url_unreachable",
        )
    return left


def _read_capped(resp: httpx.Response, max_bytes: int, deadline: float, timeout: float) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Image at URL is larger than {max_bytes // (1024 * 1024)} MB.")
    chunks, total = [], 0
    for chunk in resp.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"Image at URL is larger than {max_bytes // (1024 * 1024)} MB.")
        chunks.append(chunk)
        _time_left(deadline, timeout)
    return b"".join(chunks)


class FetchGate:
    """At most ``per_user`` URL fetches of one user at a time, across all their requests: one
    client's slow URLs cannot take every thread of the server."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._busy: dict[str, int] = {}
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, user_id: str, deadline: float) -> Iterator[None]:
        """Wait (until ``deadline`` at most) for a free slot of the user, hold it meanwhile."""
        with self._cond:
            while self.per_user and self._busy.get(user_id, 0) >= self.per_user:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    raise TooManyRequests(
                        f"At most {self.per_user} image URLs of one user are fetched at a "
                        "time; retry later.",
                        code="too_many_fetches",
                    )
            self._busy[user_id] = self._busy.get(user_id, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._busy[user_id] -= 1
                if not self._busy[user_id]:
                    del self._busy[user_id]
                self._cond.notify_all()


class UrlFetcher:
    """One per app: the per-user gate and one TLS context (made on first use, off start-up)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._gate: FetchGate | None = None
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    @property
    def gate(self) -> FetchGate:
        with self._lock:
            if self._gate is None:
                self._gate = FetchGate(self.settings.url_fetches_per_user)
            return self._gate

    def tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
            return self._tls

    def budget(self, settings: Settings, user_id: str) -> FetchBudget:
        """What one request's URL fetches may use: its deadline, this gate and context."""
        return FetchBudget.start(settings, user_id, self)


@dataclass(frozen=True)
class FetchBudget:
    """What the URL fetches of one request may use: one deadline for all its records (not a
    timeout each), and the per-user gate."""

    deadline: float
    timeout: float
    user_id: str
    gate: FetchGate | None = None
    # Loading the CA bundle costs ~0.05-0.25 s: once per app, not per fetch (a 100-record
    # batch would spend its whole deadline on it).
    verify: ssl.SSLContext | bool = True

    @classmethod
    def start(
        cls, settings: Settings, user_id: str = "", fetcher: UrlFetcher | None = None
    ) -> FetchBudget:
        started = time.monotonic()  # setting up below counts against the deadline too
        gate: FetchGate | None = None
        verify: ssl.SSLContext | bool = True
        if fetcher is not None:
            gate, verify = fetcher.gate, fetcher.tls()
        timeout = settings.url_fetch_timeout
        return cls(started + timeout, timeout, user_id, gate, verify)

    def fetch(self, url: str, settings: Settings) -> bytes:
        if self.gate is None:
            return self._fetch(url, settings)
        with self.gate.slot(self.user_id, self.deadline):
            return self._fetch(url, settings)

    def _fetch(self, url: str, settings: Settings) -> bytes:
        return fetch_image(
            url,
            max_bytes=settings.max_upload_bytes,
            timeout=self.timeout,
            allow_hosts=settings.url_allow_hosts,
            deadline=self.deadline,
            verify=self.verify,
        )


def record_bytes(
    record: dict[str, Any], settings: Settings, budget: FetchBudget | None = None
) -> bytes:
    """The image of one batch record: ``_base64``, ``_url`` (SSRF-guarded, within the
    request's ``budget``), or ``_raw`` bytes that a multipart endpoint put there (JSON cannot
    carry bytes, so clients cannot)."""
    if record.get("_raw") == b"" or record.get("_base64") == "":
        raise InvalidInput("The image is empty (0 bytes).", code="empty_image")
    if isinstance(record.get("_raw"), bytes):
        return bytes(record["_raw"])
    if record.get("_base64"):
        return decode_base64(str(record["_base64"]), settings.max_upload_bytes)
    if record.get("_url"):
        return (budget or FetchBudget.start(settings)).fetch(str(record["_url"]), settings)
    raise InvalidInput("A record needs '_url' or '_base64'.", code="required")
