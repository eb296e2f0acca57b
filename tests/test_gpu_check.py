"""scripts/gpu_check.sh --dry-run: every step of the GPU check runs (tiny, on the CPU) and leaves its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, CXR_SHARED_DATA=str(tmp_path / "no-data"))
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "dry run" in (out / "device.txt").read_text()
    assert "skipped" in (out / "pytest_gpu.log").read_text()  # no GPU here: the GPU tests skip, not fail
    embed_log = (out / "bench_embed.log").read_text()
    assert '"gpu_jpeg_img_s"' in embed_log and '"gpu_jpeg_unreadable": 0' in embed_log
    rows = json.loads((out / "bench_index_gpu.json").read_text())
    assert {r["type"] for r in rows} == {"cpu-flat", "cpu-ivf"} and all(r["recall_at_10"] > 0.9 for r in rows)
    assert subprocess.run(["bash", "scripts/gpu_check.sh", "--bogus"], cwd=PROJECT_ROOT,
                          capture_output=True).returncode == 2
