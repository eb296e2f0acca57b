"""The standardized-image cache and CaseImageDataset."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from embed.datasets.base import CaseRecord
from embed.standardize import StandardizeConfig
from embed.torchdata import cache_root, load_standardized_u8
from embed.train.dataset import CaseImageDataset
from tests.embed._synthetic import write_imagefolder


def _records(paths):
    return [CaseRecord(case_id=f"t/{i}", image_path=str(p), source="t") for i, p in enumerate(paths)]


def test_cache_keyed_by_content_and_config(tmp_path):
    root = write_imagefolder(tmp_path / "d", per_class=1)
    src = next(root.rglob("*.png"))
    copy = tmp_path / "renamed.png"
    shutil.copy(src, copy)
    cfg = StandardizeConfig(size=32)
    a = load_standardized_u8(src, cfg)
    files = list(cache_root(cfg).rglob("*.npy"))
    assert len(files) == 1 and a.dtype == np.uint8 and a.shape == (32, 32)
    b = load_standardized_u8(copy, cfg)  # same content, other name: cache hit
    assert np.array_equal(a, b) and len(list(cache_root(cfg).rglob("*.npy"))) == 1
    cfg2 = StandardizeConfig(size=32, equalize="hist")
    c = load_standardized_u8(src, cfg2)
    assert cache_root(cfg2) != cache_root(cfg) and len(list(cache_root(cfg2).rglob("*.npy"))) == 1
    assert not np.array_equal(a, c)
    assert np.array_equal(load_standardized_u8(src, cfg, use_cache=False), a)


def test_dataset_skips_unreadable_and_keeps_indices(tmp_path, caplog):
    root = write_imagefolder(tmp_path / "d", per_class=2)
    paths = sorted(root.rglob("*.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # truncated PNG
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"hello")
    recs = _records([paths[0], bad, paths[1], junk, paths[2]])
    ds = CaseImageDataset(recs, StandardizeConfig(size=48))
    assert len(ds) == 3 and ds.kept == [0, 2, 4]
    assert len(ds.skipped) == 2 and "skipped 2 unreadable" in caplog.text
    x, i = ds[1]
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32 and i == 2
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    mem = CaseImageDataset(recs, StandardizeConfig(size=48), in_memory=True, transform=lambda t: 1 - t)
    assert torch.allclose(mem[1][0], 1 - x)
