"""The one embedding pipeline: reader -> mapper -> writer, driven by a runner.

Every job that embeds many images runs this module: ``cxr index build``/``add``
(index builder), ``cxr embed`` (parquet export), ``cxr evaluate`` (its collector),
validation during ``cxr train`` and ``scripts/bench_embed.py``. Its shape follows
clip-retrieval's inference (reader -> mapper -> writer), with plain functions at each
stage so that another runner can drive the same steps:

* **reader** -- :func:`read_row`: one ``{"pos", "path"}`` row -> ``{"pos", "image"
  (uint8 [S,S], through the standardized-image cache), "error"}``. Unreadable images
  are caught here, and only here, with :data:`READ_ERRORS`; their reason is the
  exception's class name (never the message: it names the file).
* **mapper** -- a callable ``batch -> batch`` on dicts of numpy columns, e.g.
  :class:`EmbedMapper` (uint8 images -> L2-normalised vectors of an
  :class:`~embed.inference.Embedder`). It is what Ray Data's ``map_batches`` takes.
* **writer** -- anything with ``write(batch)``: :class:`Collector` keeps chosen columns
  in memory; the parquet export, index builder, evaluation and validation read it.
* **runner** -- :class:`Runner` turns paths into mapped batches; :class:`LocalRunner`
  does it with the torch DataLoader of :func:`make_loader` (decoding in worker
  processes, the forward pass in this one). A distributed runner (Ray Data:
  ``from_items`` -> ``map(read_row)`` -> ``map_batches(mapper)``) plugs in beside it.

:func:`run_pipeline` joins them, counts and logs the skipped images (one warning,
here), and shows progress; :func:`embed_paths` is the common "paths -> vectors" case.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from embed.errors import CXRError
from embed.standardize import StandardizeConfig
from embed.torchdata import load_standardized_u8

if TYPE_CHECKING:
    from embed.inference import Embedder

log = logging.getLogger(__name__)

#: What an unreadable image raises: the reader's ImageReadError (a CXRError), I/O errors
#: of the file or the cache, and decoders' ValueErrors. Anything else is a bug and surfaces.
READ_ERRORS: tuple[type[Exception], ...] = (CXRError, OSError, ValueError)

Row = dict[str, int | str | np.ndarray]
"""One read image: ``pos`` (position in the input), ``image`` (uint8 [S,S]), ``error`` ("" when read)."""

Batch = dict[str, np.ndarray]
"""Columns of one batch: ``pos`` (int64 [B], positions in the input), ``image`` (uint8
[B,S,S]) and what the mapper adds (e.g. ``embedding`` float32 [B,D])."""

Mapper = Callable[[Batch], Batch]


@dataclass(frozen=True)
class Failure:
    """An input image that could not be read: its position in the input and the exception's class name."""

    pos: int
    reason: str


# ----------------------------------------------------------------------------- reader


def read_row(row: Mapping[str, str | int], std_cfg: StandardizeConfig, use_cache: bool = True) -> Row:
    """Read and standardize one image: ``{"pos", "path"}`` -> ``{"pos", "image", "error"}``.

    ``image`` is the uint8 [S,S] standardized image (zeros when unreadable) and ``error``
    is "" or the exception's class name. Never raises for an unreadable image, so a
    runner can batch rows without losing the good ones.
    """
    pos = int(row["pos"])
    try:
        image = load_standardized_u8(row["path"], std_cfg, use_cache=use_cache)
        return {"pos": pos, "image": image, "error": ""}
    except READ_ERRORS as exc:
        size = int(std_cfg.size)
        return {"pos": pos, "image": np.zeros((size, size), np.uint8), "error": type(exc).__name__}


class _ReadRows(Dataset):
    """Map-style dataset over paths whose items are :func:`read_row` outputs (decoded in the workers)."""

    def __init__(self, paths: Sequence[str | Path], std_cfg: StandardizeConfig, use_cache: bool) -> None:
        self.paths = [str(p) for p in paths]
        self.std_cfg = std_cfg
        self.use_cache = use_cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Row:
        return read_row({"pos": i, "path": self.paths[i]}, self.std_cfg, self.use_cache)


def _collate(rows: list[Row]) -> dict[str, Any]:
    """Rows -> a batch; the image block is a tensor so that workers hand it over in shared memory."""
    return {
        "pos": torch.tensor([r["pos"] for r in rows], dtype=torch.int64),
        "image": torch.from_numpy(np.stack([r["image"] for r in rows])),
        "error": [r["error"] for r in rows],
    }


def _worker_init(_: int) -> None:
    """One thread per worker: the worker processes already use every core."""
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)


def default_workers() -> int:
    """Decoding processes when the caller does not say: the cores, at most 4."""
    return max(0, min(4, os.cpu_count() or 1))


def make_loader(
    paths: Sequence[str | Path], std_cfg: StandardizeConfig, *, batch_size: int = 32, workers: int = 0,
    use_cache: bool = True,
) -> DataLoader:
    """The one DataLoader of the project: paths -> batches of :func:`read_row` rows, in input order."""
    workers = max(0, int(workers))
    return DataLoader(
        _ReadRows(paths, std_cfg, use_cache),
        batch_size=max(1, int(batch_size)),
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )


# ----------------------------------------------------------------------------- mappers


def images_to_unit(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B,S,S] -> float32 [B,1,S,S] in [0,1], the model's input (the same rounding as a query upload)."""
    x = torch.as_tensor(images)
    return x.to(torch.float32).div_(255.0)[:, None]


