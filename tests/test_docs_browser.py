"""/docs and /redoc in a real browser (Chromium through Playwright, as tests/test_map_browser.py):
the vendored Swagger UI and ReDoc render the API's operations under the service's own Content
Security Policy, and no request leaves the server.

Skipped when Chromium is missing; .ci/run fails if these tests were skipped."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.live import running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt: chromium)"),
]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'docs.db'}"
    with running_server(url) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def _open(browser: Browser, url: str, ready: str) -> dict[str, Any]:
    """Open ``url``, wait for the selector ``ready``; every request, CSP report and page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    seen: dict[str, Any] = {"requests": [], "console": [], "errors": []}
    context.on("request", lambda request: seen["requests"].append(request.url))
    page.on("console", lambda message: seen["console"].append(message.text))
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    try:
        response = page.goto(url)
        assert response is not None and response.status == 200
        seen["csp"] = response.headers.get("content-security-policy", "")
        page.wait_for_selector(ready)
        seen["texts"] = page.locator(ready).all_inner_texts()
        seen["title"] = page.title()
    finally:
        context.close()
    return seen


def _assert_stays_home(seen: dict[str, Any], base: str) -> None:
    outside = [u for u in seen["requests"] if not u.startswith((f"{base}/", "blob:", "data:"))]
    assert outside == []
    assert any(u.endswith("/openapi.json") for u in seen["requests"])
    assert "default-src 'self'" in seen["csp"]
    blocked = [m for m in seen["console"] if "Content Security Policy" in m]
    assert blocked == [] and seen["errors"] == []


def test_swagger_ui_lists_the_operations_from_this_server_only(browser: Browser, base: str) -> None:
    seen = _open(browser, f"{base}/docs", ".opblock-summary-path")
    paths = {text.strip().replace("\u200b", "") for text in seen["texts"]}
    assert {"/v1/reports", "/v1/aggregates", "/v1/tiles/{z}/{x}/{y}.mvt"} <= paths, paths
    _assert_stays_home(seen, base)


def test_redoc_lists_the_operations_from_this_server_only(browser: Browser, base: str) -> None:
    seen = _open(browser, f"{base}/redoc", "li[role=menuitem]")
    assert len(seen["texts"]) > 20
    assert any("Aggregates" in text for text in seen["texts"]), seen["texts"][:5]
    _assert_stays_home(seen, base)
