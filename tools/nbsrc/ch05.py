"""Builder of notebooks/05_trends_challenges.ipynb (run from the repository root: python tools/nbsrc/ch05.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from nbbuild import code, colab, md, write  # noqa: E402

TITLE = "Trends and challenges, measured"
SOLUTION = ("solution", "hide-input")

cells = [
    colab(),
    md(r"""
# Trends and challenges, measured

*原标题 — 未来发展趋势与挑战 (future trends and challenges)*

The source article closes with four trends — more efficient and more accurate deconvolution, new deconvolution
operators, combinations with generative models such as GANs and VAEs, and use in other vision tasks — and three
challenges: compute cost on large image sets, overfitting and vanishing gradients in high-resolution enhancement,
and limits across tasks. It states them without evidence. This chapter turns each one into a small experiment
that runs on a laptop CPU in the quick profile, and reads the GPU numbers from benchmark files that the book
commits together with the device and date they were measured on.

**Overview**
1. Measure how training and inference cost grow with image size and batch size, and what mixed precision and
   XLA change.
2. Restore a one-megapixel image in tiles with bounded memory and check that the result equals the
   whole-image prediction.
3. Train data-parallel on the engines Keras already has, and read the measured scaling from one to two GPUs.
4. Compare three upsampling operators — transposed convolution, resize-convolution and sub-pixel convolution —
   in the same network: quality, checkerboard artifacts, speed.
5. Fine-tune a restoration network adversarially and measure the perception–distortion trade-off.
6. Reuse the conv → deconv → fuse network for segmentation and compare it with a classical baseline.
7. Measure what batch normalisation and weight decay do to vanishing gradients and to overfitting.
"""),
    md(r"""
## Prerequisites

| Concept | Where | Needed for |
|:--|:--|:--|
| RED-Net, training with `dl.train.train`, the PSNR metric | Chapter 3 | every training cell |
| Super-resolution protocol, `tile_predict`, `evaluate` | Chapter 4 | tiling, upsampling operators |
| Transposed convolution as the adjoint of convolution | Chapter 2 | upsampling operators |
| GAN basics: a generator and a discriminator trained against each other | {cite:p}`goodfellow2014gan` | adversarial fine-tuning |

**Time to learn**: about an hour to read; a few minutes to run in the quick profile on a CPU.
"""),
    md(r"""
## Imports

Everything below uses Keras 3 and `keras.ops` only, so the notebook runs unchanged on the TensorFlow and JAX
backends; `psutil` (installed with Jupyter) reads the process memory.
"""),
    code(r"""
import functools
import json
import threading
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import psutil
import skimage
from IPython.display import Markdown

import deconvlab as dl

dl.plots.apply_style()
runtime = dl.describe_runtime()
"""),
    md(r"""
The profile sizes every experiment. The quick profile (CPU) trains each network for tens to a few hundred steps;
the workshop profile (a GPU) uses the same code with larger patches, wider and deeper networks and many times more
steps, because every step count below is a fraction of `profile.train_steps`.
"""),
    code(r"""
profile = dl.get_profile()
jit = dl.train.resolve_jit_compile("auto")  # XLA on JAX and on TensorFlow with a GPU; off on TensorFlow CPU
rng = np.random.default_rng(0)
train_set = dl.data.load_dataset("Train400", limit=profile.train_images)
sr_test = dl.data.load_dataset("Set5", limit=profile.test_images)
{field: getattr(profile, field) for field in ("name", "patch_size", "batch_size", "train_steps", "width", "depth")} | {"xla": jit}
"""),
    md(r"""
Two small helpers used throughout: one turns rows into a Markdown table, the other measures how much the
process's resident memory rises while a function runs (a background thread samples it every 2 ms).
"""),
    code(r"""
def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|:--|" + "--:|" * (len(header) - 1)]
    return Markdown("\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]))


def peak_rss_mib(fn):
    process = psutil.Process()
    start = peak = process.memory_info().rss
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return result, (peak - start) / 2**20
"""),
    # ------------------------------------------------------------------------------------------ cost
    md(r"""
## Cost as the work grows

The article's first challenge is that deconvolution networks are expensive on large image sets. A fully
convolutional network does a fixed amount of work per pixel, so cost should grow linearly with the number of
pixels; the questions are how far from that the real numbers are, and what the hardware tricks buy.

### Training throughput against patch size and batch size

`train_throughput` times `train_on_batch` on random data; the first call traces (or compiles) the step and is
timed separately.
"""),
    code(r"""
def train_throughput(model, batch, patch, steps=3):
    y = rng.random((batch, patch, patch, 1), dtype=np.float32)
    x = y + rng.normal(0, 0.1, y.shape).astype(np.float32)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))  # wait for the device
    return first, batch * steps / (time.perf_counter() - start)
"""),
    md(r"""
The profile's RED-Net is trained on a few steps of each setting: three patch sizes at a small batch, then three
batch sizes at the profile's patch size.
"""),
    code(r"""
