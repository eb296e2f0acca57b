"""CXREncoder: timm backbone -> attention pooling -> projection -> L2-normalised embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embed.errors import ModelError
from embed.models.attention import AttentionPool2d
from embed.models.config import EncoderConfig


class CXREncoder(nn.Module):
    """Embeds a grey radiograph [B,1,H,W] for cosine similarity search.

    ``forward`` returns ``embedding`` [B,D] (unit length), ``attention`` [B,h,w] (sums to 1)
    and, when the config has ``num_classes`` > 0, ``logits`` of the auxiliary head.
    """

    def __init__(self, cfg: EncoderConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        channels = int(backbone.num_features)
        self.pool = AttentionPool2d(channels, heads=cfg.attn_heads)
        self.head = nn.Sequential(
            nn.Linear(self.pool.out_features, cfg.proj_hidden),
            nn.BatchNorm1d(cfg.proj_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.proj_hidden, cfg.embed_dim),
        )
        self.classifier: nn.Linear | None = None
        if cfg.num_classes > 0:
            # Normalised-softmax head: cosine logits of the embedding, so cross-entropy
            # shapes the same space that retrieval uses.
            self.classifier = nn.Linear(cfg.embed_dim, cfg.num_classes, bias=False)

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone.forward_features(x)  # last feature map, before any timm head
        if feats.ndim != 4:
            raise ModelError(
                f"backbone {self.cfg.backbone!r} returns tokens, not a feature map; choose a convolutional timm model"
            )
        pooled, attn = self.pool(feats)
        z = self.head(pooled).float()
        emb = F.normalize(z, dim=-1)
        out = {"embedding": emb, "attention": attn}
        if self.classifier is not None:
            w = F.normalize(self.classifier.weight.float(), dim=-1)
            out["logits"] = self.cfg.cls_scale * emb @ w.t()
        return out
