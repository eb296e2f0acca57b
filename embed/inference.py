"""Embedder: a checkpoint -> embeddings and attention maps for standardized images.

Every consumer (index builder, search engine, ``cxr embed``, ``cxr evaluate``) goes
through this class so that an image is embedded exactly the same way everywhere:
the checkpoint's own :class:`~embed.standardize.StandardizeConfig`, eval mode,
``torch.inference_mode`` and fixed batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embed.errors import ModelError
from embed.standardize import StandardizeConfig

log = logging.getLogger(__name__)


def pick_device(device: str | torch.device | None = None) -> str:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        dev = str(device)
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {dev!r} requested but CUDA is not available; use --device cpu")
        return dev
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class EmbeddedQuery:
    """One embedded image: unit ``embedding`` [D], ``attention`` [h,w] (sums to 1),
    the ``standardized`` image [S,S] in [0,1] the model saw, and the reader's de-identified ``meta``."""

    embedding: np.ndarray
    attention: np.ndarray
    standardized: np.ndarray
    meta: dict = field(default_factory=dict)


class Embedder:
    """Wraps an encoder in eval mode with its standardization config."""

    def __init__(
        self,
        model: torch.nn.Module,
        std_cfg: StandardizeConfig,
        *,
        model_sha256: str = "",
        labels: list[str] | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        meta: dict | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.std_cfg = std_cfg
        self.model_sha256 = model_sha256
        self.labels = list(labels or [])
        self.batch_size = int(batch_size)
        self.meta = dict(meta or {})
        self.embed_dim = int(getattr(model, "embed_dim", 0) or model.cfg.embed_dim)
        #: The checkpoint file, when loaded from one: its guard and vote calibration live beside it.
        self.model_path: Path | None = None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, device: str | torch.device | None = None, batch_size: int = 32
    ) -> "Embedder":
        """Load a ``cxr train`` checkpoint, the released one when ``path`` is None (ModelError with a fix
        when it is not one)."""
        from embed.models import load_checkpoint, resolve_model_path

        dev = pick_device(device)
        resolved = resolve_model_path(path)
        loaded = load_checkpoint(resolved, device=dev)
        embedder = cls(
            loaded.model,
            loaded.std_cfg,
            model_sha256=loaded.sha256,
            labels=loaded.labels,
            device=dev,
            batch_size=batch_size,
            meta=loaded.meta,
        )
        embedder.model_path = Path(resolved)
        return embedder

    @property
    def size(self) -> int:
        return int(self.std_cfg.size)

    def embed_tensor(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Embed one already-batched tensor [B,1,S,S] (float, [0,1])."""
        with torch.inference_mode():
            out = self.model(x.to(self.device, dtype=torch.float32, non_blocking=True))
            emb = out["embedding"].float().cpu().numpy()
            attn = out["attention"].float().cpu().numpy()
        return emb.astype(np.float32, copy=False), attn.astype(np.float32, copy=False)

    def embed_batch(self, arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardized images [N,S,S] in [0,1] -> (embeddings [N,D] float32 unit rows, attention [N,h,w])."""
        arr = np.asarray(arrays, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3:
            raise ModelError(f"embed_batch takes standardized images [N,S,S], got shape {arr.shape}")
        if arr.shape[1:] != (self.size, self.size):
            raise ModelError(
                f"images are {arr.shape[1]}x{arr.shape[2]} but the model expects {self.size}x{self.size}: "
                "standardize them with the model's std_cfg (Embedder.std_cfg)"
            )
        embs, attns = [], []
        for start in range(0, len(arr), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(arr[start : start + self.batch_size]))[:, None]
            e, a = self.embed_tensor(x)
            embs.append(e)
            attns.append(a)
        if not embs:
            return np.zeros((0, self.embed_dim), np.float32), np.zeros((0, 0, 0), np.float32)
        return np.concatenate(embs), np.concatenate(attns)

    def prepare_image(self, src: str | Path | bytes) -> tuple[np.ndarray, dict]:
        """Read (PNG/JPEG/DICOM) and standardize with the model's config, without the model.

        Returns the standardized image [S,S] float32 in [0,1], rounded to 8 bits exactly as
        indexed images are (the standardized-image cache stores uint8), so a query and the
        same image in the index give the same vector, and the reader's de-identified meta.
        Split from :meth:`embed_image` so a server can decode in a worker pool and batch
        the forward passes of several requests (``embed_batch``).
        """
        from embed.image import read_image
        from embed.standardize import standardize
        from embed.torchdata import to_uint8

        img = read_image(src)
        std = to_uint8(standardize(img, self.std_cfg)).astype(np.float32) / 255.0
        return std, dict(img.meta)

    def embed_image(self, src: str | Path | bytes) -> EmbeddedQuery:
        """Read, standardize (:meth:`prepare_image`) and embed one image."""
        std, meta = self.prepare_image(src)
        emb, attn = self.embed_batch(std[None])
        return EmbeddedQuery(embedding=emb[0], attention=attn[0], standardized=std, meta=meta)
