"""Build notebooks/06_faq.ipynb (chapter 6: the article's FAQ, answered with experiments).

Run from the repository root: ``.venv/bin/python tools/nbsrc/ch06.py``, then execute the notebook with
``tools/nbtools.py execute notebooks/06_faq.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from nbbuild import code, colab, md, write  # noqa: E402

SOLUTION = ("solution", "hide-input")

cells = [
    colab(),
    md(r"""
# FAQ

*原标题 — 6. 附录常见问题与解答 (appendix: frequently asked questions and answers)*

The article ends with five questions and answers. Its answers are one or two sentences each, and none of them is
checked. This chapter takes the five questions again. For each one it quotes what the article says, runs a short
experiment, and states where the evidence disagrees. Three questions that readers of the book actually ask come
after them: checkerboard artifacts, why two PSNR numbers for the same output differ, and why our numbers differ from
the papers'.

**Overview**
1. Q1: what a "deconvolution" layer is: shapes, the adjoint identity, and why it is not an inverse.
2. Q2: what skip connections change at initialisation, and where the book tests the article's claimed advantages.
3. Q3: one architecture, two tasks: the shipped denoiser and deblurrer, each applied to both degradations.
4. Q4: large images and data sets: tiling that gives exactly the same result, and GPU throughput and multi-GPU
   scaling measured on data-centre GPUs.
5. Q5: high-resolution images: what grows with resolution and what does not.
6. Q6–Q8: checkerboard artifacts, PSNR protocol differences, and our results beside DnCNN's.
"""),
    md(r"""
## Prerequisites

| concept | importance | where |
|---|---|---|
| PSNR, SSIM, the noise / blur / SR protocols | necessary | [Chapter 1](01_background.ipynb) |
| transposed convolution as the adjoint of a convolution | necessary | [Chapter 2](02_core_concepts.ipynb) |
| RED-Net (conv → deconv → fuse), skip connections, gradient norms | necessary | [Chapter 3](03_conv_deconv_fuse.ipynb) |
| shipped weights, `evaluate`, `tile_predict` | helpful | [Chapter 4](04_code_example.ipynb) |
| segmentation, regularisation, batch normalisation, data parallelism | helpful | [Chapter 5](05_trends_challenges.ipynb) |

**Time to learn**: about 30 minutes. Every cell is short; the `quick` profile runs the notebook in about two minutes
on a laptop CPU.
"""),
    md(r"""
## Imports

One import gives the book's package; `describe_runtime` prints what produced every number below.
"""),
    code(r"""
import json
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown

import deconvlab as dl

dl.plots.apply_style()
runtime = dl.describe_runtime()
"""),
    md(r"""
The run profile sizes the cells: the width of the networks built here, the patch size, the number of test images.
The shipped models run on crops of `crop` × `crop` pixels, small on a CPU and larger on a GPU.
"""),
    code(r"""
profile = dl.get_profile()
sigma = 25  # the noise level of the shipped denoiser used throughout
crop = 96 if profile.name == "quick" else 256
profile.name, profile.width, profile.patch_size, profile.test_images, crop
"""),
    md(r"""
Tables in this chapter are lists of rows; this small helper shows them as Markdown, numbers rounded.
"""),
    code(r"""
def table(rows, digits=2):
    # A list of dicts (one per row, same keys) as a Markdown table.
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return Markdown("\n".join(lines))
"""),
    # ------------------------------------------------------------------------------------------------ Q1
    md(r"""
## Q1. How does deconvolution differ from convolution?

The article's answer (A1):

> 传统卷积技术是从高维空间到低维空间的映射，而反卷积技术是从低维空间到高维空间的映射。反卷积技术可以用于生成更高质量的图像，同时减少过拟合和梯度消失的问题。
>
> *Traditional convolution maps a high-dimensional space to a low-dimensional one; deconvolution maps a
> low-dimensional space to a high-dimensional one. Deconvolution can generate higher-quality images while reducing
> overfitting and vanishing gradients.*

**Short answer.** The layer called "deconvolution" (Keras `Conv2DTranspose`) computes the *transpose*, or
{term}`adjoint`, $C^\top$ of a convolution $C$. It is not the inverse $C^{-1}$. Whether it enlarges its input depends
on the stride, not on the kind of layer. [Chapter 2](02_core_concepts.ipynb) derives this. Here we check it in a few
lines. The second sentence of A1 is the article's Q2, answered below.

First, the shapes. Each layer below runs with stride 1 and stride 2 on an image of odd size:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
x = np.zeros((1, 15, 17, 1), "float32")
shapes = {}
for stride in (1, 2):
    conv = keras.layers.Conv2D(4, 3, strides=stride, padding="same")
    deconv = keras.layers.Conv2DTranspose(1, 3, strides=stride, padding="same")
    features = conv(x)
    shapes[f"stride {stride}"] = {"x": x.shape[1:3], "conv(x)": tuple(features.shape[1:3]),
                                  "deconv(conv(x))": tuple(deconv(features).shape[1:3])}
shapes
"""),
    md(r"""
With stride 1, as in RED-Net's decoder, neither layer changes the image size: there "deconvolution" maps nothing
from low to high dimension. With stride 2 the transposed convolution doubles 8 × 9 to 16 × 18, which is not the
input's 15 × 17. The layer does not even restore the shape.

Next, the {term}`adjoint` identity $\langle Cx, y\rangle = \langle x, C^\top y\rangle$ for a stride-2 convolution with 3
input and 2 output channels. The gradient of $\langle Cx, y\rangle$ with respect to $x$ is $C^\top y$, so
`dl.grads.vjp` computes it on any backend:
"""),
    code(r"""
rng = np.random.default_rng(0)
conv = keras.layers.Conv2D(2, 3, strides=2, padding="same", use_bias=False)
x = rng.standard_normal((1, 16, 16, 3)).astype("float32")
y = rng.standard_normal((1, 8, 8, 2)).astype("float32")
ct_y = dl.grads.vjp(conv, x, y)  # C^T y
{"<Cx, y>": float(np.sum(keras.ops.convert_to_numpy(conv(x)) * y)), "<x, C^T y>": float(np.sum(x * ct_y))}
"""),
    md(r"""
