"""``cxr evaluate``: embed queries and references with the model and both baselines, score, report.

Two ways to choose queries and references:

* explicit: ``--reference`` datasets are the indexed cases, ``--query`` datasets the
  unseen patients;
* split: one set of datasets and a checkpoint whose training config (label scheme,
  ``val_fraction``, ``seed``) reproduces the patient-disjoint split of ``cxr train``
  (``embed.split.labelled_split``): validation patients are the queries, training
  patients the references. It reproduces the training split only when given the same
  datasets in the same order as ``cxr train`` was.

Every image is read once; the three methods embed the same standardized pixels.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from embed.errors import CXRError
from embed import metrics as M
from embed.split import (DEFAULT_SEED, DEFAULT_VAL_FRACTION, LEGACY_SPLIT_SCHEME, labelled_split, patient_key,
                         split_fingerprint)
from embed.evaluate.tasks import TASKS, infer_vocab, retrieval_classes, task_truth, vote_truth

if TYPE_CHECKING:  # annotations only (imported where used, lazily)
    from embed.datasets.base import CaseRecord
    from embed.inference import Embedder

log = logging.getLogger(__name__)

METHODS = ("model", "untrained", "pixels")


@dataclass
class EvalSets:
    """Queries and references (CaseRecords) and how they were chosen."""

    queries: list[Any]
    references: list[Any]
    mode: str
    notes: dict[str, Any] = field(default_factory=dict)


def _train_cfg(meta: dict[str, Any]) -> dict[str, Any]:
    """The split settings a checkpoint's training run used (the defaults where it records none)."""
    # a checkpoint that records no split scheme was split by pseudonym (the released model)
    defaults = {"label_scheme": "pathology", "val_fraction": DEFAULT_VAL_FRACTION, "seed": DEFAULT_SEED,
                "split_scheme": LEGACY_SPLIT_SCHEME}
    return {**defaults, **(meta.get("train_cfg") or {})}


def explicit_sets(reference_specs: Sequence[str], query_specs: Sequence[str]) -> EvalSets:
    """Queries and references from their own datasets."""
    from embed.datasets import load_datasets

    refs = load_datasets(list(reference_specs))
    qs = load_datasets(list(query_specs))
    notes = {"reference_datasets": list(reference_specs), "query_datasets": list(query_specs),
             "skipped_rows": len(refs.skipped) + len(qs.skipped)}
    return EvalSets(qs.records, refs.records, "explicit", notes)


def _check_split(ckpt: dict[str, Any], val_ids: Sequence[str], path: str | Path) -> bool:
    """Compare with the split the checkpoint recorded, if any: ``split.val_sha256`` in its meta or
    metrics, :func:`split_fingerprint` of the validation records' case ids (before unreadable
    images are dropped).

    The split hashes patient pseudonyms, which depend on the pseudonym key: other datasets,
    another order or another ``CXR_PSEUDONYM_KEY`` give other validation patients.
    """
    from embed.errors import ConfigMismatchError

    rec = ckpt.get("split") or (ckpt.get("metrics") or {}).get("split") or {}
    if not rec:
        log.warning("%s records no split fingerprint: cannot verify that these are its validation patients "
                    "(same datasets, same order, same CXR_PSEUDONYM_KEY as `cxr train` needed)", Path(path).name)
        return False
    want = rec.get("val_sha256")
    if want and want != split_fingerprint(val_ids):
        raise ConfigMismatchError(
            f"the validation split of {Path(path).name} could not be reproduced ({len(val_ids)} validation images "
            "here): give --data the datasets `cxr train` got, in the same order, "
            "and use the same pseudonym key (CXR_PSEUDONYM_KEY or CXR_HOME) as the training run"
        )
    return True


