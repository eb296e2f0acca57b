"""FAISS searches keep working after pytorch-metric-learning patched faiss.

``faiss.contrib.torch_utils`` (imported by pytorch-metric-learning) replaces
``Index.search`` with a wrapper that takes no search parameters; in one process
that trains or evaluates and then searches, filtered searches must still work.
Run in a subprocess so the patch does not leak into other tests.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import numpy as np
import faiss.contrib.torch_utils  # the patch pytorch-metric-learning applies
from index.faiss_index import VectorIndex
from index.selection import spec_for

rng = np.random.default_rng(0)
x = rng.normal(size=(500, 16)).astype("float32")
x /= np.linalg.norm(x, axis=1, keepdims=True)
ids = np.arange(500, dtype=np.int64) * 2 + 1
for kind in ("flat", "ivf", "hnsw"):
    vi = VectorIndex.build(spec_for(kind, len(x), 16), x, ids, 16)
    allowed = ids[::5]
    _, got = vi.search(x[:1], 5, allowed=allowed)
    assert set(got[0]) <= set(allowed), (kind, got)
    _, got = vi.search(x[:1], 5, excluded=ids[:1])
    assert ids[0] not in got[0], (kind, got)
    _, got = vi.search(x[:1], 5)
    assert got.shape == (1, 5)
print("ok")
"""


def test_filtered_search_after_torch_utils_patch():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
