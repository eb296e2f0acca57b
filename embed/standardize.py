"""Standardization: any decoded image → the square float32 [0, 1] array the model sees.

Steps (all with OpenCV, so reading + standardizing never bounds the pipeline):

1. grey by luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B; alpha ignored);
2. aspect-preserving resize so that the longer side is ``cfg.size``
   (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging). It is
   done *first*, so percentiles, equalization and the rest cost the same for a
   512 px JPEG and a 3000 px DICOM; percentiles of the area-averaged image
   are what the model would see anyway;
3. clip at the ``clip_low_pct`` / ``clip_high_pct`` percentiles (by default the
   brightest 1 % — labels, markers, burnt-in text — is clipped) and rescale
   to [0, 1]; a constant image becomes all zeros (also when resizing left float
   rounding noise on it: that is not contrast);
4. optional equalization: ``"hist"`` (global histogram equalization) or
   ``"clahe"`` (contrast-limited adaptive, 8x8 tiles, ``clahe_clip``), both on
   8-bit values, as OpenCV defines them;
5. padding to ``size x size`` with 0 (black), the image centred.

The :class:`StandardizeConfig` travels with checkpoints and indexes; its
:meth:`~StandardizeConfig.fingerprint` is what they compare.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from embed.errors import CXRError

EQUALIZE_CHOICES = ("none", "hist", "clahe")


class StandardizeConfigError(CXRError, ValueError):
    """A standardization setting is invalid or unknown."""

    code = "standardize_config"


# Bump when standardize() changes its output for the same config (invalidates caches and indices).
ALGORITHM_VERSION = 1


@dataclass(frozen=True)
class StandardizeConfig:
    """How images are standardized; frozen and serializable (it is part of every model and index)."""

    size: int = 224
    clip_low_pct: float = 0.0
    clip_high_pct: float = 99.0
    equalize: str = "none"
    clahe_clip: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or not 8 <= self.size <= 4096:
            raise StandardizeConfigError(f"size must be an integer between 8 and 4096, not {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        for name in ("clip_low_pct", "clip_high_pct", "clahe_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise StandardizeConfigError(f"{name} must be a number, not {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.clip_low_pct < self.clip_high_pct <= 100.0:
            raise StandardizeConfigError(
                "need 0 <= clip_low_pct < clip_high_pct <= 100 "
                f"(got {self.clip_low_pct} and {self.clip_high_pct}); e.g. 0 and 99 clips the brightest 1 %"
            )
        if self.equalize not in EQUALIZE_CHOICES:
            raise StandardizeConfigError(
                f"equalize must be one of {', '.join(EQUALIZE_CHOICES)}, not {self.equalize!r}"
            )
        if not self.clahe_clip > 0:
            raise StandardizeConfigError(f"clahe_clip must be > 0 (OpenCV's clipLimit; 2.0 is usual), not {self.clahe_clip}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (ints and floats normalised, so equal configs serialize equally)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "StandardizeConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they mean another version wrote it)."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise StandardizeConfigError(f"a standardization config must be a mapping, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise StandardizeConfigError(
                f"unknown standardization setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}. The file was written by another version of cxr: "
                "upgrade, or rebuild it with this one"
            )
        return cls(**d)

    def fingerprint(self) -> str:
        """First 16 hex of the sha256 of the canonical JSON plus the algorithm version.

        Compared between model and index, and the key of the standardized-image
        cache: a change of the algorithm (``ALGORITHM_VERSION``) must invalidate both.
        """
        canon = json.dumps({**self.to_dict(), "_algorithm": ALGORITHM_VERSION}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def to_grey(arr: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) → float32 HxW by luminance."""
    import cv2

    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return arr.astype(np.float32, copy=False)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected a HxW or HxWx3/4 image array, got shape {arr.shape}")
    rgb = np.ascontiguousarray(arr[:, :, :3], dtype=np.float32)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _fit(arr: np.ndarray, size: int) -> np.ndarray:
    """Aspect-preserving resize so that the longer side is ``size``."""
    import cv2

    h, w = arr.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return arr
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(arr, (nw, nh), interpolation=interp)


# Float32 resizing of a uniform image leaves rounding noise of ~1e-7 of its value; stretching that
# to [0, 1] would hand the model a stripe pattern. A span under 1e-5 of the values' magnitude (0.66
# of one level at 16 bits) is no contrast at all, so such an image standardizes to zeros.
_FLAT_RELATIVE = 1e-5


def _has_contrast(lo: float, hi: float) -> bool:
    return bool(hi - lo > _FLAT_RELATIVE * max(1.0, abs(float(lo)), abs(float(hi))))


def _equalize(x01: np.ndarray, cfg: StandardizeConfig) -> np.ndarray:
    import cv2

    u8 = np.clip(np.rint(x01 * 255.0), 0, 255).astype(np.uint8)
    if cfg.equalize == "hist":
        u8 = cv2.equalizeHist(u8)
    else:
        u8 = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(8, 8)).apply(u8)
    return u8.astype(np.float32) / 255.0


def standardize(img: Any, cfg: StandardizeConfig | None = None) -> np.ndarray:
    """Return the float32 ``(cfg.size, cfg.size)`` array in [0, 1] the model sees (see the module doc)."""
    cfg = cfg or StandardizeConfig()
    arr = getattr(img, "pixels", img)
    grey = to_grey(arr)
    if grey.size == 0:
        raise ValueError("cannot standardize an empty image")
    small = _fit(grey, cfg.size)
    if not np.isfinite(small).all():
        small = np.nan_to_num(small, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(small, [cfg.clip_low_pct, cfg.clip_high_pct])
    if not _has_contrast(lo, hi):
        # constant (or nearly, after clipping): fall back to the full range, else all zeros
        lo, hi = float(small.min()), float(small.max())
    if _has_contrast(lo, hi):
        x = (np.clip(small, lo, hi) - lo) * np.float32(1.0 / (hi - lo))
    else:
        x = np.zeros_like(small)
    x = x.astype(np.float32, copy=False)
    if cfg.equalize != "none" and x.any():  # CLAHE maps an all-black image to grey: a blank stays blank
        x = _equalize(x, cfg)
    out = np.zeros((cfg.size, cfg.size), np.float32)
    h, w = x.shape
    top, left = (cfg.size - h) // 2, (cfg.size - w) // 2
    out[top : top + h, left : left + w] = x
    return out


def load_standardized(src: str | Path | bytes, cfg: StandardizeConfig | None = None, **read_kw: Any) -> np.ndarray:
    """``read_image`` then ``standardize``: the path every caller (train, index, query) takes."""
    from embed.image import read_image

    return standardize(read_image(src, **read_kw), cfg or StandardizeConfig())


def to_png_bytes(arr01: np.ndarray) -> bytes:
    """8-bit grey PNG of an array in [0, 1] (previews, API thumbnails)."""
    import cv2

    arr = np.asarray(arr01, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        arr = to_grey(arr)
    u8 = np.clip(np.rint(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", u8)
    if not ok:  # pragma: no cover - cv2 fails only on empty arrays
        raise ValueError(f"could not encode a {arr.shape} array as PNG")
    return buf.tobytes()
