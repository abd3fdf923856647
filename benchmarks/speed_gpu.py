"""GPU training speed of the paper denoiser: Keras (JAX, torch) against a PyTorch twin, medians of interleaved runs.

One run of this script measures, on the card it runs on, training patches/s of ``deconvlab.models.red_net(depth=15,
width=64)`` for every contender below, all on the same fixed batches already on the device (compute and dispatch,
not the input path), except the two ``+sampler`` rows, which draw every batch on the device with
:class:`deconvlab.sampler.PatchSampler` (the real training path):

* Keras on JAX: ``fit`` (``steps_per_execution`` 1 and 32), ``train_on_batch``, both in bf16 and fp32, and the
  fused loop of ``benchmarks/time_to_quality.py`` (``lax.scan`` over ``model.stateless_call`` +
  ``optimizer.stateless_apply``, 50 steps per dispatch), also at larger batches and patches;
* the same network in plain PyTorch (``torch.compile``, bf16 autocast, channels-last, cuDNN benchmark mode,
  fused Adam), bf16 and fp32 (TF32 convolutions, as JAX's fp32 on this card);
* Keras on torch: ``train_on_batch`` in bf16 and fp32;
* a bf16 8192^3 matmul, the peak that MFU is measured against.

Each backend lives in its own worker process (the Keras backend is fixed at import). The workers are started one
after the other (so cuDNN/XLA autotuning never competes for the card) and warmed up; then every contender runs one
untimed repetition and ``--reps`` timed ones, round-robin, so slow drifts of the card (clocks, heat) hit every
contender alike. Reported per contender: median patches/s, min, max and spread ((max - min) / median).
FLOPs per patch come from :func:`train_flops_per_patch` (3x the forward multiply-adds of every convolution, 2
FLOPs each; the package has no MACs function yet, so it lives here). MFU is model FLOPs over the median peak.

Usage (GPU host): ``python benchmarks/speed_gpu.py --out benchmarks/results`` (about 4 minutes after the machine starts);
``--quick`` checks the script on a CPU with tiny sizes (JAX only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEPTH, WIDTH = 15, 64
HERE = Path(__file__).resolve().parent
FUSED_K = 50  # training steps per dispatch of the fused loop


# ------------------------------------------------------------------------------------------------ FLOPs


def train_flops_per_patch(model, patch: int) -> float:
    """Training FLOPs of one patch: forward, input gradient and weight gradient, 2 FLOPs per multiply-add each.

    The multiply-adds come from the package's one MACs function, which the model cards record too.
    """
    from deconvlab.models import macs_per_pixel

    return 3 * 2 * macs_per_pixel(model) * patch * patch


# ------------------------------------------------------------------------------------------------ contenders


def contenders(quick: bool) -> list[dict]:
    """Every (worker, mode, precision, batch, patch) to time. ``worker`` groups those sharing a process."""
    if quick:
        small = (4, 16)
        return [{"worker": "keras-jax", "mode": m, "precision": "float32", "batch": small[0], "patch": small[1]}
                for m in ("fit", "fit_spe", "train_on_batch", "fused", "fused_sampler", "fit_sampler")]
    rows = []
    for precision in ("mixed_bfloat16", "float32"):
        for mode in ("fit", "fit_spe", "train_on_batch", "fused"):
            if precision == "float32" and mode == "fit_spe":
                continue
            rows.append({"worker": "keras-jax", "mode": mode, "precision": precision, "batch": 128, "patch": 50})
    bf16 = {"worker": "keras-jax", "precision": "mixed_bfloat16"}
    rows += [
        {**bf16, "mode": "fused_sampler", "batch": 128, "patch": 50},
        {**bf16, "mode": "fit_sampler", "batch": 128, "patch": 50},
        {**bf16, "mode": "fused", "batch": 256, "patch": 50},
        {**bf16, "mode": "fused", "batch": 64, "patch": 96},
        {**bf16, "mode": "fused_sampler", "batch": 64, "patch": 96},
    ]
    for precision in ("mixed_bfloat16", "float32"):
        rows.append({"worker": "torch", "mode": "twin", "precision": precision, "batch": 128, "patch": 50})
    rows.append({"worker": "torch", "mode": "twin", "precision": "mixed_bfloat16", "batch": 64, "patch": 96})
    rows.append({"worker": "torch", "mode": "matmul_peak", "precision": "bfloat16", "batch": 0, "patch": 0})
    for precision in ("mixed_bfloat16", "float32"):
        rows.append({"worker": "keras-torch", "mode": "train_on_batch", "precision": precision, "batch": 128,
                     "patch": 50})
    # XLA flag lever: let CUDA graphs cover the scan's while loop too (one launch per dispatch, not per kernel)
    rows.append({"worker": "keras-jax-cmdbuf", "mode": "fused", "precision": "mixed_bfloat16", "batch": 128,
                 "patch": 50})
    return rows


WORKER_ENV = {
    "keras-jax": {"KERAS_BACKEND": "jax"},
    "keras-jax-cmdbuf": {
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
    },
    "torch": {},
    "keras-torch": {"KERAS_BACKEND": "torch"},
}


def _fixed_batch(batch: int, patch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.random((batch, patch, patch, 1), dtype=np.float32)
    x = (y + rng.normal(0, 0.1, y.shape)).astype(np.float32)
    return x, y


class KerasJaxRunner:
    """One Keras-on-JAX contender: builds its model, compiles, and times ``steps`` training steps."""

    def __init__(self, spec: dict, quick: bool) -> None:
        import jax
        import keras

        from deconvlab.models import red_net

        self.spec, self.mode = spec, spec["mode"]
        keras.mixed_precision.set_global_policy(spec["precision"])
        depth, width = (2, 8) if quick else (DEPTH, WIDTH)
        self.model = red_net(channels=1, depth=depth, width=width)
        self.flops = train_flops_per_patch(self.model, spec["patch"])
        x, y = _fixed_batch(spec["batch"], spec["patch"])
        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.k = 2 if quick else FUSED_K
        self.step = 0
        if self.mode.startswith("fused"):
            sys.path.insert(0, str(HERE))
            from time_to_quality import FusedTrainer

            sampler = self._sampler(spec, quick) if self.mode == "fused_sampler" else None
            self.trainer = FusedTrainer(self.model, self.k, sampler=sampler,
                                        fixed=None if sampler else (self.x, self.y), peak_lr=1e-4)
            self.state = self.trainer.init()
            self.granularity = self.k
        else:
            spe = 32 if self.mode == "fit_spe" else 1
            self.model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=True,
                               steps_per_execution=spe)
            self.granularity = spe
            if self.mode == "fit_sampler":
                self.sampler = self._sampler(spec, quick)
        self.time(2 * self.granularity)  # compile and warm up

    @staticmethod
    def _sampler(spec, quick):
        from deconvlab.data import load_dataset
        from deconvlab.sampler import PatchSampler

        images = load_dataset("train400", mode="gray", limit=16 if quick else None).images
        return PatchSampler(images, patch_size=spec["patch"], batch_size=spec["batch"], sigma=25.0, seed=0)

    def _dataset(self, steps: int):
        import keras

        runner = self

        class DeviceBatches(keras.utils.PyDataset):
            """Batches that are already device arrays: Keras' JAX iterator passes them through untouched."""

            def __len__(self):
                return steps

            def __getitem__(self, i):
                if runner.mode == "fit_sampler":
                    runner.step += 1
                    return runner.sampler.batch(runner.step)
                return runner.x, runner.y

        return DeviceBatches()

    def time(self, steps: int) -> float:
        import jax

        steps = max(self.granularity, steps // self.granularity * self.granularity)
        if self.mode.startswith("fused"):
            start = time.perf_counter()
            for _ in range(steps // self.k):
                self.state, loss = self.trainer.run(self.state, self.step, 10**6)
                self.step += self.k
            jax.block_until_ready(loss)
        elif self.mode == "train_on_batch":
            start = time.perf_counter()
            for _ in range(steps):
                loss = self.model.train_on_batch(self.x, self.y)  # returns host floats: one sync per step
            float(loss)
        else:
            data = self._dataset(steps)
            start = time.perf_counter()
            self.model.fit(data, epochs=1, verbose=0)  # fit syncs at the end of the epoch (logs)
        return time.perf_counter() - start, steps


class TorchRunner:
    """The PyTorch twin of red_net (or the bf16 matmul peak)."""

    def __init__(self, spec: dict, quick: bool) -> None:
        import torch

        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        self.spec, self.torch, self.flops = spec, torch, None
        self.granularity = 1
        dev = torch.device("cuda")
        if spec["mode"] == "matmul_peak":
            n = 8192
            self.a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
            self.b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
            self.flops = 2.0 * n**3
            self.time(3)
            return
        from torch import nn

        class RedNetTwin(nn.Module):
            """The same network as ``red_net(depth=15, width=64)``: skips every 2 layers, global residual."""

            def __init__(self, depth=DEPTH, width=WIDTH, skip_every=2):
                super().__init__()
                self.skip_every = skip_every
                self.enc = nn.ModuleList([nn.Conv2d(1 if i == 0 else width, width, 3, padding=1)
                                          for i in range(depth)])
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
                    j = depth - 2 - i  # encoder feature mirrored to decoder output i
                    if i < depth - 1:
                        if (j + 1) % self.skip_every == 0 and j >= 0:
                            h = h + skips[j]
                        h = torch.relu(h)
                return x + h

        model = RedNetTwin().to(dev).to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(model.parameters(), 1e-4, fused=True)
        self.model = torch.compile(model)
        x, y = _fixed_batch(spec["batch"], spec["patch"])
        to_dev = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).to(dev).contiguous(  # noqa: E731
            memory_format=torch.channels_last)
        self.x, self.y = to_dev(x), to_dev(y)
        self.dtype = torch.bfloat16 if spec["precision"] == "mixed_bfloat16" else torch.float32
        self.time(5)

    def _step(self):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=self.dtype, enabled=self.dtype != torch.float32):
            loss = torch.mean((self.model(self.x).float() - self.y) ** 2)
        loss.backward()
        self.opt.step()

    def time(self, steps: int) -> float:
        torch = self.torch
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            if self.spec["mode"] == "matmul_peak":
                self.a @ self.b
            else:
                self._step()
        torch.cuda.synchronize()
        return time.perf_counter() - start, steps


