"""Fetch an image by URL without letting callers reach internal addresses (SSRF guard)."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from vize.config import Settings
from vize.errors import InvalidInput, PayloadTooLarge
from vize.services.imaging import decode_base64

MAX_REDIRECTS = 5
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 names for IPv4 addresses, via a gateway


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


def _public(addr: Address) -> bool:
    """Global unicast, and so is any IPv4 address it carries (6to4, Teredo, NAT64 forms
    reach e.g. 127.0.0.1 through a gateway)."""
    if not addr.is_global or addr.is_multicast:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        inner = addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if inner is None and addr in NAT64:
            inner = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if inner is not None:
            return _public(inner)
    return True


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


def fetch_image(url: str, *, max_bytes: int, timeout: float, allow_hosts: list[str]) -> bytes:
    """GET with a size cap and one deadline for all of it (redirects, and a body trickling in
    a byte at a time, which per-read timeouts never stop), re-checking every redirect."""
    deadline = time.monotonic() + timeout
    # trust_env=False: a proxy from the environment would connect to the name, not the checked
    # address, and void the guard.
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
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
            f"Fetching the image URL took longer than {timeout:g} s.", code="url_unreachable"
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


def record_bytes(record: dict[str, Any], settings: Settings) -> bytes:
    """The image of one batch record: ``_base64``, ``_url`` (SSRF-guarded), or ``_raw`` bytes
    that a multipart endpoint put there (JSON cannot carry bytes, so clients cannot)."""
    if isinstance(record.get("_raw"), bytes):
        return bytes(record["_raw"])
    if record.get("_base64"):
        return decode_base64(str(record["_base64"]), settings.max_upload_bytes)
    if record.get("_url"):
        return fetch_image(
            str(record["_url"]),
            max_bytes=settings.max_upload_bytes,
            timeout=settings.url_fetch_timeout,
            allow_hosts=settings.url_allow_hosts,
        )
    raise InvalidInput("A record needs '_url' or '_base64'.", code="required")
