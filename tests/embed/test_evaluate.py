"""``cxr evaluate`` end to end on generated data, and its parts: split, baselines, tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.main import main
from embed.datasets import CaseRecord, load_datasets
from embed.errors import CXRError
from embed.evaluate.baselines import thumbnail_features, untrained_embedder
from embed.metrics import retrieval_metrics
from embed.evaluate.runner import score_method, split_sets
from embed.evaluate.tasks import TASKS, task_truth, vote_truth
from embed.inference import Embedder
from tests.embed.eval_fixtures import make_kermany, make_tiny_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    data = make_kermany(tmp / "chest_xray", n_patients=9)
    ckpt = make_tiny_checkpoint(tmp / "tiny.pt")
    return tmp, data, ckpt


def _check_outputs(out, methods=("model", "untrained", "pixels")):
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == set(methods)
    for m in methods:
        o = metrics["methods"][m]["overall"]
        for key in ("p_at_1", "p_at_10", "map_at_10", "map_at_r"):
            assert 0.0 <= o[key] <= 1.0
        assert set(metrics["classes"]) <= set(o["auc"])
        assert "kermany" in metrics["methods"][m]["per_source"]
    md = (out / "results.md").read_text()
    assert "| all | trained encoder |" in md and "MAP@R" in md and "Kermany: pneumonia vs normal" in md
    for name in metrics["plots"]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert {"roc_per_class.png", "roc_tasks.png", "projection_model.png"} <= set(metrics["plots"])
    return metrics


def test_cxr_evaluate_split_mode_end_to_end(setup, capsys):
    tmp, data, ckpt = setup
    out = tmp / "out_split"
    rc = main(["evaluate", "--model", str(ckpt), "--data", f"kermany:{data}", "--split", "val", "--out", str(out),
               "--no-progress", "--batch-size", "8"])
    assert rc == 0
    assert "MAP@R" in capsys.readouterr().out
    m = _check_outputs(out)
    assert m["mode"] == "split" and m["skipped_images"] == 1
    assert m["n_queries"] + m["n_references"] == 36


def test_cxr_evaluate_explicit_mode_end_to_end(setup, tmp_path):
    tmp, data, ckpt = setup
    other = make_kermany(tmp_path / "query_xray", n_patients=3, broken=False)
    out = tmp / "out_explicit"
    rc = main(["evaluate", "--model", str(ckpt), "--reference", f"kermany:{data}", "--query", f"kermany:{other}",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    m = _check_outputs(out)
    assert m["mode"] == "explicit" and m["n_queries"] == 12 and m["n_references"] == 36


def test_cxr_evaluate_argument_errors(setup, capsys):
    tmp, data, ckpt = setup
    assert main(["evaluate", "--model", str(ckpt), "--split", "val", "--out", str(tmp / "x")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(ckpt), "--reference", f"kermany:{data}", "--out", str(tmp / "x")]) == 2


def test_split_is_patient_disjoint_and_matches_training_split(setup):
    from embed.labels import label_of
    from embed.split import patient_key, patient_split

    tmp, data, ckpt = setup
    sets = split_sets([f"kermany:{data}"], ckpt)
    q_pat = {patient_key(r) for r in sets.queries}
    r_pat = {patient_key(r) for r in sets.references}
    assert q_pat and r_pat and not (q_pat & r_pat)
    recs = load_datasets([f"kermany:{data}"]).records
    _, val = patient_split(recs, [label_of(r) for r in recs], 0.34, 0)
    assert sorted(r.case_id for r in sets.queries) == sorted(recs[i].case_id for i in val)


def test_query_equal_reference_is_leave_one_out(setup):
    """Queries that are also references never find themselves or their patient's other images."""
    from embed.evaluate.tasks import retrieval_classes
    from embed.split import patient_key

    tmp, data, ckpt = setup
    recs = [r for r in load_datasets([f"kermany:{data}"]).records if "0999" not in r.case_id]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(recs), 8)).astype(np.float32)
    vocab = ["bacterial pneumonia", "normal", "viral pneumonia"]
    out, _ = score_method(feats, feats, recs, recs, vocab, "pathology", k=5)
    loo = retrieval_metrics(feats, retrieval_classes(recs, "pathology", vocab),
                            query_patients=[patient_key(r) for r in recs], map_k=5)
    for key in ("p_at_1", "p_at_10", "map_at_5", "map_at_r"):
        assert out["overall"][key] == pytest.approx(loo[key])


