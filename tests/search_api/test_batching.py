"""Dynamic batching: concurrent requests share forward passes, answers stay those of one request alone."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.search_api.conftest import API_KEY, TOL, as_file, same_answer, truncated

@pytest.fixture()
def batched_client(make_client):
    """A long window so that 16 threads of a TestClient reliably meet in one batch."""
    c = make_client(api_keys=API_KEY, batch_window_ms=200, max_batch=16)
    c.headers["X-API-Key"] = API_KEY
    return c


def _images(tiny_index, n: int) -> list[bytes]:
    names = [f"gen_{p:02d}_{j}.png" for p in range(12) for j in (0, 1)]
    return [tiny_index.image(names[i % len(names)]) for i in range(n)]


def test_16_concurrent_requests_match_their_sequential_answers(batched_client, tiny_index):
    images = _images(tiny_index, 16)

    def search(img: bytes) -> dict:
        r = batched_client.post("/v1/search", files=as_file(img), data={"k": "5"})
        assert r.status_code == 200, r.text
        return r.json()

    sequential = [search(img) for img in images]
    stats = batched_client.app.state.batcher.stats
    assert stats.largest == 1  # one request at a time: every batch held one image
    start = threading.Barrier(16)

    def together(img: bytes) -> dict:
        start.wait()
        return search(img)

    with ThreadPoolExecutor(max_workers=16) as pool:
        concurrent = list(pool.map(together, images))
    assert stats.largest > 1, "the concurrent requests were never batched"
    for seq, conc in zip(sequential, concurrent):
        same_answer(seq, conc)
        assert conc["attention_png"] and conc["query_png"] == seq["query_png"]  # same standardized query


def test_classify_and_embed_go_through_the_batcher(batched_client, tiny_index):
    img = _images(tiny_index, 1)[0]
    before = batched_client.app.state.batcher.stats.images
    with ThreadPoolExecutor(max_workers=4) as pool:
        c1 = pool.submit(batched_client.post, "/v1/classify", files=as_file(img), data={"k": "5"})
        e1 = pool.submit(batched_client.post, "/v1/embed", files=as_file(img))
        c1, e1 = c1.result(), e1.result()
    assert c1.status_code == 200 and e1.status_code == 200
    assert batched_client.app.state.batcher.stats.images == before + 2
    vec = tiny_index.engine.embed(img)
    assert e1.json()["embedding"] == pytest.approx(vec.tolist(), abs=TOL)


def test_a_bad_image_fails_alone(batched_client, tiny_index):
    images = _images(tiny_index, 16)
    images[5] = truncated(images[5], 0.4)  # a PNG header and half its data: refused when decoded
    start = threading.Barrier(16)

    def search(img: bytes):
        start.wait()
        return batched_client.post("/v1/search", files=as_file(img), data={"k": "5"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(search, images))
    assert responses[5].status_code == 422, responses[5].text
    assert responses[5].json()["error"] and "Traceback" not in responses[5].text
    assert [r.status_code for i, r in enumerate(responses) if i != 5] == [200] * 15
    alone = batched_client.post("/v1/search", files=as_file(images[0]), data={"k": "5"}).json()
    same_answer(alone, responses[0].json())


def test_max_batch_one_means_one_image_per_forward(make_client, tiny_index):
    c = make_client(api_keys=API_KEY, batch_window_ms=50, max_batch=1)
    c.headers["X-API-Key"] = API_KEY
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(lambda img: c.post("/v1/classify", files=as_file(img)).status_code,
                              _images(tiny_index, 8)))
    assert codes == [200] * 8
    assert c.app.state.batcher.stats.largest == 1 and c.app.state.batcher.stats.images == 8


@pytest.mark.parametrize("field,value", [("max_batch", 0), ("batch_window_ms", -1)])
def test_batching_settings_are_validated(field, value):
    from pydantic import ValidationError

    from search_api.settings import APISettings

    with pytest.raises(ValidationError):
        APISettings(**{field: value})


# -- the batcher itself: a failing forward pass fails only the image that caused it -----------------

class Item:
    def __init__(self, value: int) -> None:
        self.value, self.result = value, None


def forward(items: list[Item]) -> None:
    """Doubles every value; a negative value makes the whole batch fail, as a bad tensor would."""
    if any(it.value < 0 for it in items):
        raise ValueError("negative input")
    for it in items:
        it.result = 2 * it.value


def test_batcher_isolates_an_error_inside_a_batch():
    from search_api.batching import ModelBatcher

    async def main():
        batcher = ModelBatcher(forward, window_s=0.05, max_batch=8)
        batcher.start()
        items = [Item(v) for v in (1, 2, -3, 4, 5)]
        try:
            outcomes = await asyncio.gather(*(batcher.embed(it) for it in items), return_exceptions=True)
        finally:
            await batcher.aclose()
        return items, outcomes, batcher.stats

    items, outcomes, stats = asyncio.run(main())
    assert isinstance(outcomes[2], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 2] == [None] * 4
    assert [it.result for it in items] == [2, 4, None, 8, 10]
    assert stats.images == 4 and stats.largest == 1  # the failed batch was re-run image by image


def test_batcher_fills_batches_while_the_model_is_busy():
    """With no window at all, requests that arrive during a forward pass share the next one."""
    from search_api.batching import ModelBatcher

    gate = threading.Event()

    def slow_forward(items: list[Item]) -> None:
        gate.wait(5)
        forward(items)

    async def main():
        batcher = ModelBatcher(slow_forward, window_s=0.0, max_batch=4)
        batcher.start()
        items = [Item(v) for v in range(9)]
        try:
            tasks = [asyncio.ensure_future(batcher.embed(items[0]))]
            await asyncio.sleep(0.1)  # the first image is now in the (blocked) model
            tasks += [asyncio.ensure_future(batcher.embed(it)) for it in items[1:]]
            await asyncio.sleep(0.1)  # the rest queue up behind it
            gate.set()
            await asyncio.gather(*tasks)
        finally:
            await batcher.aclose()
        return items, batcher.stats

    items, stats = asyncio.run(main())
    assert [it.result for it in items] == [2 * v for v in range(9)]
    assert stats.sizes == {1: 1, 4: 2}
