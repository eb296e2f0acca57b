"""`cxr transfer`: do the encoder's features, without retraining, predict a prognosis outcome?"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

DESCRIPTION = """\
Transfer the retrieval encoder's features to a prognosis task, as Cohen et al. did for
intubation. Reads a features file written by `cxr embed ... --out features.parquet`, keeps
rows whose TARGET is known (and drops the others, with a count), reduces each patient to one
row (their earliest frontal image by default), and fits three regularised logistic regressions:
image features alone (standardise -> PCA -> L2 logistic), the --tabular columns alone
(imputed with missing indicators inside the folds), and both. Cross-validation is grouped by
patient (no patient in both a training and a test fold); the AUC is computed over the
out-of-fold predictions, with a 95% interval from resampling patients.

Writes TARGET_report.json, TARGET_report.md, TARGET_roc.png, TARGET_calibration.png in --out
and prints the table. Example:
  cxr transfer --features features.parquet --target went_icu --tabular age,sex,day_offset --out transfer/
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "transfer",
        help="predict a prognosis outcome from exported features (+ clinical columns), patient-grouped CV",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--features", required=True, metavar="PARQUET", help="features file from `cxr embed --out`")
    p.add_argument("--target", required=True, metavar="COLUMN",
                   help="boolean outcome column, e.g. survival, went_icu, intubated")
    p.add_argument("--tabular", default="", metavar="COL,COL",
                   help="clinical columns to use besides the image, e.g. age,sex,day_offset (default: none, "
                        "image model only)")
    p.add_argument("--out", default="transfer_out", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--folds", type=int, default=5, help="patient-grouped CV folds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the bootstrap (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="patient bootstrap resamples for the 95%% interval (default: %(default)s)")
    p.add_argument("--aggregate", choices=("first", "mean", "image"), default="first",
                   help="one row per patient from their earliest image (first), their mean embedding (mean), "
                        "or keep every image, still grouped by patient (image). Default: %(default)s")
    p.add_argument("--all-views", action="store_true", help="keep lateral views (default: frontal only)")
    p.add_argument("--exclude-if", default="", metavar="COL,COL",
                   help="drop patients whose earliest image already has one of these columns True, so the task "
                        "is prognosis rather than detection: e.g. --target intubated --exclude-if intubation_present, "
                        "--target went_icu --exclude-if in_icu")
    p.add_argument("--C", type=float, default=0.1, dest="C",
                   help="inverse L2 strength of the logistic regression (default: %(default)s)")
    p.add_argument("--pca", type=int, default=10, metavar="K",
                   help="principal components kept from the image features (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed.errors import CXRError
    from embed.transfer.data import parse_columns
    from embed.transfer.experiment import run_transfer
    from embed.transfer.model import ModelConfig
    from embed.transfer.report import markdown_table, write_report

    if args.bootstrap < 0:
        raise CXRError(f"--bootstrap must be 0 or more (got {args.bootstrap})")
    if args.C <= 0 or args.pca < 1:
        raise CXRError("--C must be > 0 and --pca at least 1")
    result = run_transfer(
        args.features,
        args.target,
        parse_columns(args.tabular),
        folds=args.folds,
        seed=args.seed,
        n_boot=args.bootstrap,
        aggregate=args.aggregate,
        frontal_only=not args.all_views,
        exclude_if=parse_columns(args.exclude_if),
        cfg=ModelConfig(C=args.C, n_components=args.pca),
    )
    files = write_report(result, args.out)
    print(markdown_table(result.summary))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
