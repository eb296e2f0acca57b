#!/usr/bin/env python
"""Embedding throughput: the one embedding pipeline against forward passes alone.

`cxr index build`, `cxr embed`, `cxr evaluate` and training validation all run
embed.pipeline (reader -> mapper -> writer on the LocalRunner's DataLoader); this measures it.
Same model, batch size and machine, one run:
  forward   - model forward on pre-loaded standardized tensors (the ceiling)
  cold      - read + decode + standardize + forward on real shared images, empty cache
              (embed.pipeline.embed_paths with the workers of `cxr index build`)
  warm      - the same with the standardized-image cache filled (a second build)
  hash      - sha256 of the files (dedup step of the build), for reference
  ray_cold / ray_warm - the same pipeline on the Ray runner (--runner both; a local Ray
              sized to this machine, or --ray-address), its startup timed apart; ray_ratio =
              Ray / local throughput (Ray's overhead on one box); vectors checked equal
  gpu_jpeg  - JPEG decode + standardize on the GPU (embed.gpu_jpeg, --gpu-jpeg; CPU without CUDA)
Ratios pipeline/forward near 1 mean reading and standardizing are not the bottleneck.

    nice python scripts/bench_embed.py --images 256 --batch-size 32 --runner both
    python scripts/bench_embed.py --images 20000 --batch-size 512 --device cuda --gpu-jpeg --runner local
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PROJECT = Path(__file__).resolve().parents[1]


def shared_images(data: Path, n: int) -> list[str]:
    """n real images spread over the shared sources (PNG and JPEG, mixed sizes and modes)."""
    folders = [data / "chest_xray", data / "covid-chestxray-dataset" / "images", data / "nih-chestxray14-subset"]
    per = [sorted(p for p in f.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) for f in folders if f.is_dir()]
    out: list[str] = []
    i = 0
    while len(out) < n and any(per):
        lst = per[i % len(per)]
        if lst:
            out.append(str(lst.pop(0)))
        i += 1
    return out


def synthetic_jpegs(folder: Path, n: int, side: int = 512) -> list[str]:
    """n distinct radiograph-like grey JPEGs of side x side (for machines without the shared data)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = 0.25 + 0.5 * np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
    base += 0.5 * np.exp(-(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img = base + 0.08 * rng.standard_normal((side, side))
        cy, cx = rng.uniform(0.2, 0.8, 2)
        img += 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        p = folder / f"syn_{i:05d}.jpg"
        cv2.imwrite(str(p), np.clip(255 * img / img.max(), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(str(p))
    return out


def make_embedder(model: str | None, batch: int, device: str | None = None):
    from embed.inference import Embedder

    return Embedder.from_checkpoint(model, device=device, batch_size=batch)  # None: the released model


def bench_ray(emb, paths: list[str], args, local_vectors: np.ndarray, res: dict) -> None:
    """Cold and warm throughput of the Ray runner (own empty cache), startup timed apart; same vectors."""
    import ray

    from embed.pipeline import embed_paths
    from embed.ray_runner import RayRunner

    with tempfile.TemporaryDirectory() as cache:
        env = {"CXR_CACHE_DIR": cache, "PYTHONPATH": str(PROJECT)}
        t = time.perf_counter()
        if args.ray_address:
            ray.init(address=args.ray_address, runtime_env={"env_vars": env}, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=512 * 1024**2, runtime_env={"env_vars": env})
        res["ray_start_s"] = time.perf_counter() - t
        res["ray_resources"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        runner = RayRunner(batch_size=args.batch_size, progress=False)
        try:
            for name in ("ray_cold", "ray_warm"):
                t = time.perf_counter()
                out = embed_paths(emb, paths, runner=runner)
                res[f"{name}_img_s"] = len(paths) / (time.perf_counter() - t)
        finally:
            ray.shutdown()
    res["ray_max_abs_diff"] = float(np.abs(out.vectors - local_vectors).max())
    res["ray_ratio_cold"] = res["ray_cold_img_s"] / res["cold_img_s"]
    res["ray_ratio_warm"] = res["ray_warm_img_s"] / res["warm_img_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CXR_SHARED_DATA", PROJECT.parent / "shared" / "data")))
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: what cxr index build uses)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the released model)")
    ap.add_argument("--runner", choices=("local", "both"), default="local",
                    help="both: also run the Ray runner on the same images, after the local one (ratio in one run)")
    ap.add_argument("--ray-address", default=None, help="Ray cluster to join (default: a local Ray)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    ap.add_argument("--gpu-jpeg", action="store_true", help="also time GPU JPEG decoding (embed.gpu_jpeg)")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the image list (bigger runs from few files)")
    ap.add_argument("--synthetic", type=Path, default=None, metavar="DIR",
                    help="generate --images 512 px JPEGs in DIR instead of reading the shared data")
    args = ap.parse_args()

    from embed.settings import get_settings
    from embed.pipeline import LocalRunner, default_workers, embed_paths
    from index.embedding import hash_files

    base = synthetic_jpegs(args.synthetic, args.images) if args.synthetic else shared_images(args.data, args.images)
    paths = base * max(1, args.repeat)
    if not paths:
        raise SystemExit(f"no images under {args.data}; set --data to the shared data folder")
    workers = default_workers() if args.workers is None else args.workers
    emb = make_embedder(args.model, args.batch_size, args.device)
    res: dict = {"images": len(paths), "batch_size": args.batch_size, "workers": workers, "device": emb.device,
                 "model": getattr(emb.model.cfg, "name", "?"), "input_size": emb.size,
                 "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()}

    t = time.perf_counter()
    hash_files(paths)
    res["hash_img_s"] = len(paths) / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as cache:
        os.environ["CXR_CACHE_DIR"] = cache  # empty cache: the cold path
        get_settings.cache_clear()
        t = time.perf_counter()
        runner = LocalRunner(batch_size=args.batch_size, workers=workers)
        cold = embed_paths(emb, paths, runner=runner)
        res["cold_img_s"] = len(paths) / (time.perf_counter() - t)
        t = time.perf_counter()
        warm = embed_paths(emb, paths, runner=runner)
        res["warm_img_s"] = len(paths) / (time.perf_counter() - t)
        assert np.allclose(cold.vectors, warm.vectors, atol=1e-5)  # the cache changes speed, not results

        from embed.pipeline import images_to_unit
        from embed.torchdata import load_standardized_u8

        arrays = np.stack([load_standardized_u8(p, emb.std_cfg) for p in np.asarray(paths)[warm.positions]])
    x = images_to_unit(arrays)
    emb.embed_tensor(x[: args.batch_size])  # warm-up
    t = time.perf_counter()
    for s in range(0, len(x), args.batch_size):
        emb.embed_tensor(x[s:s + args.batch_size])
    res["forward_img_s"] = len(x) / (time.perf_counter() - t)
    res["ratio_cold"] = res["cold_img_s"] / res["forward_img_s"]
    res["ratio_warm"] = res["warm_img_s"] / res["forward_img_s"]
    res["unreadable"] = len(cold.failures)
    if args.runner == "both":
        bench_ray(emb, paths, args, warm.vectors, res)
    if args.gpu_jpeg:
        from embed.gpu_jpeg import GpuJpegRunner

        jpegs = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
        gpu_runner = GpuJpegRunner(batch_size=args.batch_size, device=str(emb.device))
        embed_paths(emb, jpegs[: args.batch_size], runner=gpu_runner)  # warm-up (nvJPEG, kernels)
        if str(emb.device).startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = embed_paths(emb, jpegs, runner=gpu_runner)
        if str(emb.device).startswith("cuda"):
            torch.cuda.synchronize()
        res["gpu_jpeg_images"] = len(jpegs)
        res["gpu_jpeg_img_s"] = len(jpegs) / (time.perf_counter() - t)
        res["gpu_jpeg_unreadable"] = len(out.failures)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
