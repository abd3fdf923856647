"""Data-parallel scaling of the paper denoiser: patches/s on 1..N GPUs of one host (Keras on JAX).

The path timed is the fastest single-GPU one (``benchmarks/speed_gpu.py``): the fused ``lax.scan`` trainer of
``benchmarks/time_to_quality.py`` with every global batch drawn on the devices by
:class:`deconvlab.sampler.PatchSampler`, split over the replicas of ``deconvlab.distribute.data_parallel``
(``keras.distribution.DataParallel``): images and weights replicated, the batch sharded, gradients all-reduced
by XLA's SPMD partitioner. The per-GPU batch is fixed (``--per-gpu-batch``), so the global batch grows with the
GPU count, as in data-parallel practice. Each GPU count runs in its own process (``CUDA_VISIBLE_DEVICES``), warms
up, then times ``--reps`` repetitions (median, min, max). Speed-up and efficiency are against the 1-GPU median.

Time to quality on N GPUs: ``python benchmarks/time_to_quality.py --data-parallel --batch <N x 128> ...`` (the
learning rate is not scaled by default: 2e-3 diverged at batch 128 on one GPU, see ``time_to_quality.md``).

Usage (GPU host): ``python benchmarks/scaling.py --gpus 1 2 --out benchmarks/results``;
``--quick`` runs the same code on CPU devices emulated by XLA (``--xla_force_host_platform_device_count``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(per_gpu_batch: int, patch: int, reps: int, rep_seconds: float, precision: str, quick: bool) -> dict:
    import jax
    import keras

    sys.path.insert(0, str(HERE))
    from time_to_quality import FusedTrainer

    from deconvlab.data import load_dataset
    from deconvlab.distribute import data_parallel
    from deconvlab.models import red_net
    from deconvlab.sampler import PatchSampler

    keras.mixed_precision.set_global_policy(precision)
    strategy = data_parallel()
    n = strategy.num_replicas
    depth, width, k = (2, 8, 2) if quick else (15, 64, 50)
    with strategy.scope():
        model = red_net(channels=1, depth=depth, width=width)
    images = load_dataset("train400", mode="gray", limit=16 if quick else None).images
    sampler = PatchSampler(images, patch_size=patch, batch_size=per_gpu_batch * n, sigma=25.0, seed=0,
                           device=strategy.replicated())
    trainer = FusedTrainer(model, k, sampler=sampler, peak_lr=1e-4, strategy=strategy)
    state, step = trainer.init(), 0

    def timed(calls: int) -> float:
        nonlocal state, step
        start = time.perf_counter()
        for _ in range(calls):
            state, loss = trainer.run(state, step, 10**6)
            step += k
            if quick:
                # On CPU devices emulated by XLA, a queue of some hundred dispatches made the all-reduce
                # rendezvous miss its 40 s timeout and abort the process (2 cores, JAX 0.10.2); one dispatch
                # at a time runs. A GPU keeps its queue: that queue is what the benchmark times.
                jax.block_until_ready(loss)
        jax.block_until_ready(loss)
        return time.perf_counter() - start

    timed(2)  # compile and warm up
    calls = max(1, int(rep_seconds / (timed(3) / 3)))
    rates = [calls * k * per_gpu_batch * n / timed(calls) for _ in range(reps)]
    return {"gpus": n, "device": jax.devices()[0].device_kind, "engine": strategy.engine,
            "path": f"fused lax.scan ({k} steps/dispatch) + on-device sampler, batch sharded over the replicas",
            "per_gpu_batch": per_gpu_batch, "global_batch": per_gpu_batch * n, "patch": patch,
            "precision": precision, "reps": reps, "steps_per_rep": calls * k,
            "patches_per_s": statistics.median(rates), "patches_per_s_min": min(rates),
            "patches_per_s_max": max(rates), "patches_per_s_all": rates}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--per-gpu-batch", type=int, default=128)
    parser.add_argument("--patch", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per GPU count (>= 3)")
    parser.add_argument("--rep-seconds", type=float, default=2.0)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results (--quick: results/tmp)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes on emulated CPU devices")
    args = parser.parse_args(argv)
    if args.reps < 3:
        parser.error("--reps must be at least 3 (a median of fewer is not a median)")
    if args.quick:
        args.per_gpu_batch, args.patch, args.rep_seconds, args.precision = 4, 16, 0.3, "float32"
    out = args.out or HERE / "results" / ("tmp" if args.quick else "")
    rows = []
    for n in args.gpus:
        env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join(
            [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
        if args.quick:
            env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(n)))
        call = (f"{args.per_gpu_batch}, {args.patch}, {args.reps}, {args.rep_seconds}, {args.precision!r}, "
                f"{args.quick}")
        code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import scaling; "
                f"print('RESULT ' + json.dumps(scaling.worker({call})))")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        row = json.loads(line[7:]) if line else {"gpus": n, "error": proc.stderr.strip().splitlines()[-3:]}
        if line and row["gpus"] != n:
            row["error"] = f"asked for {n} devices, the worker saw {row['gpus']}"
        rows.append(row)
        print({k: v for k, v in row.items() if k != "patches_per_s_all"}, flush=True)
    base = next((r["patches_per_s"] for r in rows if r.get("gpus") == 1 and "patches_per_s" in r), None)
    for r in rows:
        if base and "patches_per_s" in r and "error" not in r:
            r["speedup"] = r["patches_per_s"] / base
            r["efficiency"] = r["speedup"] / r["gpus"]
    meta = {"date": dt.date.today().isoformat(),
            "command": "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "network": "red_net(depth=15, width=64)" if not args.quick else "red_net(depth=2, width=8) (quick)",
            "backend": "jax",
            # the parent never imports JAX: it would reserve GPU memory that the workers need
            "device": next((r["device"] for r in rows if "device" in r), "unknown")}
    out.mkdir(parents=True, exist_ok=True)
    name = "scaling_quick.json" if args.quick else "scaling_gpu.json"
    (out / name).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
