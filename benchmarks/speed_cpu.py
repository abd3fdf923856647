"""CPU cost of ``enhance`` (denoise, sigma 25, shipped weights, tiled): seconds per megapixel and peak memory.

Each image size runs in a fresh process (TensorFlow backend) so its peak resident memory (``ru_maxrss``) is its
own; BM3D (``bm3d`` package) runs on the same noisy image at the sizes given by ``--bm3d-sizes``.
Writes ``speed_cpu.json`` and ``speed_cpu.md`` into ``--out``.
Usage: ``python benchmarks/speed_cpu.py --sizes 256 512 1024 2048 3840 --bm3d-sizes 256 512``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKER = r"""
import json, resource, sys, time
import numpy as np
n, method, tile = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
clean = rng.random((n, n), dtype=np.float32) if n != 3840 else rng.random((2160, 3840), dtype=np.float32)
noisy = clean + rng.normal(0, 25 / 255, clean.shape).astype(np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if method == "bm3d":
    from deconvlab.classical import bm3d_denoise
    run = lambda: bm3d_denoise(noisy, 25)
else:
    from deconvlab import infer, weights
    model = weights.load_pretrained(card=weights.find_card("denoise", sigma=25))
    infer.enhance(model, noisy[:64, :64], "denoise", scale=1, tile=tile)  # tracing is not speed
    run = lambda: infer.enhance(model, noisy, "denoise", scale=1, tile=tile)
start = time.perf_counter()
run()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT " + json.dumps({"method": method, "shape": list(noisy.shape), "seconds": seconds,
                              "peak_rss_mib": peak / 1024, "rss_before_run_mib": base / 1024}))
"""


def measure(n: int, method: str, tile: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", WORKER, str(n), method, str(tile)], env=env, capture_output=True, text=True,
                          timeout=3600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"method": method, "size": n, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    row = json.loads(line[7:])
    h, w = row["shape"]
    row["megapixels"] = h * w / 1e6
    row["seconds_per_megapixel"] = row["seconds"] / row["megapixels"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 3840],
                        help="square sides; 3840 means a 3840x2160 (4K UHD) image")
    parser.add_argument("--tile", type=int, default=None, help="tile side (default: the CLI's)")
    parser.add_argument("--bm3d-sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    from deconvlab import config, infer

    args.tile = args.tile or infer.DEFAULT_TILE

    rows = []
    for method, sizes in (("enhance", args.sizes), ("bm3d", args.bm3d_sizes)):
        for n in sizes:
            rows.append(measure(n, method, args.tile))
            print(rows[-1], flush=True)
    meta = {"date": dt.date.today().isoformat(), "device": config.device_name(), "cores": os.cpu_count(),
            "backend": "tensorflow", "tile": args.tile, "model": "denoise-sigma25 (shipped)",
            "command": "python benchmarks/speed_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "load_average_at_end": os.getloadavg()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_cpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# CPU speed of enhance vs BM3D ({meta['date']})", "",
             f"{meta['device']}, TensorFlow, tile {meta['tile']}, model {meta['model']}; load average at the "
             f"end {meta['load_average_at_end']:.1f} (a busy machine inflates the times). Command: `{meta['command']}`",
             "", "| method | image | megapixels | seconds | s / Mpx | peak RSS (MiB) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['size']} | | | | error: {r['error']} |")
            continue
        h, w = r["shape"]
        lines.append(f"| {r['method']} | {w}x{h} | {r['megapixels']:.2f} | {r['seconds']:.2f} | "
                     f"{r['seconds_per_megapixel']:.2f} | {r['peak_rss_mib']:.0f} |")
    (args.out / "speed_cpu.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    print(f"done in {time.perf_counter() - start:.0f} s")
    sys.exit(status)
