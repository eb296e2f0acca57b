"""Encoder configuration and the registry of named configs (timm style: a name builds a model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from embed.errors import ModelError


@dataclass
class EncoderConfig:
    """Everything needed to rebuild a :class:`CXREncoder` (weights excluded).

    ``pretrained``: False (random init), True (timm's pretrained weights, needs network)
    or a path to a local weights file loaded into the backbone with ``strict=False``.
    ``num_classes`` > 0 adds an auxiliary (normalised-softmax) classification head on
    the embedding, used only for training.
    """

    name: str = "custom"
    backbone: str = "resnet18"
    in_chans: int = 1
    embed_dim: int = 256
    pretrained: bool | str = False
    attn_heads: int = 1
    proj_hidden: int = 512
    dropout: float = 0.0
    num_classes: int = 0
    cls_scale: float = 16.0
    input_size: int = 224
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/torch weights_only safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncoderConfig":
        """Rebuild from :meth:`to_dict`; unknown keys are a clear error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(
                f"encoder config has unknown keys {sorted(unknown)}: the checkpoint was written by a "
                "newer version of cxr-search; upgrade the package"
            )
        return cls(**dict(d))

    def replace(self, **overrides: Any) -> "EncoderConfig":
        known = {f.name for f in fields(self)}
        bad = set(overrides) - known
        if bad:
            raise ModelError(f"unknown encoder option(s) {sorted(bad)}; valid: {sorted(known)}")
        return replace(self, **overrides)


_REGISTRY: dict[str, EncoderConfig] = {}


def register_config(cfg: EncoderConfig) -> EncoderConfig:
    """Add a named config to the registry (used by ``create_model(name)``)."""
    _REGISTRY[cfg.name] = cfg
    return cfg


def get_config(name: str) -> EncoderConfig:
    """Return a copy of a registered config, or a ModelError listing the names."""
    if name not in _REGISTRY:
        raise ModelError(
            f"unknown model config {name!r}; registered: {sorted(_REGISTRY)} "
            "(or pass any timm backbone as EncoderConfig(backbone=...))"
        )
    return replace(_REGISTRY[name])


def list_configs() -> list[str]:
    return sorted(_REGISTRY)


register_config(EncoderConfig(name="cxr_resnet18", backbone="resnet18", embed_dim=256, input_size=160))
register_config(EncoderConfig(name="cxr_resnet10t", backbone="resnet10t", embed_dim=256, input_size=128))
register_config(EncoderConfig(name="cxr_resnet34", backbone="resnet34", embed_dim=256, input_size=224))
# Tiny timm test model: milliseconds per step, for tests only.
register_config(
    EncoderConfig(name="cxr_test_tiny", backbone="test_resnet", embed_dim=32, proj_hidden=64, input_size=64)
)
