"""One real-browser test: headless Chromium uploads a real CXR to the page served by real processes.

Needs the ``playwright`` Python package (driver only; no browser download) and a
system Chromium (Debian: ``apt-get install chromium``; or set CXR_CHROMIUM).
Skips with a clear message where either is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 180_000


def find_chromium() -> str | None:
    """$CXR_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    explicit = os.environ.get("CXR_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the `playwright` package is not installed (pip install playwright)"
    )
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found: install it (apt-get install chromium) or set CXR_CHROMIUM")
    profile = tmp_path_factory.mktemp("chromium_profile")  # a fresh --user-data-dir
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()


def _shared_cxr(shared_data: Path) -> Path:
    candidates = sorted((shared_data / "covid-chestxray-dataset" / "images").glob("*.jp*g")) or \
        sorted(shared_data.rglob("*.png"))
    if not candidates:
        pytest.skip(f"no chest X-ray image found under {shared_data}")
    return candidates[0]


def test_upload_in_chromium_shows_hits_vote_and_compare(browser_page, ui_server, shared_data, tmp_path):
    page = browser_page
    image = _shared_cxr(shared_data)
    page.goto(ui_server, wait_until="domcontentloaded")
    page.get_by_text("Chest X-ray similar-case search").wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(image))
    page.get_by_text(re.compile(r"^[0-9]+ similar cases$")).wait_for(timeout=WAIT_MS)
    page.get_by_text("kNN vote").wait_for(timeout=WAIT_MS)
    hits = page.get_by_text(re.compile(r"similarity -?[0-9]\.[0-9]{3}"))
    assert hits.count() >= 1
    assert page.get_by_text("Standardized query with the model's attention").count() == 1
    # the vote's probabilities are written out beside the chart
    assert page.locator('[data-testid="stMarkdownContainer"] strong').count() >= 1 + hits.count()
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_timeout(1500)  # let the thumbnails and the chart paint
    page.screenshot(path=str(tmp_path / "ui_results.png"), full_page=True)

    page.get_by_role("button", name="Open beside the query").first.click()
    page.get_by_text("Query beside case").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(tmp_path / "ui_compare.png"), full_page=True)
    assert (tmp_path / "ui_results.png").stat().st_size > 10_000


def test_a_text_file_upload_is_a_message_not_a_trace(browser_page, ui_server, tmp_path):
    page = browser_page
    bad = tmp_path / "notes"  # no extension, not an image
    bad.write_bytes(b"this is not an X-ray\n" * 20)
    page.goto(ui_server, wait_until="domcontentloaded")
    page.get_by_text("Chest X-ray similar-case search").wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(bad))
    page.get_by_text("could not be used as a chest X-ray").wait_for(timeout=WAIT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Traceback").count() == 0


def test_dicom_without_extension_is_searched(browser_page, ui_server, shared_data, tmp_path):
    src = shared_data / "dicom" / "siim-cr-chest.dcm"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    scan = tmp_path / "scan"  # PACS exports often have no extension: the API sniffs the content
    shutil.copyfile(src, scan)
    page = browser_page
    page.goto(ui_server, wait_until="domcontentloaded")
    page.get_by_text("Chest X-ray similar-case search").wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(scan))
    page.get_by_text(re.compile(r"^[0-9]+ similar cases$")).wait_for(timeout=WAIT_MS)
    assert page.get_by_text(re.compile(r"similarity -?[0-9]\.[0-9]{3}")).count() >= 1
    assert page.locator('[data-testid="stAlert"]').count() == 0