def test_thumbnails_are_zscored_and_cosine_is_pearson():
    import cv2

    rng = np.random.default_rng(0)
    imgs = rng.random((3, 96, 96), dtype=np.float32)
    imgs[2] = 0.5  # constant image: all zeros, no division by zero
    t = thumbnail_features(imgs)
    assert t.shape == (3, 64 * 64)
    np.testing.assert_allclose(t[:2].mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(t[:2].std(1), 1, atol=1e-4)
    assert not t[2].any()
    a, b = (cv2.resize(imgs[i], (64, 64), interpolation=cv2.INTER_AREA).ravel() for i in range(2))
    cos = t[0] @ t[1] / (np.linalg.norm(t[0]) * np.linalg.norm(t[1]))
    assert cos == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-5)


def test_untrained_baseline_is_seeded_and_differs_from_model(tmp_path):
    import torch

    ckpt = make_tiny_checkpoint(tmp_path / "seed7.pt", seed=7)
    emb = Embedder.from_checkpoint(ckpt, device="cpu")
    x = np.random.default_rng(0).random((4, 64, 64), dtype=np.float32)
    torch.manual_seed(123)
    u1 = untrained_embedder(emb).embed_batch(x)[0]
    u2 = untrained_embedder(emb).embed_batch(x)[0]
    np.testing.assert_allclose(u1, u2)
    assert torch.initial_seed() == 123  # the global RNG is left as it was
    assert np.abs(u1 - emb.embed_batch(x)[0]).max() > 1e-3
    assert untrained_embedder(emb, seed=1).embed_batch(x)[0].tolist() != u1.tolist()


def _rec(source, findings, i=0):
    return CaseRecord(case_id=f"{source}/{i}.png", image_path="", source=source, patient=f"p{i}", day_offset=None,
                      view=None, sex=None, age=None, findings=findings, prognosis={}, licence=None, extra={})


def test_vote_truth_is_multilabel_and_tasks_pick_their_source():
    recs = [
        _rec("covid-chestxray", ["Pneumonia", "Viral Pneumonia", "COVID-19"], 0),
        _rec("nih14", ["Atelectasis", "Pneumonia"], 1),
        _rec("nih14", ["No Finding"], 2),
        _rec("covid-chestxray", ["Pneumonia", "Bacterial Pneumonia", "Streptococcus"], 3),
        _rec("covid-chestxray", [], 4),
        _rec("kermany", ["No Finding"], 5),
    ]
    vocab = ["atelectasis", "covid-19", "normal", "pneumonia", "viral pneumonia"]
    y = vote_truth(recs, "pathology", vocab)
    assert y[0].tolist() == [False, True, False, True, True]
    assert y[1].tolist() == [True, False, False, True, False]
    assert y[2].tolist() == [False, False, True, False, False]
    assert not y[4].any()
    by_name = {t.name: t for t in TASKS}
    assert task_truth(by_name["covid_vs_other_findings"], recs).tolist() == [1, -1, -1, 0, -1, -1]
    assert task_truth(by_name["nih14_pneumonia_vs_no_finding"], recs).tolist() == [-1, 1, 0, -1, -1, -1]
    assert task_truth(by_name["kermany_pneumonia_vs_normal"], recs).tolist() == [-1, -1, -1, -1, -1, 0]


def test_split_from_checkpoint_without_validation_is_an_error(setup, tmp_path):
    tmp, data, _ = setup
    ckpt = make_tiny_checkpoint(tmp_path / "noval.pt", train_cfg={"val_fraction": 0.0, "seed": 0})
    with pytest.raises(CXRError, match="no validation"):
        split_sets([f"kermany:{data}"], ckpt)


def test_split_fingerprint_is_checked_when_the_checkpoint_records_one(setup, tmp_path):
    import torch

    from embed.errors import ConfigMismatchError
    from embed.evaluate.runner import split_fingerprint

    tmp, data, ckpt = setup
    sets = split_sets([f"kermany:{data}"], ckpt)
    assert sets.notes["split_verified"] is False  # the fixture checkpoint records no split
    payload = torch.load(ckpt, weights_only=True)
    good = tmp_path / "good.pt"
    payload["metrics"] = {"split": {"val_sha256": split_fingerprint([r.case_id for r in sets.queries])}}
    torch.save(payload, good)
    assert split_sets([f"kermany:{data}"], good).notes["split_verified"] is True
    bad = tmp_path / "bad.pt"
    payload["metrics"] = {"split": {"val_sha256": split_fingerprint(["kermany/other.jpeg"])}}
    torch.save(payload, bad)
    with pytest.raises(ConfigMismatchError, match="CXR_PSEUDONYM_KEY"):
        split_sets([f"kermany:{data}"], bad)
