"""kermany reader on a generated chest_xray/{train,test,val}/{NORMAL,PNEUMONIA} tree."""

from __future__ import annotations

import pytest

from embed.datasets import load_dataset
from embed.errors import DatasetLayoutError
from embed.pseudonym import pseudonymize
from tests.embed.datasets_fixtures import all_json, write_image

FILES = [
    "train/NORMAL/IM-0115-0001.jpeg",
    "train/NORMAL/NORMAL2-IM-0115-0001.jpeg",
    "train/PNEUMONIA/person1_bacteria_1.jpeg",
    "train/PNEUMONIA/person1_bacteria_2.jpeg",
    "test/PNEUMONIA/person22_virus_55.jpeg",
    "val/NORMAL/IM-0115-0002.jpeg",
]


@pytest.fixture()
def kermany_root(tmp_path):
    # The Kaggle zip nests the release as chest_xray/chest_xray and adds __MACOSX.
    root = tmp_path / "chest_xray" / "chest_xray"
    for i, rel in enumerate(FILES):
        write_image(root / rel, seed=i)
    (root / "train" / "PNEUMONIA" / "broken.jpeg").write_bytes(b"")
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\0")
    write_image(tmp_path / "chest_xray" / "__MACOSX" / "train" / "NORMAL" / "IM-9.jpeg")
    return tmp_path / "chest_xray"


def test_reads_every_split_and_class(kermany_root):
    load = load_dataset(f"kermany:{kermany_root}")
    by_name = {r.case_id.rsplit("/", 1)[1]: r for r in load.records}
    assert len(load.records) == len(FILES)
    assert by_name["IM-0115-0001.jpeg"].findings == ["No Finding"]
    assert by_name["person1_bacteria_1.jpeg"].findings == ["Pneumonia", "Bacterial Pneumonia"]
    assert by_name["person22_virus_55.jpeg"].findings == ["Pneumonia", "Viral Pneumonia"]
    assert by_name["person22_virus_55.jpeg"].extra["split"] == "test"
    assert by_name["IM-0115-0002.jpeg"].extra["split"] == "val"
    assert load.records[0].case_id.startswith("kermany/train/") or load.records[0].case_id.startswith("kermany/test/")
    assert all(r.licence == "CC BY 4.0" and r.age is None and r.extra["cohort"] for r in load.records)
    assert load.skipped_counts() == {"image file empty": 1}


def test_patients_from_file_names(kermany_root):
    by_name = {r.case_id.rsplit("/", 1)[1]: r for r in load_dataset(f"kermany:{kermany_root}").records}
    assert by_name["person1_bacteria_1.jpeg"].patient == by_name["person1_bacteria_2.jpeg"].patient
    assert by_name["person1_bacteria_1.jpeg"].patient == pseudonymize("kermany", "person1")
    # IM-0115 and NORMAL2-IM-0115 are different series, hence different patients.
    assert by_name["IM-0115-0001.jpeg"].patient == by_name["IM-0115-0002.jpeg"].patient
    assert by_name["IM-0115-0001.jpeg"].patient != by_name["NORMAL2-IM-0115-0001.jpeg"].patient


def test_raw_ids_only_in_the_public_file_name(kermany_root):
    recs = load_dataset(f"kermany:{kermany_root}").records
    for r in recs:
        d = r.to_dict()
        d.pop("case_id"), d.pop("image_path")  # the release's own file names
        assert "person" not in str(d) and "IM-" not in str(d)
    assert "p_" in all_json(recs)


def test_wrong_layout_says_what_was_expected(tmp_path):
    write_image(tmp_path / "Pneumonia" / "a.png")
    with pytest.raises(DatasetLayoutError, match=r"train.*NORMAL") as exc:
        load_dataset(f"kermany:{tmp_path}")
    assert "imagefolder" in str(exc.value)


def test_real_kermany(shared_data):
    root = shared_data / "chest_xray"
    if not root.is_dir():
        pytest.skip("chest_xray not in shared data")
    load = load_dataset(f"kermany:{root}")
    findings = {f for r in load.records for f in r.findings}
    assert {"No Finding", "Bacterial Pneumonia", "Viral Pneumonia"} <= findings
    assert all(r.patient for r in load.records)
    assert len({r.patient for r in load.records}) < len(load.records)
