"""Build a notebook from a compact list of cells (used to author chapters; the .ipynb is the source of truth)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

COLAB_CELL = '''\
# Colab only: clone the book (code, data registry, shipped weights) and install its package.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO_URL = "https://github.com/deconvlab/deconvlab-book"
    if not os.path.exists("/content/deconvlab-book"):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "/content/deconvlab-book"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/deconvlab-book"], check=True)
    sys.path.insert(0, "/content/deconvlab-book/src")
    os.chdir("/content/deconvlab-book/notebooks")'''


def md(text: str, tags: tuple[str, ...] = ()):
    cell = new_markdown_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def code(text: str, tags: tuple[str, ...] = ()):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def colab(hidden: bool = True):
    return code(COLAB_CELL, ("hide-input",) if hidden else ())


def write(path: str | Path, cells: list, title: str) -> Path:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["title"] = title
    nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
    nb.metadata["accelerator"] = "GPU"
    path = Path(path)
    nbformat.write(nb, path)
    return path
