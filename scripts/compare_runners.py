#!/usr/bin/env python
"""The Ray runner gives the local runner's vectors on the shared datasets (same rows, same skipped rows).

Loads the three shared datasets (covid-chestxray, nih14, kermany) as `cxr embed` does, embeds
every case with the released model on the local runner and on a local Ray of ``--ray-cpus``
CPUs (2: this box), and compares: positions of the embedded rows, the skipped rows with their
reasons, and the largest absolute difference between the vectors. Each runner gets its own
empty standardized-image cache, so both read every image.

    nice python scripts/compare_runners.py --data ../shared/data --ray-cpus 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import ray

    from cli.commands.demo import dataset_specs
    from embed.datasets import load_datasets
    from embed.inference import Embedder
    from embed.pipeline import LocalRunner, default_workers, embed_paths
    from embed.ray_runner import RayRunner
    from embed.settings import get_settings

    load = load_datasets(dataset_specs(args.data))
    paths = [r.image_path for r in load.records]
    emb = Embedder.from_checkpoint(None, device="cpu", batch_size=args.batch_size)
    res: dict = {"datasets": dataset_specs(args.data), "cases": len(paths), "dataset_rows_skipped": len(load.skipped)}
    with tempfile.TemporaryDirectory() as c1, tempfile.TemporaryDirectory() as c2:
        os.environ["CXR_CACHE_DIR"] = c1
        get_settings.cache_clear()
        t = time.perf_counter()
        local = embed_paths(emb, paths, runner=LocalRunner(args.batch_size, default_workers()))
        res["local_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=512 * 1024**2,
                 runtime_env={"env_vars": {"CXR_CACHE_DIR": c2, "PYTHONPATH": str(PROJECT)}})
        try:
            on_ray = embed_paths(emb, paths, runner=RayRunner(batch_size=args.batch_size, progress=False))
        finally:
            ray.shutdown()
        res["ray_s_including_start"] = round(time.perf_counter() - t, 1)
    res.update({
        "same_rows": on_ray.positions.tolist() == local.positions.tolist(),
        "rows_embedded": int(len(local.positions)),
        "same_skipped": [(f.pos, f.reason) for f in on_ray.failures] == [(f.pos, f.reason) for f in local.failures],
        "skipped_images": len(local.failures),
        "max_abs_diff": float(np.abs(on_ray.vectors - local.vectors).max()) if len(local.vectors) else 0.0,
    })
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    if not (res["same_rows"] and res["same_skipped"] and res["max_abs_diff"] <= 1e-5):
        raise SystemExit("the runners differ")


if __name__ == "__main__":
    main()
