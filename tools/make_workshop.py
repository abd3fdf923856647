"""Generate the workshop kit's timing tables and agendas from the chapters and their measured run times (``make workshop``).

Every time in ``book/workshop/_generated/*.md`` comes from the chapters, from a measurement or from a stated formula:

* **Time to learn (stated by each chapter).** Every chapter's Prerequisites section says how long it takes to learn
  (``**Time to learn**: about 45 minutes``). A section's share of it is proportional to its length in words (prose
  and code), so an agenda that discusses part of a chapter gets that part's share.
* **Exercises (counted from the chapters).** An exercise is a ``{exercise}`` directive; its answer is everything
  between ``{solution-start} <label>`` and ``{solution-end}``. An exercise done in class takes
  ``EXERCISE_MIN`` minutes of work (a planning allowance) plus the measured run time of its solution's code cells.
* **CPU, quick profile (measured).** ``make execute`` runs each notebook with nbclient, which stamps every code cell
  with ``metadata.execution`` (``iopub.execute_input`` … ``shell.execute_reply``) and the notebook with
  ``metadata.deconvlab.seconds`` (kernel start included); section and exercise times are sums of those cell times.
* **H100 / H200 (measured).** The shipped model cards (``data/weights/*.json``) record ``wall_time_s`` of their
  training run on the data-centre GPU they name, and ``benchmarks/results/speed_gpu.json`` the training throughput of
  the paper network.
* **Colab T4 (estimated, never measured: no T4 was available).** A training run's FLOPs are counted from the layer
  shapes (``benchmarks/speed_gpu.train_flops_per_patch``: 2 per multiply-add, a training step = 3 forward passes). The
  GPU runs give the achieved model FLOP utilisation (MFU = counted FLOPs / wall time / GPU peak); a T4 run is
  estimated as counted FLOPs / (T4 peak × the same MFU). T4 peak: 65 TFLOPS fp16 tensor (NVIDIA T4 datasheet);
  H100/H200 peak: the datasheets' 989 TFLOPS (SXM, dense bf16; the H200 has the H100's compute) — datasheet against
  datasheet. A cell's T4 time is its number of training runs times one workshop-profile run; cells that do not train
  keep their measured CPU time.

How training runs are counted (``count_training_runs``; the code is parsed with :mod:`ast`, never executed):

* ``model.fit(...)`` and ``dl.train.train(...)`` (any ``….train.train(...)``) and ``train_model(...)`` start one
  training run each; so does a shell line or an argument list that runs ``deconvlab train``.
* ``train_on_batch(...)`` is one optimisation step. The steps taken in one function body (or at a cell's top level)
  form one run; a ``for`` over ``range(...)`` or a ``while`` around a step is that run's step loop. When every step
  loop has a literal length (``range(5)``, or a parameter's literal default) the run's steps are known and it costs
  that fraction of a workshop run; otherwise it counts as a whole run.
* A ``fit``/``train`` call given both ``epochs=`` and ``steps_per_epoch=`` that are known integers runs their
  product of steps and costs that fraction of a workshop run (at most one run); ``dl.train.train`` without
  ``epochs=`` trains the profile's epochs. Integers are known from literals,
  names bound to them, arithmetic on those, and ``profile.train_steps``, ``profile.epochs`` and
  ``profile.steps_per_epoch``, read as the workshop profile's (the chapters size their runs from the profile).
* Every other enclosing loop repeats what it encloses: a ``for`` (or a comprehension) over an iterable of N items
  counts N. N is known for literal tuples, lists, sets and dicts, names bound to them earlier in the notebook (any
  cell above), ``range`` with literal bounds, ``.items()``/``.keys()``/``.values()``, ``enumerate``, ``zip``,
  ``sorted``, ``reversed``, ``list``, ``tuple``. A loop of unknown length counts once (the count is then a lower
  bound).
* A function defined in the notebook that trains counts at each call, with the runs of its body (evaluated with the
  call's literal arguments), times the loops around the call; defining it trains nothing. Each call of a function
  that takes steps is a run of its own, and a step loop around such a call multiplies its steps. Calls inside
  lambdas are not followed.
* Of ``if``/``else`` branches the one with more runs counts. Cells tagged ``raises-exception`` (the article's broken
  code) train nothing.

Run it after ``make execute`` and after new cards or benchmark results land; ``tests/test_workshop.py`` fails when
the committed tables differ from what this script makes now.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "src"))
import nbtools  # noqa: E402

OUT = ROOT / "book" / "workshop" / "_generated"
WEIGHTS = ROOT / "data" / "weights"
SPEED_GPU = ROOT / "benchmarks" / "results" / "speed_gpu.json"
T4_PEAK_TFLOPS = 65.0  # NVIDIA T4 datasheet: mixed precision (FP16/FP32) tensor-core peak
# Dense BF16 tensor-core peaks from NVIDIA's datasheets (SXM); the H200 has the H100's compute, more memory.
DATASHEET_TFLOPS = {"H100": 989.0, "H200": 989.0}
H100_DATASHEET_TFLOPS = DATASHEET_TFLOPS["H100"]
T4_URL = "https://www.nvidia.com/en-us/data-center/tesla-t4/"
DATASHEET_URLS = {"H100": "https://www.nvidia.com/en-us/data-center/h100/",
                  "H200": "https://www.nvidia.com/en-us/data-center/h200/"}
# Planning allowance for one exercise done in class: read it, try it, see the answer. Its solution's measured run
# time is added on top.
EXERCISE_MIN = 10
SLOT_STEP_MIN = 5  # agenda slots are rounded up to whole steps of this many minutes
UNALLOCATED_MAX = 0.10  # at most this share of an agenda may be left unplanned
# Sections that are not taught in the flow of a chapter: exercises have their own time, references are not read.
UNTAUGHT = ("exercises", "references")

TIME_TO_LEARN = re.compile(
    r"\*\*Time to learn\*\*\s*:?\s*(?:about|around|roughly|approximately|~)?\s*"
    r"(?P<n>\d+(?:\.\d+)?|an?|one|two|three|four)\s*(?P<unit>hours?|h\b|minutes?|mins?\b)"
    r"(?P<half>\s+and\s+a\s+half)?", re.I)
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
HIDDEN_TAGS = {"remove-cell", nbtools.COLAB_TAG}


# ------------------------------------------------------------------------------------------------ training runs


@dataclasses.dataclass(frozen=True)
class Run:
    """Training runs found in code: ``copies`` runs of ``steps`` optimisation steps each (None: a profile's run)."""

    copies: int
    steps: int | None = None


# A loop around a call: (whether it loops over optimisation steps, its length or None when unknown).
_Loop = tuple[bool, int | None]
_CLI_TRAIN = re.compile(r"\bdeconvlab\s+train\b")


class _Env:
    """What is statically known at one point of a notebook: lengths and integer values of names, its functions."""

    def __init__(self, parent: _Env | None = None):
        self.sizes: dict[str, int] = dict(parent.sizes) if parent else {}
        self.ints: dict[str, int] = dict(parent.ints) if parent else {}
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = dict(parent.functions) if parent else {}

    def forget(self, name: str) -> None:
        self.sizes.pop(name, None)
        self.ints.pop(name, None)
        self.functions.pop(name, None)


def _int(node: ast.expr, env: _Env) -> int | None:
    """The value of an integer expression built from literals and known names, else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name):
        return env.ints.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):  # profile.train_steps
        return env.ints.get(f"{node.value.id}.{node.attr}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _int(node.operand, env)
        return None if value is None else -value
    if isinstance(node, ast.BinOp):
        a, b = _int(node.left, env), _int(node.right, env)
        if a is None or b is None:
            return None
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.FloorDiv: lambda: a // b if b else None, ast.Mod: lambda: a % b if b else None}
        op = ops.get(type(node.op))
        return op() if op else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1:
        return _length(node.args[0], env)
    return None


def _length(node: ast.expr, env: _Env) -> int | None:
    """How many items iterating over ``node`` yields, when that is statically known, else None."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return None if any(isinstance(e, ast.Starred) for e in node.elts) else len(node.elts)
    if isinstance(node, ast.Dict):
        return None if any(k is None for k in node.keys) else len(node.keys)
    if isinstance(node, ast.Name):
        return env.sizes.get(node.id)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        if any(g.ifs for g in node.generators):
            return None
        lengths = [_length(g.iter, env) for g in node.generators]
        return None if None in lengths else math.prod(lengths)  # type: ignore[arg-type]
    if not isinstance(node, ast.Call):
        return None
    func, args = node.func, node.args
    if isinstance(func, ast.Attribute) and func.attr in ("items", "keys", "values") and not args:
        return _length(func.value, env)
    if not isinstance(func, ast.Name):
        return None
    if func.id == "range" and 1 <= len(args) <= 3:
        bounds = [_int(a, env) for a in args]
        if None in bounds or len(bounds) == 3 and bounds[2] == 0:
            return None
        return len(range(*bounds))  # type: ignore[arg-type]
    if func.id in ("enumerate", "sorted", "reversed", "list", "tuple", "set", "dict") and len(args) == 1:
        return _length(args[0], env)
    if func.id == "zip" and args:
        lengths = [_length(a, env) for a in args]
        return None if None in lengths else min(lengths)  # type: ignore[type-var]
    return None


def _bind(target: ast.expr, value: ast.expr | None, env: _Env) -> None:
    """Record what an assignment makes known (or unknown) about the names it binds."""
    if isinstance(target, ast.Name):
        env.forget(target.id)
        if value is None:
            return
        size, number = _length(value, env), _int(value, env)
        if size is not None:
            env.sizes[target.id] = size
        if number is not None:
            env.ints[target.id] = number
    elif isinstance(target, (ast.Tuple, ast.List)):
        pairs = (value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
                 and not any(isinstance(e, ast.Starred) for e in value.elts) else [None] * len(target.elts))
        for t, v in zip(target.elts, pairs, strict=True):
            _bind(t, v, env)
    elif isinstance(target, ast.Starred):
        _bind(target.value, None, env)


def _is_run_call(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Attribute):
        if func.attr == "fit":
            return True
        inner = func.value
        return func.attr == "train" and (isinstance(inner, ast.Name) and inner.id == "train"
                                         or isinstance(inner, ast.Attribute) and inner.attr == "train")
    return isinstance(func, ast.Name) and func.id == "train_model"


def _run_steps(node: ast.Call, env: _Env) -> int | None:
    """A run call's steps, ``epochs`` x ``steps_per_epoch`` when both are known, else None. ``dl.train.train``
    without ``epochs=`` trains the profile's epochs; without ``steps_per_epoch=`` its steps come from the data."""
    given = {k.arg: _int(k.value, env) for k in node.keywords if k.arg in ("epochs", "steps_per_epoch")}
    if "epochs" not in given and isinstance(node.func, ast.Attribute) and node.func.attr == "train":
        given["epochs"] = env.ints.get("profile.epochs")
    if len(given) < 2 or None in given.values():
        return None
    return given["epochs"] * given["steps_per_epoch"]  # type: ignore[operator]


def _is_step_call(node: ast.Call) -> bool:
    return isinstance(node.func, ast.Attribute) and node.func.attr == "train_on_batch"


def _is_cli_train(node: ast.expr) -> bool:
    """An argument list such as ``["python", "-m", "deconvlab", "train", ...]``."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return False
    words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return any(a == "deconvlab" and b == "train" for a, b in zip(words, words[1:], strict=False))


class _Scope:
    """Counts the training runs of one function body or one cell's top level."""

    MAX_DEPTH = 8  # nested calls of notebook functions followed; deeper (recursion) is not counted

    def __init__(self, env: _Env, depth: int = 0):
        self.env, self.depth = env, depth
        self.runs: list[Run] = []
        self.steps: dict[int, int | None] = {}  # copies -> total literal steps (None: unknown) of step calls

    def result(self) -> list[Run]:
        return self.runs + [Run(copies, steps) for copies, steps in self.steps.items()]

    # -- statements

    def body(self, stmts: Iterable[ast.stmt], loops: tuple[_Loop, ...]) -> None:
        for stmt in stmts:
            self.stmt(stmt, loops)

    def stmt(self, node: ast.stmt, loops: tuple[_Loop, ...]) -> None:
        env = self.env
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                self.expr(default, loops)
            env.forget(node.name)
            env.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            env.forget(node.name)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter, loops)
            is_range = (isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
                        and node.iter.func.id == "range")
            loop = (is_range, _length(node.iter, env))
            _bind(node.target, None, env)
            self.body(node.body, loops + (loop,))
            self.body(node.orelse, loops)
        elif isinstance(node, ast.While):
            self.expr(node.test, loops)
            self.body(node.body, loops + ((True, None),))
            self.body(node.orelse, loops)
        elif isinstance(node, ast.If):
            self.expr(node.test, loops)
            branches = []
            for stmts in (node.body, node.orelse):
                branch = _Scope(env, self.depth)
                branch.body(stmts, loops)
                branches.append(branch)
            richer = max(branches, key=lambda s: sum(r.copies for r in s.result()))
            self.runs += richer.runs
            for copies, steps in richer.steps.items():
                self._add_steps(copies, steps)
        elif isinstance(node, ast.Assign):
            self.expr(node.value, loops)
            for target in node.targets:
                _bind(target, node.value, env)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            if node.value is not None:
                self.expr(node.value, loops)
            _bind(node.target, None, env)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self.stmt(child, loops)
                elif isinstance(child, ast.expr):
                    self.expr(child, loops)
                elif isinstance(child, ast.excepthandler):
                    self.body(child.body, loops)
                elif isinstance(child, ast.withitem):
                    self.expr(child.context_expr, loops)

    # -- expressions

    def expr(self, node: ast.expr, loops: tuple[_Loop, ...]) -> None:
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = loops
            for gen in node.generators:
                self.expr(gen.iter, inner)
                inner = inner + ((False, _length(gen.iter, self.env)),)
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts:
                self.expr(part, inner)
            return
        if _is_cli_train(node):
            self._add_run(loops)
        if isinstance(node, ast.Call):
            if _is_run_call(node):
                self._add_run(loops, _run_steps(node, self.env))
            elif _is_step_call(node):
                self._add_step(loops)
            elif isinstance(node.func, ast.Name) and node.func.id in self.env.functions:
                self._call(self.env.functions[node.func.id], node, loops)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child, loops)

    # -- bookkeeping

    def _add_run(self, loops: tuple[_Loop, ...], steps: int | None = None) -> None:
        self.runs.append(Run(math.prod(n or 1 for _, n in loops), steps))

    def _add_steps(self, copies: int, steps: int | None) -> None:
        known = self.steps.get(copies, 0)
        self.steps[copies] = None if known is None or steps is None else known + steps

    def _add_step(self, loops: tuple[_Loop, ...]) -> None:
        copies = math.prod(n or 1 for is_step, n in loops if not is_step)
        step_lengths = [n for is_step, n in loops if is_step]
        self._add_steps(copies, None if None in step_lengths else math.prod(step_lengths))  # type: ignore[arg-type]

    def _call(self, func: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call, loops: tuple[_Loop, ...]) -> None:
        """The runs of one call of a notebook function, repeated by the loops around the call."""
        if self.depth >= self.MAX_DEPTH:
            return
        local = _Env(self.env)
        params = func.args.posonlyargs + func.args.args
        defaults = dict(zip([p.arg for p in params][len(params) - len(func.args.defaults):], func.args.defaults,
                            strict=True))
        defaults |= {p.arg: d for p, d in zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True) if d is not None}
        given: dict[str, ast.expr | None] = {p.arg: a for p, a in zip(params, call.args, strict=False)}
        given |= {k.arg: k.value for k in call.keywords if k.arg}
        for p in params + func.args.kwonlyargs:
            local.forget(p.arg)
            value = given.get(p.arg, defaults.get(p.arg))
            number = None if value is None else _int(value, self.env)
            if number is not None:
                local.ints[p.arg] = number
        inner = _Scope(local, self.depth + 1)
        inner.body(func.body, ())
        factor = math.prod(n or 1 for _, n in loops)
        self.runs += [Run(run.copies * factor, run.steps) for run in inner.runs]
        # Each call of a function that takes optimisation steps is a run of its own; a step loop around the call
        # (a range or while loop) multiplies its steps, any other loop repeats it.
        repeat = math.prod(n or 1 for is_step, n in loops if not is_step)
        step_loops = [n for is_step, n in loops if is_step]
        more = None if None in step_loops else math.prod(step_loops)  # type: ignore[arg-type]
        for copies, steps in inner.steps.items():
            self.runs.append(Run(copies * repeat, None if steps is None or more is None else steps * more))


