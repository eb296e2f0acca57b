"""``cxr embed``: export one embedding per case to a parquet file for research."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="export case embeddings and metadata to a parquet file",
        description="Embed every image of the given KIND:PATH datasets with a checkpoint and write "
        "one row per case: case_id, image_path, source, patient (pseudonym), findings, one nullable "
        "column per prognosis field, view, sex, age, day_offset and a fixed-size float32 list column "
        "'embedding'. The file's metadata holds the model sha256, embed_dim and the standardization "
        "config. Unreadable images are skipped and counted. Read it back with "
        "embed.export.read_features(path). Example: cxr embed --model runs/r1/model.pt "
        "kermany:/data/chest_xray --out features.parquet",
    )
    p.add_argument("datasets", nargs="+", metavar="KIND:PATH", help="datasets to embed (several at once)")
    p.add_argument("--model", default=None, metavar="CKPT", help="checkpoint (default: the released model)")
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="output parquet file (written atomically)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes (default 0: in-process)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_runner_flags(p)
    p.set_defaults(func=run)


def add_runner_flags(p: argparse.ArgumentParser) -> None:
    """--runner / --ray-address, shared by `cxr embed` and `cxr index build/add`."""
    p.add_argument("--runner", choices=("local", "ray"), default="local",
                   help="local: this process and --workers decoding processes (default); ray: Ray Data, reading "
                   "as Ray tasks and one encoder per actor (one per GPU where the cluster has GPUs)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --runner ray: join this Ray cluster (e.g. ray://head:10001 or auto; default "
                   "$RAY_ADDRESS, else a local Ray sized to this machine)")


def make_runner(args: argparse.Namespace) -> Any:
    """The pipeline runner the flags ask for (None = the local default)."""
    from embed.errors import CXRError

    if args.runner != "ray":
        if args.ray_address:
            raise CXRError("--ray-address needs --runner ray")
        return None
    from embed.ray_runner import RayRunner

    return RayRunner(batch_size=args.batch_size, address=args.ray_address, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    from embed.errors import CXRError
    from embed.export import export_features

    if args.batch_size < 1 or args.workers < 0:
        raise CXRError("--batch-size must be >= 1 and --workers >= 0")
    from embed.models import resolve_model_path

    model = resolve_model_path(args.model)
    summary = export_features(
        args.datasets, model, args.out, batch_size=args.batch_size, workers=args.workers,
        device=args.device, progress=not args.no_progress, runner=make_runner(args),
    )
    print(
        f"wrote {summary['rows']} cases ({summary['embed_dim']}-d embeddings) to {summary['out']}; "
        f"skipped {summary['skipped_images']} unreadable images and {summary['skipped_rows']} dataset rows"
    )
    return 0