class KerasTorchRunner:
    """Keras on the torch backend: ``train_on_batch`` on CUDA tensors (Keras' torch trainer has no XLA)."""

    def __init__(self, spec: dict, quick: bool) -> None:
        import keras
        import torch

        from deconvlab.models import red_net

        self.torch = torch
        keras.mixed_precision.set_global_policy(spec["precision"])
        self.model = red_net(channels=1, depth=DEPTH, width=WIDTH)
        self.model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
        self.flops = train_flops_per_patch(self.model, spec["patch"])
        self.granularity = 1
        x, y = _fixed_batch(spec["batch"], spec["patch"])
        self.x, self.y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
        self.time(3)

    def time(self, steps: int) -> float:
        self.torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.model.train_on_batch(self.x, self.y)
        float(loss)
        self.torch.cuda.synchronize()
        return time.perf_counter() - start, steps


RUNNERS = {"keras-jax": KerasJaxRunner, "keras-jax-cmdbuf": KerasJaxRunner, "torch": TorchRunner,
           "keras-torch": KerasTorchRunner}


def worker_main(name: str, specs: list[dict], quick: bool) -> None:
    """Build every contender of one worker, say READY, then answer ``RUN index steps`` lines from stdin."""
    runners = []
    for spec in specs:
        t0 = time.perf_counter()
        try:
            runners.append(RUNNERS[name](spec, quick))
            error = None
        except Exception as exc:  # one broken contender must not cost the others their numbers
            runners.append(None)
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        info = {"index": len(runners) - 1, "setup_s": time.perf_counter() - t0, "error": error,
                "flops_per_item": getattr(runners[-1], "flops", None)}
        print("INFO " + json.dumps(info), flush=True)
    print("READY", flush=True)
    for line in sys.stdin:
        cmd, index, steps = line.split()
        if cmd != "RUN":
            break
        runner = runners[int(index)]
        try:
            seconds, done = runner.time(int(steps))
            print("DONE " + json.dumps({"seconds": seconds, "steps": done}), flush=True)
        except Exception as exc:
            print("DONE " + json.dumps({"error": f"{type(exc).__name__}: {str(exc)[:300]}"}), flush=True)


