"""The console in a real browser: Debian's chromium driven by Playwright (the Python
package only; the system browser, nothing downloaded at run time), against the console
process the test stack started, as a person would use it: search an order, read its saga
page, replay a dead letter."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import psycopg
import pytest

from choreo.outbox import deadletter
from choreo.stack.settings import StackSettings
from tests.console.conftest import Letter

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and that it is a PNG at all)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture
def browser_page():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM} (Debian's chromium; infra/test.sh installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def test_search_an_order_read_its_saga_and_replay_a_dead_letter(
        running_services: StackSettings, slow_order: str, letter: Letter,
        browser_page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser_page
    page.goto(f"http://127.0.0.1:{running_services.console_port}/")
    assert page.locator("h1").inner_text() == "Sagas"

    page.fill("#search", slow_order[:18])
    page.click("#search-go")
    page.click(f"#orders a[href='/sagas/{slow_order}']")
    page.wait_for_url(f"**/sagas/{slow_order}")

    assert page.locator("#status").get_attribute("data-status") == "CONFIRMED"
    timeline = page.locator("#timeline tr").all_inner_texts()[1:]
    assert [row.split("\t")[1] for row in timeline] == [
        "OrderPlaced", "StockReserved", "PaymentCaptured", "OrderConfirmed"]
    assert page.locator("#waterfall tr").count() > 10
    slowest = page.locator("#waterfall tr.slowest")
    assert slowest.count() == 1
    assert slowest.get_attribute("data-service") == "payments"
    assert "POST /v1/charges" in slowest.inner_text()
    assert page.locator("#slowest-mark").is_visible()
    assert page.locator("#hops tr").count() >= 4
    bar = slowest.locator(".bar span").bounding_box()
    assert bar is not None and bar["width"] > 50  # the psp wait is most of the saga

    shot = tmp_path / "saga.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width >= 1000 and height >= 600 and shot.stat().st_size > 30_000
    print(f"screenshot: {shot}")

    page.click(f"#saga-dead-letters tr[data-seq='{letter.seq}'] button[data-action=replay]")
    page.wait_for_url(f"**/dead-letters/payments/{letter.seq}?requested=replay")
    assert "replay of #" in page.locator("#notice").inner_text()
    assert page.locator("#entry-status").inner_text() == "replay"
    page.screenshot(path=str(tmp_path / "dead-letter.png"), full_page=True)
    with psycopg.connect(running_services.database_dsn("payments")) as conn:
        entry = deadletter.get_entry(conn, letter.seq)
    assert entry is not None and entry.status == "replay"
