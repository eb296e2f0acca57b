"""The training loop: multi-similarity loss + miner + m-per-class sampler, validation, checkpoints.

Run state (model, optimizer, scheduler, epoch, RNG, history) is written atomically to
``RUN_DIR/last.pt`` after every epoch, so ``--resume`` continues exactly where a run
stopped; the best epoch by validation MAP@R is kept as ``RUN_DIR/best.pt`` and, at the
end, as the fp16 ``RUN_DIR/model.pt`` that the index and the API use.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embed.errors import CXRError, DatasetError
from embed.train.config import TrainConfig

if TYPE_CHECKING:  # annotations only (imported where used, lazily)
    from embed.standardize import StandardizeConfig

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """Everything the loop needs from the datasets: records, classes, split, image datasets."""

    records: list
    labels: np.ndarray  # class index per record (only labelled records kept)
    vocab: list[str]
    train_ds: Any
    val_ds: Any
    std_cfg: StandardizeConfig
    split: dict[str, Any]


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare_data(cfg: TrainConfig, specs: list[str], progress: bool = True) -> RunData:
    """Load datasets, map labels, split by patient and read every image once (cache)."""
    from embed.datasets import load_datasets
    from embed.labels import build_vocab, label_of
    from embed.standardize import StandardizeConfig
    from embed.train.dataset import CaseImageDataset
    from embed.train.augment import AugmentConfig, RadiographAugment
    from embed.split import labelled_split

    load = load_datasets(list(specs))
    vocab = build_vocab([label_of(r, cfg.label_scheme) for r in load.records], min_count=cfg.min_class_count)
    split_ = labelled_split(load.records, cfg.label_scheme, vocab, cfg.val_fraction, cfg.seed, cfg.split_scheme)
    records = split_.records
    if len(vocab) < 2 or not records:
        raise DatasetError(
            f"training needs at least two classes with {cfg.min_class_count}+ images; found {vocab or 'none'} "
            "in the given datasets (check their findings / folder names)"
        )
    labels = np.array([vocab.index(lab) for lab in split_.labels], dtype=np.int64)
    log.info("%d labelled images in %d classes: %s", len(records), len(vocab),
             {v: int((labels == j).sum()) for j, v in enumerate(vocab)})
    train_idx, val_idx = split_.train, split_.val
    if cfg.max_train_images and len(train_idx) > cfg.max_train_images:
        rng = np.random.default_rng(cfg.seed)
        train_idx = sorted(rng.choice(train_idx, cfg.max_train_images, replace=False).tolist())
    std_cfg = StandardizeConfig.from_dict({**cfg.standardize, "size": cfg.image_size})
    aug = RadiographAugment(AugmentConfig(**cfg.augment))
    train_ds = CaseImageDataset([records[i] for i in train_idx], std_cfg, transform=aug, in_memory=True,
                                progress=progress)
    val_ds = CaseImageDataset([records[i] for i in val_idx], std_cfg, progress=progress)  # validate() re-reads
    # dataset item indices are into the records each was given: keep the map to the global list
    train_ds.global_of, val_ds.global_of = train_idx, val_idx
    train_ds.global_index = [train_idx[i] for i in train_ds.kept]  # per dataset position
    val_ds.global_index = [val_idx[i] for i in val_ds.kept]
    log.info("split: %d train / %d validation images (patient-disjoint)", len(train_ds), len(val_ds))
    split = {"val_sha256": split_.val_sha256, "n_train": len(train_ds),
             "n_val": len(val_ds), "val_fraction": cfg.val_fraction, "seed": cfg.seed, "datasets": len(specs)}
    return RunData(records, labels, vocab, train_ds, val_ds, std_cfg, split)


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _loader(ds, batch_size: int, cfg: TrainConfig, sampler=None, shuffle=False):
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=sampler, shuffle=shuffle, drop_last=sampler is not None,
        num_workers=cfg.num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )


def validate(model: torch.nn.Module, data: RunData, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Validation metrics on the patient-disjoint split, embedded by the one pipeline (as `cxr embed` does)."""
    from embed.inference import Embedder
    from embed.pipeline import embed_paths
    from embed.split import patient_key
    from embed.train.validate import validation_metrics

    val = [data.records[i] for i in data.val_ds.global_index]
    out = embed_paths(Embedder(model, data.std_cfg, device=device), [r.image_path for r in val], batch_size=64,
                      workers=cfg.num_workers, progress=False, desc="validate")
    gidx = [data.val_ds.global_index[p] for p in out.positions]
    recs = [data.records[i] for i in gidx]
    return validation_metrics(
        out.vectors, data.labels[gidx], [patient_key(r) for r in recs], [r.source for r in recs], len(data.vocab),
        k=cfg.eval_k, class_names=data.vocab,
    )


