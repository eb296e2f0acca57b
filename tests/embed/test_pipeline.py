"""The one embedding pipeline: one reader, one skip report, pluggable runners and writers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from embed.datasets.base import CaseRecord
from embed.inference import Embedder
from embed.pipeline import (
    Collector, EmbedMapper, Failure, LocalRunner, MappedBatch, Mapper, embed_paths, read_row, run_pipeline,
)
from embed.standardize import StandardizeConfig
from tests.embed._synthetic import write_imagefolder
from tests.embed.eval_fixtures import make_tiny_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[list[str], Embedder]:
    tmp = tmp_path_factory.mktemp("pipeline")
    good = sorted(str(p) for p in write_imagefolder(tmp / "d", per_class=3).rglob("*.png"))
    truncated = tmp / "truncated.png"
    truncated.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    junk = tmp / "junk.png"
    junk.write_bytes(b"hello")
    missing = tmp / "missing.png"
    paths = good[:2] + [str(truncated)] + good[2:4] + [str(junk), str(missing)] + good[4:]
    embedder = Embedder.from_checkpoint(make_tiny_checkpoint(tmp / "tiny.pt"), device="cpu")
    return paths, embedder


class ReversedRunner:
    """A runner that is not a DataLoader: plain calls of the reader and the mapper, last batch first
    (the shape of a distributed runner: ``map(read_row)`` then ``map_batches(mapper)``, any order)."""

    def __init__(self, batch_size: int = 3) -> None:
        self.batch_size = batch_size

    def batches(self, paths: Sequence[str | Path], std_cfg: StandardizeConfig,
                mapper: Mapper | None) -> Iterator[MappedBatch]:
        rows = [read_row({"pos": i, "path": str(p)}, std_cfg) for i, p in enumerate(paths)]
        chunks = [rows[s:s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
        for chunk in reversed(chunks):
            ok = [r for r in chunk if not r["error"]]
            cols = {"pos": np.array([r["pos"] for r in ok], np.int64),
                    "image": np.stack([r["image"] for r in ok]) if ok else np.zeros((0, 1, 1), np.uint8)}
            if mapper is not None and ok:
                cols = mapper(cols)
            yield MappedBatch(cols, [Failure(int(r["pos"]), str(r["error"])) for r in chunk if r["error"]], len(chunk))


def test_reader_reports_by_exception_class_and_never_raises(files):
    paths, embedder = files
    rows = [read_row({"pos": i, "path": p}, embedder.std_cfg) for i, p in enumerate(paths)]
    bad = {r["pos"]: r["error"] for r in rows if r["error"]}
    assert sorted(bad) == [2, 5, 6]
    assert all(reason.isidentifier() for reason in bad.values())  # class names: no file names leak
    assert all(r["image"].shape == (64, 64) and r["image"].dtype == np.uint8 for r in rows)


def test_local_runner_workers_batches_and_a_foreign_runner_agree(files, caplog):
    paths, embedder = files
    a = embed_paths(embedder, paths, batch_size=4, workers=0)
    b = embed_paths(embedder, paths, batch_size=3, workers=2)
    c = embed_paths(embedder, paths, runner=ReversedRunner())
    assert a.positions.tolist() == b.positions.tolist() == c.positions.tolist() == [0, 1, 3, 4] + list(range(7, 12))
    assert [f.pos for f in a.failures] == [f.pos for f in c.failures] == [2, 5, 6]
    assert [f.reason for f in a.failures] == [f.reason for f in b.failures] == [f.reason for f in c.failures]
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    np.testing.assert_allclose(a.vectors, c.vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)  # the mapper L2-normalises
    assert "skipped 3 unreadable images of 12" in caplog.text


def test_vectors_equal_a_query_upload_of_the_same_file(files):
    paths, embedder = files
    out = embed_paths(embedder, paths[:2], workers=0)
    q = embedder.embed_image(paths[1])
    np.testing.assert_allclose(out.vectors[1], q.embedding, atol=1e-5)


def test_every_writer_sees_the_same_skips(files):
    """Training data, evaluation and export report the same unreadable images with the same reasons."""
    from embed.evaluate.runner import embed_all
    from embed.train.dataset import CaseImageDataset

    paths, embedder = files
    records = [CaseRecord(case_id=f"t/{i}", image_path=p, source="t") for i, p in enumerate(paths)]
    export = embed_paths(embedder, paths, workers=0)
    want = [(records[f.pos].case_id, f.reason) for f in export.failures]
    train = CaseImageDataset(records, embedder.std_cfg, in_memory=True)
    kept, feats, skipped = embed_all(embedder, records, methods=("model", "pixels"), progress=False)
    assert train.skipped == skipped == want
    assert train.kept == kept == export.positions.tolist()
    np.testing.assert_allclose(feats["model"], export.vectors, atol=1e-6)
    assert feats["pixels"].shape == (len(kept), 64 * 64)


def test_writers_are_pluggable_and_reader_only_runs_keep_images(files):
    paths, embedder = files
    seen: list[int] = []

    class Counting:
        def write(self, batch) -> None:
            seen.extend(batch["pos"].tolist())

    images = Collector(("pos", "image"))
    rep = run_pipeline(paths, embedder.std_cfg, None, [images, Counting()], runner=LocalRunner(batch_size=4))
    cols = images.result()
    assert seen == cols["pos"].tolist() and cols["image"].shape == (9, 64, 64)
    assert rep.reasons() and sum(rep.reasons().values()) == 3
    mapped = Collector(("pos", "embedding"))
    run_pipeline(paths[:2], embedder.std_cfg, EmbedMapper(embedder), mapped)
    assert mapped.result()["embedding"].shape == (2, embedder.embed_dim)
