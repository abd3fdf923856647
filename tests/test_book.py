"""The book builds with warnings as errors, and the rendered pages carry what readers need."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb if jb.exists() else shutil.which("jupyter-book")), "build", str(ROOT),
           "--path-output", str(out), "--warningiserror", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out / "_build" / "html"


@pytest.mark.slow
def test_book_builds_and_has_every_page(html):
    assert (html / "index.html").exists()
    for page in ("book/intro", "book/setup", "book/glossary", "book/bibliography", "notebooks/00_setup"):
        assert (html / f"{page}.html").exists(), page


@pytest.mark.slow
def test_notebook_pages_have_a_colab_button(html):
    page = (html / "notebooks/00_setup.html").read_text()
    assert "colab.research.google.com" in page


@pytest.mark.slow
def test_bibliography_lists_the_anchors(html):
    # The bibliography style lowercases titles after the first word, so compare case-insensitively.
    page = (html / "book/bibliography.html").read_text().lower()
    for needle in ("beyond a gaussian denoiser", "symmetric skip connections", "checkerboard artifacts"):
        assert needle in page, needle
