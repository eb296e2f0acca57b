"""Page timings in headless Chromium: upload to results, and neighbour click to results.

Starts the API (uvicorn) over an index and the page (streamlit run), then for each query
film: uploads it and waits until the page shows its neighbours and the viewer, then clicks
"Search from this case" on the first neighbour and waits for that search's neighbours.
Prints the medians (and every figure) as JSON; optionally saves full-page screenshots.

    .venv/bin/python scripts/bench_page.py --index out/demo_index --queries 5 --screenshots docs/
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-page-key"
WAIT_MS = 300_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, ok, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready in {timeout:.0f} s")


def queries(data: Path, n: int) -> list[Path]:
    """Films of several sources (covid-chestxray, NIH, a DICOM), in a fixed order."""
    covid = sorted((data / "covid-chestxray-dataset" / "images").glob("*.jp*g"))[::37]
    nih = sorted((data / "nih-chestxray14-subset").rglob("*.png"))[::97]
    dicom = [data / "dicom" / "siim-cr-chest.dcm", data / "dicom" / "rsna-cr-chest.dcm"]
    mixed = [p for trio in zip(covid, nih, dicom + covid) for p in trio if p.is_file()]
    return mixed[:n]


def shoot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its own container, so the viewport is made tall."""
    page.set_viewport_size({"width": 1400, "height": 3000})
    page.wait_for_timeout(2500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--screenshots", type=Path, default=None, help="folder for page_*.png (e.g. docs/)")
    ap.add_argument("--shot-query", type=int, default=2, help="which query's pages to screenshot (default: the DICOM)")
    ap.add_argument("--chromium", default=os.environ.get("CXR_CHROMIUM") or shutil.which("chromium"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench_page_"))
    env = {**os.environ, "CXR_API_INDEX_DIR": str(args.index.resolve()), "CXR_API_API_KEYS": KEY,
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "HOME": str(tmp)}
    api_port, ui_port = free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "search_api.app:create_app", "--host",
                          "127.0.0.1", "--port", str(api_port), "--log-level", "warning"], cwd=ROOT, env=env,
                         stdout=open(tmp / "api.log", "wb"), stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.headless",
                          "true", "--server.address", "127.0.0.1", "--server.port", str(ui_port),
                          "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"], cwd=ROOT,
                         env={**env, "CXR_UI_API_URL": f"http://127.0.0.1:{api_port}", "CXR_UI_API_KEY": KEY},
                         stdout=open(tmp / "page.log", "wb"), stderr=subprocess.STDOUT),
    ]
    upload_s: list[float] = []
    click_s: list[float] = []
    try:
        wait(f"http://127.0.0.1:{api_port}/health", lambda r: r.json().get("index_loaded"))
        wait(f"http://127.0.0.1:{ui_port}/_stcore/health", lambda r: r.status_code == 200)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for i, film in enumerate(queries(args.data, args.queries)):
                page.goto(f"http://127.0.0.1:{ui_port}", wait_until="domcontentloaded")
                page.get_by_text("Chest X-ray similar-case search").wait_for(timeout=WAIT_MS)
                t0 = time.monotonic()
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(film))
                page.get_by_text(re.compile(r"^[0-9]+ similar cases$")).wait_for(timeout=WAIT_MS)
                page.locator("iframe").first.content_frame.locator("#q-stack img.film").wait_for(timeout=WAIT_MS)
                upload_s.append(time.monotonic() - t0)
                if args.screenshots and i == args.shot_query:
                    shoot(page, args.screenshots / "page_results.png")
                t0 = time.monotonic()
                page.get_by_role("button", name="Search from this case").first.click()
                page.get_by_text(re.compile(r"^Searching from indexed case \d+")).wait_for(timeout=WAIT_MS)
                page.get_by_text(re.compile(r"^[0-9]+ similar cases$")).wait_for(timeout=WAIT_MS)
                page.locator("iframe").first.content_frame.locator("#q-stack img.film").wait_for(timeout=WAIT_MS)
                click_s.append(time.monotonic() - t0)
                if args.screenshots and i == args.shot_query:
                    frame = page.locator("iframe").first.content_frame
                    frame.locator("button[data-z='q'][data-act='in']").click()
                    frame.locator("button.preset", has_text="Lungs").click()
                    shoot(page, args.screenshots / "page_from_neighbour.png")
                page.get_by_role("button", name="Back to my query").click()
            browser.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"queries": len(upload_s),
                      "upload_to_results_s": {"median": round(statistics.median(upload_s), 2),
                                              "all": [round(x, 2) for x in upload_s]},
                      "neighbour_click_to_results_s": {"median": round(statistics.median(click_s), 2),
                                                       "all": [round(x, 2) for x in click_s]}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