The two inner products agree to float32 rounding. A `Conv2DTranspose` given the convolution's kernel computes the
same $C^\top y$. The next cell checks that, and measures how far $C^\top C x$ is from $x$:
"""),
    code(r"""
deconv = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", use_bias=False)
deconv.build(y.shape)
deconv.kernel.assign(keras.ops.convert_to_numpy(conv.kernel))  # same (3, 3, 3, 2) array: C^T uses C's weights
round_trip = keras.ops.convert_to_numpy(deconv(conv(x)))
{"max |deconv(y) - C^T y|": float(np.abs(keras.ops.convert_to_numpy(deconv(y)) - ct_y).max()),
 "numbers in x": x.size, "numbers in Cx": y.size,
 "relative error of C^T C x": float(np.linalg.norm(round_trip - x) / np.linalg.norm(x))}
"""),
    md(r"""
`Conv2DTranspose` is $C^\top$ to float32 precision. Applied after $C$ it does not return $x$: the stride-2
convolution keeps fewer numbers than it receives, so no layer can undo it, and $C^\top C$ is not the identity. A
decoder has to *learn* to restore detail. The transposed layer only gives it the right shapes and connectivity.
Undoing a known blur, the "deconvolution" of signal processing, is a different problem. Chapter 1 solves it with
Wiener and Richardson–Lucy.
"""),
    # ------------------------------------------------------------------------------------------------ Q2
    md(r"""
## Q2. What are its advantages for image enhancement?

The article's answer (A2):

> 反卷积技术在图像增强任务中的优势包括：提高图像增强的效果，减少过拟合和梯度消失的问题，提高模型的泛化能力。
>
> *Its advantages include better enhancement, less overfitting and fewer vanishing gradients, and better
> generalisation.*

**Short answer.** A transposed convolution by itself brings none of these. With stride 1 it has exactly the weights
of a convolution. [Chapter 3](03_conv_deconv_fuse.ipynb) tests each claim against a plain CNN with the same depth and
parameter count, and its verdict table says which claims hold. The gradient claim is about the skip connections
that fuse encoder and decoder features (the "fuse" step) {cite:p}`mao2016rednet`, not about deconvolution. Here is a
quick look at gradients at initialisation, for three 30-layer networks on the same batch of noisy patches:
"""),
    code(r"""
depth = 15  # RED-Net's 30-layer configuration: 15 conv + 15 transposed conv
train_images = dl.data.load_dataset("train400", limit=8).images
noisy_batch, clean_batch = dl.data.PatchDataset(
    train_images, dl.degrade.noise_degradation(sigma), patch_size=profile.patch_size, batch_size=8,
    steps_per_epoch=1, seed=0)[0]
builders = {
    "red_net, skips every 2": lambda: dl.models.red_net(depth=depth, width=profile.width, skip_every=2),
    "red_net, no skips": lambda: dl.models.red_net(depth=depth, width=profile.width, skip_every=0),
    "plain_cnn, 30 conv": lambda: dl.models.plain_cnn(depth=2 * depth, width=profile.width, residual=True),
}
nets, grad_norms = {}, {}
for name, build in builders.items():
    dl.set_seed(0)
    nets[name] = build()
    grad_norms[name] = np.array([n for _, n in dl.grads.layer_gradient_norms(nets[name], noisy_batch, clean_batch)])
"""),
    md(r"""
The figure plots, for each network, the norm of the loss gradient with respect to each layer's kernel. The x-axis
is the layer number from input to output, the y-axis is logarithmic. A vanishing gradient would show as a curve
that falls by orders of magnitude towards layer 1.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(6.4, 3.2))
for name, norms in grad_norms.items():
    ax.semilogy(np.arange(1, len(norms) + 1), norms, marker=".", label=name)
ax.set(xlabel="layer (1 = input side)", ylabel="gradient norm of the kernel", title="Gradients at initialisation")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
plt.show()
"""),
    md(r"""
The table gives, per network, the first layer's gradient norm and the spread (largest / smallest norm over the
hidden layers, leaving out the output layer, which RED-Net initialises small). The verdict rule: *vanishing* if the
spread exceeds 100, *no vanishing* otherwise.
"""),
    code(r"""
gradient_rows = []
for name, norms in grad_norms.items():
    spread = float(norms[:-1].max() / norms[:-1].min())
    gradient_rows.append({"network": name, "layers": len(norms), "first-layer norm": float(norms[0]),
                          "spread (max/min)": spread, "verdict": "vanishing" if spread > 100 else "no vanishing"})
skip_gain = gradient_rows[0]["first-layer norm"] / gradient_rows[1]["first-layer norm"]
print(f"skips multiply the first layer's gradient by {skip_gain:.0f}")
table(gradient_rows, digits=4)
"""),
    md(r"""
At initialisation none of the three 30-layer networks has vanishing gradients: He initialisation
{cite:p}`he2015delving` keeps the per-layer norms within a narrow band. The skips still change how much gradient reaches the first layers of RED-Net,
by the factor printed above. Whether that makes training faster or better, and whether the architecture overfits
less, can only be decided by training. That is what [chapter 3](03_conv_deconv_fuse.ipynb) does; its verdict table
covers each claim of the article.
"""),
    # ------------------------------------------------------------------------------------------------ Q3
    md(r"""
## Q3. What other vision tasks can it be used for?

The article's answer (A3):

> 反卷积技术可以应用于其他计算机视觉任务，如目标检测、语义分割等。然而，在这些任务中，反卷积技术可能需要结合其他技术，以提高任务的性能和应用范围。
>
> *Deconvolution can be applied to other vision tasks such as object detection and semantic segmentation, but may
> need to be combined with other techniques there.*

