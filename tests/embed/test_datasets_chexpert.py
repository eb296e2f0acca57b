"""chexpert reader on a generated CheXpert-v1.0-small tree with the published train.csv header."""

from __future__ import annotations

import pytest

from embed.datasets import load_dataset
from embed.errors import DatasetError
from embed.pseudonym import pseudonymize
from tests.embed.datasets_fixtures import write_image

HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
          "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
          "Fracture,Support Devices")
ROWS = [  # the structure of the published rows
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,0,Frontal,PA,,,,,,,,1.0,,,,,,",
]


def make_tree(tmp_path, files_under_root=True):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
    for r in ROWS[:3]:
        rel = r.split(",")[0]
        target = tmp_path / rel if files_under_root else tmp_path / "elsewhere" / rel.split("/", 1)[1]
        write_image(target)
    return root


def test_reads_labels_with_ignore_policy(tmp_path):
    load = load_dataset(f"chexpert:{make_tree(tmp_path)}")
    a, b, c = load.records
    assert a.case_id == "chexpert/train/patient00001/study1/view1_frontal.jpg"
    assert a.findings == ["No Finding", "Support Devices"] and a.extra["negative"] == ["Pneumothorax"]
    assert b.findings == ["Lung Opacity", "Fracture"]
    assert b.extra["uncertain"] == ["Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion"]
    assert (a.view, c.view, a.sex, a.age) == ("AP", "LATERAL", "F", 68.0)
    assert b.patient == c.patient == pseudonymize("chexpert", "patient00002") != a.patient
    assert a.extra["split"] == "train" and b.extra["study"] == 2
    assert load.skipped_counts() == {"image file absent": 1}


@pytest.mark.parametrize("policy,has_cardiomegaly", [("ones", True), ("zeros", False), ("ignore", False)])
def test_uncertainty_policy(tmp_path, policy, has_cardiomegaly):
    b = load_dataset(f"chexpert:{make_tree(tmp_path)}", uncertain=policy).records[1]
    assert ("Cardiomegaly" in b.findings) is has_cardiomegaly
    assert ("Cardiomegaly" in b.extra["negative"]) is (policy == "zeros")


def test_bad_policy_says_the_choices(tmp_path):
    with pytest.raises(DatasetError, match="ones, zeros, ignore"):
        load_dataset(f"chexpert:{make_tree(tmp_path)}", uncertain="maybe")


def test_csv_itself_and_paths_relative_to_the_root(tmp_path):
    # Some copies keep the images under the root with the same Path column (root convention 2).
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "valid.csv").write_text("\n".join([HEADER, *ROWS[:1]]) + "\n")
    write_image(root / ROWS[0].split(",")[0])
    recs = load_dataset(f"chexpert:{root / 'valid.csv'}").records
    assert len(recs) == 1 and recs[0].findings == ["No Finding", "Support Devices"]


def test_unknown_age_zero_is_none(tmp_path):
    root = make_tree(tmp_path)
    write_image(tmp_path / ROWS[3].split(",")[0])
    recs = load_dataset(f"chexpert:{root}").records
    assert recs[-1].age is None and recs[-1].view == "PA" and recs[-1].findings == ["Pneumonia"]


def test_format_head_file_parses(shared_data):
    head = shared_data / "formats" / "chexpert_train.head.csv"
    if not head.is_file():
        pytest.skip("formats/chexpert_train.head.csv not in shared data")
    load = load_dataset(f"chexpert:{head}")
    assert not load.records and load.skipped_counts() == {"image file absent": len(load.skipped)}
    assert len(load.skipped) >= 3
