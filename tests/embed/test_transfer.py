"""embed.transfer on generated features whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embed.errors import CXRError
from embed.transfer import build_pipeline, cross_validated_predictions, patient_folds, prepare
from embed.transfer.cv import bootstrap_auc
from embed.transfer.experiment import run_transfer
from tests.embed.test_transfer_fixtures import make_frame, write_parquet


def _cv_auc(data, kind="image", folds=5, seed=0):
    from sklearn.metrics import roc_auc_score

    res = cross_validated_predictions(
        lambda: build_pipeline(kind, data.image_columns, data.numeric_columns, data.categorical_columns),
        data.X, data.y, data.groups, folds=folds, seed=seed)
    return roc_auc_score(data.y, res.oof), res


def test_image_signal_reaches_high_auc():
    df, emb = make_frame(150, 2, signal="image", seed=1)
    data = prepare(df, emb, "went_icu", ["age", "sex"])
    auc, _ = _cv_auc(data, "image")
    assert auc > 0.9
    # the tabular columns carry no signal here
    auc_tab, _ = _cv_auc(data, "tabular")
    assert auc_tab < 0.75


@pytest.mark.parametrize("seed", [2, 3])
def test_random_target_stays_near_chance(seed):
    df, emb = make_frame(300, 1, signal="random", seed=seed)
    data = prepare(df, emb, "went_icu", ["age", "sex", "day_offset"])
    for kind in ("image", "image+tabular"):
        auc, _ = _cv_auc(data, kind)
        assert 0.35 < auc < 0.65, (kind, auc)


def test_tabular_signal_found_by_tabular_model():
    df, emb = make_frame(150, 1, signal="age", seed=4)
    data = prepare(df, emb, "went_icu", ["age", "sex"])
    auc_tab, _ = _cv_auc(data, "tabular")
    auc_img, _ = _cv_auc(data, "image")
    assert auc_tab > 0.9
    assert auc_img < 0.75


def test_no_patient_in_two_folds_image_level():
    df, emb = make_frame(60, 4, signal="image", seed=5)
    data = prepare(df, emb, "went_icu", aggregate="image")
    assert len(data.y) == 240 and len(np.unique(data.groups)) == 60
    splits = patient_folds(data.y, data.groups, folds=5, seed=0)
    test_fold_of: dict = {}
    for k, (train, test) in enumerate(splits):
        assert not set(data.groups[train]) & set(data.groups[test])
        for g in data.groups[test]:
            assert test_fold_of.setdefault(g, k) == k
    assert len(test_fold_of) == 60  # every patient is tested exactly once
    covered = np.concatenate([t for _, t in splits])
    assert sorted(covered) == list(range(240))


def test_cv_requires_groups():
    df, emb = make_frame(40, 1, seed=6)
    data = prepare(df, emb, "went_icu")
    with pytest.raises(TypeError):
        cross_validated_predictions(lambda: None, data.X, data.y)  # type: ignore[call-arg]
    with pytest.raises(CXRError, match="groups"):
        cross_validated_predictions(lambda: None, data.X, data.y, None)


def test_unknown_targets_dropped_with_count():
    df, emb = make_frame(80, 2, seed=7, unknown_share=0.3)
    expected = int(df["went_icu"].isna().sum())
    assert expected > 0
    data = prepare(df, emb, "went_icu", aggregate="image")
    assert data.counts["dropped_unknown_target"] == expected
    assert len(data.y) == len(df) - expected


def test_strings_and_lateral_views():
    df, emb = make_frame(50, 2, seed=8, lateral_share=0.25)
    df["went_icu"] = df["went_icu"].astype(object)
    df.loc[df.index[:5], "went_icu"] = "?"  # upstream's "not known" spelling
    n_lat = int((df["view"] == "LATERAL").sum())
    data = prepare(df, emb, "went_icu", aggregate="image")
    assert data.counts["dropped_lateral"] == n_lat
    n_unknown_frontal = int((df["view"].iloc[:5] != "LATERAL").sum())
    assert data.counts["dropped_unknown_target"] == n_unknown_frontal


def test_first_image_aggregation_uses_earliest_day():
    df, emb = make_frame(30, 3, seed=9)
    df = df.iloc[::-1].reset_index(drop=True)  # latest image first in the file
    emb = emb[::-1]
    data = prepare(df, emb, "went_icu", ["day_offset"], aggregate="first")
    assert len(data.y) == 30
    assert (data.X["day_offset"] == 0).all()
    first_rows = df.index[df["day_offset"] == 0]
    order = np.argsort(df.loc[first_rows, "patient"].to_numpy())
    np.testing.assert_allclose(data.X[data.image_columns].to_numpy(), emb[first_rows[order]], rtol=1e-6)
    mean = prepare(df, emb, "went_icu", aggregate="mean")
    p0 = df.index[df["patient"] == mean.groups[0]]
    np.testing.assert_allclose(mean.X[mean.image_columns].to_numpy()[0], emb[p0].mean(0), rtol=1e-5)


def test_unknown_columns_list_the_choices():
    df, emb = make_frame(20, 1, seed=10)
    with pytest.raises(CXRError, match="survival"):
        prepare(df, emb, "died", [])
    with pytest.raises(CXRError, match="age"):
        prepare(df, emb, "went_icu", ["weight"])


def test_too_few_positives_says_so():
    df, emb = make_frame(40, 1, seed=11)
    df["went_icu"] = False
    df.loc[df.index[:3], "went_icu"] = True
    data = prepare(df, emb, "went_icu")
    with pytest.raises(CXRError, match=r"too few patients per class.*--folds 3"):
        patient_folds(data.y, data.groups, folds=5)


def test_missing_tabular_imputed_inside_each_fold():
    df, emb = make_frame(100, 1, seed=12, missing_share=0.3)
    data = prepare(df, emb, "went_icu", ["age", "sex", "day_offset"])
    assert data.X["age"].isna().any() and data.X["sex_male"].isna().any()
    auc, res = _cv_auc(data, "image+tabular")
    assert np.isfinite(res.oof).all()
    medians = []
    for model, train in zip(res.models, res.train_indices):
        imputer = model.named_steps["features"].named_transformers_["numeric"].named_steps["impute"]
        expected = data.X.iloc[train][data.numeric_columns].median().to_numpy()
        np.testing.assert_allclose(imputer.statistics_, expected)  # fitted on the training fold only
        assert imputer.indicator_ is not None  # missing indicators in the model
        medians.append(imputer.statistics_[0])
    assert len(set(np.round(medians, 6))) > 1  # refit per fold, not once on all rows
    assert len({id(m) for m in res.models}) == len(res.models)


def test_bootstrap_over_patients():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.random(50) < 0.5, 3).astype(int)
    groups = np.repeat(np.arange(50), 3)
    good = y + rng.normal(0, 0.3, size=150)
    out = bootstrap_auc(y, {"good": good, "noise": rng.random(150)}, groups, n_boot=200, seed=0,
                        pairs=[("good", "noise")])
    g = out["auc"]["good"]
    assert g["ci_low"] <= g["auc"] <= g["ci_high"]
    assert g["ci_low"] > 0.8
    n = out["auc"]["noise"]
    assert n["ci_low"] < 0.5 < n["ci_high"]
    assert out["difference"]["good - noise"]["ci_low"] > 0


def test_run_transfer_on_parquet(tmp_path):
    df, emb = make_frame(80, 2, seed=13, unknown_share=0.1)
    path = write_parquet(df, emb, tmp_path / "f.parquet")
    res = run_transfer(path, "went_icu", ["age", "sex", "day_offset"], n_boot=50)
    s = res.summary
    assert set(s["results"]) == {"image", "tabular", "image+tabular"}
    assert s["counts"]["dropped_unknown_target"] == int(df["went_icu"].isna().sum())
    assert s["features_metadata"].get("model_sha256") == "synthetic"
    assert s["results"]["image"]["auc"] > 0.85


def test_categorical_tabular_column_with_missing_values():
    df, emb = make_frame(80, 1, seed=14, signal="random")
    df["view"] = np.where(df["went_icu"].astype(bool), "AP Supine", "PA")  # view alone gives the answer
    df.loc[df.index[::7], "view"] = None
    data = prepare(df, emb, "went_icu", ["view"], frontal_only=False)
    assert data.categorical_columns == ["view"] and data.numeric_columns == []
    auc, _ = _cv_auc(data, "tabular")
    assert auc > 0.85


def test_exclude_patients_positive_at_baseline():
    df, emb = make_frame(40, 3, seed=15)
    df["in_icu"] = pd.array([None] * len(df), dtype="boolean")
    pts = df["patient"].unique()
    first = df["day_offset"] == 0
    df.loc[first & df["patient"].isin(pts[:5]), "in_icu"] = True    # in ICU on the first film: excluded
    df.loc[~first & df["patient"].isin(pts[5:9]), "in_icu"] = True   # only later: kept
    df.loc[first & df["patient"].isin(pts[9:12]), "in_icu"] = False
    data = prepare(df, emb, "went_icu", exclude_if=["in_icu"])
    assert data.counts["dropped_present_at_baseline"]["patients"] == 5
    assert data.counts["dropped_present_at_baseline"]["rows"] == 15
    assert set(data.groups) == set(pts[5:])
    with pytest.raises(CXRError, match="exclude-if"):
        prepare(df, emb, "went_icu", exclude_if=["nope"])
