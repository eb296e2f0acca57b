"""De-identification: only the allow-list leaves a DICOM header (generated and real files)."""

from __future__ import annotations

import datetime as dt
import json
import logging

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from embed.deid import deidentify_dataset, normalize_view, parse_age, parse_da, patient_key, study_date
from embed.errors import ImageReadError
from embed.image import read_image
from embed.pseudonym import pseudonymize
from tests.embed.dicom_fixtures import IDENTIFYING, make_dataset, make_dicom, to_bytes

ALLOWED_KEYS = {"modality", "body_part", "view", "sex", "age", "photometric", "bits_stored", "rows", "columns",
                "transfer_syntax", "manufacturer_model", "patient", "day_offset"}
ID_KEYWORDS = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthName", "AccessionNumber", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "StationName", "DeviceSerialNumber", "StudyID", "StudyDescription", "SeriesDescription",
    "OtherPatientIDs", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "IssuerOfPatientID",
}
IDENTIFYING_VRS = {"PN", "DA", "DT", "TM"}


def identifying_values(ds: pydicom.Dataset) -> set[str]:
    """Every identifying string in a data set, nested sequences included, taken from the raw header:
    the listed keywords, every person name / date / time, and every instance UID (standard UIDs such as
    transfer syntaxes and SOP classes are public constants, not identifiers)."""
    found: set[str] = set()

    def visit(d: pydicom.Dataset) -> None:
        for elem in d.iterall():
            if elem.VR == "SQ" or elem.value in (None, "", b""):
                continue
            values = elem.value if isinstance(elem.value, (list, tuple, pydicom.multival.MultiValue)) else [elem.value]
            is_uid = elem.VR == "UI"
            for v in values:
                text = str(v).strip()
                if is_uid and UID(text).name != text:  # a registered, public UID
                    continue
                if elem.keyword in ID_KEYWORDS or elem.VR in IDENTIFYING_VRS or is_uid:
                    found.add(text)

    visit(ds)
    if getattr(ds, "file_meta", None) is not None:
        visit(ds.file_meta)
    return found


def assert_no_leak(meta: dict, ds: pydicom.Dataset, extra_text: str = "") -> None:
    assert set(meta) <= ALLOWED_KEYS, set(meta) - ALLOWED_KEYS
    blob = json.dumps(meta) + str(meta) + extra_text
    # values of fewer than 4 characters ("XX", "M") cannot be searched for meaningfully in a text blob
    leaks = {v for v in identifying_values(ds) if len(v) >= 4 and v in blob}
    assert not leaks, leaks


def test_generated_dicom_meta_has_no_identifiers(caplog):
    ds = make_dataset(np.arange(16, dtype=np.uint8).reshape(4, 4), PatientAge="045Y", PatientSex="F",
                      ViewPosition="PA", BodyPartExamined="CHEST", ManufacturerModelName="FDR-1000")
    data = to_bytes(ds)
    raw = pydicom.dcmread(__import__("io").BytesIO(data))
    assert set(IDENTIFYING.values()) <= identifying_values(raw) | {IDENTIFYING["StudyTime"]}
    with caplog.at_level(logging.DEBUG):
        meta = read_image(data).meta
    assert_no_leak(meta, raw, caplog.text)
    assert meta["sex"] == "F" and meta["age"] == 45.0 and meta["view"] == "PA" and meta["body_part"] == "CHEST"
    assert meta["manufacturer_model"] == "FDR-1000"
    assert meta["patient"] == pseudonymize("dicom", IDENTIFYING["PatientID"])
    assert meta["patient"].startswith("p_") and "day_offset" not in meta


def test_error_messages_do_not_leak_identifiers():
    ds = make_dataset(np.zeros((4, 4), np.uint8))
    ds.NumberOfFrames = 3
    with pytest.raises(ImageReadError) as info:
        read_image(to_bytes(ds))
    assert not {v for v in IDENTIFYING.values() if v in str(info.value)}


def test_nested_and_private_tags_are_dropped():
    ds = make_dataset(np.zeros((4, 4), np.uint8))
    item = pydicom.Dataset()
    item.PatientID = "NESTED-ID-777"
    ds.OtherPatientIDsSequence = [item]
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "PRIVATE-SECRET-NAME")
    meta = read_image(to_bytes(ds)).meta
    assert "NESTED-ID-777" not in json.dumps(meta) and "PRIVATE-SECRET" not in json.dumps(meta)


def test_invalid_header_values_are_not_logged(caplog):
    """pydicom's validation would log an invalid value verbatim: reading must not put it in the logs."""
    ds = make_dataset(np.zeros((2, 2), np.uint8), PatientAge="Jane Doe 42", ViewPosition="Jane Doe special view")
    data = to_bytes(ds)
    with caplog.at_level(logging.DEBUG):
        meta = read_image(data).meta
    assert "Jane" not in caplog.text and "Jane" not in json.dumps(meta)
    assert "age" not in meta and "view" not in meta


def test_no_patient_id_no_pseudonym():
    meta = read_image(make_dicom(np.zeros((4, 4), np.uint8), identifying=False)).meta
    assert "patient" not in meta


def test_day_offset_only_with_reference_date():
    ds = make_dataset(np.zeros((2, 2), np.uint8))  # StudyDate 2021-03-14
    assert "day_offset" not in deidentify_dataset(ds)
    assert deidentify_dataset(ds, reference_date=dt.date(2021, 3, 1))["day_offset"] == 13.0
    assert study_date(ds) == dt.date(2021, 3, 14)
    del ds.StudyDate
    assert study_date(ds) == dt.date(2021, 3, 14)  # falls back to SeriesDate
    del ds.SeriesDate, ds.AcquisitionDate
    assert "day_offset" not in deidentify_dataset(ds, reference_date=dt.date(2021, 3, 1))


