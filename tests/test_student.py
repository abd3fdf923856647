"""The student edition (student/) is in sync with the chapters and holds no answer; every exercise has one.

``make student`` writes the edition; this test regenerates it in memory and compares. An answer is everything
between a ``{solution-start}`` and a ``{solution-end}`` cell: code, output and explanatory prose. In the book
(sphinx-exercise, ``:class: dropdown``) it sits behind one toggle; the student edition drops it and leaves one
empty cell to work in. Solutions are not executed here (nbval executes every cell of every chapter).
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
MIN_EXERCISES = 4


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _answer_texts(nb) -> list[str]:
    """Every non-trivial line of the answers: sources of the cells inside solution regions, and their outputs."""
    texts, inside = [], set()
    for start, end in nbtools.solution_regions(nb):
        inside |= set(range(start, end + 1))
        for cell in nb.cells[start + 1:end]:
            texts += cell.source.splitlines()
            for out in cell.get("outputs", []):
                texts += (out.get("text") or out.get("data", {}).get("text/plain", "")).splitlines()
    # Lines that the chapter also has outside its answers (code an answer reuses) are not answer text, and short
    # lines (a bracket, `plt.show()`) occur everywhere: compare the distinctive ones.
    elsewhere = {line.strip() for i, c in enumerate(nb.cells) if i not in inside for line in c.source.splitlines()}
    return [t.strip() for t in texts if len(t.strip()) >= 25 and t.strip() not in elsewhere]


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
def test_no_answer_and_no_output_survives_in_the_student_edition(path):
    student = nbformat.read(nbtools.STUDENT / path.name, as_version=4)
    student_text = "\n".join(c.source for c in student.cells)
    assert "{solution-" not in student_text, f"student/{path.name} still has solution markers"
    for i, cell in enumerate(student.cells):
        assert nbtools.SOLUTION_TAG not in _tags(cell), f"student/{path.name} cell {i} is a solution"
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"student/{path.name} cell {i} has outputs"
    leaked = [t for t in _answer_texts(nbformat.read(path, as_version=4)) if t in student_text]
    assert not leaked, f"student/{path.name} contains answer text: {leaked[:3]}"
    assert "deconvlab" not in student.metadata and "jupytext" not in student.metadata


def test_answer_check_sees_prose():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("```{solution-start} ex\n:class: dropdown\n```"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("*The answer is that the variance does not depend on the image.*"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
    ])
    assert _answer_texts(nb) == ["*The answer is that the variance does not depend on the image.*"]
    assert "variance" not in "\n".join(c.source for c in nbtools.student_edition(nb).cells)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_one_answer_and_each_ran_cleanly(path):
    nb = nbformat.read(path, as_version=4)
    labels = [nbtools.EXERCISE_LABEL.search(c.source).group(1) for c in nb.cells
              if c.cell_type == "markdown" and nbtools.EXERCISE_DIRECTIVE.match(c.source)]
    assert len(labels) >= MIN_EXERCISES, f"{path.name}: {len(labels)} exercises, need {MIN_EXERCISES}"
    regions = nbtools.solution_regions(nb)
    answered = [nbtools.SOLUTION_OF.search(nb.cells[start].source).group(1) for start, _ in regions]
    assert answered == labels, f"{path.name}: exercises {labels} but answers to {answered}"
    for start, end in regions:
        assert ":class: dropdown" in nb.cells[start].source, f"{path.name} cell {start}: the answer must be a dropdown"
        code = [(i, c) for i, c in enumerate(nb.cells[start + 1:end], start + 1) if c.cell_type == "code"]
        assert code, f"{path.name} cell {start}: an answer needs code"
        for i, cell in code:
            assert nbtools.SOLUTION_TAG in _tags(cell), f"{path.name} cell {i}: tag answer code `solution`"
            assert cell.execution_count is not None and cell.outputs, \
                f"{path.name} cell {i}: the solution has no output (run `make execute`; end it with a value)"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{path.name} cell {i}: the solution raised {errors[0].get('ename')}"
