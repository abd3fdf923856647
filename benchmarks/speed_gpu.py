"""GPU training speed of the paper denoiser: Keras on JAX and PyTorch, float32 and bf16, against a PyTorch twin.

Measures, on the card it runs on:
* training patches/s of ``deconvlab.models.red_net`` (the paper-profile denoiser) through Keras
  ``train_on_batch`` on each backend and precision (synthetic data already in memory: compute, not input);
* the same network written in plain PyTorch (``torch.compile``, bf16 autocast, channels-last), for the ratio
  Keras-JAX / PyTorch;
* model FLOP utilisation: counted training FLOPs (3x the forward convolution FLOPs) per second against the
  measured bf16 matmul peak of the same card.

Each measurement runs in its own subprocess because the Keras backend is fixed at import.
Usage (GPU host): ``python benchmarks/speed_gpu.py --out benchmarks/results`` (about 3 minutes).
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

DEPTH, WIDTH = 15, 64


def conv_flops_per_image(model, height: int, width: int) -> float:
    """Forward multiply-add FLOPs (2 per MAC) of every Conv2D/Conv2DTranspose at stride 1, 'same' padding."""
    flops = 0.0
    for layer in model._flatten_layers(include_self=False):
        kind = type(layer).__name__
        if kind in ("Conv2D", "Conv2DTranspose"):
            kh, kw, a, b = layer.kernel.shape  # Conv2D: (kh, kw, in, out); transposed: (kh, kw, out, in)
            flops += 2.0 * height * width * kh * kw * a * b
    return flops


def keras_worker(backend: str, precision: str, batch: int, patch: int, steps: int) -> dict:
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from deconvlab.models import red_net

    keras.mixed_precision.set_global_policy(precision)
    model = red_net(channels=1, depth=DEPTH, width=WIDTH)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=backend != "torch")
    rng = np.random.default_rng(0)
    y = rng.random((batch, patch, patch, 1), dtype=np.float32)
    x = (y + rng.normal(0, 0.1, y.shape)).astype(np.float32)
    for _ in range(3):  # compile and warm up
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))  # wait for the device
    seconds = time.perf_counter() - start
    return {"impl": f"keras-{backend}", "precision": precision, "batch": batch, "patch": patch,
            "params": model.count_params(), "patches_per_s": steps * batch / seconds,
            "train_flops_per_patch": 3 * conv_flops_per_image(model, patch, patch)}


def torch_twin(batch: int, patch: int, steps: int, precision: str) -> dict:
    import torch
    from torch import nn

    class RedNetTwin(nn.Module):
        """The same network as ``red_net(depth=15, width=64)`` in plain PyTorch."""

        def __init__(self, depth=DEPTH, width=WIDTH, skip_every=2):
            super().__init__()
            self.skip_every = skip_every
            self.enc = nn.ModuleList([nn.Conv2d(1 if i == 0 else width, width, 3, padding=1) for i in range(depth)])
            self.dec = nn.ModuleList([nn.ConvTranspose2d(width, 1 if i == depth - 1 else width, 3, padding=1)
                                      for i in range(depth)])

        def forward(self, x):
            skips, h = [], x
            for conv in self.enc:
                h = torch.relu(conv(h))
                skips.append(h)
            depth = len(self.dec)
            for i, deconv in enumerate(self.dec):
                h = deconv(h)
                j = depth - 2 - i  # encoder layer mirrored to decoder output i
                if i < depth - 1:
                    if (j + 1) % self.skip_every == 0 and j >= 0:
                        h = h + skips[j]
                    h = torch.relu(h)
            return x + h

    dev = torch.device("cuda")
    model = RedNetTwin().to(dev).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    compiled = torch.compile(model)
    y = torch.rand(batch, 1, patch, patch, device=dev).to(memory_format=torch.channels_last)
    x = y + 0.1 * torch.randn_like(y)
    dtype = torch.bfloat16 if precision == "mixed_bfloat16" else torch.float32

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            loss = torch.mean((compiled(x) - y) ** 2)
        loss.backward()
        opt.step()
        return loss

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"impl": "pytorch-twin (torch.compile, channels-last)", "precision": precision, "batch": batch,
            "patch": patch, "params": params, "patches_per_s": steps * batch / seconds}


def matmul_peak() -> dict:
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    reps = 50
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"bf16_matmul_tflops": 2 * n**3 * reps / seconds / 1e12, "device": torch.cuda.get_device_name(0)}


def _run(kind: str, **kw) -> dict:
    """Run one measurement in a fresh interpreter (one backend per process)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed_gpu as s; "
            f"print('RESULT ' + json.dumps(s.{kind}(**{kw!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"impl": kind, **kw, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    args = parser.parse_args(argv)
    # The paper profile trains with batch 128 of 50x50 patches: time that configuration.
    configs = [(128, 50)] if not args.quick else [(4, 16)]
    peak = matmul_peak() if not args.quick else {"bf16_matmul_tflops": float("nan"), "device": "cpu"}
    rows = []
    for batch, patch in configs:
        for backend in ("jax", "torch"):
            for precision in ("float32", "mixed_bfloat16"):
                rows.append(_run("keras_worker", backend=backend, precision=precision, batch=batch,
                                 patch=patch, steps=args.steps))
                print(rows[-1], flush=True)
        if not args.quick:
            for precision in ("float32", "mixed_bfloat16"):
                rows.append(_run("torch_twin", batch=batch, patch=patch, steps=args.steps, precision=precision))
                print(rows[-1], flush=True)
    # FLOPs per patch depend on the patch size: take them from a Keras row of the same size.
    flops_by_patch = {r["patch"]: r["train_flops_per_patch"] for r in rows if "train_flops_per_patch" in r}
    for r in rows:
        flops = flops_by_patch.get(r.get("patch"))
        if flops and "patches_per_s" in r:
            r["tflops"] = r["patches_per_s"] * flops / 1e12
            r["mfu_vs_bf16_peak"] = r["tflops"] / peak["bf16_matmul_tflops"]
    meta = {"date": dt.date.today().isoformat(), "command": "python benchmarks/speed_gpu.py", **peak,
            "network": f"red_net(depth={DEPTH}, width={WIDTH})", "train_flops_per_patch_note":
            "3x forward conv FLOPs (2 per multiply-add), counted from the layer shapes"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
