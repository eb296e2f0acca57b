"""The served index follows the folder's CURRENT pointer between requests, one generation per request.

Every request (and ``/health``) first compares the pointer with the generation being served:
a few dozen bytes read, no lock. When a writer has switched the pointer, the new generation is
opened and verified on a background thread while requests keep being answered from the old one;
then new requests get the new engine and the old one is closed when its last request finishes.
A request holds one engine from start to end (:meth:`LiveIndex.lease`), so its count, hits and
cases always come from one generation. The generation is sent back in ``X-Index-Generation``.

If the folder disappears or holds no index, the engine is dropped at once: ``/health`` says
``index_missing`` and ``/v1`` answers 503, never answers from a deleted index. If a new
generation cannot be opened (damaged), the old one keeps being served and ``/health`` says
``reload_failed:<code>``; a later good generation is picked up as usual.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embed.errors import CXRError, IndexStateError
from index.pointer import Pointer, read_pointer
from search_api.errors import redact_paths

if TYPE_CHECKING:
    from index.engine import SearchEngine

Opener = Callable[["SearchEngine | None"], "SearchEngine"]
OnChange = Callable[["SearchEngine | None", "str | None"], None]

log = logging.getLogger("cxr.api")

GENERATION_HEADER = "X-Index-Generation"


def reason_of(exc: BaseException) -> str:
    """The short code /health and the 503s show (details go to the server log only)."""
    return exc.code if isinstance(exc, CXRError) else "engine_error"


class LiveIndex:
    """The engine being served for one index folder, and the switch to the folder's newer generations."""

    def __init__(self, index_dir: str | Path, opener: Opener, on_change: OnChange) -> None:
        self.index_dir = Path(index_dir)
        self._open = opener  # (previous engine or None) -> a new engine for the live generation
        self._on_change = on_change  # (engine or None, reason or None): mirrors the state into app.state
        self._lock = threading.Lock()
        self._engine: SearchEngine | None = None
        self._pointer: Pointer | None = None  # the generation served, or the one that failed to open
        self._leases: dict[int, int] = {}
        self._retired: dict[int, SearchEngine] = {}
        self._loading = False
        self.reason: str | None = None

    @property
    def engine(self) -> SearchEngine | None:
        return self._engine

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        """Open the live generation now (start-up); failures are kept as the reason, not raised."""
        self._load(self._current_pointer())

    def _current_pointer(self) -> Pointer | None:
        try:
            return read_pointer(self.index_dir) if self.index_dir.is_dir() else None
        except (CXRError, OSError):  # a damaged or unreadable pointer: the load attempt reports why
            return Pointer("damaged")

    def _load(self, wanted: Pointer | None) -> None:
        previous = self._engine
        try:
            engine = self._open(previous)
        except Exception as exc:  # noqa: BLE001 - a short code on /health; the details in the server log only
            if not isinstance(exc, CXRError):
                log.exception("the search engine could not be loaded")
            reason = reason_of(exc)
            with self._lock:
                self._pointer, self._loading = wanted, False
                self.reason = reason if previous is None else f"reload_failed:{reason}"
            log.error("index %snot loaded (%s): %s%s", "generation " if previous is not None else "", reason,
                      redact_paths(str(exc)), "; still serving the previous one" if previous is not None else "")
            self._on_change(self._engine, self.reason)
            return
        with self._lock:
            self._engine, self.reason, self._loading = engine, None, False
            self._pointer = engine.pointer or wanted
            self._retire(previous)
        log.info("serving index generation %s", engine.generation)
        self._on_change(engine, None)

    def check(self) -> None:
        """Compare the pointer with what is served: drop a vanished index, reload a new generation."""
        now = self._current_pointer()
        with self._lock:
            if now is None:
                if self._engine is not None or self._pointer is not None:
                    self._drop("index_missing")
                return
            if now == self._pointer or self._loading:
                return
            self._loading = True
        threading.Thread(target=self._load, args=(now,), name="cxr-index-reload", daemon=True).start()

    def _drop(self, reason: str) -> None:
        log.error("index no longer served (%s): the folder was removed or holds no index", reason)
        self._retire(self._engine)
        self._engine, self._pointer, self.reason = None, None, reason
        self._on_change(None, reason)

    # -- requests ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self) -> Iterator[SearchEngine]:
        """The engine for one request; it stays open until the request ends, even across a switch."""
        self.check()
        with self._lock:
            engine = self._engine
            if engine is None:
                reason = self.reason or "loading"
                err = IndexStateError(f"the index is not loaded (reason: {reason}; see /health and the server log)")
                if reason.startswith("index_"):
                    err.code = reason  # the 503 carries the same short code as /health (index_missing, ...)
                raise err
            self._leases[id(engine)] = self._leases.get(id(engine), 0) + 1
        try:
            yield engine
        finally:
            with self._lock:
                self._leases[id(engine)] -= 1
                if self._leases[id(engine)] == 0:
                    del self._leases[id(engine)]
                    old = self._retired.pop(id(engine), None)
                    if old is not None:
                        _close(old)

    def _retire(self, engine: SearchEngine | None) -> None:
        """Close ``engine`` now if no request uses it, else when its last request ends (lock held)."""
        if engine is None:
            return
        if self._leases.get(id(engine)):
            self._retired[id(engine)] = engine
        else:
            _close(engine)

    def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
            for old in self._retired.values():
                _close(old)
            self._retired.clear()
        if engine is not None:
            _close(engine)


def _close(engine: SearchEngine) -> None:
    try:
        engine.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        log.warning("closing an old index generation failed", exc_info=True)


class GenerationHeaderMiddleware:
    """Adds ``X-Index-Generation`` (the generation that answered) to every response that used one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            gen = state.get("index_generation")
            if message["type"] == "http.response.start" and gen:
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (GENERATION_HEADER.lower().encode(), str(gen).encode())]
            await send(message)

        await self.app(scope, receive, send_wrapper)
