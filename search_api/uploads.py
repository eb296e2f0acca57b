"""Read an uploaded image into memory, capped, never touching the disk.

Starlette's own form parser spools file parts over 1 MB to a temporary file
(``SpooledTemporaryFile(max_size=1 MB)``), which would write query images to
disk. So the upload endpoints read ``request.stream()`` themselves and feed it
to python-multipart's push parser, keeping the file part in a ``bytearray``
and stopping with 413 as soon as the cap is passed (whatever Content-Length
claims). A raw image body (``Content-Type: image/png`` ...) is accepted too.
The type is decided by magic bytes (415), never by name or Content-Type.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from embed.errors import ImageTooLargeError, NotAnImageError
from embed.image import sniff_format

log = logging.getLogger("cxr.api")

FIELDS_BYTES = 64 * 1024  # room for the boundary, headers and the small text fields
MAX_FIELDS = 64
RAW_TYPES = {"image/png", "image/jpeg", "image/jpg", "application/dicom", "application/octet-stream"}


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload larger than the limit of {limit} bytes")


@dataclass
class Upload:
    """The image bytes (or None) and the text fields, each a list of values."""

    data: bytes | None = field(default=None, repr=False)  # never in a log line or a traceback
    fields: dict[str, list[str]] = field(default_factory=dict)


class _Collector:
    """python-multipart callbacks that keep everything in memory under caps."""

    def __init__(self, max_file: int) -> None:
        self.max_file = max_file
        self.upload = Upload()
        self._hname = b""
        self._hval = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._buf = bytearray()
        self._n_fields = 0

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._is_file, self._buf = b"", "", False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hval += data[start:end]

    def on_header_end(self) -> None:
        if self._hname.lower() == b"content-disposition":
            self._disposition = self._hval
        self._hname, self._hval = b"", b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._disposition)
        if b"name" not in opts:
            raise HTTPException(400, 'multipart part without Content-Disposition "name"')
        self._name = opts[b"name"].decode("utf-8", "replace")
        self._is_file = b"filename" in opts or self._name == "file"
        self._n_fields += 1
        if self._n_fields > MAX_FIELDS:
            raise HTTPException(400, f"too many multipart parts (at most {MAX_FIELDS})")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        limit = self.max_file if self._is_file else FIELDS_BYTES
        if len(self._buf) + (end - start) > limit:
            if self._is_file:
                raise UploadTooLarge(self.max_file)
            raise HTTPException(400, f"form field {self._name!r} is too long")
        self._buf += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            if self.upload.data is not None:
                raise HTTPException(400, "send exactly one image part ('file')")
            self.upload.data = bytes(self._buf)
        else:
            self.upload.fields.setdefault(self._name, []).append(self._buf.decode("utf-8", "replace"))
        self._buf = bytearray()


async def _chunks(request: Request, idle_timeout: float | None) -> AsyncIterator[bytes]:
    """The body's chunks; 408 (and the connection closed) when the client sends nothing for ``idle_timeout`` s.

    uvicorn has no body read timeout: a client that stops mid-upload would hold a socket and
    a parser forever.
    """
    it = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(it.__anext__(), idle_timeout)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise HTTPException(408, f"the upload stalled: nothing received for {idle_timeout:g} s",
                                headers={"Connection": "close"}) from None
        yield chunk


async def read_upload(request: Request, max_bytes: int, *, idle_timeout: float | None = None) -> Upload:
    """Parse the request body (multipart with a ``file`` part, or a raw image) within ``max_bytes``.

    ``idle_timeout``: seconds the client may send nothing before the upload is refused (408).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + FIELDS_BYTES:
        raise UploadTooLarge(max_bytes)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    ctype_s = ctype.decode("latin-1").lower()
    if ctype_s == "multipart/form-data":
        if b"boundary" not in params:
            raise HTTPException(400, "multipart body without boundary")
        collector = _Collector(max_bytes)
        parser = MultipartParser(params[b"boundary"], {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        })
        total = 0
        try:
            async for chunk in _chunks(request, idle_timeout):
                total += len(chunk)
                if total > max_bytes + FIELDS_BYTES:
                    raise UploadTooLarge(max_bytes)
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise HTTPException(400, "malformed multipart body") from exc
        return collector.upload
    if ctype_s == "application/x-www-form-urlencoded":  # fields without an image: answered with 422 later
        body = bytearray()
        async for chunk in _chunks(request, idle_timeout):
            body += chunk
            if len(body) > FIELDS_BYTES:
                raise HTTPException(400, "form body too long")
        fields: dict[str, list[str]] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(name, []).append(value)
        return Upload(data=None, fields=fields)
    if ctype_s in RAW_TYPES or ctype_s == "":
        buf = bytearray()
        async for chunk in _chunks(request, idle_timeout):
            if len(buf) + len(chunk) > max_bytes:
                raise UploadTooLarge(max_bytes)
            buf += chunk
        return Upload(data=bytes(buf) if buf else None)
    raise HTTPException(415, "send multipart/form-data with a 'file' part, or the raw image bytes")


def require_image(upload: Upload, max_pixels: int) -> bytes:
    """The uploaded bytes if they are a PNG/JPEG/DICOM within ``max_pixels``; else the matching error."""
    if upload.data is None:
        raise HTTPException(422, "no image: send the image in a multipart part named 'file'")
    if not upload.data:
        raise HTTPException(422, "the uploaded file is empty: send a PNG, JPEG or DICOM image")
    kind = sniff_format(upload.data[:132])
    if kind is None:
        raise NotAnImageError(
            "the uploaded file is not a PNG, JPEG or DICOM image (checked by content, not by name)"
        )
    check_declared_pixels(upload.data, kind, max_pixels)
    return upload.data


def check_declared_pixels(data: bytes, kind: str, max_pixels: int) -> None:
    """Refuse (413) a header that declares more pixels than allowed, before any decoding.

    Anything that cannot be parsed here is left to the reader, which reports it precisely.
    """
    rows = cols = 0
    try:
        if kind in ("png", "jpeg"):
            from PIL import Image

            try:
                with Image.open(io.BytesIO(data)) as im:  # lazy: header only
                    cols, rows = im.size
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(f"the uploaded image declares too many pixels ({exc})") from exc
        else:
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True,
                                 specific_tags=["Rows", "Columns", "NumberOfFrames"])
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            rows *= max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except ImageTooLargeError:
        raise
    except Exception:  # noqa: BLE001 - the reader gives the real diagnosis
        log.debug("header pre-check could not parse the upload", exc_info=True)
        return
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            f"the uploaded image declares {cols}x{rows} pixels, more than the limit of {max_pixels}"
        )
