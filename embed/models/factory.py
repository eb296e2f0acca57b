"""create_model: a named config or an EncoderConfig -> CXREncoder (timm style)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from embed.errors import ModelError
from embed.models.config import EncoderConfig, get_config
from embed.models.encoder import CXREncoder

log = logging.getLogger(__name__)


def _build_backbone(cfg: EncoderConfig) -> torch.nn.Module:
    import timm

    if not timm.is_model(cfg.backbone):
        raise ModelError(
            f"unknown backbone {cfg.backbone!r}: not a timm model name; see timm.list_models() "
            "(e.g. 'resnet18', 'resnet10t', 'convnext_nano')"
        )
    kwargs = dict(cfg.backbone_kwargs)
    pretrained = cfg.pretrained is True
    try:
        return timm.create_model(
            cfg.backbone, pretrained=pretrained, num_classes=0, global_pool="", in_chans=cfg.in_chans, **kwargs
        )
    except RuntimeError as exc:  # timm raises RuntimeError when weights cannot be fetched
        raise ModelError(
            f"could not load timm pretrained weights for {cfg.backbone!r} ({exc}); "
            "use pretrained=False or give a local weights file path"
        ) from exc


def load_backbone_weights(backbone: torch.nn.Module, path: str | Path, in_chans: int = 1) -> list[str]:
    """Load a local weights file into the backbone (strict=False); returns the missing keys.

    RGB first-conv weights are summed to one channel so ImageNet checkpoints fit grey input.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"pretrained weights file {p} not found: give an existing .pth/.pt/.safetensors path")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = backbone.state_dict()
    fixed = {}
    for k, v in state.items():
        if k in own and v.ndim == 4 and own[k].ndim == 4 and v.shape[1] != own[k].shape[1] and own[k].shape[1] == in_chans:
            v = v.sum(dim=1, keepdim=True) if in_chans == 1 else v
        if k in own and own[k].shape != v.shape:
            continue  # e.g. an ImageNet classifier: left out and reported as missing
        fixed[k] = v
    result = backbone.load_state_dict(fixed, strict=False)
    missing = list(result.missing_keys)
    if missing:
        log.warning("backbone weights %s: %d missing keys (e.g. %s)", p.name, len(missing), missing[:3])
    if result.unexpected_keys:
        log.info("backbone weights %s: %d unused keys", p.name, len(result.unexpected_keys))
    return missing


def create_model(name_or_cfg: str | EncoderConfig, **overrides: Any) -> CXREncoder:
    """Build an encoder from a registered name ('cxr_resnet18', 'cxr_test_tiny', ...) or a config.

    Any other string is taken as a timm backbone name with the default head.
    """
    if isinstance(name_or_cfg, EncoderConfig):
        cfg = name_or_cfg.replace(**overrides)
    elif isinstance(name_or_cfg, str):
        try:
            cfg = get_config(name_or_cfg)
        except ModelError:
            import timm

            if not timm.is_model(name_or_cfg):
                raise
            cfg = EncoderConfig(name=name_or_cfg, backbone=name_or_cfg)
        cfg = cfg.replace(**overrides)
    else:
        raise ModelError(f"create_model takes a config name or EncoderConfig, not {type(name_or_cfg).__name__}")
    backbone = _build_backbone(cfg)
    if isinstance(cfg.pretrained, str) and cfg.pretrained:
        load_backbone_weights(backbone, cfg.pretrained, cfg.in_chans)
    return CXREncoder(cfg, backbone)
