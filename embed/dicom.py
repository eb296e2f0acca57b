"""DICOM pixel pipeline, in the order of the standard's grayscale display pipeline.

stored values ─► BitsStored mask / sign ─► Modality LUT (sequence or rescale)
─► VOI LUT (sequence, or window centre/width with its VOI LUT function)
─► presentation: MONOCHROME1 or Presentation LUT Shape INVERSE → inverted,
so that bone is bright and air dark in the output, as in a MONOCHROME2 image.

Convention for MONOCHROME1 + PresentationLUTShape INVERSE: the DX/CR IODs
(PS3.3 C.8.11.6.1) require Presentation LUT Shape INVERSE *for* MONOCHROME1
images and IDENTITY for MONOCHROME2: INVERSE there restates that the minimum
is white, it does not ask for a second inversion. So the image is inverted
exactly once when it is MONOCHROME1 *or* its shape is INVERSE (checked on
``dx-thorax-inverse.dcm``: inverting once gives bright bones).

Only the de-identified allow-list of :func:`embed.deid.deidentify_dataset`
leaves this module.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings

import numpy as np

from embed.errors import ImageReadError, TruncatedImageError, UnsupportedImageError
from embed.limits import check_pixel_count, large_decode, reduce_array, reduction_factor

log = logging.getLogger(__name__)


class _NoDecoderTracebacks(logging.Filter):
    """pydicom logs every failed decoder plugin with its traceback at ERROR before raising;
    :func:`_decode` reports the failure once, as a specific message, so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_NoDecoderTracebacks())

MONO = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT")
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
_PIXEL_DATA_TAG_LE = b"\xe0\x7f\x10\x00"
_PIXEL_DATA_TAG_BE = b"\x7f\xe0\x00\x10"