class EmbedMapper:
    """The mapper: a batch's uint8 images -> the embedder's L2-normalised vectors in column ``column``."""

    def __init__(self, embedder: Embedder, column: str = "embedding") -> None:
        self.embedder = embedder
        self.column = column

    def __call__(self, batch: Batch) -> Batch:
        vectors, _ = self.embedder.embed_tensor(images_to_unit(batch["image"]))
        return {**batch, self.column: vectors}


def chain(*mappers: Mapper) -> Mapper:
    """Several mappers applied in turn to the same batch (e.g. a model and its baselines)."""

    def run(batch: Batch) -> Batch:
        for m in mappers:
            batch = m(batch)
        return batch

    return run


# ----------------------------------------------------------------------------- runners


@dataclass
class MappedBatch:
    """What a runner yields: the readable rows with the mapper's columns, the failures, the rows covered."""

    columns: Batch
    failures: list[Failure]
    n_rows: int


class Runner(Protocol):
    """Drives :func:`read_row` and a mapper over input paths; yields batches in any order (``pos`` says where)."""

    def batches(self, paths: Sequence[str | Path], std_cfg: StandardizeConfig,
                mapper: Mapper | None) -> Iterator[MappedBatch]: ...


@dataclass
class LocalRunner:
    """The torch DataLoader runner: ``workers`` processes read, this process maps (the model forward)."""

    batch_size: int = 32
    workers: int = 0
    use_cache: bool = True

    def batches(self, paths: Sequence[str | Path], std_cfg: StandardizeConfig,
                mapper: Mapper | None) -> Iterator[MappedBatch]:
        loader = make_loader(paths, std_cfg, batch_size=self.batch_size, workers=self.workers,
                             use_cache=self.use_cache)
        for raw in loader:
            errors: list[str] = raw["error"]  # reasons, "" where the image was read
            pos = raw["pos"].numpy()
            failures = [Failure(int(p), e) for p, e in zip(pos.tolist(), errors) if e]
            ok = np.array([not e for e in errors], dtype=bool)
            columns: Batch = {"pos": pos[ok], "image": raw["image"][torch.from_numpy(ok)].numpy()}
            if mapper is not None and ok.any():
                columns = mapper(columns)
            yield MappedBatch(columns, failures, len(errors))


# ----------------------------------------------------------------------------- writers


class Writer(Protocol):
    """Receives every mapped batch (readable rows only)."""

    def write(self, batch: Batch) -> None: ...


@dataclass
class Collector:
    """Writer that keeps ``columns`` of every batch in memory; :meth:`result` concatenates them."""

    columns: Sequence[str] = ("pos", "embedding")
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def write(self, batch: Batch) -> None:
        if len(batch["pos"]) == 0:
            return
        for c in self.columns:
            self.parts.setdefault(c, []).append(np.asarray(batch[c]))

    def result(self) -> dict[str, np.ndarray]:
        """Column -> concatenated array; absent columns (nothing was read) are left out."""
        return {c: np.concatenate(v) for c, v in self.parts.items()}


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class PipelineReport:
    """How many inputs a run saw and which ones could not be read."""

    n_inputs: int
    failures: list[Failure]

    def reasons(self) -> dict[str, int]:
        return dict(Counter(f.reason for f in self.failures))


def run_pipeline(
    paths: Sequence[str | Path],
    std_cfg: StandardizeConfig,
    mapper: Mapper | None,
    writers: Writer | Sequence[Writer],
    *,
    runner: Runner | None = None,
    progress: bool = False,
    desc: str = "embed",
    on_batch: Callable[[int], None] | None = None,
) -> PipelineReport:
    """Read, map and write every path; unreadable images are skipped, counted and logged once."""
    runner = runner or LocalRunner()
    sinks = [writers] if not isinstance(writers, Sequence) else list(writers)
    failures: list[Failure] = []
    bar: Any = None
    if progress and paths:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc=desc, unit="img")
    try:
        for n, mb in enumerate(runner.batches(paths, std_cfg, mapper)):
            failures.extend(mb.failures)
            for w in sinks:
                w.write(mb.columns)
            if bar is not None:
                bar.update(mb.n_rows)
            if on_batch is not None:
                on_batch(n)
    finally:
        if bar is not None:
            bar.close()
    report = PipelineReport(len(paths), sorted(failures, key=lambda f: f.pos))
    if failures:
        log.warning("skipped %d unreadable images of %d (%s)", len(failures), len(paths), report.reasons())
    return report


@dataclass
class EmbedOutput:
    """Vectors of the images that could be read (input order), their positions in the input, and the failures."""

    vectors: np.ndarray
    positions: np.ndarray
    failures: list[Failure] = field(default_factory=list)


def embed_paths(
    embedder: Embedder,
    paths: Sequence[str | Path],
    *,
    runner: Runner | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    use_cache: bool = True,
    progress: bool = False,
    desc: str = "embed",
) -> EmbedOutput:
    """Embed image files with ``embedder``: the pipeline with :class:`EmbedMapper` and a :class:`Collector`.

    Without ``runner``, a :class:`LocalRunner` with ``batch_size`` and ``workers``
    (default :func:`default_workers`) is used.
    """
    if runner is None:
        runner = LocalRunner(batch_size, default_workers() if workers is None else int(workers), use_cache)
    sink = Collector(("pos", "embedding"))
    report = run_pipeline(paths, embedder.std_cfg, EmbedMapper(embedder), sink, runner=runner, progress=progress,
                          desc=desc)
    cols = sink.result()
    dim = int(embedder.embed_dim)
    pos = cols.get("pos", np.zeros(0, np.int64)).astype(np.int64)
    vec = cols.get("embedding", np.zeros((0, dim), np.float32)).astype(np.float32, copy=False)
    order = np.argsort(pos, kind="stable")  # a distributed runner may finish batches out of order
    return EmbedOutput(vec[order], pos[order], report.failures)
