"""``cxr embed`` end to end on a generated dataset with an untrained tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from cli.main import main
from embed.errors import CXRError
from embed.export import read_features
from embed.inference import Embedder
from tests.embed.eval_fixtures import make_kermany, make_tiny_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    data = make_kermany(tmp / "chest_xray")
    ckpt = make_tiny_checkpoint(tmp / "tiny.pt")
    return tmp, data, ckpt


def test_cxr_embed_writes_rows_equal_to_embedder(setup, capsys):
    tmp, data, ckpt = setup
    out = tmp / "features.parquet"
    rc = main(["embed", "--model", str(ckpt), f"kermany:{data}", "--out", str(out), "--batch-size", "5",
               "--no-progress"])
    assert rc == 0
    assert "skipped 1 unreadable" in capsys.readouterr().out
    df, emb = read_features(out)
    assert len(df) == 24 and emb.shape == (24, 32) and emb.dtype == np.float32
    assert not any(p.endswith("IM-0999-0001.jpeg") for p in df["image_path"])  # the broken one
    assert set(df["source"]) == {"kermany"}
    assert all(p.startswith("p_") for p in df["patient"])  # pseudonyms only
    assert df["findings"].map(list).map(len).min() >= 1
    for col in ("survival", "intubated", "went_icu", "view", "sex", "age", "day_offset"):
        assert col in df.columns
    assert df["survival"].isna().all()  # Kermany has no prognosis: nullable, not False

    # the stored embeddings are what Embedder gives for the same standardized images
    from embed.torchdata import load_standardized_u8

    embedder = Embedder.from_checkpoint(ckpt, device="cpu")
    arrays = np.stack([load_standardized_u8(p, embedder.std_cfg) for p in df["image_path"]]).astype(np.float32) / 255
    want, _ = embedder.embed_batch(arrays)
    np.testing.assert_allclose(emb, want, atol=1e-5)
    # ... and what a query upload of the same file gives (float vs uint8 standardization)
    q = embedder.embed_image(df["image_path"].iloc[0])
    assert float(q.embedding @ emb[0]) > 0.999

    meta = df.attrs["cxr"]
    assert meta["model_sha256"] == embedder.model_sha256
    assert int(meta["embed_dim"]) == 32
    assert json.loads(meta["std_cfg"])["size"] == 64
    assert int(meta["n_skipped_images"]) == 1
    schema = pq.read_schema(out)
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[32]"
    assert str(schema.field("survival").type) == "bool"


def test_cxr_embed_is_atomic_and_rejects_bad_out(setup):
    tmp, data, ckpt = setup
    with pytest.raises(CXRError, match="parquet"):
        from embed.export import export_features

        export_features([f"kermany:{data}"], ckpt, tmp / "features.csv", progress=False)
    assert main(["embed", "--model", str(tmp / "missing.pt"), f"kermany:{data}", "--out", str(tmp / "x.parquet"),
                 "--no-progress"]) == 2
    assert not list(tmp.glob(".*.tmp*")) and not (tmp / "x.parquet").exists()


def test_workers_give_the_same_rows(setup):
    from embed.datasets import load_datasets
    from embed.pipeline import embed_paths

    tmp, data, ckpt = setup
    embedder = Embedder.from_checkpoint(ckpt, device="cpu")
    paths = [r.image_path for r in load_datasets([f"kermany:{data}"]).records]
    a = embed_paths(embedder, paths, batch_size=4, workers=0)
    b = embed_paths(embedder, paths, batch_size=7, workers=2)
    assert a.positions.tolist() == b.positions.tolist() and len(a.failures) == len(b.failures) == 1
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def test_read_features_rejects_other_parquet(tmp_path):
    import pandas as pd

    p = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(p)
    with pytest.raises(CXRError, match="cxr embed"):
        read_features(p)
