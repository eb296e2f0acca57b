"""Claims of docs/index.md and docs/benchmarks.md that no other test proves.

* FAISS searches with one OpenMP thread by default and ``CXR_FAISS_THREADS`` threads when set
  (checked in a fresh process: the thread count is process-wide);
* the IVF-PQ path through the engine fetches k·rerank candidates (the depth tuned to the recall
  target; 20·k, at least 200, untuned) and re-scores them exactly, so on a small index tuned to
  recall 1.0 its top-k equals brute force over the stored vectors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.index.conftest import make_records

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import faiss
from index.faiss_index import set_search_threads
faiss.omp_set_num_threads(7)  # whatever the process had before
print(set_search_threads(), faiss.omp_get_max_threads())
"""


@pytest.mark.parametrize("env_value,expected", [(None, 1), ("3", 3), ("", 1), ("zero", 1)])
def test_faiss_threads_default_one_and_env_honoured(env_value, expected):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    env.pop("CXR_FAISS_THREADS", None)
    if env_value is not None:
        env["CXR_FAISS_THREADS"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120,
                         cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(expected), str(expected)]


def test_engine_open_sets_the_faiss_threads(tmp_path, embedder, monkeypatch):
    import faiss

    from index.builder import build_index
    from index.engine import SearchEngine

    build_index(make_records(tmp_path / "imgs", 12), tmp_path / "idx", embedder=embedder, workers=0, progress=False)
    for env_value, expected in ((None, 1), ("2", 2)):
        if env_value is None:
            monkeypatch.delenv("CXR_FAISS_THREADS", raising=False)
        else:
            monkeypatch.setenv("CXR_FAISS_THREADS", env_value)
        faiss.omp_set_num_threads(5)
        engine = SearchEngine.open(tmp_path / "idx", embedder=embedder)
        try:
            assert faiss.omp_get_max_threads() == expected
        finally:
            engine.close()


@pytest.fixture(scope="module")
def ivfpq_engine(tmp_path_factory, embedder):
    from index.builder import build_index
    from index.engine import SearchEngine

    tmp = tmp_path_factory.mktemp("ivfpq")
    # PQ trains 256 centroids per sub-quantizer: the smallest index that can be IVF-PQ at all
    report = build_index(make_records(tmp / "imgs", 300), tmp / "idx", embedder=embedder, index_type="ivfpq",
                         workers=0, progress=False, recall=1.0)
    assert report.index_type == "ivfpq"
    engine = SearchEngine.open(tmp / "idx", embedder=embedder)
    yield engine
    engine.close()


@pytest.mark.parametrize("k", [1, 5, 10])
def test_ivfpq_search_through_the_engine_is_exact_top_k(ivfpq_engine, k):
    from index.selection import rerank_depth

    engine = ivfpq_engine
    assert engine.vindex.spec.params["tuning"]["recall_target"] == 1.0
    ids = np.sort(engine.table.ids)
    vectors = engine.table.get(ids).astype(np.float64)
    for case_id in ids[::37]:
        # every view: the unfiltered IVF-PQ path (the default keeps the query's view family, a filter)
        result = engine.search(int(case_id), k=k, exclude_same_patient=False, with_attention=False,
                               view_scope="any")
        assert result.meta["index_type"] == "ivfpq" and not result.meta["exact"]
        # k·rerank candidates asked for and re-scored, not just k
        assert rerank_depth(engine.vindex.spec, k) >= 200 and result.meta["reranked"] > k
        sims = vectors @ vectors[np.searchsorted(ids, case_id)]
        sims[ids == case_id] = -np.inf  # the query case itself is never its own neighbour
        exact = np.sort(sims)[::-1][:k]
        got = np.array([h.case.id for h in result.hits])
        got_sims = np.array([h.similarity for h in result.hits])
        assert len(got) == k and len(set(got.tolist())) == k
        # The untrained test encoder puts all cases within ~1e-4 of cosine 1, where PQ codes alone are off by
        # more than that: similarities equal to the exact dot products (1e-6, float32) show the re-scoring,
        # and the k-th best equal to brute force's shows that no better case was missed.
        np.testing.assert_allclose(got_sims, sims[np.searchsorted(ids, got)], atol=1e-6)
        np.testing.assert_allclose(got_sims, exact, atol=1e-6)
