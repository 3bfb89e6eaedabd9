"""The code keeps the shape ARCHITECTURE.md promises: short modules and functions, a short loop,
and read-only modules that never import the training loop."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mistnet"
MODULES = sorted(SRC.rglob("*.py"))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_600_lines_and_no_function_over_80(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 600
    long = {f.name: n for f, n in _functions(ast.parse(text)) if n > 80}
    assert not long, f"functions over 80 lines: {long}"


def test_the_loop_reads_in_one_screen():
    text = (SRC / "loop.py").read_text()
    assert len(text.splitlines()) <= 300
    long = {f.name: n for f, n in _functions(ast.parse(text)) if n > 60}
    assert not long, f"loop functions over 60 lines: {long}"


READ_ONLY = [
    "evaluation.py",
    "rundir.py",
    "runlog.py",
    "detection.py",
    "pretrained.py",
    "reproduce/figures.py",
    "viz",
    "commands/plot.py",
    "commands/show.py",
    "commands/detect.py",
    "commands/eval.py",
    "commands/models.py",
]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_modules_do_not_import_the_training_loop(name):
    target = SRC / name
    paths = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert paths and all(p.exists() for p in paths)
    for path in paths:
        assert "mistnet.loop" not in _imports(path), f"{path.name} imports the training loop"
