"""``cxr demo`` end to end on a tiny generated corpus: build, serve, reuse, Ctrl-C, clear errors."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cli.commands import demo
from tests.conftest import PROJECT_ROOT
from tests.ui.conftest import base_env, free_port, make_xray

pytestmark = pytest.mark.slow


def _kermany_corpus(data: Path) -> Path:
    """DATA/chest_xray/train/{NORMAL,PNEUMONIA}/ in the public release's names."""
    import numpy as np

    rng = np.random.default_rng(1)
    for cls, side, names in (
        ("NORMAL", "right", [f"IM-{p:04d}-0001.jpeg" for p in range(1, 6)]),
        ("PNEUMONIA", "left", [f"person{p}_bacteria_{p}.jpeg" for p in range(1, 6)]),
    ):
        folder = data / "chest_xray" / "train" / cls
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            make_xray(rng, side).save(folder / name)
    return data


@pytest.fixture(scope="module")
def demo_setup(tmp_path_factory, tiny_index):
    tmp = tmp_path_factory.mktemp("ui_demo")
    data = _kermany_corpus(tmp / "data")
    ckpt = tiny_index[0].parent / "tiny.pt"
    return tmp, data, ckpt


def _demo_cmd(data: Path, index: Path, ckpt: Path, api: int, ui: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli", "demo", "--data", str(data), "--index", str(index),
            "--model", str(ckpt), "--api-port", str(api), "--ui-port", str(ui), "--ready-timeout", "240",
            *extra]


def test_cold_then_warm_start(demo_setup):
    tmp, data, ckpt = demo_setup
    index = tmp / "index"
    cold = subprocess.run(_demo_cmd(data, index, ckpt, free_port(), free_port(), "--exit-when-ready"),
                          cwd=PROJECT_ROOT, env=base_env(tmp), capture_output=True, text=True, timeout=600)
    assert cold.returncode == 0, cold.stdout[-2000:] + cold.stderr[-3000:]
    assert "Building the demo index" in cold.stdout and "Ready in" in cold.stdout
    assert re.search(r"Page: http://127\.0\.0\.1:\d+", cold.stdout)
    keys = re.findall(r"shown once\): (\S+)", cold.stdout)
    assert len(keys) == 1 and len(keys[0]) >= 24
    assert (index / "CURRENT").is_file()

    warm = subprocess.run(_demo_cmd(data, index, ckpt, free_port(), free_port(), "--exit-when-ready"),
                          cwd=PROJECT_ROOT, env=base_env(tmp), capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stdout[-2000:] + warm.stderr[-3000:]
    assert "Reusing the index" in warm.stdout and "Building" not in warm.stdout
    assert re.findall(r"shown once\): (\S+)", warm.stdout) != keys  # a fresh key per run


def test_ctrl_c_stops_both_children(demo_setup):
    tmp, data, ckpt = demo_setup
    api, ui = free_port(), free_port()
    log = tmp / "demo.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(_demo_cmd(data, tmp / "index", ckpt, api, ui), cwd=PROJECT_ROOT,
                                env=base_env(tmp), stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 400
        while "Press Ctrl-C" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        out = log.read_text()
        assert "Press Ctrl-C" in out, out[-3000:]
        key = re.search(r"shown once\): (\S+)", out).group(1)
        # both children really serve, and the key guards the API
        assert httpx.get(f"http://127.0.0.1:{api}/v1/stats", timeout=10).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{api}/v1/stats", headers={"X-API-Key": key}, timeout=10).json()[
            "cases"] == 10
        assert httpx.get(f"http://127.0.0.1:{ui}/_stcore/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for port in (api, ui):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert "Traceback" not in log.read_text()


def test_missing_data_is_a_clear_error(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--data", str(tmp_path / "nowhere"), "--index",
         str(tmp_path / "idx"), "--api-port", str(free_port()), "--ui-port", str(free_port())],
        cwd=PROJECT_ROOT, env=base_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 2
    assert "no data folder found" in res.stderr and "CXR_DATA_DIR" in res.stderr
    assert "Traceback" not in res.stderr


def test_data_dir_resolution_and_specs(tmp_path, monkeypatch):
    (tmp_path / "chest_xray").mkdir()
    (tmp_path / "nih-chestxray14-subset").mkdir()
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path))
    assert demo.resolve_data_dir(None) == tmp_path.resolve()
    assert demo.dataset_specs(tmp_path) == [f"nih14:{tmp_path / 'nih-chestxray14-subset'}",
                                            f"kermany:{tmp_path / 'chest_xray'}"]
    empty = tmp_path / "empty"
    empty.mkdir()
    from embed.errors import DatasetError

    with pytest.raises(DatasetError, match="holds none of"):
        demo.dataset_specs(empty)


def test_busy_port_is_reported_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "cli", "demo", "--index", str(tmp_path / "idx"), "--api-port", str(port),
             "--ui-port", str(free_port())],
            cwd=PROJECT_ROOT, env=base_env(tmp_path), capture_output=True, text=True, timeout=120,
        )
    assert res.returncode == 2 and "--api-port" in res.stderr
    assert not (tmp_path / "idx").exists()


def test_index_for_another_model_is_not_reused(tiny_index, tmp_path):
    import torch

    from embed.models import create_model, save_checkpoint
    from embed.standardize import StandardizeConfig

    index_dir = tiny_index[0]
    same = index_dir.parent / "tiny.pt"
    assert demo.index_is_usable(index_dir, same)[0]
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint(other, create_model("cxr_test_tiny"), std_cfg=StandardizeConfig(size=64), labels=[])
    usable, why = demo.index_is_usable(index_dir, other)
    assert not usable and "does not match" in why
    assert not demo.index_is_usable(tmp_path / "none", same)[0]
