"""Real servers for the page's tests: a tiny index on generated images, the API and the page.

Everything runs as real processes on free localhost ports: the index is built
with ``cxr index build`` and the tiny test model, the API is ``uvicorn`` on the
app factory, the page is ``streamlit run ui/app.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT

API_KEY = "ui-test-key-not-secret"
SIZE = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CXR_HOME": str(tmp / "home"), "CXR_PSEUDONYM_KEY": "test-key-not-secret",
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONUNBUFFERED": "1"})
    for k in ("CXR_API_API_KEYS_FILE", "CXR_API_INDEX_DIR", "CXR_API_MODEL_PATH"):
        env.pop(k, None)
    return env


def make_xray(rng: np.random.Generator, side: str, size: int = 96) -> Image.Image:
    """A crude frontal film: dark lungs, bright mediastinum, a bright opacity on one side."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = 0.25 + 0.5 * np.exp(-((x - 0.5) ** 2) / 0.01)
    cx = 0.3 if side == "left" else 0.7
    img += 0.6 * np.exp(-(((x - cx) ** 2) + (y - 0.55) ** 2) / 0.02)
    img += rng.normal(0, 0.05, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "L")


def make_corpus(root: Path) -> Path:
    """ROOT/<class>/<NIH-style name>.png: 2 classes, 4 patients each with 2-3 images."""
    rng = np.random.default_rng(0)
    for cls, side, first in (("Pneumonia", "left", 10), ("No_findings", "right", 20)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for p in range(4):
            for j in range(2 + p % 2):
                make_xray(rng, side).save(root / cls / f"{first + p:08d}_{j:03d}.png")
    return root


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server with its output in a file (a pipe nobody reads would block it)."""
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def wait_http(url: str, proc: subprocess.Popen, ok, log: Path, timeout: float = 120.0) -> None:
    """Poll url until ok(response) or the process dies / time runs out (then fail with its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log.read_text(errors="replace")
            pytest.fail(f"server exited with {proc.returncode} before ready:\n{out[-3000:]}")
        try:
            if ok(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} not ready after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class APIServer:
    url: str
    key: str
    index_dir: Path
    corpus: Path


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory) -> tuple[Path, Path]:
    """(index dir, corpus dir) built by the real CLI with the tiny test model."""
    import torch

    from embed.models import create_model, save_checkpoint
    from embed.standardize import StandardizeConfig

    tmp = tmp_path_factory.mktemp("ui_index")
    corpus = make_corpus(tmp / "corpus")
    torch.manual_seed(0)
    model = create_model("cxr_test_tiny")
    torch.nn.init.normal_(model.pool.score.weight, std=1.0)  # a non-uniform attention map
    ckpt = tmp / "tiny.pt"
    save_checkpoint(ckpt, model, std_cfg=StandardizeConfig(size=SIZE), labels=["No Finding", "Pneumonia"])
    out = tmp / "index"
    cmd = [sys.executable, "-m", "cli", "index", "build", "--model", str(ckpt), "--out", str(out),
           f"imagefolder:{corpus}"]
    res = subprocess.run(cmd, cwd=PROJECT_ROOT, env=base_env(tmp), capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "invalid choice: 'index'" in res.stderr:
        # `cxr index` not registered in this tree: the same builder through its Python API
        code = ("import sys; from index.builder import build_index; "
                "build_index([sys.argv[1]], sys.argv[2], model=sys.argv[3], progress=False)")
        cmd = [sys.executable, "-c", code, f"imagefolder:{corpus}", str(out), str(ckpt)]
        res = subprocess.run(cmd, cwd=PROJECT_ROOT, env=base_env(tmp), capture_output=True, text=True,
                             timeout=300)
    assert res.returncode == 0, f"index build failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    label_views(out)
    return out, corpus


def label_views(index_dir: Path) -> None:
    """Give the generated films views (every 4th lateral) and the index a view classifier for the tiny model.

    The classifier's weights are zero and its bias says "frontal" (lateral score 0.02): it stands
    for the released model's trained one, so uploads of PNGs get a view the page shows and uses.
    """
    import sqlite3

    from index.manifest import Manifest
    from index.store import STORE_FILE
    from index.views import INDEX_FILE, ViewClassifier

    from tests.conftest import edit_live_generation

    def edit(gen: Path) -> None:
        conn = sqlite3.connect(gen / STORE_FILE)
        conn.execute("UPDATE cases SET view = CASE WHEN id % 4 = 0 THEN 'LATERAL' ELSE 'PA' END")
        conn.commit()
        conn.close()
        m = Manifest.read(gen)
        ViewClassifier(weights=[0.0] * m.embed_dim, bias=-4.0, model_sha256=m.model_sha256).save(gen / INDEX_FILE)

    edit_live_generation(index_dir, edit)


@pytest.fixture(scope="session")
def api_server(tiny_index, tmp_path_factory) -> Iterator[APIServer]:
    """The real API (uvicorn process) over the tiny index, with a required key."""
    index_dir, corpus = tiny_index
    tmp = tmp_path_factory.mktemp("ui_api")
    port = free_port()
    env = base_env(tmp)
    env.update({"CXR_API_INDEX_DIR": str(index_dir), "CXR_API_API_KEYS": API_KEY})
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "search_api.app:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    log = tmp / "api.log"
    proc = start(cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, lambda r: r.status_code == 200 and r.json().get("index_loaded"), log)
        yield APIServer(url, API_KEY, index_dir, corpus)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def ui_server(api_server, tmp_path_factory) -> Iterator[str]:
    """The page served by a real ``streamlit run`` process, pointed at the API."""
    tmp = tmp_path_factory.mktemp("ui_page")
    port = free_port()
    env = base_env(tmp)
    env.update({"CXR_UI_API_URL": api_server.url, "CXR_UI_API_KEY": api_server.key, "HOME": str(tmp)})
    cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "ui" / "app.py"),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal"]
    log = tmp / "page.log"
    proc = start(cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_stcore/health", proc, lambda r: r.status_code == 200, log)
        yield url
    finally:
        stop(proc)
