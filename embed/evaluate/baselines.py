"""The two baselines every evaluation reports beside the trained encoder.

* ``pixels``: the standardized image shrunk to a 64x64 grey thumbnail (area
  interpolation), z-scored per image and flattened; cosine of z-scored vectors is the
  Pearson correlation of the thumbnails. It tells how much is solved by raw appearance
  (exposure, body habitus, the age of the patient) rather than by learning.
* ``untrained``: the same architecture with random weights (fixed seed), a check that
  training, not the inductive bias of a CNN with attention pooling, gives the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only (imported where used, lazily)
    from embed.inference import Embedder

THUMB_SIZE = 64
UNTRAINED_SEED = 0


def thumbnail_features(images: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Standardized images [N,S,S] (any scale) -> z-scored thumbnails flattened, float32 [N, size*size]."""
    import cv2

    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 2:
        imgs = imgs[None]
    out = np.empty((len(imgs), size * size), dtype=np.float32)
    for i, img in enumerate(imgs):
        interp = cv2.INTER_AREA if img.shape[0] >= size else cv2.INTER_LINEAR
        t = cv2.resize(img, (size, size), interpolation=interp).reshape(-1)
        sd = float(t.std())
        out[i] = (t - t.mean()) / sd if sd > 1e-8 else 0.0
    return out


def untrained_embedder(reference: Embedder, seed: int = UNTRAINED_SEED) -> Embedder:
    """An Embedder with ``reference``'s architecture and standardization, randomly initialised with ``seed``."""
    import torch

    from embed.inference import Embedder
    from embed.models import create_model

    cfg = reference.model.cfg.replace(pretrained=False)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = create_model(cfg)
    finally:
        torch.random.set_rng_state(state)
    return Embedder(model, reference.std_cfg, model_sha256=f"untrained-seed{seed}", labels=reference.labels,
                    device=reference.device, batch_size=reference.batch_size)
