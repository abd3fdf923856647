"""Transposed convolution or sub-pixel convolution as the x4 upsampler of the post-upsampling SR card: 3 seeds each.

The GPU half ran on one H200 (`benchmarks/gpu_fused.sh`, six jobs sharing it, the same wall-clock budget each; the
command and its RESULT lines are in ``results/logs/sr_upsampler_x4.log``). One factor differs: the card
``sr-x4-post``'s architecture with ``up="transposed"`` (bilinear start) or ``up="subpixel"`` (ICNR start); data,
loss, schedule, batch, patch and budget are the card's recipe, shortened to 320 s. This script reads those lines,
applies the ladder's rule (a difference counts when it exceeds twice the pooled seed standard deviation) and measures
the CPU time of the two networks in one run (TensorFlow, the same Set14 image as ``speed_sr_cpu.py``; the weights
do not change the time, so each network is built from the card's arguments with fresh weights).

Usage: ``python benchmarks/sr_upsamplers.py`` (about a minute on 2 cores); writes ``sr_upsampler_x4.json`` and
``.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ladder import verdict  # noqa: E402  (the ladder's rule, shared with this comparison)
from speed_sr_cpu import load_y  # noqa: E402

UPSAMPLERS = {"transposed": "bilinear", "subpixel": "icnr"}
READING = {"supported": "sub-pixel higher", "contradicted": "transposed higher"}


def read_runs(log: Path) -> dict[str, list[dict]]:
    """The RESULT lines of the log, grouped by upsampler (from the job id ``x4-<upsampler>-s<seed>``)."""
    runs: dict[str, list[dict]] = {up: [] for up in UPSAMPLERS}
    for line in log.read_text().splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line[len("RESULT "):])
            runs[record["id"].split("-")[1]].append(record)
    return runs


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4),
            "values": values}


def cpu_seconds(repeats: int) -> tuple[dict[str, list[float]], str, tuple[int, int]]:
    """Seconds per call of ``infer.enhance`` for both networks on one LR image, interleaved."""
    from deconvlab import degrade, infer, models, weights

    hr, source = load_y("barbara")
    lr = degrade.downscale(hr, 4)
    kwargs = dict(weights.read_card("sr-x4-post")["architecture"]["kwargs"])
    nets = {}
    for up, init in UPSAMPLERS.items():
        kwargs.update(up=up, up_init=init)
        nets[up] = models.red_net_sr(**kwargs)
        infer.enhance(nets[up], lr[:32, :32], "sr", scale=4)  # warm-up: kernels, allocator
    times: dict[str, list[float]] = {up: [] for up in nets}
    for r in range(repeats):
        for up in (list(nets) if r % 2 == 0 else list(nets)[::-1]):
            t0 = time.perf_counter()
            out = infer.enhance(nets[up], lr, "sr", scale=4)
            times[up].append(time.perf_counter() - t0)
            assert out.shape == hr.shape, (up, out.shape, hr.shape)
    return times, source, hr.shape


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=HERE / "results" / "logs" / "sr_upsampler_x4.log")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    runs = read_runs(args.log)
    times, source, shape = cpu_seconds(args.repeats)
    mpx = shape[0] * shape[1] / 1e6
    rows = {}
    for up, records in runs.items():
        rows[up] = {"up_init": UPSAMPLERS[up], "seeds": len(records), "params": records[0]["params"],
                    "macs_per_output_pixel": records[0]["macs"]["4"],
                    "steps": summary([r["steps"] for r in records]),
                    "steps_per_s": summary([round(r["steps"] / r["train_s"], 2) for r in records]),
                    "held_aside_psnr": summary([r["val"] for r in records]),
                    "set5_x4_psnr": summary([r["set5@x4"] for r in records]),
                    "cpu_s_per_mpx": round(statistics.median(times[up]) / mpx, 3),
                    "cpu_seconds_all": [round(t, 4) for t in times[up]]}
    t, s = runs["transposed"], runs["subpixel"]
    verdicts = {key: verdict([r[key] for r in t], [r[key] for r in s], 0.0, 0.0) for key in ("val", "set5@x4")}
    for v in verdicts.values():  # the ladder's words are for a claim; here either side may win
        v["verdict"] = READING.get(v["verdict"], v["verdict"])
    result = {"meta": {"date": dt.date.today().isoformat(), "log": str(args.log.relative_to(HERE.parent)),
                       "cpu_image": f"{source}, output {shape[1]}x{shape[0]}", "cpu_cores": os.cpu_count(),
                       "repeats": args.repeats, "command": "python benchmarks/sr_upsamplers.py"},
              "rule": "sub-pixel minus transposed counts when it exceeds twice the pooled seed std",
              "rows": rows, "verdicts": {"held_aside": verdicts["val"], "set5_x4": verdicts["set5@x4"]}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sr_upsampler_x4.json").write_text(json.dumps(result, indent=1))
    lines = ["# x4 upsampler: transposed vs sub-pixel convolution (3 seeds each)", "",
             "One H200 shared by six runs of 320 s each (`results/logs/sr_upsampler_x4.log`); CPU time: "
             f"{os.cpu_count()} cores, TensorFlow, {result['meta']['cpu_image']}, median of {args.repeats}.", "",
             "| upsampler | params | MACs / output px | steps | held-aside PSNR | Set5 x4 PSNR | CPU s / Mpx |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for up, row in rows.items():
        lines.append(f"| {up} ({row['up_init']}) | {row['params']:,} | {row['macs_per_output_pixel']:,} | "
                     f"{row['steps']['mean']:,.0f} | {row['held_aside_psnr']['mean']:.3f} ± "
                     f"{row['held_aside_psnr']['std']:.3f} | {row['set5_x4_psnr']['mean']:.3f} ± "
                     f"{row['set5_x4_psnr']['std']:.3f} | {row['cpu_s_per_mpx']:.2f} |")
    lines += ["", f"Rule: {result['rule']}."]
    lines += [f"- {name}: {v['verdict']} ({v['reason']})" for name, v in result["verdicts"].items()]
    (args.out / "sr_upsampler_x4.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
