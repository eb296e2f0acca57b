"""Train the frontal/lateral view classifier on a features file and store it beside the model.

    cxr embed covid-chestxray:../shared/data/covid-chestxray-dataset \
        nih14:../shared/data/nih-chestxray14-subset kermany:../shared/data/chest_xray --out /tmp/feat.parquet
    python scripts/train_view_classifier.py --features /tmp/feat.parquet --out embed/models/released.view.json

Rows with a view of known family train it; the validation figures (printed and stored in the
JSON) come from 5-fold cross-validation grouped by patient, so every film is judged by a
model that never saw its patient; the stored weights are then refit on every labelled row. The engine loads the file with the model whose sha256 it
records (see index/views.py); nothing is trained at query time.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

from embed.export import read_features
from index.views import fit_view_classifier, view_family

log = logging.getLogger("train_view_classifier")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True, help="parquet written by `cxr embed`")
    ap.add_argument("--out", required=True, help="JSON to write (e.g. embed/models/released.view.json)")
    ap.add_argument("--folds", type=int, default=5, help="patient-grouped cross-validation folds")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    df, emb = read_features(args.features)
    views = [None if v is None or v != v else str(v) for v in df["view"].tolist()]
    groups = [None if p is None or p != p else str(p) for p in df["patient"].tolist()]
    fams = Counter(view_family(v) for v in views)
    log.info("films by view family: %s; by source and view: %s", dict(fams),
             dict(Counter(zip(df["source"], views))))
    clf = fit_view_classifier(emb, views, groups, model_sha256=df.attrs["cxr"]["model_sha256"],
                              folds=args.folds)
    clf.metrics.update({"features_rows": len(df), "families": {str(k): v for k, v in fams.items()}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    clf.save(args.out)
    print(json.dumps(clf.metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
