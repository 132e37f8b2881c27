"""The SSRF guard of URL fetching: refusals, and the pinned address it connects to."""

from __future__ import annotations

import pytest

from vize.errors import InvalidInput
from vize.services.fetch import UrlRefused, check_url, fetch_image


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://127.1/", "http://0x7f000001/", "http://2130706433/",
        "http://localhost:8000/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
        "http://169.254.169.254/", "http://100.64.0.1/", "http://[::1]/", "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://224.0.0.1/",
        "gopher://example.com/", "file:///etc/passwd", "http://[::1", "http://h:70000/",
        "https://user:pw@/x",
    ],
)  # fmt: skip
def test_refused(url: str) -> None:
    with pytest.raises(UrlRefused) as err:
        check_url(url, [])
    assert err.value.code == "url_refused" and err.value.status == 400


def test_unresolvable_host_is_unreachable_not_an_error() -> None:
    with pytest.raises(InvalidInput) as err:
        check_url("http://no-such-host.invalid/x.png", [])
    assert err.value.code == "url_unreachable"
    with pytest.raises(InvalidInput) as err:
        check_url("http://" + "a" * 70 + ".invalid/", [])  # a DNS label over 63: UnicodeError
    assert err.value.code == "url_unreachable"


def test_allowed_host_is_pinned_to_its_address() -> None:
    target = check_url("http://127.0.0.1:8080/a/b.png?x=1#frag", ["127.0.0.1"])
    assert target.url == "http://127.0.0.1:8080/a/b.png?x=1#frag"
    assert (target.host_header, target.server_name) == ("127.0.0.1:8080", "127.0.0.1")


def test_pinned_url_replaces_the_name_and_keeps_the_rest() -> None:
    target = check_url("https://user:secret@localhost/x.png", ["localhost"])
    assert target.url.startswith(("https://127.0.0.1/", "https://[::1]/"))
    assert "secret" not in target.url and target.host_header == "localhost"
    assert target.server_name == "localhost"


def test_fetch_refuses_before_connecting() -> None:
    with pytest.raises(UrlRefused):
        fetch_image("http://127.0.0.1:9/x", max_bytes=100, timeout=1, allow_hosts=[])


def test_connection_failure_is_unreachable() -> None:
    # Port 9 (discard) on the loopback: allowed here, and nothing listens.
    with pytest.raises(InvalidInput) as err:
        fetch_image("http://127.0.0.1:9/x", max_bytes=100, timeout=2, allow_hosts=["127.0.0.1"])
    assert err.value.code == "url_unreachable"
