"""``cxr train``: metric-learning training of the encoder on one or more datasets."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the encoder (multi-similarity loss) on KIND:PATH datasets",
        description="Train the image encoder with pytorch-metric-learning's multi-similarity loss, "
        "miner and m-per-class sampler on a patient-disjoint split of the given datasets. "
        "Hyperparameters come from --config (YAML or TOML; see embed/configs/) and are saved in "
        "RUN_DIR/config.yaml. Each epoch writes RUN_DIR/last.pt (resume state) and, when validation "
        "MAP@R improves, RUN_DIR/best.pt; at the end RUN_DIR/model.pt is the fp16 model for "
        "`cxr index`. Example: cxr train --config embed/configs/released.yaml --out runs/r1 "
        "kermany:/data/chest_xray nih14:/data/nih-chestxray14-subset",
    )
    p.add_argument("datasets", nargs="+", metavar="KIND:PATH", help="datasets to train on (several at once)")
    p.add_argument("--config", required=True, help="training config, .yaml or .toml")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="folder for checkpoints, config and history")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last epoch")
    p.add_argument("--max-minutes", type=float, default=None, help="time budget; overrides the config")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs; overrides the config")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed.train.config import TrainConfig
    from embed.train.loop import train

    cfg = TrainConfig.load(args.config)
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes
    if args.epochs is not None:
        cfg.epochs = args.epochs
    summary = train(cfg, args.datasets, args.out, resume=args.resume, progress=not args.no_progress)
    log.info(
        "done: %d epochs (%s), best validation MAP@R %.4f; model: %s/model.pt",
        summary["epochs_run"], summary["stopped"], summary["best_map_r"], args.out,
    )
    return 0
