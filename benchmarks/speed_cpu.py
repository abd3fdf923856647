"""CPU cost of denoising (sigma 25): the shipped U-Net and RED-Net cards through ``enhance``, and BM3D, in one run.

Every (method, image, tile) measurement runs in a fresh process (TensorFlow backend, CPU only) so its peak
resident memory (``ru_maxrss``) is its own. A process loads the model, warms it up on a 64x64 crop, then times
``deconvlab.infer.enhance(model, noisy, "denoise", tile=..., overlap=None)`` on the full image: the *first call*
(what a one-shot ``deconvlab enhance`` pays after start-up: it includes growing the allocator to the image's size and
tracing the tile step) and, with ``--repeats``, further calls on the same image in the same process (*repeat*: a
second image of that size). ``overlap=None`` makes the package derive an exact overlap from the model's receptive
field (tiled output = whole-image output). BM3D (``deconvlab.classical.bm3d_denoise``) runs on the same noisy
images at ``--bm3d-sizes`` (not at 4K: about 6 minutes per image reported, too slow for one run).

The machine is shared, so the measurements are interleaved: the small-image configurations run in ``--rounds``
rounds (rotated order), with the large-image ones spread between the rounds; optional configurations are skipped
when they would push the run past ``--budget-s``. Images: a mosaic of 320x320 crops of BSD68 (gray) from
``DECONVLAB_DATA``, plus AWGN sigma 25 (seed 0); a uniform-random image if the data are missing.
Writes ``speed_cpu.json`` and ``speed_cpu.md`` into ``--out``.

Usage: ``python benchmarks/speed_cpu.py`` (10-12 minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CARDS = {"unet": "denoise-unet-sigma25", "rednet": "denoise-sigma25"}
LABELS = {"unet": "U-Net", "rednet": "RED-Net", "bm3d": "BM3D"}
SIGMA = 25
CELL = 320  # side of the BSD68 crops in the mosaic
BATCH = 4  # tiles per forward pass in infer.tile_predict (enhance's default)
GOALS = {"unet_s_per_mpx": 5.0, "speedup_vs_bm3d": 10.0, "rss_4k_mb": 2000.0}
# rough first-call s/Mpx on this 2-core machine (only used to decide whether an optional configuration still fits)
EST_S_PER_MPX = {"unet": 1.5, "rednet": 5.0, "bm3d": 40.0}
STARTUP_S = 10.0
WHOLE_4K_TRIAL = "a trial on this machine (2026-12-02) took 80 s and peaked at 22.5 GB RSS of its 24 GB"


def shape_of(n: int) -> tuple[int, int]:
    """(height, width) of a size given on the command line: a square side, or 3840 for 3840x2160 (4K UHD)."""
    return (2160, 3840) if n == 3840 else (n, n)


def size_name(shape) -> str:
    h, w = shape
    return f"{w}x{h}" + (" (4K)" if (h, w) == (2160, 3840) else "")


# ------------------------------------------------------------------------------------------------ the worker


def make_image(h: int, w: int) -> tuple:
    """A clean gray mosaic of BSD68 crops (or uniform noise without the data) and its noisy copy (sigma 25, seed 0)."""
    import numpy as np

    from deconvlab.degrade import add_gaussian_noise

    root = Path(os.environ.get("DECONVLAB_DATA", "data/datasets")) / "bsd68"
    files = sorted(root.glob("test*.png"))
    if files:
        from deconvlab.io import read_image

        rows, cols = -(-h // CELL), -(-w // CELL)
        clean = np.zeros((rows * CELL, cols * CELL), np.float32)
        for k in range(rows * cols):
            img = read_image(files[k % len(files)], mode="gray")
            r, c = divmod(k, cols)
            clean[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = img[:CELL, :CELL]
        clean, source = clean[:h, :w], f"mosaic of {CELL}x{CELL} crops of BSD68 ({len(files)} images, cycled)"
    else:
        clean, source = np.random.default_rng(0).random((h, w), dtype=np.float32), "uniform random (no BSD68)"
    return add_gaussian_noise(clean, SIGMA, seed=0), source


def tiling(model, shape, tile: int) -> dict:
    """What ``enhance(..., tile=tile, overlap=None)`` does on an image of `shape`: tiles, overlap, and the work
    factor (pixels through the network, counting the zero tiles that pad the last batch, / image pixels)."""
    from deconvlab import infer

    h, w = shape
    if not tile or max(h, w) <= tile:
        return {"mode": "whole image", "tiles": 1, "overlap": 0, "work_factor": 1.0}
    radius, stride = infer.tiling_geometry(model)
    overlap = infer.default_overlap(model)
    t = max(tile // stride * stride, stride)
    th, tw = min(t + h % stride, h), min(t + w % stride, w)  # as long as the image modulo the stride
    n = len(infer._starts(h, th, t - overlap, stride)) * len(infer._starts(w, tw, t - overlap, stride))
    pixels = (-(-n // BATCH) * BATCH if n > BATCH else n) * th * tw
    return {"mode": "tiles", "tiles": n, "overlap": overlap, "radius": radius, "stride": stride,
            "work_factor": pixels / (h * w)}


def worker(spec: dict) -> dict:
    """One measurement in this (fresh) process; `spec`: method, shape, tile, repeats."""
    h, w = spec["shape"]
    noisy, source = make_image(h, w)
    info: dict = {"image": source}
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if spec["method"] == "bm3d":
        from deconvlab.classical import bm3d_denoise

        bm3d_denoise(noisy[:64, :64], SIGMA)  # imports and loads the library
        run = lambda: bm3d_denoise(noisy, SIGMA)  # noqa: E731
    else:
        from deconvlab import infer, weights

        card = weights.read_card(CARDS[spec["method"]])
        model = weights.load_pretrained(card=card)
        info.update(tiling(model, (h, w), spec["tile"]))
        info["card"], info["macs_per_pixel"] = card["id"], card.get("macs_per_pixel")
        infer.enhance(model, noisy[:64, :64], "denoise", tile=spec["tile"], overlap=None)  # loads the kernels
        run = lambda: infer.enhance(model, noisy, "denoise", tile=spec["tile"], overlap=None)  # noqa: E731
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu = [], []
    for _ in range(1 + spec.get("repeats", 0)):
        usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dict(info, first_s=times[0], repeat_s=times[1:], first_cpu_s=cpu[0], repeat_cpu_s=cpu[1:],
                peak_rss_mb=peak * 1024 / 1e6,
                rss_before_run_mb=rss_before * 1024 / 1e6, rss_after_imports_mb=rss_start * 1024 / 1e6)


def measure(spec: dict, timeout: float = 1800) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    start, load = time.perf_counter(), os.getloadavg()[0]
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - start}
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "wall_s": time.perf_counter() - start}
    return dict(json.loads(line[7:]), wall_s=time.perf_counter() - start, load_average=load)


# ------------------------------------------------------------------------------------------------ the plan


def config_key(c: dict) -> tuple:
    return (c["method"], tuple(c["shape"]), c["tile"])


def make_plan(args) -> list[dict]:
    """The ordered list of worker runs: small-image rounds (rotated) with the large-image runs spread between them.

    A tile at least as large as the image is the whole image, so it is measured once, as tile 0.
    """
    small, large_configs = [], []
    for n in args.sizes:
        shape = shape_of(n)
        is_large = max(shape) > args.small_max
        for method, tiles in (("unet", args.unet_tiles), ("rednet", args.rednet_tiles)):
            seen = set()
            for tile in tiles:
                t = 0 if not tile or tile >= max(shape) else tile
                if t in seen or (is_large and t == 0 and not (args.whole_large and method == "unet")):
                    continue
                seen.add(t)
                opt = is_large and tile in args.optional_tiles[method]
                (large_configs if is_large else small).append(
                    {"method": method, "shape": shape, "tile": t, "optional": opt,
                     "repeats": args.large_repeats[method] if is_large else args.repeats})
    for n in args.bm3d_sizes:
        shape = shape_of(n)
        spec = {"method": "bm3d", "shape": shape, "tile": 0, "optional": False, "repeats": 0}
        (large_configs if max(shape) > args.small_max else small).append(spec)
    # large images: args.large_rounds[method] processes per configuration, the second ones after all the first ones
    large = [dict(c)
             for k in range(max(args.large_rounds.values(), default=1)) for c in large_configs
             if k < args.large_rounds.get(c["method"], 1)]
    # alternate methods among the essential large runs and deal them out after the rounds; optional ones go last
    def alternate(specs):
        by_method: dict = {}
        for spec in specs:
            by_method.setdefault(spec["method"], []).append(spec)
        order = []
        while any(by_method.values()):
            order += [by_method[m].pop(0) for m in by_method if by_method[m]]
        return order

    essential = alternate([s for s in large if not s["optional"]])
    per_round = -(-len(essential) // args.rounds)
    plan = []
    for r in range(args.rounds):
        k = r % len(small) if small else 0
        plan += [dict(s, round=r + 1) for s in small[k:] + small[:k]]
        plan += [dict(s, round=r + 1) for s in essential[r * per_round : (r + 1) * per_round]]
    plan += [dict(s, round=args.rounds) for s in alternate([s for s in large if s["optional"]])]
    return plan


def estimate_s(spec: dict) -> float:
    h, w = spec["shape"]
    work = 1.0 if spec["method"] == "bm3d" else 1.9  # about the tiles' overlap and padding at 4K
    return STARTUP_S + (1 + spec["repeats"]) * EST_S_PER_MPX[spec["method"]] * work * h * w / 1e6


# ------------------------------------------------------------------------------------------------ the report


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (method, shape, tile): medians over the runs that worked."""
    rows: dict = {}
    for run in runs:
        row = rows.setdefault(config_key(run), {"method": run["method"], "shape": list(run["shape"]),
                                                 "tile": run["tile"], "runs": [], "skipped": 0, "errors": []})
        if run.get("skipped"):
            row["skipped"] += 1
        elif "error" in run:
            row["errors"].append(run["error"])
        else:
            row["runs"].append(run)
    out = []
    for row in rows.values():
        ok = row.pop("runs")
        h, w = row["shape"]
        row["megapixels"] = h * w / 1e6
        row["card"] = CARDS.get(row["method"])
        if ok:
            first = [r["first_s"] for r in ok]
            repeat = [t for r in ok for t in r["repeat_s"]]
            row.update({k: ok[0][k] for k in ("macs_per_pixel", "mode", "tiles", "overlap", "work_factor") if k in ok[0]})
            cpu = [r["first_cpu_s"] for r in ok]
            row.update(n_first=len(first), first_s=statistics.median(first), first_all_s=first,
                       cpu_s_per_mpx=statistics.median(cpu) / row["megapixels"], first_cpu_all_s=cpu,
                       load_averages=[round(r["load_average"], 2) for r in ok],
                       n_repeat=len(repeat), repeat_s=statistics.median(repeat) if repeat else None, repeat_all_s=repeat,
                       peak_rss_mb=max(r["peak_rss_mb"] for r in ok), image=ok[0]["image"])
            row["seconds"] = row["first_s"]
            row["s_per_mpx"] = row["first_s"] / row["megapixels"]
            row["repeat_s_per_mpx"] = row["repeat_s"] / row["megapixels"] if repeat else None
        out.append(row)
    return sorted(out, key=lambda r: (r["shape"][0] * r["shape"][1], list(LABELS).index(r["method"]), r["tile"] or 1e9))