**Short answer.** True, and the history runs the other way round. Learned upsampling by transposed convolution came to
wide use in semantic segmentation (FCN {cite:p}`long2015fcn`, U-Net {cite:p}`ronneberger2015unet`) before
restoration networks such as RED-Net borrowed it. [Chapter 5](05_trends_challenges.ipynb) has a segmentation
demo. Within enhancement, one architecture serves many tasks, but the *weights* do not
carry over: each task needs its own training. The book ships a denoiser and a deblurrer. The next cell loads both
and compares their architectures:
"""),
    code(r"""
cards = {"denoise": dl.weights.find_card("denoise", sigma=sigma), "deblur": dl.weights.find_card("deblur")}
shipped = {task: dl.weights.load_pretrained(card=card) for task, card in cards.items()}
{"same architecture": cards["denoise"]["architecture"] == cards["deblur"]["architecture"],
 **{task: f"{card['architecture']['builder']}, {card['params']:,} parameters" for task, card in cards.items()}}
"""),
    md(r"""
Now both models restore both degradations of one BSD68 crop: noise of σ = 25, and the deblurring protocol's Gaussian
blur plus weak noise. The cell also times every call to get the CPU (or GPU) cost per megapixel, which Q4 uses.
"""),
    code(r"""
bsd68 = dl.data.load_dataset("bsd68", limit=max(profile.test_images or 68, 3))


def center_crop(image, size):
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


clean = center_crop(bsd68.images[2], crop)
degraded = {"noisy": dl.degrade.add_gaussian_noise(clean, sigma, seed=0),
            "blurred": dl.degrade.add_gaussian_noise(dl.degrade.blur(clean, dl.evaluate.protocol_psf()),
                                                     dl.degrade.DEBLUR_NOISE_SIGMA, seed=0)}
for model in shipped.values():  # the first call traces the model: keep it out of the timing
    dl.infer.predict_image(model, clean[:32, :32])
restored, seconds = {}, 0.0
for task, model in shipped.items():
    for kind, image in degraded.items():
        start = time.perf_counter()
        restored[task, kind] = dl.infer.predict_image(model, image)
        seconds += time.perf_counter() - start
"""),
    md(r"""
The figure shows a grid of the crop: the top row is the noisy input, the denoiser's output and the deblurrer's
output on it; the bottom row the same for the blurred input. Each title gives PSNR and SSIM against the clean crop.
"""),
    code(r"""
panels = {}
for kind, image in degraded.items():
    panels[f"{kind} input"] = image
    for task in shipped:
        panels[f"{task} model on {kind}"] = np.clip(restored[task, kind], 0, 1)
dl.plots.compare(panels, reference=clean, ncols=3)
"""),
    md(r"""
As a table, the PSNR gain of each model over each input (rows: the model; columns: the degradation):
"""),
    code(r"""
cross_rows = [{"model": task, **{f"gain on {kind} (dB)": dl.metrics.psnr(clean, np.clip(restored[task, kind], 0, 1))
                                 - dl.metrics.psnr(clean, degraded[kind]) for kind in degraded}}
              for task in shipped]
table(cross_rows)
"""),
    md(r"""
Each model gains only on the degradation it was trained for. On the other one it makes the image worse (a negative
gain): the denoiser smooths the blurred image further, and the deblurrer, trained with weak noise only, sharpens the
strong noise into false structure. The architecture transfers; the weights do not. For detection or segmentation the same holds with a different output
head and loss, which is the "other techniques" the article alludes to.
"""),
    # ------------------------------------------------------------------------------------------------ Q4
    md(r"""
## Q4. What problems appear with large image data?

The article's answer (A4):

> 反卷积技术在处理大规模图像数据时可能存在计算开销较大的问题。为了解决这个问题，可以采用一些优化技术，如并行计算、硬件加速等。
>
> *Deconvolution may be computationally expensive on large image data; optimisations such as parallel computing and
> hardware acceleration can help.*

**Short answer.** Correct, but imprecise. The cost of a fully convolutional network grows *linearly* with the number
of pixels, and a transposed convolution at stride 1 costs exactly as much as a convolution. What limits large images
is memory: every layer holds a feature map of `width` channels at full resolution. Tiling solves that at inference
time without changing the result, and GPUs and data parallelism solve the compute. All three are measured below.

First, the cost on this device, from the timed calls of Q3:
"""),
    code(r"""
megapixels = len(restored) * crop * crop / 1e6
seconds_per_mp = seconds / megapixels
photo_mp = 12  # a typical phone photo
print(f"{runtime['device']}: {seconds_per_mp:.1f} s per megapixel for the shipped model; "
      f"a {photo_mp} MP photo takes about {seconds_per_mp * photo_mp / 60:.1f} min")
"""),
    md(r"""
Next, tiling. `dl.infer.tile_predict` cuts the image into overlapping tiles, runs them a few at a time, and blends
them with a window that gives zero weight to the outer quarter of every overlap. A stride-1 network with receptive-field
radius $r$ (one pixel per 3×3 layer) then gives *exactly* the whole-image result when the overlap is at least $4r$.
We check this on a full BSD68 image with a network of the profile's size. Exactness depends only on the receptive
field, not on the weights, so an untrained network will do:
"""),
    code(r"""