def test_odd_values_are_dropped_not_passed_through():
    ds = make_dataset(np.zeros((2, 2), np.uint8), PatientSex="O", PatientAge="about forty",
                      ViewPosition="Jane's special view", BodyPartExamined="chest of Jane Doe the 3rd")
    meta = deidentify_dataset(ds)
    assert not {"sex", "age", "view", "body_part"} & set(meta)


@pytest.mark.parametrize("raw,years", [("045Y", 45.0), ("006M", 0.5), ("002W", 14 / 365.25), ("003D", 3 / 365.25),
                                       ("68", 68.0), ("095Y", 90.0), ("", None), ("X", None), (None, None)])
def test_parse_age(raw, years):
    assert parse_age(raw) == (pytest.approx(years, abs=1e-3) if years is not None else None)


@pytest.mark.parametrize("raw,view", [("PA", "PA"), ("ap", "AP"), ("LL", "LATERAL"), ("RL", "LATERAL"),
                                      ("AP SUPINE", "AP Supine"), ("", None), (None, None), ("OBLIQUE-ish", None)])
def test_normalize_view(raw, view):
    assert normalize_view(raw) == view


def test_parse_da():
    assert parse_da("20200125") == dt.date(2020, 1, 25)
    assert parse_da("2020.01.25") == dt.date(2020, 1, 25)
    assert parse_da("20201325") is None and parse_da("") is None and parse_da(None) is None


def test_every_shared_dicom_is_deidentified(shared_data, caplog):
    files = sorted((shared_data / "dicom").glob("*.dcm"))
    assert files
    for path in files:
        raw = pydicom.dcmread(path, force=True)
        with caplog.at_level(logging.DEBUG):
            meta = read_image(path).meta
        assert_no_leak(meta, raw, caplog.text)
        pid = patient_key(raw)  # None for absent / placeholder ids such as "XX"
        if pid:
            assert meta["patient"] == pseudonymize("dicom", pid) and meta["patient"] != pid
        else:
            assert "patient" not in meta
        caplog.clear()


def test_corrupt_files_do_not_leak_identifiers_in_errors_or_logs(caplog):
    """Decoder messages can quote raw header bytes: fuzzed files must not put a name or id in an error or log."""
    import random

    from embed.errors import CXRError

    ds = make_dataset(np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % 4096, bits_stored=12,
                      WindowCenter="100", WindowWidth="50", RescaleSlope="2", RescaleIntercept="3")
    # identifying values *behind* the image group (0028), where a corrupt length makes a LUT or
    # window element swallow them into a decoder's error message
    ds.ScheduledPerformingPhysicianName = "Secretary^Jane^Behind"
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", "MRN-BEHIND-0042")
    data = to_bytes(ds)
    pixel_tag = data.find(b"\xe0\x7f\x10\x00")
    secrets = [v for k, v in IDENTIFYING.items() if not k.endswith(("Date", "Time"))]
    secrets += ["Secretary^Jane^Behind", "MRN-BEHIND-0042"]
    rnd = random.Random(11)
    texts = []
    with caplog.at_level(logging.DEBUG):
        for _ in range(400):
            x = bytearray(data)
            for _ in range(rnd.randrange(1, 4)):
                x[rnd.randrange(pixel_tag - 400, pixel_tag)] = rnd.randrange(256)
            if rnd.random() < 0.3:
                x = x[: rnd.randrange(200, len(x))]
            try:
                texts.append(json.dumps(read_image(bytes(x)).meta))
            except CXRError as exc:
                texts.append(str(exc))
                cause = exc.__cause__
                texts.append(str(cause) if cause is not None else "")
    blob = "\n".join(texts) + caplog.text
    leaks = [s for s in secrets if s in blob]
    assert not leaks, leaks


def test_value_swallowed_by_a_corrupt_length_is_not_logged(caplog):
    """A VOI LUT Function whose length field runs over the next elements makes pydicom's error quote
    them verbatim ("Unsupported ... value '...'"), private patient id included. The reader logs only
    the error type."""
    import struct

    ds = make_dataset(np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % 4096, bits_stored=12,
                      WindowCenter="100", WindowWidth="50", VOILUTFunction="LINEAR")
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", "MRN-BEHIND-0042")
    data = bytearray(to_bytes(ds))
    ww = data.find(b"\x28\x00\x56\x10CS")  # (0028,1056) VOI LUT Function, explicit VR
    end = data.find(b"MRN-BEHIND-0042") + len("MRN-BEHIND-0042") + 1
    data[ww + 6 : ww + 8] = struct.pack("<H", end - (ww + 8))
    with caplog.at_level(logging.DEBUG):
        img = read_image(bytes(data))
    assert "malformed VOI" in caplog.text  # the corruption was noticed ...
    assert "MRN-BEHIND" not in caplog.text and "MRN-BEHIND" not in json.dumps(img.meta)  # ... and not quoted


@pytest.mark.parametrize("placeholder", ["ANONYMOUS", "Anonymized", "XX", "0", "  ", "unknown"])
def test_placeholder_patient_ids_give_no_pseudonym(placeholder):
    """An anonymizer's placeholder is no patient: pseudonymizing it would make all such images one patient."""
    ds = make_dataset(np.zeros((2, 2), np.uint8), PatientID=placeholder)
    assert "patient" not in deidentify_dataset(ds)
    ds.PatientID = "XX-1234"
    assert deidentify_dataset(ds)["patient"] == pseudonymize("dicom", "XX-1234")
