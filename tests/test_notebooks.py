"""Notebook hygiene: fresh outputs, provenance, the Colab cell, the table of contents."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

NOTEBOOKS = nbtools.chapter_paths()


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"file:\s*(\S+)", text) + re.findall(r"root:\s*(\S+)", text)


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_setup.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_fresh(path):
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("deconvlab")
    assert meta, f"{path.name} has no provenance: run `make execute`"
    assert meta["code_sha256"] == nbtools.code_hash(nb), f"{path.name}: code changed after its outputs; run `make execute`"
    assert meta["profile"] == "quick" and meta["backend"] == "tensorflow"
    assert meta["device"].startswith("CPU")


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_clones_the_configured_repository(path):
    url = _config()["repository"]["url"]
    first_code = next(c for c in nb_cells(path) if c.cell_type == "code")
    assert "google.colab" in first_code.source
    assert url in first_code.source, f"{path.name}: the Colab cell must clone {url} (from _config.yml)"


def nb_cells(path: Path):
    return nbformat.read(path, as_version=4).cells


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
