"""The audit page opens in headless Chromium with no console errors and shows the headline.

Needs Debian's `chromium` (installed by .ci/run); skips with the reason when it is absent.
The screenshot is written next to the report (the test prints its path).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.report import write_audit
from tests.audit_data import HOSTILE, build_audit_warehouse
from tests.chromium import Chromium, chromium_binary

pytestmark = pytest.mark.skipif(chromium_binary() is None,
                                reason="headless Chromium not installed (apt-get install chromium; .ci/run does)")

HEADLINE_ROWS = "Array.from(document.querySelectorAll('#headline tbody tr')).map(r => r.innerText.split('\\t'))"
HEADLINE_BOX = "(() => { const r = document.querySelector('#headline').getBoundingClientRect(); " \
               "return [r.width, r.height, r.top]; })()"
PER_LIST_AGREEMENT = ("Array.from(document.querySelectorAll('#per-list tbody tr'))"
                      ".map(r => parseFloat(r.cells[6].textContent))")
SORT_BY_AGREEMENT = "document.querySelectorAll('#per-list th')[6].click()"
IMAGES_LOADED = "Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audit-page")
    warehouse = build_audit_warehouse(root)
    return write_audit(warehouse, "ideal", None, root / "report", against=("reversed", None)).html


def test_page_shows_the_headline_with_no_console_errors(report, tmp_path):
    with Chromium(tmp_path / "profile") as browser:
        browser.open(report.as_uri())
        errors = browser.errors()
        headline = {row[0]: row[1:] for row in browser.evaluate(HEADLINE_ROWS)}
        width, height, top = browser.evaluate(HEADLINE_BOX)
        images = browser.evaluate(IMAGES_LOADED)
        scripts = browser.evaluate("Array.from(document.scripts).map(s => s.textContent.includes('table.sortable'))")
        before = browser.evaluate(PER_LIST_AGREEMENT)
        browser.evaluate(SORT_BY_AGREEMENT)
        ascending = browser.evaluate(PER_LIST_AGREEMENT)
        browser.evaluate(SORT_BY_AGREEMENT)
        descending = browser.evaluate(PER_LIST_AGREEMENT)
        page_text = browser.evaluate("document.body.innerText")
        screenshot = browser.screenshot(report.with_suffix(".png"))
        print(f"screenshot: {screenshot}")

        control = tmp_path / "control.html"
        control.write_text("<!doctype html><title>c</title><script>console.error('control error')</script>")
        browser.open(control.as_uri())
        control_errors = browser.errors()

    assert errors == []
    assert headline["teacher listwise nDCG@10 vs qrels"][:2] == ["1.000", "8 rows"]
    assert headline["retriever order nDCG@10 vs qrels"][1] == "4 lists"
    assert width > 300 and height > 200 and 0 < top < 900  # visible, in the first screen
    assert len(images) >= 8 and all(images)
    assert scripts == [True]  # only the page's table sorter: the passage's <script> arrived as text
    assert ascending == sorted(before) and descending == sorted(before, reverse=True)
    assert ascending[0] < ascending[-1]  # the page sorts the per-list table by the clicked column
    assert HOSTILE in page_text
    assert screenshot.stat().st_size > 50_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert control_errors == ["console: control error"]  # the check does see console errors
