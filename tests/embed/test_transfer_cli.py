"""`cxr transfer` end to end on a generated features parquet."""

from __future__ import annotations

import json

from cli.main import main
from tests.embed.test_transfer_fixtures import make_frame, write_parquet


def test_cli_writes_json_markdown_and_plots(tmp_path, capsys):
    df, emb = make_frame(60, 2, seed=21, unknown_share=0.1, missing_share=0.1, lateral_share=0.1)
    feats = write_parquet(df, emb, tmp_path / "features.parquet")
    out = tmp_path / "out"
    rc = main(["transfer", "--features", str(feats), "--target", "went_icu", "--tabular", "age,sex,day_offset",
               "--out", str(out), "--folds", "4", "--bootstrap", "50", "--exclude-if", "in_icu"])
    assert rc == 0
    report = json.loads((out / "went_icu_report.json").read_text())
    assert set(report["results"]) == {"image", "tabular", "image+tabular"}
    frontal = df[df["view"] != "LATERAL"]
    assert report["counts"]["dropped_unknown_target"] == int(frontal["went_icu"].isna().sum())
    assert report["counts"]["patients"] == frontal.loc[frontal["went_icu"].notna(), "patient"].nunique()
    kept = frontal[frontal["went_icu"].notna()].sort_values("day_offset", kind="stable").groupby("patient").head(1)
    assert report["counts"]["missing_tabular"]["age"] == int(kept["age"].isna().sum())
    assert report["counts"]["dropped_present_at_baseline"]["patients"] == 0  # in_icu is never True here
    for r in report["results"].values():
        assert r["ci_low"] <= r["auc"] <= r["ci_high"]
    for name in ("went_icu_roc.png", "went_icu_calibration.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "went_icu_report.md").read_text()
    assert "| image+tabular (age, sex, day_offset) |" in md
    printed = capsys.readouterr().out
    assert "| image |" in printed and str(out / "went_icu_report.json") in printed


def test_cli_unknown_target_is_a_user_error(tmp_path, capsys):
    df, emb = make_frame(20, 1, seed=22)
    feats = write_parquet(df, emb, tmp_path / "features.parquet")
    rc = main(["transfer", "--features", str(feats), "--target", "died", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown target column 'died'" in err and "went_icu" in err
