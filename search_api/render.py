"""Arrays from the engine -> PNG bytes for JSON (base64) and image responses."""

from __future__ import annotations

import base64

import numpy as np


def grey_png(arr01: np.ndarray) -> bytes:
    """8-bit grey PNG of an array in [0, 1] (the canonical encoder in embed.standardize)."""
    from embed.standardize import to_png_bytes

    return to_png_bytes(arr01)


def attention_png(att01: np.ndarray, size: int | None = None) -> bytes:
    """RGBA PNG: JET-coloured heat with alpha proportional to attention, ready to lay over the query."""
    import cv2

    a = np.nan_to_num(np.asarray(att01, dtype=np.float32))
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"attention must be a 2-D array, got shape {a.shape}")
    if size and a.shape != (size, size):
        a = cv2.resize(a, (size, size), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    u8 = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_JET)
    bgra = np.dstack([bgr, u8])
    ok, buf = cv2.imencode(".png", bgra)
    if not ok:  # pragma: no cover
        raise ValueError("could not encode the attention map")
    return buf.tobytes()


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