cost_model = dl.models.red_net(width=profile.width, depth=profile.depth)
cost_model.compile(optimizer="adam", loss="mse", jit_compile=jit)
patch_sides = [profile.patch_size // 2, profile.patch_size, 2 * profile.patch_size]
batch_sizes = [profile.batch_size // 4, profile.batch_size // 2, profile.batch_size]
by_patch = {p: train_throughput(cost_model, batch_sizes[0], p) for p in patch_sides}
by_batch = {b: train_throughput(cost_model, b, profile.patch_size) for b in batch_sizes}
"""),
    md(r"""
The figure has two panels: on the left, training throughput in megapixels per second against the patch side; on
the right, patches per second against the batch size. Flat lines on the left mean cost proportional to pixels.
"""),
    code(r"""
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
ax1.plot(patch_sides, [by_patch[p][1] * p * p / 1e6 for p in patch_sides], marker="o")
ax1.set(xlabel="patch side (pixels)", ylabel="megapixels / s", ylim=(0, None), title=f"batch {batch_sizes[0]}")
ax2.plot(batch_sizes, [by_batch[b][1] for b in batch_sizes], marker="o")
ax2.set(xlabel="batch size (patches)", ylabel="patches / s", ylim=(0, None),
        title=f"patches {profile.patch_size}x{profile.patch_size}")
fig.suptitle(f"Training throughput of red_net(depth={profile.depth}, width={profile.width}), {runtime['device']}")
plt.show()
"""),
    code(r"""
per_pixel = [by_patch[p][1] * p * p for p in patch_sides]
print(f"pixels/s vary by {max(per_pixel) / min(per_pixel):.2f}x across patch sides {patch_sides}")
print(f"patches/s grow {by_batch[batch_sizes[-1]][1] / by_batch[batch_sizes[0]][1]:.2f}x "
      f"from batch {batch_sizes[0]} to {batch_sizes[-1]} ({batch_sizes[-1] // batch_sizes[0]}x the work per step)")
"""),
    md(r"""
The printed ratios say how far this machine is from the ideal of a cost proportional to pixels. A CPU's few
cores are kept busy even by small batches; a GPU's thousands are not, which is why the GPU benchmark below uses
batches of over a hundred patches.

### Inference time and memory against image size

Inference has no batch to shrink, so memory grows with the image. The next cell runs the same network on square
crops of a 1024 x 1024 noisy photograph (scikit-image's `camera`, enlarged twice) and records the time and the rise
in resident memory. The weights are untrained: cost does not depend on them.
"""),
    code(r"""
photo = skimage.data.camera().astype(np.float32) / 255
big_noisy = dl.degrade.add_gaussian_noise(dl.degrade.bicubic_resize(photo, scale=2), 25, seed=0)
dl.infer.predict_image(cost_model, big_noisy[:64, :64])  # warm up
sides = [256, 512, 1024]
inference = {}
for side in sides:
    start = time.perf_counter()
    whole, mib = peak_rss_mib(functools.partial(dl.infer.predict_image, cost_model, big_noisy[:side, :side]))
    inference[side] = {"seconds": time.perf_counter() - start, "peak_mib": mib}
big_noisy.shape
"""),
    md(r"""
The two panels show seconds and peak memory rise against megapixels; the dashed line on the right is the size
of one float32 feature map of `width` channels, so the ratio tells how many feature maps are alive at once.
"""),
    code(r"""
mpix = [s * s / 1e6 for s in sides]
fmap_mib = [s * s * profile.width * 4 / 2**20 for s in sides]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
ax1.plot(mpix, [inference[s]["seconds"] for s in sides], marker="o")
ax1.set(xlabel="megapixels", ylabel="seconds", title="whole-image inference time")
ax2.plot(mpix, [inference[s]["peak_mib"] for s in sides], marker="o", label="measured peak rise")
ax2.plot(mpix, fmap_mib, "--", label="one feature map")
ax2.set(xlabel="megapixels", ylabel="MiB", title="memory")
ax2.legend()
plt.show()
print({s: round(inference[s]["peak_mib"] / f, 1) for s, f in zip(sides, fmap_mib, strict=True)}, "feature maps alive at the peak")
"""),
    md(r"""
The peak is several feature maps deep: the skip connections keep encoder features alive until the decoder uses
them. If memory keeps growing in proportion to the pixels, a 12-megapixel photograph needs about twelve times the
1-megapixel figure — on a GPU, in its much smaller memory — which is why large images are restored in tiles.
(On a GPU the feature maps live in GPU memory, which this process-memory measurement does not see: run this
section on a CPU.)

### Tiled inference: bounded memory, the same result

`dl.infer.tile_predict` (chapter 4) runs overlapping tiles and blends them with a window that ignores the
`overlap // 4` pixels nearest each inner tile edge. A pixel of this network sees `2 * depth` pixels around it
(one per 3 x 3 conv or deconv), so an overlap of four times that makes the tiles exact, not approximate.
"""),
    code(r"""
overlap = 4 * 2 * profile.depth
start = time.perf_counter()
tiled, tiled_mib = peak_rss_mib(
    functools.partial(dl.infer.tile_predict, cost_model, big_noisy, tile=256, overlap=overlap))
tiled_seconds = time.perf_counter() - start
max_diff = float(np.max(np.abs(tiled - whole)))
tiling = {"equal": max_diff <= 1e-4, "memory_ratio": tiled_mib / inference[1024]["peak_mib"]}
md_table(["method", "seconds", "peak memory rise (MiB)", "max abs difference"], [
    ["whole image", f"{inference[1024]['seconds']:.2f}", f"{inference[1024]['peak_mib']:.0f}", "—"],
    [f"tiles 256, overlap {overlap}", f"{tiled_seconds:.2f}", f"{tiled_mib:.0f}", f"{max_diff:.1e}"]])
"""),
    md(r"""
The verdict rule: tiling is *equal* when the largest difference is at most 1e-4, and it *bounds memory* when its
peak is below half the whole-image peak.
"""),
    code(r"""
print(f"equal within 1e-4: {tiling['equal']};  tiled peak = {tiling['memory_ratio']:.0%} of the whole-image peak "
      f"-> {'memory bounded' if tiling['memory_ratio'] < 0.5 else 'no memory saving'}")
"""),
    md(r"""
Tiles recompute their overlaps, which costs time in principle (the table shows what it cost here), but their
memory depends on the tile size, not on the image: the same call restores a 100-megapixel scan.

### Mixed precision and XLA on this machine

Two switches change speed without changing the network: *mixed precision* computes in 16-bit floats while keeping
float32 weights {cite:p}`micikevicius2018mixed`, and *XLA* compiles the whole training step into fused kernels.
`dl.train.resolve_jit_compile("auto")` turns XLA on for JAX and for TensorFlow on a GPU, and off for TensorFlow
on a CPU (Keras' own `"auto"` would turn it on there too). The next cell measures both switches live on a
smaller RED-Net (depth 2), which keeps XLA's compile time short.
"""),
    code(r"""
switches = {"float32, no XLA": ("float32", False), "float32, XLA": ("float32", True),
            "mixed_bfloat16, no XLA": ("mixed_bfloat16", False)}
switch_results = {}
for label, (policy, xla) in switches.items():
    keras.mixed_precision.set_global_policy(policy)
    model = dl.models.red_net(width=profile.width, depth=2)
    keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer="adam", loss="mse", jit_compile=xla)
    switch_results[label] = train_throughput(model, batch_sizes[0], profile.patch_size)
base = switch_results["float32, no XLA"][1]
md_table(["variant", "first call (s)", "patches / s", "speed vs float32, no XLA"],
         [[k, f"{f:.1f}", f"{v:.0f}", f"{v / base:.2f}x"] for k, (f, v) in switch_results.items()])
"""),
    md(r"""
Whether the switches pay on a CPU depends on its instruction set — bfloat16 is fast only on cores with bfloat16
units (AVX-512 BF16 or AMX) — and on how many steps amortise XLA's compile time; the table is this machine's
answer. The book's defaults leave both off on CPUs and turn both on on GPUs, where the committed benchmark below
shows what they buy.

### On a data-centre GPU: the committed benchmark

`benchmarks/speed_gpu.py` trains the paper-size denoiser (RED-Net, depth 15, width 64) on synthetic patches
already in GPU memory, through Keras on JAX and on PyTorch in float32 and bfloat16, and a twin of the same network
written in plain PyTorch (`torch.compile`, channels-last) as a reference. It also measures the card's bfloat16
matrix-multiply peak. The next cell loads the file and prints where it was measured.
"""),
    code(r"""
results = dl.paths.results_dir()
speed = json.loads((results / "speed_gpu.json").read_text())
speed_meta = speed["meta"]
print(f"{speed_meta['device']}, measured {speed_meta['date']} with `{speed_meta['command']}`, "
      f"network {speed_meta['network']}, bf16 matmul peak {speed_meta['bf16_matmul_tflops']:.0f} TFLOP/s")
"""),
    md(r"""
Model FLOP utilisation (MFU) divides the training FLOPs the network needs (three times the forward convolution
FLOPs, counted from the layer shapes) per second by the measured bf16 matmul peak. Float32 rows are divided by
the same bf16 peak, so their MFU shows how much of the card's 16-bit capacity they leave unused.
"""),
    code(r"""
flops = {r["patch"]: r["train_flops_per_patch"] for r in speed["rows"] if "train_flops_per_patch" in r}
speed_rows, table = [r for r in speed["rows"] if "patches_per_s" in r], []
for r in speed["rows"]:
    if "patches_per_s" not in r:
        table.append([r.get("impl"), r.get("precision"), "", "failed: " + str(r.get("error", "?"))[:60], "", ""])
        continue
    tflops = r["patches_per_s"] * flops[r["patch"]] / 1e12
    table.append([r["impl"], r["precision"], f"{r['batch']} x {r['patch']}²", f"{r['patches_per_s']:,.0f}",
                  f"{tflops:.1f}", f"{tflops / speed_meta['bf16_matmul_tflops']:.0%}"])
md_table(["implementation", "precision", "batch x patch", "patches / s", "TFLOP/s", "MFU"], table)
"""),
    md(r"""
The bar chart has one panel per batch setting and one bar per implementation and precision, labelled with the
device and date of the measurement.
"""),
    code(r"""
configs = sorted({(r["batch"], r["patch"]) for r in speed_rows})
fig, axes = plt.subplots(1, len(configs), figsize=(6.4 * len(configs), 3.4), layout="constrained", squeeze=False)
for ax, (batch, patch) in zip(axes[0], configs, strict=True):
    rows = [r for r in speed_rows if (r["batch"], r["patch"]) == (batch, patch)]
    labels = [f"{r['impl'].split(' ')[0]}, {r['precision'].replace('mixed_', '')}" for r in rows]
    colors = ["tab:blue" if "bfloat" in r["precision"] else "tab:gray" for r in rows]
    ax.barh(labels, [r["patches_per_s"] for r in rows], color=colors)
    ax.invert_yaxis()
    ax.set(xlabel="patches / s", title=f"batch {batch} x {patch}x{patch}")
fig.suptitle(f"Training speed of {speed_meta['network']}\n{speed_meta['device']}, {speed_meta['date']}")
plt.show()
"""),
    md(r"""
The ratios the text cares about are computed from the file: what bfloat16 buys over float32 for each
implementation, and how Keras on JAX compares with the hand-written PyTorch twin at the same precision.
"""),
    code(r"""
def rate(impl, precision, config):
    found = [r["patches_per_s"] for r in speed_rows
             if r["impl"].startswith(impl) and r["precision"] == precision and (r["batch"], r["patch"]) == config]
    return found[0] if found else float("nan")


for config in configs:
    bf16_gain = {impl: rate(impl, "mixed_bfloat16", config) / rate(impl, "float32", config)
                 for impl in ("keras-jax", "keras-torch", "pytorch-twin")}
    print(f"batch {config[0]} x {config[1]}²: bf16 / float32 =", {k: round(v, 2) for k, v in bf16_gain.items()},
          f"| keras-jax / pytorch-twin (bf16) = {rate('keras-jax', 'mixed_bfloat16', config) / rate('pytorch-twin', 'mixed_bfloat16', config):.2f}")
"""),
    md(r"""
Hardware acceleration, the remedy the article's FAQ proposes, is real but specific: the gain comes from 16-bit
tensor cores and compiled kernels, and how much of it a framework realises on the same network differs, as the
ratios show.
"""),
    # ------------------------------------------------------------------------------------------ distribute
    md(r"""
## Beyond one GPU: data parallelism

When one GPU is not enough, data parallelism copies the model to every GPU, splits each global batch between
them, and averages the gradients. Keras does not need a new training loop for it: `dl.distribute.data_parallel()`
picks the engine of the active backend — `keras.distribution.DataParallel` on JAX,
`tf.distribute.MirroredStrategy` on TensorFlow — and the model is built and trained inside its `scope()`.
"""),
    code(r"""
strategy = dl.distribute.data_parallel()
print(f"backend {keras.backend.backend()}: {strategy.engine}, {strategy.num_replicas} replica(s) on {strategy.devices}")
"""),
    md(r"""
On this CPU (the TensorFlow path when `KERAS_BACKEND=tensorflow`) there is one replica, so the cell below only
shows the code path: it trains a small RED-Net for a few steps, with the same calls as on eight GPUs.
"""),
    code(r"""
dp_patches = dl.data.PatchDataset(train_set, dl.degrade.noise_degradation(25), patch_size=profile.patch_size,
                                  batch_size=profile.batch_size * strategy.num_replicas, steps_per_epoch=1)
with strategy.scope():
    dp_model = dl.models.red_net(width=profile.width, depth=2)
    dp_history = dl.train.train(dp_model, dp_patches, epochs=1, steps_per_epoch=profile.train_steps // 40,
                                verbose=0, seed=0)
{k: round(v[-1], 3) for k, v in dp_history.history.items()}
"""),
    md(r"""
The next cell is the same training on two or more GPUs, with the global batch growing with the number of
replicas (each GPU keeps its batch). It skips itself, with a message, when fewer than two GPUs are visible.
"""),
    code(r"""
n_gpus = dl.distribute.gpu_count()
if n_gpus < 2:
    print(f"skipped: multi-GPU training needs at least 2 visible GPUs, this machine has {n_gpus}")
else:
    multi = dl.distribute.data_parallel()
    multi_patches = dl.data.PatchDataset(train_set, dl.degrade.noise_degradation(25), patch_size=profile.patch_size,
                                         batch_size=profile.batch_size * multi.num_replicas, steps_per_epoch=1)
    with multi.scope():
        multi_model = dl.models.red_net(width=profile.width, depth=profile.depth)
        start = time.perf_counter()
        dl.train.train(multi_model, multi_patches, epochs=1, steps_per_epoch=profile.train_steps // 10, verbose=0)
    print(f"{multi.num_replicas} GPUs ({multi.engine}): "
          f"{profile.train_steps // 10 * multi_patches.batch_size / (time.perf_counter() - start):.0f} patches/s, compile included")
"""),
    md(r"""
The committed scaling benchmark (`benchmarks/scaling.py`) ran the paper-size denoiser with
`keras.distribution.DataParallel` on one and on two GPUs of one host (the device and date are in the figure's
title), in bfloat16 with XLA, with the same number of patches per GPU.
Scaling efficiency is the speed-up divided by the number of GPUs (1 = perfectly linear). The figure shows
patches per second per GPU count, the ideal linear line, and the efficiency inside each bar.
"""),
    code(r"""
scaling = json.loads((results / "scaling_gpu.json").read_text())
scale_rows = sorted((r for r in scaling["rows"] if "patches_per_s" in r), key=lambda r: r["gpus"])
one_gpu = next(r["patches_per_s"] for r in scale_rows if r["gpus"] == 1)
fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
gpus = [r["gpus"] for r in scale_rows]
ax.bar([str(g) for g in gpus], [r["patches_per_s"] for r in scale_rows], color="tab:blue", label="measured")
ax.plot([str(g) for g in gpus], [one_gpu * g for g in gpus], "k--", marker="o", label="ideal (linear)")
for i, r in enumerate(scale_rows):
    ax.annotate(f"{r['patches_per_s'] / one_gpu / r['gpus']:.0%}", (i, r["patches_per_s"] / 2), ha="center",
                color="white", fontsize=12)
ax.set(xlabel="GPUs", ylabel="patches / s", title=f"{scaling['meta']['device']}, {scaling['meta']['date']}")
ax.legend(loc="upper left")
plt.show()
"""),
    md(r"""
Data parallelism raises training throughput by the measured speed-up, not by the number of GPUs: fixed costs per
step (the gradient all-reduce, feeding the input) do not shrink with more cards. It does not help the memory of one
large image, which is what tiling is for.
"""),
    # ------------------------------------------------------------------------------------------ upsampling
    md(r"""
## New upsampling operators

The article's second trend is "new deconvolution algorithms". The most consequential change since RED-Net is in
*how* a network upsamples. Three operators double the resolution of a feature map:

* **transposed convolution** — the adjoint of a strided convolution (chapter 2); when its kernel overlaps
  unevenly it paints checkerboards {cite:p}`odena2016deconvolution`; the book's uses a 4 x 4 kernel at stride 2,
  which overlaps evenly;
* **resize-convolution** — nearest-neighbour upsampling, then an ordinary convolution {cite:p}`odena2016deconvolution`;
* **sub-pixel convolution** — a convolution to `r*r` times the channels, then a *pixel shuffle* that moves
  channels into an `r x r` block of pixels {cite:p}`shi2016espcn`.

The pixel shuffle is a reshape and a transpose. Written in NumPy, it matches the package's `DepthToSpace` layer
exactly:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
def pixel_shuffle(x, r):
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, r, r, c // (r * r))  # channel (i * r + j) * C + c -> sub-pixel (i, j) of channel c
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, c // (r * r))


features = np.random.default_rng(1).random((2, 5, 7, 12), dtype=np.float32)
shuffled = pixel_shuffle(features, 2)
shuffled.shape, bool(np.array_equal(shuffled, keras.ops.convert_to_numpy(dl.layers.DepthToSpace(2)(features))))
"""),
    md(r"""
The test bed is 2x super-resolution with post-upsampling: the RED-Net body (two layers shallower than the
profile's, to keep the trainings short) runs on the low-resolution image and one of the three operators produces
the output, with everything else identical. The parameter counts differ only by the operator's kernel:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
scale = 2
upsamplers = ("transposed", "resize", "subpixel")
sr_models = {}
for up in upsamplers:
    dl.set_seed(0)
    sr_models[up] = dl.models.red_net_sr(scale=scale, upsample="post", up=up, width=profile.width,
                                         depth=profile.depth - 2, name=f"sr_{up}")  # as built: He initialisation
{up: dl.models.count_params(m) for up, m in sr_models.items()}
"""),
    md(r"""
A flat gray image is the cleanest artifact test: a perfect upsampler returns it flat, so any pattern in the output
comes from the operator. The figure shows a 16 x 16 crop of each untrained network's output on a flat input,
contrast-stretched per panel (the title gives the actual standard deviation, the *ripple*); borders, where zero
padding acts, are cut away.
"""),
    code(r"""
flat = np.full((1, 64, 64, 1), 0.5, np.float32)
margin = 4 * profile.depth + 8  # output pixels that may see the zero padding of the borders


def ripple(model):
    out = dl.infer.predict_image(model, flat)[0, margin:-margin, margin:-margin, 0]
    return out, float(out.std())


ripple_init = {up: ripple(m) for up, m in sr_models.items()}
fig, axes = plt.subplots(1, 3, figsize=(8, 3.0), layout="constrained")
for ax, (up, (out, std)) in zip(axes, ripple_init.items(), strict=True):
    dl.plots.show(ax, 0.5 + (out[:16, :16] - out.mean()) / (6 * max(std, 1e-12)), f"{up}\nripple {std:.1e}")
fig.suptitle("Untrained networks on a flat image (16x16 crop, stretched)")
plt.show()
"""),
    md(r"""
At initialisation the transposed and sub-pixel operators paint a 2 x 2 periodic pattern — each of the four
output phases gets its own kernel — while resize-convolution cannot: all four phases see the same input and
the same kernel. The transposed operator's pattern is also *larger*, for a reason worth knowing: Keras computes
the He initialisation of a transposed convolution from its kernel's layout `(kh, kw, out, in)` as if `out` were
the input channels, so a 1-channel output layer starts with weights several times too large. The next cell
compares the kernel's standard deviation with He's value for both fan-ins (each output pixel of the stride-2,
4 x 4 transposed convolution is fed by 2 x 2 taps of every input channel).
"""),
    code(r"""
kernel = keras.ops.convert_to_numpy(sr_models["transposed"].get_layer("upsample").kernel)
kh, kw, n_out, n_in = kernel.shape
{"kernel shape": kernel.shape, "kernel std": round(float(kernel.std()), 3),
 "He, fan-in as Keras counts it": round(float(np.sqrt(2 / (kh * kw * n_out))), 3),
 "He, true fan-in": round(float(np.sqrt(2 / (n_in * (kh // scale) * (kw // scale)))), 3)}
"""),
    md(r"""
Before comparing the operators, one training of the transposed network *as built* shows what such a start does.
Two measurements diagnose the run: the PSNR of the bilinear skip alone (the network's global fusion, with the
learned branch silent) and the fraction of the body's last ReLU units that are active on a test image. A network
whose PSNR is within 0.05 dB of its bilinear skip has learned nothing.
"""),
    code(r"""
sr_steps, sr_depth = profile.train_steps // 2, profile.depth - 2
sr_patches = dl.data.PatchDataset(train_set, dl.degrade.sr_degradation(scale, pre_upsample=False),
                                  patch_size=profile.patch_size, batch_size=profile.batch_size // 2,
                                  steps_per_epoch=sr_steps, scale=scale)
hr = dl.metrics.modcrop(dl.metrics.rgb_to_y(sr_test.images[sr_test.names.index("butterfly_GT")]), scale)
lr = dl.degrade.downscale(hr, scale)


def active_fraction(model):
    body = keras.Model(model.inputs[0], model.get_layer(f"deconv{sr_depth}").output)
    return float(np.mean(keras.ops.convert_to_numpy(body(lr[None, :, :, None])) > 0))


def train_sr(model):
    start = time.perf_counter()
    dl.train.train(model, sr_patches, epochs=1, steps_per_epoch=sr_steps, verbose=0, seed=0)
    return time.perf_counter() - start
"""),
    code(r"""
bilinear = keras.Sequential([keras.Input(shape=(None, None, 1)), dl.layers.BilinearUpsample(scale)])
bilinear_psnr = dl.evaluate.evaluate(bilinear, sr_test, "sr", scale=scale).mean_psnr
as_built = sr_models["transposed"]
active_before = active_fraction(as_built)
train_sr(as_built)
as_built_psnr = dl.evaluate.evaluate(as_built, sr_test, "sr", scale=scale).mean_psnr
collapse_verdict = "collapsed to the bilinear skip" if abs(as_built_psnr - bilinear_psnr) < 0.05 else "learned"
print(f"bilinear skip alone {bilinear_psnr:.2f} dB | transposed as built {as_built_psnr:.2f} dB -> {collapse_verdict}")
print(f"active ReLU units in the body's last layer: {active_before:.0%} before, {active_fraction(as_built):.0%} after")
"""),
    md(r"""
A large random output on top of the global skip makes the first gradient steps large, and a quick way for
gradient descent to silence the branch is to switch its ReLUs off, after which they get no gradient. The standard
cure for residual branches is to start their last layer at zero {cite:p}`zhang2019fixup`: the network then begins
as its skip connection, with no pattern at all, and learns a correction from there. The comparison below gives
every operator that start — the upsampler's kernel is zeroed, nothing else changes — and the same short
training.
"""),
    code(r"""
zero_start, train_seconds = {}, {}
for up in upsamplers:
    dl.set_seed(0)
    model = dl.models.red_net_sr(scale=scale, upsample="post", up=up, width=profile.width, depth=sr_depth,
                                 name=f"sr_{up}_zero")
    kernel, bias = model.get_layer("upsample").get_weights()
    model.get_layer("upsample").set_weights([np.zeros_like(kernel), bias])
    train_seconds[up] = train_sr(model)
    zero_start[up] = model
sr_results = {up: dl.evaluate.evaluate(m, sr_test, "sr", scale=scale) for up, m in zero_start.items()}
"""),
    md(r"""
The table gives, per operator, the mean PSNR and SSIM on Set5 (Y channel, 2 pixels shaved, the SR protocol of
chapter 4), the ripple on the flat image after training (zero at the start for all three), the active fraction
of the body's last ReLUs, and the time per test image and per training run; bicubic interpolation and the
bilinear skip alone are the baselines.
"""),
    code(r"""
rows = [[up, f"{r.mean_psnr:.2f}", f"{r.mean_ssim:.4f}", f"{ripple(zero_start[up])[1]:.1e}",
         f"{active_fraction(zero_start[up]):.0%}", f"{1000 * r.mean['seconds']:.0f}", f"{train_seconds[up]:.1f}"]
        for up, r in sr_results.items()]
any_result = sr_results["resize"]
rows += [["bicubic", f"{any_result.mean_input_psnr:.2f}", f"{any_result.mean_input_ssim:.4f}", "", "", "", ""],
         ["bilinear skip alone", f"{bilinear_psnr:.2f}", "", "", "", "", ""]]
md_table(["operator", "PSNR (dB)", "SSIM", "ripple trained", "active ReLUs", "ms / image", "training (s)"], rows)
"""),
    md(r"""
The verdict rule: operators whose PSNR lies within 0.1 dB of the best are tied with it.
"""),
    code(r"""
best_up = max(sr_results, key=lambda up: sr_results[up].mean_psnr)
tied = [up for up in upsamplers if sr_results[best_up].mean_psnr - sr_results[up].mean_psnr <= 0.1]
upsampling_verdict = f"best {best_up}; tied within 0.1 dB: {', '.join(tied)}"
print(upsampling_verdict, f"| bicubic {any_result.mean_input_psnr:.2f} dB")
"""),
    md(r"""
The figure compares the three outputs on the *butterfly* image of Set5 with the high-resolution original and the
bicubic baseline (PSNR/SSIM against the original in the titles, a zoomed inset on the wing).
"""),
    code(r"""
sr_outputs = {"bicubic": dl.degrade.upscale(lr, scale)}
sr_outputs |= {up: np.clip(dl.infer.predict_image(m, lr), 0, 1) for up, m in zero_start.items()}
dl.plots.compare({"original": hr, **sr_outputs}, reference=hr, zoom=(150, 40, 48, 48), ncols=5)
"""),
    md(r"""
A checkerboard that survived training would show in the spectrum of the error as bright points at half a cycle
per pixel (the corners and edge midpoints of each panel). The panels show the log spectrum of output minus
original for each operator.
"""),
    code(r"""
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), layout="constrained")
for ax, up in zip(axes, upsamplers, strict=True):
    dl.plots.plot_spectrum(sr_outputs[up] - hr, ax=ax, title=f"{up}: error spectrum")
plt.show()
"""),
    md(r"""
Two lessons, in order of size. First, how the learned branch *starts* decides whether a short training works at
all; the operator comes second. Second, with a fair start the operators are compared on equal terms: the PSNR
column says whether the choice matters for quality after the same short training, the ripple column whether
training introduced a periodic pattern (resize-convolution cannot, by construction), and the last columns what
each costs. The quick profile trains far too briefly to reach the published quality of such networks; the
comparison is between equals. Checkerboards matter most where no pixel loss corrects them — in generators — which
is where resize-convolution {cite:p}`odena2016deconvolution` and sub-pixel convolution with an initialisation that
makes the four phases equal {cite:p}`aitken2017checkerboard` (exercise 2) came from.
"""),
    # ------------------------------------------------------------------------------------------ GAN
    md(r"""
## Combining with generative models: an adversarial fine-tune

The article's third trend is combining deconvolution with GANs and VAEs. An MSE-trained restorer predicts the
*mean* of all plausible sharp images, which is blurry; a GAN adds a second network, the *discriminator*, that
learns to tell restored images from real ones, and the restorer is trained to fool it as well
{cite:p}`goodfellow2014gan,ledig2017srgan`. Blau and Michaeli proved that no method can be best at both
distortion (PSNR) and perceptual quality at once {cite:p}`blau2018perception`: this experiment measures the
trade-off.

The discriminator is tiny: three stride-2 convolutions, a global average and one logit.
"""),
    code(r"""
def discriminator(width=16):
    x = inputs = keras.Input(shape=(None, None, 1))
    for i in range(3):
        x = keras.layers.Conv2D(width * 2**i, 3, strides=2, padding="same")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x), name="discriminator")


bce = keras.losses.BinaryCrossentropy(from_logits=True)
"""),
    md(r"""
The training alternates two `train_on_batch` calls, which works on every backend. The discriminator learns
"real" for original patches and "restored" for the generator's outputs. The generator is trained through a
*combined* model, generator → frozen copy of the discriminator, with the loss
MSE + `adv_weight` x (cross-entropy of "the discriminator says real"); the frozen copy receives the
discriminator's weights before every generator step, so only the generator changes there.
"""),
    code(r"""
def adversarial_finetune(generator, adv_weight, steps, patches):
    dl.set_seed(0)
    disc = discriminator()
    disc.compile(optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), loss=bce, jit_compile=jit)
    frozen = keras.models.clone_model(disc)
    frozen.trainable = False
    lr_in = keras.Input(shape=(None, None, 1))
    restored = generator(lr_in)
    combined = keras.Model(lr_in, [restored, frozen(restored)])
    combined.compile(optimizer=keras.optimizers.Adam(1e-4, beta_1=0.5), loss=["mse", bce],
                     loss_weights=[1.0, adv_weight], jit_compile=jit)
    for step in range(steps):
        lr, hr = patches[step]
        real, fake = np.ones((len(hr), 1), "float32"), np.zeros((len(hr), 1), "float32")
        if adv_weight > 0:  # with weight 0 the discriminator cannot influence the generator: skip its steps
            disc.train_on_batch(np.concatenate([hr, generator.predict_on_batch(lr)]), np.concatenate([real, fake]))
            frozen.set_weights(disc.get_weights())
        combined.train_on_batch(lr, [hr, real])
    return generator
"""),
    md(r"""
Both runs start from the MSE-trained resize-convolution network above and see the same batches: the control
with `adv_weight = 0` (the same loop and optimizer, pure MSE), and the adversarial run.
"""),
    code(r"""
def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


gan_steps, adv_weight = profile.train_steps // 4, 0.05
gan_patches = dl.data.PatchDataset(train_set, dl.degrade.sr_degradation(scale, pre_upsample=False),
                                   patch_size=profile.patch_size, batch_size=profile.batch_size // 2,
                                   steps_per_epoch=gan_steps, scale=scale, seed=1)
control = adversarial_finetune(copy_of(zero_start["resize"]), 0.0, gan_steps, gan_patches)
adversarial = adversarial_finetune(copy_of(zero_start["resize"]), adv_weight, gan_steps, gan_patches)
"""),
    md(r"""
Sharpness is measured as the mean gradient magnitude of the output relative to that of the original image: 1
means as much edge energy as the original, below 1 blurrier, above 1 more (real or invented) detail.
"""),
    code(r"""
def grad_mag(img):
    gy, gx = np.gradient(img)
    return float(np.mean(np.hypot(gx, gy)))


def psnr_and_sharpness(method):
    psnrs, sharpness = [], []
    for img in sr_test.images:
        hr_y = dl.metrics.modcrop(dl.metrics.rgb_to_y(img), scale)
        out = dl.metrics.crop_border(np.clip(method(dl.degrade.downscale(hr_y, scale)), 0, 1), scale)
        hr_y = dl.metrics.crop_border(hr_y, scale)
        psnrs.append(dl.metrics.psnr(hr_y, out))
        sharpness.append(grad_mag(out) / grad_mag(hr_y))
    return float(np.mean(psnrs)), float(np.mean(sharpness))
"""),
    code(r"""
gan_methods = {"bicubic": lambda x: dl.degrade.upscale(x, scale),
               "MSE (start)": functools.partial(dl.infer.predict_image, zero_start["resize"]),
               "MSE control": functools.partial(dl.infer.predict_image, control),
               f"adversarial ({adv_weight})": functools.partial(dl.infer.predict_image, adversarial)}
gan_scores = {name: psnr_and_sharpness(fn) for name, fn in gan_methods.items()}
md_table(["method", "PSNR (dB)", "sharpness (1 = original)"],
         [[name, f"{p:.2f}", f"{s:.3f}"] for name, (p, s) in gan_scores.items()])
"""),
    md(r"""
The verdict rule: the trade-off is observed when the adversarial run has a lower PSNR *and* a higher sharpness
than the control.
"""),
    code(r"""
(p_ctl, s_ctl), (p_adv, s_adv) = gan_scores["MSE control"], gan_scores[f"adversarial ({adv_weight})"]
gan_verdict = "trade-off observed" if p_adv < p_ctl and s_adv > s_ctl else "trade-off not observed"
print(f"{gan_verdict}: PSNR {p_adv - p_ctl:+.2f} dB, sharpness {s_adv - s_ctl:+.3f} (adversarial - control)")
"""),
    md(r"""
The figure shows the butterfly wing as restored by the control and by the adversarial run, next to the original
(PSNR/SSIM against it in the titles).
"""),
    code(r"""
dl.plots.compare({"original": hr, "MSE control": np.clip(dl.infer.predict_image(control, lr), 0, 1),
                  "adversarial": np.clip(dl.infer.predict_image(adversarial, lr), 0, 1)},
                 reference=hr, zoom=(150, 40, 48, 48))
"""),
    md(r"""
The adversarial weight sets where on the perception–distortion curve the result lands; the theorem
{cite:p}`blau2018perception` says that moving towards more realistic outputs must eventually cost distortion.
Published perceptual SR methods {cite:p}`ledig2017srgan` add a feature-space loss and train far longer than this
sketch.

```{note}
**VAEs.** A variational autoencoder {cite:p}`kingma2014vae` is the other generative model the article names.
Its decoder *is* a deconvolution network, trained to reconstruct its input through a noisy, low-dimensional
code; for restoration it is used as a learned prior (sample or optimise the code so that the decoded image
explains the degraded one). Its samples are blurrier than a GAN's for the same reason an MSE restorer is
blurry: a pixel-wise Gaussian likelihood is an MSE loss. It is not measured here.
```
"""),
    # ------------------------------------------------------------------------------------------ segmentation
    md(r"""
## Other tasks: segmentation with the same encoder–decoder

The fourth trend is using deconvolution in other vision tasks. Encoder–decoders with transposed convolutions and
skip fusion are the standard segmentation networks {cite:p}`long2015fcn,ronneberger2015unet`. To measure that
without a labelled data set, the images are synthetic: scikit-image's `binary_blobs` are the true masks, and the
observed image is the mask at low contrast, blurred and noisy, so the answer is known by construction.
"""),
    code(r"""
masks = [skimage.data.binary_blobs(256, blob_size_fraction=0.08, volume_fraction=0.4, rng=seed).astype(np.float32)
         for seed in range(12)]
train_masks, test_masks = masks[:8], masks[8:]
seg_psf = dl.degrade.gaussian_psf(2.0, 13)


def observe(mask_batch, rng, noise=0.15):
    return dl.degrade.blur(0.4 + 0.2 * mask_batch, seg_psf) + rng.normal(0, noise, mask_batch.shape).astype(np.float32)


test_obs = observe(np.stack(test_masks)[..., None], np.random.default_rng(100))
test_obs.shape
"""),
    md(r"""
The classical baselines smooth the image — with a Gaussian filter whose width is tuned on training images, or
with total-variation denoising {cite:p}`rudin1992tv` — and threshold it with Otsu's method
{cite:p}`otsu1979threshold`. Quality is the intersection over union (IoU) of the predicted and true foreground.
"""),
    code(r"""
def iou(pred, truth):
    return float(np.logical_and(pred, truth).sum() / np.logical_or(pred, truth).sum())


def otsu(img):
    return img > skimage.filters.threshold_otsu(img)


tune_obs = observe(np.stack(train_masks[:3])[..., None], np.random.default_rng(5))[..., 0]
seg_sigma = max((0.5, 1, 2, 3, 4), key=lambda s: np.mean(
    [iou(otsu(skimage.filters.gaussian(o, sigma=s)), m > 0.5) for o, m in zip(tune_obs, train_masks[:3], strict=True)]))
seg_classical = {
    f"Gaussian (sigma {seg_sigma}) + Otsu": [otsu(skimage.filters.gaussian(o[..., 0], sigma=seg_sigma)) for o in test_obs],
    "TV + Otsu": [otsu(dl.classical.tv_denoise(o[..., 0], 0.15 * 255)) for o in test_obs]}
"""),
    md(r"""
The network is the book's RED-Net with a strided encoder, without the global residual, its output read as a
logit per pixel and trained with binary cross-entropy: the same conv → deconv → fuse architecture, a different
loss. `PatchDataset` draws the training pairs: a crop of a mask and its observation.
"""),
    code(r"""
seg_steps = profile.train_steps * 3 // 4
seg_patches = dl.data.PatchDataset(train_masks, observe, patch_size=profile.patch_size,
                                   batch_size=profile.batch_size // 2, steps_per_epoch=seg_steps)
dl.set_seed(0)
seg_net = dl.models.red_net(depth=profile.depth, width=profile.width, down="strided", global_residual=False,
                            name="seg_net")
seg_net.compile(optimizer=keras.optimizers.Adam(profile.learning_rate), loss=bce, jit_compile=jit)
seg_net.fit(seg_patches, epochs=1, verbose=0)
seg_net_masks = [logit[..., 0] > 0 for logit in dl.infer.predict_image(seg_net, test_obs)]
"""),
    md(r"""
The verdict rule: the network *wins* when its mean IoU exceeds the best classical one by more than 0.01, *loses*
when it falls short by more than 0.01, and *ties* otherwise.
"""),
    code(r"""
seg_scores = {name: np.mean([iou(p, m > 0.5) for p, m in zip(preds, test_masks, strict=True)])
              for name, preds in (seg_classical | {"conv/deconv network": seg_net_masks}).items()}
best_classical = max(v for k, v in seg_scores.items() if k != "conv/deconv network")
margin_iou = seg_scores["conv/deconv network"] - best_classical
seg_verdict = "network wins" if margin_iou > 0.01 else "network loses" if margin_iou < -0.01 else "tie"
print(f"{seg_verdict} ({margin_iou:+.3f} IoU against the best classical baseline)")
md_table(["method", "mean IoU"], [[k, f"{v:.3f}"] for k, v in seg_scores.items()])
"""),
    md(r"""
The figure shows one test image: the observation, the true mask, the best classical segmentation and the
network's, with the IoU in the titles.
"""),
    code(r"""
best_name = max(seg_classical, key=lambda k: seg_scores[k])
panels = {"observed": test_obs[0, ..., 0], "true mask": test_masks[0],
          best_name: seg_classical[best_name][0], "conv/deconv network": seg_net_masks[0]}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
for ax, (name, img) in zip(axes, panels.items(), strict=True):
    title = name if name in ("observed", "true mask") else f"{name}\nIoU {iou(img, test_masks[0] > 0.5):.3f}"
    dl.plots.show(ax, np.clip(img, 0, 1), title)
plt.show()
"""),
    md(r"""
On blobs that are smooth by construction, a tuned Gaussian filter plus a global threshold is close to the right
model, and a short training has to learn it from examples; a network can pay off where hand-made priors fail —
uneven illumination, textured objects, several classes — at the cost of labelled data. The same architecture carries
over; the claim that it is *better* has to be measured task by task.
"""),
    # ------------------------------------------------------------------------------------------ BN / WD
    md(r"""
## High-resolution training: vanishing gradients and overfitting

The article's second challenge is that high-resolution enhancement suffers from overfitting and vanishing
gradients, and its FAQ prescribes regularisation and batch normalisation {cite:p}`ioffe2015bn`. Both are measured
here on one network family: a stack of `depth` convolutions and `depth` transposed convolutions (3 x 3, ReLU,
optional BN), no skip connections, a global residual.
"""),
    code(r"""
def conv_deconv_stack(depth, width, bn=False, init="he_normal", last_init="zeros"):
    x = inputs = keras.Input(shape=(None, None, 1))
    for i in range(2 * depth):
        last = i == 2 * depth - 1
        layer = keras.layers.Conv2D if i < depth else keras.layers.Conv2DTranspose
        x = layer(1 if last else width, 3, padding="same", use_bias=not bn,
                  kernel_initializer=last_init if last else init)(x)
        if not last:
            x = keras.layers.BatchNormalization(momentum=0.9)(x) if bn else x
            x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.Add()([inputs, x]), name="conv_deconv_stack")
"""),
    md(r"""
### Vanishing gradients at initialisation

A deep stack (20 layers) is initialised three ways: Keras' default Glorot initialisation, the same with batch
normalisation, and He initialisation {cite:p}`he2015delving`, made for ReLU. The figure shows the norm of every
layer's kernel gradient on one batch of noisy patches (log scale, input layer on the left).
"""),
    code(r"""
noise25 = dl.degrade.noise_degradation(25)
x_val, y_val = dl.train.make_validation_pairs(train_set.images[4:], noise25, patch_size=32, n=64, seed=2)
init_variants = {"Glorot": {"init": "glorot_uniform"}, "Glorot + BN": {"init": "glorot_uniform", "bn": True},
                 "He": {"init": "he_normal"}}
grad_norms = {}
for label, kwargs in init_variants.items():
    dl.set_seed(0)
    model = conv_deconv_stack(10, profile.width, last_init=kwargs["init"], **kwargs)
    grad_norms[label] = [n for _, n in dl.grads.layer_gradient_norms(model, x_val[:8], y_val[:8])]
fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
for label, norms in grad_norms.items():
    ax.semilogy(range(1, len(norms) + 1), norms, marker="o", markersize=3, label=label)
ax.set(xlabel="layer (1 = input side)", ylabel="kernel gradient norm", title="Gradients at initialisation, 20 layers")
ax.legend()
plt.show()
"""),
    code(r"""
{label: f"first layer {norms[0]:.1e}, median {np.median(norms):.1e}" for label, norms in grad_norms.items()}
"""),
    md(r"""
With Glorot initialisation and ReLU, every layer halves the signal's variance, so after 20 layers both the
forward signal and the gradients are orders of magnitude smaller than with batch normalisation or He
initialisation. Vanishing gradients are a property of depth and initialisation, not of image resolution, and
either remedy removes them at the start of training.

### Overfitting on a small training set

Overfitting needs little data and many parameters: 32 fixed noisy patches from four training images, seen again
and again in random mini-batches of 8, with validation on 64 patches from other images. Three variants of a
6-layer stack are trained for the same number of steps with AdamW {cite:p}`loshchilov2019adamw`: plain,
with batch normalisation, and with weight decay. Decoupled weight decay shrinks every weight by
`learning_rate x weight_decay` per step; it is set so that this adds up to 10% over the run.
"""),
    code(r"""
x_small, y_small = dl.train.make_validation_pairs(train_set.images[:4], noise25, patch_size=32, n=32, seed=1)
fit_steps = profile.train_steps * 3 // 10
weight_decay = 0.1 / (1e-3 * fit_steps)


def psnr_on(model, x, y):
    return float(np.mean(keras.ops.convert_to_numpy(dl.train.psnr_per_image(y, model.predict_on_batch(x)))))


def fit_small(model, weight_decay, steps, batch=8):
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=weight_decay, global_clipnorm=1.0),
                  loss="mse", jit_compile=jit)
    pick, curve = np.random.default_rng(0), []
    for step in range(1, steps + 1):
        idx = pick.choice(len(x_small), batch, replace=False)
        model.train_on_batch(x_small[idx], y_small[idx])
        if step % (steps // 5) == 0:
            curve.append((step, psnr_on(model, x_small, y_small), psnr_on(model, x_val, y_val)))
    return curve
"""),
    code(r"""
fit_variants = {"plain": (False, 0.0), "batch norm": (True, 0.0), "weight decay": (False, weight_decay)}
curves = {}
for label, (bn, wd) in fit_variants.items():
    dl.set_seed(0)
    curves[label] = fit_small(conv_deconv_stack(3, profile.width, bn=bn), wd, fit_steps)
"""),
    md(r"""
The figure shows training PSNR (solid) and validation PSNR (dashed) during training for each variant; the gap
between a variant's two lines is its overfitting. The dotted line is the PSNR of the noisy validation input.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(8.4, 3.6), layout="constrained")
for color, (label, curve) in zip(("tab:gray", "tab:blue", "tab:orange"), curves.items(), strict=True):
    steps_done, train_psnr, val_psnr = zip(*curve, strict=True)
    ax.plot(steps_done, train_psnr, color=color, marker="o", label=f"{label}: training")
    ax.plot(steps_done, val_psnr, color=color, marker="o", linestyle="--", label=f"{label}: validation")
noisy_psnr = float(np.mean(keras.ops.convert_to_numpy(dl.train.psnr_per_image(y_val, x_val))))
ax.axhline(noisy_psnr, color="k", linestyle=":", label=f"noisy input ({noisy_psnr:.1f} dB)")
ax.set(xlabel="step", ylabel="PSNR (dB)", title="32 training patches: training vs validation")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
plt.show()
"""),
    md(r"""
The verdict rule, against the plain network: a variant *reduces overfitting* when its final gap is smaller by
more than 0.25 dB without losing more than 0.1 dB of validation PSNR, *increases* it when the gap grows by more
than 0.25 dB, and has *no clear effect* otherwise.
"""),
    code(r"""
final = {label: {"train": c[-1][1], "val": c[-1][2], "gap": c[-1][1] - c[-1][2]} for label, c in curves.items()}


def overfit_verdict(label):
    d_gap, d_val = final[label]["gap"] - final["plain"]["gap"], final[label]["val"] - final["plain"]["val"]
    if d_gap < -0.25 and d_val > -0.1:
        return "reduces overfitting"
    return "increases overfitting" if d_gap > 0.25 else "no clear effect"


md_table(["variant", "training PSNR", "validation PSNR", "gap (dB)", "verdict"],
         [[k, f"{v['train']:.2f}", f"{v['val']:.2f}", f"{v['gap']:.2f}", "—" if k == "plain" else overfit_verdict(k)]
          for k, v in final.items()])
"""),
    md(r"""
Batch normalisation changes how fast the network fits; whether it also narrows the gap is what the verdict column
says, and with a small fixed training set there is no reason it should: its regularising noise comes from the
batch statistics, and a small set has little variety to give. Weight decay acts only as fast as it shrinks the
weights. The other remedy is more data: fresh crops and fresh noise for every batch, which is what `PatchDataset`
does in every other chapter of this book.
"""),
    # ------------------------------------------------------------------------------------------ summary
    md(r"""
## Summary

Each of the article's trends and challenges, with what this chapter measured. The table is built from the
results above by the verdict rules stated with each experiment.
"""),
    code(r"""
md_table(["article's statement", "experiment", "measured"], [
    ["compute cost on large images", "tiled vs whole-image inference, 1 MP",
     f"equal within 1e-4: {tiling['equal']}; tiled peak {tiling['memory_ratio']:.0%} of whole"],
    ["parallel computing helps", "data parallel, 1 vs 2 GPUs (benchmark file)",
     ", ".join(f"{r['gpus']} GPU: {r['patches_per_s'] / one_gpu / r['gpus']:.0%} efficiency" for r in scale_rows)],
    ["new deconvolution operators", "transposed / resize / sub-pixel, equal training",
     f"as built, transposed {collapse_verdict}; zero start: {upsampling_verdict}"],
    ["combining with GANs", "adversarial fine-tune vs MSE control", gan_verdict],
    ["other tasks (segmentation)", "encoder-decoder vs Otsu baselines, IoU", seg_verdict],
    ["BN against overfitting", "32 training patches, train/val gap", overfit_verdict("batch norm")],
    ["regularisation against overfitting", "weight decay, same setting", overfit_verdict("weight decay")]])
"""),
    md(r"""
- A fully convolutional network's cost grows with the number of pixels. Tiling bounds the memory of one large
  image and is exact when the overlap covers the receptive field; more GPUs raise training throughput by the
  measured efficiency; mixed precision and XLA are hardware-specific switches, measured rather than assumed.
- How a residual branch starts can decide more than which upsampling operator it uses; at initialisation only
  resize-convolution is free of the 2 x 2 checkerboard, by construction.
- An adversarial loss moves a restorer along the perception–distortion curve; PSNR alone cannot rank such
  results.
- The conv → deconv → fuse network segments once the loss changes; whether it beats a classical pipeline is a
  measurement, task by task.
- Vanishing gradients at initialisation come from depth and initialisation, and batch normalisation or He
  initialisation removes them; overfitting is a separate problem with its own verdicts above.

## What's next

Chapter 6 answers the article's FAQ — deconvolution versus convolution, its advantages, other tasks, large
images, high resolution — with pointers to the measurements of chapters 2 to 5.
"""),
    # ------------------------------------------------------------------------------------------ exercises
    md(r"""
## Exercises

1. **Overlap and exactness.** Tile a 256 x 256 crop of `big_noisy` with `tile=64` and overlaps 8, 16, 24 and
   `4 * 2 * profile.depth`. At which overlap does the difference to the whole-image result drop to float
   rounding, and why there?
"""),
    code(r"""
crop = big_noisy[:256, :256]
reference = dl.infer.predict_image(cost_model, crop)
{ov: f"{np.max(np.abs(dl.infer.tile_predict(cost_model, crop, tile=64, overlap=ov) - reference)):.1e}"
 for ov in (8, 16, 24, 4 * 2 * profile.depth)}
""", SOLUTION),
    md(r"""
The blending window ignores `overlap // 4` pixels at each inner tile edge; the result is exact once that reaches
the receptive-field radius `2 * depth`. Smaller overlaps still give small errors because far pixels weigh little.

2. **A checkerboard-free sub-pixel initialisation.** Aitken et al. {cite:p}`aitken2017checkerboard` initialise
   the sub-pixel convolution so that the four output phases start identical. Do that for an untrained
   `red_net_sr(..., up="subpixel")` (its convolution is the layer named `"upsample"`; with one output channel,
   output channels 0 to 3 are the four phases) and measure the ripple.
"""),
    code(r"""
dl.set_seed(0)
icnr = dl.models.red_net_sr(scale=2, upsample="post", up="subpixel", width=profile.width, depth=sr_depth)
print(f"ripple before: {ripple(icnr)[1]:.1e}")
kernel, bias = icnr.get_layer("upsample").get_weights()
icnr.get_layer("upsample").set_weights([np.repeat(kernel[..., :1], 4, axis=-1), np.repeat(bias[:1], 4)])
print(f"ripple after copying phase 0 to all four phases: {ripple(icnr)[1]:.1e}")
""", SOLUTION),
    md(r"""
3. **Amdahl's law.** If a fraction `s` of every step does not parallelise, `N` GPUs give a speed-up of
   `1 / (s + (1 - s) / N)`. Compute `s` from the measured two-GPU efficiency in `scaling_gpu.json` and predict
   the speed-up on 4 and 8 GPUs.
"""),
    code(r"""
two = next(r for r in scale_rows if r["gpus"] == 2)
speedup = two["patches_per_s"] / one_gpu
serial = (2 / speedup - 1) / (2 - 1)
{"serial fraction": round(serial, 3)} | {f"{n} GPUs": round(1 / (serial + (1 - serial) / n), 2) for n in (4, 8)}
""", SOLUTION),
    md(r"""
The fit assumes that the non-parallel part is a fixed fraction of every step. With the batch growing with the
GPU count, that part (the gradient all-reduce, feeding the input) depends on the hardware and the input pipeline,
so measure more GPUs before trusting the extrapolation.

4. **Noise and the classical baseline.** How does the IoU of the tuned Gaussian + Otsu baseline fall as the
   observation noise grows from 0.05 to 0.3?
"""),
    code(r"""
{noise: round(float(np.mean([iou(otsu(skimage.filters.gaussian(o[..., 0], sigma=seg_sigma)), m > 0.5)
                            for o, m in zip(observe(np.stack(test_masks)[..., None], np.random.default_rng(100), noise),
                                            test_masks, strict=True)])), 3)
 for noise in (0.05, 0.1, 0.15, 0.2, 0.3)}
""", SOLUTION),
    md(r"""
5. **Batch normalisation and weight decay together.** Train the fourth combination of the overfitting experiment
   and place it in the table.
"""),
    code(r"""
dl.set_seed(0)
both = fit_small(conv_deconv_stack(3, profile.width, bn=True), weight_decay, fit_steps)
print(f"BN + weight decay: training {both[-1][1]:.2f} dB, validation {both[-1][2]:.2f} dB, gap {both[-1][1] - both[-1][2]:.2f} dB")
""", SOLUTION),
    md(r"""
## References

- Checkerboard artifacts and resize-convolution: {cite:t}`odena2016deconvolution`; sub-pixel convolution:
  {cite:t}`shi2016espcn`; its checkerboard-free initialisation: {cite:t}`aitken2017checkerboard`.
- Mixed precision: {cite:t}`micikevicius2018mixed`.
- GANs: {cite:t}`goodfellow2014gan`; adversarial super-resolution: {cite:t}`ledig2017srgan`; the
  perception–distortion trade-off: {cite:t}`blau2018perception`; VAEs: {cite:t}`kingma2014vae`.
- Segmentation encoder–decoders: {cite:t}`long2015fcn`, {cite:t}`ronneberger2015unet`; Otsu's threshold:
  {cite:t}`otsu1979threshold`; total variation: {cite:t}`rudin1992tv`.
- Zero-initialised residual branches: {cite:t}`zhang2019fixup`.
- Batch normalisation: {cite:t}`ioffe2015bn`; He initialisation: {cite:t}`he2015delving`; decoupled weight decay
  (AdamW): {cite:t}`loshchilov2019adamw`.

Full entries are in the book's {doc}`../book/bibliography`.
"""),
]

if __name__ == "__main__":
    out = write(ROOT / "notebooks" / "05_trends_challenges.ipynb", cells, TITLE)
    print(f"wrote {out.relative_to(ROOT)}")
