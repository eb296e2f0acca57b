"""Fixtures for the index tests: a tiny checkpoint, generated radiograph-like PNGs and CaseRecords."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embed.datasets.base import CaseRecord

SIZE = 64


def make_checkpoint(path: Path, seed: int = 0, size: int = SIZE) -> Path:
    """An untrained cxr_test_tiny encoder saved as a real checkpoint."""
    import torch

    from embed.models import create_model, save_checkpoint
    from embed.standardize import StandardizeConfig

    torch.manual_seed(seed)
    model = create_model("cxr_test_tiny")
    # Calibrate BatchNorm on random images so embeddings of different images differ clearly
    # (an untrained network maps everything to almost the same direction).
    model.train()
    with torch.no_grad():
        for _ in range(10):
            model(torch.rand(8, 1, size, size))
    model.eval()
    save_checkpoint(path, model, std_cfg=StandardizeConfig(size=size), labels=["a", "b"])
    return path


def write_png(path: Path, seed: int, size: int = 96) -> Path:
    """A distinct grey image per seed (smooth blobs plus noise), written with OpenCV."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size), np.float32)
    for _ in range(4):
        cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3)
        img += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img += 0.05 * rng.normal(size=img.shape)
    img = (255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def make_records(folder: Path, n: int, *, start: int = 0, source: str = "synthetic") -> list[CaseRecord]:
    """n records over generated images; 3 images per patient, alternating views/sexes, some prognosis."""
    recs = []
    findings_cycle = [["Pneumonia"], ["No Finding"], ["Pneumonia", "Effusion"], ["COVID-19"]]
    for i in range(start, start + n):
        path = write_png(folder / f"img_{i:04d}.png", seed=i)
        recs.append(CaseRecord(
            case_id=f"{source}/img_{i:04d}.png", image_path=str(path), source=source,
            patient=f"p_{i // 3:016x}", view="PA" if i % 2 == 0 else "AP", sex="F" if i % 4 < 2 else "M",
            age=float(20 + i % 60), day_offset=float(i % 5), findings=list(findings_cycle[i % 4]),
            prognosis={"survival": (i % 3 == 0)} if i % 2 == 0 else {"survival": None},
            licence="CC0", extra={"n": i},
        ))
    return recs


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="session")
def other_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model2") / "other.pt", seed=1)


@pytest.fixture(scope="session")
def embedder(tiny_ckpt):
    from embed.inference import Embedder

    return Embedder.from_checkpoint(tiny_ckpt, device="cpu")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def records(image_dir) -> list[CaseRecord]:
    return make_records(image_dir, 30)


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, records, embedder, tiny_ckpt) -> Path:
    """A flat index over the 30 records (session-wide, never modified by tests: copy it first)."""
    from index.builder import build_index

    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(records, out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False)
    return out


@pytest.fixture(scope="session")
def built_milvus_index(tmp_path_factory, records, embedder, tiny_ckpt) -> Path:
    """The same 30 records on the Milvus backend (Milvus Lite file beside the folder); never modified."""
    pytest.importorskip("pymilvus", reason="pymilvus/milvus-lite not installed: pip install 'cxr-search[distributed]'")
    from index.builder import build_index

    out = tmp_path_factory.mktemp("idx_milvus") / "index"
    build_index(records, out, model=tiny_ckpt, embedder=embedder, workers=0, progress=False, backend="milvus")
    return out


@pytest.fixture
def index_copy(tmp_path, built_index) -> Path:
    import shutil

    dest = tmp_path / "index"
    shutil.copytree(built_index, dest)
    return dest