tiler = dl.models.red_net(depth=profile.depth, width=profile.width)
radius = sum((layer.kernel_size[0] - 1) // 2 for layer in tiler.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)))
image = bsd68.images[0]
batch = image[None, :, :, None]
tiler.predict_on_batch(batch)  # compile for this shape, as tile_predict does for its tiles
start = time.perf_counter()
whole = tiler.predict_on_batch(batch)[0, :, :, 0]
tiling_rows = [{"method": "whole image", "tile": f"{image.shape[0]}x{image.shape[1]}",
                "seconds": time.perf_counter() - start, "max |difference|": "0"}]
"""),
    md(r"""
Now the same image in tiles: once with the overlap the rule asks for, once with a smaller one. Each row also gives
the size of one feature map, the unit of memory a layer needs:
"""),
    code(r"""
tile = 160
for overlap in (4 * radius, radius):
    dl.infer.tile_predict(tiler, image[: tile + 8, : tile + 8], tile=tile, overlap=overlap)  # trace once
    start = time.perf_counter()
    tiled = dl.infer.tile_predict(tiler, image, tile=tile, overlap=overlap)
    tiling_rows.append({"method": f"tiles, overlap {overlap}", "tile": f"{tile}x{tile}",
                        "seconds": time.perf_counter() - start, "max |difference|": f"{np.abs(tiled - whole).max():.1e}"})
for row in tiling_rows:
    h, w = (int(v) for v in row["tile"].split("x"))
    row["feature map (MB)"] = 4 * profile.width * h * w / 1e6
print(f"receptive-field radius {radius} px")
table(tiling_rows)
"""),
    md(r"""
With an overlap of $4r$ the tiled result equals the whole-image result up to float32 rounding, while each feature
map is a fraction of the whole image's. With a smaller overlap, errors appear at the seams. Tiling costs some extra
time, since the overlaps are computed twice; in exchange the memory no longer depends on the image size.

Finally, hardware. `benchmarks/speed_gpu.py` measured the training throughput of the paper network
(`red_net(depth=15, width=64)`) on one data-centre GPU, with Keras on JAX and on PyTorch, in float32 and in mixed bfloat16, beside
the same network written in plain PyTorch. `benchmarks/scaling.py` measured data-parallel training on one to several
GPUs of one host. Their result files record the device and the date:
"""),
    code(r"""
results = dl.paths.results_dir()
speed = json.loads((results / "speed_gpu.json").read_text())
scaling = json.loads((results / "scaling_gpu.json").read_text())
print(f"speed:   {speed['meta']['device']}, {speed['meta']['date']}, bf16 matmul peak "
      f"{speed['meta']['bf16_matmul_tflops']:.0f} TFLOP/s")
print(f"scaling: {scaling['meta']['device']}, {scaling['meta']['date']}, backend {scaling['meta']['backend']}")
speed_rows = [{"implementation": r["impl"], "precision": r["precision"], "batch x patch": f"{r['batch']} x {r['patch']}²",
               "patches/s": f"{r['patches_per_s']:,.0f}", "TFLOP/s": r.get("tflops", float("nan")),
               "MFU": r.get("mfu_vs_bf16_peak", float("nan"))}
              for r in speed["rows"] if "patches_per_s" in r]
failed = [f"{r.get('impl')} {r.get('backend', '')} {r.get('precision')}: {r['error']}" for r in speed["rows"]
          if "error" in r]
print("runs that failed:", failed or "none")
table(speed_rows)
"""),
    md(r"""
MFU (model FLOP utilisation) divides the counted training FLOPs per second by the card's measured bfloat16 matmul peak.
Two ratios summarise the table. The first is the speed-up of mixed bfloat16 over float32 for Keras on JAX at the largest batch.
The second compares the GPU's training FLOP rate with the FLOP rate of the shipped model's inference on this notebook's
device (Q3's timing). Training does three times the FLOPs of inference per patch, and the counts include that.
"""),
    code(r"""
def keras_jax(precision):
    rows = [r for r in speed["rows"] if r["impl"] == "keras-jax" and r["precision"] == precision and "patches_per_s" in r]
    return max(rows, key=lambda r: r["batch"] * r["patch"] ** 2)

flops_per_pixel = sum(2 * float(np.prod(layer.kernel.shape)) for layer in shipped["denoise"].layers
                      if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)))
here_tflops = flops_per_pixel * 1e6 / seconds_per_mp / 1e12
bf16, fp32 = keras_jax("mixed_bfloat16"), keras_jax("float32")
{"bf16 / float32 speed-up (Keras-JAX)": round(bf16["patches_per_s"] / fp32["patches_per_s"], 2),
 f"{speed['meta']['device']} training TFLOP/s (bf16)": round(bf16["tflops"], 1),
 f"{runtime['device']} inference TFLOP/s": round(here_tflops, 3),
 "ratio": round(bf16["tflops"] / here_tflops)}
"""),
    md(r"""
Parallel computing across GPUs: each GPU count ran with the same per-GPU batch, so the global batch grows with it.
Speed-up is the throughput relative to one GPU, efficiency the speed-up divided by the number of GPUs. The rule:
*near-linear* if the efficiency is at least 0.9, *sub-linear* otherwise.
"""),
    code(r"""
scaling_rows = [{"GPUs": r["gpus"], "global batch": r["global_batch"], "patches/s": f"{r['patches_per_s']:,.0f}",
                 "speed-up": r["speedup"], "efficiency": r["efficiency"],
                 "verdict": "near-linear" if r["efficiency"] >= 0.9 else "sub-linear"}
                for r in scaling["rows"] if "patches_per_s" in r]
table(scaling_rows)
"""),
    md(r"""
The article's two remedies are real, and the tables give the factor of each. Hardware acceleration is by far the
largest: the ratio above compares the benchmark GPU with this notebook's device. Mixed precision adds its speed-up on
the same card. The verdict column says whether adding GPUs paid off in proportion. Tiling, which the article does not
mention, is what makes arbitrarily large *images* possible at all.
"""),
    # ------------------------------------------------------------------------------------------------ Q5
    md(r"""
## Q5. What problems appear with high-resolution enhancement?

The article's answer (A5):

> 反卷积技术在处理高分辨率图像增强任务时可能存在过拟合和梯度消失的问题。为了解决这个问题，可以采用一些优化技术，如正则化、批量归一化等。
>
> *On high-resolution enhancement, deconvolution may suffer from overfitting and vanishing gradients; regularisation
> and batch normalisation can help.*

**Short answer.** The diagnosis does not follow. A fully convolutional network has the same weights and the same
depth at every resolution. Its gradients travel through the same number of layers whether the image is small or
large, and it has no more parameters to overfit with. High resolution does raise memory and compute (Q4), and it
raises the scale of the structures the receptive field must cover. Regularisation and batch normalisation
{cite:p}`ioffe2015bn` are tested in [chapter 5](05_trends_challenges.ipynb). Here we look at the gradient claim:
the skip network of Q2 on inputs of growing size.
"""),
    code(r"""
