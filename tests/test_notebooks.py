"""Notebook hygiene: every chapter has its MyST source, the pair agrees, outputs are fresh, lines fit the page.

``notebooks/NN_name.md`` is the source and ``notebooks/NN_name.ipynb`` holds the executed outputs
(``tools/nbtools.py``). Stale outputs fail here on purpose: a chapter's outputs must be what its code and the
current package produce, so re-execute (``make execute``, about 8 minutes on 2 cores) once before pushing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402
import repository  # noqa: E402

NOTEBOOKS = nbtools.chapter_paths()
SOURCES = nbtools.source_paths()
#: Printed output is read on a page as narrow as the code: the same 88 columns.
MAX_OUTPUT_COLUMNS = 88


def _toc_files() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"file:\s*(\S+)", text) + re.findall(r"root:\s*(\S+)", text)


def nb_cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def test_there_are_notebooks_and_each_has_its_markdown_source():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_setup.ipynb"]
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS], "every .ipynb needs its .md and vice versa"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_markdown_source_and_notebook_agree(path):
    problems = nbtools.pair_differences(path, path.with_suffix(".ipynb"))
    assert not problems, f"{path.name} and its .ipynb drifted (run `make execute`):\n" + "\n".join(problems)


def test_pair_check_detects_a_changed_source(tmp_path):
    md = tmp_path / "x.md"
    md.write_text((ROOT / "notebooks" / "00_setup.md").read_text().replace("import", "import  ", 1))
    assert nbtools.pair_differences(md, ROOT / "notebooks" / "00_setup.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_fresh(path):
    nb = nbformat.read(path, as_version=4)
    reasons = nbtools.staleness(nb)
    assert not reasons, f"{path.name}: outputs are stale ({'; '.join(reasons)}); run `make execute`"
    meta = nb.metadata["deconvlab"]
    assert meta["profile"] == "quick" and meta["backend"] == "tensorflow"
    assert meta["device"].startswith("CPU")


def test_dependency_hash_covers_the_package_and_the_requirements(tmp_path):
    for entry in ("src/deconvlab/sub", "src/deconvlab"):
        (tmp_path / entry).mkdir(parents=True, exist_ok=True)
    (tmp_path / "src/deconvlab/sub/a.py").write_text("x = 1\n")
    (tmp_path / "requirements.txt").write_text("numpy==2\n")
    before = nbtools.dependency_hash(tmp_path)
    (tmp_path / "src/deconvlab/sub/a.py").write_text("x = 2\n")
    after_code = nbtools.dependency_hash(tmp_path)
    (tmp_path / "requirements.txt").write_text("numpy==3\n")
    assert len({before, after_code, nbtools.dependency_hash(tmp_path)}) == 3


def test_dependency_hash_ignores_docstrings_and_comments_but_not_strings(tmp_path):
    module = tmp_path / "src/deconvlab/m.py"
    module.parent.mkdir(parents=True)
    (tmp_path / "requirements.txt").write_text("numpy==2\n")

    def digest(text):
        module.write_text(text, encoding="utf-8")
        return nbtools.dependency_hash(tmp_path)

    base = digest('"""Module."""\n\n\ndef f():\n    """Doc, σ."""\n    return "x"  # why\n')
    assert digest('"""Module, edited."""\n\ndef f():\n    """Doc, σ, edited\n    on two lines."""\n'
                  '    return "x"  # why not\n\n') == base
    assert digest('"""Module."""\n\n\ndef f():\n    """Doc, σ."""\n    return "y"  # why\n') != base
    assert digest('"""Module."""\n\n\ndef f():\n    """Doc, σ."""\n    return "x" + 1  # why\n') != base


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_ran_without_unexpected_errors(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        assert cell.execution_count is not None, f"{path.name} cell {i} was never executed"
        expected = "raises-exception" in cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert bool(errors) == expected, f"{path.name} cell {i}: error output {'missing' if expected else 'present'}"


def _printed_lines(cell) -> list[str]:
    lines = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream" and out.get("name") == "stdout":
            lines += out.text.splitlines()
        elif out.output_type in ("execute_result", "display_data") and "text/html" not in out.data \
                and "image/png" not in out.data:
            lines += out.data.get("text/plain", "").splitlines()
    return lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_printed_output_fits_the_page(path):
    long = [f"cell {i}: {len(line)} columns: {line[:60]}..." for i, cell in enumerate(nb_cells(path))
            for line in _printed_lines(cell) if len(line) > MAX_OUTPUT_COLUMNS]
    assert not long, f"{path.name}: {len(long)} printed lines over {MAX_OUTPUT_COLUMNS} columns:\n" + "\n".join(long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_print_no_path_of_the_executing_machine(path):
    absolute = re.compile(r"(/home/|/root/|/Users/|/tmp/|site-packages/|/\.venv/|/work/)")
    found = []
    for i, cell in enumerate(nb_cells(path)):
        for out in cell.get("outputs", []):
            text = "\n".join([out.get("text", ""), out.get("evalue", ""), *out.get("traceback", []),
                              *(v for v in out.get("data", {}).values() if isinstance(v, str))])
            found += [f"cell {i}: ...{text[max(m.start() - 30, 0):m.end() + 30]!r}" for m in absolute.finditer(text)]
    assert not found, f"{path.name}: outputs show this machine's paths (run `make execute`):\n" + "\n".join(found[:5])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_displayed_values_are_plain_numbers(path):
    # np.float64(28.87) reads as noise on a page: cells convert with float() before showing a value.
    numpy_repr = re.compile(r"\bnp\.(float|int|uint|bool_)\w*\(")
    found = [f"cell {i}: {out.data['text/plain'][:60]!r}" for i, cell in enumerate(nb_cells(path))
             for out in cell.get("outputs", []) if numpy_repr.search(out.get("data", {}).get("text/plain", ""))]
    assert not found, f"{path.name}: NumPy scalar reprs in outputs:\n" + "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_runtime_log_lines(path):
    found = [f"cell {i}: {m.group(0)[:70]!r}" for i, cell in enumerate(nb_cells(path))
             for out in cell.get("outputs", []) if out.output_type == "stream"
             for m in nbtools.RUNTIME_LOG.finditer(out.text)]
    assert not found, f"{path.name}: TensorFlow log lines in outputs (run `make execute`):\n" + "\n".join(found[:5])


def test_runtime_log_lines_are_removed_and_warnings_kept():
    log = ("I0000 00:00:1796200089.041932   18108 port.cc:153] oneDNN custom operations are on.\n"
           "E0000 00:00:1796200092.753005   18108 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\n"
           "INFO:tensorflow:Using MirroredStrategy with devices ('/job:localhost/replica:0/task:0/device:CPU:0',)\n")
    warning = "x.py:3: UserWarning: Do not pass an `input_shape`\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x"), nbformat.v4.new_code_cell("y")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text=log + warning)]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stderr", text=log)]
    assert nbtools.strip_runtime_logs(nb) == 6
    assert nb.cells[0].outputs[0].text == warning and nb.cells[1].outputs == []


def test_machine_paths_are_replaced():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    site = next(p for p, name in nbtools.machine_paths().items() if name == "<site-packages>")
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"{site}/keras/a.py:3: UserWarning"),
                           nbformat.v4.new_output("error", ename="E", evalue=str(ROOT), traceback=[f"{ROOT}/x.py"])]
    assert nbtools.strip_machine_paths(nb) == 3
    assert nb.cells[0].outputs[0].text == "<site-packages>/keras/a.py:3: UserWarning"
    assert nb.cells[0].outputs[1].traceback == ["<book>/x.py"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_colab_cell_is_the_generated_one_and_removed_from_the_html(path):
    url = repository.repository_url()
    first = next(c for c in nb_cells(path.with_suffix(".ipynb")) if c.cell_type == "code")
    assert first.source == repository.colab_cell(url), f"{path.name}: run `make repository`"
    assert {"remove-cell", "colab"} <= set(first.metadata.get("tags", [])), \
        f"{path.name}: the Colab cell must be tagged remove-cell (no empty toggle in the HTML) and colab"


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    toc = _toc_files()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"
    for entry in toc:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml: {entry} not found"


def test_figures_never_show_lena():
    # Set12 08 and Set14 lenna may enter averages, never a figure: check no notebook names them for display.
    pattern = re.compile(r"lenna|set12.*\b08\b", re.I)
    for path in NOTEBOOKS:
        for cell in nb_cells(path):
            if cell.cell_type == "code" and re.search(r"\b(compare|imshow|show)\(", cell.source):
                assert not pattern.search(cell.source), f"{path.name}: a figure names the Lena image"
