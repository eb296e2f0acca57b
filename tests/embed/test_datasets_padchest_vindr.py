"""padchest and vindr readers on generated label files in the published column layouts."""

from __future__ import annotations

import pytest

from embed.datasets import load_dataset
from embed.pseudonym import pseudonymize
from tests.embed.datasets_fixtures import all_json, write_csv, write_image

PADCHEST_HEADER = (
    ",ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,PatientBirth,PatientSex_DICOM,ViewPosition_DICOM,"
    "Projection,MethodProjection,Pediatric,Modality_DICOM,Manufacturer_DICOM,PhotometricInterpretation_DICOM,"
    "PixelRepresentation_DICOM,PixelAspectRatio_DICOM,SpatialResolution_DICOM,BitsStored_DICOM,WindowCenter_DICOM,"
    "WindowWidth_DICOM,Rows_DICOM,Columns_DICOM,XRayTubeCurrent_DICOM,Exposure_DICOM,ExposureInuAs_DICOM,"
    "ExposureTime,RelativeXRayExposure_DICOM,ReportID,Report,MethodLabel,Labels,Localizations,"
    "LabelsLocalizationsBySentence,labelCUIS,LocalizationsCUIS"
).split(",")


def padchest_row(idx, image, date, pid, birth, sex, view_dicom, proj, labels, locs="[]"):
    values = dict.fromkeys(PADCHEST_HEADER, "None")
    values.update({"": str(idx), "ImageID": image, "ImageDir": "0", "StudyDate_DICOM": date,
                   "StudyID": "STUDYRAW" + str(idx), "PatientID": pid, "PatientBirth": birth,
                   "PatientSex_DICOM": sex, "ViewPosition_DICOM": view_dicom, "Projection": proj,
                   "Pediatric": "No", "Modality_DICOM": "CR", "Report": " sin hallazg patolog Zebedee .",
                   "ReportID": "4765777", "MethodLabel": "Physician", "Labels": labels, "Localizations": locs})
    return [values[h] for h in PADCHEST_HEADER]


@pytest.fixture()
def padchest_root(tmp_path):
    rows = [
        padchest_row(0, "111_a.png", "20140915", "RAWPAT9", "1930.0", "F", "POSTEROANTERIOR", "PA", "['normal']"),
        padchest_row(1, "222_b.png", "20150914", "RAWPAT8", "1929.0", "M", "LATERAL", "L",
                     "['pulmonary fibrosis', 'COPD signs', 'pneumonia']", "['loc basal']"),
        padchest_row(2, "222_c.png", "20150924", "RAWPAT8", "1929.0", "M", "POSTEROANTERIOR", "AP_horizontal",
                     "['pneumonia']"),
        padchest_row(3, "333_d.png", "20150717", "RAWPAT7", "1925.0", "F", "POSTEROANTERIOR", "PA", "['exclude']"),
        padchest_row(4, "444_e.png", "20150717", "RAWPAT6", "1925.0", "F", "POSTEROANTERIOR", "PA", "['normal']"),
    ]
    write_csv(tmp_path / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", PADCHEST_HEADER, rows)
    for n in ("111_a.png", "222_b.png", "222_c.png", "333_d.png"):
        write_image(tmp_path / "0" / n)
    return tmp_path


def test_padchest(padchest_root):
    load = load_dataset(f"padchest:{padchest_root}")
    a, b, c = load.records
    assert a.case_id == "padchest/0/111_a.png" and a.findings == ["No Finding"]
    assert b.findings == ["Pulmonary Fibrosis", "COPD Signs", "Pneumonia"] and b.extra["localizations"] == ["loc basal"]
    assert (a.view, b.view, c.view) == ("PA", "LATERAL", "AP Supine")
    assert (a.age, b.age, a.sex, b.sex) == (84.0, 86.0, "F", "M")
    assert b.patient == c.patient == pseudonymize("padchest", "RAWPAT8") != a.patient
    assert (b.day_offset, c.day_offset) == (0.0, 10.0)
    assert load.skipped_counts() == {"labelled exclude / suboptimal study by PadChest": 1, "image file absent": 1}
    text = all_json(load.records)
    for secret in ("RAWPAT", "STUDYRAW", "1930", "2014", "Zebedee", "4765777"):
        assert secret not in text


VINDR_HEADER = ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]


def test_vindr_collapses_boxes_to_one_case_per_image(tmp_path):
    rows = [
        ["img1", "No finding", "14", "R11", "", "", "", ""],
        ["img1", "No finding", "14", "R7", "", "", "", ""],
        ["img2", "Cardiomegaly", "3", "R10", "691.0", "1375.0", "1653.0", "1831.0"],
        ["img2", "Aortic enlargement", "0", "R10", "1264.0", "743.0", "1611.0", "1019.0"],
        ["img2", "Cardiomegaly", "3", "R9", "700.0", "1380.0", "1650.0", "1830.0"],
        ["img2", "No finding", "14", "R8", "", "", "", ""],
        ["img3", "No finding", "14", "R8", "", "", "", ""],
    ]
    write_csv(tmp_path / "train.csv", VINDR_HEADER, rows)
    write_image(tmp_path / "train" / "img1.png")
    write_image(tmp_path / "train" / "img2.jpg")
    load = load_dataset(f"vindr:{tmp_path}")
    one, two = load.records
    assert one.case_id == "vindr-cxr/train/img1.png" and one.findings == ["No Finding"] and one.patient is None
    assert two.findings == ["Cardiomegaly", "Aortic enlargement"]
    assert two.extra["readers_per_finding"] == {"Cardiomegaly": 2, "Aortic enlargement": 1, "No Finding": 1}
    assert len(two.extra["boxes"]) == 3 and two.extra["boxes"][0]["box"] == [691.0, 1375.0, 1653.0, 1831.0]
    assert load.skipped_counts() == {"image file absent": 1}
    assert "R10" not in all_json(load.records)


def test_format_heads_parse(shared_data):
    fm = shared_data / "formats"
    if not fm.is_dir():
        pytest.skip("formats/ not in shared data")
    for spec in (f"padchest:{fm / 'padchest.head.csv'}", f"vindr:{fm / 'vindr_train.head.csv'}",
                 f"nih14:{fm / 'nih_Data_Entry_2017.head.csv'}"):
        load = load_dataset(spec)
        assert not load.records and load.skipped
        assert set(load.skipped_counts()) <= {"image file absent", "labelled exclude / suboptimal study by PadChest"}
