"""Dependencies and the small glue between HTTP and the engine.

The engine is loaded once in the lifespan and shared; every blocking call to
it (decode, model, FAISS, SQLite, PNG encoding) goes through :func:`run_blocking`,
on a small fixed pool of long-lived threads made in the lifespan: 16 concurrent
clients do not run 16 oversubscribed forward passes on a 2-core machine, and the
store's per-thread SQLite connections stay few (anyio's pool retires idle threads,
which would leave their connections behind).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Annotated, Any, Callable, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from embed.errors import IndexStateError
from index.engine import SearchEngine
from index.schemas import SearchFilters
from search_api.params import MAX_LIST_ITEMS, MAX_VIEW_LEN, Age, Flag, SamePatient, Sex, ViewScope
from search_api.settings import APISettings, get_api_settings

T = TypeVar("T")

LIST_FIELDS = ("view", "source", "finding")
SCALAR_FIELDS = ("k", "sex", "age_min", "age_max", "same_patient", "attention", "view_scope", "query_view")


def get_engine(request: Request) -> Iterator[SearchEngine]:
    """The SearchEngine for this request, or 503 with the (path-free) reason it is missing.

    The request keeps that engine (one index generation) from start to end, even if the
    server switches to a newer generation meanwhile (search_api.live).
    """
    live = getattr(request.app.state, "live", None)
    if live is None:  # an engine handed to create_app (tests, embedding apps)
        engine: SearchEngine | None = request.app.state.engine
        if engine is None:
            reason = request.app.state.engine_error or "loading"
            raise IndexStateError(f"the index is not loaded (reason: {reason}; see /health and the server log)")
        request.state.index_generation = engine.generation
        yield engine
        return
    with live.lease() as engine:
        request.state.index_generation = engine.generation
        yield engine


#: Route parameters, as the FastAPI full-stack template types its dependencies.
EngineDep = Annotated[SearchEngine, Depends(get_engine)]
SettingsDep = Annotated[APISettings, Depends(get_api_settings)]


async def run_blocking(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work on the app's engine threads, off the event loop."""
    call = functools.partial(fn, *args, **kwargs)
    executor = getattr(request.app.state, "executor", None)
    if executor is None:  # app used without its lifespan
        return await anyio.to_thread.run_sync(call)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


class QueryParams(BaseModel):
    """k, filters and options shared by search, similar and classify."""

    k: int = Field(10, ge=1)
    view: list[str] | None = None
    sex: Sex | None = None
    age_min: Age | None = None
    age_max: Age | None = None
    source: list[str] | None = None
    finding: list[str] | None = None
    same_patient: SamePatient = "exclude"
    attention: Flag = True
    #: "same": neighbours of the query's view family (frontal or lateral); "any": every view
    view_scope: ViewScope = "same"
    #: the query's view when the caller knows better than the file (e.g. "PA", "LATERAL")
    query_view: str | None = Field(None, max_length=MAX_VIEW_LEN)

    def filters(self) -> SearchFilters | None:
        """The engine's SearchFilters (None when no criterion is set); 422 on a bad combination."""
        try:
            f = SearchFilters(view=self.view, sex=self.sex, age_min=self.age_min, age_max=self.age_max,
                              source=self.source, finding=self.finding)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_input=False)) from None
        return None if f.is_empty() else f

    def patient_flags(self) -> dict[str, bool]:
        return {"exclude_same_patient": self.same_patient == "exclude",
                "same_patient_only": self.same_patient == "only"}

    def view_options(self) -> dict[str, Any]:
        """The engine's view arguments (same view family by default)."""
        return {"view_scope": self.view_scope, "query_view": self.query_view}


def parse_query_params(pairs: list[tuple[str, str]], max_k: int, *, attention_default: bool = True,
                       allowed: tuple[str, ...] = LIST_FIELDS + SCALAR_FIELDS) -> QueryParams:
    """Validate form fields / query parameters (later pairs win; list fields repeat or use commas)."""
    raw: dict[str, Any] = {"attention": attention_default}
    unknown = set()
    repeats: dict[str, int] = {}
    for name, value in pairs:
        if name == "file":
            continue
        if name not in allowed:
            unknown.add(name)
        elif name in LIST_FIELDS:
            raw.setdefault(name, [])
            repeats[name] = repeats.get(name, 0) + 1
            raw[name].extend(v.strip() for v in value.split(",") if v.strip())
        elif value.strip() != "":
            raw[name] = value.strip()
    if unknown:
        raise RequestValidationError([{"loc": (n,), "msg": "unknown parameter", "type": "extra_forbidden"}
                                      for n in sorted(unknown)])
    too_many = sorted(n for n, count in repeats.items() if count > MAX_LIST_ITEMS)
    if too_many:
        raise RequestValidationError([{"loc": (n,), "msg": f"given more than {MAX_LIST_ITEMS} times "
                                       "(comma-separate the values instead)", "type": "too_long"} for n in too_many])
    try:
        params = QueryParams.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None
    if params.k > max_k:
        raise RequestValidationError([{"loc": ("k",), "msg": f"k must be at most {max_k}", "type": "less_than_equal"}])
    return params

