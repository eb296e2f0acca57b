"""Dynamic batching of the model call: concurrent requests share one forward pass.

Each upload request decodes and standardizes its image in the engine's worker pool
(:meth:`SearchEngine.prepare`), then awaits :meth:`ModelBatcher.embed`. One consumer
task on the event loop takes the first waiting image, keeps collecting for at most
``window`` seconds or until ``max_batch`` images wait, and runs
:meth:`SearchEngine.embed_prepared` on them in a dedicated model thread, so the
event loop never blocks. While that forward pass runs, new requests queue up and form
the next batch: under load the batches fill by themselves, and a lone request waits
at most the window.

Why not Ray Serve's ``@serve.batch`` or Triton: both are whole serving stacks (a
Ray cluster, a model repository) in front of a FastAPI app that already owns its
process, settings and privacy rules; the part needed here is a queue, a timer and a
thread hop. Bad images never reach the batch (they fail in ``prepare``); if a
forward pass itself fails, its images are retried one by one so only the culprit
fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from fastapi import Request

from index.engine import SearchEngine
from index.prepared import PreparedQuery

log = logging.getLogger("cxr.api.batching")
T = TypeVar("T")


@dataclass
class BatchStats:
    """What the batcher did since it started (for /v1/stats and benchmarks)."""

    batches: int = 0
    images: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def record(self, n: int) -> None:
        self.batches += 1
        self.images += n
        self.largest = max(self.largest, n)
        self.sizes[n] = self.sizes.get(n, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "images": self.images, "largest": self.largest,
                "mean": round(self.images / self.batches, 2) if self.batches else None,
                "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class ModelBatcher(Generic[T]):
    """Collects items from concurrent coroutines and runs ``embed_batch(items)`` once per batch.

    ``embed_batch`` mutates the items in place (fills their embedding) and runs in a single
    model thread; it is blocking, CPU-bound code. Start with :meth:`start` inside a running
    loop (the app's lifespan) and stop with :meth:`aclose`.
    """

    def __init__(self, embed_batch: Callable[[list[T]], None], *, window_s: float, max_batch: int,
                 thread_init: Callable[[], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if window_s < 0:
            raise ValueError("the batching window cannot be negative")
        self._embed_batch = embed_batch
        self.window_s = float(window_s)
        self.max_batch = int(max_batch)
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[None]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._thread_init = thread_init

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-model",
                                            initializer=self._thread_init)
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="cxr-model-batcher")

    async def aclose(self) -> None:
        """Stop collecting; requests still waiting get an error rather than hanging."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def warm_up(self, make_items: Callable[[int], list[T]]) -> None:
        """One forward pass at every batch size up to ``max_batch``, before the first request.

        The CPU backend (oneDNN) builds and caches kernels and buffers per input shape: doing it
        here keeps that cost out of the first requests and makes memory flat from the start.
        """
        loop = asyncio.get_running_loop()
        for n in range(1, self.max_batch + 1):
            await loop.run_in_executor(self._executor, self._embed_batch, make_items(n))
        self.stats = BatchStats()  # count requests only

    async def embed(self, item: T) -> None:
        """Wait until ``item`` has been through a forward pass (raises that pass's error for it)."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the model batcher is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        await fut

    async def _collect(self) -> list[tuple[T, asyncio.Future[None]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:  # whatever queued while the previous batch ran joins without waiting
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.done()]  # a client gone: skip its image
            if not live:
                continue
            items = [item for item, _ in live]
            try:
                await loop.run_in_executor(self._executor, self._embed_batch, items)
            except asyncio.CancelledError:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(RuntimeError("the server is shutting down"))
                raise
            except Exception:  # noqa: BLE001 - find the culprit: each image alone, each its own outcome
                if len(live) > 1:
                    log.warning("a batch of %d failed; running its images one by one", len(live))
                for item, fut in live:
                    try:
                        await loop.run_in_executor(self._executor, self._embed_batch, [item])
                    except Exception as exc:  # noqa: BLE001 - delivered to that request only
                        if not fut.done():
                            fut.set_exception(exc)
                    else:
                        if not fut.done():
                            fut.set_result(None)
                        self.stats.record(1)
                continue
            self.stats.record(len(live))
            for _, fut in live:
                if not fut.done():
                    fut.set_result(None)


async def embed_upload(request: Request, engine: SearchEngine, data: bytes) -> PreparedQuery:
    """An uploaded image, decoded and standardized in the worker pool, embedded in a shared batch.

    Returns the engine's :class:`~index.prepared.PreparedQuery`, ready for ``engine.search``;
    a bad image raises here, in its own request, before it reaches any batch.
    """
    from search_api.deps import run_blocking

    prepared = await run_blocking(request, engine.prepare, data)
    batcher: ModelBatcher[PreparedQuery] | None = getattr(request.app.state, "batcher", None)
    if batcher is None:  # app used without its lifespan, as run_blocking allows
        await run_blocking(request, engine.embed_prepared, [prepared])
    else:
        await batcher.embed(prepared)
    return prepared
