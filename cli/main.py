"""The ``cxr`` command line: one entry point, one module per subcommand.

Each module in :mod:`cli.commands` exposes ``register(subparsers)`` which adds
its parser and sets ``func`` (called with the parsed namespace, returns an exit
code). Heavy imports happen inside ``func`` so ``cxr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from embed.errors import CXRError

# Order is the order shown in --help.
COMMAND_MODULES = [
    "datasets",
    "show",
    "train",
    "evaluate",
    "calibrate",
    "embed_cmd",
    "index_cmd",
    "search",
    "serve",
    "demo",
    "transfer",
]

log = logging.getLogger("cxr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr",
        description="Similar-case search for chest X-rays: read and standardize images, "
        "train and evaluate the encoder, export features, build and query the index, "
        "serve the API and the page.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cli.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CXRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: progress so far is kept; run the same command again to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
