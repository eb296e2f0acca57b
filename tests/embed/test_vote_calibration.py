"""The calibrated kNN vote: monotone maps, fitted on training patients only, saved beside the model."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

from embed.vote_calibration import VoteCalibration, calibration_path, expected_calibration_error

FINDINGS = ["COVID-19", "No Finding", "Pneumonia"]


def _overconfident(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Votes whose true frequency is vote**2 (over-confident), two findings."""
    votes = rng.random((n, 2))
    truth = rng.random((n, 2)) < votes**2
    return votes, truth


def test_maps_are_monotone_and_improve_calibration():
    rng = np.random.default_rng(0)
    votes, truth = _overconfident(4000, rng)
    cal = VoteCalibration.fit(votes, truth, ["A", "B"], k=10, model_sha256="x", train_patients=["p1", "p2"])
    grid = np.linspace(0, 1, 201)
    for name in ("A", "B"):
        probs = np.array([cal.apply(name, v) for v in grid])
        assert (np.diff(probs) >= -1e-12).all(), "calibration must never reverse the ranking of two votes"
        assert 0.0 <= probs.min() and probs.max() <= 1.0
    v_test, t_test = _overconfident(4000, np.random.default_rng(1))
    after = cal.apply_matrix(v_test, ["A", "B"])
    assert expected_calibration_error(after, t_test) < 0.5 * expected_calibration_error(v_test, t_test)
    assert cal.apply("unknown finding", 0.7) is None  # no map: the raw vote stays the figure


def test_rare_finding_keeps_its_raw_vote_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    votes = rng.random((200, 2))
    truth = np.zeros((200, 2), bool)
    truth[:100, 0] = True
    truth[:3, 1] = True  # 3 positives: too few for a map
    cal = VoteCalibration.fit(votes, truth, ["common", "rare"], k=10, model_sha256="m", train_patients=["a"])
    assert set(cal.maps) == {"common"}
    back = VoteCalibration.load(cal.save(tmp_path / "m.calibration.json"))
    assert back.maps == cal.maps and back.k == 10 and back.model_sha256 == "m"
    np.testing.assert_array_equal(back.apply_matrix(votes, ["common", "rare"])[:, 1], votes[:, 1])


def _corpus(root, n_patients: int = 40):
    """covid-chestxray layout: two films per patient, findings by patient, patient-specific blobs."""
    import cv2

    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        prng = np.random.default_rng(p)
        for j in range(2):
            img = prng.normal(0.5, 0.05, (64, 64))
            cx = 16 + 32 * (p % 3) / 2
            yy, xx = np.mgrid[:64, :64]
            img += np.exp(-((yy - 32) ** 2 + (xx - cx) ** 2) / 80.0) + 0.02 * prng.normal(size=img.shape)
            name = f"p{p:02d}_{j}.png"
            cv2.imwrite(str(images / name), (255 * (img - img.min()) / np.ptp(img)).astype(np.uint8))
            rows.append({"patientid": f"P{p}", "offset": str(j), "sex": "M", "age": "50",
                         "finding": FINDINGS[p % 3], "view": "PA", "modality": "X-ray", "folder": "images",
                         "filename": name, "survival": "", "intubated": "", "went_icu": "", "license": "CC BY"})
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_cxr_calibrate_fits_on_training_patients_only(tmp_path):
    """The saved calibration records which patients it was fitted on: exactly the split's training patients."""
    import torch

    from embed.calibrate import run_calibration
    from embed.datasets import load_datasets
    from embed.guard import OODGuard, guard_path
    from embed.models import create_model, save_checkpoint
    from embed.split import labelled_split, patient_key
    from embed.standardize import StandardizeConfig

    corpus = _corpus(tmp_path / "cc")
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, create_model("cxr_test_tiny").eval(), std_cfg=StandardizeConfig(size=64),
                    labels=["covid-19", "normal", "pneumonia"])
    spec = f"covid-chestxray:{corpus}"
    report = run_calibration(ckpt, [spec], max_train=None, max_val=None, device="cpu", min_examples=5,
                             out_dir=tmp_path / "out")
    split = labelled_split(load_datasets([spec]).records, "pathology", ["covid-19", "normal", "pneumonia"])
    train = sorted({patient_key(split.records[i]) for i in split.train})
    val = {patient_key(split.records[i]) for i in split.val}
    assert train and val and not val & set(train)
    saved = json.loads(calibration_path(ckpt).read_text())
    assert saved["train_patients_sha256"] == hashlib.sha256("\n".join(train).encode()).hexdigest()
    assert saved["n_train_patients"] == len(train)
    assert report.n_train + report.n_val == len(split.records)
    assert OODGuard.load(guard_path(ckpt)).model_sha256 == VoteCalibration.load(calibration_path(ckpt)).model_sha256
    assert (tmp_path / "out" / "reliability.png").stat().st_size > 1000
