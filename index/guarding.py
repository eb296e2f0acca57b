"""The guard and the calibrated vote of a search: the model's sidecar files applied to one query.

:class:`QueryJudge` loads ``<model>.guard.npz`` (:mod:`embed.guard`) and
``<model>.calibration.json`` (:mod:`embed.vote_calibration`) written by ``cxr calibrate``
beside the checkpoint. A file fitted for another model (its sha256 differs) is ignored with a
warning, never applied: a guard judging another model's embeddings would flag at random.
Without the files a search still works; it just carries no flag and no calibrated figures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embed.guard import OODGuard, guard_path
from embed.vote_calibration import VoteCalibration, calibration_path
from index.schemas import CalibratedVote, Hit, OODFlag

log = logging.getLogger(__name__)


@dataclass
class QueryJudge:
    """The fitted guard and vote calibration of one model (either may be None)."""

    guard: OODGuard | None = None
    calibration: VoteCalibration | None = None

    @classmethod
    def for_model(cls, model_path: str | Path | None, model_sha256: str) -> QueryJudge:
        """Load the sidecars of the checkpoint at ``model_path`` that belong to ``model_sha256``."""
        if model_path is None:
            return cls()
        guard = calibration = None
        gp, cp = guard_path(model_path), calibration_path(model_path)
        if gp.is_file():
            guard = OODGuard.load(gp)
            if guard.model_sha256 != model_sha256:
                log.warning("OOD guard %s was fitted for another model; ignored (run `cxr calibrate`)", gp.name)
                guard = None
        if cp.is_file():
            calibration = VoteCalibration.load(cp)
            if calibration.model_sha256 != model_sha256:
                log.warning("vote calibration %s was fitted for another model; ignored (run `cxr calibrate`)", cp.name)
                calibration = None
        return cls(guard, calibration)

    def verdict(self, standardized: np.ndarray | None, nearest_similarity: float | None,
                chroma: float | None = None) -> OODFlag | None:
        """The guard's verdict (None without a guard; the pixel test alone on an empty index)."""
        if self.guard is None:
            return None
        return OODFlag(**self.guard.check(standardized, nearest_similarity, chroma).as_dict())

    def calibrate(self, vote: dict[str, float], hits: Sequence[Hit]) -> dict[str, CalibratedVote]:
        """Calibrated probability per voted finding, with how many of the hits have it."""
        if self.calibration is None:
            return {}
        out: dict[str, CalibratedVote] = {}
        for finding, raw in vote.items():
            n = sum(1 for h in hits if finding in h.case.findings)
            out[finding] = CalibratedVote(probability=self.calibration.apply(finding, raw), raw=float(raw),
                                          neighbours=n, of=len(hits))
        return out
