"""Registry, spec parsing, CaseRecord round trip and load_datasets behaviour."""

from __future__ import annotations

import json
import math

import pytest

from embed.datasets import DATASET_KINDS, CaseRecord, load_dataset, load_datasets, parse_spec, split_spec
from embed.datasets._common import norm_view, parse_age, yes_no
from embed.errors import DatasetError, DatasetLayoutError, UnknownDatasetKindError
from tests.embed.datasets_fixtures import write_image


def test_parse_spec_splits_kind_and_path(tmp_path):
    kind, path = parse_spec(f"Kermany:{tmp_path}")
    assert kind == "kermany" and path == tmp_path
    kind, path, opts = split_spec(r"imagefolder:/data/x?patient_pattern=(\d{8})_\d{3}&name=nih")
    assert (kind, str(path)) == ("imagefolder", "/data/x")
    assert opts == {"patient_pattern": r"(\d{8})_\d{3}", "name": "nih"}


def test_spec_without_kind_says_how_to_write_it():
    with pytest.raises(DatasetError, match="KIND:PATH"):
        parse_spec("/just/a/path")


def test_unknown_kind_lists_the_kinds(tmp_path):
    with pytest.raises(UnknownDatasetKindError) as exc:
        load_dataset(f"nosuch:{tmp_path}")
    for kind in ("covid-chestxray", "kermany", "imagefolder", "nih14"):
        assert kind in str(exc.value)
        assert kind in DATASET_KINDS


def test_layout_error_names_the_kind_that_fits(tmp_path):
    for split in ("train", "test"):
        write_image(tmp_path / "chest_xray" / split / "NORMAL" / "IM-0001-0001.jpeg")
    with pytest.raises(DatasetLayoutError) as exc:
        load_dataset(f"covid-chestxray:{tmp_path}")
    assert "metadata.csv" in str(exc.value) and "kermany:" in str(exc.value)


def test_missing_path_is_a_layout_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_dataset(f"kermany:{tmp_path / 'absent'}")


def test_unknown_spec_option_lists_accepted_ones(tmp_path):
    write_image(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    with pytest.raises(DatasetError, match="accepts verify"):
        load_dataset(f"kermany:{tmp_path}?colour=blue")


def test_caserecord_round_trip_is_json_safe():
    rec = CaseRecord(
        case_id="csv/a.png", image_path="/x/a.png", source="csv", patient="p_0", day_offset=3.0,
        view="PA", sex="F", age=float("nan"), findings=["No Finding"], prognosis={"survival": None},
        licence="CC0", extra={"t": float("nan"), "n": [1.5, float("inf")]},
    )
    d = rec.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = CaseRecord.from_dict(json.loads(text))
    assert back.age is None and back.extra == {"t": None, "n": [1.5, None]}
    assert back.findings == ["No Finding"] and back.prognosis == {"survival": None}
    assert back.day_offset == 3.0 and back.case_id == rec.case_id


def test_caserecord_from_parquet_row(tmp_path):
    pd = pytest.importorskip("pandas")
    rec = CaseRecord(case_id="s/a", image_path="/a", source="s", findings=["A", "B"], age=None,
                     prognosis={"survival": True}, extra={"k": 1})
    pd.DataFrame([rec.to_dict()]).to_parquet(tmp_path / "r.parquet")
    row = pd.read_parquet(tmp_path / "r.parquet").to_dict("records")[0]
    back = CaseRecord.from_dict(row)
    assert back.findings == ["A", "B"] and back.prognosis["survival"] is True
    assert back.age is None or not math.isnan(back.age)


def test_load_datasets_reports_a_dataset_given_twice(tmp_path):
    write_image(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    write_image(tmp_path / "train" / "PNEUMONIA" / "person1_virus_1.jpeg")
    load = load_datasets([f"kermany:{tmp_path}", f"kermany:{tmp_path}"])
    assert len(load.records) == 2
    assert load.skipped_counts() == {"duplicate case (same dataset given twice?)": 2}


@pytest.mark.parametrize(
    "raw,view", [("PA", "PA"), ("L", "LATERAL"), ("AP Supine", "AP Supine"), ("POSTEROANTERIOR", "PA"),
                 ("AP_horizontal", "AP Supine"), ("?", None), ("", None)],
)
def test_norm_view(raw, view):
    assert norm_view(raw) == view


def test_parse_age_and_yes_no():
    assert parse_age("057Y") == 57.0 and parse_age("6M") == 0.5 and parse_age("200") is None
    assert parse_age("nan") is None and parse_age(65) == 65.0
    assert yes_no("Y") is True and yes_no("N") is False and yes_no("Not visible") is None and yes_no("") is None


def test_guess_kind_recognises_layouts(tmp_path):
    from embed.datasets.detect import guess_kind

    write_image(tmp_path / "k" / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    write_image(tmp_path / "f" / "Pneumonia" / "a.png")
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\n")
    (tmp_path / "c.csv").write_text("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding\n")
    (tmp_path / "v.csv").write_text("image_id,class_name,class_id,rad_id\n")
    assert guess_kind(tmp_path / "k") == "kermany"
    assert guess_kind(tmp_path / "f") == "imagefolder"
    assert guess_kind(tmp_path / "n") == "nih14"
    assert guess_kind(tmp_path / "c.csv") == "chexpert"
    assert guess_kind(tmp_path / "v.csv") == "vindr"
    assert guess_kind(tmp_path / "absent") is None
