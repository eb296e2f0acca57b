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
        """(family, lateral score) for one embedding: lateral when the score reaches the threshold."""
        p = float(self.p_lateral(vector)[0])
        return ("lateral" if p >= self.threshold else "frontal"), p

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


def patient_groups(groups: list[str | None]) -> np.ndarray:
    """Group labels for a patient split: a film without a patient is its own group."""
    return np.array([g if g else f"__film{i}" for i, g in enumerate(groups)])


#: Chosen by 5-fold patient-grouped cross-validation on the shared corpus (docs/results.md):
#: laterals are rare (38 of 2091 labelled films), so classes are balanced and a film is called
#: lateral only at P >= 0.8, which keeps frontal films (the usual query) from being sent to laterals.
DEFAULT_C = 10.0
DEFAULT_THRESHOLD = 0.8


def fit_view_classifier(vectors: np.ndarray, views: list[str | None], groups: list[str | None], *,
                        model_sha256: str, folds: int = 5, c: float = DEFAULT_C,
                        threshold: float = DEFAULT_THRESHOLD) -> ViewClassifier:
    """Train on the rows with a known view family; report accuracy on validation patients.

    Metrics come from patient-grouped k-fold cross-validation: every labelled film is
    predicted by a model that never saw any film of its patient. The stored weights are then
    refit on every labelled row.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    fam = [view_family(v) for v in views]
    keep = np.array([f is not None for f in fam])
    x = np.asarray(vectors, np.float64)[keep]
    y = np.array([f == "lateral" for f in fam if f is not None], dtype=int)
    g = patient_groups([grp for grp, k in zip(groups, keep) if k])
    n_lat, n_front = int(y.sum()), int((1 - y).sum())
    if n_lat < folds or n_front < folds or len(set(g)) < folds:
        raise ValueError(f"need at least {folds} frontal and {folds} lateral labelled films from {folds} patients, "
                         f"got {n_front} frontal and {n_lat} lateral")

    def _model() -> LogisticRegression:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)

    p = np.zeros(len(y))
    for tr, te in GroupKFold(folds).split(x, y, g):
        p[te] = _model().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
    pred = (p >= threshold).astype(int)
    metrics = {
        "val_accuracy": float((pred == y).mean()),
        "val_frontal_recall": float((pred[y == 0] == 0).mean()),
        "val_lateral_recall": float((pred[y == 1] == 1).mean()),
        "val_films": int(len(y)), "val_laterals": n_lat, "val_patients": len(set(g)),
        "protocol": f"{folds}-fold cross-validation grouped by patient", "C": c, "threshold": threshold,
    }
    final = _model().fit(x, y)
    return ViewClassifier(weights=final.coef_[0].tolist(), bias=float(final.intercept_[0]),
                          model_sha256=model_sha256, threshold=threshold, metrics=metrics)