# ------------------------------------------------------------------------------------------------ parent


class Worker:
    def __init__(self, name: str, specs: list[dict], quick: bool, logdir: Path) -> None:
        env = dict(os.environ, **WORKER_ENV[name], PYTHONUNBUFFERED="1",
                   XLA_PYTHON_CLIENT_PREALLOCATE="false")  # several processes share the card
        if quick:
            env["JAX_PLATFORMS"] = "cpu"
        self.log = logdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", name, "--specs", json.dumps(specs)] + (["--quick"] if quick else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, env=env)
        self.infos = []
        for line in self._lines():
            if line.startswith("INFO "):
                self.infos.append(json.loads(line[5:]))
            elif line == "READY":
                return
        raise RuntimeError(f"worker {name} died during set-up: {self.tail()}")

    def _lines(self):
        for line in self.proc.stdout:
            yield line.rstrip("\n")

    def tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])[-600:]

    def run(self, index: int, steps: int) -> dict:
        self.proc.stdin.write(f"RUN {index} {steps}\n")
        self.proc.stdin.flush()
        for line in self._lines():
            if line.startswith("DONE "):
                return json.loads(line[5:])
        return {"error": f"worker died: {self.tail()}"}

    def close(self) -> None:
        try:
            self.proc.stdin.write("STOP 0 0\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def gpu_info() -> dict:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
        name, driver, memory, clock = (s.strip() for s in out.splitlines()[0].split(","))
        return {"gpu": name, "driver": driver, "gpu_memory": memory, "max_sm_clock": clock}
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return {"gpu": "none", "driver": None}


def versions() -> dict:
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('jax', 'jaxlib', 'keras', 'torch', 'numpy') if __import__('importlib').util.find_spec(p)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


def label(spec: dict) -> str:
    names = {"fit": "fit", "fit_spe": "fit steps_per_execution=32", "train_on_batch": "train_on_batch",
             "fused": f"fused lax.scan ({FUSED_K} steps/dispatch)",
             "fused_sampler": f"fused lax.scan ({FUSED_K} steps/dispatch) + on-device sampler",
             "fit_sampler": "fit + on-device sampler (PyDataset of device arrays)",
             "twin": "PyTorch twin (torch.compile, channels-last, fused Adam)", "matmul_peak": "bf16 matmul 8192^3"}
    impl = {"keras-jax-cmdbuf": "keras-jax, XLA command buffers incl. WHILE"}.get(spec["worker"], spec["worker"])
    return f"{impl}: {names[spec['mode']]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per contender (>= 3)")
    parser.add_argument("--rep-seconds", type=float, default=1.5, help="target length of one repetition")
    parser.add_argument("--deadline-s", type=float, default=480.0, help="start no round after this many seconds")
    parser.add_argument("--only", nargs="*", default=None, help="workers to run (default: all)")
    parser.add_argument("--time-to-quality", type=Path, default=HERE / "results" / "time_to_quality.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, JAX on the CPU, to check the script")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--specs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, json.loads(args.specs), args.quick)
        return 0

    specs = contenders(args.quick)
    if args.only:
        specs = [s for s in specs if s["worker"] in args.only]
    started = time.perf_counter()
    workers, order = {}, []
    logdir = Path(tempfile.mkdtemp(prefix="speed_gpu_"))
    for name in dict.fromkeys(s["worker"] for s in specs):  # one at a time: autotuning alone on the card
        mine = [s for s in specs if s["worker"] == name]
        if time.perf_counter() - started > args.deadline_s / 2:
            for s in mine:
                s["error"] = "not started: set-up of the other workers used half of --deadline-s"
            continue
        try:
            workers[name] = Worker(name, mine, args.quick, logdir)
        except RuntimeError as exc:
            print(exc, flush=True)
            for s in mine:
                s["error"] = str(exc)
            continue
        for i, (s, info) in enumerate(zip(mine, workers[name].infos, strict=True)):
            s.update(setup_s=round(info["setup_s"], 1), flops_per_item=info["flops_per_item"])
            if info["error"]:
                s["error"] = info["error"]
            else:
                order.append((name, i, s))
        print(f"{name}: ready after {time.perf_counter() - started:.0f} s", flush=True)

    # one untimed repetition sizes each contender's steps to about --rep-seconds; then interleaved timed rounds
    for name, i, s in order:
        probe = workers[name].run(i, 10)
        if "error" in probe:
            s["error"] = probe["error"]
            continue
        s["steps_per_rep"] = max(3, int(args.rep_seconds * probe["steps"] / probe["seconds"]))
        s["times"] = []
    live = [(n, i, s) for n, i, s in order if "error" not in s]
    result = summarize(specs, args, argv, started)
    for r in range(args.reps):
        if time.perf_counter() - started > args.deadline_s:
            print(f"stopping after {r} rounds: --deadline-s {args.deadline_s:.0f} reached", flush=True)
            break
        shift = r % max(len(live), 1)
        for name, i, s in live[shift:] + live[:shift]:  # rotate the start so no contender always goes first
            res = workers[name].run(i, s["steps_per_rep"])
            if "error" in res:
                s.setdefault("rep_errors", []).append(res["error"])
            else:
                s["times"].append(res)
        print(f"round {r + 1}/{args.reps} done at {time.perf_counter() - started:.0f} s", flush=True)
        result = summarize(specs, args, argv, started)  # written every round: a cut-off run keeps its numbers
    for w in workers.values():
        w.close()
    print(to_markdown(result))
    return 0


