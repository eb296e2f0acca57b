"""Tiny DICOM files written with pydicom, for tests that must always run.

``make_dicom`` returns the bytes of a single-frame image with the given
stored values and tags; identifying tags are filled with recognisable values
(``IDENTIFYING``) so de-identification tests can look for them in the output.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

IDENTIFYING = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "MRN-48151623",
    "PatientBirthDate": "19470312",
    "AccessionNumber": "ACC-99887766",
    "InstitutionName": "Saint Elsewhere General Hospital",
    "InstitutionAddress": "42 Hospital Road, Springfield",
    "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Quinn^Michaela",
    "OperatorsName": "Operator^Olga",
    "StationName": "XRAYROOM7",
    "DeviceSerialNumber": "SN-00042-XYZ",
    "StudyDate": "20210314",
    "SeriesDate": "20210314",
    "AcquisitionDate": "20210314",
    "StudyTime": "101530",
    "StudyID": "STUDY-5150",
    "StudyDescription": "CHEST PA for Jane Doe",
    "OtherPatientIDs": "OTHER-ID-31337",
    "PatientAddress": "7 Privet Drive, Little Whinging",
    "PatientTelephoneNumbers": "555-0199",
}


def make_dataset(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int | None = None,
    bits_stored: int | None = None,
    signed: bool = False,
    identifying: bool = True,
    **tags,
) -> Dataset:
    """A Dataset whose PixelData holds ``stored`` (2-D, or HxWx3 for RGB) as raw little-endian values."""
    stored = np.asarray(stored)
    if bits_allocated is None:
        bits_allocated = stored.dtype.itemsize * 8
    if bits_stored is None:
        bits_stored = bits_allocated
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    if identifying:
        for key, value in IDENTIFYING.items():
            setattr(ds, key, value)
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    ds.PixelData = np.ascontiguousarray(stored).astype(dtype, copy=False).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def to_bytes(ds: Dataset, *, file_meta: bool = True, implicit: bool = False) -> bytes:
    """Serialize; ``file_meta=False`` writes a bare data set (no preamble, no DICM, no group 2)."""
    buf = io.BytesIO()
    if file_meta:
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    else:
        bare = Dataset()
        bare.update(ds)
        pydicom.dcmwrite(buf, bare, enforce_file_format=False, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def make_dicom(stored: np.ndarray, *, file_meta: bool = True, implicit: bool = False, **kw) -> bytes:
    """Bytes of a tiny DICOM image (see :func:`make_dataset` for the keywords)."""
    return to_bytes(make_dataset(stored, **kw), file_meta=file_meta, implicit=implicit)
