"""Fetch an image by URL without letting callers reach internal addresses (SSRF guard)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from vize.errors import InvalidInput, PayloadTooLarge

MAX_REDIRECTS = 5


class UrlRefused(InvalidInput):
    code = "url_refused"


def _check_host(host: str, port: int, allow_hosts: list[str]) -> None:
    if host in allow_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"Cannot resolve host {host!r}.", code="url_unreachable") from exc
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if not addr.is_global or addr.is_multicast:
            raise UrlRefused(f"URL host {host!r} points to a non-public address; refused.")


def check_url(url: str, allow_hosts: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("Only http and https image URLs are accepted.")
    if not parts.hostname:
        raise UrlRefused("The image URL has no host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    _check_host(parts.hostname, port, allow_hosts)


def fetch_image(url: str, *, max_bytes: int, timeout: float, allow_hosts: list[str]) -> bytes:
    """GET with a size cap and timeouts, re-checking the address at every redirect."""
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allow_hosts)
            try:
                with client.stream("GET", url) as resp:
                    if resp.is_redirect and resp.headers.get("location"):
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code != 200:
                        raise InvalidInput(
                            f"Fetching the image URL answered HTTP {resp.status_code}.",
                            code="url_unreachable",
                        )
                    return _read_capped(resp, max_bytes)
            except httpx.HTTPError as exc:
                raise InvalidInput(
                    f"Could not fetch the image URL: {type(exc).__name__}.",
                    code="url_unreachable",
                ) from exc
    raise InvalidInput("Too many redirects fetching the image URL.", code="url_unreachable")


def _read_capped(resp: httpx.Response, max_bytes: int) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Image at URL is larger than {max_bytes // (1024 * 1024)} MB.")
    chunks, total = [], 0
    for chunk in resp.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"Image at URL is larger than {max_bytes // (1024 * 1024)} MB.")
        chunks.append(chunk)
    return b"".join(chunks)