net = nets["red_net, skips every 2"]
size_rows = []
for size in (profile.patch_size, 2 * profile.patch_size, 4 * profile.patch_size):
    clean_patch = center_crop(bsd68.images[1], size)[None, :, :, None]
    noisy_patch = dl.degrade.add_gaussian_noise(clean_patch, sigma, seed=0)
    norms = np.array([n for _, n in dl.grads.layer_gradient_norms(net, noisy_patch, clean_patch)])
    size_rows.append({"input": f"{size}x{size}", "parameters": f"{net.count_params():,}", "first-layer norm": float(norms[0]),
                      "spread (max/min)": float(norms[:-1].max() / norms[:-1].min())})
table(size_rows, digits=4)
"""),
    md(r"""
Same parameters, and gradient norms of the same order at every input size: resolution does not make gradients
vanish, and the spread stays far below Q2's threshold. What does grow is memory. Training stores every layer's
feature map for the backward pass. For the paper network (30 layers of 64 channels, float32) that is, per image:
"""),
    code(r"""
paper_layers, paper_width = 30, 64
sizes = {"training patch 50x50": (50, 50), "BSD68 481x321": (481, 321), "Full HD": (1920, 1080),
         "4K UHD": (3840, 2160)}
memory_rows = [{"image": name, "pixels": f"{h * w:,}", "activations (GiB)": paper_layers * paper_width * h * w * 4 / 2**30}
               for name, (h, w) in sizes.items()]
table(memory_rows, digits=3)
"""),
    md(r"""
That is why high-resolution restoration networks train on patches and run on tiles (Q4). For overfitting the
relation also runs the other way from the article's: a high-resolution image holds *more* distinct training patches
than a small one, so it gives more training data, not less:
"""),
    code(r"""
patch = profile.patch_size
distinct = {name: (h - patch + 1) * (w - patch + 1) for name, (h, w) in {"Train400 image 180x180": (180, 180),
                                                                        "4K UHD image": (3840, 2160)}.items()}
{**{name: f"{n:,} patches of {patch}x{patch}" for name, n in distinct.items()},
 "ratio": round(distinct["4K UHD image"] / distinct["Train400 image 180x180"])}
"""),
    # ------------------------------------------------------------------------------------------------ Q6
    md(r"""
## Q6 (readers). Where do checkerboard artifacts come from?

A transposed convolution with stride $s$ spreads each input pixel over a $k \times k$ patch of the output, one patch
every $s$ pixels. If $k$ is not a multiple of $s$, the patches overlap unevenly: some output pixels receive more
contributions than their neighbours, in a pattern that repeats every $s$ pixels {cite:p}`odena2016deconvolution`.
The cleanest test is a constant image. Its ideal upsampling is constant, so any pattern in the output comes from the
layer. Three ×2 upsamplers, first with all-ones kernels:
"""),
    code(r"""
def upsamplers(init):
    conv_args = {"use_bias": False, "padding": "same", "kernel_initializer": init}
    return {
        "transposed 3x3, stride 2": keras.layers.Conv2DTranspose(1, 3, strides=2, **conv_args),
        "transposed 4x4, stride 2": keras.layers.Conv2DTranspose(1, 4, strides=2, **conv_args),
        "resize + conv 3x3": keras.Sequential([keras.layers.UpSampling2D(2), keras.layers.Conv2D(1, 3, **conv_args)]),
    }

constant = np.ones((1, 12, 12, 1), "float32")


def interior(layer):  # the response to the constant image, away from the borders
    return keras.ops.convert_to_numpy(layer(constant))[0, 4:-4, 4:-4, 0]
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
{name: interior(layer)[:4, :4].round(3).tolist() for name, layer in upsamplers("ones").items()}
"""),
    md(r"""
The 3×3, stride-2 layer gives every other pixel 1, 2 or 4 contributions: a checkerboard with all weights equal. The
4×4 kernel, a multiple of the stride, and resize-then-convolve give a flat output. A learned kernel has unequal weights,
so we repeat the test with random (He-normal) kernels. The amplitude is the interior's peak-to-peak range divided by
its largest magnitude, (max − min) / max |value|. The rule: *checkerboard* if it exceeds 1 %.
"""),
    code(r"""
def ripple(out):
    return float((out.max() - out.min()) / np.abs(out).max())


amplitude = {name: [ripple(interior(layer))] for name, layer in upsamplers("ones").items()}
for seed in range(5):
    for name, layer in upsamplers(keras.initializers.HeNormal(seed=seed)).items():
        amplitude[name].append(ripple(interior(layer)))
checker_rows = [{"upsampler": name, "ones kernel": v[0], "random kernels (median of 5)": float(np.median(v[1:])),
                 "verdict (random)": "checkerboard" if np.median(v[1:]) > 0.01 else "flat"}
                for name, v in amplitude.items()]
table(checker_rows, digits=3)
"""),
    md(r"""
The figure shows the response of each upsampler to the constant image: the top row with all-ones kernels, the
bottom row with one random kernel. Each panel is scaled to its own maximum, with the amplitude in its title.
"""),
    code(r"""
fig, axes = plt.subplots(2, 3, figsize=(3 * dl.plots.PANEL_INCHES, 2 * dl.plots.PANEL_INCHES))
for row, init in enumerate(("ones", keras.initializers.HeNormal(seed=0))):
    for ax, (name, layer) in zip(axes[row], upsamplers(init).items(), strict=True):
        out = interior(layer)
        amp = ripple(out)
        shown = (out - out.min()) / (out.max() - out.min()) if amp > 1e-6 else np.full_like(out, 0.5)
        dl.plots.show(ax, shown, f"{name}\n{'ones' if row == 0 else 'random'}: amplitude {amp:.2f}")
plt.show()
"""),
    md(r"""
