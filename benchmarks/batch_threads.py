"""How fast worker threads make training batches, with BLAS free and with BLAS held to one thread.

``python -m deconvlab train --workers N`` prepares batches in N threads (a Keras ``PyDataset``). The SR
degradation's MATLAB bicubic resize is a BLAS product (``np.tensordot``), and OpenBLAS starts a thread per core for
each product: N workers then oversubscribe the cores. This script times the paper SR batches (Train400, x2/x3/x4
pre-upsampled, 128 x 48^2) drawn by 1, 2, 4 and 8 threads, each way, and prints milliseconds per batch of
throughput (lower is better; a GPU step of that model takes about 7.5 ms on an H200).

Usage: ``DECONVLAB_DATA=... python benchmarks/batch_threads.py [--batches 160] [--out FILE.json]`` (any machine;
the numbers in ``benchmarks/results/NOTES.md`` come from the 16-core H200 host).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import threadpoolctl  # noqa: E402

from deconvlab import config, data, tasks  # noqa: E402

THREADS = (1, 2, 4, 8)


def ms_per_batch(patches: data.PatchDataset, threads: int, batches: int) -> float:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(patches.__getitem__, range(1, batches + 1)))
    return 1000 * (time.perf_counter() - start) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=160)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    train_set = data.load_dataset("train400", mode="gray")
    degradation = tasks.training_degradation("sr", sigma=None, scale=None, scales=[2, 3, 4], post=False)
    patches = data.PatchDataset(train_set.images, degradation, steps_per_epoch=args.batches + 1, seed=0,
                                patch_size=48, batch_size=128, channels=1, scale=1)
    patches[0]  # the first batch pays for the lazy imports
    rows = []
    for blas in (None, 1):
        with threadpoolctl.threadpool_limits(limits=blas, user_api="blas"):
            for threads in THREADS:
                rows.append({"blas_threads": blas or "free", "threads": threads,
                             "ms_per_batch": round(ms_per_batch(patches, threads, args.batches), 2)})
                print(rows[-1], flush=True)
    result = {"runtime": config.runtime_info(), "cpus": os.cpu_count(), "fallback": train_set.is_fallback,
              "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
