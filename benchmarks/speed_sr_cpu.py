"""CPU cost of super-resolution: the post-upsampling cards against the pre-upsampling card and bicubic, in one run.

One process (TensorFlow backend, CPU only) loads every SR card, takes one Set14 image (Y of MATLAB ``rgb2ycbcr``,
modcrop to 12 so that x2, x3 and x4 share the output size), makes its MATLAB-bicubic low-resolution copy per
scale, and times ``deconvlab.infer.enhance(model, lr, "sr", scale=s, tile=..., overlap=None)`` (what the CLI runs)
and ``deconvlab.degrade.upscale`` (bicubic). Each (method, scale, tile) is warmed up on a 32x32 crop, then timed
``--repeats`` times; the calls are interleaved (repeat r of every configuration before repeat r + 1), so a busy
shared machine slows all of them alike; the table reports the median. Seconds per megapixel of *output*.

Usage: ``python benchmarks/speed_sr_cpu.py`` (about 3 minutes on 2 shared cores); writes ``speed_sr_cpu.json`` and
``speed_sr_cpu.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRE = "sr-x2-3-4"
POST = {2: "sr-x2-post", 3: "sr-x3-post", 4: "sr-x4-post"}


def load_y(name: str):
    """Y (MATLAB rgb2ycbcr, [0, 1]) of a Set14 image, cropped to a multiple of 12; uniform noise without the data."""
    import numpy as np

    from deconvlab import io, metrics

    path = Path(os.environ.get("DECONVLAB_DATA", "data/datasets")) / "set14" / f"{name}.bmp"
    if path.is_file():
        img = io.read_image(path)
        y, source = (metrics.rgb_to_ycbcr(img)[..., 0] if img.ndim == 3 else img), f"Set14 {name} (Y)"
    else:
        y, source = np.random.default_rng(0).random((576, 720), dtype=np.float32), "uniform random (no Set14)"
    h, w = y.shape[0] // 12 * 12, y.shape[1] // 12 * 12
    return y[:h, :w].astype("float32"), source


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="barbara", help="Set14 image (default the largest, 720x576)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 0],
                        help="enhance's tile (256: the CLI's default, exact overlap from the layers; 0: whole image)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--stem", default="speed_sr_cpu")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from deconvlab import degrade, infer, weights

    start, load_start = time.perf_counter(), os.getloadavg()[0]
    hr, source = load_y(args.image)
    cards = {PRE: weights.read_card(PRE), **{POST[s]: weights.read_card(POST[s]) for s in args.scales}}
    models = {cid: weights.load_pretrained(card=card) for cid, card in cards.items()}
    configs = []  # (method, card id or None, scale, tile)
    for s in args.scales:
        configs.append(("bicubic", None, s, 0))
        for cid in (PRE, POST[s]):
            configs += [("network", cid, s, t) for t in args.tiles]
    lows = {s: degrade.downscale(hr, s) for s in args.scales}

    def call(cfg, image):
        method, cid, s, tile = cfg
        if method == "bicubic":
            return degrade.upscale(image, s)
        return infer.enhance(models[cid], image, "sr", scale=s, tile=tile or None, overlap=None)

    for cfg in configs:  # warm-up: imports, kernels, allocator
        call(cfg, lows[cfg[2]][:32, :32])
    times: dict = {cfg: [] for cfg in configs}
    for r in range(args.repeats):
        for cfg in configs[r % len(configs):] + configs[: r % len(configs)]:
            t0 = time.perf_counter()
            out = call(cfg, lows[cfg[2]])
            times[cfg].append(time.perf_counter() - t0)
            assert out.shape == hr.shape, (cfg, out.shape, hr.shape)
    mpx = hr.shape[0] * hr.shape[1] / 1e6
    rows = []
    for cfg, ts in times.items():
        method, cid, s, tile = cfg
        # enhance tiles the network's input: the LR image for post-upsampling, the bicubic-upscaled one for pre
        side = max(hr.shape if cid == PRE else lows[s].shape)
        tiled = method == "network" and bool(tile) and side > tile
        rows.append({"method": "bicubic" if method == "bicubic" else cid, "scale": s,
                     "upsample": None if cid is None else cards[cid].get("upsample"),
                     "macs_per_pixel": None if cid is None else weights.card_macs(cards[cid], s),
                     "tile_asked": tile, "tile": tile if tiled else 0,
                     "overlap": infer.default_overlap(models[cid]) if tiled else 0,
                     "seconds_all": [round(t, 4) for t in ts], "seconds": statistics.median(ts),
                     "s_per_mpx": statistics.median(ts) / mpx})
    find = {(r["method"], r["scale"], r["tile_asked"]): r for r in rows}
    ratios = []
    for s in args.scales:
        for t in args.tiles:
            pre, post = find[(PRE, s, t)], find[(POST[s], s, t)]
            ratios.append({"scale": s, "tile": t, "pre_over_post": pre["s_per_mpx"] / post["s_per_mpx"],
                           "macs_ratio": pre["macs_per_pixel"] / post["macs_per_pixel"],
                           "post_over_bicubic": post["s_per_mpx"] / find[("bicubic", s, 0)]["s_per_mpx"]})
    meta = {"date": dt.date.today().isoformat(), "image": source, "output": f"{hr.shape[1]}x{hr.shape[0]}",
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "keras": keras.__version__, "backend": keras.backend.backend(), "repeats": args.repeats,
            "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
            "wall_s": time.perf_counter() - start, "numpy": np.__version__,
            "command": "python benchmarks/speed_sr_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=1))
    lines = [f"# CPU speed of super-resolution: post- vs pre-upsampling cards and bicubic ({meta['date']})", "",
             f"{meta['cores']} shared CPU cores, Keras {meta['keras']} on {meta['backend']}; image: {source}, output "
             f"{meta['output']} at every scale; `enhance(..., overlap=None)` (exact tiles), median of "
             f"{args.repeats} interleaved calls after a warm-up; load average {load_start:.1f} at the start, "
             f"{meta['load_average_end']:.1f} at the end (other work on the machine inflates every time). "
             f"Command: `{meta['command']}`", "",
             "| method | scale | MACs / output px | tile asked | tiles used (overlap) | s (median) | s / output Mpx |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        macs = f"{r['macs_per_pixel']:,.0f}" if r["macs_per_pixel"] else "—"
        tile = f"{r['tile']} ({r['overlap']})" if r["tile"] else "whole image"
        asked = "—" if r["method"] == "bicubic" else (r["tile_asked"] or "0")
        lines.append(f"| {r['method']} | x{r['scale']} | {macs} | {asked} | {tile} | {r['seconds']:.3f} | "
                     f"{r['s_per_mpx']:.2f} |")
    lines += ["", "Ratios in this run (pre-upsampling s/Mpx over post-upsampling s/Mpx; MACs ratio for comparison):",
              ""]
    lines += [f"- x{x['scale']}, tile {x['tile'] or 'whole'} asked: post-upsampling **{x['pre_over_post']:.1f}x** "
              f"faster than pre-upsampling (MACs {x['macs_ratio']:.1f}x fewer); {x['post_over_bicubic']:.0f}x "
              "bicubic's time" for x in ratios]
    (args.out / f"{args.stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
