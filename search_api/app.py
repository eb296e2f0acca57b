"""The FastAPI application factory and its lifespan.

``create_app()`` reads :class:`APISettings` (or takes them, for tests), refuses
an unauthenticated service off loopback, and loads the :class:`SearchEngine`
once in the lifespan; all requests share it read-only. Run it with
``cxr serve`` or ``uvicorn --factory search_api.app:create_app``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from embed.errors import CXRError
from index.engine import SearchEngine
from search_api.audit import AuditMiddleware
from search_api.batching import ModelBatcher
from search_api.errors import install_error_handlers, redact_paths
from search_api.openapi import install_openapi
from search_api.routes import cases, health, pacs, search, stats
from search_api.security import check_bind_policy, require_api_key
from search_api.settings import APISettings, get_api_settings

log = logging.getLogger("cxr.api")

DESCRIPTION = """Similar-case search for chest X-rays.

Upload a PNG, JPEG or DICOM chest X-ray to `/v1/search` and get the most similar
indexed cases with their findings and outcomes, the kNN vote, and the attention map.
Every `/v1` path needs the `X-API-Key` header when keys are configured.
Errors are JSON `{"error": code, "detail": message}`.
"""


def _open_engine(settings: APISettings) -> SearchEngine:
    return SearchEngine.open(settings.index_dir, model_path=settings.model_path, device=settings.device)


def _model_thread_init(settings: APISettings) -> Callable[[], None] | None:
    """Sets the model thread's torch intra-op threads (CXR_API_MODEL_THREADS), if given."""
    if settings.model_threads is None:
        return None

    def init() -> None:
        import torch

        torch.set_num_threads(settings.model_threads)

    return init


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the engine once; a failure leaves the app up with ``/health`` saying why."""
    settings: APISettings = app.state.settings
    if not logging.getLogger().handlers and not logging.getLogger("cxr").handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # worker processes
    given = app.state.engine
    app.state.engine_error = None
    if given is None:
        # /health and the 503s give a short reason code only (FAISS and SQLite messages name files and
        # library internals); the full message goes to the server log.
        if settings.index_dir is None:
            app.state.engine_error = "no_index"
            log.error("index not loaded: no index configured (set CXR_API_INDEX_DIR or cxr serve --index)")
        else:
            try:
                app.state.engine = await anyio.to_thread.run_sync(_open_engine, settings)
            except CXRError as exc:
                app.state.engine_error = exc.code
                log.error("index not loaded (%s): %s", exc.code, redact_paths(str(exc)))
            except Exception:  # noqa: BLE001 - keep serving /health; the trace goes to the server log only
                log.exception("the search engine could not be loaded")
                app.state.engine_error = "engine_error"
    engine = app.state.engine
    threads = settings.engine_threads or max(1, os.cpu_count() or 1)
    app.state.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cxr-engine")
    app.state.batcher = None
    if engine is not None:
        app.state.batcher = ModelBatcher(engine.embed_prepared, window_s=settings.batch_window_ms / 1000,
                                         max_batch=settings.max_batch, thread_init=_model_thread_init(settings))
        app.state.batcher.start()
        if settings.warm_up:
            await app.state.batcher.warm_up(lambda n: [engine.blank_query() for _ in range(n)])
    # the index's manifest names the model every vector came from (the engine refuses any other)
    app.state.model_sha = engine.manifest.model_sha256[:12] if engine is not None else None
    app.state.model_name = (engine.manifest.model_name or None) if engine is not None else None
    if engine is not None:
        log.info("search engine ready (model %s)", app.state.model_sha)
    try:
        yield
    finally:
        if app.state.batcher is not None:
            await app.state.batcher.aclose()
            log.info("model batches: %s", app.state.batcher.stats.as_dict())
            app.state.batcher = None
        app.state.executor.shutdown(wait=True, cancel_futures=True)
        app.state.executor = None
        if given is None and engine is not None:
            engine.close()
        app.state.engine = given


def create_app(settings: APISettings | None = None, engine: SearchEngine | None = None) -> FastAPI:
    """Build the app. ``engine`` lets tests share one already opened SearchEngine between apps."""
    settings = settings or get_api_settings()
    keys = settings.resolved_keys()
    check_bind_policy(settings.host, keys)

    # No trailing-slash redirects: /v1/cases/1/ would answer 307 before the key check, with a Location
    # built from the client's Host header. Unknown paths are a plain JSON 404.
    app = FastAPI(title="CXR similar-case search", version="1", description=DESCRIPTION, lifespan=lifespan,
                  redirect_slashes=False)
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.engine = engine
    app.state.engine_error = None
    app.state.model_sha = app.state.model_name = None
    app.state.executor = None
    app.state.batcher = None
    app.dependency_overrides[get_api_settings] = lambda: settings

    install_error_handlers(app)
    install_openapi(app, settings)
    app.include_router(health.router)
    v1 = [Depends(require_api_key)]
    for module in (stats, search, pacs):
        app.include_router(module.router, prefix="/v1", dependencies=v1)
    app.include_router(cases.router, prefix="/v1", dependencies=v1)

    origins = settings.resolved_cors_origins()
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"])
    app.add_middleware(AuditMiddleware)
    return app
