"""GPU JPEG decoding + standardization, tested on its CPU path (and on CUDA where a GPU is visible)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embed.gpu_jpeg import GpuJpegRunner, decode_jpegs, standardize_tensor
from embed.pipeline import LocalRunner, embed_paths
from embed.standardize import StandardizeConfig, load_standardized
from embed.torchdata import to_uint8


def radiograph(seed: int, h: int, w: int, colour: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 90 + 60 * np.sin(xx / (7 + seed)) * np.cos(yy / 11) + rng.normal(0, 12, (h, w))
    img[h // 3: h // 2, w // 4: w // 2] += 70
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.dstack([img, (img * 0.8).astype(np.uint8), img]) if colour else img


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    """JPEGs (grey and colour, larger and smaller than the model size), a PNG, a corrupt JPEG, a missing file."""
    import cv2

    root = tmp_path_factory.mktemp("jpegs")
    paths = []
    for i, (h, w, colour) in enumerate([(300, 240, False), (200, 260, True), (90, 70, False), (512, 512, False),
                                        (150, 400, True), (128, 128, False)]):
        p = root / f"{i}.jpg"
        cv2.imwrite(str(p), radiograph(i, h, w, colour), [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(str(p))
    cv2.imwrite(str(root / "x.png"), radiograph(9, 180, 160))
    paths.insert(2, str(root / "x.png"))
    good = Path(paths[0]).read_bytes()
    (root / "cut.jpg").write_bytes(good[: len(good) // 3])
    paths.insert(4, str(root / "cut.jpg"))
    paths.append(str(root / "missing.jpg"))
    return paths


def test_standardize_tensor_matches_the_cpu_standardization(files):
    cfg = StandardizeConfig(size=128)
    for p in [f for f in files if f.endswith(".jpg") and "cut" not in f and "missing" not in f]:
        grey = decode_jpegs([Path(p).read_bytes()], "cpu")[0]
        got = standardize_tensor(grey, cfg).numpy().astype(np.int16)
        want = to_uint8(load_standardized(p, cfg)).astype(np.int16)
        diff = np.abs(got - want)
        assert got.shape == want.shape == (128, 128)
        assert diff.mean() < 0.5 and diff.max() <= 2, (p, diff.mean(), diff.max())  # grey decode: ±1 level


def test_runner_gives_the_local_rows_skips_and_near_vectors(files):
    from embed.inference import Embedder

    emb = Embedder.from_checkpoint(None, device="cpu")  # the released model: what a GPU build would embed with
    local = embed_paths(emb, files, runner=LocalRunner(batch_size=4, workers=0, use_cache=False))
    gpu = embed_paths(emb, files, runner=GpuJpegRunner(batch_size=4, device="cpu"))
    assert gpu.positions.tolist() == local.positions.tolist() == [0, 1, 2, 3, 5, 6, 7]
    assert [(f.pos, f.reason) for f in gpu.failures] == [(f.pos, f.reason) for f in local.failures]
    cos = np.sum(gpu.vectors * local.vectors, axis=1)
    assert cos.min() >= 0.999, cos


def test_equalization_goes_through_the_cpu_reader(files):
    cfg = StandardizeConfig(size=64, equalize="clahe")
    batches = list(GpuJpegRunner(batch_size=16, device="cpu").batches(files, cfg, None))
    want = to_uint8(load_standardized(files[0], cfg))
    np.testing.assert_array_equal(batches[0].columns["image"][0], want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the nvJPEG path runs in scripts/gpu_check.sh")
def test_cuda_decode_equals_cpu_decode(files):  # pragma: no cover - needs a GPU
    cfg = StandardizeConfig(size=128)
    jpgs = [Path(f).read_bytes() for f in files if f.endswith(".jpg") and "cut" not in f and "missing" not in f]
    on_gpu = [standardize_tensor(g, cfg).cpu().numpy() for g in decode_jpegs(jpgs, "cuda")]
    on_cpu = [standardize_tensor(g, cfg).numpy() for g in decode_jpegs(jpgs, "cpu")]
    for a, b in zip(on_gpu, on_cpu):
        assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() < 0.5
