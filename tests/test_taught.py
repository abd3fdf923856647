"""Every "Taught in chapter N" tag in a deconvlab docstring names a chapter whose source mentions the function.

The chapter source is ``notebooks/NN_*.md`` (MyST) where it exists, else the code cells of ``NN_*.ipynb``.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"Taught in chapter (\d+)")


@functools.cache
def chapter_source(number: int) -> str:
    markdown = sorted(ROOT.glob(f"notebooks/{number:02d}_*.md"))
    if markdown:
        return markdown[0].read_text(encoding="utf-8")
    import nbformat

    notebooks = sorted(ROOT.glob(f"notebooks/{number:02d}_*.ipynb"))
    if not notebooks:
        return ""
    book = nbformat.read(notebooks[0], as_version=4)
    return "\n".join(cell.source for cell in book.cells if cell.cell_type == "code")


def tags() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted((ROOT / "src" / "deconvlab").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for match in TAG.finditer(ast.get_docstring(node) or ""):
                    found.append((path.stem, node.name, int(match.group(1))))
    return found


def _param(module: str, name: str, chapter: int):
    return pytest.param(module, name, chapter, id=f"{module}.{name}-ch{chapter}")


def test_there_are_tags_to_check():
    assert len(tags()) > 50


@pytest.mark.parametrize(("module", "name", "chapter"), [_param(*t) for t in tags()])
def test_the_named_chapter_uses_the_function(module, name, chapter):
    source = chapter_source(chapter)
    assert source, f"{module}.{name}: no chapter {chapter} in notebooks/"
    users = [n for n in range(10) if re.search(rf"\b{re.escape(name)}\b", chapter_source(n))]
    assert re.search(rf"\b{re.escape(name)}\b", source), (
        f"{module}.{name} says 'Taught in chapter {chapter}', but that chapter never mentions it "
        f"(chapters that do: {users or 'none'})"
    )
