"""Where the repository's shipped files (data registry, weights, benchmark results) live."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository root: ``$DECONVLAB_ROOT`` if set, else two levels above this package.

    The book installs the package in editable mode (``pip install -e .``, also in Colab after a shallow
    clone), so the registry and the weights in ``data/`` come along with the code.
    """
    env = os.environ.get("DECONVLAB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """``<repo>/data``: the data-set registry, the shipped weights and their model cards."""
    return repo_root() / "data"


def weights_dir() -> Path:
    """``<repo>/data/weights``."""
    return data_dir() / "weights"


def results_dir() -> Path:
    """``<repo>/benchmarks/results``: committed result tables that the chapters load."""
    return repo_root() / "benchmarks" / "results"
