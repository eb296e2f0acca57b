"""``cxr evaluate``: retrieval and kNN-vote metrics of a checkpoint against two baselines."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint (P@1, P@10, mAP@10, MAP@R, kNN-vote AUC) against baselines",
        description="Embed query and reference images with the checkpoint, with the same architecture "
        "untrained (seed 0) and as raw 64x64 pixel thumbnails, and score similar-case retrieval of each "
        "query against the references (same-patient images never count): P@1, P@10, mAP@10, MAP@R and "
        "the per-class ROC AUC of a similarity-weighted 10-NN vote, over all queries and per source, "
        "plus the source tasks (Kermany pneumonia vs normal, NIH pneumonia vs no finding, COVID-19 vs "
        "other findings). Writes DIR/metrics.json, DIR/results.md and PNG plots. Either give "
        "--reference and --query datasets, or --data with --split val (the checkpoint's own "
        "patient-disjoint validation split; give the datasets `cxr train` got, in the same order) or "
        "--split-from CKPT (another checkpoint's split). Examples: cxr evaluate --model runs/r1/best.pt "
        "--data kermany:/data/chest_xray nih14:/data/nih --split val --out eval/r1 ; "
        "cxr evaluate --model model.pt --reference kermany:/data/a --query kermany:/data/b --out eval/x",
    )
    p.add_argument("--model", default=None, metavar="CKPT", help="checkpoint (default: the released model)")
    p.add_argument("--reference", nargs="+", default=[], metavar="KIND:PATH", help="indexed (reference) datasets")
    p.add_argument("--query", nargs="+", default=[], metavar="KIND:PATH", help="query datasets (unseen patients)")
    p.add_argument("--data", nargs="+", default=[], metavar="KIND:PATH", help="datasets to split (with --split)")
    p.add_argument("--split", choices=["val"], default=None, help="'val': the model's validation split as queries")
    p.add_argument("--split-from", default=None, metavar="CKPT", help="reuse this checkpoint's patient split")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for metrics.json, results.md, PNGs")
    p.add_argument("--k", type=int, default=10, help="neighbours for the vote and mAP@k (default 10)")
    p.add_argument("--no-baselines", action="store_true", help="score only the checkpoint")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed.errors import CXRError
    from embed.evaluate.runner import METHODS, explicit_sets, run_evaluation, split_sets

    from embed.models import resolve_model_path

    model = resolve_model_path(args.model)
    split_mode = bool(args.split or args.split_from)
    if split_mode:
        if args.reference or args.query:
            raise CXRError("give either --data with --split/--split-from, or --reference and --query, not both")
        if not args.data:
            raise CXRError("--split needs the datasets to split: --data KIND:PATH ... (those `cxr train` got)")
        sets = split_sets(args.data, args.split_from or model)
    else:
        if args.data:
            raise CXRError("--data is for --split val / --split-from; otherwise give --reference and --query")
        if not args.reference or not args.query:
            raise CXRError("give --reference KIND:PATH ... and --query KIND:PATH ..., or --data ... --split val")
        sets = explicit_sets(args.reference, args.query)
    if args.k < 1:
        raise CXRError("--k must be >= 1")
    methods = ("model",) if args.no_baselines else METHODS
    # the exact command goes into metrics.json and results.md (only when run from the shell)
    command = "cxr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "evaluate" in sys.argv[1:3] else None
    result = run_evaluation(
        model, sets, args.out, batch_size=args.batch_size, workers=args.workers, device=args.device, k=args.k,
        methods=methods, progress=not args.no_progress, plots=not args.no_plots, command=command,
    )
    for name, m in result["methods"].items():
        o = m["overall"]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{name:10s} P@1 {fmt(o['p_at_1'])}  P@10 {fmt(o['p_at_10'])}  mAP@10 {fmt(o['map_at_10'])}  "
              f"MAP@R {fmt(o['map_at_r'])}  kNN AUC {fmt(o['auc']['macro'])}")
    print(f"wrote {args.out}/metrics.json, results.md and {len(result.get('plots', []))} plots")
    return 0
