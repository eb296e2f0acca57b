"""``cxr calibrate``: fit the OOD guard and the vote calibration of a checkpoint, saved beside it.

One pass over a sample of the datasets, split by patient with the checkpoint's own split
(:func:`embed.split.labelled_split`, the split ``cxr train`` and ``cxr evaluate`` use):

* training patients -> the guard's pixel model, and the vote calibration (each training
  film votes over the *other* training patients' films, leave-one-patient-out, and
  isotonic maps are fitted per finding on those votes: no validation film is ever used);
* validation patients -> the guard's two thresholds (their nearest-training-film
  similarity and pixel distance), and the honest figures: the guard's false-flag rate on
  a held-out half of them, and the vote's expected calibration error before/after.

Sampling keeps the run within minutes on a CPU; thresholds from a sample are conservative
for a full index (a real index offers closer neighbours than the sample did).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from embed.guard import OODGuard, guard_path, texture, thumbnails
from embed.pipeline import Collector, EmbedMapper, LocalRunner, chain, run_pipeline
from embed.split import labelled_split, patient_key
from embed.vote_calibration import MIN_EXAMPLES, VoteCalibration, calibration_path, expected_calibration_error

if TYPE_CHECKING:
    from embed.inference import Embedder

log = logging.getLogger(__name__)


@dataclass
class CalibrationReport:
    """Figures of one ``cxr calibrate`` run (written as JSON beside the outputs)."""

    n_train: int
    n_val: int
    guard_false_flags_held_out: float  # thresholds from one half of the validation patients, rate on the other
    guard_false_flags_fit: float  # the saved guard (thresholds from all validation films), on those films
    ece_before: float
    ece_after: float
    per_finding: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _thumb_mapper(batch: dict[str, Any]) -> dict[str, Any]:
    images = np.asarray(batch["image"])
    return {**batch, "thumb": thumbnails(images), "texture": texture(images)}


def embed_with_thumbs(embedder: Embedder, paths: Sequence[str], workers: int = 0) -> dict[str, np.ndarray]:
    """Embeddings, guard thumbnails and positions of the readable ``paths`` (one read per image)."""
    sink = Collector(("pos", "embedding", "thumb", "texture"))
    run_pipeline(list(paths), embedder.std_cfg, chain(EmbedMapper(embedder), _thumb_mapper), sink,
                 runner=LocalRunner(32, workers), progress=False)
    cols = sink.result()
    order = np.argsort(cols["pos"], kind="stable")
    return {k: v[order] for k, v in cols.items()}


def _sample(idx: Sequence[int], n: int | None, rng: np.random.Generator) -> list[int]:
    idx = list(idx)
    if n is None or len(idx) <= n:
        return idx
    return sorted(rng.choice(idx, size=n, replace=False).tolist())


def finding_matrix(records: Sequence[Any], vocab: Sequence[str]) -> np.ndarray:
    """Multi-hot [N, len(vocab)] of each record's findings (the API's vote is over findings)."""
    col = {f: j for j, f in enumerate(vocab)}
    y = np.zeros((len(records), len(vocab)), bool)
    for i, r in enumerate(records):
        for f in r.findings:
            if f in col:
                y[i, col[f]] = True
    return y


def run_calibration(model: str | Path, datasets: Sequence[str], *, max_train: int = 800, max_val: int = 400,
                    k: int = 10, seed: int = 0, device: str | None = None, workers: int = 0,
                    out_dir: str | Path | None = None, min_examples: int = MIN_EXAMPLES) -> CalibrationReport:
    """Fit and save ``<model>.guard.npz`` and ``<model>.calibration.json``; return the figures."""
    from embed.datasets import load_datasets
    from embed.evaluate.runner import _train_cfg
    from embed.inference import Embedder
    from embed.metrics import knn_vote_scores

    embedder = Embedder.from_checkpoint(model, device=device)
    cfg = _train_cfg(embedder.meta)
    records = load_datasets(list(datasets)).records
    split = labelled_split(records, cfg["label_scheme"], embedder.labels or sorted({"normal"}),
                           cfg["val_fraction"], cfg["seed"], str(cfg["split_scheme"]))
    rng = np.random.default_rng(seed)
    tr = _sample(split.train, max_train, rng)
    va = _sample(split.val, max_val, rng)
    recs = [split.records[i] for i in tr + va]
    cols = embed_with_thumbs(embedder, [r.image_path for r in recs], workers)
    pos = cols["pos"]
    is_val = pos >= len(tr)
    rec_ok = [recs[p] for p in pos]
    emb, thumbs, tex = cols["embedding"], cols["thumb"], cols["texture"]
    patients = np.array([patient_key(r) for r in rec_ok], dtype=object)
    vocab = sorted({f for r in rec_ok for f in r.findings})
    y = finding_matrix(rec_ok, vocab)
    tr_i, va_i = np.flatnonzero(~is_val), np.flatnonzero(is_val)

    # guard: pixel model on training films; thresholds on one half of the validation patients,
    # false-flag rate reported on the other half (films the thresholds never saw).
    nn_val = (emb[va_i] @ emb[tr_i].T).max(axis=1)
    half = np.array([hash_half(p) for p in patients[va_i]])
    guard_fit = OODGuard.fit(thumbs[tr_i], thumbs[va_i][~half], nn_val[~half], model_sha256=embedder.model_sha256,
                             val_texture=tex[va_i][~half])
    flags_held = np.mean([_flag(guard_fit, thumbs[j], tex[j], s) for j, s in zip(va_i[half], nn_val[half])]) \
        if half.any() else 0.0
    guard = OODGuard.fit(thumbs[tr_i], thumbs[va_i], nn_val, model_sha256=embedder.model_sha256,
                         val_texture=tex[va_i], reference=emb[tr_i])
    flags_all = np.mean([_flag(guard, thumbs[j], tex[j], s) for j, s in zip(va_i, nn_val)])

    # vote calibration: leave-one-patient-out votes among training patients only.
    votes_tr = knn_vote_scores(emb[tr_i], None, y[tr_i], query_patients=patients[tr_i], k=k, n_classes=len(vocab))
    cal = VoteCalibration.fit(votes_tr, y[tr_i], vocab, k=k, model_sha256=embedder.model_sha256,
                              train_patients=sorted(set(patients[tr_i].tolist())), min_examples=min_examples)
    votes_va = knn_vote_scores(emb[va_i], emb[tr_i], y[tr_i], query_patients=patients[va_i],
                               ref_patients=patients[tr_i], k=k, n_classes=len(vocab))
    cal_va = cal.apply_matrix(votes_va, vocab)
    fitted = [j for j, f in enumerate(vocab) if f in cal.maps]
    ece_b = expected_calibration_error(votes_va[:, fitted], y[va_i][:, fitted])
    ece_a = expected_calibration_error(cal_va[:, fitted], y[va_i][:, fitted])
    per = {vocab[j]: {"positives_val": int(y[va_i, j].sum()),
                      "ece_before": expected_calibration_error(votes_va[:, [j]], y[va_i][:, [j]]),
                      "ece_after": expected_calibration_error(cal_va[:, [j]], y[va_i][:, [j]])} for j in fitted}

    model = Path(model)
    guard.save(guard_path(model))
    cal.save(calibration_path(model))
    report = CalibrationReport(len(tr_i), len(va_i), float(flags_held), float(flags_all), ece_b, ece_a, per)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.json").write_text(json.dumps(report.as_dict(), indent=2))
        from embed.vote_calibration import reliability_diagram

        reliability_diagram(votes_va[:, fitted], cal_va[:, fitted], y[va_i][:, fitted], out / "reliability.png")
    log.info("guard -> %s, calibration -> %s", guard_path(model), calibration_path(model))
    return report


def hash_half(patient: str) -> bool:
    """A stable coin per patient (which half of the validation patients a film belongs to)."""
    import hashlib

    return hashlib.sha256(f"guard-half:{patient}".encode()).digest()[0] % 2 == 1


def _flag(guard: OODGuard, thumb_row: np.ndarray, tex: float, nn_sim: float) -> bool:
    """The guard's flag for a film given by its features (computed once) and nearest similarity."""
    from embed.guard import _tail_below

    return guard.pixel_tail(thumb_row, float(tex)) < guard.alpha or _tail_below(guard.nn_ref, float(nn_sim)) < guard.alpha
