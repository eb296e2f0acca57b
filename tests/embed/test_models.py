"""Encoder, attention pooling and checkpoints, on timm's tiny test backbone."""

from __future__ import annotations

import pytest
import torch

from embed.errors import ModelError
from embed.models import EncoderConfig, create_model, load_checkpoint, save_checkpoint


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return create_model("cxr_test_tiny", num_classes=3).eval()


def test_forward_shapes_and_norm(tiny):
    x = torch.rand(4, 1, 64, 64)
    out = tiny(x)
    emb, attn = out["embedding"], out["attention"]
    assert emb.shape == (4, tiny.embed_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert attn.ndim == 3 and attn.shape[0] == 4
    assert torch.isfinite(attn).all()
    assert torch.allclose(attn.flatten(1).sum(1), torch.ones(4), atol=1e-5)
    assert out["logits"].shape == (4, 3)


def test_multi_head_attention_sums_to_one():
    torch.manual_seed(0)
    model = create_model("cxr_test_tiny", attn_heads=4).eval()
    torch.nn.init.normal_(model.pool.score.weight, std=1.0)  # non-uniform maps
    attn = model(torch.rand(2, 1, 64, 64))["attention"]
    assert torch.allclose(attn.flatten(1).sum(1), torch.ones(2), atol=1e-5)
    assert attn.flatten(1).std(1).min() > 0  # not the trivial uniform map


def test_every_parameter_gets_gradient():
    torch.manual_seed(0)
    model = create_model("cxr_test_tiny", num_classes=3).train()
    torch.nn.init.normal_(model.pool.score.weight, std=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(6, 1, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2])
    # timm zero-initialises the last BN of each residual block, so the branch before it
    # only receives gradient after one step: take one, then check every parameter.
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        loss = out["embedding"].sum(0).pow(2).sum() + torch.nn.functional.cross_entropy(out["logits"], y)
        loss.backward()
        opt.step() if _ == 0 else None
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing


def test_any_timm_backbone_and_unknown_backbone():
    model = create_model(EncoderConfig(backbone="test_convnext", embed_dim=16, proj_hidden=32)).eval()
    assert model(torch.rand(2, 1, 64, 64))["embedding"].shape == (2, 16)
    with pytest.raises(ModelError, match="unknown backbone"):
        create_model(EncoderConfig(backbone="no_such_net_xyz"))
    with pytest.raises(ModelError, match="unknown model config"):
        create_model("no_such_config_xyz")


def test_checkpoint_round_trip_identical(tiny, tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny, std_cfg={"size": 64}, labels=["a", "b", "c"], train_cfg={"lr": 1e-3}, metrics={"map_r": 0.5})
    raw = torch.load(path, weights_only=True)  # only safe types inside
    assert raw["labels"] == ["a", "b", "c"]
    loaded = load_checkpoint(path)
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        a, b = tiny(x)["embedding"], loaded.model(x)["embedding"]
    assert torch.equal(a, b)
    assert loaded.labels == ["a", "b", "c"]
    assert loaded.meta["metrics"]["map_r"] == 0.5
    assert len(loaded.sha256) == 64


def test_fp16_checkpoint_close(tiny, tmp_path):
    full, half = tmp_path / "f.pt", tmp_path / "h.pt"
    save_checkpoint(full, tiny, std_cfg={}, labels=["a"])
    save_checkpoint(half, tiny, std_cfg={}, labels=["a"], half=True, keep_classifier=False)
    assert half.stat().st_size < full.stat().st_size * 0.6
    loaded = load_checkpoint(half)
    assert "logits" not in loaded.model(torch.rand(1, 1, 64, 64))
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        cos = (tiny(x)["embedding"] * loaded.model(x)["embedding"]).sum(1)
    assert cos.min() > 0.999


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a cxr-search checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelError, match="not a cxr-search checkpoint"):
        load_checkpoint(other)


def test_unknown_backbone_in_checkpoint(tiny, tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny, std_cfg={}, labels=[])
    raw = torch.load(path, weights_only=True)
    raw["encoder_cfg"]["backbone"] = "no_such_net_xyz"
    torch.save(raw, path)
    with pytest.raises(ModelError, match="unknown backbone"):
        load_checkpoint(path)


def test_local_pretrained_weights_file(tmp_path):
    torch.manual_seed(1)
    donor = create_model("cxr_test_tiny")
    weights = tmp_path / "backbone.pth"
    torch.save(donor.backbone.state_dict(), weights)
    torch.manual_seed(2)
    model = create_model("cxr_test_tiny", pretrained=str(weights))
    for k, v in donor.backbone.state_dict().items():
        assert torch.equal(v, model.backbone.state_dict()[k])
    with pytest.raises(ModelError, match="not found"):
        create_model("cxr_test_tiny", pretrained=str(tmp_path / "nope.pth"))


def test_released_model_is_self_contained():
    from embed.models import RELEASED_CONFIG_PATH, RELEASED_MODEL_PATH
    from embed.standardize import StandardizeConfig

    if not RELEASED_MODEL_PATH.is_file():
        pytest.skip("no released model in this checkout")
    assert RELEASED_MODEL_PATH.stat().st_size < 25 * 2**20
    assert RELEASED_CONFIG_PATH.is_file()
    raw = torch.load(RELEASED_MODEL_PATH, weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in raw["state_dict"].values())
    lm = load_checkpoint(RELEASED_MODEL_PATH)
    assert isinstance(lm.std_cfg, StandardizeConfig)
    assert "normal" in lm.labels and lm.meta["metrics"]["split"]["val_sha256"]
    size = lm.std_cfg.size
    with torch.no_grad():
        out = lm.model(torch.rand(2, 1, size, size))
    assert out["embedding"].shape == (2, lm.encoder_cfg.embed_dim)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2), atol=1e-4)