def _python_source(source: str) -> tuple[str, int]:
    """The cell without IPython magics and shell lines, and how many of those lines run ``deconvlab train``."""
    lines, cli = [], 0
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            cli += bool(_CLI_TRAIN.search(stripped))
            lines.append(line[: len(line) - len(stripped)] + "pass")
        else:
            lines.append(line)
    return "\n".join(lines), cli


class TrainingCounter:
    """Counts the training runs of a notebook's code cells, in order: what a cell defines is known to later cells."""

    def __init__(self) -> None:
        from deconvlab import config

        self.env = _Env()
        # Chapters size their runs from the profile (``profile.train_steps // 2``): read as the workshop profile's.
        workshop = config.get_profile("workshop")
        for name in ("train_steps", "epochs", "steps_per_epoch"):
            self.env.ints[f"profile.{name}"] = getattr(workshop, name)

    def count(self, source: str) -> list[Run]:
        code, cli = _python_source(source)
        try:
            tree = ast.parse(code)
        except SyntaxError as err:
            raise SystemExit(f"make_workshop: cannot parse a code cell ({err}):\n{source}") from err
        scope = _Scope(self.env)
        scope.body(tree.body, ())
        return scope.result() + [Run(1)] * cli


def count_training_runs(*cells: str) -> list[Run]:
    """The training runs of each code cell, counted in order (a convenience for one notebook's cells)."""
    counter = TrainingCounter()
    return [run for cell in cells for run in counter.count(cell)]


