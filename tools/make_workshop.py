"""Generate the workshop kit's timing tables and agendas from measured run times (``make workshop``).

Every time in ``book/workshop/_generated/*.md`` comes from a measurement or from a stated formula:

* **CPU, quick profile (measured).** ``make execute`` runs each notebook with nbclient, which stamps every code cell
  with ``metadata.execution`` (``iopub.execute_input`` … ``shell.execute_reply``) and the notebook with
  ``metadata.deconvlab.seconds``; section and exercise times are sums of those cell times.
* **H100 / H200 (measured).** The shipped model cards (``data/weights/*.json``) record ``wall_time_s`` of their
  training run on the data-centre GPU they name, and ``benchmarks/results/speed_gpu.json`` the training throughput of
  the paper network.
* **Colab T4 (estimated).** A training run's FLOPs are counted from the layer shapes
  (``benchmarks/speed_gpu.conv_flops_per_image``: 2 per multiply-add, a training step = 3 forward passes). The
  GPU runs give the achieved model FLOP utilisation (MFU = counted FLOPs / wall time / GPU peak); a T4 run is
  estimated as counted FLOPs / (T4 peak × the same MFU). T4 peak: 65 TFLOPS fp16 tensor (NVIDIA T4 datasheet);
  H100/H200 peak: the datasheets' 989 TFLOPS (SXM, dense bf16; the H200 has the H100's compute) — datasheet against
  datasheet. Cells that do not train keep their measured CPU time.

Run it after ``make execute`` and after new cards or benchmark results land; ``tests/test_workshop.py`` fails when
the committed tables differ from what this script makes now.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import re
import sys
from collections.abc import Sequence
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
# A code cell "trains" when it calls one of these (deconvlab's train.train, Keras fit, the CLI's train).
TRAIN_PATTERN = re.compile(r"\btrain\.train\s*\(|\.fit\s*\(|deconvlab\s+train\b|\btrain_model\s*\(")
SOLUTION_TAG = "solution"


@dataclasses.dataclass
class Section:
    title: str
    cpu_s: float = 0.0  # measured, quick profile
    code_cells: int = 0
    train_cells: int = 0
    train_cpu_s: float = 0.0  # measured CPU time of the training cells (replaced by the T4 estimate)
    solutions: list[float] = dataclasses.field(default_factory=list)  # measured seconds of each solution cell


@dataclasses.dataclass
class Chapter:
    path: Path
    title: str
    original: str
    total_s: float | None
    device: str
    sections: list[Section]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def solutions(self) -> list[float]:
        return [s for sec in self.sections for s in sec.solutions]

    @property
    def train_cells(self) -> int:
        return sum(s.train_cells for s in self.sections)


def _stamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def cell_seconds(cell: nbformat.NotebookNode) -> float:
    """The run time nbclient recorded for a code cell (0 when it has no timing)."""
    ex = cell.get("metadata", {}).get("execution", {})
    start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not start or not end:
        return 0.0
    return max(0.0, (_stamp(end) - _stamp(start)).total_seconds())


def read_chapter(path: Path) -> Chapter:
    """Title, original heading, and the measured time, code cells, training cells and solutions of each section."""
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("deconvlab") or {}
    title, original = path.stem, ""
    sections = [Section("(title, Colab set-up)")]
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "markdown":
            first = src.splitlines()[0] if src else ""
            if first.startswith("# ") and title == path.stem:
                title = first[2:].strip()
            found = re.search(r"\*原标题\s*[—-]+\s*(.+?)\*", src) or re.search(r"^\*([^*]*[\u4e00-\u9fff][^*]*)\*", src, re.M)
            if found and not original:
                original = " ".join(re.sub(r"^原标题\s*[—-]+\s*", "", found.group(1)).split())
            if first.startswith("## "):
                sections.append(Section(first[3:].strip()))
            continue
        if cell.cell_type != "code" or not src:
            continue
        sec, seconds = sections[-1], cell_seconds(cell)
        sec.cpu_s += seconds
        sec.code_cells += 1
        # Cells that must raise (the article's broken code) do not train anything.
        trains = bool(TRAIN_PATTERN.search(src)) and "raises-exception" not in cell.metadata.get("tags", [])
        sec.train_cells += trains
        sec.train_cpu_s += seconds if trains else 0.0
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            sec.solutions.append(seconds)
    return Chapter(path, title, original, meta.get("seconds"), str(meta.get("device", "not executed")), sections)


# ------------------------------------------------------------------------------------------------ GPU side


def count_train_flops(architecture: dict[str, Any], patch: int, batch: int, steps: int) -> float:
    """Counted training FLOPs of ``steps`` steps of ``batch`` patches (3 x forward conv FLOPs)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from speed_gpu import conv_flops_per_image

    from deconvlab import models

    kwargs = {k: v for k, v in (architecture.get("kwargs") or {}).items() if k != "name"}
    model = models.build_model(architecture["builder"], **kwargs)
    return 3.0 * conv_flops_per_image(model, patch, patch) * batch * steps


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
    peak = meta.get("bf16_matmul_tflops")
    if not isinstance(peak, (int, float)) or not math.isfinite(peak):
        return None
    return (f"For reference, `benchmarks/speed_gpu.py` measured a bf16 matmul rate of {peak:.0f} TFLOPS on "
            f"{meta.get('device', '?')} ({meta.get('date', '?')}); the datasheet peaks are used for the scaling so "
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
        patch = int(meta.get("patch_size") or profile.patch_size)
        batch = int(meta.get("batch_size") or profile.batch_size)
        steps = int(meta.get("steps_done") or card.get("epochs_run", profile.epochs) * profile.steps_per_epoch)
        flops = count_train_flops(card["architecture"], patch, batch, steps)
        wall = float(card["wall_time_s"])
        achieved = flops / wall / 1e12
        runs.append({"id": card["id"], "hardware": card["hardware"], "kind": kind, "peak": peak, "precision": card.get("precision", "?"),
                     "patch": patch, "batch": batch, "steps": steps, "flops": flops, "wall_s": wall,
                     "tflops": achieved, "mfu": achieved / peak,
                     "t4_s": flops / (T4_PEAK_TFLOPS * 1e12 * (achieved / peak))})
    return runs


def speed_rows() -> list[dict[str, Any]]:
    if not SPEED_GPU.is_file():
        return []
    return [r for r in json.loads(SPEED_GPU.read_text())["rows"] if "patches_per_s" in r]


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
    return {"flops": flops, "mfu": mfu, "t4_s": flops / (T4_PEAK_TFLOPS * 1e12 * mfu),
            "what": f"red_net(depth={p.depth}, width={p.width}), {p.train_steps} steps of {p.batch_size} "
                    f"patches of {p.patch_size}x{p.patch_size}"}


def t4_seconds(section: Section, cell_t4: dict[str, Any] | None) -> float | None:
    """Estimated T4 seconds of a section: measured CPU time of the cells that do not train, one workshop training
    run per training cell."""
    if section.train_cells and cell_t4 is None:
        return None
    return section.cpu_s - section.train_cpu_s + section.train_cells * (cell_t4["t4_s"] if cell_t4 else 0.0)


# ------------------------------------------------------------------------------------------------ agendas


@dataclasses.dataclass
class Block:
    """One slot of an agenda: part of a chapter (sections chosen by a substring of their title) and exercises."""

    name: str
    teach_min: int  # planned talking / discussion minutes (a teaching choice, not a measurement)
    chapter: str | None = None  # notebook stem
    sections: Sequence[str] = ()  # substrings of the titles of the sections discussed ("*": every section)
    exercises: Sequence[int] = ()  # 1-based exercise numbers (the chapter's solution cells, in order)
    note: str = ""


AGENDAS: dict[str, dict[str, Any]] = {
    "agenda_3h": {
        "title": "Three-hour session",
        "limit_min": 180,
        "blocks": [
            Block("Welcome; environment check", 10, "00_setup", ("*",),
                  note="participants run the setup notebook while you introduce the article and its claims"),
            Block("Degradations and metrics", 15, "01_background", ("degradation zoo", "PSNR and SSIM"), (1,),
                  note="what enhancement is measured against; skip the classical methods"),
            Block("Deconvolution is a transposed convolution", 20, "02_core_concepts",
                  ("is a matrix", "is $C^\\top$", "the inverse?"), (1,),
                  note="the adjoint test is the key idea of the session"),
            Block("Break", 10),
            Block("Convolve, deconvolve, fuse", 25, "03_conv_deconv_fuse",
                  ("as a Keras model", "Training and testing", "Verdicts"), (1,),
                  note="start the run, then explain the model while it trains"),
            Block("The article's code, repaired; shipped weights", 20, "04_code_example",
                  ("as printed", "Compile and fit", "shipped paper weights"), (1,),
                  note="let participants spot the bugs before showing the fixes"),
            Block("Wrap-up: which claims survived?", 10, "06_faq", ("Q2",),
                  note="the verdicts on the board; chapters 5 and 6 are reading for after the session"),
        ],
    },
    "agenda_day": {
        "title": "One-day workshop",
        "limit_min": 7 * 60 + 30,
        "blocks": [
            Block("Welcome; environment check", 15, "00_setup", ("*",)),
            Block("Chapter 1: background", 35, "01_background", ("*",), (1, 2, 3, 4)),
            Block("Coffee break", 15),
            Block("Chapter 2: core concepts", 40, "02_core_concepts", ("*",), (1, 2, 3, 4)),
            Block("Lunch", 60),
            Block("Chapter 3: convolve, deconvolve, fuse", 45, "03_conv_deconv_fuse", ("*",), (1, 2, 3, 4)),
            Block("Coffee break", 15),
            Block("Chapter 4: the code example", 40, "04_code_example", ("*",), (1, 2, 3, 4)),
            Block("Chapter 5: trends and challenges", 25, "05_trends_challenges", ("*",), (1, 2)),
            Block("Chapter 6: FAQ, and discussion", 20, "06_faq", ("*",), (1, 2)),
        ],
    },
}


def _select(chapter: Chapter, selectors: Sequence[str]) -> list[Section]:
    if not selectors:
        return []
    if "*" in selectors:
        return [s for s in chapter.sections if s.title.lower() not in ("exercises", "references")]
    chosen = []
    for sel in selectors:
        hits = [s for s in chapter.sections if sel.lower() in s.title.lower()]
        if not hits:
            raise SystemExit(f"make_workshop: no section of {chapter.stem} matches {sel!r}; sections: "
                             + "; ".join(s.title for s in chapter.sections))
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _fmt_min(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds / 60:.1f}" if seconds < 600 else f"{seconds / 60:.0f}"


def render_agenda(key: str, chapters: dict[str, Chapter], cell_t4: dict[str, Any] | None,
                  allow_missing: bool = False) -> str:
    spec = AGENDAS[key]
    lines = [f"<!-- Generated by tools/make_workshop.py ({key}); do not edit by hand. -->", "",
             "| start | block | chapter: sections discussed | exercises | run, CPU quick (min, measured) | "
             "run, T4 workshop (min, estimated) | slot (min) | notes |",
             "|---|---|---|---|---:|---:|---:|---|"]
    clock = 0
    for b in spec["blocks"]:
        cpu = t4 = 0.0
        where, ex_text = "—", "—"
        unknown = False
        if b.chapter is not None:
            ch = chapters.get(b.chapter)
            if ch is None and allow_missing:
                lines.append(f"| {clock // 60}:{clock % 60:02d} | {b.name} | {b.chapter} (not written yet) | | | | "
                             f"{b.teach_min} | {b.note} |")
                clock += b.teach_min
                continue
            if ch is None:
                raise SystemExit(f"make_workshop: agenda {key} needs notebooks/{b.chapter}.ipynb")
            if ch.total_s is None and not allow_missing:
                raise SystemExit(f"make_workshop: notebooks/{ch.stem}.ipynb has no measured run time: `make execute`")
            secs = _select(ch, b.sections)
            sols = ch.solutions
            bad = [n for n in b.exercises if n > len(sols)]
            if bad and allow_missing:
                b = dataclasses.replace(b, exercises=[n for n in b.exercises if n <= len(sols)])
            elif bad:
                raise SystemExit(f"make_workshop: {ch.stem} has {len(sols)} solution cells; agenda {key} asks "
                                 f"for exercise(s) {bad}")
            # A notebook runs top to bottom: the block runs every cell up to the last section it discusses.
            last = max((ch.sections.index(s) for s in secs), default=-1)
            ran = ch.sections[:last + 1]
            cpu = sum(s.cpu_s for s in ran) + sum(sols[n - 1] for n in b.exercises)
            t4s = [t4_seconds(s, cell_t4) for s in ran]
            unknown = ch.total_s is None or any(v is None for v in t4s)
            t4 = sum(v for v in t4s if v is not None) + sum(sols[n - 1] for n in b.exercises)
            label = f"[{ch.title}](../../notebooks/{ch.stem}.ipynb)"
            where = label + (": all sections" if "*" in b.sections else
                             (": " + "; ".join(s.title for s in secs) if secs else ": reading"))
            ex_text = ", ".join(str(n) for n in b.exercises) or "—"
        run = max(cpu, 0.0 if unknown else t4)
        slot = b.teach_min + math.ceil(run / 60 / 5) * 5  # teaching time plus the run time, in 5-minute steps
        lines.append(f"| {clock // 60}:{clock % 60:02d} | {b.name} | {where} | {ex_text} | "
                     f"{_fmt_min(cpu) if b.chapter else '—'} | "
                     f"{('n/a' if unknown else _fmt_min(t4)) if b.chapter else '—'} | {slot} | {b.note} |")
        clock += slot
    lines += ["", f"Total: {clock} minutes of {spec['limit_min']} planned"
              f" ({'fits' if clock <= spec['limit_min'] else 'DOES NOT FIT: shorten a block'}).", ""]
    if clock > spec["limit_min"]:
        print(f"warning: agenda {key} needs {clock} min, more than {spec['limit_min']}", file=sys.stderr)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ timing tables


def render_timings(chapters: Sequence[Chapter], runs: Sequence[dict[str, Any]],
                   cell_t4: dict[str, Any] | None) -> str:
    peaks = sorted({gpu_peak(r["kind"]) + (r["kind"],) for r in runs})
    lines = ["<!-- Generated by tools/make_workshop.py; do not edit by hand. -->", "",
             "## Per chapter", "",
             "| chapter | original heading | executed on | code cells | training cells | exercises "
             "(solution cells) | CPU quick, whole notebook (min, measured) | T4 workshop (min, estimated) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for ch in chapters:
        t4 = [t4_seconds(s, cell_t4) for s in ch.sections]
        overhead = (ch.total_s or 0.0) - sum(s.cpu_s for s in ch.sections)
        unknown = ch.total_s is None or any(v is None for v in t4)
        t4_text = "n/a" if unknown else _fmt_min(sum(t4) + max(overhead, 0.0))
        lines.append(f"| [{ch.title}](../../notebooks/{ch.stem}.ipynb) | {ch.original or '—'} | {ch.device} | "
                     f"{sum(s.code_cells for s in ch.sections)} | {ch.train_cells} | {len(ch.solutions)} | "
                     f"{_fmt_min(ch.total_s)} | {t4_text} |")
    lines += ["", "## Per section (CPU, quick profile, measured)", "",
              "| chapter | section | code cells | training cells | seconds |", "|---|---|---:|---:|---:|"]
    for ch in chapters:
        for s in ch.sections:
            if s.code_cells:
                lines.append(f"| {ch.stem} | {s.title} | {s.code_cells} | {s.train_cells} | {s.cpu_s:.1f} |")
    lines += ["", "## Training on the GPU (measured) and on a Colab T4 (estimated)", ""]
    if runs:
        lines += ["| card | hardware | precision | steps × batch × patch | counted TFLOP | GPU wall (min) | "
                  "achieved TFLOPS | MFU | T4 estimate (min) |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for r in runs:
            lines.append(f"| {r['id']} | {r['hardware']} | {r['precision']} | {r['steps']} × {r['batch']} × "
                         f"{r['patch']}² | {r['flops'] / 1e12:,.0f} | {r['wall_s'] / 60:.1f} | {r['tflops']:.1f} | "
                         f"{r['mfu']:.1%} | {r['t4_s'] / 60:.0f} |")
    else:
        lines.append("No shipped card trained on an H100 or H200 is in `data/weights/` yet: GPU columns read n/a.")
    rows = speed_rows()
    if rows:
        lines += ["", "Training throughput of the paper network from `benchmarks/results/speed_gpu.json`:", "",
                  "| implementation | precision | batch × patch | patches/s | TFLOPS | MFU (vs the measured matmul rate) |",
                  "|---|---|---|---:|---:|---:|"]
        for r in rows:
            tflops = r.get("tflops")
            mfu = r.get("mfu_vs_bf16_peak")
            lines.append(f"| {r['impl']} | {r['precision']} | {r['batch']} × {r['patch']}² | "
                         f"{r['patches_per_s']:,.0f} | {'' if tflops is None else f'{tflops:.1f}'} | "
                         f"{'' if mfu is None else f'{mfu:.1%}'} |")
    lines += ["", "## How the estimates are made", "",
              f"- T4 peak: {T4_PEAK_TFLOPS:g} TFLOPS (fp16 tensor cores, [NVIDIA T4 datasheet]({T4_URL})).",
              *(f"- {kind} peak: {peak:.0f} TFLOPS ({src})." for peak, src, kind in peaks),
              "- Counted FLOPs: every Conv2D and Conv2DTranspose at stride 1, 2 FLOPs per multiply-add; a training "
              "step is 3 forward passes (`benchmarks/speed_gpu.py`).",
              "- T4 estimate = counted FLOPs / (T4 peak × MFU measured on the data-centre GPU). It assumes the T4 "
              "reaches the same fraction of its peak as that GPU did; a T4's memory bandwidth is lower, so treat "
              "it as a lower bound."]
    if measured_peak():
        lines.append(f"- {measured_peak()}")
    if cell_t4:
        lines.append(f"- A training cell in the workshop profile ({cell_t4['what']}) counts "
                     f"{cell_t4['flops'] / 1e12:,.0f} TFLOP; at the median MFU of the GPU runs "
                     f"({cell_t4['mfu']:.1%}) that is about {cell_t4['t4_s'] / 60:.1f} min on a T4. Every training "
                     "cell of a chapter is counted as one such run; the other cells keep their measured CPU time.")
    lines.append(f"- A code cell counts as training when it matches `{TRAIN_PATTERN.pattern}`.")
    lines.append("")
    return "\n".join(lines)


def generate(notebooks: Sequence[Path] | None = None, weights: Path = WEIGHTS,
             allow_missing: bool = False) -> dict[str, str]:
    """The generated files, by name, as text."""
    paths = list(notebooks) if notebooks is not None else nbtools.chapter_paths()
    chapters = {p.stem: read_chapter(p) for p in paths}
    runs = gpu_runs(weights)
    cell_t4 = workshop_cell_t4(runs)
    files = {"timings.md": render_timings(list(chapters.values()), runs, cell_t4)}
    for key in AGENDAS:
        files[f"{key}.md"] = render_agenda(key, chapters, cell_t4, allow_missing)
    return files


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