def summarize(specs: list[dict], args, argv, started: float) -> dict:
    """Medians, spreads, FLOPs, MFU and ratios of the repetitions so far; writes speed_gpu.json and .md."""
    # ---- statistics
    peak = next((s for s in specs if s["mode"] == "matmul_peak" and s.get("times")), None)
    peak_tflops = None
    if peak:
        rates = [t["steps"] * peak["flops_per_item"] / t["seconds"] / 1e12 for t in peak["times"]]
        peak_tflops = statistics.median(rates)
        peak.update(tflops_median=peak_tflops, tflops_min=min(rates), tflops_max=max(rates))
    rows = []
    for s in specs:
        row = {"contender": label(s), **{k: s[k] for k in ("worker", "mode", "precision", "batch", "patch")}}
        for key in ("setup_s", "steps_per_rep", "error", "rep_errors"):
            if key in s:
                row[key] = s[key]
        if s["mode"] != "matmul_peak" and s.get("times"):
            rates = [t["steps"] * s["batch"] / t["seconds"] for t in s["times"]]
            med = statistics.median(rates)
            row.update(reps=len(rates), patches_per_s_median=med, patches_per_s_min=min(rates),
                       patches_per_s_max=max(rates), spread=(max(rates) - min(rates)) / med,
                       ms_per_step_median=1000 * s["batch"] / med, patches_per_s_all=rates)
        elif s["mode"] == "matmul_peak" and peak_tflops:
            row.update(reps=len(s["times"]), tflops_median=peak_tflops, tflops_min=s["tflops_min"],
                       tflops_max=s["tflops_max"])
        rows.append(row)
    flops_at = {(s["patch"]): s["flops_per_item"] for s in specs
                if s["worker"].startswith("keras") and s.get("flops_per_item")}
    for row in rows:
        flops = flops_at.get(row["patch"])
        if flops and "patches_per_s_median" in row:
            row["train_flops_per_patch"] = flops
            row["tflops"] = row["patches_per_s_median"] * flops / 1e12
            if peak_tflops:
                row["mfu"] = row["tflops"] / peak_tflops

    def find(worker, mode, precision="mixed_bfloat16", batch=128, patch=50):
        return next((r for r in rows if (r["worker"], r["mode"], r["precision"], r["batch"], r["patch"])
                     == (worker, mode, precision, batch, patch) and "patches_per_s_median" in r), None)

    for row in rows:
        twin = find("torch", "twin", row["precision"], row["batch"], row["patch"])
        if twin and "patches_per_s_median" in row and row["worker"] != "torch":
            row["ratio_vs_twin_median"] = row["patches_per_s_median"] / twin["patches_per_s_median"]
    fused, fit = find("keras-jax", "fused"), find("keras-jax", "fit")
    best_mfu = max((r for r in rows if r["worker"].startswith("keras-jax") and "mfu" in r),
                   key=lambda r: r["mfu"], default=None)
    ttq = None
    if args.time_to_quality.is_file():
        ttq = json.loads(args.time_to_quality.read_text()).get("time_to_29_27_s")
    summary = {
        "ratio_vs_twin_median": fused.get("ratio_vs_twin_median") if fused else None,
        "ratio_vs_twin_median_of": "keras-jax fused lax.scan, bf16, 128 x 50^2, over the twin's bf16 median",
        "ratio_vs_twin_median_fit": fit.get("ratio_vs_twin_median") if fit else None,
        "mfu": best_mfu["mfu"] if best_mfu else None,
        "mfu_of": best_mfu["contender"] + f", {best_mfu['batch']} x {best_mfu['patch']}^2" if best_mfu else None,
        "time_to_29_27_s": ttq,
        "time_to_29_27_source": str(args.time_to_quality.name) if ttq is not None else None,
    }
    meta = {"date": dt.date.today().isoformat(),
            "command": "python benchmarks/speed_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            **(gpu_info() if not args.quick else {"gpu": "cpu (quick check)"}), **versions(),
            "bf16_matmul_tflops_median": peak_tflops,
            "network": f"red_net(depth={DEPTH}, width={WIDTH})", "reps": args.reps,
            "flops_note": "train FLOPs/patch = 3 x 2 x conv multiply-adds per pixel x patch^2 (macs_per_pixel)",
            "wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    result = with_reader_keys({**summary, "meta": meta, "rows": rows})
    (args.out / "speed_gpu.json").write_text(json.dumps(result, indent=1))
    (args.out / "speed_gpu.md").write_text(to_markdown(result))
    return result




def with_reader_keys(result: dict) -> dict:
    """Add the keys the chapters and the workshop tables read (the names of the first version of this file).

    ``meta.device`` and ``meta.bf16_matmul_tflops`` (the GPU and the median peak), per row ``impl`` (backend, plus
    the mode where it is not plain ``fit``), ``patches_per_s`` (the median) and ``mfu_vs_bf16_peak``; the matmul
    row moves to ``meta.bf16_matmul``, since it times no training. Idempotent.
    """
    meta = result["meta"]
    meta.setdefault("device", meta.get("gpu"))
    meta.setdefault("bf16_matmul_tflops", meta.get("bf16_matmul_tflops_median"))
    rows = []
    for r in result["rows"]:
        if r["mode"] == "matmul_peak":
            meta["bf16_matmul"] = {k: v for k, v in r.items() if k.startswith(("tflops", "reps", "steps"))}
            continue
        if r["mode"] == "twin":
            r.setdefault("impl", "pytorch-twin")
        elif r["mode"] in ("fit", "train_on_batch") and r["worker"] == "keras-torch":
            r.setdefault("impl", "keras-torch")
        else:
            r.setdefault("impl", r["worker"] if r["mode"] == "fit" else f"{r['worker']}-{r['mode'].replace('_', '-')}")
        if "patches_per_s_median" in r:
            r.setdefault("patches_per_s", r["patches_per_s_median"])
        if "mfu" in r:
            r.setdefault("mfu_vs_bf16_peak", r["mfu"])
        rows.append(r)
    result["rows"] = rows
    return result


def to_markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# Training speed on one GPU (red_net 15+15, width 64)", "",
        f"{meta.get('gpu')}, driver {meta.get('driver')}; jax {meta.get('jax')}, keras {meta.get('keras')}, "
        f"torch {meta.get('torch')}; {meta['date']}; `{meta['command']}`.", "",
        f"Median of {meta['reps']} interleaved repetitions per contender (one untimed repetition first); spread ="
        " (max - min) / median. Fixed device batches unless the row says sampler. MFU against the bf16 matmul"
        f" peak measured in the same run: {_fmt(meta.get('bf16_matmul_tflops_median'), 0)} TFLOP/s.", "",
        "| contender | precision | batch x patch | patches/s median | min - max | spread | ms/step | MFU "
        "| vs twin |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["mode"] == "matmul_peak":
            continue
        size = f"{r['batch']} x {r['patch']}^2"
        if "patches_per_s_median" not in r:
            lines.append(f"| {r['contender']} | {r['precision']} | {size} | failed: {r.get('error', '?')[:120]} "
                         "| | | | | |")
            continue
        lines.append(
            f"| {r['contender']} | {r['precision']} | {size} | {r['patches_per_s_median']:,.0f} | "
            f"{r['patches_per_s_min']:,.0f} - {r['patches_per_s_max']:,.0f} | {100 * r['spread']:.1f} % | "
            f"{r['ms_per_step_median']:.2f} | {_fmt(r.get('mfu'), 3)} | {_fmt(r.get('ratio_vs_twin_median'), 2)} |")
    lines += ["", f"ratio_vs_twin_median (fused, bf16, 128 x 50^2): {_fmt(result['ratio_vs_twin_median'], 3)};"
              f" best MFU: {_fmt(result['mfu'], 3)} ({result['mfu_of']}); time_to_29_27_s:"
              f" {_fmt(result['time_to_29_27_s'], 1)}.", ""]
    best = result.get("time_to_29_27_best") or {}
    for label_, run_ in (("best run within 180 s", best.get("within_180_s")), ("best run", best.get("of_all_runs"))):
        if run_:
            lines.append(f"Time to quality ({label_}, `time_to_quality.json`): {run_['tag']}, BSD68"
                         f" {run_['bsd68_psnr']:.3f} dB after {run_['train_seconds']:.0f} s.")
    if best.get("shortfall", {}).get("mfu_needed_at_least"):
        s = best["shortfall"]
        lines.append(f"Shortfall: taking the best run's {s['steps']:,} steps within 180 s needs at least"
                     f" {s['speedup_needed_at_least']:.2f}x its step rate, an MFU of at least"
                     f" {s['mfu_needed_at_least']:.2f} (`time_to_quality.md`).")
    lines.append("")
    lines += _what_separates_them(result)
    return "\n".join(lines)


#: The highest bf16 matmul peak measured on this card kind in earlier runs (8192^3, short bursts), TFLOP/s.
EARLIER_PEAK_TFLOPS = 796.0


def _what_separates_them(result: dict) -> list[str]:
    """Differences of median step times, read as the cost of each mechanism (the profile by elimination)."""
    rows = {(r["worker"], r["mode"], r["precision"], r["batch"], r["patch"]): r for r in result["rows"]
            if "ms_per_step_median" in r}

    def ms(worker, mode, precision="mixed_bfloat16", batch=128, patch=50):
        row = rows.get((worker, mode, precision, batch, patch))
        return None if row is None else row["ms_per_step_median"]

    fused, fit, tob = ms("keras-jax", "fused"), ms("keras-jax", "fit"), ms("keras-jax", "train_on_batch")
    spe, fit_s, fused_s = ms("keras-jax", "fit_spe"), ms("keras-jax", "fit_sampler"), ms("keras-jax", "fused_sampler")
    twin = next((r for r in result["rows"] if r["mode"] == "twin" and r["precision"] == "mixed_bfloat16"
                 and r["batch"] == 128 and "patches_per_s_median" in r), None)
    out = ["## What separates them (differences of median ms/step at 128 x 50^2, bf16)", ""]
    if None not in (fused, fit, tob):
        out.append(f"- Dispatch: `fit` costs {fit - fused:+.2f} ms/step over the fused loop (one jitted dispatch per"
                   f" step and Keras' epoch machinery); `train_on_batch` {tob - fused:+.2f} ms: it hands back host"
                   " floats, so every step waits for the GPU before the next is queued.")
    if spe is not None and fit is not None:
        out.append(f"- `steps_per_execution=32` changes `fit` by {spe - fit:+.2f} ms/step: Keras 3's JAX trainer runs"
                   " those steps as a Python loop of single-step dispatches, not one compiled loop.")
    if None not in (fit_s, fit, fused_s, fused):
        out.append(f"- Input path: drawing batches on the device costs {fused_s - fused:+.2f} ms/step inside the"
                   f" fused loop (the gather and noise fuse into the step) and {fit_s - fit:+.2f} ms/step through"
                   " `fit` (a separate jitted sampler dispatch per step, issued from Python between steps).")
    if twin:
        out.append(f"- The PyTorch twin's repetitions spread {100 * twin['spread']:.0f} % ("
                   f"{twin['patches_per_s_min']:,.0f} - {twin['patches_per_s_max']:,.0f} patches/s) in one"
                   " process with fixed inputs; the Keras-JAX rows spread under 1 %, so ratios against the twin"
                   " need its median, and its best repetition is the fairer bound.")
    peak = result["meta"].get("bf16_matmul_tflops_median")
    if peak:
        out.append(f"- MFU is against the matmul peak measured in this run ({peak:.0f} TFLOP/s, repetitions of"
                   f" about one second); against the {EARLIER_PEAK_TFLOPS:.0f} TFLOP/s of earlier short bursts"
                   " it is " + ", ".join(
                       f"{r['mfu'] * peak / EARLIER_PEAK_TFLOPS:.3f} ({r['contender'].split(': ')[1]}, "
                       f"{r['batch']} x {r['patch']}^2)" for r in result["rows"]
                       if r.get("mfu") and r["worker"] == "keras-jax" and r["mode"] == "fused"
                       and r["precision"] == "mixed_bfloat16") + ".")
    out.append("")
    return out


def _fmt(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.exit(main())
