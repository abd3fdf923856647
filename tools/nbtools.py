"""Notebook tooling: sync and execute the chapters, detect drift and stale outputs, make the student edition.

The chapters are MyST Markdown notebooks: ``notebooks/NN_name.md`` (jupytext ``md:myst``) is the source people edit
and review; the paired ``notebooks/NN_name.ipynb`` holds the executed outputs that Colab, nbval and the book use.

* ``sync``: update every ``.ipynb`` from its ``.md`` (``jupytext --update``: sources change, outputs and cell ids
  stay), never the other way round.
* ``execute``: ``sync``, then run every chapter in place (CPU, ``quick`` profile, TensorFlow) and record provenance
  in ``metadata.deconvlab``: the hash of the code cells, the hash of what the outputs also depend on (the package
  sources under ``src/deconvlab`` without their docstrings and comments, and ``requirements.txt``), the profile,
  backend, device and run time.
* ``check``: list the notebooks whose pair drifted or whose outputs are stale, and why. ``tests/test_notebooks.py``
  runs the same checks, so stale outputs fail CI: re-execute once before pushing, not per commit.
* ``student``: the student edition (``student/``): no outputs, every answer (code, output and prose between
  ``{solution-start}`` and ``{solution-end}``) replaced by an empty cell to work in.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import tokenize
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = ROOT / "student"
SOLUTION_TAG = "solution"
COLAB_TAG = "colab"
SOLUTION_START = "{solution-start}"
SOLUTION_END = "{solution-end}"
#: The markers of exercises and answers, parsed here once for the student edition, the workshop planner and tests.
EXERCISE_DIRECTIVE = re.compile(r"^\s*(?::{3,}|`{3,})\{exercise\}[ \t]*(?P<title>[^\n]*)")
EXERCISE_LABEL = re.compile(r"^:label:\s*(\S+)", re.M)
SOLUTION_OF = re.compile(r"\{solution-start\}[ \t]*(\S+)?")
STUDENT_PLACEHOLDER = "# Your solution here."
#: What a chapter's outputs depend on besides its own code.
DEPENDENCIES = ("src/deconvlab", "requirements.txt")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repository  # noqa: E402


def chapter_paths() -> list[Path]:
    """The book's executed notebooks, in file-name order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def source_paths() -> list[Path]:
    """The chapters' MyST Markdown sources, in file-name order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md"))


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def code_hash(nb: nbformat.NotebookNode) -> str:
    """sha256 of the code cells' sources, in order; the Colab cell (a no-op outside Colab) is left out."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code" and COLAB_TAG not in _tags(cell):
            h.update(cell.source.strip().encode())
            h.update(b"\n\x00\n")
    return h.hexdigest()


def dependency_hash(root: Path = ROOT) -> str:
    """sha256 over the package's Python code and the pinned requirements (names and contents).

    Docstrings, comments and blank lines are left out (:func:`code_text`): no chapter prints them, and a fix to
    one should not cost a re-execution of every chapter.
    """
    h = hashlib.sha256()
    for entry in DEPENDENCIES:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            text = code_text(file.read_text(encoding="utf-8")) if file.suffix == ".py" else file.read_text()
            h.update(file.relative_to(root).as_posix().encode() + b"\x00")
            h.update(text.encode() + b"\x00")
    return h.hexdigest()


def code_text(source: str) -> str:
    """Python source without its docstrings, comments, trailing spaces and blank lines.

    Both are found by position (``ast`` docstring nodes, ``tokenize`` comments), which every supported Python
    reports alike; ``ast.dump`` would not do, its output changes between versions.
    """
    lines = source.splitlines()

    def chars(line: int, col: int) -> int:  # ast counts UTF-8 bytes, tokenize counts characters
        return len(lines[line - 1].encode()[:col].decode())

    spans = []  # (line, column, end line, end column): lines from 1, columns in characters
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and ast.get_docstring(node, clean=False) is not None:
            doc = node.body[0]
            spans.append((doc.lineno, chars(doc.lineno, doc.col_offset),
                          doc.end_lineno, chars(doc.end_lineno, doc.end_col_offset)))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            spans.append((*tok.start, *tok.end))
    for first, start, last, end in sorted(spans, reverse=True):
        lines[first - 1 : last] = [lines[first - 1][:start] + lines[last - 1][end:]]
    return "\n".join(line.rstrip() for line in lines if line.strip())


