"""The pipeline on Ray Data: read + standardize as Ray tasks, the mapper in a pool of stateful actors.

:class:`RayRunner` is a :class:`embed.pipeline.Runner`: the same :func:`embed.pipeline.read_row`
and the same mapper (e.g. :class:`embed.pipeline.EmbedMapper`) as the local runner, driven by
``ray.data.from_items -> map(read_row) -> map_batches(actor class)``. Each actor receives the
mapper once (one model per actor), moves its encoder to the actor's GPU when it has one
(``num_gpus=1`` per actor where the cluster has GPUs), and maps batches. Unreadable images come
back as rows with the reader's error, so they are reported exactly as the local runner reports
them. Ray Data restarts a dead actor and retries its batch (``max_restarts=-1`` and
``max_task_retries=-1`` are its defaults for actor pools), so a job survives a lost worker.

Without an address (``--ray-address`` or ``RAY_ADDRESS``) a local Ray is started, sized to this
machine, and shut down afterwards. The pool and the CPU requests are sized from
``ray.cluster_resources()``: on a 2-core box two 1-CPU actors plus a read task ask for more than
exists and the job waits forever ("backpressured"), so reads always keep CPUs of their own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embed.errors import CXRError, require
from embed.pipeline import Failure, MappedBatch, Mapper, read_row
from embed.standardize import StandardizeConfig

log = logging.getLogger(__name__)

INSTALL = "pip install 'cxr-search[distributed]'"


@dataclass(frozen=True)
class PoolPlan:
    """How many mapper actors, and what each actor and each read task asks for."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    read_cpus: float


def plan_pool(resources: dict[str, float], max_actors: int | None = None) -> PoolPlan:
    """Size the actor pool from ``ray.cluster_resources()`` so that reads and actors always both fit.

    With GPUs: one actor per GPU (1 CPU each, for feeding it), the other CPUs read. Without: half
    the CPUs (at least one actor) run actors of 1 CPU, the other half reads; below 2 CPUs, an actor
    and read tasks share the one CPU (fractional requests), never asking for more than exists.
    Read tasks never ask for what an actor asks: equal requests let Ray fuse the reads into the
    actors, which then read and embed in turn while the CPUs meant for reading sit idle.
    """
    cpus = float(resources.get("CPU", 0.0))
    gpus = int(resources.get("GPU", 0.0))
    if cpus <= 0:
        raise CXRError("the Ray cluster reports no CPUs: start its nodes with CPUs (ray start --num-cpus N)")
    if gpus > 0:
        actors = gpus if max_actors is None else max(1, min(gpus, max_actors))
        actor_cpus = 1.0 if cpus >= actors + 1 else max(0.1, cpus / (2 * actors))
        return PoolPlan(actors, actor_cpus, 1.0, min(0.5, max(0.1, (cpus - actors * actor_cpus) / 2)))
    if cpus < 2:
        return PoolPlan(1, cpus / 2, 0.0, cpus / 4)
    actors = max(1, int(cpus // 2))
    if max_actors is not None:
        actors = max(1, min(actors, max_actors))
    # Half a CPU per read task: two reads share each CPU left to reading (decoding waits on I/O too),
    # and a request unlike the actors' keeps Ray from fusing the reads into the actors.
    return PoolPlan(actors, 1.0, 0.0, 0.5)


class _MapActor:
    """A Ray actor holding one mapper (one model load per actor); failed reads pass through unmapped."""

    def __init__(self, mapper: Mapper | None, threads: int, keep_images: bool) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.mapper = mapper
        self.keep_images = keep_images
        embedder = getattr(mapper, "embedder", None)
        if embedder is not None and torch.cuda.is_available():  # this actor was given a GPU
            embedder.device = torch.device("cuda")
            embedder.model = embedder.model.to(embedder.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = np.asarray(batch["error"]).astype(str)
        ok = errors == ""
        out: dict[str, np.ndarray] = {"pos": np.asarray(batch["pos"], np.int64), "error": errors}
        if self.mapper is None or not ok.any():
            if self.keep_images:
                out["image"] = np.asarray(batch["image"])
            return out
        mapped = self.mapper({"pos": out["pos"][ok], "image": np.asarray(batch["image"])[ok]})
        for name, col in mapped.items():
            if name in ("pos", "error") or (name == "image" and not self.keep_images):
                continue
            col = np.asarray(col)
            full = np.zeros((len(ok), *col.shape[1:]), col.dtype)  # rows of unreadable images stay zero
            full[ok] = col
            out[name] = full
        return out


@dataclass
class RayRunner:
    """Runs the pipeline on Ray Data (a local Ray, or the cluster at ``address``/``RAY_ADDRESS``)."""

    batch_size: int = 32
    address: str | None = None
    use_cache: bool = True
    max_actors: int | None = None
    num_cpus: int | None = None  # for a local Ray: CPUs it may use (default: all of this machine)
    progress: bool = True
    keep_images: bool = False  # return the standardized images too (only the mapper's columns otherwise)

    def _init(self) -> bool:
        """Join or start Ray; True when this runner started it (and so shuts it down)."""
        ray = require("ray", INSTALL)
        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING,
                         object_store_memory=512 * 1024**2)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise CXRError(f"could not start or join {where}: {exc}") from exc
        return True

    def batches(self, paths: Sequence[str | Path], std_cfg: StandardizeConfig,
                mapper: Mapper | None) -> Iterator[MappedBatch]:
        if not paths:
            return
        ray = require("ray", INSTALL)
        started = self._init()
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = bool(self.progress)
            plan = plan_pool(ray.cluster_resources(), self.max_actors)
            log.info("Ray runner: %d actor(s) x (%.2g CPU, %g GPU), read tasks %.2g CPU, on %s", plan.actors,
                     plan.actor_cpus, plan.actor_gpus, plan.read_cpus, ray.cluster_resources())
            items = [{"pos": i, "path": str(p)} for i, p in enumerate(paths)]
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // self.batch_size + 1, 200)))
            ds = ds.map(read_row, fn_kwargs={"std_cfg": std_cfg, "use_cache": self.use_cache},
                        num_cpus=plan.read_cpus)
            remote: dict[str, Any] = {"num_cpus": plan.actor_cpus}
            if plan.actor_gpus:
                remote["num_gpus"] = plan.actor_gpus
            ds = ds.map_batches(
                _MapActor, fn_constructor_kwargs={"mapper": mapper, "threads": max(1, int(plan.actor_cpus)),
                                                  "keep_images": self.keep_images or mapper is None},
                batch_size=self.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=plan.actors), **remote,
            )
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                errors = np.asarray(batch.pop("error")).astype(str)
                pos = np.asarray(batch["pos"], np.int64)
                ok = errors == ""
                failures = [Failure(int(p), e) for p, e in zip(pos[~ok].tolist(), errors[~ok].tolist())]
                columns = {name: np.asarray(col)[ok] for name, col in batch.items()}
                yield MappedBatch(columns, failures, len(pos))
        finally:
            if started:
                ray.shutdown()
