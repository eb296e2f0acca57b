"""embed.gpu_jpeg's checks (tests/embed/gpu_jpeg_checks.py) in a pytest process of their own.

In the suite's one process, these checks followed by tests/embed/test_inference.py left
test_pipeline.py's forked DataLoader workers hanging in ``cv2.setNumThreads`` (reproduced with
those three files; not with any two of them). Running the checks apart keeps the suite's process
as the other tests expect; scripts/gpu_check.sh runs the file directly on a GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_jpeg_checks_pass_in_their_own_process():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/embed/gpu_jpeg_checks.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout
