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


def test_over_budget_is_pq():
    spec = choose_index(1_000_000, 256, budget=512 * 1024**2)
    assert spec.type == "ivfpq" and 256 % spec.params["pq_m"] == 0


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
    assert ivf_nlist(10_000) < ivf_nlist(1_000_000) <= 16384
    assert 1 <= ivf_nprobe(ivf_nlist(10**6)) <= ivf_nlist(10**6)
