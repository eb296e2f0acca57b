"""View families (frontal PA/AP vs lateral) and the small frontal/lateral classifier on the embedding.

Why: a frontal query answered with lateral films (and the reverse) is a worse answer
whatever the similarity says, so by default the engine keeps neighbours of the
query's view family. The query's view comes from DICOM ``ViewPosition`` when the
file has one; PNG/JPEG uploads carry none, so a logistic regression on the
embedding (256 weights and a bias, a JSON file) predicts the family. It is trained
once, offline, on the labelled views of the shared corpus with a patient split
(``scripts/train_view_classifier.py``), and stored beside the model
(``<model>.view.json``) or inside an index folder (``view_classifier.json``); it is
only used with the model whose sha256 it records, and never trained at query time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

ViewFamily = Literal["frontal", "lateral"]
FAMILIES: tuple[str, str] = ("frontal", "lateral")
INDEX_FILE = "view_classifier.json"
MODEL_SUFFIX = ".view.json"

_LATERAL_EXACT = {"L", "LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
_FRONTAL_EXACT = {"FRONTAL", "PA", "AP"}


def view_family(view: str | None) -> str | None:
    """"frontal" for PA/AP (supine, erect...), "lateral" for L/LL/RL/LATERAL..., None when unknown.

    ``view_family_sql`` below must say the same thing in SQL.
    """
    if view is None:
        return None
    v = " ".join(str(view).upper().replace("_", " ").split())
    if not v:
        return None
    if v in _LATERAL_EXACT or "LAT" in v:
        return "lateral"
    if v in _FRONTAL_EXACT or v.startswith("PA") or v.startswith("AP"):
        return "frontal"
    return None


def view_family_sql(col: str, family: str) -> str:
    """A SQL predicate true when ``col`` is a view of ``family`` (mirrors :func:`view_family`)."""
    v = f"UPPER(REPLACE(COALESCE({col}, ''), '_', ' '))"
    lateral = f"({v} IN ({', '.join(repr(x) for x in sorted(_LATERAL_EXACT))}) OR {v} LIKE '%LAT%')"
    if family == "lateral":
        return lateral
    frontal = f"({v} IN ({', '.join(repr(x) for x in sorted(_FRONTAL_EXACT))}) OR {v} LIKE 'PA%' OR {v} LIKE 'AP%')"
    return f"(NOT {lateral} AND {frontal})"


def other_family(family: str) -> str:
    return "lateral" if family == "frontal" else "frontal"


@dataclass
class ViewClassifier:
    """Logistic regression frontal (0) vs lateral (1) on unit embeddings; plain numbers, no pickle."""

    weights: list[float]
    bias: float
    model_sha256: str
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)

    def p_lateral(self, vectors: np.ndarray) -> np.ndarray:
        """P(lateral) for [N,D] (or [D]) embeddings."""
        x = np.atleast_2d(np.asarray(vectors, np.float64))
        z = x @ np.asarray(self.weights, np.float64) + float(self.bias)
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, vector: np.ndarray) -> tuple[str, float]:
        """(family, confidence in the predicted family) for one embedding."""
        p = float(self.p_lateral(vector)[0])
        return ("lateral", p) if p >= self.threshold else ("frontal", 1.0 - p)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ViewClassifier:
        d = json.loads(Path(path).read_text())
        return cls(weights=[float(w) for w in d["weights"]], bias=float(d["bias"]),
                   model_sha256=str(d["model_sha256"]), threshold=float(d.get("threshold", 0.5)),
                   metrics=dict(d.get("metrics") or {}))


def find_view_classifier(model_sha256: str, dim: int, *, index_dir: str | Path | None = None,
                         model_path: str | Path | None = None) -> ViewClassifier | None:
    """The stored classifier for this model: the index folder's first, then the one beside the model.

    One trained for another model (sha256) or another embedding size is ignored with a log line:
    its weights would mean nothing for these vectors.
    """
    candidates = []
    if index_dir is not None:
        candidates.append(Path(index_dir) / INDEX_FILE)
    if model_path is not None:
        p = Path(model_path)
        candidates.append(p.with_name(p.stem + MODEL_SUFFIX))
    for path in candidates:
        if not path.is_file():
            continue
        try:
            clf = ViewClassifier.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("view classifier %s unreadable (%s); ignored", path.name, type(exc).__name__)
            continue
        if clf.model_sha256 != model_sha256 or len(clf.weights) != dim:
            log.warning("view classifier %s was trained for another model; ignored", path.name)
            continue
        return clf
    return None


def patient_split(groups: list[str | None], val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask of validation rows: whole patients (a film without a patient is its own)."""
    keys = [g if g else f"__film{i}" for i, g in enumerate(groups)]
    uniq = sorted(set(keys))
    rng = np.random.default_rng(seed)
    val_patients = set(rng.choice(uniq, size=max(1, int(round(val_fraction * len(uniq)))), replace=False).tolist())
    return np.array([k in val_patients for k in keys])


def fit_view_classifier(vectors: np.ndarray, views: list[str | None], groups: list[str | None], *,
                        model_sha256: str, val_fraction: float = 0.2, seed: int = 0,
                        c: float = 1.0) -> ViewClassifier:
    """Train on the rows with a known view family; metrics on validation patients never seen in training.

    Class weights are balanced (laterals are few), and the final weights are refit on every
    labelled row once the validation figures are taken.
    """
    from sklearn.linear_model import LogisticRegression

    fam = [view_family(v) for v in views]
    keep = np.array([f is not None for f in fam])
    x = np.asarray(vectors, np.float64)[keep]
    y = np.array([f == "lateral" for f, k in zip(fam, keep) if k], dtype=int)
    g = [grp for grp, k in zip(groups, keep) if k]
    if y.sum() < 2 or (1 - y).sum() < 2:
        raise ValueError(f"need at least 2 frontal and 2 lateral labelled films, got {int((1 - y).sum())} "
                         f"frontal and {int(y.sum())} lateral")
    val = patient_split(g, val_fraction, seed)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit(x[~val], y[~val])
    pred = model.predict(x[val])
    yv = y[val]
    metrics = {
        "val_accuracy": float((pred == yv).mean()) if len(yv) else None,
        "val_frontal_recall": float((pred[yv == 0] == 0).mean()) if (yv == 0).any() else None,
        "val_lateral_recall": float((pred[yv == 1] == 1).mean()) if (yv == 1).any() else None,
        "val_films": int(len(yv)), "val_laterals": int(yv.sum()),
        "val_patients": len({k for k, v in zip(g, val) if v}),
        "train_films": int((~val).sum()), "train_laterals": int(y[~val].sum()),
    }
    final = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)
    return ViewClassifier(weights=final.coef_[0].tolist(), bias=float(final.intercept_[0]),
                          model_sha256=model_sha256, metrics=metrics)