def split_sets(specs: Sequence[str], split_ckpt: str | Path) -> EvalSets:
    """Validation patients of ``split_ckpt``'s training split as queries, training patients as references."""
    from embed.datasets import load_datasets
    from embed.models.checkpoint import read_checkpoint

    ckpt = read_checkpoint(split_ckpt)
    cfg = _train_cfg(ckpt)
    vocab = list(ckpt.get("labels") or [])
    load = load_datasets(list(specs))
    scheme = cfg["label_scheme"]
    if not vocab:
        vocab = infer_vocab(load.records, scheme)
    split_ = labelled_split(load.records, scheme, vocab, float(cfg["val_fraction"]), int(cfg["seed"]),
                            str(cfg["split_scheme"]))
    records, train_idx, val_idx = split_.records, split_.train, split_.val
    if not val_idx:
        raise CXRError(f"the split of {split_ckpt} has no validation patients (val_fraction {cfg['val_fraction']}); "
                       "use --reference/--query instead")
    verified = _check_split(ckpt, [records[i].case_id for i in val_idx], split_ckpt)
    notes = {"datasets": list(specs), "split_from": str(split_ckpt), "split_verified": verified,
             "val_fraction": cfg["val_fraction"],
             "seed": cfg["seed"], "split_scheme": cfg["split_scheme"], "label_scheme": scheme, "unlabelled_left_out": len(load.records) - len(records),
             "skipped_rows": len(load.skipped)}
    log.info("split from %s: %d validation (query) / %d training (reference) images", Path(split_ckpt).name,
             len(val_idx), len(train_idx))
    return EvalSets([records[i] for i in val_idx], [records[i] for i in train_idx], "split", notes)


def embed_all(
    embedder: Embedder, records: Sequence[CaseRecord], *, methods: Sequence[str] = METHODS, batch_size: int = 32,
    workers: int = 0, progress: bool = True,
) -> tuple[list[int], dict[str, np.ndarray], list[tuple[str, str]]]:
    """One pass of the embedding pipeline over the images: (kept indices, {method: features [N, D_m]}, skipped).

    Every method is a mapper of the same batches (the model, the untrained twin, the pixel
    thumbnails), so all of them see exactly the same images.
    """
    from embed.evaluate.baselines import thumbnail_features, untrained_embedder
    from embed.pipeline import Batch, Collector, EmbedMapper, LocalRunner, Mapper, chain, run_pipeline

    def pixels(batch: Batch) -> Batch:
        return {**batch, "pixels": thumbnail_features(batch["image"].astype(np.float32) / 255.0)}

    mappers: list[Mapper] = []
    if "model" in methods:
        mappers.append(EmbedMapper(embedder, "model"))
    if "untrained" in methods:
        mappers.append(EmbedMapper(untrained_embedder(embedder), "untrained"))
    if "pixels" in methods:
        mappers.append(pixels)
    sink = Collector(("pos", *methods))
    report = run_pipeline([r.image_path for r in records], embedder.std_cfg, chain(*mappers), sink,
                          runner=LocalRunner(batch_size, workers), progress=progress, desc="evaluate")
    cols = sink.result()
    if "pos" not in cols:
        raise CXRError("none of the images could be read; check the dataset paths")
    skipped = [(records[f.pos].case_id, f.reason) for f in report.failures]
    return cols["pos"].tolist(), {m: cols[m] for m in methods}, skipped


def _groups(records: Sequence[Any]) -> list[str]:
    return [patient_key(r) for r in records]