With learned weights even the 4×4 kernel leaves a pattern: equal *overlap* does not mean equal *weights*, because each
of the four output phases sums a different subset of the kernel. Only resize-then-convolve is flat for every kernel,
since a convolution maps a constant to a constant. Training can learn to balance the phases, but nothing forces it
to. For the book's models: RED-Net's decoder uses stride 1, where every output pixel gets all 3 × 3 taps, so it has no
such source of artifacts. Only the strided and super-resolution variants use stride 2 or more. For them
`dl.models.red_net(up=...)` offers resize-then-convolve and the sub-pixel convolution {cite:p}`shi2016espcn` as
alternatives.
"""),
    # ------------------------------------------------------------------------------------------------ Q7
    md(r"""
## Q7 (readers). Why do two PSNRs of the same output differ?

PSNR is $10 \log_{10}(\text{peak}^2 / \text{MSE})$, but papers and codes differ in what they feed it. They may or may
not clip and round the output to 8 bits, shave a border, score the luma Y or all RGB channels, or take the peak
value from the data type. The denoiser's output from Q3, scored under several such variants:
"""),
    code(r"""
def psnr_with_peak(reference, test, peak):  # the formula itself, without the package's range check
    return float(10 * np.log10(peak**2 / np.mean((np.asarray(reference, "float64") - test) ** 2)))

raw = restored["denoise", "noisy"]
clipped = np.clip(raw, 0, 1)
variants = {
    "book protocol: clipped to [0, 1], float, full image": dl.metrics.psnr(clean, clipped),
    "not clipped": dl.metrics.psnr(clean, raw),
    "rounded to 8 bits (saved as PNG, or MATLAB im2uint8)": dl.metrics.psnr(clean, np.round(clipped * 255) / 255),
    "8-pixel border shaved": dl.metrics.psnr(dl.metrics.crop_border(clean, 8), dl.metrics.crop_border(clipped, 8)),
    "mistake: peak 255 for [0, 1] images": psnr_with_peak(clean, clipped, 255.0),
}
protocol = variants["book protocol: clipped to [0, 1], float, full image"]
table([{"denoising variant": k, "PSNR (dB)": v, "difference (dB)": v - protocol} for k, v in variants.items()], digits=3)
"""),
    md(r"""
The difference column gives the effect of each variant on this output. For scale: the published gap between
DnCNN-S and DnCNN-B on BSD68 at σ = 25 is 0.07 dB {cite:p}`zhang2017dncnn`. Clipping matters only where the model's
output leaves [0, 1], which a well-trained denoiser rarely does. A shaved border can move the number either way,
depending on whether the model does better or worse near the edges. The wrong peak adds a constant $20 \log_{10} 255$. The
package refuses the opposite mistake, 0–255 images with a peak of 1, because the values exceed the range.

Colour makes a bigger difference. Super-resolution papers score the luma Y after shaving `scale` pixels
{cite:p}`kim2016vdsr`. Here the bicubic ×2 baseline on a Set5 image is scored four ways:
"""),
    code(r"""
scale = 2
hr = dl.metrics.modcrop(dl.data.load_dataset("set5", mode="rgb", limit=3).images[2], scale)
sr = np.clip(dl.degrade.upscale(dl.degrade.downscale(hr, scale), scale), 0, 1)
shave = dl.metrics.crop_border
sr_variants = {
    "SR protocol: Y, shave 2": dl.metrics.sr_metrics(hr, sr, scale)[0],
    "Y, no shave": dl.metrics.psnr(dl.metrics.rgb_to_y(hr), dl.metrics.rgb_to_y(sr)),
    "RGB, shave 2": dl.metrics.psnr(shave(hr, scale), shave(sr, scale)),
    "RGB, no shave": dl.metrics.psnr(hr, sr),
}
base = sr_variants["SR protocol: Y, shave 2"]
table([{"bicubic x2 variant": k, "PSNR (dB)": v, "difference (dB)": v - base} for k, v in sr_variants.items()], digits=3)
"""),
    md(r"""
Scoring on Y gives higher numbers than on RGB: Y's range spans 219 of 255 levels, and the chroma errors are left out.
Shaving removes the borders, where bicubic interpolation is worst. Compare numbers only when the protocols match. The
book states its protocol in every evaluation (`EvalResult.protocol`, the model cards' `metrics[].protocol`).
"""),
    # ------------------------------------------------------------------------------------------------ Q8
    md(r"""
## Q8 (readers). Why do the book's results differ from the papers'?

The shipped σ = 25 denoiser's card records its BSD68 PSNR, measured when it was trained. The published anchors for
the same setting come from the DnCNN paper {cite:p}`zhang2017dncnn`:
"""),
    code(r"""
card = cards["denoise"]
# the entry measured on the whole test set (a card may also hold quick checks on a few images)
ours = [m for m in card["metrics"] if m["dataset"] == "bsd68" and m.get("sigma") == sigma and m.get("limit") is None][0]
anchor_rows = [{"method": f"this book: {card['id']} ({card['architecture']['builder']})", "BSD68 PSNR (dB)": ours["psnr"],
                "source": f"model card, {ours['protocol']['images']} images, trained {card.get('wall_time_s', 0) / 60:.0f} "
                          f"min on {card['hardware']}"}]
anchor_rows += [{"method": a["method"], "BSD68 PSNR (dB)": a["psnr"], "source": a["citation"]}
                for a in dl.weights.anchors_for("denoise", sigma=sigma, datasets=["bsd68"])]
dncnn = next(a for a in anchor_rows if a["method"] == "DnCNN-S")["BSD68 PSNR (dB)"]
print(f"difference to DnCNN-S: {ours['psnr'] - dncnn:+.2f} dB")
table(anchor_rows)
"""),
    md(r"""
A difference has several sources. Some are about the *protocol*, and they move the number without the model
changing. DnCNN's own test script (`Demo_test_DnCNN.m` in the authors' repository) resets MATLAB's legacy generator
with `randn('seed', 0)` before every image, and scores `im2uint8` outputs, which are clipped and rounded. The book
draws noise from NumPy with seed `0 + i` for image `i` and scores float outputs. Others are about the *data set
version*: the book's BSD68 are the authors' 8-bit gray PNGs. Others are about *training*: data, length, optimiser,
seed. The next cell measures the protocol effects on the first test images of BSD68 (crops of `crop` pixels): three
noise seeds, an input clipped and rounded to 8 bits before denoising (as when a noisy image is saved as a PNG), and
an output rounded to 8 bits.
"""),
    code(r"""