def read_dataset(data: bytes, *, name: str = "the image"):
    """Parse DICOM bytes (with or without preamble / file meta) into a ``pydicom.Dataset``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    buf = io.BytesIO(data if not data.startswith(b"DICM") else b"\0" * 128 + data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's read warnings may quote header values (names, ids)
            ds = pydicom.dcmread(buf, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise TruncatedImageError(
            f"{name} starts like DICOM but its header could not be parsed ({type(exc).__name__}); "
            "the file is truncated or corrupt"
        ) from None  # pydicom's message may quote raw header bytes (names, ids): never pass it on
    _ensure_transfer_syntax(ds)
    return ds


def _is_image_class(ds) -> bool:
    """True when the SOP class is an image storage class (so pixel data must follow the header)."""
    from pydicom.uid import UID

    for uid in (ds.get("SOPClassUID"), ds.file_meta.get("MediaStorageSOPClassUID")):
        try:
            if uid and "Image Storage" in UID(str(uid)).name:
                return True
        except Exception:  # noqa: BLE001 - a malformed UID is simply not an image class
            continue
    return False


def _ensure_transfer_syntax(ds) -> None:
    """Files without file meta (read with force) get the transfer syntax they were parsed with."""
    from pydicom.dataset import FileMetaDataset

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if implicit is None:
            implicit, little = True, True
        uid = IMPLICIT_VR_LE if implicit else (EXPLICIT_VR_LE if little else "1.2.840.10008.1.2.2")
        meta.TransferSyntaxUID = uid


def _int(ds, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword, default)
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return default


def read_dicom(
    data: bytes, *, name: str = "the image", max_pixels: int = 50_000_000, correct_photometric: bool = True
) -> tuple[np.ndarray, dict]:
    """Decode one DICOM image to float32 display values (bone bright) plus de-identified meta."""
    from embed.deid import deidentify_dataset

    ds = read_dataset(data, name=name)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if _PIXEL_DATA_TAG_LE in data or _PIXEL_DATA_TAG_BE in data:
            # pydicom (force=True) drops an element cut short by the end of the file: the tag is there, its value not
            raise TruncatedImageError(
                f"{name} is a DICOM image whose pixel data is cut short: the file is truncated; export or copy it again"
            )
        if _is_image_class(ds):
            raise TruncatedImageError(
                f"{name} is a DICOM image (by its SOP class) without pixel data: the file is truncated or its "
                "pixels were stripped; export it again"
            )
        raise UnsupportedImageError(
            f"{name} is DICOM without pixel data (a report or a presentation state?); give the image itself"
        )
    if "Rows" not in ds or "Columns" not in ds:
        raise TruncatedImageError(f"{name} has pixel data but no Rows/Columns in its header; the header is incomplete")
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    samples = _int(ds, "SamplesPerPixel", 1) or 1
    frames = _int(ds, "NumberOfFrames", 1) or 1
    check_pixel_count(rows, cols, samples, max_pixels, name)
    if frames > 1:
        raise UnsupportedImageError(
            f"{name} is a multi-frame DICOM ({frames} frames); export the single radiograph frame you want"
        )
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric and samples == 1:
        photometric = "MONOCHROME2"  # the most common grey layout; PS3.3 makes the element mandatory
    if photometric not in MONO + COLOUR + ("PALETTE COLOR",):
        # echo the value only when it is a well-formed code string (a corrupt one may hold other tags' bytes)
        shown = repr(photometric) if re.fullmatch(r"[A-Z0-9 _]{1,16}", photometric) else "invalid or missing"
        raise UnsupportedImageError(
            f"{name} has photometric interpretation {shown}, which is not supported; convert it to MONOCHROME2"
        )
    if (photometric in MONO and samples != 1) or (photometric in COLOUR and samples != 3):
        raise UnsupportedImageError(
            f"{name}: {photometric} with {samples} samples per pixel is inconsistent; the header is corrupt"
        )
    if photometric in MONO + COLOUR + ("PALETTE COLOR",):
        ds.PhotometricInterpretation = photometric  # pydicom's decoders need it present and upper-case
    with large_decode(rows, cols) as large:
        arr = _decode(ds, name)
        if arr.ndim != (2 if samples == 1 else 3) or arr.shape[0] != rows or arr.shape[1] != cols:
            raise TruncatedImageError(f"{name}: decoded pixels {arr.shape} do not match the header {rows}x{cols}")
        if large and photometric != "PALETTE COLOR":  # palette indices cannot be averaged
            arr = _reduced(arr, ds)
        if photometric in MONO:
            out = grey_pipeline(arr, ds, correct_photometric=correct_photometric)
        else:
            out = _colour_to_grey(arr, ds, photometric)
        if large:
            out = reduce_array(out, reduction_factor(out.shape[0], out.shape[1]))
    if out.size and not np.isfinite(out).all():
        raise ImageReadError(
            f"{name}: the rescale slope/intercept or LUTs turn its pixels into non-finite values "
            "(overflow); the header is corrupt: export it again"
        )
    meta = deidentify_dataset(ds)
    return out, meta


def _decode(ds, name: str) -> np.ndarray:
    """Stored values as an ndarray; YBR is converted to RGB by pydicom.

    Every failure names its cause: an unregistered transfer syntax or a codec that no
    installed decoder handles is *unsupported*, not corrupt; only a decoder that
    supports the codec and still fails calls the file corrupt.
    """
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and not ts.is_transfer_syntax:
        raise UnsupportedImageError(
            f"{name} uses an unknown transfer syntax (not a DICOM-registered one); "
            "export it as uncompressed, JPEG or JPEG 2000 DICOM"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns (with header values) about padding, VR mismatches...
            arr = ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted below into unsupported / truncated / corrupt
        log.debug("pixel decoding failed: %s", type(exc).__name__)
        if ts == JPEG_EXTENDED_12BIT and (_int(ds, "BitsStored", 8) or 8) > 8:
            return _decode_jpeg12_gdcm(ds, name)
        if isinstance(exc, (NotImplementedError, RuntimeError)) and _no_decoder(str(exc)):
            raise UnsupportedImageError(
                f"{name}: unsupported codec: {ts.name if ts is not None else 'unknown'} has no installed "
                "decoder; install pylibjpeg and its plugins (`pip install pylibjpeg pylibjpeg-openjpeg "
                "pylibjpeg-libjpeg pyjpegls`) or python-gdcm"
            ) from None
        if isinstance(exc, RuntimeError):  # every installed decoder of this codec failed on the bytes
            raise TruncatedImageError(
                f"{name}: its {ts.name if ts is not None else 'compressed'} pixel data could not be decoded "
                "by any installed decoder; the file is probably truncated or corrupt: export it again"
            ) from None
        raise TruncatedImageError(
            f"{name}: DICOM pixel data is truncated or corrupt ({type(exc).__name__}); export it again"
        ) from None
    return np.asarray(arr)


def _no_decoder(msg: str) -> bool:
    msg = msg.lower()
    return "missing dependencies" in msg or "no pixel data decoders" in msg or "is not supported" in msg


def _decode_jpeg12_gdcm(ds, name: str) -> np.ndarray:
    """12-bit JPEG Extended (process 4) through GDCM, which pydicom's own GDCM plugin refuses.

    libjpeg (pylibjpeg) rejects common 12-bit files (WG04 ``*_JPLY``: scan parameters
    it calls misplaced) that GDCM's 12-bit IJG build reads; pydicom's GDCM plugin refuses
    12-bit precision outright, so the frame is handed to GDCM here, in memory.
    """
    try:
        import gdcm
    except ImportError:
        raise UnsupportedImageError(
            f"{name}: unsupported codec: JPEG Extended 12-bit (this file's encoding needs GDCM: "
            "`pip install python-gdcm`)"
        ) from None
    from pydicom.encaps import generate_frames

    rows, cols = _int(ds, "Rows", 0) or 0, _int(ds, "Columns", 0) or 0
    bits = _int(ds, "BitsStored", 12) or 12
    signed = _int(ds, "PixelRepresentation", 0) or 0
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        gdcm.Trace.WarningOff()  # GDCM prints "Unsupported JPEG data precision 12" while decoding fine
        gdcm.Trace.ErrorOff()
        fragment = gdcm.Fragment()
        fragment.SetByteStringValue(frame)
        fragments = gdcm.SequenceOfFragments.New()
        fragments.AddFragment(fragment)
        elem = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
        elem.SetValue(fragments.__ref__())
        img = gdcm.Image()
        img.SetNumberOfDimensions(2)
        img.SetDimensions((cols, rows, 1))
        img.SetDataElement(elem)
        img.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.MONOCHROME2))
        img.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
        img.SetPixelFormat(gdcm.PixelFormat(1, 16, bits, bits - 1, signed))
        buf = img.GetBuffer()
    except Exception as exc:  # noqa: BLE001 - GDCM's SWIG layer raises assorted types
        raise TruncatedImageError(
            f"{name}: its JPEG Extended 12-bit pixel data could not be decoded ({type(exc).__name__}); "
            "the file is truncated or corrupt: export it again"
        ) from None
    raw = buf.encode("utf-8", "surrogateescape") if isinstance(buf, str) else bytes(buf or b"")
    if len(raw) != rows * cols * 2:
        raise TruncatedImageError(
            f"{name}: its JPEG Extended 12-bit pixel data is truncated or corrupt (GDCM decoded "
            f"{len(raw)} of {rows * cols * 2} bytes); export it again"
        )
    return np.frombuffer(raw, "<i2" if signed else "<u2").reshape(rows, cols).copy()


def _reduced(arr: np.ndarray, ds) -> np.ndarray:
    """A large image's stored values area-averaged to about REDUCED_MIN_SIDE, before any LUT.

    The LUTs then run on the small array (the full-size float64 copies they make are what a
    7000 x 7000 film cost); values are rounded back to the stored integer type, as LUTs index by them.
    """
    if _is_native(ds):
        arr = _mask_bits(arr, ds)
    small = reduce_array(arr, reduction_factor(arr.shape[0], arr.shape[1]))
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        small = np.clip(np.rint(small), info.min, info.max).astype(arr.dtype)
    return small


def _mask_bits(arr: np.ndarray, ds) -> np.ndarray:
    """Honour BitsStored: drop garbage (overlays) above it and sign-extend signed data.

    HighBit is taken as BitsStored - 1, as the CR and DX IODs require and pydicom assumes.
    """
    if not np.issubdtype(arr.dtype, np.integer):
        return arr
    stored = _int(ds, "BitsStored")
    nbits = arr.dtype.itemsize * 8
    if not stored or stored >= nbits:
        return arr
    shift = nbits - stored
    unsigned = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    if _int(ds, "PixelRepresentation", 0) == 1:  # arithmetic right shift sign-extends
        return (unsigned << shift).view(np.dtype(f"i{arr.dtype.itemsize}")) >> shift
    return unsigned & np.array((1 << stored) - 1, dtype=unsigned.dtype)


def _is_native(ds) -> bool:
    ts = ds.file_meta.get("TransferSyntaxUID")
    return ts is None or not getattr(ts, "is_compressed", False)


def grey_pipeline(arr: np.ndarray, ds, *, correct_photometric: bool = True) -> np.ndarray:
    """Modality LUT, VOI LUT and the MONOCHROME1/INVERSE inversion, in that order (float32 out)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if _is_native(ds):
        arr = _mask_bits(arr, ds)
    try:
        arr = apply_modality_lut(arr, ds)
    except Exception as exc:  # malformed LUT: fall back to stored values, say so
        log.warning("ignoring a malformed Modality LUT (%s)", type(exc).__name__)
    if "VOILUTSequence" in ds and np.issubdtype(np.asarray(arr).dtype, np.floating):
        arr = np.rint(arr).astype(np.int32)  # a LUT is indexed by integers (rescale output is float)
    try:
        arr = apply_voi_lut(arr, ds, index=0, prefer_lut=True)
    except Exception as exc:
        log.warning("ignoring a malformed VOI LUT / window (%s)", type(exc).__name__)
    arr = np.asarray(arr, dtype=np.float32)
    if correct_photometric and needs_inversion(ds):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        arr = (hi + lo) - arr
    return arr


def needs_inversion(ds) -> bool:
    """True for MONOCHROME1 or Presentation LUT Shape INVERSE (one inversion, see the module doc)."""
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def _colour_to_grey(arr: np.ndarray, ds, photometric: str) -> np.ndarray:
    """RGB (pydicom already turned YBR into RGB) → luminance; palette colour via its LUT."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    arr = np.asarray(arr, dtype=np.float32)
    return arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