def score_method(
    q: np.ndarray, r: np.ndarray, q_recs: Sequence[Any], r_recs: Sequence[Any], vocab: Sequence[str], scheme: str,
    k: int = 10,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics (overall, per source, tasks) and the raw vote scores for plots."""
    qg, rg = _groups(q_recs), _groups(r_recs)
    q_cls, r_cls = retrieval_classes(q_recs, scheme, vocab), retrieval_classes(r_recs, scheme, vocab)
    q_y, r_y = vote_truth(q_recs, scheme, vocab), vote_truth(r_recs, scheme, vocab)
    scores = M.knn_vote_scores(q, r, r_y, query_patients=qg, ref_patients=rg, k=k, n_classes=len(vocab))
    sources = np.array([rec.source for rec in q_recs])

    def block(mask: np.ndarray) -> dict[str, Any]:
        idx = np.nonzero(mask)[0]
        ret = M.retrieval_metrics(q[idx], q_cls[idx], r, r_cls, query_patients=[qg[i] for i in idx],
                                  ref_patients=rg, map_k=k)
        auc = {c: M.roc_auc(q_y[idx, j], scores[idx, j]) for j, c in enumerate(vocab)}
        defined = [v for v in auc.values() if v is not None]
        auc["macro"] = float(np.mean(defined)) if defined else None
        return {**ret, "n_images": int(len(idx)), "auc": auc}

    out: dict[str, Any] = {"overall": block(np.ones(len(q_recs), bool)), "per_source": {}, "tasks": {},
                           "same_patient": M.same_patient_recall(q, qg)}
    for src in sorted(set(sources)):
        out["per_source"][src] = block(sources == src)
    raw: dict[str, Any] = {"class_scores": scores, "class_truth": q_y, "tasks": {}}
    for task in TASKS:
        truth = task_truth(task, q_recs)
        if not (truth >= 0).any():
            continue
        ref_pos = np.array([task.positive(rec) for rec in r_recs])
        sel = np.nonzero(truth >= 0)[0]
        s = M.knn_vote_scores(q[sel], r, ref_pos[:, None], query_patients=[qg[i] for i in sel], ref_patients=rg,
                              k=k)[:, 0]
        y = truth[sel] == 1
        out["tasks"][task.name] = {"title": task.title, "auc": M.roc_auc(y, s), "n_pos": int(y.sum()),
                                   "n_neg": int((~y).sum())}
        raw["tasks"][task.name] = (y, s)
    return out, raw


def run_evaluation(
    model_path: str | Path, sets: EvalSets, out_dir: str | Path, *, batch_size: int = 32, workers: int = 0,
    device: str | None = None, k: int = 10, methods: Sequence[str] = METHODS, progress: bool = True,
    plots: bool = True, command: str | None = None,
) -> dict[str, Any]:
    """Embed, score every method, write metrics.json, results.md and the PNG plots; returns the metrics."""
    from embed.evaluate.report import markdown_report
    from embed.inference import Embedder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not sets.queries or not sets.references:
        raise CXRError(f"need queries and references, got {len(sets.queries)} and {len(sets.references)}")
    embedder = Embedder.from_checkpoint(model_path, device=device, batch_size=batch_size)
    scheme = _train_cfg(embedder.meta).get("label_scheme", "pathology")
    vocab = list(embedder.labels) or infer_vocab(list(sets.queries) + list(sets.references), scheme)

    records = list(sets.queries) + list(sets.references)
    kept, feats, skipped = embed_all(embedder, records, methods=methods, batch_size=batch_size, workers=workers,
                                     progress=progress)
    n_q = len(sets.queries)
    q_pos = [j for j, i in enumerate(kept) if i < n_q]
    r_pos = [j for j, i in enumerate(kept) if i >= n_q]
    q_recs = [records[kept[j]] for j in q_pos]
    r_recs = [records[kept[j]] for j in r_pos]
    if not q_recs or not r_recs:
        raise CXRError("after skipping unreadable images there are no queries or no references left")

    result: dict[str, Any] = {
        "model": {"path": str(model_path), "sha256": embedder.model_sha256, "embed_dim": embedder.embed_dim,
                  "std_cfg": embedder.std_cfg.to_dict()},
        "command": command, "mode": sets.mode, **sets.notes, "k": k, "label_scheme": scheme, "classes": vocab,
        "n_queries": len(q_recs), "n_references": len(r_recs), "skipped_images": len(skipped),
        "skipped_reasons": dict(Counter(r for _, r in skipped)),
        "queries_per_source": dict(Counter(r.source for r in q_recs)),
        "references_per_source": dict(Counter(r.source for r in r_recs)),
        "methods": {},
    }
    raws: dict[str, Any] = {}
    for m in methods:
        f = feats[m]
        result["methods"][m], raws[m] = score_method(f[q_pos], f[r_pos], q_recs, r_recs, vocab, scheme, k=k)
        o = result["methods"][m]["overall"]
        log.info("%s: P@1 %s  MAP@R %s  macro AUC %s", m, _fmt(o["p_at_1"]), _fmt(o["map_at_r"]), _fmt(o["auc"]["macro"]))
    if plots:
        from embed.evaluate.plots import plot_projection, plot_roc_per_class, plot_roc_tasks

        files = [plot_roc_per_class(raws, vocab, out / "roc_per_class.png"),
                 plot_roc_tasks(raws, out / "roc_tasks.png")]
        for m in methods:
            all_feats = np.concatenate([feats[m][q_pos], feats[m][r_pos]])
            files.append(plot_projection(all_feats, q_recs + r_recs, scheme, out / f"projection_{m}.png",
                                         title=f"{m}: PCA of {len(all_feats)} images"))
        result["plots"] = [p.name for p in files if p is not None]
    _write_text(out / "metrics.json", json.dumps(result, indent=2, sort_keys=False, default=_json_default))
    _write_text(out / "results.md", markdown_report(result))
    return result


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