def pair_differences(md_path: Path, ipynb_path: Path) -> list[str]:
    """How the ``.md`` source and the ``.ipynb`` differ in cell types, sources or tags (empty: in sync)."""
    if not ipynb_path.exists():
        return [f"{ipynb_path.name} is missing (run `make execute`)"]
    source = jupytext.read(md_path)
    executed = nbformat.read(ipynb_path, as_version=4)
    problems = []
    if len(source.cells) != len(executed.cells):
        problems.append(f"{len(source.cells)} cells in the .md, {len(executed.cells)} in the .ipynb")
    for i, (a, b) in enumerate(zip(source.cells, executed.cells, strict=False)):
        if a.cell_type != b.cell_type:
            problems.append(f"cell {i}: {a.cell_type} in the .md, {b.cell_type} in the .ipynb")
        elif a.source.strip() != b.source.strip():
            problems.append(f"cell {i}: sources differ ({a.source.strip()[:50]!r} ...)")
        elif sorted(_tags(a)) != sorted(_tags(b)):
            problems.append(f"cell {i}: tags {_tags(a)} in the .md, {_tags(b)} in the .ipynb")
    return problems


def staleness(nb: nbformat.NotebookNode) -> list[str]:
    """Why the notebook's outputs may not be what its code and the package produce now (empty: fresh)."""
    meta = nb.metadata.get("deconvlab")
    if not meta:
        return ["no provenance"]
    reasons = []
    if meta.get("code_sha256") != code_hash(nb):
        reasons.append("its code changed")
    if meta.get("dependencies_sha256") != dependency_hash():
        reasons.append("the code of src/deconvlab or requirements.txt changed")
    return reasons


def sync(paths: list[Path] | None = None) -> None:
    """Update each ``.ipynb`` from its ``.md`` source, keeping outputs and cell ids."""
    for md_path in paths or source_paths():
        subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", "--update", "-q", str(md_path)],
                       check=True)


def _runtime(env: dict[str, str]) -> dict[str, str]:
    """Backend and device as a fresh interpreter with ``env`` sees them (the kernel's view, not ours)."""
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
    # The book shows these outputs to everybody: one developer's directory layout has no place in them.
    strip_machine_paths(nb)
    strip_runtime_logs(nb)
    info = _runtime(env)
    nb.metadata["deconvlab"] = {
        "code_sha256": code_hash(nb),
        "dependencies_sha256": dependency_hash(),
        "profile": info["profile"],
        "backend": info["backend"],
        "device": info["device"],
        "keras": info["keras"],
        "executed": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
    }
    nbformat.write(nb, path)
    return seconds


def machine_paths() -> dict[str, str]:
    """Absolute paths of this machine that outputs may print, longest first, with the neutral names used instead."""
    import sysconfig

    paths = {sysconfig.get_paths()["purelib"]: "<site-packages>", sys.prefix: "<python>",
             str(ROOT): "<book>", str(Path.home()): "~"}
    return dict(sorted(paths.items(), key=lambda kv: -len(kv[0])))


def strip_machine_paths(nb: nbformat.NotebookNode) -> int:
    """Replace this machine's paths in every output (tracebacks and warnings print them); return how many."""
    count = 0

    def clean(text: str) -> str:
        nonlocal count
        for path, name in machine_paths().items():
            count += text.count(path)
            text = text.replace(path, name)
        return text

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out.text = clean(out.text)
            if "traceback" in out:
                out.traceback = [clean(line) for line in out.traceback]
            if "evalue" in out:
                out.evalue = clean(out.evalue)
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in out.get("data", {}):
                    out.data[mime] = clean(out.data[mime])
    return count


#: Start-up and status lines that TensorFlow/XLA write to stderr (absl C++ log format, Python logging at INFO):
#: facts about the executing machine, not about the chapter. Warnings from Python code are kept.
RUNTIME_LOG = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|INFO:tensorflow:.*)\n?", re.M)


def strip_runtime_logs(nb: nbformat.NotebookNode) -> int:
    """Remove TensorFlow's start-up log lines from stream outputs (empty outputs go too); return how many."""
    count = 0
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            # TensorFlow's Python logger may write to stdout inside a kernel: clean both streams.
            if out.output_type == "stream":
                out.text, n = RUNTIME_LOG.subn("", out.text)
                count += n
                if not out.text.strip():
                    continue
            kept.append(out)
        if "outputs" in cell:
            cell.outputs = kept
    return count


def solution_regions(nb: nbformat.NotebookNode) -> list[tuple[int, int]]:
    """``(start, end)`` cell indices of every answer, both marker cells included."""
    regions, start = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        if SOLUTION_START in cell.source:
            assert start is None, f"cell {i}: a solution starts inside another"
            start = i
        elif SOLUTION_END in cell.source:
            assert start is not None, f"cell {i}: a solution ends that never started"
            regions.append((start, i))
            start = None
    assert start is None, "a solution never ends"
    return regions


