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
Ratios pipeline/forward near 1 mean reading and standardizing are not the bottleneck.

    nice python scripts/bench_embed.py --images 256 --batch-size 32
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


def make_embedder(model: str | None, batch: int):
    from embed.inference import Embedder

    return Embedder.from_checkpoint(model, device=None, batch_size=batch)  # None: the released model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CXR_SHARED_DATA", PROJECT.parent / "shared" / "data")))
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: what cxr index build uses)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the released model)")
    args = ap.parse_args()

    from embed.settings import get_settings
    from embed.pipeline import LocalRunner, default_workers, embed_paths
    from index.embedding import hash_files

    paths = shared_images(args.data, args.images)
    if not paths:
        raise SystemExit(f"no images under {args.data}; set --data to the shared data folder")
    workers = default_workers() if args.workers is None else args.workers
    emb = make_embedder(args.model, args.batch_size)
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
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
