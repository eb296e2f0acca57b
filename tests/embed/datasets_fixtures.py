"""Tiny generated images and label files in the real sources' layouts, for the dataset reader tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, kind: str | None = None, seed: int = 0) -> Path:
    """A 16x16 grey PNG or JPEG (by suffix unless ``kind`` says otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (16, 16), dtype=np.uint8)
    ext = "." + (kind or path.suffix.lstrip(".").lower() or "png")
    if ext == ".jpg":
        ext = ".jpeg"
    ok, buf = cv2.imencode(".jpg" if ext == ".jpeg" else ext, img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def all_json(records) -> str:
    """Every record's to_dict() as one JSON string: what a privacy check searches."""
    return json.dumps([r.to_dict() for r in records], allow_nan=False)
