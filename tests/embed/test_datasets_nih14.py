"""nih14 reader: Data_Entry_2017.csv with images spread over images_00X/images."""

from __future__ import annotations

import pytest

from embed.datasets import load_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize
from tests.embed.datasets_fixtures import write_image

# The header exactly as published (the bracketed names contain commas: 9 names, 11 fields).
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,058Y,M,PA,2894,2729,0.143,0.143",
    "00000002_000.png,No Finding,0,2,80,F,AP,2500,2048,0.171,0.171",
    "00000003_000.png,Pleural_Thickening,0,3,45,F,PA,2500,2048,0.171,0.171",
]


@pytest.fixture()
def nih_root(tmp_path):
    root = tmp_path / "nih"
    root.mkdir()
    (root / "Data_Entry_2017.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
    write_image(root / "images_001" / "images" / "00000001_000.png")
    write_image(root / "images_001" / "images" / "00000001_001.png")
    write_image(root / "images_002" / "images" / "00000002_000.png")
    return root


def test_reads_labels_and_finds_images_anywhere(nih_root):
    load = load_dataset(f"nih14:{nih_root}")
    recs = load.records
    assert [r.case_id for r in recs] == [
        "nih14/images_001/images/00000001_000.png",
        "nih14/images_001/images/00000001_001.png",
        "nih14/images_002/images/00000002_000.png",
    ]
    assert recs[1].findings == ["Cardiomegaly", "Emphysema"] and recs[2].findings == ["No Finding"]
    assert (recs[0].age, recs[1].age, recs[2].sex, recs[2].view) == (57.0, 58.0, "F", "AP")
    assert recs[0].patient == recs[1].patient == pseudonymize("nih14", "1") != recs[2].patient
    assert recs[1].extra["follow_up"] == 1 and recs[0].extra["original_width"] == 2682
    assert recs[0].extra["pixel_spacing_y"] == pytest.approx(0.143)
    assert load.skipped_counts() == {"image file absent": 1}
    assert "00000003_000.png" in load.skipped[0].ref


def test_label_file_can_be_named_directly(nih_root):
    assert len(load_dataset(f"nih14:{nih_root / 'Data_Entry_2017.csv'}").records) == 3


def test_2017_file_with_trailing_column(tmp_path):
    (tmp_path / "Data_Entry_2017.csv").write_text(HEADER + ",\n" + ROWS[0] + ",\n")
    write_image(tmp_path / "00000001_000.png")
    rec = load_dataset(f"nih14:{tmp_path}").records[0]
    assert rec.findings == ["Cardiomegaly"] and rec.sex == "M" and rec.extra["original_height"] == 2749


def test_without_label_file(tmp_path):
    write_image(tmp_path / "Pneumonia" / "00000001_000.png")
    with pytest.raises(DatasetLayoutError, match="Data_Entry_2017.csv") as exc:
        load_dataset(f"nih14:{tmp_path}")
    assert "imagefolder" in str(exc.value)


def test_real_nih_label_file(shared_data):
    root = shared_data / "nih-chestxray14-subset"
    if not root.is_dir():
        pytest.skip("nih-chestxray14-subset not in shared data")
    load = load_dataset(f"nih14:{root}")
    assert len(load.records) > 100
    assert all(r.sex in ("M", "F") and r.age and r.view in ("PA", "AP") for r in load.records)
    assert any(len(r.findings) > 1 for r in load.records)


def test_raw_patient_ids_only_in_the_public_file_names(tmp_path):
    (tmp_path / "Data_Entry_2017.csv").write_text(HEADER + "\n" + "00004711_000.png,Mass,0,4711,50,F,PA,1,1,0.1,0.1\n")
    write_image(tmp_path / "00004711_000.png")
    d = load_dataset(f"nih14:{tmp_path}").records[0].to_dict()
    assert d.pop("case_id").endswith("00004711_000.png") and d.pop("image_path")
    assert "4711" not in str(d) and d["patient"] == pseudonymize("nih14", "4711")