def best_tiles(rows: list[dict]) -> dict:
    """Per network, per measured size: the tile with the lowest first-call s/Mpx (U-Net: within the RSS goal)."""
    best: dict = {}
    for r in rows:
        if r["method"] == "bm3d" or "s_per_mpx" not in r:
            continue
        if r["method"] == "unet" and r["peak_rss_mb"] > GOALS["rss_4k_mb"] and r["shape"] == [2160, 3840]:
            continue
        key = (r["method"], size_name(r["shape"]))
        if key not in best or r["s_per_mpx"] < best[key]["s_per_mpx"]:
            best[key] = r
    return {f"{m} {s}": {"tile": r["tile"], "s_per_mpx": r["s_per_mpx"]} for (m, s), r in best.items()}


def ratios(rows: list[dict]) -> list[dict]:
    """Speed ratios measured in this run: s/Mpx of the slower method / s/Mpx of the U-Net (best tile each)."""
    best: dict = {}
    for r in rows:
        if "s_per_mpx" in r:
            k = (r["method"], tuple(r["shape"]))
            if k not in best or r["s_per_mpx"] < best[k]["s_per_mpx"]:
                best[k] = r
    out = []
    shapes = sorted({s for _, s in best}, key=lambda s: s[0] * s[1])
    for shape in shapes:
        u = best.get(("unet", shape))
        for other in ("rednet", "bm3d"):
            o = best.get((other, shape))
            if u and o:
                out.append({"what": f"{LABELS[other]} / U-Net, {size_name(shape)}, same image",
                            "ratio": o["s_per_mpx"] / u["s_per_mpx"],
                            "cpu_ratio": o["cpu_s_per_mpx"] / u["cpu_s_per_mpx"],
                            "repeat_ratio": (o["repeat_s_per_mpx"] / u["repeat_s_per_mpx"]
                                             if o.get("repeat_s_per_mpx") and u.get("repeat_s_per_mpx") else None)})
    # BM3D is not run at 4K: compare its s/Mpx at its largest measured size with the U-Net's at 4K, and say so
    bm = [best[k] for k in best if k[0] == "bm3d"]
    u4k = best.get(("unet", (2160, 3840)))
    if bm and u4k:
        b = max(bm, key=lambda r: r["megapixels"])
        if tuple(b["shape"]) != (2160, 3840):
            out.append({"what": f"BM3D s/Mpx at {size_name(b['shape'])} / U-Net s/Mpx at 4K (BM3D not run at 4K)",
                        "ratio": b["s_per_mpx"] / u4k["s_per_mpx"],
                        "cpu_ratio": b["cpu_s_per_mpx"] / u4k["cpu_s_per_mpx"], "repeat_ratio": None})
    return out


