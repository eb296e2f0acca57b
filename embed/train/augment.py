"""Augmentation for radiographs: small geometry and exposure changes, no left-right flip.

A chest film is not mirror-symmetric (heart on the left, dextrocardia is a finding),
so flips are off by default. Works on a float tensor [1,S,S] in [0,1], on CPU, with
torch's own RNG (seeded per worker by the DataLoader).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate_deg: float = 7.0
    scale_min: float = 0.85
    scale_max: float = 1.05
    translate: float = 0.05
    brightness: float = 0.10
    contrast: float = 0.15
    gamma_min: float = 0.8
    gamma_max: float = 1.25
    noise_std: float = 0.02
    hflip: bool = False
    p: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _u(lo: float, hi: float) -> float:
    return float(torch.empty(1).uniform_(lo, hi))


class RadiographAugment:
    """Random affine (rotation, scale/crop, shift) then brightness, contrast, gamma, noise."""

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        self.cfg = cfg or AugmentConfig()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if float(torch.rand(1)) > c.p:
            return x
        ang = math.radians(_u(-c.rotate_deg, c.rotate_deg))
        s = _u(c.scale_min, c.scale_max)
        tx, ty = _u(-c.translate, c.translate) * 2, _u(-c.translate, c.translate) * 2
        cos, sin = math.cos(ang) / s, math.sin(ang) / s
        theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=x.dtype)[None]
        grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
        x = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        if c.hflip and float(torch.rand(1)) < 0.5:
            x = x.flip(-1)
        mean = x.mean()
        x = (x - mean) * (1 + _u(-c.contrast, c.contrast)) + mean + _u(-c.brightness, c.brightness)
        x = x.clamp(0, 1) ** _u(c.gamma_min, c.gamma_max)
        if c.noise_std > 0:
            x = x + torch.randn_like(x) * c.noise_std * float(torch.rand(1))
        return x.clamp(0, 1)
