"""Notebook tooling: execute in place with provenance, detect stale outputs, make the student edition.

`make execute` runs every chapter in place (CPU, ``quick`` profile, TensorFlow) and records in the notebook's
metadata (``metadata.deconvlab``) the sha256 of its code cells, the profile, backend, device and run time.
``tests/test_notebooks.py`` recomputes the hash: a notebook whose code changed after its outputs were made fails.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = ROOT / "student"
SOLUTION_TAG = "solution"


def code_hash(nb: nbformat.NotebookNode) -> str:
    """sha256 of the code cells' sources, in order (outputs and metadata excluded)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.strip().encode())
            h.update(b"\n\x00\n")
    return h.hexdigest()


def chapter_paths() -> list[Path]:
    """The book's notebooks, in file-name order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _runtime(env: dict[str, str]) -> dict[str, str]:
    """Backend and device as a fresh interpreter with ``env`` sees them (the kernel's view, not ours)."""
    import subprocess

    code = "import json, deconvlab.config as c; print(json.dumps(c.runtime_info()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def execute(path: Path, timeout: int = 1200) -> float:
    """Execute ``path`` in place with the quick profile; return the seconds it took."""
    from nbclient import NotebookClient

    env = dict(os.environ)
    env.setdefault("DECONVLAB_PROFILE", "quick")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.update({k: env[k] for k in ("DECONVLAB_PROFILE", "KERAS_BACKEND")})
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    info = _runtime(env)
    nb.metadata["deconvlab"] = {
        "code_sha256": code_hash(nb),
        "profile": info["profile"],
        "backend": info["backend"],
        "device": info["device"],
        "keras": info["keras"],
        "executed": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
    }
    nbformat.write(nb, path)
    return seconds


STUDENT_PLACEHOLDER = "# Your solution here."


def student_edition(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs, each solution cell (tagged ``solution``) replaced by an empty cell to work in."""
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            # A deterministic id, so that the edition is reproducible (tests/test_student.py compares it).
            blank = nbformat.v4.new_code_cell(STUDENT_PLACEHOLDER)
            if "id" in cell:
                blank.id = f"student-{cell.id}"[:64]
            else:  # nbformat < 4.5 has no cell ids
                del blank["id"]
            blank.metadata["tags"] = ["exercise"]
            cells.append(blank)
            continue
        cell.get("metadata", {}).pop("execution", None)  # nbclient's timings of our run
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("deconvlab", None)
    return out


def write_student(dest: Path = STUDENT) -> list[Path]:
    """Write the student edition of every chapter into ``dest`` (and remove editions of chapters that are gone)."""
    dest.mkdir(exist_ok=True)
    names = {p.name for p in chapter_paths()}
    for old in dest.glob("*.ipynb"):
        if old.name not in names:
            old.unlink()
    written = []
    for path in chapter_paths():
        target = dest / path.name
        nbformat.write(student_edition(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute notebooks in place (quick profile, TensorFlow)")
    ex.add_argument("paths", nargs="*", type=Path)
    sub.add_parser("student", help="write the student edition into student/")
    sub.add_parser("check", help="list notebooks whose code changed since their outputs were made")
    args = parser.parse_args(argv)
    if args.cmd == "execute":
        for path in args.paths or chapter_paths():
            print(f"executing {path.name} ...", flush=True)
            print(f"  {path.name}: {execute(path):.1f} s", flush=True)
    elif args.cmd == "student":
        for path in write_student():
            print(f"wrote {path.relative_to(ROOT)}")
    else:
        stale = [p for p in chapter_paths()
                 if nbformat.read(p, as_version=4).metadata.get("deconvlab", {}).get("code_sha256")
                 != code_hash(nbformat.read(p, as_version=4))]
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)} (run `make execute`)")
        return 1 if stale else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
