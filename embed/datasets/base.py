"""Dataset records, the reader registry and the ``KIND:PATH`` entry points.

Every public chest X-ray collection has its own label file and folder layout.
A *reader* turns one of them into a list of :class:`CaseRecord` (one per
image, de-identified, with a uniform vocabulary) plus a list of
:class:`SkippedRow` (rows we could not use, with the reason), so training,
indexing and evaluation never look at a source's raw format. Readers are
registered by kind with :func:`register_dataset`, as timm registers models.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embed.cases import PROGNOSIS_FIELDS, CaseFields  # noqa: F401  (PROGNOSIS_FIELDS re-exported for readers)
from embed.errors import DatasetError, DatasetLayoutError, UnknownDatasetKindError

log = logging.getLogger(__name__)

class CaseRecord(CaseFields):
    """One image with its de-identified, normalised labels and metadata (the shared fields of
    :class:`embed.cases.CaseFields`, plus where the image is and a stable id)."""

    case_id: str  # stable: "<source>/<path relative to dataset root>"
    image_path: str  # absolute path

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (no NaN, lists and dicts copied) for JSON and parquet."""
        d = {"case_id": self.case_id, "image_path": self.image_path, **self.case_fields()}
        d["extra"] = json_safe(d["extra"])
        for key in ("day_offset", "age"):
            d[key] = json_safe(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseRecord:
        """Inverse of :meth:`to_dict`; tolerant of parquet's numpy arrays and missing keys."""
        kw = {k: v for k, v in d.items() if k in cls.model_fields}
        findings = kw.get("findings")
        kw["findings"] = [str(x) for x in findings] if findings is not None else []
        kw["prognosis"] = dict(kw.get("prognosis") or {})
        kw["extra"] = dict(kw.get("extra") or {})
        for key in ("day_offset", "age"):
            v = kw.get(key)
            kw[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return cls(**kw)


@dataclass
class SkippedRow:
    """A row or file a reader could not use. ``reason`` is a short category (counted); ``detail`` says more."""

    ref: str
    reason: str
    detail: str = ""


@dataclass
class DatasetLoad:
    """What a reader returns: usable records plus the skipped rows."""

    records: list[CaseRecord]
    skipped: list[SkippedRow]
    kind: str
    root: Path | None

    def skipped_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        return counts


Reader = Callable[..., DatasetLoad]
DATASET_KINDS: dict[str, Reader] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_dataset(kind: str, description: str = "") -> Callable[[Reader], Reader]:
    """Decorator: register ``fn(root: Path, *, opt=...) -> DatasetLoad`` under ``kind``."""

    def deco(fn: Reader) -> Reader:
        if kind in DATASET_KINDS and DATASET_KINDS[kind] is not fn:
            raise ValueError(f"dataset kind {kind!r} registered twice")
        DATASET_KINDS[kind] = fn
        _DESCRIPTIONS[kind] = description or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return deco


def describe_kinds() -> dict[str, str]:
    """kind -> one-line description, for help texts and error messages."""
    _ensure_readers()
    return dict(sorted(_DESCRIPTIONS.items()))


def reader_options(kind: str) -> list[str]:
    """The keyword options a reader accepts."""
    fn = get_reader(kind)
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _ensure_readers() -> None:
    import embed.datasets  # noqa: F401  (importing the package registers every reader)


def get_reader(kind: str) -> Reader:
    _ensure_readers()
    if kind not in DATASET_KINDS:
        known = ", ".join(sorted(DATASET_KINDS))
        raise UnknownDatasetKindError(
            f"unknown dataset kind {kind!r}: known kinds are {known}. "
            "Name a dataset as KIND:PATH, e.g. kermany:/data/chest_xray"
        )
    return DATASET_KINDS[kind]


def split_spec(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``KIND:PATH[?opt=value&opt=value]`` -> (kind, path, options as strings)."""
    if ":" not in spec:
        raise DatasetError(
            f"dataset {spec!r} has no kind: write KIND:PATH, e.g. covid-chestxray:/data/covid-chestxray-dataset "
            f"(kinds: {', '.join(describe_kinds())})"
        )
    kind, rest = spec.split(":", 1)
    kind = kind.strip().lower()
    opts: dict[str, str] = {}
    if "?" in rest:
        rest, query = rest.rsplit("?", 1)
        for part in query.split("&"):
            if not part:
                continue
            if "=" not in part:
                raise DatasetError(f"option {part!r} in {spec!r} needs a value: write ?name=value")
            k, v = part.split("=", 1)
            opts[k.strip()] = v
    if not rest:
        raise DatasetError(f"dataset {spec!r} has no path: write KIND:PATH")
    return kind, Path(rest).expanduser(), opts


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"KIND:PATH"`` -> (kind, path). Options after ``?`` are ignored here (see :func:`split_spec`)."""
    kind, path, _ = split_spec(spec)
    return kind, path


def load_dataset(spec: str, **opts: Any) -> DatasetLoad:
    """Read one dataset named ``KIND:PATH``.

    Keyword options are offered to the reader; it takes those it knows
    (``include_ct``, ``uncertain``, ``patient_pattern``, ``verify`` ...) so one
    set of options can be passed to :func:`load_datasets`. Options written in
    the spec (``?name=value``) must be known to that reader.
    """
    url_kind = spec.split(":", 1)[0].strip().lower() if ":" in spec else ""
    if url_kind and getattr(get_reader(url_kind), "takes_url", False):
        return _load_url_dataset(url_kind, spec.split(":", 1)[1], opts)
    kind, path, spec_opts = split_spec(spec)
    fn = get_reader(kind)
    accepted = reader_options(kind)
    unknown = sorted(set(spec_opts) - set(accepted))
    if unknown:
        raise DatasetError(
            f"reader {kind!r} has no option {', '.join(unknown)}: it accepts {', '.join(accepted) or 'none'}"
        )
    kw = {k: v for k, v in opts.items() if k in accepted and v is not None}
    kw.update(spec_opts)
    path = path.resolve()
    if not path.exists():
        raise DatasetLayoutError(f"{kind}: {path} does not exist; check the path after '{kind}:'")
    try:
        load = fn(path, **kw)
    except DatasetLayoutError as exc:
        from embed.datasets.detect import guess_kind

        guess = guess_kind(path)
        if guess and guess != kind:
            raise DatasetLayoutError(f"{exc} (This path looks like {guess}:{path})") from exc
        raise
    log.info("%s: %d records, %d skipped from %s", kind, len(load.records), len(load.skipped), path)
    return load


def _load_url_dataset(kind: str, rest: str, opts: dict[str, Any]) -> DatasetLoad:
    """A reader addressed by URL (``dicomweb:https://pacs/dicom-web?modality=DX``): no path checks."""
    fn = get_reader(kind)
    accepted = reader_options(kind)
    kw = {k: v for k, v in opts.items() if k in accepted and v is not None}
    if "?" in rest:
        rest, query = rest.rsplit("?", 1)
        for part in filter(None, query.split("&")):
            k, sep, v = part.partition("=")
            if not sep or k.strip() not in accepted:
                raise DatasetError(f"reader {kind!r} has no option {part!r}: it accepts {', '.join(accepted)}")
            kw[k.strip()] = v
    if not rest.strip():
        raise DatasetError(f"{kind}: name the address, e.g. {kind}:https://pacs.example.org/dicom-web")
    load = fn(rest.strip(), **kw)
    log.info("%s: %d records, %d skipped", kind, len(load.records), len(load.skipped))
    return load


def load_datasets(specs: list[str], **opts: Any) -> DatasetLoad:
    """Read several datasets and concatenate them; a repeated ``case_id`` is skipped and reported."""
    if not specs:
        raise DatasetError("no dataset given: name at least one as KIND:PATH")
    records: list[CaseRecord] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    kinds: list[str] = []
    roots: list[Path | None] = []
    for spec in specs:
        load = load_dataset(spec, **opts)
        kinds.append(load.kind)
        roots.append(load.root)
        skipped.extend(load.skipped)
        for rec in load.records:
            if rec.case_id in seen:
                skipped.append(SkippedRow(rec.case_id, "duplicate case (same dataset given twice?)"))
                continue
            seen.add(rec.case_id)
            records.append(rec)
    root = roots[0] if len(roots) == 1 else None
    return DatasetLoad(records=records, skipped=skipped, kind="+".join(kinds), root=root)


def json_safe(value: Any) -> Any:
    """Recursively make a value JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, Path):
        return str(value)
    return str(value)
