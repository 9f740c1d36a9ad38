"""The shape of the package (issue: one module per job, small modules, no private names across
modules, nothing but cli.py importing cli). Modules still over the size limit are listed with
their current length: they may shrink, not grow, and a new module may not join them."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "bids_deid"
LIMIT = 600
#: modules over LIMIT lines today (length at the time of listing): to be split, never to grow
OVER_LIMIT: dict[str, int] = {}


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_module_sizes() -> None:
    sizes = {p.relative_to(PKG).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    too_big = {m: n for m, n in sizes.items() if n > LIMIT and n > OVER_LIMIT.get(m, LIMIT)}
    assert too_big == {}, f"modules over {LIMIT} lines (or grown past their listed length): {too_big}"


def _own(module: str | None, level: int) -> bool:
    return level > 0 or (module or "").split(".")[0] == "bids_deid"


def test_no_private_name_crosses_a_module() -> None:
    crossing = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and _own(node.module, node.level):
                crossing += [f"{p.relative_to(PKG)}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert crossing == []


def _module_names(tree: ast.AST) -> set[str]:
    """Local names bound to modules of the package (``from . import x``, ``import bids_deid.x as y``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _own(node.module, node.level):
            base = PKG.joinpath(*((node.module or "").split(".")[1:] if node.level == 0 else []))
            for a in node.names:
                # only names that are modules or packages of bids_deid (a relative import is
                # resolved loosely: any module of that name anywhere in the package)
                if any(q.stem == a.name or q.name == a.name for q in PKG.rglob(a.name + "*")) or (
                        base / f"{a.name}.py").exists():
                    names.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("bids_deid.") and a.asname:
                    names.add(a.asname)
    return names


def test_no_private_attribute_of_another_module() -> None:
    crossing = []
    for p in _modules():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        mods = _module_names(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in mods
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossing.append(f"{p.relative_to(PKG)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert crossing == []


def test_only_cli_imports_cli() -> None:
    users = []
    for p in _modules():
        if p.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("cli") and _own(node.module, node.level):
                if node.module in ("cli", "bids_deid.cli"):
                    users.append(str(p.relative_to(PKG)))
    assert users == []
