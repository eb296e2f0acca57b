"""Training: loss falls on separable synthetic data, cxr train end to end and --resume, split, labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embed.datasets.base import CaseRecord
from embed.labels import label_of, pathology_class
from embed.train.augment import AugmentConfig, RadiographAugment
from embed.train.config import TrainConfig
from embed.split import patient_split
from tests.embed._synthetic import PATTERNS, pattern_image, write_imagefolder

CONFIGS = Path(__file__).resolve().parents[2] / "embed" / "configs"


def test_multisimilarity_loss_falls_on_separable_set():
    from pytorch_metric_learning import losses, miners

    from embed.models import create_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.tensor(np.stack([pattern_image(k, rng) for k in PATTERNS for _ in range(6)]), dtype=torch.float32)[:, None] / 255
    y = torch.arange(3).repeat_interleave(6)
    model = create_model("cxr_test_tiny").train()
    loss_fn, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(15):
        emb = model(x)["embedding"]
        loss = loss_fn(emb, y, miner(emb, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3])


def _rec(i: int, patient: str | None, finding: str, source: str = "s") -> CaseRecord:
    return CaseRecord(case_id=f"{source}/{i}", image_path=f"/x/{i}.png", source=source, patient=patient, findings=[finding])


def test_patient_split_disjoint_stable_stratified():
    recs = [_rec(i, f"p_{i // 3:04d}", "No Finding" if i % 2 else "Pneumonia") for i in range(600)]
    recs += [_rec(1000 + i, None, "Pneumonia") for i in range(20)]  # no patient: each its own group
    labels = [label_of(r) for r in recs]
    tr, va = patient_split(recs, labels, val_fraction=0.2, seed=3)
    assert sorted(tr + va) == list(range(len(recs)))
    assert not {recs[i].patient for i in tr if recs[i].patient} & {recs[i].patient for i in va if recs[i].patient}
    assert 0.15 < len(va) / len(recs) < 0.25
    for cls in set(labels):
        share = sum(labels[i] == cls for i in va) / sum(lab == cls for lab in labels)
        assert 0.1 < share < 0.3
    assert patient_split(recs, labels, 0.2, seed=3) == (tr, va)  # stable
    assert patient_split(recs, labels, 0.2, seed=4)[1] != va  # the seed matters


def test_label_mapping():
    assert pathology_class(["Pneumonia", "Viral Pneumonia", "COVID-19"]) == "covid-19"
    assert pathology_class(["Pneumonia", "Bacterial Pneumonia", "Streptococcus"]) == "bacterial pneumonia"
    assert pathology_class(["Pneumonia", "Viral Pneumonia"]) == "viral pneumonia"
    assert pathology_class(["Pneumonia", "Fungal Pneumonia", "Pneumocystis"]) == "fungal pneumonia"
    assert pathology_class(["Pneumonia", "Effusion"]) == "pneumonia"
    assert pathology_class(["No Finding"]) == "normal"
    assert pathology_class(["ARDS"]) == "ards"
    assert pathology_class([]) is None and pathology_class(["todo"]) is None
    assert label_of(_rec(0, None, "No Finding", "kermany"), "source_pathology") == "kermany:normal"


def test_augment_shapes_range_and_no_flip():
    torch.manual_seed(0)
    x = torch.zeros(1, 32, 32)
    x[:, :, :8] = 1.0  # bright band on the left only
    aug = RadiographAugment(AugmentConfig(noise_std=0.0, brightness=0.0, contrast=0.0, gamma_min=1, gamma_max=1))
    outs = [aug(x) for _ in range(20)]
    assert all(o.shape == x.shape and o.min() >= 0 and o.max() <= 1 for o in outs)
    assert all(o[:, :, :10].mean() > o[:, :, -10:].mean() for o in outs)  # never mirrored
    assert not torch.equal(outs[0], outs[1])


def test_train_config_rejects_unknown_keys(tmp_path):
    from embed.errors import CXRError

    p = tmp_path / "c.yaml"
    p.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(CXRError, match="learning_rate"):
        TrainConfig.load(p)
    p.write_text("epochs = 3\nlr = 0.01\n")
    q = p.with_suffix(".toml")
    p.rename(q)
    assert TrainConfig.load(q).epochs == 3


def test_cli_train_end_to_end_and_resume(tmp_path):
    from cli.main import main
    from embed.models import load_checkpoint

    root = write_imagefolder(tmp_path / "data", per_class=12)
    run = tmp_path / "run"
    args = ["train", "--config", str(CONFIGS / "test_tiny.yaml"), "--out", str(run), "--no-progress",
            f"imagefolder:{root}"]
    assert main(args) == 0
    for name in ("config.yaml", "last.pt", "best.pt", "model.pt", "history.json"):
        assert (run / name).is_file(), name
    hist = json.loads((run / "history.json").read_text())
    assert len(hist) == 1 and hist[0]["precision_at_1"] is not None
    lm = load_checkpoint(run / "model.pt")
    assert sorted(lm.labels) == sorted(PATTERNS)
    assert lm.std_cfg.size == 64
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 0
    assert main(args) == 2  # refuses to overwrite a run without --resume
    assert main(args + ["--resume", "--epochs", "2"]) == 0
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1


def test_time_budget_stops_and_still_exports(tmp_path):
    from embed.train.loop import train

    root = write_imagefolder(tmp_path / "data", per_class=8)
    cfg = TrainConfig.load(CONFIGS / "test_tiny.yaml")
    cfg.epochs, cfg.max_minutes = 50, 0.0005  # far less time than 50 epochs need
    summary = train(cfg, [f"imagefolder:{root}"], tmp_path / "run", progress=False)
    assert summary["epochs_run"] < 50 and summary["stopped"].startswith("time budget")
    assert (tmp_path / "run" / "model.pt").is_file()
