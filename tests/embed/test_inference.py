"""Embedder on the tiny test model: shapes, norms, batching, paths, bytes and DICOM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embed.errors import ModelError, NotAnImageError
from embed.inference import Embedder
from embed.models import create_model, save_checkpoint
from embed.standardize import StandardizeConfig, standardize, to_png_bytes
from tests.embed.dicom_fixtures import make_dicom

SIZE = 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("cxr_test_tiny")
    torch.nn.init.normal_(model.pool.score.weight, std=1.0)  # a non-uniform attention map
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, std_cfg=StandardizeConfig(size=SIZE), labels=["normal", "pneumonia"])
    return path


@pytest.fixture(scope="module")
def embedder(ckpt):
    return Embedder.from_checkpoint(ckpt, device="cpu", batch_size=3)


def test_from_checkpoint_carries_configs(embedder, ckpt):
    import hashlib

    assert embedder.std_cfg == StandardizeConfig(size=SIZE)
    assert embedder.embed_dim == 32
    assert embedder.model_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert embedder.labels == ["normal", "pneumonia"]
    assert embedder.device == "cpu"
    assert not embedder.model.training


def test_embed_batch_unit_rows_attention_and_batch_independence(embedder):
    rng = np.random.default_rng(0)
    x = rng.random((7, SIZE, SIZE), dtype=np.float32)
    emb, attn = embedder.embed_batch(x)
    assert emb.shape == (7, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert attn.ndim == 3 and attn.shape[0] == 7
    np.testing.assert_allclose(attn.reshape(7, -1).sum(1), 1.0, atol=1e-5)
    # batching (3 + 3 + 1) must not change any result: eval-mode BatchNorm
    one_by_one = np.concatenate([embedder.embed_batch(x[i : i + 1])[0] for i in range(7)])
    np.testing.assert_allclose(one_by_one, emb, atol=1e-5)
    # different images give different embeddings
    assert np.abs(emb[0] - emb[1]).max() > 1e-4


def test_embed_batch_rejects_wrong_size(embedder):
    with pytest.raises(ModelError, match="standardize"):
        embedder.embed_batch(np.zeros((2, SIZE + 1, SIZE + 1), np.float32))


def test_embed_image_path_bytes_and_dicom_agree(embedder, tmp_path):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:96, 0:80]
    grey = ((np.sin(xx / 7.0) + np.cos(yy / 11.0) + 2) * 60 + rng.integers(0, 10, (96, 80))).astype(np.uint8)
    png = tmp_path / "img.png"
    import cv2

    cv2.imwrite(str(png), grey)
    by_path = embedder.embed_image(png)
    by_bytes = embedder.embed_image(png.read_bytes())
    assert by_path.standardized.shape == (SIZE, SIZE)
    np.testing.assert_allclose(by_path.embedding, by_bytes.embedding, atol=1e-6)
    # the query path gives the vector the index path (8-bit standardized cache) gives for the same file
    from embed.torchdata import load_standardized_u8

    indexed = load_standardized_u8(png, embedder.std_cfg).astype(np.float32) / 255.0
    expected, _ = embedder.embed_batch(indexed[None])
    np.testing.assert_allclose(by_path.embedding, expected[0], atol=1e-6)
    unrounded, _ = embedder.embed_batch(standardize(grey.astype(np.float32), embedder.std_cfg)[None])
    assert float(unrounded[0] @ by_path.embedding) > 0.999
    assert by_path.attention.ndim == 2

    dcm = embedder.embed_image(make_dicom(grey.astype(np.uint16) * 16, bits_stored=12))
    assert dcm.meta["modality"] == "CR" and dcm.meta["bits_stored"] == 12
    assert "PatientID" not in dcm.meta and not any("MRN" in str(v) for v in dcm.meta.values())
    # same picture, other bit depth: after standardization the embedding is (nearly) the same
    cos = float(dcm.embedding @ by_path.embedding)
    assert cos > 0.99


def test_embed_image_rejects_non_image(embedder):
    with pytest.raises(NotAnImageError):
        embedder.embed_image(b"definitely not an image" * 10)


def test_png_roundtrip_of_standardized(embedder):
    std = np.tile(np.linspace(0, 1, SIZE, dtype=np.float32), (SIZE, 1))
    q = embedder.embed_image(to_png_bytes(std))
    assert q.embedding.shape == (32,)
