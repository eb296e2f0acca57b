"""``cxr embed``: export one embedding per case to a parquet file for research."""

from __future__ import annotations

import argparse
import logging

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed.errors import CXRError
    from embed.export import export_features

    if args.batch_size < 1 or args.workers < 0:
        raise CXRError("--batch-size must be >= 1 and --workers >= 0")
    from embed.models import resolve_model_path

    model = resolve_model_path(args.model)
    summary = export_features(
        args.datasets, model, args.out, batch_size=args.batch_size, workers=args.workers,
        device=args.device, progress=not args.no_progress,
    )
    print(
        f"wrote {summary['rows']} cases ({summary['embed_dim']}-d embeddings) to {summary['out']}; "
        f"skipped {summary['skipped_images']} unreadable images and {summary['skipped_rows']} dataset rows"
    )
    return 0
