"""Spatial attention pooling: where in the radiograph the embedding looks."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool2d(nn.Module):
    """Multi-head attention-weighted pooling of a feature map.

    A 1x1 conv scores every location once per head, a softmax over locations turns the
    scores into weights, and each head's weighted sum of features is concatenated. The
    returned map is the mean over heads, so it still sums to 1 and can be shown to users.
    """

    def __init__(self, in_channels: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.score = nn.Conv2d(in_channels, heads, kernel_size=1)
        nn.init.zeros_(self.score.weight)  # start as plain average pooling
        nn.init.zeros_(self.score.bias)
        self.out_features = in_channels * heads

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = feats.shape
        logits = self.score(feats).flatten(2).float()  # [B, heads, h*w]
        weights = torch.softmax(logits, dim=-1)
        pooled = torch.einsum("bkn,bcn->bkc", weights.to(feats.dtype), feats.flatten(2))
        attn = weights.mean(dim=1).view(b, h, w)
        return pooled.reshape(b, self.heads * c), attn