tests = [center_crop(image, crop) for image in bsd68.images[: profile.test_images]]


def denoise_tests(seed, quantize_input=False):
    # the protocol: image i gets noise from seed + i; the output is clipped to [0, 1]
    outputs = []
    for i, clean_image in enumerate(tests):
        noisy = dl.degrade.add_gaussian_noise(clean_image, sigma, seed=seed + i)
        if quantize_input:
            noisy = np.round(np.clip(noisy, 0, 1) * 255) / 255
        outputs.append(np.clip(dl.infer.predict_image(shipped["denoise"], noisy), 0, 1))
    return outputs


def mean_psnr(outputs):
    return float(np.mean([dl.metrics.psnr(t, o) for t, o in zip(tests, outputs, strict=True)]))


by_seed = {seed: denoise_tests(seed) for seed in (0, 100, 200)}
psnr_by_seed = [mean_psnr(outputs) for outputs in by_seed.values()]
effects = {"noise seed (range over 3 seeds)": max(psnr_by_seed) - min(psnr_by_seed),
           "input clipped + rounded to 8 bits": mean_psnr(denoise_tests(0, quantize_input=True)) - psnr_by_seed[0],
           "output rounded to 8 bits": mean_psnr([np.round(o * 255) / 255 for o in by_seed[0]]) - psnr_by_seed[0]}
largest = max(abs(v) for v in effects.values())
gap = ours["psnr"] - dncnn
print(f"{len(tests)} crops of {crop}x{crop}, protocol PSNR {psnr_by_seed[0]:.2f} dB")
print(f"gap to DnCNN-S {gap:+.2f} dB: {'within' if abs(gap) <= largest else 'larger than'} "
      f"the largest protocol effect measured here ({largest:.2f} dB)")
table([{"protocol change": k, "effect (dB)": v} for k, v in effects.items()], digits=3)
"""),
    md(r"""
The table shows how far each choice moves the mean on a few crops. Clipping the noisy input changes the noise
itself, so the model sees inputs unlike those it was trained on. The seed effect shrinks on all 68 full images,
since the mean then runs over many more pixels. The printed line applies the rule: a gap *within* the protocol effects
means the two numbers cannot be told apart without running both models under one protocol. A gap *larger than*
them comes from the model or its training. The card records how long and on what the model was trained
(`wall_time_s`, `epochs_run`, `hardware`, `command`), so anyone can rerun it. Chapter 4 evaluates all shipped models
under one protocol.
"""),
    # ------------------------------------------------------------------------------------------------ end
    md(r"""
## Summary

- **Q1** A "deconvolution" layer is the transposed convolution $C^\top$: the adjoint identity holds to float32
  precision, $C^\top C \ne I$, and at stride 1 it changes no dimensions. The article's "low → high dimension"
  describes the stride, not the operation.
- **Q2** At initialisation none of the 30-layer networks has vanishing gradients; skips change how much gradient
  reaches the first layers. The article's advantages are claims about training, tested in chapter 3.
- **Q3** One architecture serves denoising and deblurring, but each task needs its own weights. Segmentation used
  transposed convolutions first.
- **Q4** Cost grows linearly with pixels. Tiling with an overlap of four receptive-field radii is exact, and GPUs,
  mixed precision and data parallelism give the measured speed-ups.
- **Q5** Resolution changes neither the parameters nor the gradient path; it changes memory, which patches and tiles
  handle.
- **Q6–Q8** Checkerboards come from stride-2 transposed kernels, even 4×4 ones once the weights are learned. PSNR
  depends on clipping, rounding, borders, channels and the peak value. Our gap to DnCNN is measured beside the protocol
  effects that can cause one.

## What's next

This is the last chapter. The [results page](../book/results.md) collects the book's verdicts on the article's
claims. To see them change with the training budget, rerun chapters 3–5 with the `workshop` profile on a GPU (see
{doc}`../book/setup`).

## Exercises

**Exercise 1 (adjoint, valid padding).** Check $\langle Cx, y\rangle = \langle x, C^\top y\rangle$ for a 5×5 convolution
with stride 3, `padding="valid"`, 2 input and 4 output channels on a 17×21 image. Then check that a `Conv2DTranspose`
with the same kernel and padding gives $C^\top y$, and compare its output shape with the input's.
"""),
    code(r"""
rng = np.random.default_rng(1)
conv5 = keras.layers.Conv2D(4, 5, strides=3, padding="valid", use_bias=False)
x5 = rng.standard_normal((1, 17, 21, 2)).astype("float32")
y5 = rng.standard_normal(tuple(conv5(x5).shape)).astype("float32")
ct5 = dl.grads.vjp(conv5, x5, y5)
deconv5 = keras.layers.Conv2DTranspose(2, 5, strides=3, padding="valid", use_bias=False)
deconv5.build(y5.shape)
deconv5.kernel.assign(keras.ops.convert_to_numpy(conv5.kernel))
out5 = keras.ops.convert_to_numpy(deconv5(y5))
h5, w5 = out5.shape[1:3]
print("<Cx, y> =", float(np.sum(keras.ops.convert_to_numpy(conv5(x5)) * y5)), " <x, C^T y> =", float(np.sum(x5 * ct5)))
print("x:", x5.shape, " Cx:", y5.shape, " deconv(y):", out5.shape)
print("max |deconv(y) - C^T y| on the common part:", float(np.abs(out5 - ct5[:, :h5, :w5]).max()))
print("max |C^T y| on the pixels deconv(y) lacks:", float(np.abs(ct5[:, h5:, :]).max(initial=0)),
      float(np.abs(ct5[:, :, w5:]).max(initial=0)))
""", SOLUTION),
    md(r"""
The identity holds for any stride and padding. With stride 3 and `valid` padding, input pixels that no window
covers do not influence $Cx$, so $C^\top y$ is zero there. The transposed layer leaves those pixels out and returns
a smaller image; on the common part it equals $C^\top y$. Keras's `output_padding` argument picks among the shapes a
transposed convolution can produce.

