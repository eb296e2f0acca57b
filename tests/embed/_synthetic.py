"""Generated tiny radiograph-like images with class-specific patterns (no real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATTERNS = ("stripes", "dots", "blank")


def pattern_image(kind: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """uint8 [size,size]: a soft 'body' plus a class pattern plus noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.2 * np.cos((xx - 0.5) * 3) * np.cos((yy - 0.5) * 3)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "stripes":
        base = base + 0.25 * np.sign(np.sin(yy * 2 * np.pi * 6 + phase))
    elif kind == "dots":
        base = base + 0.3 * ((np.sin(xx * 2 * np.pi * 5 + phase) * np.sin(yy * 2 * np.pi * 5)) > 0.6)
    img = base + rng.normal(0, 0.05, base.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_imagefolder(root: Path, per_class: int = 10, size: int = 64, seed: int = 0) -> Path:
    """ROOT/<pattern>/<personN_i>.png, two images per pseudo-patient."""
    import cv2

    rng = np.random.default_rng(seed)
    for c, kind in enumerate(PATTERNS):
        d = root / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"person{c * 1000 + i // 2}_{i}.png"), pattern_image(kind, rng, size))
    return root
