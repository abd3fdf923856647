"""Fixtures shared by the tests of the rendered book (tests/test_book.py, tests/test_browser.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """The book built once per test session with warnings as errors (``jupyter-book build -W --keep-going``).

    ``DECONVLAB_BOOK_HTML=/path/to/_build/html`` reuses a build instead (e.g. the one `make book` made).
    """
    reuse = os.environ.get("DECONVLAB_BOOK_HTML")
    if reuse:
        path = Path(reuse)
        assert (path / "index.html").is_file(), f"DECONVLAB_BOOK_HTML={reuse} has no index.html"
        return path
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb if jb.exists() else shutil.which("jupyter-book")), "build", str(ROOT),
           "--path-output", str(out), "--warningiserror", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out / "_build" / "html"
