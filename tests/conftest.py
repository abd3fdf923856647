"""Fixtures shared by the tests of the rendered book (tests/test_book.py, tests/test_browser.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # `make test` runs every test on TensorFlow (`make unit`), then those marked `backends` and not `slow` again on JAX
    # (`make unit-jax`), so that a backend-specific bug in the models, layers, training, gradients, tiling, weights
    # or evaluation fails CI.
    config.addinivalue_line("markers", "backends: holds on every Keras backend; `make unit-jax` repeats these on JAX")


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


@pytest.fixture(scope="session")
def save_tiny_cards():
    """A function that writes untrained tiny cards into a folder: gray and colour denoisers (sigma 25), a
    post-upsampling x2 super-resolver and, with ``pre_x3``, a pre-upsampling x3 one; it returns the folder."""

    def save(folder: Path, seed: int, pre_x3: bool = False) -> Path:
        import keras

        from deconvlab import models, weights

        keras.utils.set_random_seed(seed)
        for channels in (1, 3):
            weights.save_pretrained(models.red_net(channels=channels, depth=2, width=4),
                                    {"task": "denoise", "sigma": 25}, folder)
        weights.save_pretrained(models.red_net_sr(scale=2, channels=1, depth=2, width=4, upsample="post"),
                                {"task": "sr", "scale": 2, "upsample": "post"}, folder)
        if pre_x3:
            weights.save_pretrained(models.red_net_sr(scale=3, channels=1, depth=2, width=4, upsample="pre"),
                                    {"task": "sr", "scale": 3, "upsample": "pre"}, folder)
        return folder

    return save
