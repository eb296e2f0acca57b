"""Typed contracts: no ``Any`` for the engine, the embedder or the standardization config.

Counts annotations in ``embed``, ``index`` and ``search_api`` (parameters, returns and
class attributes) by reading the source, as a reviewer would with grep.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("embed", "index", "search_api")
#: Names whose type is a contract: SearchEngine, Embedder, StandardizeConfig.
TYPED_NAMES = {"engine", "embedder", "std_cfg"}


def _is_any(node: ast.AST | None) -> bool:
    """``Any`` itself, or one member of a union (``Any | None``): a value of unknown type.
    (``dict[str, Any]``, a JSON-like payload of known shape, is not counted.)"""
    if isinstance(node, ast.Name):
        return node.id == "Any"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip() == "Any"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_any(node.left) or _is_any(node.right)
    return False


def _annotations(tree: ast.AST):
    """(name, annotation, public) of every parameter, return and annotated class attribute."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            public = not node.name.startswith("_") or node.name == "__init__"
            args = node.args
            for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if a is not None:
                    yield a.arg, a.annotation, public
            yield node.name, node.returns, public
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    yield stmt.target.id, stmt.annotation, not node.name.startswith("_")


def _scan() -> tuple[list[str], int]:
    typed_any, public_any = [], 0
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, ann, public in _annotations(ast.parse(path.read_text(), rel)):
                if not _is_any(ann):
                    continue
                public_any += public
                if name in TYPED_NAMES or name in ("get_engine", "open_embedder", "untrained_embedder"):
                    typed_any.append(f"{rel}: {name}")
    return typed_any, public_any


def test_engine_embedder_and_std_cfg_are_typed():
    typed_any, _ = _scan()
    assert typed_any == [], "annotate these with SearchEngine / Embedder / StandardizeConfig, not Any"


def test_any_does_not_creep_back():
    """The other bare ``Any`` left in public signatures are values of unknown type on purpose (raw CSV
    cells, ``**kwargs``) or third-party objects imported lazily (pydicom datasets, DICOMweb
    clients, FAISS indexes); their number may only go down."""
    _, public_any = _scan()
    assert public_any <= 28, public_any
