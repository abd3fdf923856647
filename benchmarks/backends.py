"""Execute every chapter on the Keras backend of this environment and record pass/fail, wall time, first error.

The numbers of ``benchmarks/results/backends.md`` (issue 18, item 4), on this machine's CPU or on the GPU host
(``benchmarks/gpu_chapters.sh``). Each chapter's MyST source
(``notebooks/NN_name.md``, as it is in the work tree) is executed with nbclient in a kernel of *this* interpreter,
so ``KERAS_BACKEND`` and the installed backend decide what runs; the ``.ipynb`` files are not touched. A chapter
passes when no cell outside those tagged ``raises-exception`` raised, as under ``pytest --nbval-lax``; with
``--reference`` the cells marked ``# NBVAL_CHECK_OUTPUT`` must also print what they printed in the reference run
(nbval-lax compares exactly those cells with the committed outputs, which are TensorFlow's).

    DECONVLAB_PROFILE=quick KERAS_BACKEND=jax python benchmarks/backends.py run OUT/jax
    DECONVLAB_PROFILE=quick KERAS_BACKEND=torch python benchmarks/backends.py run OUT/torch --reference OUT/tf

Writes ``OUT/<backend>/results.json`` and the executed notebooks beside it. ``reference DIR`` writes the committed
(TensorFlow) notebooks with only their checked cells' printed outputs kept: a few kilobytes to carry to the GPU host
instead of the executed notebooks' megabytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

from deconvlab import weights

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

CHECK = "NBVAL_CHECK_OUTPUT"


def _git(*args: str) -> str:
    try:  # git may be missing where the tree was copied to (the GPU host)
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def printed(cell) -> str:
    """What a cell printed as nbval compares it (stdout and text/plain; errors by name)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream" and out.name == "stdout":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"ERROR {out.ename}")
    return "".join(parts).strip()


def check_differences(nb, reference) -> list[str]:
    """The NBVAL_CHECK_OUTPUT cells whose printed output differs from the reference notebook's."""
    found = []
    for i, (a, b) in enumerate(zip(reference.cells, nb.cells, strict=False)):
        if a.cell_type == "code" and CHECK in a.source and printed(a) != printed(b):
            found.append(f"cell {i}: checked output {printed(b)[:80]!r} != reference {printed(a)[:80]!r}")
    return found


def write_reference(out_dir: Path) -> None:
    """The committed notebooks reduced to what ``check_differences`` reads: checked cells' stdout and text/plain."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in nbtools.source_paths():
        nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            keep = CHECK in cell.source
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed(cell))] if keep else []
        nbformat.write(nb, out_dir / source.with_suffix(".ipynb").name)


def run(out_dir: Path, names: list[str], reference: Path | None, timeout: int) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DECONVLAB_PROFILE", "quick")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    results_path = out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    failed = 0
    for name in names or [p.stem for p in nbtools.source_paths()]:
        source = ROOT / "notebooks" / f"{name}.md"
        nb = jupytext.read(source)
        nb.cells.append(nbformat.v4.new_code_cell(
            "import sys, keras\n"
            "print(sys.executable, keras.backend.backend(), keras.ops.convert_to_tensor(0.0).device)"))
        start = time.perf_counter()
        crash = None
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(source.parent)}}).execute()
        except Exception as exc:  # a cell past the timeout, a dead kernel
            crash = f"{type(exc).__name__}: {exc}"[:300]
        seconds = time.perf_counter() - start
        kernel = printed(nb.cells.pop())
        errors = nbtools.unexpected_errors(nb) + ([crash] if crash else [])
        if reference and (reference / f"{name}.ipynb").exists():
            errors += check_differences(nb, nbformat.read(reference / f"{name}.ipynb", as_version=4))
        results[name] = {
            "ok": not errors, "seconds": round(seconds, 1), "errors": errors, "kernel": kernel,
            "head": weights.git_commit(ROOT),  # $DECONVLAB_COMMIT wins: the GPU host's .git copy can be stale
            "source_commit": _git("log", "-1", "--format=%h", "--", str(source)),
            "uncommitted": _git("status", "--short", "--", str(source), "src"),
        }
        nbformat.write(nb, out_dir / f"{name}.ipynb")
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{name}: {'pass' if not errors else 'FAIL'} {seconds:.0f} s ({kernel})", flush=True)
        for line in errors[:3]:
            print(f"  {line}", flush=True)
        failed |= bool(errors)
    return int(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the chapters on this environment's backend")
    r.add_argument("out", type=Path)
    r.add_argument("names", nargs="*", help="chapter stems (default: all)")
    r.add_argument("--reference", type=Path, help="a run (e.g. TensorFlow's) whose checked outputs must be matched")
    r.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    f = sub.add_parser("reference", help="the committed notebooks' checked outputs, for a run elsewhere")
    f.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "reference":
        write_reference(args.out)
        return 0
    return run(args.out, args.names, args.reference, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
