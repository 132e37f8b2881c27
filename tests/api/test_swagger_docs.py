"""Issue 15, bug 5: /docs and /recognition/swagger/ load Swagger UI from this server only
(the files of the installed swagger-ui-py package), and link back to the app."""

from __future__ import annotations

import re

import pytest

from tests.inprocess import AppClient

ASSET_RE = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.parametrize("path", ["/docs", "/recognition/swagger/", "/recognition/swagger"])
def test_swagger_ui_is_served_locally(client: AppClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = ASSET_RE.findall(page.text)
    assets = [u for u in urls if not u.startswith("/tasks")]
    assert any("swagger-ui-bundle.js" in u for u in assets), urls
    assert any("swagger-ui.css" in u for u in assets), urls
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not local"
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code)
        assert len(r.content) > 0
    assert 'href="/tasks"' in page.text and "Back to the app" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # The description it renders is this API's.
    assert client.get("/openapi.json").json()["info"]["title"] == "Vize"


def test_the_bundle_is_swagger_ui_5(client: AppClient) -> None:
    """OpenAPI 3.1 (what FastAPI writes) needs Swagger UI 5."""
    js = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', js)
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