def _f(x, fmt=".2f") -> str:
    return "" if x is None else format(x, fmt)


def render(meta: dict, rows: list[dict], ratio_rows: list[dict], best: dict) -> str:
    lines = [f"# CPU speed of denoising: U-Net vs RED-Net vs BM3D ({meta['date']})", "",
             f"{meta['cpu']}, {meta['cores']} cores; TensorFlow {meta['tensorflow']}, Keras {meta['keras']}, "
             f"bm3d {meta['bm3d']}; sigma {SIGMA}; image: {meta['image']}. Every row is a fresh process; "
             f"**first** = the first `enhance` call on the image after a 64x64 warm-up (a one-shot run, model "
             f"loading and imports excluded; median over n processes), **repeat** = later calls on the same image "
             f"in the same process; *CPU s/Mpx* = user + system CPU seconds of the first call over both cores (less "
             f"sensitive than wall time to other work on the machine). `tile` 0 = whole image; tiled rows use "
             f"`overlap=None` (exact: derived from the "
             f"receptive field); *work* = pixels through the network / image pixels. Load average "
             f"{meta['load_average_start']:.1f} at the start, {meta['load_average_end']:.1f} at the end (the 2 cores "
             f"are shared; a busy machine inflates times). Wall time {meta['wall_s']:.0f} s. "
             f"Command: `{meta['command']}`", "",
             "| method | card | MACs/px | image | tile (overlap) | work | first s | first s/Mpx | n | CPU s/Mpx "
             "| repeat s/Mpx | n | peak RSS MB |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = LABELS[r["method"]]
        card = r["card"] or "`bm3d` package"
        if "s_per_mpx" not in r:
            why = "; ".join(r["errors"]) or f"skipped ({r['skipped']}x, time budget)"
            lines.append(f"| {label} | {card} | | {size_name(r['shape'])} | {r['tile']} | | {why} | | | | | | |")
            continue
        tile = "whole" if r["method"] == "bm3d" or not r["tile"] else f"{r['tile']} ({r['overlap']})"
        macs = f"{r['macs_per_pixel']:,}" if r.get("macs_per_pixel") else ""
        work = _f(r.get("work_factor"))
        lines.append(f"| {label} | {card} | {macs} | {size_name(r['shape'])} | {tile} | {work} | {r['first_s']:.2f} | "
                     f"**{r['s_per_mpx']:.2f}** | {r['n_first']} | {r['cpu_s_per_mpx']:.2f} | {_f(r['repeat_s_per_mpx'])} | "
                     f"{r['n_repeat'] or ''} | {r['peak_rss_mb']:.0f} |")
    has_4k = any(r["shape"] == [2160, 3840] for r in rows)
    if has_4k and not any(r["method"] == "bm3d" and r["shape"] == [2160, 3840] for r in rows):
        lines.append("| BM3D | `bm3d` package | | 3840x2160 (4K) | whole | | not run (too slow for this run: about 6 "
                     "minutes per image reported; not measured here) | | | | | | |")
    if has_4k and not any(r["method"] == "unet" and r["shape"] == [2160, 3840] and not r["tile"] for r in rows):
        lines.append("| U-Net | denoise-unet-sigma25 | | 3840x2160 (4K) | whole | 1.00 | not run (`--whole-large`): "
                     f"{WHOLE_4K_TRIAL} | | | | | | |")
    lines += ["", "Ratios measured in this run (first-call s/Mpx of the fastest tile of each method; the same for CPU "
              "seconds and repeat calls):", ""]
    lines += [f"- {x['what']}: **{x['ratio']:.1f}x** (CPU time {x['cpu_ratio']:.1f}x"
              + (f", repeat {x['repeat_ratio']:.1f}x)" if x["repeat_ratio"] else ")") for x in ratio_rows]
    lines += ["", "Fastest tile per network and size (U-Net at 4K: among rows within the 2 GB RSS goal): "
              + "; ".join(f"{k}: tile {v['tile'] or 'whole'} ({v['s_per_mpx']:.2f} s/Mpx)" for k, v in best.items())]
    g = meta.get("goals")
    if g:
        lines += ["", "Goals (issue):", ""] + [f"- {k}: {v}" for k, v in g.items()]
    return "\n".join(lines) + "\n"


def goals(rows: list[dict], ratio_rows: list[dict], best: dict) -> dict:
    out = {}
    for key, u in best.items():
        if key.startswith("unet "):
            ok = u["s_per_mpx"] <= GOALS["unet_s_per_mpx"]
            out[f"U-Net <= 5 s/Mpx at {key[5:]}"] = (f"{u['s_per_mpx']:.2f} s/Mpx, tile {u['tile'] or 'whole'}: "
                                                     f"{'met' if ok else 'NOT met'}")
    u = best.get("unet 3840x2160 (4K)")
    if u:
        row = next(r for r in rows if r["method"] == "unet" and r["shape"] == [2160, 3840] and r["tile"] == u["tile"])
        ok = row["peak_rss_mb"] <= GOALS["rss_4k_mb"]
        out["peak RSS <= 2 GB at 4K"] = f"{row['peak_rss_mb']:.0f} MB: {'met' if ok else 'NOT met'}"
    for x in ratio_rows:
        if x["what"].startswith("BM3D"):
            ok = x["ratio"] >= GOALS["speedup_vs_bm3d"]
            cpu_ok = x["cpu_ratio"] >= GOALS["speedup_vs_bm3d"]
            out[f">= 10x faster than BM3D ({x['what']})"] = (
                f"{x['ratio']:.1f}x wall: {'met' if ok else 'NOT met'}; {x['cpu_ratio']:.1f}x CPU time: "
                f"{'met' if cpu_ok else 'NOT met'}")
    return out


def environment() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        field = {k.strip(): v.strip() for k, _, v in (x.partition(":") for x in info if ":" in x)}
        flags = set(field.get("flags", "").split())
        simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
        cpu = (f"{field.get('model name', cpu)} (family {field.get('cpu family')} model {field.get('model')}, "
               f"{'/'.join(simd)}{', VM' if 'hypervisor' in flags else ''})")
    except OSError:
        pass
    try:
        from importlib.metadata import version

        bm3d_version = version("bm3d")
    except Exception:  # a missing package shows as unknown
        bm3d_version = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "keras": keras.__version__, "tensorflow": tf.__version__,
            "bm3d": bm3d_version, "python": platform.python_version(), "backend": "tensorflow",
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 3840],
                        help="square sides for the networks; 3840 means a 3840x2160 (4K UHD) image")
    parser.add_argument("--bm3d-sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--unet-tiles", type=int, nargs="+", default=[256, 512, 1024, 0],
                        help="tile sides to compare for the U-Net (0: whole image)")
    parser.add_argument("--rednet-tiles", type=int, nargs="+", default=[256, 512, 0])
    parser.add_argument("--rounds", type=int, default=3, help="processes per small-image configuration")
    parser.add_argument("--repeats", type=int, default=1, help="extra calls per small-image network process")
    parser.add_argument("--whole-large", action="store_true",
                        help="also run the U-Net on the whole large image (a trial at 4K peaked at 22.5 GB RSS)")
    parser.add_argument("--small-max", type=int, default=512, help="larger images are run once (not per round)")
    parser.add_argument("--budget-s", type=float, default=700, help="skip optional runs that would end past this")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--stem", default="speed_cpu", help="output file names: STEM.json, STEM.md")
    parser.add_argument("--from-json", type=Path, help="only re-render STEM.md from a saved JSON (no measuring)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        md = render(saved["meta"], saved["rows"], saved["ratios"], saved["best_tiles"])
        (args.out / f"{args.stem}.md").write_text(md)
        return 0
    # large images: the U-Net and BM3D in two processes per configuration (no repeats: two samples apart in time
    # beat two back to back on a shared machine), the RED-Net in one; its tile 256 only if the time budget allows
    args.large_repeats = {"unet": 0, "rednet": 0}
    args.large_rounds = {"unet": 2, "rednet": 1, "bm3d": 2}
    args.optional_tiles = {"unet": {0}, "rednet": {256}}

    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    plan = make_plan(args)
    print(f"{len(plan)} runs planned", flush=True)
    runs = []
    for i, spec in enumerate(plan):
        elapsed = time.perf_counter() - start
        if spec["optional"] and elapsed + estimate_s(spec) > args.budget_s:
            runs.append(dict(spec, skipped=True))
            print(f"[{i + 1}/{len(plan)}] skip {spec} (budget)", flush=True)
            continue
        result = measure(spec)
        runs.append(dict(spec, **result))
        shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()
                 if k in ("first_s", "repeat_s", "peak_rss_mb", "tiles", "wall_s", "error")}
        print(f"[{i + 1}/{len(plan)}] {elapsed:5.0f} s {spec['method']} {size_name(spec['shape'])} tile {spec['tile']}: "
              f"{shown}", flush=True)
    rows = summarise(runs)
    ratio_rows = ratios(rows)
    best = best_tiles(rows)
    meta = dict(environment(), date=dt.date.today().isoformat(), sigma=SIGMA,
                image=next((r["image"] for r in rows if r.get("image")), "?"),
                command="python benchmarks/speed_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                load_average_start=load_start, load_average_end=os.getloadavg()[0], wall_s=time.perf_counter() - start,
                timing=("first_s: first enhance/bm3d call on the image in a fresh process after a 64x64 warm-up, median "
                        "over processes; repeat_s: later calls in the same process; s_per_mpx = first_s / megapixels"),
                peak_rss="ru_maxrss of the process (imports, model, image and the run), MB = 1e6 bytes")
    meta["goals"] = goals(rows, ratio_rows, best)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratio_rows,
                                                            "best_tiles": best, "runs": runs}, indent=1))
    (args.out / f"{args.stem}.md").write_text(render(meta, rows, ratio_rows, best))
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    status = main()
    if "--worker" not in sys.argv:
        print(f"done in {time.perf_counter() - t0:.0f} s")
    sys.exit(status)
