"""imagefolder reader: one folder per class, patient id from the file name."""

from __future__ import annotations

import pytest

from embed.datasets import load_dataset
from embed.errors import DatasetError, DatasetLayoutError
from tests.embed.datasets_fixtures import write_image


@pytest.fixture()
def nih_like(tmp_path):
    root = tmp_path / "nih-subset"
    for i, rel in enumerate(["No_findings/00000001_000.png", "No_findings/00000001_001.png",
                             "Pneumonia/00000061_012.png", "Pneumonia/00000062_000.png"]):
        write_image(root / rel, seed=i)
    (root / "Pneumonia" / "notes.txt").write_text("not an image")
    (root / "Data_Entry_2017.csv").write_text("Image Index\n")  # root files are ignored
    return root


def test_class_folders_become_findings(nih_like):
    load = load_dataset(f"imagefolder:{nih_like}")
    assert [r.findings for r in load.records] == [["No Finding"]] * 2 + [["Pneumonia"]] * 2
    assert load.records[0].source == "imagefolder:nih-subset"
    assert load.records[0].case_id == "imagefolder:nih-subset/No_findings/00000001_000.png"
    assert load.skipped_counts() == {"not a PNG/JPEG/DICOM image": 1}


def test_nih_names_give_patients_without_a_pattern(nih_like):
    recs = load_dataset(f"imagefolder:{nih_like}").records
    assert recs[0].patient == recs[1].patient and recs[2].patient != recs[3].patient
    assert all(r.patient for r in recs)


def test_explicit_pattern_and_name(nih_like):
    recs = load_dataset(f"imagefolder:{nih_like}?patient_pattern=(\\d{{6}})&name=nih").records
    assert recs[0].source == "imagefolder:nih"
    # first six digits: 000000 for everyone
    assert len({r.patient for r in recs}) == 1


def test_no_pattern_match_leaves_patient_unknown(tmp_path):
    write_image(tmp_path / "covid" / "scan one.jpg")
    write_image(tmp_path / "normal" / "x.png")
    recs = load_dataset(f"imagefolder:{tmp_path}").records
    assert [r.patient for r in recs] == [None, None]
    assert [r.findings for r in recs] == [["COVID-19"], ["No Finding"]]


def test_bad_pattern_says_how_to_fix(nih_like):
    with pytest.raises(DatasetError, match="one group"):
        load_dataset(f"imagefolder:{nih_like}", patient_pattern=r"\d+")
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        load_dataset(f"imagefolder:{nih_like}", patient_pattern="(")


def test_kermany_tree_is_refused_with_a_hint(tmp_path):
    write_image(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    write_image(tmp_path / "test" / "PNEUMONIA" / "person1_virus_1.jpeg")
    with pytest.raises(DatasetLayoutError, match="kermany:"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_flat_folder_is_a_layout_error(tmp_path):
    write_image(tmp_path / "a.png")
    with pytest.raises(DatasetLayoutError, match="class sub-folders"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_real_nih_subset(shared_data):
    root = shared_data / "nih-chestxray14-subset"
    if not root.is_dir():
        pytest.skip("nih-chestxray14-subset not in shared data")
    load = load_dataset(f"imagefolder:{root}")
    assert {tuple(r.findings) for r in load.records} == {("No Finding",), ("Pneumonia",)}
    assert len({r.patient for r in load.records}) < len(load.records)


def test_split_folders_masks_and_case_insensitive_labels(tmp_path):
    # COVID-19 Radiography Database style (class/images + class/masks) under train/test split folders
    write_image(tmp_path / "train" / "COVID" / "images" / "COVID-1.png")
    write_image(tmp_path / "train" / "COVID" / "masks" / "COVID-1.png")
    write_image(tmp_path / "train" / "PNEUMONIA" / "p-1.png")
    write_image(tmp_path / "test" / "Lung_Opacity" / "images" / "Lung_Opacity-1.png")
    load = load_dataset(f"imagefolder:{tmp_path}")
    got = {(r.extra["split"], tuple(r.findings)) for r in load.records}
    assert got == {("train", ("COVID-19",)), ("train", ("Pneumonia",)), ("test", ("Lung Opacity",))}
    assert load.skipped_counts() == {"segmentation mask, not a radiograph": 1}
