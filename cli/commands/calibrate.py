"""``cxr calibrate``: fit a checkpoint's out-of-distribution guard and vote calibration, saved beside it."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="fit the OOD guard and the calibrated kNN vote of a checkpoint (saved beside it)",
        description="Split the datasets by patient with the checkpoint's own split (as `cxr train` and "
        "`cxr evaluate --split val` do), embed a sample, and write beside the checkpoint: "
        "<stem>.guard.npz (pixel model from training films, thresholds from validation films for <= 2%% "
        "false flags) and <stem>.calibration.json (isotonic maps per finding fitted on leave-one-patient-out "
        "10-NN votes of training patients only). `cxr search`, the API and the page use them. Prints the "
        "false-flag rate and the expected calibration error before/after on validation patients. Example: "
        "cxr calibrate --model runs/r1/best.pt --data covid-chestxray:/data/cc kermany:/data/k nih14:/data/n "
        "--out eval/calib",
    )
    p.add_argument("--model", default=None, metavar="CKPT", help="checkpoint (default: the released model)")
    p.add_argument("--data", nargs="+", required=True, metavar="KIND:PATH", help="datasets to split and sample")
    p.add_argument("--max-train", type=int, default=800, help="training films sampled (default 800)")
    p.add_argument("--max-val", type=int, default=400, help="validation films sampled (default 400)")
    p.add_argument("--k", type=int, default=10, help="neighbours of the calibrated vote (default 10)")
    p.add_argument("--out", default=None, metavar="DIR", help="also write calibration.json and reliability.png here")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed.calibrate import run_calibration
    from embed.models import resolve_model_path

    report = run_calibration(resolve_model_path(args.model), args.data, max_train=args.max_train,
                             max_val=args.max_val, k=args.k, device=args.device, out_dir=args.out)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"films: {report.n_train} training, {report.n_val} validation")
    print(f"guard false flags on validation films: {report.guard_false_flags_held_out:.1%} (held-out half), "
          f"{report.guard_false_flags_fit:.1%} (the films that set the thresholds)")
    print(f"vote ECE on validation patients: {report.ece_before:.4f} raw -> {report.ece_after:.4f} calibrated")
    return 0
