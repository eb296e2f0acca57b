"""csv manifest reader: documented columns, aliases, extra columns and dropped identifying columns."""

from __future__ import annotations

import pytest

from embed.datasets import load_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize
from tests.embed.datasets_fixtures import all_json, write_csv, write_image


@pytest.fixture()
def manifest(tmp_path):
    for n in ("a.png", "b.jpg", "sub/c.png"):
        write_image(tmp_path / "imgs" / n)
    header = ["path", "patient_id", "findings", "view", "sex", "age", "day_offset", "survival", "went_icu",
              "licence", "hospital_site", "patient_name", "study_date", "scanner_kvp", "comment"]
    rows = [
        ["imgs/a.png", "MRN-5551", "Pneumonia|Effusion", "PA", "female", "45", "0", "yes", "0", "CC BY 4.0",
         "Ygritte General", "Zebedee Quentin", "2020-01-01", "120", "good"],
        ["imgs/b.jpg", "MRN-5551", "normal", "AP supine", "F", "45", "7", "no", "", "CC BY 4.0", "", "", "", "", ""],
        ["imgs/sub/c.png", "", "", "", "", "", "", "", "", "", "", "", "", "", ""],
        ["imgs/missing.png", "MRN-5552", "Edema", "PA", "M", "70", "", "", "", "", "", "", "", "", ""],
        ["", "", "", "", "", "", "", "", "", "", "", "", "", "", ""],
    ]
    return write_csv(tmp_path / "manifest.csv", header, rows)


def test_documented_columns(manifest):
    load = load_dataset(f"csv:{manifest}")
    a, b, c = load.records
    assert a.case_id == "csv/imgs/a.png" and a.source == "csv"
    assert a.findings == ["Pneumonia", "Effusion"] and b.findings == ["No Finding"] and c.findings == []
    assert (a.view, b.view, a.sex, a.age, b.day_offset) == ("PA", "AP Supine", "F", 45.0, 7.0)
    assert a.patient == b.patient == pseudonymize("csv", "MRN-5551") and c.patient is None
    assert a.prognosis == {"survival": True, "went_icu": False} and b.prognosis["went_icu"] is None
    assert a.licence == "CC BY 4.0" and a.extra == {"scanner_kvp": 120.0, "comment": "good"}
    assert load.skipped_counts() == {"image file absent": 1, "no path in the row": 1}


def test_identifying_columns_are_dropped(manifest):
    text = all_json(load_dataset(f"csv:{manifest.parent}").records)
    for secret in ("MRN-", "Ygritte", "Zebedee", "2020-01-01"):
        assert secret not in text


def test_name_option_and_aliases(tmp_path):
    write_image(tmp_path / "x.png")
    write_csv(tmp_path / "labels.csv", ["Image", "Gender", "Labels"], [["x.png", "M", "Atelectasis"]])
    rec = load_dataset(f"csv:{tmp_path / 'labels.csv'}?name=mine").records[0]
    assert rec.source == "csv:mine" and rec.case_id == "csv:mine/x.png" and rec.sex == "M"
    assert rec.findings == ["Atelectasis"]


def test_missing_path_column_says_what_is_needed(tmp_path):
    write_csv(tmp_path / "m.csv", ["file_path_wrong", "findings"], [["x.png", "A"]])
    with pytest.raises(DatasetLayoutError, match="needs 'path'"):
        load_dataset(f"csv:{tmp_path / 'm.csv'}")


def test_excel_style_manifest_bom_semicolons_latin1(tmp_path):
    write_image(tmp_path / "é.png")
    text = "\ufeffpath;sex;findings;commentaire\né.png;F;Pneumonia;très bien\n"
    (tmp_path / "m.csv").write_bytes(text.encode("utf-8"))
    rec = load_dataset(f"csv:{tmp_path / 'm.csv'}").records[0]
    assert rec.sex == "F" and rec.findings == ["Pneumonia"] and rec.extra["commentaire"] == "très bien"
    (tmp_path / "m.csv").write_bytes(text.lstrip("\ufeff").encode("latin-1"))
    assert load_dataset(f"csv:{tmp_path / 'm.csv'}").records[0].extra["commentaire"] == "très bien"


def test_garbage_file_is_a_layout_error(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="not a readable CSV"):
        load_dataset(f"csv:{tmp_path / 'm.csv'}")