def student_edition(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs, each answer replaced by one empty code cell to work in."""
    out = copy.deepcopy(nb)
    starts = dict(solution_regions(out))
    cells, skip_until = [], -1
    for i, cell in enumerate(out.cells):
        if i <= skip_until:
            continue
        if i in starts:
            skip_until = starts[i]
            blank = nbformat.v4.new_code_cell(STUDENT_PLACEHOLDER)
            # A deterministic id, so that the edition is reproducible (tests/test_student.py compares it).
            blank.id = f"student-{cell.get('id', i)}"[:64]
            blank.metadata["tags"] = ["exercise"]
            cells.append(blank)
            continue
        cell.get("metadata", {}).pop("execution", None)  # nbclient's timings of our run
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if COLAB_TAG in _tags(cell):
                cell.source = repository.colab_cell(repository.repository_url(), folder="student")
        cells.append(cell)
    out.cells = cells
    for key in ("deconvlab", "jupytext"):  # the edition has no .md twin and no provenance
        out.metadata.pop(key, None)
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


def unexpected_errors(nb: nbformat.NotebookNode) -> list[str]:
    """The error outputs of cells not tagged ``raises-exception``, one line each."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "raises-exception" not in _tags(cell):
            found += [f"cell {i}: {o.ename}: {o.evalue[:160]}" for o in cell.get("outputs", [])
                      if o.output_type == "error"]
    return found


def _execute_copy(path: Path, timeout: int) -> tuple[str, float, list[str]]:
    """Execute a copy of one chapter (the file is not written); its name, seconds and unexpected errors."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return path.name, time.perf_counter() - start, unexpected_errors(nb)


def run_offline(paths: list[Path], timeout: int = 1200, workers: int = 2) -> int:
    """Execute copies of ``paths`` (outputs not compared, files untouched); 1 if any cell failed unexpectedly.

    Meant to run with the network blocked and ``DECONVLAB_DATA`` unset (``make notebooks-offline``): every chapter
    must then run on scikit-image's bundled photographs. It refuses to run when either condition does not hold, so a
    green result always means "offline". ``workers`` chapters run at once, the longest (by their recorded run time)
    first: one kernel leaves a third of two cores idle, in data loading and Python between the kernels' ops.
    """
    import socket
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if os.environ.get("DECONVLAB_DATA"):
        raise SystemExit("offline check: unset DECONVLAB_DATA first")
    try:
        socket.getaddrinfo("raw.githubusercontent.com", 443)
    except OSError:
        pass
    else:
        raise SystemExit("offline check: the network is reachable; run it under `unshare -rn` (make notebooks-offline)")

    def recorded_seconds(path: Path) -> float:
        return float(nbformat.read(path, as_version=4).metadata.get("deconvlab", {}).get("seconds", 0))

    failed = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(_execute_copy, path, timeout) for path in sorted(paths, key=recorded_seconds, reverse=True)]
        for job in as_completed(jobs):
            name, seconds, errors = job.result()
            print(f"{name}: {seconds:.0f} s offline, {len(errors)} unexpected errors", flush=True)
            for line in errors:
                print(f"  {line}", flush=True)
            failed |= bool(errors)
    return int(failed)


def check() -> int:
    """Print every drifted pair and stale notebook; return 1 if there is any."""
    bad = 0
    for md_path in source_paths():
        ipynb = md_path.with_suffix(".ipynb")
        for problem in pair_differences(md_path, ipynb):
            print(f"drift: {md_path.relative_to(ROOT)}: {problem} (run `make execute`)")
            bad = 1
        if ipynb.exists():
            for reason in staleness(nbformat.read(ipynb, as_version=4)):
                print(f"stale: {ipynb.relative_to(ROOT)}: {reason} (run `make execute`)")
                bad = 1
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sync", help="update every .ipynb from its .md source (outputs kept)")
    ex = sub.add_parser("execute", help="sync, then execute notebooks in place (quick profile, TensorFlow)")
    ex.add_argument("paths", nargs="*", type=Path, help="notebooks (.md or .ipynb); default: every chapter")
    sub.add_parser("student", help="write the student edition into student/")
    sub.add_parser("check", help="list drifted pairs and notebooks with stale outputs")
    off = sub.add_parser("offline", help="execute copies of the chapters offline; fail on unexpected errors")
    off.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "sync":
        sync()
    elif args.cmd == "execute":
        paths = [p.with_suffix(".ipynb") for p in args.paths] or chapter_paths()
        sync([p.with_suffix(".md") for p in paths])
        for path in paths:
            print(f"executing {path.name} ...", flush=True)
            print(f"  {path.name}: {execute(path):.1f} s", flush=True)
    elif args.cmd == "offline":
        return run_offline([p.with_suffix(".ipynb") for p in args.paths] or chapter_paths())
    elif args.cmd == "student":
        for path in write_student():
            print(f"wrote {path.relative_to(ROOT)}")
    else:
        return check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
