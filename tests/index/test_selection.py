"""The index-type rule: exact for small corpora, IVF for large, IVF-PQ over the memory budget, overrides."""

from __future__ import annotations

import pytest

from index.selection import FLAT_MAX, IndexTypeError, choose_index, ivf_nlist, ivf_nprobe


def test_small_is_flat_large_is_ivf():
    assert choose_index(1000, 256).type == "flat"
    assert choose_index(FLAT_MAX, 256).type == "flat"
    spec = choose_index(1_000_000, 256, budget=8 * 1024**3)
    assert spec.type == "ivf" and spec.params["nprobe"] <= spec.params["nlist"]
    assert spec.params["train_size"] <= 1_000_000


def test_over_budget_is_sq8_then_pq():
    spec = choose_index(1_000_000, 256, budget=512 * 1024**2)  # 0.95 GiB raw, a quarter fits
    assert spec.type == "ivfsq" and spec.params["rerank"] >= 2
    spec = choose_index(1_000_000, 256, budget=200 * 1024**2)  # not even 8-bit codes fit
    assert spec.type == "ivfpq" and 256 % spec.params["pq_m"] == 0


@pytest.mark.parametrize("n", [100_000, 1_000_000, 10_000_000])
def test_nlist_and_training_follow_faiss_guidance(n):
    from index.selection import ivf_train_size

    nlist = ivf_nlist(n)
    assert 4 * n**0.5 <= nlist <= 16 * n**0.5
    assert 30 * nlist <= ivf_train_size(n, nlist) <= min(n, 256 * nlist)


def test_override_and_unknown():
    assert choose_index(10, 256, override="hnsw").type == "hnsw"
    assert choose_index(10**6, 256, override="flat").type == "flat"
    with pytest.raises(IndexTypeError, match="choose one of"):
        choose_index(10, 256, override="annoy")


def test_env_budget(monkeypatch):
    monkeypatch.setenv("CXR_INDEX_MEMORY_GB", "0.25")
    assert choose_index(10**6, 256).type == "ivfpq"
    monkeypatch.setenv("CXR_INDEX_MEMORY_GB", "lots")
    with pytest.raises(IndexTypeError, match="GiB"):
        choose_index(10**6, 256)


def test_nlist_grows_with_n():
    assert ivf_nlist(10_000) < ivf_nlist(1_000_000) <= 65536
    assert ivf_nlist(20_000) * 30 <= 20_000  # small corpora: at least 30 training points per list
    assert 1 <= ivf_nprobe(ivf_nlist(10**6)) <= ivf_nlist(10**6)
