"""Calibration of the kNN vote: raw vote share -> probability, one isotonic map per finding.

The similarity-weighted vote (:mod:`embed.vote`) ranks well but is not a probability: a
10-NN share of 0.9 for "Pneumonia" is right far less than 90% of the time when the
neighbours are near-duplicates of one class prototype. Each finding with enough positives
among training patients gets a monotone (isotonic, non-decreasing) map fitted on
leave-one-patient-out votes of *training patients only* (``cxr calibrate``); the
validation patients only measure it (expected calibration error before/after). A finding
without enough examples keeps its raw vote and is reported as uncalibrated.

Isotonic rather than temperature: the vote is a bounded share, not a logit, and its
miscalibration differs per finding; isotonic is the monotone map with the fewest
assumptions, and monotone means the calibrated ranking (hence every AUC) never gets worse
except for ties. The maps are stored as knots in ``<model>.calibration.json`` beside the
checkpoint, with the number of neighbours ``k`` the votes were taken over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: A finding needs this many positive and negative training films for its own map.
MIN_EXAMPLES = 20


def calibration_path(model_path: str | Path) -> Path:
    """Where the vote calibration of a checkpoint lives: beside it, ``<stem>.calibration.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".calibration.json")


def expected_calibration_error(prob: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """ECE over every (film, finding) pair: mean |accuracy - confidence| in equal-width bins, weighted by size."""
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(truth, np.float64).ravel()
    if len(p) == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            err += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(err)


@dataclass
class VoteCalibration:
    """Per-finding isotonic maps (knots ``x`` -> ``y``) for a vote over ``k`` neighbours."""

    k: int
    model_sha256: str
    maps: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    n_train_patients: int = 0
    train_patients_sha256: str = ""

    @classmethod
    def fit(cls, votes: np.ndarray, truth: np.ndarray, vocab: Sequence[str], *, k: int, model_sha256: str,
            train_patients: Sequence[str], min_examples: int = MIN_EXAMPLES) -> VoteCalibration:
        """Fit one isotonic map per finding from training-patient votes [N,C] and truth [N,C]."""
        import hashlib

        from sklearn.isotonic import IsotonicRegression

        votes = np.asarray(votes, np.float64)
        truth = np.asarray(truth, bool)
        maps: dict[str, tuple[list[float], list[float]]] = {}
        for j, name in enumerate(vocab):
            pos = int(truth[:, j].sum())
            if pos < min_examples or len(truth) - pos < min_examples:
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(votes[:, j], truth[:, j].astype(np.float64))
            maps[name] = ([float(x) for x in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_])
        digest = hashlib.sha256("\n".join(sorted(train_patients)).encode()).hexdigest()
        return cls(int(k), model_sha256, maps, len(train_patients), digest)

    def apply(self, finding: str, vote: float) -> float | None:
        """The calibrated probability of ``finding`` for a raw vote share, None if it has no map."""
        knots = self.maps.get(finding)
        if knots is None:
            return None
        return float(np.interp(float(vote), knots[0], knots[1]))

    def apply_matrix(self, votes: np.ndarray, vocab: Sequence[str]) -> np.ndarray:
        """Calibrate a vote matrix [N,C] whose columns are ``vocab``; columns without a map pass through."""
        out = np.array(votes, np.float64, copy=True)
        for j, name in enumerate(vocab):
            if name in self.maps:
                xs, ys = self.maps[name]
                out[:, j] = np.interp(out[:, j], xs, ys)
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"k": self.k, "model_sha256": self.model_sha256, "method": "isotonic",
                                    "n_train_patients": self.n_train_patients,
                                    "train_patients_sha256": self.train_patients_sha256,
                                    "maps": {n: {"x": x, "y": y} for n, (x, y) in self.maps.items()}}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> VoteCalibration:
        d: dict[str, Any] = json.loads(Path(path).read_text())
        maps = {n: (list(m["x"]), list(m["y"])) for n, m in d["maps"].items()}
        return cls(int(d["k"]), str(d["model_sha256"]), maps, int(d.get("n_train_patients", 0)),
                   str(d.get("train_patients_sha256", "")))


def reliability_diagram(before: np.ndarray, after: np.ndarray, truth: np.ndarray, out: str | Path,
                        bins: int = 10) -> Path:
    """PNG: observed frequency against predicted probability, raw vote and calibrated, with ECE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(truth, np.float64).ravel()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for probs, name in ((before, "raw vote"), (after, "calibrated")):
        p = np.asarray(probs, np.float64).ravel()
        which = np.minimum((p * bins).astype(int), bins - 1)
        xs = [p[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [y[which == b].mean() for b in range(bins) if (which == b).any()]
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {expected_calibration_error(p, y, bins):.3f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency (validation patients)")
    ax.set_title("kNN vote reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
