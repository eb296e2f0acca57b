"""covid-chestxray reader on a generated metadata.csv in the upstream (ieee8023) column layout."""

from __future__ import annotations

import pytest

from embed.datasets import PROGNOSIS_FIELDS, load_dataset
from embed.datasets.covid_chestxray import parse_finding
from embed.pseudonym import pseudonymize
from tests.embed.datasets_fixtures import all_json, write_csv, write_image

# The upstream header, as published (28 named columns and a trailing empty one).
HEADER = ("patientid,offset,sex,age,finding,survival,intubated,intubation_present,went_icu,in_icu,"
          "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,"
          "lymphocyte_count,view,modality,date,location,folder,filename,doi,url,license,clinical_notes,"
          "other_notes,").split(",")


def row(pid, offset, sex, age, finding, view, modality, filename, folder="images", prog=("Y", "N", "N", "Y", "N", "Y", "")):
    r = dict.fromkeys(HEADER, "")
    r.update(patientid=pid, offset=offset, sex=sex, age=age, finding=finding, view=view, modality=modality,
             folder=folder, filename=filename, date="January 22, 2020", location="Cho Ray Hospital, Vietnam",
             doi="10.1000/xyz", url="https://example.org/paper", license="CC BY 4.0",
             clinical_notes="Mr Quentin Zebedee, 65, admitted", other_notes="Case courtesy of Dr Ygritte Wolfe",
             temperature="38.5")
    r.update(dict(zip(PROGNOSIS_FIELDS, prog)))
    return [r[h] for h in HEADER]


@pytest.fixture()
def covid_root(tmp_path):
    root = tmp_path / "covid-chestxray-dataset"
    rows = [
        row("RAWPID77", "0", "M", "65", "COVID-19", "PA", "X-ray", "a.jpeg"),
        row("RAWPID77", "3", "M", "65", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "b.png"),
        row("RAWPID78", "", "F", "", "COVID-19", "Axial", "CT", "ct.jpg", folder="volumes"),
        row("RAWPID79", "", "F", "40", "SARS", "PA", "X-ray", "absent.jpeg"),
        row("RAWPID80", "?", "", "", "todo", "L", "X-ray", "c.jpg", prog=("?", "Not visible", "", "", "", "", "")),
        row("RAWPID81", "", "F", "30", "No Finding", "PA", "X-ray", "d.jpg"),
        row("RAWPID82", "5", "M", "70", "COVID-19, ARDS", "AP", "X-ray", "e.jpg"),
        row("RAWPID83", "1", "M", "70", "Streptococcus", "PA", "X-ray", "notimage.png"),
    ]
    write_csv(root / "metadata.csv", HEADER, rows)
    for i, name in enumerate(["a.jpeg", "b.png", "c.jpg", "d.jpg", "e.jpg"]):
        write_image(root / "images" / name, seed=i)
    write_image(root / "volumes" / "ct.jpg")
    (root / "images" / "notimage.png").write_text("<html>not an image</html>")
    return root


def test_reads_xray_rows_and_reports_the_rest(covid_root):
    load = load_dataset(f"covid-chestxray:{covid_root}")
    ids = [r.case_id for r in load.records]
    assert ids == [f"covid-chestxray/images/{n}" for n in ("a.jpeg", "b.png", "c.jpg", "d.jpg", "e.jpg")]
    counts = load.skipped_counts()
    assert counts["image file absent"] == 1
    assert counts["not a PNG/JPEG/DICOM image"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("CT row")) == 1
    assert all(r.image_path.startswith(str(covid_root)) for r in load.records)


def test_include_ct_keeps_ct_rows(covid_root):
    load = load_dataset(f"covid-chestxray:{covid_root}", include_ct=True)
    ct = [r for r in load.records if r.extra.get("modality") == "CT"]
    assert len(ct) == 1 and ct[0].view == "AXIAL"
    spec_load = load_dataset(f"covid-chestxray:{covid_root}?include_ct=true")
    assert sum(r.extra.get("modality") == "CT" for r in spec_load.records) == 1


def test_fields_are_normalised(covid_root):
    recs = {r.case_id.rsplit("/", 1)[1]: r for r in load_dataset(f"covid-chestxray:{covid_root}").records}
    a, b, c, d, e = (recs[n] for n in ("a.jpeg", "b.png", "c.jpg", "d.jpg", "e.jpg"))
    assert a.patient == b.patient == pseudonymize("covid-chestxray", "RAWPID77") and a.patient != d.patient
    assert (a.day_offset, b.day_offset, c.day_offset) == (0.0, 3.0, None)
    assert (a.view, b.view, c.view, e.view) == ("PA", "AP Supine", "LATERAL", "AP")
    assert (a.sex, d.sex, c.sex, a.age, c.age) == ("M", "F", None, 65.0, None)
    assert a.findings == b.findings == ["Pneumonia", "Viral Pneumonia", "COVID-19"]
    assert e.findings == ["Pneumonia", "Viral Pneumonia", "COVID-19", "ARDS"]
    assert d.findings == ["No Finding"]
    assert c.findings == [] and c.extra["finding_todo"] is True
    assert a.prognosis == {"survival": True, "intubated": False, "intubation_present": False, "went_icu": True,
                           "in_icu": False, "needed_supplemental_O2": True, "extubated": None}
    assert c.prognosis["survival"] is None and c.extra["intubated_raw"] == "Not visible"
    assert a.licence == "CC BY 4.0" and a.extra["doi"] == "10.1000/xyz" and a.extra["temperature"] == 38.5


def test_no_identifying_data_in_records(covid_root):
    text = all_json(load_dataset(f"covid-chestxray:{covid_root}", include_ct=True).records)
    for secret in ("RAWPID", "Quentin", "Ygritte", "Cho Ray", "Vietnam", "January", "2020"):
        assert secret not in text


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Pneumonia/Bacterial/Streptococcus", ["Pneumonia", "Bacterial Pneumonia", "Streptococcus"]),
        ("Streptococcus", ["Pneumonia", "Bacterial Pneumonia", "Streptococcus"]),
        ("Pneumonia/Fungal/Pneumocystis", ["Pneumonia", "Fungal Pneumonia", "Pneumocystis"]),
        ("Lipoid", ["Pneumonia", "Lipoid Pneumonia"]),
        ("Pneumonia/Lipoid", ["Pneumonia", "Lipoid Pneumonia"]),
        ("ARDS", ["ARDS"]),
        ("No Finding", ["No Finding"]),
        ("", []),
    ],
)
def test_flat_and_hierarchical_findings_agree(raw, expected):
    assert parse_finding(raw)[0] == expected


def test_real_covid_metadata(shared_data):
    root = shared_data / "covid-chestxray-dataset"
    if not root.is_dir():
        pytest.skip("covid-chestxray-dataset not in shared data")
    load = load_dataset(f"covid-chestxray:{root}")
    assert load.records and all(r.extra.get("modality") == "X-ray" for r in load.records)
    assert {"PA", "AP", "AP Supine", "LATERAL"} <= {r.view for r in load.records}
    assert any(r.prognosis.get("survival") is False for r in load.records)
    assert "image file absent" in load.skipped_counts()
    text = all_json(load.records)
    assert "clinical_notes" not in text and "Case courtesy" not in text
