"""Imports only point down the map of files in docs/design.md ("The files"): read from the table and from the
code's own import statements (every one, also those inside functions), never from a list kept here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support import ROOT

DESIGN = ROOT / "docs" / "design.md"
PACKAGES = ("speedups",)


def documented_order(design: str) -> list[str]:
    """The modules of the table under "## The files", top first, as dotted names."""
    section = design.split("## The files", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([\w/]+)\.py` \|", section, flags=re.MULTILINE)
    return [name.replace("/", ".") for name in names]


def project_modules(root: Path) -> dict[str, Path]:
    """The project's own modules: the files at the root and in its packages (not tests/, bench/)."""
    files = {path.stem: path for path in root.glob("*.py")}
    for package in PACKAGES:
        files |= {f"{package}.{p.stem}": p for p in (root / package).glob("*.py") if p.stem != "__init__"}
    return files


def imports_of(source: str, modules: set[str]) -> set[str]:
    """The project modules a module's source imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from speedups import fast_attention` imports the submodule
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def violations(order: list[str], graph: dict[str, set[str]]) -> list[str]:
    """What breaks the map: modules missing from it, rows for modules that do not exist, imports that
    point up or sideways to the importer itself, and loops."""
    problems = [f"{name} is not in the table of docs/design.md" for name in sorted(set(graph) - set(order))]
    problems += [f"the table names {name}, which does not exist" for name in order if name not in graph]
    rank = {name: index for index, name in enumerate(order)}
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if module in rank and target in rank and rank[target] <= rank[module]:
                problems.append(f"{module} imports {target}, which stands above it in the table")
    problems += [f"import loop: {' -> '.join(loop)}" for loop in loops(graph)]
    return problems


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path around each loop found by a depth-first walk."""
    found, done, path = [], set(), []

    def walk(module: str) -> None:
        if module in path:
            found.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(graph.get(module, ())):
            walk(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        walk(module)
    return found


def test_imports_point_down_the_documented_map():
    order = documented_order(DESIGN.read_text())
    modules = project_modules(ROOT)
    graph = {name: imports_of(path.read_text(), set(modules)) for name, path in modules.items()}
    assert len(order) >= 20 and "tracking_call" in order
    assert sum(map(len, graph.values())) >= 40  # the reader sees the imports
    assert violations(order, graph) == []
    # the front ends other than the Nuclio entry translate their own input and call the call path
    for front_end in ("track_video", "cvat_sdk_function"):
        assert "tracking_call" in graph[front_end] and not {"main", "protocol"} & graph[front_end]


def test_the_check_finds_an_upward_import_a_loop_and_a_missing_row():
    design = "## The files\n\n| file | owns |\n| --- | --- |\n| `top.py` | a |\n| `low.py` | b |\n\n## Next\n"
    order = documented_order(design)
    assert order == ["top", "low"]
    source = "import os\n\ndef late():\n    from top import thing\n"
    graph = {"top": {"low"}, "low": imports_of(source, {"top", "low"}), "extra": set()}
    problems = violations(order, graph)
    assert "low imports top, which stands above it in the table" in problems
    assert "import loop: low -> top -> low" in problems
    assert "extra is not in the table of docs/design.md" in problems
    assert violations(["top", "low"], {"top": {"low"}, "low": set()}) == []
