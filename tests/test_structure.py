"""The package's shape, read from its source: its imports run one way (no cycle, none hidden inside a function) and
no function or class outgrows what one reading holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mutants
from conftest import REPO

PACKAGE = REPO / "src" / "alexnet_lab"
LONGEST_FUNCTION, LONGEST_CLASS = 50, 150


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules of the package that ``node``, in ``module``, imports (a name imported from a package counts as
    its submodule when there is one)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        parts = module.split(".")
        base = parts[: len(parts) - node.level + is_package] if node.level else []
        source = ".".join([*base, *([node.module] if node.module else [])])
        targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]
    found = []
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target:
            found.append(target)
    return found


def imports_in(text: str, module: str, is_package: bool = False) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function) for every import of a package module in ``text``, at any depth."""
    tree = ast.parse(text)
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    in_function = {id(inner) for function in functions for inner in ast.walk(function)}
    return [(node.lineno, target, id(node) in in_function) for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in imported(node, module, is_package)]  # fmt: skip


def imports() -> list[tuple[str, int, str, bool]]:
    return [(module, *found) for module, path in MODULES.items()
            for found in imports_in(path.read_text(), module, path.name == "__init__.py")]  # fmt: skip


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges``, as the list of its nodes, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(edges.get(node, ())):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state and (found := visit(successor)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_search_finds_a_cycle_and_passes_a_tree() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"a"}}) == ["a", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_reader_sees_relative_absolute_and_nested_imports() -> None:
    text = (
        "import alexnet_lab.data.base\nfrom alexnet_lab import compat, errors\nfrom . import layouts\n"
        "import torch\ndef f():\n    from ..errors import UserError\n"
    )
    assert sorted(imports_in(text, "alexnet_lab.data.imagenet")) == [
        (1, "alexnet_lab.data.base", False),
        (2, "alexnet_lab.compat", False),
        (2, "alexnet_lab.errors", False),
        (3, "alexnet_lab.data.layouts", False),
        (6, "alexnet_lab.errors", True),
    ]
    assert imports_in("from . import base", "alexnet_lab.data", is_package=True) == [
        (1, "alexnet_lab.data.base", False)
    ]
    assert len({module for module, *_ in imports()}) > len(MODULES) // 2, "the reader finds too few imports"


def test_the_packages_imports_form_no_cycle_counting_those_inside_functions() -> None:
    edges: dict[str, set[str]] = {}
    for module, _, target, _ in imports():
        if target != module:
            edges.setdefault(module, set()).add(target)
    found = cycle(edges) or []
    assert not found, f"the package's imports form a cycle: {' -> '.join(found)}"


def test_no_module_imports_a_project_module_inside_a_function() -> None:
    hidden = [f"{MODULES[module].relative_to(REPO)}:{line} imports {target}"
              for module, line, target, inside in imports() if inside]  # fmt: skip
    assert not hidden, f"imports of the project hidden inside functions: {hidden}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_is_over_50_lines_and_no_class_over_150(module: str) -> None:
    long = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            limit = LONGEST_CLASS if isinstance(node, ast.ClassDef) else LONGEST_FUNCTION
            if (lines := int(node.end_lineno or 0) - node.lineno + 1) > limit:
                long.append(f"{node.name} is {lines} lines, over {limit}")
    assert not long, f"{module}: {long}"


def test_every_curated_mutant_finds_its_line_once_and_names_tests_that_exist() -> None:
    """tests/mutants.py plants each bug by replacing a text that must occur once: a change to the code must not
    leave a mutant that no longer applies, or one that runs a test that is gone."""
    stale = []
    for mutant in mutants.MUTANTS:
        if (REPO / mutant.file).read_text().count(mutant.old) != 1:
            stale.append(f"{mutant.name}: its text is not in {mutant.file} exactly once")
        for test in mutant.tests:
            file, _, name = test.partition("::")
            path = REPO / file
            if not (path.is_file() and (not name or f"def {name.split('[')[0]}(" in path.read_text())):
                stale.append(f"{mutant.name}: no test {test}")
    assert not stale, stale
