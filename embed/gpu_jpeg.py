"""JPEG decoding and standardization on the GPU, so the CPU does not cap a GPU's throughput.

At thousands of images per second one CPU core per few hundred JPEGs is the limit of the
local runner (decode + resize + percentiles in OpenCV). :class:`GpuJpegRunner` reads the file
bytes with threads, decodes JPEGs in batches with ``torchvision.io.decode_jpeg(...,
device="cuda")`` (nvJPEG) and standardizes them with torch ops on the same device: grey,
aspect-preserving resize of the longer side to ``size`` (area averaging when shrinking,
bilinear when enlarging), clipping at the configured percentiles, centred zero padding.
Without CUDA the same code runs on the CPU (that is how it is tested here).

It approximates :func:`embed.standardize.standardize` rather than reproducing it bit for bit
(nvJPEG/libjpeg's grey output and float rounding differ from OpenCV's RGB decode and grey
conversion by a grey level or two),
so indexes meant to be compared with CPU-built ones should be built with one path; the test
pins the difference (grey levels within ±2, embeddings above 0.999 cosine). Anything that is not a JPEG, a JPEG the
GPU decoder refuses, and configs with equalization go through the CPU reader
(:func:`embed.pipeline.read_row`), so unreadable images are reported exactly as the local
runner reports them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from embed.pipeline import Failure, MappedBatch, Mapper, read_row
from embed.standardize import StandardizeConfig

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def decode_jpegs(datas: Sequence[bytes], device: str) -> list[torch.Tensor]:
    """JPEG bytes -> grey uint8 tensors [H,W] on ``device`` (one batched nvJPEG call on CUDA)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    if not tensors:
        return []
    out = decode_jpeg(tensors, mode=ImageReadMode.GRAY, device=device)
    return [t[0] for t in out]


def is_whole_jpeg(data: bytes | None) -> bool:
    """A JPEG that ends with its EOI marker; truncated ones go to the CPU reader, which reports them."""
    return data is not None and data[:3] == JPEG_MAGIC and data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


def _area_weights(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """[n_out, n_in] weights of an area-averaging shrink: each output pixel averages the input span it
    covers, partial pixels weighted by their overlap (what OpenCV's INTER_AREA does)."""
    scale = n_in / n_out
    starts = torch.arange(n_out, device=device, dtype=torch.float64) * scale
    edges = torch.arange(n_in + 1, device=device, dtype=torch.float64)
    lo = torch.maximum(edges[:-1][None, :], starts[:, None])
    hi = torch.minimum(edges[1:][None, :], starts[:, None] + scale)
    return ((hi - lo).clamp_min(0) / scale).to(torch.float32)


def standardize_tensor(grey: torch.Tensor, cfg: StandardizeConfig) -> torch.Tensor:
    """One grey image [H,W] (any dtype, on any device) -> uint8 [S,S] as the model sees it (see module doc)."""
    if cfg.equalize != "none":
        raise ValueError("equalization runs on the CPU path only")
    x = grey.to(torch.float32)
    h, w = x.shape
    size = int(cfg.size)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        if scale < 1:  # two small matrix products: exact area averaging, fast on a GPU
            x = _area_weights(h, nh, x.device) @ x @ _area_weights(w, nw, x.device).T
        else:
            x = F.interpolate(x[None, None], size=(nh, nw), mode="bilinear", align_corners=False)[0, 0]
    flat = x.flatten()
    q = torch.tensor([cfg.clip_low_pct / 100.0, cfg.clip_high_pct / 100.0], device=x.device)
    lo, hi = torch.quantile(flat, q).tolist()
    if not hi > lo:
        lo, hi = float(flat.min()), float(flat.max())
    x = (x.clamp(lo, hi) - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    out = torch.zeros((size, size), dtype=torch.float32, device=x.device)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = x
    return (out * 255.0).round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class GpuJpegRunner:
    """A :class:`embed.pipeline.Runner` that decodes and standardizes JPEGs on ``device`` (CUDA when present)."""

    batch_size: int = 256
    device: str | None = None
    io_threads: int = 8
    use_cache: bool = False  # the CPU fallback's standardized-image cache

    def batches(self, paths: Sequence[str | Path], std_cfg: StandardizeConfig,
                mapper: Mapper | None) -> Iterator[MappedBatch]:
        device = self.device or default_device()

        def read(p: str | Path) -> bytes | None:
            try:
                return Path(p).read_bytes()
            except OSError:
                return None

        with ThreadPoolExecutor(max_workers=max(1, self.io_threads)) as pool:
            for start in range(0, len(paths), self.batch_size):
                chunk = [str(p) for p in paths[start:start + self.batch_size]]
                datas = list(pool.map(read, chunk))
                images = np.zeros((len(chunk), std_cfg.size, std_cfg.size), np.uint8)
                ok = np.zeros(len(chunk), bool)
                jpeg = [j for j, d in enumerate(datas) if is_whole_jpeg(d) and std_cfg.equalize == "none"]
                try:
                    decoded = decode_jpegs([datas[j] for j in jpeg], device)
                    for j, grey in zip(jpeg, decoded):
                        images[j] = standardize_tensor(grey, std_cfg).cpu().numpy()
                        ok[j] = True
                except RuntimeError as exc:  # one bad JPEG fails the batched call: the CPU path sorts it out
                    log.info("GPU JPEG batch decode failed (%s): these images go through the CPU reader", exc)
                failures: list[Failure] = []
                for j in np.flatnonzero(~ok):
                    row = read_row({"pos": start + int(j), "path": chunk[j]}, std_cfg, self.use_cache)
                    if row["error"]:
                        failures.append(Failure(start + int(j), str(row["error"])))
                    else:
                        images[j] = row["image"]
                        ok[j] = True
                columns = {"pos": np.arange(start, start + len(chunk), dtype=np.int64)[ok], "image": images[ok]}
                if mapper is not None and ok.any():
                    columns = mapper(columns)
                yield MappedBatch(columns, failures, len(chunk))
