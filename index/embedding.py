"""Embedding many dataset images for the index: content hashes, parallel decode, batched forward.

Decoding and standardizing happen in DataLoader worker processes (through the shared
standardized-image cache of :mod:`embed.torchdata`, so a second build reads tiny
``.npy`` files); the main process only runs the model. Unreadable images are
reported and skipped, never fatal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from embed.errors import CXRError
from embed.torchdata import file_sha256, load_standardized_u8

log = logging.getLogger(__name__)


def hash_files(paths: Sequence[str], workers: int = 4) -> list[str | None]:
    """sha256 of each file's content (None where the file cannot be read); threads overlap the I/O."""

    def one(p: str) -> str | None:
        try:
            return file_sha256(p)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, paths))


class StandardizedImages(Dataset):
    """paths -> (uint8 [S,S] tensor, position, error reason or ""); decoding runs in the workers."""

    def __init__(self, paths: Sequence[str], std_cfg: Any, use_cache: bool = True) -> None:
        self.paths = list(paths)
        self.std_cfg = std_cfg
        self.use_cache = use_cache
        self.size = int(std_cfg.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            arr = load_standardized_u8(self.paths[i], self.std_cfg, use_cache=self.use_cache)
            return torch.from_numpy(arr), i, ""
        except (CXRError, OSError, ValueError) as exc:
            return torch.zeros((self.size, self.size), dtype=torch.uint8), i, f"{type(exc).__name__}: {exc}"[:200]


def _worker_init(_: int) -> None:
    """One thread per worker: the processes already use every core."""
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def default_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1)))


def make_loader(paths: Sequence[str], std_cfg: Any, batch_size: int, workers: int, use_cache: bool = True) -> DataLoader:
    """The DataLoader `cxr index build` uses (also measured by scripts/bench_embed.py)."""
    return DataLoader(
        StandardizedImages(paths, std_cfg, use_cache=use_cache),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )


@dataclass
class EmbedOutput:
    """Vectors of the images that could be read, their positions in the input, and the failures."""

    vectors: np.ndarray
    positions: np.ndarray
    failures: list[tuple[int, str]] = field(default_factory=list)


def embed_paths(
    embedder: Any,
    paths: Sequence[str],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> EmbedOutput:
    """Embed image files with ``embedder`` (an :class:`embed.inference.Embedder`)."""
    workers = default_workers() if workers is None else int(workers)
    dim = int(embedder.embed_dim)
    if not paths:
        return EmbedOutput(np.zeros((0, dim), np.float32), np.zeros(0, np.int64))
    loader = make_loader(paths, embedder.std_cfg, batch_size, workers, use_cache)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="embed", unit="img")
    vecs: list[np.ndarray] = []
    pos: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    try:
        for n_batch, (x, idx, errs) in enumerate(loader):
            ok = np.array([not e for e in errs], dtype=bool)
            failures.extend((int(i), e) for i, e in zip(idx.tolist(), errs) if e)
            if ok.any():
                xb = x[torch.from_numpy(ok)].float().div_(255.0)[:, None]
                emb, _ = embedder.embed_tensor(xb)
                vecs.append(emb)
                pos.append(idx.numpy()[ok])
            if bar is not None:
                bar.update(len(idx))
            if on_batch is not None:
                on_batch(n_batch)
    finally:
        if bar is not None:
            bar.close()
    if failures:
        log.warning("%d of %d images could not be read and were skipped", len(failures), len(paths))
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
    positions = np.concatenate(pos).astype(np.int64) if pos else np.zeros(0, np.int64)
    return EmbedOutput(vectors.astype(np.float32, copy=False), positions, failures)
