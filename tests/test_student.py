"""The student edition (student/) is in sync with the chapters, and the chapters' solutions are sound.

``make student`` writes the edition; this test regenerates it in memory and compares. Solutions are not executed
here (nbval executes every cell of every chapter): each chapter must have at least four solution cells, and each
must have run, with outputs and without an error, in the executed notebook.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

NOTEBOOKS = nbtools.chapter_paths()
CHAPTERS = [p for p in NOTEBOOKS if not p.name.startswith("00_")]  # 00_setup is a check, not a chapter
MIN_SOLUTIONS = 4


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_student_folder_holds_exactly_the_chapters():
    have = sorted(p.name for p in nbtools.STUDENT.glob("*.ipynb"))
    assert have == [p.name for p in NOTEBOOKS], "student/ is out of date: run `make student`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_edition_is_in_sync(path):
    target = nbtools.STUDENT / path.name
    assert target.is_file(), f"student/{path.name} is missing: run `make student`"
    expected = json.loads(nbformat.writes(nbtools.student_edition(nbformat.read(path, as_version=4))))
    assert json.loads(target.read_text(encoding="utf-8")) == expected, \
        f"student/{path.name} differs from notebooks/{path.name}: run `make student`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_and_no_output_survives_in_the_student_edition(path):
    nb = nbformat.read(nbtools.STUDENT / path.name, as_version=4)
    for i, cell in enumerate(nb.cells):
        assert nbtools.SOLUTION_TAG not in _tags(cell), f"student/{path.name} cell {i} is a solution"
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"student/{path.name} cell {i} has outputs"
    assert "deconvlab" not in nb.metadata


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_enough_solutions_and_each_ran_cleanly(path):
    nb = nbformat.read(path, as_version=4)
    solutions = [(i, c) for i, c in enumerate(nb.cells) if nbtools.SOLUTION_TAG in _tags(c)]
    assert len(solutions) >= MIN_SOLUTIONS, f"{path.name}: {len(solutions)} solution cells, need {MIN_SOLUTIONS}"
    for i, cell in solutions:
        assert cell.cell_type == "code", f"{path.name} cell {i}: a solution must be a code cell"
        assert "hide-input" in _tags(cell), f"{path.name} cell {i}: tag the solution hide-input too"
        assert cell.execution_count is not None and cell.outputs, \
            f"{path.name} cell {i}: the solution has no output (run `make execute`; end it with a value or a figure)"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name} cell {i}: the solution raised {errors[0].get('ename')}"