def total_runs(runs: Iterable[Run]) -> int:
    return sum(r.copies for r in runs)


# ------------------------------------------------------------------------------------------------ chapters


@dataclasses.dataclass
class Section:
    title: str
    cpu_s: float = 0.0  # measured, quick profile
    code_cells: int = 0
    words: int = 0  # prose and code the reader goes through (answers excluded)
    runs: list[Run] = dataclasses.field(default_factory=list)  # counted training runs
    train_cpu_s: float = 0.0  # measured CPU time of the training cells (replaced by the T4 estimate)

    @property
    def taught(self) -> bool:
        return self.title.lower() not in UNTAUGHT


@dataclasses.dataclass
class Exercise:
    label: str
    title: str
    solution_s: float = 0.0  # measured run time of the solution's code cells
    runs: list[Run] = dataclasses.field(default_factory=list)
    train_cpu_s: float = 0.0


@dataclasses.dataclass(eq=False)  # one object per notebook: hashed by identity
class Chapter:
    path: Path
    title: str
    original: str
    total_s: float | None
    device: str
    sections: list[Section]
    exercises: list[Exercise]
    learn_min: float | None  # the chapter's stated time to learn

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def runs(self) -> list[Run]:
        return [r for s in self.sections for r in s.runs]

    @property
    def overhead_s(self) -> float:
        """Measured time outside the cells (kernel start, nbclient)."""
        return max((self.total_s or 0.0) - sum(s.cpu_s for s in self.sections), 0.0)

    def section_learn_min(self, section: Section) -> float:
        """A section's share of the chapter's time to learn, in proportion to its words."""
        words = sum(s.words for s in self.sections if s.taught)
        if self.learn_min is None or not section.taught or not words:
            return 0.0
        return self.learn_min * section.words / words