**Exercise 2 (which kernels checkerboard?).** For strides 2 and 3 and kernel sizes 2 to 7, find with the constant-image
test and all-ones kernels which transposed convolutions have a flat interior. State the rule.
"""),
    code(r"""
flat = {}
for stride in (2, 3):
    for k in range(2, 8):
        layer = keras.layers.Conv2DTranspose(1, k, strides=stride, padding="same", use_bias=False,
                                             kernel_initializer="ones")
        out = keras.ops.convert_to_numpy(layer(np.ones((1, 12, 12, 1), "float32")))[0, 6:-6, 6:-6, 0]
        flat[f"stride {stride}, {k}x{k}"] = bool(out.max() - out.min() < 1e-6)
flat
""", SOLUTION),
    md(r"""
The interior is flat exactly when the kernel size is a multiple of the stride. Then every output pixel is covered by
the same number, $(k/s)^2$, of kernel copies. This is Odena et al.'s advice. Q6 showed that once the weights differ, the
rule is no longer enough.

**Exercise 3 (smallest exact overlap).** For `red_net(depth=2, width=8)` (receptive-field radius 4), find the smallest
overlap (in steps of 2) at which `tile_predict` with 48-pixel tiles reproduces the whole-image output of a 100×130
random image to within 1e-5. Compare it with the $4r$ rule.
"""),
    code(r"""
small = dl.models.red_net(depth=2, width=8)
noise_image = np.random.default_rng(0).random((100, 130), dtype=np.float32)
reference_out = dl.infer.predict_image(small, noise_image)
errors = {ov: float(np.abs(dl.infer.tile_predict(small, noise_image, tile=48, overlap=ov) - reference_out).max())
          for ov in range(0, 26, 2)}
smallest = min(ov for ov, err in errors.items() if err < 1e-5)
print(f"smallest exact overlap: {smallest} (4r = 16)")
{ov: f"{err:.1e}" for ov, err in errors.items()}
""", SOLUTION),
    md(r"""
The blending window gives zero weight to the outer quarter of each overlap, so exactness needs `overlap // 4 >= r`,
i.e. an overlap of $4r$. Below it, pixels whose receptive field crosses the tile edge receive weight, and errors
appear at the seams.

**Exercise 4 (what does clipping do to the noisy input?).** On the first BSD68 image, compute the PSNR of the noisy
input at σ = 15, 25 and 50: as generated, clipped to [0, 1], and clipped and rounded to 8 bits. Why does clipping
*raise* the PSNR?
"""),
    code(r"""
first = bsd68.images[0]
noisy_rows = []
for s in (15, 25, 50):
    noisy = dl.degrade.add_gaussian_noise(first, s, seed=0)
    noisy_rows.append({"σ": s, "as generated": dl.metrics.psnr(first, noisy),
                       "clipped": dl.metrics.psnr(first, np.clip(noisy, 0, 1)),
                       "clipped + 8 bits": dl.metrics.psnr(first, np.round(np.clip(noisy, 0, 1) * 255) / 255)})
table(noisy_rows)
""", SOLUTION),
    md(r"""
The clean image lies in [0, 1], so clipping a noisy value moves it closer to the truth wherever the noise pushed it
out of range. The error shrinks, and more so at high σ and in dark or bright regions. The clipped noise is no longer
zero-mean Gaussian, so a model trained on unclipped noise sees a slightly different input. This is one reason why
protocols that clip (or save noisy PNGs) differ from those that do not.

**Exercise 5 (a tile size for a memory budget).** Training keeps every feature map; inference keeps far fewer. For
the paper network (64 channels) running inference, assume the live memory is the skip features plus two working maps,
about `15 // 2 + 2` feature maps. Find the largest square tile that fits 1 GiB in float32. How many such tiles (with
the $4r$ overlap, $r = 30$) cover a 4K UHD frame?
"""),
    code(r"""
maps, width_paper, budget = 15 // 2 + 2, 64, 2**30
largest_tile = int(np.sqrt(budget / (maps * width_paper * 4)))
overlap_paper = 4 * 30
step = largest_tile - overlap_paper
tiles_needed = int(np.ceil((2160 - overlap_paper) / step) * np.ceil((3840 - overlap_paper) / step))
{"largest tile": largest_tile, "overlap": overlap_paper, "tiles for 3840x2160": tiles_needed}
""", SOLUTION),
    md(r"""
The printed tile fits in 1 GiB, and the overlap is a small fraction of it, so a 4K frame needs few tiles and
tiling costs little extra compute. On a GPU with 80 GB the whole frame fits at once for
inference, but not for training (Q5's table), which is why training uses patches.

## References

- RED-Net, the conv → deconv → fuse network with symmetric skips: {cite:t}`mao2016rednet`.
- Transposed convolution arithmetic: {cite:t}`dumoulin2016guide`. Checkerboard artifacts: {cite:t}`odena2016deconvolution`.
  Sub-pixel convolution: {cite:t}`shi2016espcn`.
- Segmentation with learned upsampling: FCN {cite:t}`long2015fcn`, U-Net {cite:t}`ronneberger2015unet`.
- Batch normalisation: {cite:t}`ioffe2015bn`. He initialisation: {cite:t}`he2015delving`.
- Published denoising numbers (DnCNN-S, DnCNN-B, BM3D on BSD68, Table II): {cite:t}`zhang2017dncnn`. The test set:
  {cite:t}`martin2001bsds`, {cite:t}`roth2009foe`.
- The super-resolution protocol (Y channel, shaved borders): {cite:t}`kim2016vdsr`; Set5: {cite:t}`bevilacqua2012set5`.

Full entries are in the book's {doc}`../book/bibliography`.
"""),
]

if __name__ == "__main__":
    out = write(ROOT / "notebooks" / "06_faq.ipynb", cells, title="FAQ")
    print(f"wrote {out.relative_to(ROOT)} ({len(cells)} cells)")
