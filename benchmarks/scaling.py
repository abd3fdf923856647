"""Data-parallel scaling of the paper denoiser: patches/s on 1..N GPUs of one host (Keras on JAX).

The global batch grows with the number of GPUs (``--per-gpu-batch`` each), as in data-parallel practice.
Each GPU count runs in its own process with ``CUDA_VISIBLE_DEVICES`` restricted, through
``deconvlab.distribute.data_parallel`` (``keras.distribution.DataParallel``).
Usage (GPU host): ``python benchmarks/scaling.py --gpus 1 2 --out benchmarks/results``.
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


def worker(per_gpu_batch: int, patch: int, steps: int, precision: str) -> dict:
    import keras
    import numpy as np

    from deconvlab.distribute import data_parallel
    from deconvlab.models import red_net

    keras.mixed_precision.set_global_policy(precision)
    strategy = data_parallel()
    batch = per_gpu_batch * strategy.num_replicas
    with strategy.scope():
        model = red_net(channels=1, depth=15, width=64)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=True)
    rng = np.random.default_rng(0)
    y = rng.random((batch * 8, patch, patch, 1), dtype=np.float32)
    x = (y + rng.normal(0, 0.1, y.shape)).astype(np.float32)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # compile
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=max(1, steps // 8), verbose=0)
    seconds = time.perf_counter() - start
    import jax

    return {"gpus": strategy.num_replicas, "device": jax.devices()[0].device_kind, "engine": strategy.engine, "global_batch": batch, "patch": patch,
            "precision": precision, "patches_per_s": max(1, steps // 8) * 8 * batch / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--per-gpu-batch", type=int, default=128)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    rows = []
    for n in args.gpus:
        env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES=",".join(map(str, range(n))))
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import scaling; "
                f"print('RESULT ' + json.dumps(scaling.worker({args.per_gpu_batch}, {args.patch}, "
                f"{args.steps}, {args.precision!r})))")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        row = json.loads(line[7:]) if line else {"gpus": n, "error": proc.stderr.strip().splitlines()[-1:]}
        rows.append(row)
        print(row, flush=True)
    base = next((r["patches_per_s"] for r in rows if r.get("gpus") == 1 and "patches_per_s" in r), None)
    for r in rows:
        if base and "patches_per_s" in r:
            r["speedup"] = r["patches_per_s"] / base
            r["efficiency"] = r["speedup"] / r["gpus"]
    meta = {"date": dt.date.today().isoformat(), "command": "python benchmarks/scaling.py " + " ".join(argv or sys.argv[1:]),
            "network": "red_net(depth=15, width=64)", "backend": "jax"}
    # The parent never imports JAX: it would reserve GPU memory that the workers need.
    meta["device"] = next((r["device"] for r in rows if "device" in r), "unknown")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