def _stamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def cell_seconds(cell: nbformat.NotebookNode) -> float:
    """The run time nbclient recorded for a code cell (0 when it has no timing)."""
    ex = cell.get("metadata", {}).get("execution", {})
    start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not start or not end:
        return 0.0
    return max(0.0, (_stamp(end) - _stamp(start)).total_seconds())


def time_to_learn(text: str) -> float | None:
    """Minutes from a chapter's ``**Time to learn**: about 45 minutes`` (or ``about an hour``), else None."""
    found = TIME_TO_LEARN.search(text)
    if not found:
        return None
    n = found["n"].lower()
    value = float(NUMBER_WORDS.get(n, n)) + (0.5 if found["half"] else 0.0)
    return value * 60 if found["unit"].lower().startswith("h") else value


def read_chapter(path: Path) -> Chapter:
    """Title, original heading, time to learn, and per section the measured time, words and training runs; the
    exercises with their solutions' measured time."""
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("deconvlab") or {}
    title, original, learn = path.stem, "", None
    sections = [Section("(title, Colab set-up)")]
    exercises: dict[str, Exercise] = {}
    answering: Exercise | None = None  # the exercise whose solution the current cells belong to
    counter = TrainingCounter()
    for cell in nb.cells:
        src = cell.source.strip()
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            first = src.splitlines()[0] if src else ""
            if first.startswith("# ") and title == path.stem:
                title = first[2:].strip()
            found = re.search(r"\*原标题\s*[—-]+\s*(.+?)\*", src) or re.search(r"^\*([^*]*[\u4e00-\u9fff][^*]*)\*", src, re.M)
            if found and not original:
                original = " ".join(re.sub(r"^原标题\s*[—-]+\s*", "", found.group(1)).split())
            if learn is None:
                learn = time_to_learn(src)
            # a section heading may sit inside a markdown cell: the words before it belong to the section above
            chunks = re.split(r"^## (.+)$", src, flags=re.M)
            if answering is None and len(chunks) > 1 and sections:
                sections[-1].words += len(chunks[0].split())
            for heading, body in zip(chunks[1::2], chunks[2::2], strict=True):
                sections.append(Section(heading.strip()))
                if answering is None:
                    sections[-1].words += len(heading.split()) + 1 + len(body.split())  # "##" counted as before
            if (directive := nbtools.EXERCISE_DIRECTIVE.match(src)) is not None:
                named = nbtools.EXERCISE_LABEL.search(src)
                label = named.group(1) if named else f"{path.stem}-exercise-{len(exercises) + 1}"
                exercises[label] = Exercise(label, directive["title"].strip())
            if (start := nbtools.SOLUTION_OF.search(src)) is not None:
                label = start.group(1) or next(reversed(exercises), "")
                if label not in exercises:
                    raise SystemExit(f"make_workshop: {path.name}: a solution for {label!r}, which no {{exercise}} "
                                     "directive above defines")
                answering = exercises[label]
            elif nbtools.SOLUTION_END in src:
                answering = None
            elif answering is None and len(chunks) == 1:
                sections[-1].words += len(src.split())
            continue
        if cell.cell_type != "code" or not src:
            continue
        sec, seconds = sections[-1], cell_seconds(cell)
        sec.cpu_s += seconds
        sec.code_cells += 1
        # Cells that must raise (the article's broken code) stop at the error: they train nothing.
        runs = [] if "raises-exception" in tags else counter.count(cell.source)
        if answering is not None:
            answering.solution_s += seconds
            answering.runs += runs
            answering.train_cpu_s += seconds if runs else 0.0
            continue
        sec.runs += runs
        sec.train_cpu_s += seconds if runs else 0.0
        if not HIDDEN_TAGS & set(tags):
            sec.words += len(src.split())
    return Chapter(path, title, original, meta.get("seconds"), str(meta.get("device", "not executed")), sections,
                   list(exercises.values()), learn)


# ------------------------------------------------------------------------------------------------ GPU side