def train(cfg: TrainConfig, specs: list[str], out_dir: str | Path, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a run in ``out_dir``; returns the best validation metrics."""
    from pytorch_metric_learning import losses, miners, samplers
    from tqdm import tqdm

    from embed.models import create_model
    from embed.models.checkpoint import atomic_torch_save, checkpoint_dict, save_checkpoint

    out = Path(out_dir)
    state_path = out / "last.pt"
    if state_path.exists() and not resume:
        raise CXRError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    t0 = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg, specs, progress=progress)
    device = select_device(cfg.device)
    use_amp = cfg.amp and device.type == "cuda"
    n_cls = len(data.vocab)
    train_labels = data.labels[data.train_ds.global_index]
    m = max(1, cfg.m_per_class)
    bs = min(cfg.batch_size, m * len(set(train_labels.tolist())))
    bs = max(m, bs - bs % m)
    steps = cfg.steps_per_epoch or max(1, len(data.train_ds) // bs)
    sampler = samplers.MPerClassSampler(train_labels, m=m, batch_size=bs, length_before_new_iter=steps * bs)
    loader = _loader(data.train_ds, bs, cfg, sampler=sampler)

    model = create_model(cfg.model, num_classes=n_cls if cfg.aux_ce_weight > 0 else 0,
                         input_size=cfg.image_size, **cfg.model_overrides).to(device)
    loss_fn = losses.MultiSimilarityLoss(alpha=cfg.ms_alpha, beta=cfg.ms_beta, base=cfg.ms_base)
    miner = miners.MultiSimilarityMiner(epsilon=cfg.miner_epsilon)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    from embed.train.augment import AugmentConfig, RadiographAugment
    from embed.train.instance import InstanceTerm

    instance = InstanceTerm(cfg.instance_weight, RadiographAugment(AugmentConfig(**cfg.augment)),
                            cfg.instance_temperature)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup_epochs * steps)
    planned = cfg.epochs  # shrinks to what fits in max_minutes, so the cosine schedule still ends at 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(planned * steps, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best, bad_epochs, history = 0, -1.0, 0, []
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"]["state_dict"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start_epoch, best, bad_epochs, history = st["epoch"] + 1, st["best"], st["bad_epochs"], st["history"]
        torch.set_rng_state(st["rng"])
        log.info("resumed %s at epoch %d (best MAP@R %.4f)", out, start_epoch + 1, best)
    elif resume:
        log.warning("no run state in %s: starting from scratch", out)

    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    stopped = None
    t_train = time.monotonic()  # epoch times are measured from here (data preparation excluded)
    for epoch in range(start_epoch, cfg.epochs):
        np.random.seed(cfg.seed + epoch)  # MPerClassSampler draws from numpy: reproducible on resume
        torch.manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        t_ep = time.monotonic()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        running, n = 0.0, 0
        for x, idx in bar:
            y = torch.from_numpy(data.labels[[data.train_ds.global_of[int(i)] for i in idx]])
            x, y = x.to(device, non_blocking=True), y.to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                outp = model(x)
            emb = outp["embedding"].float()
            loss = loss_fn(emb, y, miner(emb, y))
            if "logits" in outp:
                loss = loss + cfg.aux_ce_weight * ce(outp["logits"].float(), y)
            if instance.active:
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    loss = loss + instance(model, x, emb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            running, n = running + loss.item(), n + 1
            bar.set_postfix(loss=f"{running / n:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if budget and time.monotonic() - t0 > budget:
                stopped = "time budget"
                break
        metrics = validate(model, data, cfg, device)
        metrics.update(split=data.split, epoch=epoch + 1, train_loss=running / max(1, n),
                       epoch_s=round(time.monotonic() - t_ep, 1))
        history.append(metrics)
        score = metrics.get("mean_average_precision_at_r") or 0.0
        log.info("epoch %d: loss %.4f  P@1 %s  MAP@R %s  kNN-AUC %s  (%.0fs)", epoch + 1, metrics["train_loss"],
                 _f(metrics.get("precision_at_1")), _f(score), _f(metrics.get("knn_auc")), metrics["epoch_s"])
        if score > best:
            best, bad_epochs = score, 0
            save_checkpoint(out / "best.pt", model, std_cfg=data.std_cfg, labels=data.vocab,
                            train_cfg=cfg.to_dict(), metrics=metrics)
        else:
            bad_epochs += 1
        if budget and stopped is None:
            per_epoch = (time.monotonic() - t_train) / (epoch + 1 - start_epoch)
            fit = epoch + 1 + int((budget - (time.monotonic() - t0)) // per_epoch)
            new_plan = max(epoch + 1, min(cfg.epochs, fit))  # shrinks or grows back with the machine's load
            if new_plan != planned:
                planned = new_plan
                sched.lr_lambdas[0] = _lr_lambda(planned * steps, warmup)
                log.info("time budget: schedule re-planned to %d epochs", planned)
        atomic_torch_save({
            "model": checkpoint_dict(model, std_cfg=data.std_cfg, labels=data.vocab, train_cfg=cfg.to_dict(),
                                     metrics=metrics),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "best": best,
            "bad_epochs": bad_epochs, "history": history, "rng": torch.get_rng_state(), "planned_epochs": planned,
        }, state_path)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        if stopped is None and bad_epochs >= cfg.patience:
            stopped = f"no MAP@R gain for {cfg.patience} epochs"
        if stopped is None and epoch + 1 >= planned and planned < cfg.epochs:
            stopped = "time budget (schedule completed early)"
        if stopped:
            log.info("stopping after epoch %d: %s", epoch + 1, stopped)
            break
    export_release(out, half=cfg.release_half)
    summary = {"best_map_r": best, "epochs_run": len(history), "stopped": stopped or "completed",
               "minutes": round((time.monotonic() - t0) / 60, 2), "vocab": data.vocab,
               "n_train": len(data.train_ds), "n_val": len(data.val_ds)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def export_release(run_dir: Path, half: bool = True) -> Path | None:
    """best.pt -> model.pt: fp16 weights, no auxiliary head (what the index and API load)."""
    from embed.models import load_checkpoint, save_checkpoint

    best = run_dir / "best.pt"
    if not best.exists():
        return None
    lm = load_checkpoint(best)
    target = run_dir / "model.pt"
    save_checkpoint(target, lm.model, std_cfg=lm.std_cfg, labels=lm.labels, train_cfg=lm.meta.get("train_cfg"),
                    metrics=lm.meta.get("metrics"), half=half, keep_classifier=False)
    shutil.copy2(run_dir / "config.yaml", run_dir / "model.yaml") if (run_dir / "config.yaml").exists() else None
    return target


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"
