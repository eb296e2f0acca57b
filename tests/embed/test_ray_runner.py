"""The Ray Data runner on a local 2-CPU Ray: the local runner's vectors, rows and skipped rows; a killed
actor is restarted and the job finishes; the pool is sized so that reads and actors both fit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'cxr-search[distributed]'")

from embed.pipeline import EmbedMapper, LocalRunner, embed_paths  # noqa: E402
from embed.ray_runner import PoolPlan, RayRunner, plan_pool  # noqa: E402
from tests.index.conftest import make_checkpoint, write_png  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray of 2 CPUs, as on the 2-core box (workers import this project and these tests)."""
    home = str(tmp_path_factory.getbasetemp() / "cxr_home")  # the tests' CXR_HOME (tests/conftest.py)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2,
             runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT), "CXR_HOME": home}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """21 generated images, one corrupt file and one missing path (both must be skipped, not fatal)."""
    root = tmp_path_factory.mktemp("ray_imgs")
    paths = [str(write_png(root / f"{i:03d}.png", seed=500 + i)) for i in range(21)]
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    paths.insert(5, str(root / "broken.png"))
    paths.insert(12, str(root / "missing.png"))
    return paths


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from embed.inference import Embedder

    return Embedder.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("m") / "t.pt"), device="cpu")


def test_pool_is_sized_from_the_cluster():
    assert plan_pool({"CPU": 2.0}) == PoolPlan(1, 1.0, 0.0, 0.5)  # one actor, one CPU left for reading
    one = plan_pool({"CPU": 1.0})
    assert one.actors == 1 and one.actor_cpus + one.read_cpus <= 1.0
    assert plan_pool({"CPU": 16.0}) == PoolPlan(8, 1.0, 0.0, 0.5)
    assert plan_pool({"CPU": 16.0}, max_actors=3).actors == 3
    gpu = plan_pool({"CPU": 16.0, "GPU": 4.0})
    assert (gpu.actors, gpu.actor_gpus, gpu.actor_cpus) == (4, 1.0, 1.0) and 0 < gpu.read_cpus <= 0.5


def test_ray_gives_the_local_vectors_rows_and_skips(local_ray, inputs, embedder):
    local = embed_paths(embedder, inputs, runner=LocalRunner(batch_size=4, workers=0))
    on_ray = embed_paths(embedder, inputs, runner=RayRunner(batch_size=4, progress=False))
    assert on_ray.positions.tolist() == local.positions.tolist() and len(local.positions) == 21
    assert [(f.pos, f.reason) for f in on_ray.failures] == [(f.pos, f.reason) for f in local.failures]
    assert [f.pos for f in local.failures] == [5, 12]
    assert float(np.abs(on_ray.vectors - local.vectors).max()) <= 1e-5


class DieOnce(EmbedMapper):
    """A mapper whose process dies at its first batch, once per marker file (as a crashed worker would)."""

    def __init__(self, embedder, marker: str) -> None:
        super().__init__(embedder)
        self.marker = marker

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)  # the actor's process is gone, mid-job
        return super().__call__(batch)


def test_a_killed_actor_is_restarted_and_the_job_finishes(local_ray, inputs, embedder, tmp_path):
    from embed.pipeline import Collector, run_pipeline

    marker = tmp_path / "died"
    sink = Collector(("pos", "embedding"))
    report = run_pipeline(inputs, embedder.std_cfg, DieOnce(embedder, str(marker)), sink,
                          runner=RayRunner(batch_size=4, progress=False))
    assert marker.is_file()  # an actor did die
    cols = sink.result()
    assert sorted(cols["pos"].tolist()) == [i for i in range(23) if i not in (5, 12)]
    assert [f.pos for f in report.failures] == [5, 12]
    want = embed_paths(embedder, inputs, runner=LocalRunner(batch_size=4, workers=0))
    order = np.argsort(cols["pos"])
    assert float(np.abs(cols["embedding"][order] - want.vectors).max()) <= 1e-5


def test_cli_runner_ray_writes_what_local_writes(local_ray, inputs, tmp_path, capsys):
    """`cxr index build --runner ray` (joining the running Ray) writes the local runner's index."""
    import shutil

    from cli.main import main
    from index.vectors import VectorTable

    root = tmp_path / "imgs" / "Normal"
    root.mkdir(parents=True)
    for p in inputs[:8]:
        if Path(p).is_file():
            shutil.copy(p, root / Path(p).name)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    spec = f"imagefolder:{tmp_path / 'imgs'}"
    common = ["--model", str(ckpt), "--batch-size", "4", "--no-progress"]
    for runner in ("local", "ray"):
        assert main(["index", "build", spec, *common, "--workers", "0", "--runner", runner,
                     "--out", str(tmp_path / f"idx_{runner}")]) == 0
    out = capsys.readouterr().out
    assert out.count("1 unreadable") == 2  # broken.png, reported by both runners
    from index.pointer import live_generation

    v_l, v_r = (VectorTable(live_generation(tmp_path / f"idx_{r}")[0]) for r in ("local", "ray"))
    assert v_l.ids.tolist() == v_r.ids.tolist() and float(np.abs(v_l.vectors - v_r.vectors).max()) <= 1e-5
    # `cxr embed` takes the same flags (one job is enough here: each Ray job costs tens of seconds on 2 cores).
    assert main(["embed", spec, *common, "--ray-address", "auto", "--out", str(tmp_path / "x.parquet")]) == 2
