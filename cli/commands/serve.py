"""``cxr serve``: run the search API (FastAPI under uvicorn) on an index folder."""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("cxr.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the similar-case search API (FastAPI + uvicorn)",
        description="Serve the HTTP API on an index built by `cxr index build`: /health, and under /v1 "
        "search, classify, embed, stats and cases (see docs/api.md; OpenAPI page at /docs). "
        "API keys come from CXR_API_API_KEYS (comma-separated) or CXR_API_API_KEYS_FILE; without a key "
        "the server only binds a loopback address. Other settings: CXR_API_* variables (docs/api.md).",
    )
    parser.add_argument("--index", metavar="DIR", default=None,
                        help="index folder (default: $CXR_API_INDEX_DIR)")
    parser.add_argument("--model", metavar="CKPT", default=None,
                        help="checkpoint to embed queries with (default: the one the index was built with)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    parser.add_argument("--host", default=None, help="bind address (default: $CXR_API_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $CXR_API_PORT or 8000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (each loads its own engine; default 1)")
    parser.add_argument("--api-keys-file", metavar="FILE", default=None,
                        help="file with one API key per line (instead of CXR_API_API_KEYS)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="uvicorn log level")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # torch's OpenMP threads busy-wait after every forward pass; on a small CPU that spinning takes
    # the cores the decode, search and PNG threads need between batches (docs/benchmarks.md). It is
    # read once, when torch loads (in the app factory, also in each worker process): set it first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from embed.errors import CXRError
    from search_api.security import check_bind_policy
    from search_api.settings import APISettings, get_api_settings

    # Flags become the environment the app factory reads, so every worker process sees them.
    overrides = {
        "CXR_API_INDEX_DIR": args.index,
        "CXR_API_MODEL_PATH": args.model,
        "CXR_API_DEVICE": args.device,
        "CXR_API_HOST": args.host,
        "CXR_API_PORT": None if args.port is None else str(args.port),
        "CXR_API_API_KEYS_FILE": args.api_keys_file,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    get_api_settings.cache_clear()
    settings = APISettings()
    if settings.index_dir is None:
        raise CXRError("no index given: pass --index DIR (built with `cxr index build`) or set CXR_API_INDEX_DIR")
    if args.workers < 1:
        raise CXRError("--workers must be at least 1")
    keys = settings.resolved_keys()
    check_bind_policy(settings.host, keys)  # refuses an open API off loopback
    log.info("serving %s on http://%s:%d (%d worker(s), %s)", settings.index_dir, settings.host, settings.port,
             args.workers, f"{len(keys)} API key(s)" if keys else "no API key, loopback only")
    uvicorn.run(
        "search_api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,  # the cxr.audit line replaces it (no query strings, no client addresses)
        server_header=False,
    )
    return 0
