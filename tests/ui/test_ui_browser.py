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
    page.get_by_text("kNN vote (similarity-weighted)").wait_for(timeout=WAIT_MS)
    hits = page.get_by_text(re.compile(r"similarity -?[0-9]\.[0-9]{3}"))
    assert hits.count() >= 1
    # the vote's shares are written out with their counts
    assert page.locator("[data-testid='cxr-vote'] .cxr-vrow").count() >= 1
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_timeout(1500)  # let the thumbnails and the viewer paint
    page.screenshot(path=str(tmp_path / "ui_results.png"), full_page=True)

    page.get_by_role("button", name="Open in viewer").nth(1).click()
    page.get_by_text(re.compile(r"^Everything recorded for case \d+")).wait_for(timeout=WAIT_MS)
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


# -- the radiologist's page: view, viewer, search from a neighbour, report ------------------------------------

def _frame_png(locator) -> "np.ndarray":
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("L"), dtype=np.float32)


def _viewer(page):
    """The viewer's document (Streamlit serves components.html in an iframe)."""
    handle = page.locator("iframe").first
    handle.wait_for(timeout=WAIT_MS)
    frame = handle.content_frame
    frame.locator("#q-stack img.film").wait_for(timeout=WAIT_MS)
    return frame


def _card_views(page) -> list[str]:
    """The view line of every neighbour card ("PA · age ?, sex ?")."""
    lines = "\n".join(page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()).splitlines()
    return [ln.split(" · ")[0] for ln in lines if re.match(r"^(PA|AP|LATERAL|view \?) · ", ln.strip())]


def test_view_viewer_neighbour_search_and_report(browser_page, ui_server, api_server, tmp_path):
    import numpy as np

    from tests.ui.conftest import make_xray

    page = browser_page
    film = tmp_path / "Doe_Jane_MRN123.png"  # a name that must not reach the API or the report
    make_xray(np.random.default_rng(42), "left").save(film)
    page.goto(ui_server, wait_until="domcontentloaded")
    page.get_by_text("Chest X-ray similar-case search").wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(film))
    page.get_by_text(re.compile(r"^[0-9]+ similar cases$")).wait_for(timeout=WAIT_MS)

    # the view is shown, and used: a frontal query gets no lateral neighbour (a quarter of the index is lateral)
    page.get_by_text(re.compile(r"View: frontal \(estimated by the view classifier")).wait_for(timeout=WAIT_MS)
    assert page.get_by_text("neighbours: frontal films only").count() >= 1
    views = _card_views(page)
    assert views and "LATERAL" not in views
    # the vote: fixed axis, counts, how to read it
    vote = page.locator("[data-testid='cxr-vote']")
    assert vote.count() == 1 and re.search(r"\d+ neighbours?, \d+ patients?", vote.inner_text())
    assert page.get_by_text("How to read this").count() == 1
    page.wait_for_timeout(1000)
    page.screenshot(path=str(tmp_path / "page_results.png"), full_page=True)

    # the viewer: zoom and window/level change the rendered pixels; the overlay toggles
    frame = _viewer(page)
    pane = frame.locator("#q-vp")
    before = _frame_png(pane)
    frame.locator("button[data-z='q'][data-act='in']").click()
    frame.locator("button[data-z='q'][data-act='in']").click()
    page.wait_for_timeout(600)  # Panzoom animates
    zoomed = _frame_png(pane)
    assert np.abs(zoomed - before).mean() > 2.0
    frame.locator("#ovl").uncheck()
    no_overlay = _frame_png(pane)
    frame.locator("button.preset", has_text="Bone").click()
    page.wait_for_timeout(200)
    windowed = _frame_png(pane)
    assert frame.locator("#win-v").inner_text() == "90"
    assert np.abs(windowed - no_overlay).mean() > 2.0 and windowed.std() != no_overlay.std()
    assert frame.locator("#n-stack img.film").count() == 1  # the top neighbour beside the query

    # the report: downloaded, opened, its text checked; no file name of the uploader in it
    with page.expect_download(timeout=WAIT_MS) as dl:
        page.get_by_role("button", name="Download report").click()
    doc = Path(dl.value.path()).read_text(encoding="utf-8")
    for text in ("Similar-case report", "uploaded film", "not a medical device", "neighbours", "patient"):
        assert text in doc, text
    assert "Doe_Jane" not in doc and "MRN123" not in doc
    report_page = page.context.new_page()
    report_page.set_content(doc)
    assert report_page.get_by_text("Vote of the neighbours").count() == 1
    report_page.close()

    # a neighbour clicked into a new search (GET /v1/cases/{id}/similar)
    page.get_by_role("button", name="Search from this case").first.click()
    page.get_by_text(re.compile(r"^Searching from indexed case \d+")).wait_for(timeout=WAIT_MS)
    page.get_by_text(re.compile(r"^[0-9]+ similar cases$")).wait_for(timeout=WAIT_MS)
    page.get_by_text(re.compile(r"View: (PA|LATERAL) \(as recorded in the index\)")).wait_for(timeout=WAIT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_timeout(1000)
    page.screenshot(path=str(tmp_path / "page_from_neighbour.png"), full_page=True)
