"""Generated tiny Kermany-layout dataset and an untrained tiny checkpoint, for the
export and evaluation end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def _picture(cls: str, seed: int, size: int = 48) -> np.ndarray:
    """A grey 'radiograph': normals are smooth, pneumonias carry bright blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = 80 + 60 * np.sin(xx / (5 + seed % 3)) * np.cos(yy / 7) + rng.normal(0, 8, (size, size))
    if cls == "PNEUMONIA":
        for _ in range(3):
            cy, cx = rng.integers(8, size - 8, 2)
            img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_kermany(root: Path, n_patients: int = 6, per_patient: int = 2, broken: bool = True) -> Path:
    """chest_xray/{train,test}/{NORMAL,PNEUMONIA}/ with several images per patient.

    ``broken`` adds one truncated JPEG that the reader lists but the decoder rejects.
    """
    seed = 0
    for p in range(n_patients):
        split = "train" if p % 3 else "test"
        for j in range(per_patient):
            seed += 1
            normal = cv2.imencode(".jpeg", _picture("NORMAL", seed))[1].tobytes()
            d = root / split / "NORMAL"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"IM-{p:04d}-{j + 1:04d}.jpeg").write_bytes(normal)
            kind = "bacteria" if p % 2 else "virus"
            pn = cv2.imencode(".jpeg", _picture("PNEUMONIA", 1000 + seed))[1].tobytes()
            d = root / split / "PNEUMONIA"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"person{p + 100}_{kind}_{j + 1}.jpeg").write_bytes(pn)
    if broken:
        good = cv2.imencode(".jpeg", _picture("NORMAL", 999))[1].tobytes()
        (root / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(good[: len(good) // 3])
    return root


def make_tiny_checkpoint(path: Path, size: int = 64, labels=("bacterial pneumonia", "normal", "viral pneumonia"),
                         seed: int = 0, train_cfg: dict | None = None) -> Path:
    """save_checkpoint of an untrained cxr_test_tiny encoder."""
    from embed.models import create_model, save_checkpoint
    from embed.standardize import StandardizeConfig

    torch.manual_seed(seed)
    model = create_model("cxr_test_tiny")
    torch.nn.init.normal_(model.pool.score.weight, std=1.0)
    save_checkpoint(path, model, std_cfg=StandardizeConfig(size=size), labels=list(labels),
                    train_cfg=train_cfg or {"label_scheme": "pathology", "val_fraction": 0.34, "seed": 0})
    return path
