"""Same-patient recall@1/@5 of the validation patients with several films: model, raw pixels, fusions.

The figure `cxr evaluate --split val` now reports (``embed.metrics.same_patient_recall``), computed
here over only the validation films that can count (patients with several films), so it runs in a
few minutes on a CPU; also the released embedding concatenated with the z-scored 64x64 pixel
thumbnail at a few weights (issue 15's "free first step"), to measure whether fusion helps.

    python scripts/look_alike.py --data covid-chestxray:../shared/data/covid-chestxray-dataset \\
        kermany:../shared/data/chest_xray nih14:../shared/data/nih-chestxray14-subset
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter

import numpy as np

from embed.errors import ConfigMismatchError

log = logging.getLogger("look_alike")


def fuse(model: np.ndarray, pixels: np.ndarray, weight: float) -> np.ndarray:
    """[unit model embedding, weight * unit z-scored pixel thumbnail], re-normalised."""
    from embed.metrics import l2_normalize

    z = pixels - pixels.mean(axis=1, keepdims=True)
    z /= np.maximum(z.std(axis=1, keepdims=True), 1e-6)
    return l2_normalize(np.concatenate([l2_normalize(model), weight * l2_normalize(z)], axis=1))


def _unverified_val(specs: list[str], model: object) -> list:
    """The validation records of the checkpoint's split settings on this machine (no fingerprint check)."""
    from embed.datasets import load_datasets
    from embed.evaluate.runner import _train_cfg
    from embed.models.checkpoint import read_checkpoint
    from embed.split import labelled_split

    ckpt = read_checkpoint(model)
    cfg = _train_cfg(ckpt)
    split = labelled_split(load_datasets(specs).records, cfg["label_scheme"], list(ckpt.get("labels") or []),
                           float(cfg["val_fraction"]), int(cfg["seed"]), str(cfg["split_scheme"]))
    return [split.records[i] for i in split.val]


def main() -> None:
    from embed.evaluate.runner import embed_all, split_sets
    from embed.inference import Embedder
    from embed.metrics import same_patient_recall
    from embed.models import resolve_model_path
    from embed.split import patient_key

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--weights", default="0.5,0.75,1.0,1.5")
    args = ap.parse_args()
    model = resolve_model_path(args.model)
    try:
        queries, verified = split_sets(args.data, model).queries, True
    except ConfigMismatchError as exc:  # e.g. the released model's split, made with another pseudonym key
        log.warning("%s; using this machine's split of the same datasets, unverified", exc)
        queries, verified = _unverified_val(args.data, model), False
    counts = Counter(patient_key(r) for r in queries if r.patient)
    films = [r for r in queries if r.patient and counts[patient_key(r)] > 1]
    embedder = Embedder.from_checkpoint(model)
    kept, feats, _ = embed_all(embedder, films, methods=("model", "pixels"), progress=False)
    pats = [patient_key(films[i]) for i in kept]
    rows = {"released model": same_patient_recall(feats["model"], pats),
            "raw pixels 64x64": same_patient_recall(feats["pixels"], pats)}
    for w in (float(x) for x in args.weights.split(",")):
        rows[f"fusion, pixel weight {w}"] = same_patient_recall(fuse(feats["model"], feats["pixels"], w), pats)
    by_source = Counter(films[i].source for i in kept)
    print(json.dumps({"films_by_source": by_source, "split_verified": verified,
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
