"""FAISS wrapper: exact results against numpy, id selectors, add/remove, save/load, mmap, GPU."""

from __future__ import annotations

import numpy as np
import pytest

from index.faiss_index import VectorIndex, gpu_count, normalize
from index.selection import IndexSpec, spec_for
from index.vectors import VectorTable, save_vectors

DIM = 16


def clustered(n: int, seed: int = 0, centers: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, DIM))
    x = c[rng.integers(0, centers, n)] + 0.3 * rng.normal(size=(n, DIM))
    return normalize(x.astype(np.float32))


def brute(q: np.ndarray, x: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = x @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return sims[order], ids[order]


@pytest.fixture(scope="module")
def data():
    x = clustered(2000)
    ids = np.arange(2000, dtype=np.int64) * 3 + 5  # ids are not positions
    return x, ids


def test_flat_search_matches_numpy(data):
    x, ids = data
    vi = VectorIndex.build(IndexSpec("flat"), x, ids, DIM)
    q = clustered(5, seed=1)
    sims, got = vi.search(q, 10)
    for j in range(len(q)):
        es, eid = brute(q[j], x, ids, 10)
        np.testing.assert_allclose(sims[j], es, atol=1e-5)
        assert list(got[j]) == list(eid)


def test_selectors_allowed_and_excluded_match_numpy(data):
    x, ids = data
    vi = VectorIndex.build(IndexSpec("flat"), x, ids, DIM)
    q = clustered(1, seed=2)[0]
    allowed = ids[::7]
    sims, got = vi.search(q[None], 10, allowed=allowed)
    mask = np.isin(ids, allowed)
    es, eid = brute(q, x[mask], ids[mask], 10)
    assert list(got[0]) == list(eid)
    excluded = brute(q, x, ids, 3)[1]  # the 3 best are excluded
    sims, got = vi.search(q[None], 5, excluded=excluded)
    assert not set(got[0]) & set(excluded)
    es, eid = brute(q, x, ids, 8)
    assert list(got[0]) == list(eid[3:8])


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_bitmap_selector_equals_id_list(data, kind):
    x, ids = data
    vi = VectorIndex.build(spec_for(kind, len(x), DIM), x, ids, DIM)
    allowed = ids[ids % 2 == 1]  # half the cases
    mask = np.zeros(ids.max() + 1, bool)
    mask[allowed] = True
    q = clustered(5, seed=9)
    by_mask = vi.search(q, 10, allowed_mask=mask)[1]
    assert np.array_equal(by_mask, vi.search(q, 10, allowed=allowed)[1])
    assert set(by_mask.ravel().tolist()) <= set(allowed.tolist())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indices_have_high_recall(data, kind):
    x, ids = data
    vi = VectorIndex.build(spec_for(kind, len(x), DIM), x, ids, DIM)
    q = clustered(20, seed=3)
    _, got = vi.search(q, 10)
    recall = np.mean([len(set(got[j]) & set(brute(q[j], x, ids, 10)[1])) / 10 for j in range(len(q))])
    assert recall >= 0.9


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_add_then_remove_by_id(data, kind):
    x, ids = data
    vi = VectorIndex.build(spec_for(kind, 1500, DIM), x[:1500], ids[:1500], DIM)
    vi.add(x[1500:], ids[1500:])
    assert vi.ntotal == 2000
    q = x[1700]  # an added vector finds itself
    assert vi.search(q[None], 1)[1][0][0] == ids[1700]
    assert vi.remove(ids[1700:1701]) == 1
    assert vi.ntotal == 1999
    assert ids[1700] not in set(vi.search(q[None], 10)[1][0])


def test_hnsw_cannot_remove(data):
    x, ids = data
    vi = VectorIndex.build(spec_for("hnsw", 500, DIM), x[:500], ids[:500], DIM)
    assert not vi.can_remove
    with pytest.raises(Exception, match="rebuild"):
        vi.remove(ids[:1])


def test_ivf_mmap_load_is_read_only_and_identical(tmp_path, data):
    x, ids = data
    spec = spec_for("ivf", len(x), DIM)
    vi = VectorIndex.build(spec, x, ids, DIM)
    vi.save(tmp_path)
    mm = VectorIndex.load(tmp_path, spec)  # IVF: memory-mapped by default
    assert mm.read_only
    q = clustered(5, seed=4)
    np.testing.assert_array_equal(mm.search(q, 10)[1], vi.search(q, 10)[1])
    with pytest.raises(Exception, match="read-only"):
        mm.add(x[:1], np.array([99999]))
    ram = VectorIndex.load(tmp_path, spec, mmap=False)
    assert not ram.read_only and ram.ntotal == len(x)


def test_save_is_atomic_no_tmp_left(tmp_path, data):
    x, ids = data
    VectorIndex.build(IndexSpec("flat"), x[:10], ids[:10], DIM).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss"]


def test_vector_table_exact_search_matches_numpy(tmp_path, data):
    x, ids = data
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(ids))
    save_vectors(tmp_path, ids[perm], x[perm])  # stored sorted by id whatever the input order
    t = VectorTable(tmp_path)
    assert np.all(np.diff(t.ids) > 0)
    np.testing.assert_array_equal(t.get(ids[[3, 1]]), x[[3, 1]])
    q = clustered(1, seed=6)[0]
    cand = ids[100:400]
    sims, got = t.exact_search(q, 10, cand)
    es, eid = brute(q, x[100:400], cand, 10)
    assert list(got) == list(eid)
    np.testing.assert_allclose(sims, es, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0, reason="no CUDA GPU visible to FAISS (faiss-cpu or no GPU): GPU path not testable here")
def test_gpu_search_equals_cpu(data):  # pragma: no cover - needs faiss-gpu and a GPU
    x, ids = data
    cpu = VectorIndex.build(IndexSpec("flat"), x, ids, DIM)
    gpu = VectorIndex(cpu.index, cpu.spec, use_gpu=True)
    q = clustered(5, seed=7)
    assert gpu._gpu_index is not None
    np.testing.assert_array_equal(gpu.search(q, 10)[1], cpu.search(q, 10)[1])


def test_ivfpq_with_exact_rerank_recovers_recall(data):
    from index.vectors import rerank

    x, ids = data
    spec = IndexSpec("ivfpq", {"nlist": 16, "nprobe": 16, "pq_m": 4, "pq_bits": 8, "train_size": 2000})
    vi = VectorIndex.build(spec, x, ids, DIM)
    q = clustered(20, seed=8)
    lookup = {int(i): v for i, v in zip(ids, x)}
    raw, fixed = [], []
    for j in range(len(q)):
        truth = set(brute(q[j], x, ids, 10)[1])
        _, cand = vi.search(q[j][None], 100)
        raw.append(len(set(cand[0][:10]) & truth) / 10)
        vecs = np.stack([lookup.get(int(i), np.zeros(DIM, np.float32)) for i in cand[0]])
        sims, top = rerank(q[j], cand[0], vecs, 10)
        assert list(sims) == sorted(sims, reverse=True)
        fixed.append(len(set(top) & truth) / 10)
    assert np.mean(fixed) >= 0.95 and np.mean(fixed) >= np.mean(raw)