def count_train_flops(architecture: dict[str, Any], patch: int, batch: int, steps: int) -> float:
    """Counted training FLOPs of ``steps`` steps of ``batch`` patches (3 x forward conv FLOPs)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from speed_gpu import train_flops_per_patch

    from deconvlab import models

    kwargs = {k: v for k, v in (architecture.get("kwargs") or {}).items() if k != "name"}
    model = models.build_model(architecture["builder"], **kwargs)
    return train_flops_per_patch(model, patch) * batch * steps


def gpu_kind(hardware: str) -> str | None:
    """'H100' or 'H200' when a card or benchmark names one of those GPUs, else None."""
    return next((k for k in DATASHEET_TFLOPS if k in str(hardware)), None)


def gpu_peak(kind: str) -> tuple[float, str]:
    """A Hopper GPU's datasheet bf16 peak, to compare with the T4's datasheet peak (like with like)."""
    return DATASHEET_TFLOPS[kind], f"{kind} SXM datasheet, dense bf16, {DATASHEET_URLS[kind]}"


def measured_peak() -> str | None:
    """The bf16 matmul rate speed_gpu.py measured, as a sentence, or None."""
    if not SPEED_GPU.is_file():
        return None
    meta = json.loads(SPEED_GPU.read_text())["meta"]
    peak = meta.get("bf16_matmul_tflops_median", meta.get("bf16_matmul_tflops"))
    if not isinstance(peak, (int, float)) or not math.isfinite(peak):
        return None
    return (f"For reference, `benchmarks/speed_gpu.py` measured a bf16 matmul rate of {peak:.0f} TFLOPS on "
            f"{meta.get('gpu', meta.get('device', '?'))} ({meta.get('date', '?')}); the datasheet peaks are used for the scaling so "
            "that both cards are compared like with like.")


def gpu_runs(weights: Path = WEIGHTS) -> list[dict[str, Any]]:
    """Every shipped card trained on an H100/H200, with its counted FLOPs, achieved TFLOPS, MFU and T4 estimate."""
    from deconvlab import config
    from deconvlab import weights as w

    runs = []
    for card in w.list_cards(weights):
        kind = gpu_kind(card.get("hardware", ""))
        if kind is None or not card.get("wall_time_s"):
            continue
        peak, _ = gpu_peak(kind)
        history = weights / f"{card['id']}{w.HISTORY_SUFFIX}"
        meta = json.loads(history.read_text())["meta"] if history.is_file() else {}
        profile = config.get_profile(card.get("profile", "paper"))
        # cards of the fused loop record their own batch and patch (SR: also its output side, which the MACs per
        # output pixel multiply); `train` runs, their history
        training = card.get("training") or {}
        patch = int(training.get("patch_hr") or training.get("patch") or meta.get("patch_size")
                    or profile.patch_size)
        batch = int(training.get("batch") or meta.get("batch_size") or profile.batch_size)
        steps = int(meta.get("steps_done") or card.get("epochs_run", profile.epochs) * profile.steps_per_epoch)
        flops = count_train_flops(card["architecture"], patch, batch, steps)
        wall = float(card["wall_time_s"])
        shared = int(card.get("gpu_shared_by") or 1)
        achieved = flops / wall / 1e12
        # jobs that shared one GPU each got about 1/shared of it: the GPU's utilisation is shared x one job's
        mfu = achieved * shared / peak
        runs.append({"id": card["id"], "hardware": card["hardware"], "kind": kind, "peak": peak,
                     "precision": card.get("precision", "?"), "patch": patch, "batch": batch, "steps": steps,
                     "flops": flops, "wall_s": wall, "shared": shared, "tflops": achieved, "mfu": mfu,
                     "t4_s": flops / (T4_PEAK_TFLOPS * 1e12 * mfu)})
    return runs


def speed_rows() -> list[dict[str, Any]]:
    if not SPEED_GPU.is_file():
        return []
    # Medians of repeated runs where speed_gpu.py repeats them, a single run's rate in older result files.
    rows = []
    for r in json.loads(SPEED_GPU.read_text())["rows"]:
        rate = r.get("patches_per_s_median", r.get("patches_per_s"))
        if rate is not None:
            rows.append({**r, "patches_per_s": rate, "impl": r.get("contender") or r.get("impl", "?"),
                         "mfu": r.get("mfu", r.get("mfu_vs_bf16_peak"))})
    return rows


def workshop_cell_t4(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Estimated T4 seconds of one training cell in the workshop profile (the profile's red_net), or None."""
    if not runs:
        return None
    from deconvlab import config

    p = config.get_profile("workshop")
    arch = {"builder": "red_net", "kwargs": {"channels": 1, "depth": p.depth, "width": p.width}}
    flops = count_train_flops(arch, p.patch_size, p.batch_size, p.train_steps)
    mfus = sorted(r["mfu"] for r in runs)
    mfu = mfus[len(mfus) // 2]
    return {"flops": flops, "mfu": mfu, "t4_s": flops / (T4_PEAK_TFLOPS * 1e12 * mfu), "steps": p.train_steps,
            "what": f"red_net(depth={p.depth}, width={p.width}), {p.train_steps} steps of {p.batch_size} "
                    f"patches of {p.patch_size}x{p.patch_size}"}


def runs_t4_s(runs: Sequence[Run], cell_t4: dict[str, Any] | None) -> float | None:
    """Estimated T4 seconds of counted training runs: a workshop-profile run each, or the fraction of one that a
    literal step count gives; None when there is no GPU measurement to scale from."""
    if not runs:
        return 0.0
    if cell_t4 is None:
        return None
    return sum(r.copies * cell_t4["t4_s"] * (1.0 if r.steps is None else min(1.0, r.steps / cell_t4["steps"]))
               for r in runs)


def t4_seconds(section: Section, cell_t4: dict[str, Any] | None) -> float | None:
    """Estimated T4 seconds of a section: measured CPU time of the cells that do not train, plus its training runs."""
    trained = runs_t4_s(section.runs, cell_t4)
    return None if trained is None else section.cpu_s - section.train_cpu_s + trained


def exercise_t4_seconds(exercise: Exercise, cell_t4: dict[str, Any] | None) -> float | None:
    trained = runs_t4_s(exercise.runs, cell_t4)
    return None if trained is None else exercise.solution_s - exercise.train_cpu_s + trained


def chapter_t4_seconds(ch: Chapter, cell_t4: dict[str, Any] | None) -> float | None:
    """Estimated T4 seconds of a whole notebook (the solutions' cells are timed with their exercises)."""
    parts = [t4_seconds(s, cell_t4) for s in ch.sections] + [exercise_t4_seconds(e, cell_t4) for e in ch.exercises]
    if ch.total_s is None or None in parts:
        return None
    solutions = sum(e.solution_s for e in ch.exercises)
    return sum(parts) - solutions + ch.overhead_s  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ agendas


@dataclasses.dataclass(frozen=True)
class Block:
    """One slot of an agenda: part of a chapter (sections chosen by a substring of their title), or a break."""

    name: str
    chapter: str | None = None  # notebook stem
    sections: Sequence[str] = ("*",)  # substrings of the titles of the sections discussed ("*": every taught section)
    fixed_min: float = 0.0  # minutes not derived from a chapter (a break, the welcome): a planning choice
    exercises: bool = True  # whether the planner may schedule exercises in this slot
    note: str = ""


@dataclasses.dataclass
class Slot:
    block: Block
    chapter: Chapter | None = None
    sections: list[Section] = dataclasses.field(default_factory=list)
    learn_min: float = 0.0  # the discussed sections' share of the chapter's stated time to learn
    run_s: float = 0.0  # measured CPU time of every cell the slot runs (top to bottom), answers excluded
    t4_s: float | None = 0.0  # the same, estimated for a T4 with the workshop profile
    exercises: list[Exercise] = dataclasses.field(default_factory=list)

    @property
    def exercise_min(self) -> float:
        return len(self.exercises) * EXERCISE_MIN + sum(e.solution_s for e in self.exercises) / 60

    @property
    def estimate_min(self) -> float:
        """Stated time to learn + exercises + measured run time (+ the planned minutes of a break or welcome)."""
        return self.block.fixed_min + self.learn_min + self.exercise_min + self.run_s / 60

    @property
    def minutes(self) -> int:
        return SLOT_STEP_MIN * math.ceil(round(self.estimate_min, 6) / SLOT_STEP_MIN)


@dataclasses.dataclass
class Agenda:
    key: str
    title: str
    limit_min: int
    start_min: int  # clock time of the first slot, minutes after midnight
    slots: list[Slot]

    @property
    def total_min(self) -> int:
        return sum(s.minutes for s in self.slots)

    @property
    def unallocated_min(self) -> int:
        return self.limit_min - self.total_min

    @property
    def fits(self) -> bool:
        return self.total_min <= self.limit_min

    def t4_extra_s(self, cell_t4: dict[str, Any] | None) -> float | None:
        """Estimated extra seconds of the slots' runs and answers on a T4 with the workshop profile, or None."""
        extra = 0.0
        for s in self.slots:
            t4 = [s.t4_s] + [exercise_t4_seconds(e, cell_t4) for e in s.exercises]
            if None in t4:
                return None
            extra += sum(t4) - s.run_s - sum(e.solution_s for e in s.exercises)  # type: ignore[arg-type]
        return extra

    def homework(self) -> dict[Chapter, list[Exercise]]:
        """Exercises of the chapters in the agenda that no slot has time for."""
        done = {id(e) for s in self.slots for e in s.exercises}
        chapters = list(dict.fromkeys(s.chapter for s in self.slots if s.chapter is not None))
        return {ch: [e for e in ch.exercises if id(e) not in done] for ch in chapters}


AGENDAS: dict[str, dict[str, Any]] = {
    "agenda_3h": {
        "title": "Three-hour session",
        "limit_min": 180,
        "start_min": 0,
        "blocks": [
            Block("Welcome; environment check", "00_setup", fixed_min=10, exercises=False,
                  note="participants run the setup notebook while you introduce the article and its claims"),
            Block("Degradations and metrics", "01_background", ("degradation zoo", "PSNR and SSIM"),
                  note="what enhancement is measured against; skip the classical methods"),
            Block("Deconvolution is a transposed convolution", "02_core_concepts",
                  ("is a matrix", "is $C^\\top$", "the inverse?"), note="the adjoint test is the key idea of the session"),
            Block("Break", fixed_min=10),
            Block("Convolve, deconvolve, fuse", "03_conv_deconv_fuse",
                  ("as a Keras model", "Training and testing", "Verdicts"),
                  note="start the run, then explain the model while it trains"),
            Block("The article's code, repaired; shipped weights", "04_code_example",
                  ("as printed", "Compile and fit", "shipped paper weights"),
                  note="let participants spot the bugs before showing the fixes"),
            Block("Wrap-up: which claims survived?", "06_faq", ("Q2",), fixed_min=10, exercises=False,
                  note="the verdicts on the board; chapters 5 and 6 are reading for after the session"),
        ],
    },
    "agenda_day": {
        "title": "One-day workshop",
        "limit_min": 8 * 60,
        "start_min": 9 * 60,
        "blocks": [
            Block("Welcome; environment check", "00_setup", fixed_min=15, exercises=False),
            Block("Chapter 1: background", "01_background"),
            Block("Coffee break", fixed_min=15),
            Block("Chapter 2: core concepts", "02_core_concepts"),
            Block("Lunch", fixed_min=60),
            Block("Chapter 3: convolve, deconvolve, fuse", "03_conv_deconv_fuse"),
            Block("Coffee break", fixed_min=15),
            Block("Chapter 4: the code example", "04_code_example"),
            Block("Chapter 5: trends and challenges", "05_trends_challenges"),
            Block("Chapter 6: FAQ, and discussion", "06_faq"),
        ],
    },
}


def _select(chapter: Chapter, selectors: Sequence[str]) -> list[Section]:
    if "*" in selectors:
        return [s for s in chapter.sections if s.taught]
    chosen = []
    for sel in selectors:
        hits = [s for s in chapter.sections if sel.lower() in s.title.lower()]
        if not hits:
            raise SystemExit(f"make_workshop: no section of {chapter.stem} matches {sel!r}; sections: "
                             + "; ".join(s.title for s in chapter.sections))
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _chapter_slot(block: Block, ch: Chapter, cell_t4: dict[str, Any] | None, key: str) -> Slot:
    if ch.learn_min is None and not block.fixed_min:
        raise SystemExit(f"make_workshop: {ch.stem} states no time to learn (`**Time to learn**: about N minutes` in "
                         f"its Prerequisites) and agenda {key} plans no minutes for it")
    secs = _select(ch, block.sections)
    # A notebook runs top to bottom: the slot runs every taught section up to the last one it discusses.
    last = max((ch.sections.index(s) for s in secs), default=-1)
    ran = [s for s in ch.sections[:last + 1] if s.taught]
    t4s = [t4_seconds(s, cell_t4) for s in ran]
    return Slot(block, ch, secs, learn_min=sum(ch.section_learn_min(s) for s in secs),
                run_s=sum(s.cpu_s for s in ran) + ch.overhead_s,
                t4_s=None if None in t4s else sum(t4s) + ch.overhead_s,  # type: ignore[arg-type]
                )


def plan_agenda(key: str, chapters: dict[str, Chapter], cell_t4: dict[str, Any] | None = None,
                allow_missing: bool = False) -> Agenda:
    """Slots from the chapters' stated times to learn and measured run times; then exercises, one chapter at a time
    in turn (each chapter's in order), as long as the agenda still fits its time."""
    spec = AGENDAS[key]
    slots = []
    for block in spec["blocks"]:
        ch = chapters.get(block.chapter) if block.chapter else None
        if block.chapter is None or ch is None and allow_missing:
            slots.append(Slot(block))
            continue
        if ch is None:
            raise SystemExit(f"make_workshop: agenda {key} needs notebooks/{block.chapter}.ipynb")
        if ch.total_s is None and not allow_missing:
            raise SystemExit(f"make_workshop: notebooks/{ch.stem}.ipynb has no measured run time: `make execute`")
        slots.append(_chapter_slot(block, ch, cell_t4, key))
    agenda = Agenda(key, spec["title"], spec["limit_min"], spec["start_min"], slots)
    taken: set[int] = set()
    open_slots = [s for s in slots if s.chapter is not None and s.block.exercises]
    while open_slots:
        for slot in list(open_slots):
            todo = [e for e in slot.chapter.exercises if id(e) not in taken]  # type: ignore[union-attr]
            if todo:
                slot.exercises.append(todo[0])
                if agenda.fits:
                    taken.add(id(todo[0]))
                    continue
                slot.exercises.pop()
            open_slots.remove(slot)
    return agenda


def _fmt_min(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds / 60:.1f}" if seconds < 600 else f"{seconds / 60:.0f}"


def _numbers(ch: Chapter, exercises: Sequence[Exercise]) -> str:
    """Exercise numbers as ranges: '1, 2, 4' -> '1–2, 4'."""
    numbers = [ch.exercises.index(e) + 1 for e in exercises]
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def render_agenda(agenda: Agenda, cell_t4: dict[str, Any] | None = None) -> str:
    notes = any(s.block.note for s in agenda.slots)
    lines = [f"<!-- Generated by tools/make_workshop.py ({agenda.key}); do not edit by hand. -->", "",
             "| start | block | chapter: sections discussed | exercises | time to learn (min, stated) | "
             "exercises (min) | run, CPU quick (min, measured) | slot (min) |" + (" notes |" if notes else ""),
             "|---|---|---|---|---:|---:|---:|---:|" + ("---|" if notes else "")]
    clock = agenda.start_min
    for s in agenda.slots:
        ch, b = s.chapter, s.block
        planned = f"{b.fixed_min:g} (planned)" if b.fixed_min else ""
        if ch is None:
            where = f"{b.chapter} (not written yet)" if b.chapter else "—"
            cells = [where, "—", planned or "—", "—", "—"]
        else:
            label = f"[{ch.title}](../../notebooks/{ch.stem}.ipynb)"
            taught = [x for x in ch.sections if x.taught]
            where = label + (": all sections" if s.sections == taught else
                             ": " + "; ".join(x.title for x in s.sections) if s.sections else ": reading")
            learn = f"{s.learn_min:.0f}" if ch.learn_min is not None else ""
            cells = [where, _numbers(ch, s.exercises) or "—", " + ".join(x for x in (learn, planned) if x),
                     f"{s.exercise_min:.0f}" if s.exercises else "—", _fmt_min(s.run_s)]
        lines.append(f"| {_clock(clock)} | {b.name} | " + " | ".join(cells) + f" | {s.minutes} |"
                     + (f" {b.note} |" if notes else ""))
        clock += s.minutes
    share = agenda.unallocated_min / agenda.limit_min
    lines += ["", f"Ends at {_clock(clock)}: {agenda.total_min} of {agenda.limit_min} minutes planned "
              f"({'fits' if agenda.fits else 'DOES NOT FIT: shorten a block'}); {agenda.unallocated_min} minutes "
              f"({share:.0%}) unallocated.", ""]
    homework = [f"chapter {int(ch.stem[:2])}: {_numbers(ch, left)}" if ch.stem[:2].isdigit() else
                f"{ch.stem}: {_numbers(ch, left)}"
                for ch, left in agenda.homework().items() if left]
    lines += [f"Each exercise done in class is planned at {EXERCISE_MIN} minutes plus its solution's measured run "
              f"time; slots are rounded up to {SLOT_STEP_MIN} minutes. Left as homework: "
              + ("; ".join(homework) if homework else "none") + ".", ""]
    extra = agenda.t4_extra_s(cell_t4)
    if extra is not None and extra > 0:
        lines += [f"With the `workshop` profile on a Colab T4 instead, the runs and answers of these slots would take "
                  f"about {extra / 60:.0f} minutes more (an estimate, see {{doc}}`timings`); drop exercises to make "
                  "room, or give the room the `quick` profile.", ""]
    if not agenda.fits:
        print(f"warning: agenda {agenda.key} needs {agenda.total_min} min, more than {agenda.limit_min}",
              file=sys.stderr)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ timing tables


def render_timings(chapters: Sequence[Chapter], runs: Sequence[dict[str, Any]],
                   cell_t4: dict[str, Any] | None) -> str:
    peaks = sorted({gpu_peak(r["kind"]) + (r["kind"],) for r in runs})
    lines = ["<!-- Generated by tools/make_workshop.py; do not edit by hand. -->", "",
             "## Per chapter", "",
             "| chapter | original heading | executed on | time to learn (min, stated) | code cells | training runs "
             "(counted) | exercises | CPU quick, whole notebook (min, measured) | T4 workshop, whole notebook "
             "(min, estimate) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for ch in chapters:
        learn = "—" if ch.learn_min is None else f"{ch.learn_min:.0f}"
        runs_n = total_runs(ch.runs) + sum(total_runs(e.runs) for e in ch.exercises)
        lines.append(f"| [{ch.title}](../../notebooks/{ch.stem}.ipynb) | {ch.original or '—'} | {ch.device} | "
                     f"{learn} | {sum(s.code_cells for s in ch.sections)} | {runs_n} | {len(ch.exercises)} | "
                     f"{_fmt_min(ch.total_s)} | {_fmt_min(chapter_t4_seconds(ch, cell_t4))} |")
    lines += ["", "## Per section", "",
              "Time to learn: the chapter's stated time, shared among its taught sections in proportion to their "
              "words. Seconds: measured on the CPU with the quick profile (the exercises' answers are timed below).",
              "", "| chapter | section | time to learn (min) | code cells | training runs | seconds |",
              "|---|---|---:|---:|---:|---:|"]
    for ch in chapters:
        for s in ch.sections:
            if s.code_cells or ch.section_learn_min(s):
                seconds = s.cpu_s - sum(e.solution_s for e in ch.exercises) if not s.taught else s.cpu_s
                learn = f"{ch.section_learn_min(s):.1f}" if s.taught and ch.learn_min is not None else "—"
                lines.append(f"| {ch.stem} | {s.title} | {learn} | {s.code_cells} | {total_runs(s.runs)} | "
                             f"{max(seconds, 0.0):.1f} |")
    lines += ["", "## Exercises", "",
              f"An exercise done in class is planned at {EXERCISE_MIN} minutes plus its solution's run time.", "",
              "| chapter | exercise | solution, CPU quick (s, measured) | training runs | solution, T4 workshop "
              "(s, estimate) |", "|---|---|---:|---:|---:|"]
    for ch in chapters:
        for n, e in enumerate(ch.exercises, 1):
            t4 = exercise_t4_seconds(e, cell_t4)
            lines.append(f"| {ch.stem} | {n}. {e.title} | {e.solution_s:.1f} | {total_runs(e.runs)} | "
                         f"{'n/a' if t4 is None else f'{t4:.0f}'} |")
    lines += ["", "## Training on the GPU (measured) and on a Colab T4 (estimate)", ""]
    if runs:
        lines += ["| card | hardware | precision | steps × batch × output patch | counted TFLOP | GPU wall (min) | "
                  "jobs sharing the GPU | achieved TFLOPS (this job) | MFU (GPU) | T4 (min, estimate) |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in runs:
            lines.append(f"| {r['id']} | {r['hardware']} | {r['precision']} | {r['steps']} × {r['batch']} × "
                         f"{r['patch']}² | {r['flops'] / 1e12:,.0f} | {r['wall_s'] / 60:.1f} | {r['shared']} | "
                         f"{r['tflops']:.1f} | {r['mfu']:.1%} | {r['t4_s'] / 60:.0f} |")
    else:
        lines.append("No shipped card trained on an H100 or H200 is in `data/weights/` yet: GPU columns read n/a.")
    rows = speed_rows()
    if rows:
        lines += ["", "Training throughput of the paper network from `benchmarks/results/speed_gpu.json`:", "",
                  "| implementation | precision | batch × patch | patches/s | TFLOPS | MFU (vs the measured matmul rate) |",
                  "|---|---|---|---:|---:|---:|"]
        for r in rows:
            tflops = r.get("tflops")
            mfu = r.get("mfu")
            lines.append(f"| {r['impl']} | {r['precision']} | {r['batch']} × {r['patch']}² | "
                         f"{r['patches_per_s']:,.0f} | {'' if tflops is None else f'{tflops:.1f}'} | "
                         f"{'' if mfu is None else f'{mfu:.1%}'} |")
    lines += ["", "## How the estimates are made", "",
              "No T4 was available to measure: every T4 number on this page is an estimate.", "",
              f"- T4 peak: {T4_PEAK_TFLOPS:g} TFLOPS (fp16 tensor cores, [NVIDIA T4 datasheet]({T4_URL})).",
              *(f"- {kind} peak: {peak:.0f} TFLOPS ({src})." for peak, src, kind in peaks),
              "- Counted FLOPs: the multiply-adds per output pixel that the cards record (`deconvlab.models."
              "macs_per_pixel`: every convolution and transposed convolution, strided ones included), 2 FLOPs per "
              "multiply-add; a training step is 3 forward passes (`benchmarks/speed_gpu.py`).",
              "- MFU (GPU) = the job's achieved TFLOPS × the jobs that shared the GPU / its peak: the jobs on one "
              "GPU were alike, so each had about an equal share.",
              "- T4 estimate = counted FLOPs / (T4 peak × MFU measured on the data-centre GPU). It assumes the T4 "
              "reaches the same fraction of its peak as that GPU did; a T4's memory bandwidth is lower, so treat "
              "it as a lower bound for one run."]
    if measured_peak():
        lines.append(f"- {measured_peak()}")
    if cell_t4:
        lines.append(f"- One training run in the workshop profile ({cell_t4['what']}) counts "
                     f"{cell_t4['flops'] / 1e12:,.0f} TFLOP; at the median MFU of the GPU runs "
                     f"({cell_t4['mfu']:.1%}) that is about {cell_t4['t4_s'] / 60:.1f} min on a T4. Every counted "
                     "training run is one such run, or its share of one when the code gives its steps (a few "
                     "`train_on_batch` steps, or `epochs=` and `steps_per_epoch=` such as "
                     "`profile.train_steps // 2`, read with the workshop profile); cells that do not train keep "
                     "their measured CPU time. Runs whose steps the code does not give, and smaller models, make "
                     "the chapter estimates too high; loops of unknown length, too low.")
    lines += ["- Training runs are counted in the code without running it: `model.fit(...)`, `dl.train.train(...)` "
              "and `deconvlab train` start a run; `train_on_batch` steps in one function or cell form one run, "
              "whose `range` loop is its steps; any other loop around a run repeats it as often as it has items "
              "(literal tuples, lists and dicts, also when named in an earlier cell); a function of the notebook "
              "that trains counts at each call. The full rules are in `tools/make_workshop.py`.", ""]
    return "\n".join(lines)


def generate(notebooks: Sequence[Path] | None = None, weights: Path = WEIGHTS,
             allow_missing: bool = False) -> dict[str, str]:
    """The generated files, by name, as text."""
    chapters = read_chapters(notebooks)
    runs = gpu_runs(weights)
    cell_t4 = workshop_cell_t4(runs)
    files = {"timings.md": render_timings(list(chapters.values()), runs, cell_t4)}
    for key in AGENDAS:
        files[f"{key}.md"] = render_agenda(plan_agenda(key, chapters, cell_t4, allow_missing), cell_t4)
    return files


def read_chapters(notebooks: Sequence[Path] | None = None) -> dict[str, Chapter]:
    paths = list(notebooks) if notebooks is not None else nbtools.chapter_paths()
    return {p.stem: read_chapter(p) for p in paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--allow-missing", action="store_true", help="chapters not written yet (development)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in generate(weights=args.weights, allow_missing=args.allow_missing).items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
