"""Build notebooks/02_core_concepts.ipynb (chapter 2: convolution, transposed convolution, fusion).

Run from the repository root: ``.venv/bin/python tools/nbsrc/ch02.py``, then execute the notebook with
``tools/nbtools.py execute notebooks/02_core_concepts.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from nbbuild import code, colab, md, write  # noqa: E402

SOLUTION = ("solution", "hide-input")
TITLE = "Core concepts: convolution, transposed convolution, fusion"

cells = [
    colab(),
    md(r"""
# Core concepts: convolution, transposed convolution, fusion

*原标题 — 2. 核心概念与联系 (core concepts and connections)*

Section 2 of the article describes CNNs in one paragraph. Section 3 and the FAQ then name the three blocks of its
method: convolve, "deconvolve", fuse. They also make a claim about the middle block: *反卷积技术的核心思想是将卷积操作的逆过程，
即从低维空间到高维空间的映射*, "the core idea of deconvolution is the inverse process of convolution, a mapping from a
low-dimensional to a high-dimensional space". This chapter writes the three blocks as matrices and small formulas,
checks every formula against Keras, and tests the claim with numbers.

**Overview**
1. Write a 2-D convolution as a matrix $C$ and check it against `keras.layers.Conv2D`.
2. Show that `Conv2DTranspose` multiplies by $C^\top$: the adjoint identity, the kernel layout, the flip, and the
   gradient.
3. Test the claim that deconvolution inverts convolution: shapes, $C^\top C$, singular values, and deblurring with
   the exact inverse and with the Wiener filter.
4. Predict the output size of every convolution and transposed convolution, and check it against Keras.
5. See where checkerboard artifacts come from, at initialisation and after training, and which upsampler avoids them.
6. Compare what addition, concatenation + 1×1 convolution and a learned gate compute when they fuse two feature maps.
"""),
    md(r"""
## Prerequisites

| concept | importance | where |
|---|---|---|
| the run profile, the data sets | necessary | [Setup](00_setup.ipynb) |
| PSNR, blur and its PSF, Wiener deconvolution | helpful | [Chapter 1](01_background.ipynb) |
| matrix–vector products, transpose, singular values | necessary | NumPy `@`, `.T`, `np.linalg` |
| Keras layers (`Conv2D`, `Conv2DTranspose`) | helpful | [Keras layers API](https://keras.io/api/layers/) |

**Time to learn**: about 60 minutes. Most cells are small linear algebra. The one training cell trains three tiny
networks, sized by the run profile.
"""),
    md(r"""
## Imports

One import gives the book's package; `describe_runtime` prints what produced every number below.
"""),
    code(r"""
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
from scipy import signal

import deconvlab as dl

runtime = dl.describe_runtime()
dl.plots.apply_style()
"""),
    md(r"""
The run profile sets the sizes of the training cell in section 5; everything else here is small enough to run
unchanged on any device. One seed fixes every random draw.
"""),
    code(r"""
profile = dl.get_profile()
seed = 0
dl.set_seed(seed)
{field: getattr(profile, field) for field in ("name", "patch_size", "batch_size", "epochs", "steps_per_epoch", "width")}
"""),
    # ------------------------------------------------------------------ 1
    md(r"""
## 1. A convolution is a matrix

A convolution layer without bias is linear, so it multiplies the flattened image by a matrix $C$. Writing $C$ out is
the shortest way to see what a transposed convolution does. Keras' `Conv2D` computes a *cross-correlation*: output
pixel $(i, j)$ is $\sum_{a,b} k_{ab}\, x_{i+a-p,\; j+b-p}$, where $p$ is the padding (0 for `'valid'`, $(k-1)/2$ for
`'same'`) and pixels outside the image count as zero. Each output pixel is one row of $C$. That row holds the kernel's
weights in the columns of the input pixels the kernel covers:
"""),
    code(r"""
def conv_matrix(kernel, n, padding="valid"):
    # The matrix C of Keras' Conv2D (stride 1, one channel) on an n x n image, rows and columns in row-major order.
    k = kernel.shape[0]
    pad = (k - 1) // 2 if padding == "same" else 0
    m = n + 2 * pad - k + 1
    C = np.zeros((m * m, n * n), dtype=kernel.dtype)
    for i, j in np.ndindex(m, m):
        for a, b in np.ndindex(k, k):
            r, c = i + a - pad, j + b - pad
            if 0 <= r < n and 0 <= c < n:
                C[i * m + j, r * n + c] = kernel[a, b]
    return C
"""),
    md(r"""
Now build $C$ for a random 3×3 kernel on a 5×5 image, with both paddings. Then compare $C x$ with what `Conv2D`
computes when it holds the same kernel. `dl.io.as_batch` turns an (H, W) image into the (1, H, W, 1) batch that Keras
layers take, and `dl.io.from_batch` turns the result back:
"""),
    code(r"""
def apply(layer, image):
    return dl.io.from_batch(keras.ops.convert_to_numpy(layer(dl.io.as_batch(image))))


n, k = 5, 3
rng = np.random.default_rng(seed)
kernel = rng.normal(size=(k, k)).astype("float32")
x_small = rng.random((n, n), dtype="float32")
Cs, convs, max_diff = {}, {}, {}
for padding in ("valid", "same"):
    Cs[padding] = conv_matrix(kernel, n, padding)
    convs[padding] = keras.layers.Conv2D(1, k, padding=padding, use_bias=False)
    convs[padding].build((None, n, n, 1))
    convs[padding].set_weights([kernel[:, :, None, None]])
    max_diff[padding] = float(np.abs(Cs[padding] @ x_small.ravel() - apply(convs[padding], x_small).ravel()).max())
    print(f"{padding:>5}: C is {Cs[padding].shape}, max |C x - Conv2D(x)| = {max_diff[padding]:.1e}")
"""),
    md(r"""
The differences are float32 round-off. The check below turns them into a yes/no at a tolerance of $10^{-5}$:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
{f"C @ x == Conv2D(x), {padding}": diff < 1e-5 for padding, diff in max_diff.items()}
"""),
    md(r"""
What does $C$ look like? The figure shows both matrices, with a colour for each kernel weight (red positive, blue
negative, white zero). Each row holds the same nine weights, shifted along the diagonal; rows of border pixels in
`'same'` lose the weights that fall outside the image.
"""),
    code(r"""
fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.4), layout="constrained")
for ax, (padding, C) in zip(axes, Cs.items(), strict=True):
    lim = np.abs(C).max()
    ax.imshow(C, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"C of a 3x3 conv, '{padding}': {C.shape[0]} outputs x {C.shape[1]} inputs")
    ax.set_xlabel("input pixel (row-major)")
    ax.set_ylabel("output pixel")
    ax.grid(False)
plt.show()
"""),
    md(r"""
A convolution is a sparse, banded matrix with the same weights repeated along its diagonals. With `'valid'` it is
wide: fewer outputs than inputs.
"""),
    # ------------------------------------------------------------------ 2
    md(r"""
## 2. The transposed convolution is $C^\top$

RED-Net's decoder and FSRCNN's upsampler are `Conv2DTranspose` layers. The article calls them "deconvolution".
Give one the same kernel as the convolution above and apply it to a 3×3 array $y$. The result is $C^\top y$: a 5×5
image, computed by the transposed matrix.
"""),
    code(r"""
m = n - k + 1
y_small = rng.random((m, m), dtype="float32")
deconv = keras.layers.Conv2DTranspose(1, k, padding="valid", use_bias=False)
deconv.build((None, m, m, 1))
deconv.set_weights([kernel[:, :, None, None]])
x_back = apply(deconv, y_small)
diff_transpose = float(np.abs(Cs["valid"].T @ y_small.ravel() - x_back.ravel()).max())
print(f"Conv2DTranspose maps {y_small.shape} to {x_back.shape}; max |C^T y - Conv2DTranspose(y)| = {diff_transpose:.1e}")
"""),
    md(r"""
With several channels and a stride, the matrix is too large to print. The defining property of the transpose still
holds, and it can be checked: the **adjoint identity** $\langle Cx, y\rangle = \langle x, C^\top y\rangle$ for every
$x$ and $y$ (see {term}`Adjoint`). Mind the kernel layout. `Conv2D` stores its kernel as (kh, kw, in, out).
`Conv2DTranspose` stores (kh, kw, out, in), where its own "out" is the convolution's "in". So the *same array* serves
both layers, with no transposition and no flipping:
"""),
    code(r"""
c_in, c_out, stride = 2, 3, 2
x_multi = rng.random((1, 8, 8, c_in), dtype="float32")
conv2 = keras.layers.Conv2D(c_out, 3, strides=stride, padding="same", use_bias=False)
y_multi = rng.random(tuple(conv2(x_multi).shape), dtype="float32")
deconv2 = keras.layers.Conv2DTranspose(c_in, 3, strides=stride, padding="same", use_bias=False)
deconv2.build(y_multi.shape)
print("Conv2D kernel", tuple(conv2.kernel.shape), "| Conv2DTranspose kernel", tuple(deconv2.kernel.shape))
deconv2.set_weights(conv2.get_weights())
lhs = float(np.sum(keras.ops.convert_to_numpy(conv2(x_multi)) * y_multi))
rhs = float(np.sum(x_multi * keras.ops.convert_to_numpy(deconv2(y_multi))))
rel_adjoint = abs(lhs - rhs) / abs(lhs)
print(f"<Cx, y> = {lhs:.6f}   <x, C^T y> = {rhs:.6f}   relative difference {rel_adjoint:.1e}")
"""),
    md(r"""
Where is the flip? Seen as a sliding window, $C^\top$ is a *convolution* in the textbook sense: a correlation with the
kernel rotated by 180°, with `'full'` padding. `Conv2D` is `scipy.signal.correlate2d(x, k, 'valid')`, and
`Conv2DTranspose` is `scipy.signal.convolve2d(y, k, 'full')`:
"""),
    code(r"""
diff_corr = float(np.abs(signal.correlate2d(x_small, kernel, mode="valid") - apply(convs["valid"], x_small)).max())
diff_flip = float(np.abs(signal.convolve2d(y_small, kernel, mode="full") - x_back).max())
flipped = float(np.abs(signal.correlate2d(y_small, kernel[::-1, ::-1], mode="full") - x_back).max())
print(f"max |correlate2d(x, k, 'valid') - Conv2D(x)| = {diff_corr:.1e}")
print(f"max |convolve2d(y, k, 'full') - Conv2DTranspose(y)| = {diff_flip:.1e}")
print(f"max |correlate2d(y, k rotated 180 deg, 'full') - Conv2DTranspose(y)| = {flipped:.1e}")
"""),
    md(r"""
The transpose also appears in training. The backward pass of a convolution layer multiplies the gradient that flows
in from above by $C^\top$. `dl.grads.vjp(fn, x, y)` returns the gradient of $\langle \mathrm{fn}(x), y\rangle$ with
respect to $x$, on TensorFlow, JAX and PyTorch alike. For the strided convolution above, it should equal the
transposed convolution of $y$:
"""),
    code(r"""
grad = dl.grads.vjp(conv2, x_multi, y_multi)
diff_vjp = float(np.abs(grad - keras.ops.convert_to_numpy(deconv2(y_multi))).max())
print(f"max |d<Conv2D(x), y>/dx - Conv2DTranspose(y)| = {diff_vjp:.1e}")
"""),
    md(r"""
All four identities, as yes/no at a tolerance of $10^{-5}$:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
{
    "Conv2DTranspose(y) == C.T @ y": diff_transpose < 1e-5,
    "<Cx, y> == <x, C^T y> (2 -> 3 channels, stride 2)": rel_adjoint < 1e-5,
    "Conv2DTranspose == convolve2d(..., 'full'), i.e. the flipped kernel": diff_flip < 1e-5,
    "gradient of Conv2D w.r.t. its input == Conv2DTranspose": diff_vjp < 1e-5,
}
"""),
    md(r"""
A "deconvolution" layer is the transpose of a convolution. It is the same operation that backpropagation uses to send
gradients through a convolution. Nothing in it inverts anything.
"""),
    # ------------------------------------------------------------------ 3
    md(r"""
## 3. Is the transposed convolution the inverse?

The article's claim has two readings: (a) deconvolution maps low dimension to high dimension, and (b) it undoes the
convolution. We test both. Then we look at what a true inverse does, because classical deconvolution (Wiener,
Richardson–Lucy in [chapter 1](01_background.ipynb)) tries to compute one.

### 3a. Low to high: the shapes

Any linear layer's matrix can be read off by feeding it basis images: column $j$ is its response to an image that is 1
at pixel $j$ and 0 elsewhere. Here is the matrix of a stride-2 transposed convolution from 8×8 to 16×16, and its rank:
"""),
    code(r"""
def layer_matrix(layer, side):
    basis = np.eye(side * side, dtype="float32").reshape(-1, side, side, 1)
    return keras.ops.convert_to_numpy(layer(basis)).reshape(side * side, -1).T


print(f"probing Conv2D('same') gives C: max difference {np.abs(layer_matrix(convs['same'], n) - Cs['same']).max():.1e}")
up = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", use_bias=False)
T = layer_matrix(up, 8)
rank_T = int(np.linalg.matrix_rank(T))
print(f"stride-2 transposed conv: {T.shape[1]} input pixels -> {T.shape[0]} output pixels, rank {rank_T}")
"""),
    md(r"""
The output has more pixels than the input, so reading (a) holds *for shapes*. But the rank is at most the number of
input pixels. Every output lies in a subspace of that dimension, so the layer adds no information. Any new detail must
come from what the network learns, not from the operation itself.

### 3b. Does $C^\top$ undo $C$?

If the transposed convolution inverted the convolution, $C^\top C$ would be the identity. The 3×3 `'valid'` matrix of
section 1 maps 25 pixels to 9. Its singular values show how much of the image it keeps, and the relative error
$\lVert C^\top C x - x\rVert / \lVert x\rVert$ shows how far $C^\top C x$ is from $x$:
"""),
    code(r"""
C = Cs["valid"]
s_small = np.linalg.svd(C, compute_uv=False)
rank_C = int(np.linalg.matrix_rank(C))
rel_small = float(np.linalg.norm(C.T @ C @ x_small.ravel() - x_small.ravel()) / np.linalg.norm(x_small))
print("singular values of C:", np.round(s_small, 3))
print(f"rank {rank_C} of {C.shape[1]} input pixels; ||C^T C x - x|| / ||x|| = {rel_small:.3f}")
"""),
    md(r"""
A 9×25 matrix has a null space of dimension at least 16, so no matrix at all can recover $x$ from $Cx$, let alone
$C^\top$. A `'same'` convolution is square, so it can have an inverse. The interesting case is blur: the book's
deblurring protocol from chapter 1 (a Gaussian PSF and a little Gaussian noise). We write it as a matrix on a 32×32
crop of Set12 image 02 (the house) and look at its singular values. The Gaussian PSF is symmetric, so the matrix is
symmetric too, and its singular values are the absolute values of its eigenvalues.
"""),
    code(r"""
psf = dl.degrade.gaussian_psf(dl.degrade.DEBLUR_PSF_SIGMA, dl.degrade.DEBLUR_PSF_SIZE)
noise_sigma = dl.degrade.DEBLUR_NOISE_SIGMA / 255
crop, top, left = 32, 136, 164
x_img = dl.data.load_dataset("set12", limit=2).images[1][top:top + crop, left:left + crop]
C_blur = conv_matrix(psf.astype("float64"), crop, "same")
s_blur = np.sort(np.abs(np.linalg.eigvalsh(C_blur)))[::-1]
print(f"PSF {psf.shape[0]}x{psf.shape[1]}, sigma {dl.degrade.DEBLUR_PSF_SIGMA}; C_blur is {C_blur.shape}, "
      f"symmetric: {np.array_equal(C_blur, C_blur.T)}")
print(f"singular values from {s_blur[0]:.3f} down to {s_blur[-1]:.1e}: condition number {s_blur[0] / s_blur[-1]:.1e}")
"""),
    md(r"""
Because $C^\top = C$ here, the "deconvolution" with the blur's own kernel simply blurs a second time. The plot
shows the singular values in decreasing order on a log scale. Fine detail lives in the directions with small singular
values: the blur shrinks them almost to nothing, and an inverse must multiply them back up by the reciprocal.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(6.4, 3.2), layout="constrained")
ax.semilogy(s_blur)
ax.axhline(noise_sigma, color="tab:red", linestyle="--", label="noise std (sigma / 255)")
ax.set_xlabel("index (largest first)")
ax.set_ylabel("singular value")
ax.set_title(f"Singular values of the {crop}x{crop} Gaussian-blur matrix")
ax.legend()
plt.show()
print(f"{int(np.sum(s_blur < noise_sigma))} of {s_blur.size} singular values are below the noise std {noise_sigma:.4f}")
"""),
    md(r"""
Many singular values fall below the noise level (the count is printed under the plot). Along those directions the
noise is larger than what the blur leaves of an image component of size one. So the experiment: blur the crop, add
the protocol's noise, and restore it four ways.

- $C^\top y$: the transposed convolution with the blur's kernel.
- The exact inverse $C^{-1}$, once on the noise-free blur and once on the noisy one.
- The regularised inverse $(C^\top C + \lambda I)^{-1} C^\top y$: the Wiener filter for a white signal, in matrix form
  {cite:p}`wiener1949`. We set $\lambda = \sigma^2 / (\operatorname{var}(y) - \sigma^2)$, the noise-to-signal power
  ratio estimated from $y$ itself. Chapter 1's `dl.classical.wiener_deconv` computes the same formula with
  FFTs (and a Laplacian in place of $I$).
"""),
    code(r"""
x = x_img.astype("float64").ravel()
y = C_blur @ x + np.random.default_rng(seed).normal(0, noise_sigma, x.size)
lam = noise_sigma**2 / (y.var() - noise_sigma**2)
estimates = {
    "blurred + noisy y": y,
    "transposed conv C^T y": C_blur.T @ y,
    "exact inverse C^-1 (Cx), no noise": np.linalg.solve(C_blur, C_blur @ x),
    "exact inverse C^-1 y": np.linalg.solve(C_blur, y),
    "Wiener (C^T C + lam I)^-1 C^T y": np.linalg.solve(C_blur.T @ C_blur + lam * np.eye(x.size), C_blur.T @ y),
}
restored = {name: est.reshape(crop, crop).astype("float32") for name, est in estimates.items()}
psnrs = {name: dl.metrics.psnr(x_img, img) for name, img in restored.items()}
{name: round(p, 2) for name, p in psnrs.items()}
"""),
    md(r"""
The figure shows the clean 32×32 crop and the five results, with PSNR and SSIM against the clean crop in each title.
Display clips to $[0, 1]$. The noisy exact inverse is dominated by the noise along the singular vectors with the
smallest singular values, the finest (checkerboard-like) patterns, amplified far outside $[0, 1]$. The borders of
$C^\top y$ darken because the matrix treats the pixels outside the crop as zero.
"""),
    code(r"""
dl.plots.compare({"clean crop x": x_img, **restored}, reference=x_img, ncols=3,
                 title="32x32 crop of Set12 02 blurred (Gaussian PSF) with noise, restored four ways")
"""),
    md(r"""
Now the verdict. A matrix identity "holds" when its relative error is below $10^{-3}$. A restoration "holds" when its
PSNR beats the blurred input's. The table is computed from the measurements above:
"""),
    code(r"""
tol = 1e-3
rel_blur = float(np.linalg.norm(C_blur.T @ C_blur @ x - x) / np.linalg.norm(x))
p_y = psnrs["blurred + noisy y"]
verdicts = [
    ("low -> high: more output than input pixels", f"{T.shape[1]} -> {T.shape[0]} px", T.shape[0] > T.shape[1]),
    ("low -> high adds information: rank > inputs", f"rank {rank_T}", rank_T > T.shape[1]),
    ("C^T undoes C, random 3x3 kernel", f"rel. error {rel_small:.3f}", rel_small < tol),
    ("C^T undoes C, Gaussian blur", f"rel. error {rel_blur:.3f}", rel_blur < tol),
]
verdicts += [(f"{name} restores the image", f"{psnrs[name]:.2f} vs {p_y:.2f} dB", psnrs[name] > p_y)
             for name in list(psnrs)[1:]]
for claim, measured, ok in verdicts:
    print(f"{claim:<52} {measured:>20}   {'holds' if ok else 'does not hold'}")
"""),
    md(r"""
The table answers the article's claim in three parts:

- "Low to high dimension" is true of the shapes only. The transposed convolution's output has no more degrees of
  freedom than its input.
- "The inverse of convolution" is false. $C^\top C$ is far from the identity, and for a blur $C^\top y$ is a second blur
  that lowers PSNR.
- The true inverse exists for a `'same'` blur and is exact without noise. With the protocol's small noise it is useless,
  because it divides the noise by singular values close to zero. What restores the image is a *regularised* inverse:
  the Wiener filter, or a network that learns a prior. A network's "deconvolution" layers are the trainable
  transposes that such a network is built from. Training, not the layer, has to supply the inverse.
"""),
    # ------------------------------------------------------------------ 4
    md(r"""
## 4. Shape arithmetic

Encoder–decoder networks only work when every decoder output matches the encoder feature it is fused with. These are
the rules Keras uses {cite:p}`dumoulin2016guide`, written as two functions. A convolution gives
$\lfloor (n - k)/s\rfloor + 1$ with `'valid'` and $\lceil n/s\rceil$ with `'same'`. A transposed convolution without
`output_padding` gives $ns + \max(k - s, 0)$ with `'valid'` and $ns$ with `'same'`. With `output_padding` $q$ it gives
$(n-1)s + k - 2p + q$, where $p = \lfloor k/2\rfloor$ for `'same'` and $p = 0$ for `'valid'`.
"""),
    code(r"""
def conv_output(n, k, s, padding):
    return (n - k) // s + 1 if padding == "valid" else -(-n // s)


def transposed_output(n, k, s, padding, output_padding=None):
    if output_padding is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    p = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * p + output_padding
"""),
    md(r"""
The table builds each layer, calls it on a zero input of side $n$, and puts the side Keras returns next to the
formula's:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
ROWS = [("Conv2D", 5, 3, 1, "valid", None), ("Conv2D", 5, 3, 1, "same", None), ("Conv2D", 7, 3, 2, "valid", None),
        ("Conv2D", 7, 3, 2, "same", None), ("Conv2D", 8, 3, 2, "same", None), ("Conv2D", 8, 4, 2, "same", None),
        ("Conv2DTranspose", 3, 3, 1, "valid", None), ("Conv2DTranspose", 5, 3, 1, "same", None),
        ("Conv2DTranspose", 4, 3, 2, "valid", None), ("Conv2DTranspose", 4, 3, 2, "same", None),
        ("Conv2DTranspose", 4, 4, 2, "same", None), ("Conv2DTranspose", 4, 3, 2, "same", 0),
        ("Conv2DTranspose", 4, 3, 2, "same", 1), ("Conv2DTranspose", 4, 3, 2, "valid", 1),
        ("Conv2DTranspose", 4, 4, 2, "same", 1), ("Conv2DTranspose", 10, 9, 3, "same", None)]
print(f"{'layer':<16}{'n':>3}{'k':>3}{'s':>3}  {'padding':<8}{'out_pad':>7}{'Keras':>7}{'formula':>9}  agree")
for layer, n_in, k_, s, padding, q in ROWS:
    extra = {} if layer == "Conv2D" else {"output_padding": q}
    block = getattr(keras.layers, layer)(1, k_, strides=s, padding=padding, **extra)
    side = int(block(np.zeros((1, n_in, n_in, 1), "float32")).shape[1])
    rule = conv_output(n_in, k_, s, padding) if layer == "Conv2D" else transposed_output(n_in, k_, s, padding, q)
    print(f"{layer:<16}{n_in:>3}{k_:>3}{s:>3}  {padding:<8}{q!s:>7}{side:>7}{rule:>9}  {'yes' if side == rule else 'NO'}")
"""),
    md(r"""
Two rows deserve a second look. With stride 2, sizes 7 and 8 both go down to 4, so a transposed convolution cannot know
which one to return. It returns 8 unless `output_padding` says otherwise. And `output_padding` with an even kernel
under `'same'` gives 7, not 8, because the formula subtracts $2\lfloor k/2\rfloor = k$.

```{warning}
With the versions printed at the top of this chapter, `Conv2DTranspose(1, 4, strides=2, padding="same",
output_padding=0)` fails at run time on TensorFlow: the formula gives a size that TensorFlow's own check rejects. JAX
returns a result. Avoid `output_padding` with even kernels.
```

The book's strided models solve the 7-versus-8 problem without `output_padding`: they pad the input up to a multiple
of the total stride with `dl.layers.PadToMultiple` and crop the output back with `dl.layers.CropToReference`:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
x7 = np.zeros((1, 7, 7, 1), "float32")
down = keras.layers.Conv2D(1, 3, strides=2, padding="same")
up2 = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same")
padded = dl.layers.PadToMultiple(2)(x7)
cropped = dl.layers.CropToReference()([up2(down(padded)), x7])
{name: tuple(int(d) for d in t.shape) for name, t in
 [("input", x7), ("down then up", up2(down(x7))), ("padded", padded), ("pad, down, up, crop", cropped)]}
"""),
    md(r"""
Down then up turns 7 into 8. Pad, down, up and crop returns 7, so any image size works.
"""),
    # ------------------------------------------------------------------ 5
    md(r"""
## 5. Checkerboard artifacts

A stride-2 transposed convolution pastes one scaled copy of its kernel into the output for every input pixel, at steps
of 2. Where copies overlap, an output pixel sums more terms. With a 3×3 kernel the overlap alternates between one and
two copies along each axis. With a 4×4 kernel every pixel gets two. Resizing (nearest neighbour) and then convolving
gives every pixel the same nine taps {cite:p}`odena2016deconvolution`. We compare these three ×2 upsamplers:
"""),
    code(r"""
UPSAMPLERS = ("transposed 3x3", "transposed 4x4", "resize + conv 3x3")


def upsampler(kind, filters, **conv_kwargs):
    # A x2 upsampling block: a stride-2 transposed conv (3x3 or 4x4), or nearest resize followed by a 3x3 conv.
    if kind == "resize + conv 3x3":
        return keras.Sequential([keras.layers.UpSampling2D(2),
                                 keras.layers.Conv2D(filters, 3, padding="same", **conv_kwargs)])
    size = int(kind.split()[1][0])
    return keras.layers.Conv2DTranspose(filters, size, strides=2, padding="same", **conv_kwargs)
"""),
    md(r"""
First the overlap count: all kernel weights set to 1, a constant input of ones. Each output pixel then shows how many
kernel taps land on it. These are the central 4×4 pixels of the 16×16 output:
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
ones = np.ones((1, 8, 8, 1), "float32")
counts = {}
for kind in UPSAMPLERS:
    block = upsampler(kind, 1, kernel_initializer="ones", use_bias=False)
    counts[kind] = keras.ops.convert_to_numpy(block(ones))[0, :, :, 0]
    print(f"{kind:<18}", counts[kind][6:10, 6:10].astype(int).tolist())
"""),
    md(r"""
At initialisation the weights are random, not ones. An output pixel that sums more random taps has a larger spread,
growing with the square root of the number of taps: for the 3×3 layer the largest spread should be about
$\sqrt{4}/\sqrt{1} = 2$ times the smallest, for the other two about 1. We draw many random kernels at once, as the
output channels of one layer, feed a constant 16-channel feature map, and take the standard deviation across draws at
every pixel:
"""),
    code(r"""
n_draws = 512
features = np.ones((1, 8, 8, 16), "float32")
spread = {}
for kind in UPSAMPLERS:
    block = upsampler(kind, n_draws, kernel_initializer=keras.initializers.HeNormal(seed), use_bias=False)
    spread[kind] = keras.ops.convert_to_numpy(block(features))[0].std(axis=-1)
    centre = spread[kind][4:12, 4:12]
    print(f"{kind:<18} max / min std over the centre: {centre.max() / centre.min():.2f}")
"""),
    md(r"""
The figure shows, for each upsampler, the overlap count (top row) and the spread over random initialisations (bottom
row) on the central 8×8 output pixels, each divided by its mean so that one gray scale (0 to 2) fits all panels.
Uniform mid-gray means every pixel is treated alike; a 2-pixel period is the checkerboard.
"""),
    code(r"""
fig, axes = plt.subplots(2, 3, figsize=(9.6, 6.2), layout="constrained")
for col, kind in enumerate(UPSAMPLERS):
    for row, (label, maps) in enumerate((("overlap count", counts), ("std over random kernels", spread))):
        centre = maps[kind][4:12, 4:12]
        handle = axes[row, col].imshow(centre / centre.mean(), cmap="gray", vmin=0, vmax=2)
        axes[row, col].set_title(f"{kind}\n{label} / mean")
        axes[row, col].set_axis_off()
fig.colorbar(handle, ax=axes, shrink=0.6, label="relative to the panel's mean")
plt.show()
"""),
    md(r"""
The 3×3 / stride-2 layer has the checkerboard built in: 1, 2 and 4 taps per pixel, and a random-init spread that
varies with the same period. The 4×4 kernel and resize + conv are uniform in the interior. Uniform *on average* is not
uniform for one network, though. Each output phase (even or odd row, even or odd column) of a stride-2 transposed
convolution uses its own sub-kernel, and a flat input gives each phase the sum of its sub-kernel's weights. With random
weights these sums differ, so a single 4×4 layer also answers a flat input with a period-2 pattern. Resize + conv
applies the same weights to every pixel and answers with a flat output, whatever its weights.

Does training remove the pattern? We train three tiny ×2 super-resolution networks that differ only in their
upsampler: two 3×3 convolutions with ReLU, the upsampler, and a bilinear skip from the input. To measure the
artifact, we feed a flat gray image (0.5) and take the peak-to-peak *ripple* of the output away from the borders,
in gray levels (0–255). A perfect upsampler returns a flat image, ripple 0. We call a ripple of more than one gray
level (one step of an 8-bit image) a visible checkerboard.
"""),
    code(r"""
def tiny_sr(kind, width):
    lr = keras.Input(shape=(None, None, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(lr)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    detail = upsampler(kind, 1)(x)
    return keras.Model(lr, keras.layers.Add()([dl.layers.BilinearUpsample(2)(lr), detail]))


flat = np.full((1, 32, 32, 1), 0.5, "float32")


def ripple(model):
    out = keras.ops.convert_to_numpy(model(flat))[0, 16:48, 16:48, 0]
    return 255 * float(out.max() - out.min())
"""),
    md(r"""
The training data: LR/HR patch pairs from Train400, bicubic ×2 (the SR protocol of chapter 1). The profile sets how
many pairs, and every model sees the same ones. Drawing them once keeps the three runs cheap and identical in data.
The test images are the first images of Set12, high resolution (HR) and downscaled (LR):
"""),
    code(r"""
scale = 2
train = dl.data.load_dataset("train400", limit=profile.train_images)
pairs = dl.data.PatchDataset(train, dl.degrade.sr_degradation(scale, pre_upsample=False), profile.patch_size,
                             batch_size=profile.batch_size * profile.steps_per_epoch, steps_per_epoch=1,
                             seed=seed, scale=scale)
x_lr, y_hr = pairs[0]
test = dl.data.load_dataset("set12", limit=profile.test_images)
hr_images = [dl.metrics.modcrop(img, scale) for img in test.images]
lr_images = [dl.degrade.downscale(hr, scale) for hr in hr_images]
x_lr.shape, y_hr.shape
"""),
    md(r"""
Each model trains for the profile's epochs over these pairs (Adam, mean squared error). Before and after training we
record its ripple and its *learned detail* on the house (Set12 02): the output minus the bilinear skip, which is
what the upsampler contributes. We also record the seconds training took:
"""),
    code(r"""
def learned_detail(model, lr):
    return apply(model, lr) - apply(dl.layers.BilinearUpsample(scale), lr)


width, house_lr = profile.width // 2, lr_images[1]
results = {}
for kind in UPSAMPLERS:
    dl.set_seed(seed)
    model = tiny_sr(kind, width)
    r = results[kind] = {"model": model, "params": model.count_params(), "ripple at init": ripple(model),
                         "detail at init": learned_detail(model, house_lr)}
    model.compile(optimizer=keras.optimizers.Adam(profile.learning_rate), loss="mse",
                  jit_compile=dl.train.resolve_jit_compile())
    start = time.perf_counter()
    model.fit(x_lr, y_hr, batch_size=profile.batch_size, epochs=profile.epochs, verbose=0)
    r.update({"seconds": time.perf_counter() - start, "ripple trained": ripple(model),
              "detail trained": learned_detail(model, house_lr)})
"""),
    md(r"""
Next, the three trained models on the first images of Set12. PSNR is measured on the SR protocol (Y channel,
`scale`-pixel border shaved), next to bicubic interpolation. The last column applies the one-gray-level rule to the
trained ripple:
"""),
    code(r"""
def mean_sr_psnr(upscale):
    return np.mean([dl.metrics.sr_metrics(hr, upscale(lr), scale)[0] for hr, lr in zip(hr_images, lr_images, strict=True)])


print(f"{'upsampler':<18}{'params':>7}{'ripple init':>13}{'ripple trained':>16}{'PSNR (dB)':>11}{'s':>6}  checkerboard")
for kind, r in results.items():
    r["psnr"] = mean_sr_psnr(lambda lr, model=r["model"]: apply(model, lr))
    visible = "visible" if r["ripple trained"] > 1 else "not visible"
    print(f"{kind:<18}{r['params']:>7}{r['ripple at init']:>13.2f}{r['ripple trained']:>16.2f}{r['psnr']:>11.2f}"
          f"{r['seconds']:>6.1f}  {visible}")
print(f"{'bicubic':<18}{'':>52}{mean_sr_psnr(lambda lr: dl.degrade.upscale(lr, scale)):>11.2f}")
"""),
    md(r"""
Here are the trained ×2 outputs on the house. The figure shows the HR reference, bicubic and the three networks, with
PSNR/SSIM against the reference and a zoomed inset of the gutter and downspout:
"""),
    code(r"""
house_hr = hr_images[1]
outputs = {kind: apply(r["model"], house_lr) for kind, r in results.items()}
dl.plots.compare({"HR": house_hr, "bicubic": dl.degrade.upscale(house_lr, scale), **outputs},
                 reference=house_hr, zoom=(96, 176, 40, 40), ncols=5,
                 title="x2 super-resolution of Set12 02 by three upsamplers; insets: the gutter and downspout")
"""),
    md(r"""
The artifact is easier to see in the learned detail alone, on a flat part of the image. The figure zooms into the sky
near the top-left corner of the house (48×48 HR pixels, away from the image border). It shows each upsampler's detail
before training (top row) and after (bottom row). Each panel is stretched to its own range, so the title gives the
amplitude: the standard deviation of the detail in gray levels (0–255).
"""),
    code(r"""
sky = (slice(8, 56), slice(8, 56))
WHEN = {"detail at init": "at init", "detail trained": "trained"}
fig, axes = plt.subplots(2, 3, figsize=(9.6, 6.6), layout="constrained")
for col, (kind, r) in enumerate(results.items()):
    for row, when in enumerate(WHEN):
        patch = r[when][sky]
        axes[row, col].imshow(patch, cmap="gray")
        axes[row, col].set_title(f"{kind}, {WHEN[when]}\nstd {255 * patch.std():.2f} gray levels")
        axes[row, col].set_axis_off()
plt.show()
"""),
    md(r"""
A checkerboard is periodic with period 2, so it shows in the spectrum as peaks at $\pm\frac12$ cycle/pixel: the
corners and the edge midpoints of a centred FFT. `dl.plots.spectrum` is the log magnitude
$\log(1 + |\mathrm{FFT}(e - \bar e)|)$, centred. We write it here once and check it against the package:
"""),
    code(r"""
def spectrum(img):
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))))


details = [r[when][sky].astype("float64") for r in results.values() for when in WHEN]
print("same as dl.plots.spectrum:", all(np.allclose(spectrum(d), dl.plots.spectrum(d)) for d in details))
"""),
    md(r"""
The figure shows the spectra of the same sky details, before training (top row) and after (bottom row). Bright spots at
the corners or at the middle of the edges are period-2 energy, the checkerboard. On an even-sized crop $+\frac12$
and $-\frac12$ are the same frequency, drawn once, at the left and top edges. Energy near the centre is smooth
variation.
"""),
    code(r"""
fig, axes = plt.subplots(2, 3, figsize=(12.8, 7.0), layout="constrained")
for col, (kind, r) in enumerate(results.items()):
    for row, when in enumerate(WHEN):
        dl.plots.plot_spectrum(r[when][sky], ax=axes[row, col], title=f"{kind}, {WHEN[when]}")
plt.show()
"""),
    md(r"""
Before training, both transposed convolutions put strong energy at the period-2 frequencies, and resize + conv very
little. After training, compare the two ripple columns of the table with the one-gray-level rule. Training can shrink
the ripple of a transposed convolution, but nothing in the layer forces it to zero, while resize + conv has none by
construction. Each model here is one run with one seed. The ripple after training changes from seed to seed, and
between backends, whose random initialisations differ. So read the ripple columns for their order of magnitude, not
their exact values. This is why the book's strided models use a 4×4 kernel
(`dl.models.red_net(down="strided", up="transposed")`) and offer `up="resize"` and `up="subpixel"` as alternatives
(chapter 5).
"""),
    # ------------------------------------------------------------------ 6
    md(r"""
## 6. Fusion: add, concatenate, gate

The third step of the article is $x'' = \mathrm{Fuse}(x, x')$. RED-Net fuses an encoder feature $a$ into the
mirrored decoder feature $b$ {cite:p}`mao2016rednet`. Three common choices:

- **add**: $a + b$, no parameters (RED-Net, ResNet);
- **concat + 1×1**: $W_a a + W_b b + \beta$, one learned channel mix shared by every pixel (U-Net-style,
  {cite:p}`ronneberger2015unet`);
- **gate**: $g \odot a + (1 - g) \odot b$ with $g = \sigma(W_g [a; b] + \beta_g)$, a mix chosen *per pixel and
  channel* (as in highway networks {cite:p}`srivastava2015highway`). `dl.layers.Blend` computes the last step.

Here they are as Keras models for the profile's feature width, with their parameter counts:
"""),
    code(r"""
w = profile.width
enc_in, dec_in = keras.Input((None, None, w)), keras.Input((None, None, w))
both = keras.layers.Concatenate()([enc_in, dec_in])
gate_conv = keras.layers.Conv2D(w, 1, activation="sigmoid")
fusions = {
    "add": keras.Model([enc_in, dec_in], keras.layers.Add()([enc_in, dec_in])),
    "concat + 1x1": keras.Model([enc_in, dec_in], keras.layers.Conv2D(w, 1)(both)),
    "gate": keras.Model([enc_in, dec_in], dl.layers.Blend()([gate_conv(both), enc_in, dec_in])),
}
{name: model.count_params() for name, model in fusions.items()}
"""),
    md(r"""
What do they compute? On random 4×4 feature maps we check four facts. A 1×1 convolution with weights
$[I; I]$ and no bias *is* addition, so concat + 1×1 can do everything add does. A gate with zero weights gives the
average. Any gate output lies between $a$ and $b$, element by element. And `Blend` is the formula written out:
"""),
    code(r"""
enc = rng.normal(size=(1, 4, 4, w)).astype("float32")
dec = rng.normal(size=(1, 4, 4, w)).astype("float32")
run = {name: (lambda a, b, m=model: keras.ops.convert_to_numpy(m([a, b]))) for name, model in fusions.items()}
added, gated = run["add"](enc, dec), run["gate"](enc, dec)
fusions["concat + 1x1"].layers[-1].set_weights([np.concatenate([np.eye(w), np.eye(w)])[None, None].astype("float32"),
                                                np.zeros(w, "float32")])
g = keras.ops.convert_to_numpy(gate_conv(np.concatenate([enc, dec], axis=-1)))
facts = {
    "concat + 1x1 with W = [I; I] equals add": np.allclose(run["concat + 1x1"](enc, dec), added, atol=1e-5),
    "gate output lies between a and b": bool(np.all((gated >= np.minimum(enc, dec) - 1e-6) & (gated <= np.maximum(enc, dec) + 1e-6))),
    "Blend equals g * a + (1 - g) * b": np.allclose(gated, g * enc + (1 - g) * dec, atol=1e-5),
}
"""),
    code(r"""
# NBVAL_CHECK_OUTPUT
gate_conv.set_weights([np.zeros((1, 1, 2 * w, w), "float32"), np.zeros(w, "float32")])
facts["a gate with zero weights gives (a + b) / 2"] = np.allclose(run["gate"](enc, dec), (enc + dec) / 2, atol=1e-6)
{name: bool(ok) for name, ok in facts.items()}
"""),
    md(r"""
To see why a per-pixel mix matters, fuse two images instead of feature maps. The "encoder feature" $a$ is a noisy image
(σ = 25): all the detail and all the noise. The "decoder feature" $b$ is the same image smoothed by a small Gaussian:
little noise, soft edges. In a network, the gate's 1×1 convolution sees many channels, and some of them respond to
edges. Here we give it one such channel, the gradient magnitude $e$ of $b$, so $g = \sigma(\alpha e + \beta)$. The
concat mix $(w_a, w_b, w_0)$ and the gate's $(\alpha, \beta)$ are fitted by least squares and a grid search on four
Train400 images. Then they are tested on the house:
"""),
    code(r"""
noise_level, smoother = 25, dl.degrade.gaussian_psf(1.5, 9)


def fusion_inputs(clean, noise_seed):
    a = dl.degrade.add_gaussian_noise(clean, noise_level, seed=noise_seed)
    b = dl.degrade.blur(a, smoother)
    return a, b, np.hypot(*np.gradient(b))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


fit_set = [(clean, *fusion_inputs(clean, i)) for i, clean in enumerate(train.images[:4])]
design = np.concatenate([np.stack([a.ravel(), b.ravel(), np.ones(a.size)], 1) for _, a, b, _ in fit_set])
w_mix = np.linalg.lstsq(design, np.concatenate([c.ravel() for c, *_ in fit_set]), rcond=None)[0]
"""),
    code(r"""
def gate_mse(alpha, beta):
    return np.mean([np.mean((sigmoid(alpha * e + beta) * (a - b) + b - c) ** 2) for c, a, b, e in fit_set])


grid = [(alpha, beta) for alpha in np.linspace(0, 200, 21) for beta in np.linspace(-8, 2, 21)]
alpha, beta = min(grid, key=lambda ab: gate_mse(*ab))
print(f"concat mix: w_a = {w_mix[0]:.3f}, w_b = {w_mix[1]:.3f}, w_0 = {w_mix[2]:.4f};  gate: alpha = {alpha:.0f}, beta = {beta:.2f}")
"""),
    md(r"""
The figure shows the clean house, the two inputs and the three fusions, with PSNR/SSIM against the clean image and an
inset on the gutter and downspout. "add, then ½" is addition followed by the fixed rescaling that a next layer would have to
learn, since $a + b$ alone doubles the brightness.
"""),
    code(r"""
house = test.images[1]
a, b, e = fusion_inputs(house, 100)
g_house = sigmoid(alpha * e + beta)
fused = {"encoder a (noisy)": a, "decoder b (smoothed)": b, "add, then 1/2": (a + b) / 2,
         "concat + 1x1 (fitted)": w_mix[0] * a + w_mix[1] * b + w_mix[2],
         "gate (fitted)": g_house * a + (1 - g_house) * b}
dl.plots.compare({"clean": house, **fused}, reference=house, zoom=(96, 176, 40, 40), ncols=3,
                 title="Fusing a noisy and a smoothed copy of Set12 02 three ways; insets: the gutter and downspout")
"""),
    md(r"""
Where does the gate open? The map shows $g$ on the house: white where the fusion takes the noisy, sharp input $a$,
black where it takes the smooth $b$.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(3.6, 3.6), layout="constrained")
dl.plots.show(ax, g_house, f"gate g on Set12 02 (mean {g_house.mean():.2f})")
plt.show()
"""),
    md(r"""
Add has no parameters and relies on the layers after it. Concat + 1×1 learns one mix for the whole image, so it must
compromise between edges and flat regions. A gate can keep the edges from $a$ and the flat regions from $b$. Which
fusion helps *inside a trained RED-Net* is an experiment of its own: the `fusion=` option of
`dl.models.red_net` ("add", "concat", "gate") in [chapter 3](03_conv_deconv_fuse.ipynb).
"""),
    # ------------------------------------------------------------------ end matter
    md(r"""
## Summary

- A convolution layer is multiplication by a sparse banded matrix $C$, and `Conv2D` matches the matrix built by hand.
- `Conv2DTranspose` with the same kernel array multiplies by $C^\top$. The adjoint identity holds, the flip makes it a
  "full" convolution, and it is exactly the gradient of the convolution with respect to its input.
- The article's "deconvolution is the inverse of convolution, a low → high mapping" holds for shapes only.
  $C^\top C \neq I$; for a blur $C^\top y$ blurs again; the exact inverse amplifies noise. A regularised inverse (Wiener)
  is what restores, and a network must learn one.
- Output sizes follow two small formulas. Padding to a multiple of the stride and cropping back makes any size work.
- A 3×3 / stride-2 transposed convolution has a checkerboard built into its overlap. A 4×4 kernel evens out the
  overlap, but its four output phases still use different sub-kernels, so only training makes it flat. Resize + conv
  is flat by construction.
- Add, concat + 1×1 and a gate are increasingly flexible ways to fuse: a fixed sum, a global linear mix, a per-pixel
  mix.

## What's next

[Chapter 3](03_conv_deconv_fuse.ipynb) builds the article's conv → deconv → fuse network properly (RED-Net), trains
it against a plain CNN, and tests the claims about overfitting and vanishing gradients.
"""),
    md(r"""
## Exercises

**Exercise 1 (stride in the matrix).** Extend `conv_matrix` to a stride $s$ (`'valid'` padding). Output pixel
$(i, j)$ then reads input pixel $(is + a, js + b)$. Check it against `Conv2D(strides=2)` on a 7×7 image, and check its
transpose against `Conv2DTranspose(strides=2, padding="valid")`.
"""),
    code(r"""
def conv_matrix_strided(kernel, n, s):
    k = kernel.shape[0]
    m = (n - k) // s + 1
    C = np.zeros((m * m, n * n), dtype=kernel.dtype)
    for i, j, a, b in np.ndindex(m, m, k, k):
        C[i * m + j, (i * s + a) * n + (j * s + b)] = kernel[a, b]
    return C


C2 = conv_matrix_strided(kernel, 7, 2)
x_7, y_3 = rng.random((7, 7), dtype="float32"), rng.random((3, 3), dtype="float32")
conv_s = keras.layers.Conv2D(1, 3, strides=2, use_bias=False)
deconv_s = keras.layers.Conv2DTranspose(1, 3, strides=2, use_bias=False)
conv_s.build((None, 7, 7, 1))
deconv_s.build((None, 3, 3, 1))
for layer in (conv_s, deconv_s):
    layer.set_weights([kernel[:, :, None, None]])
print("C is", C2.shape, "| max |C x - Conv2D(x)| =", np.abs(C2 @ x_7.ravel() - apply(conv_s, x_7).ravel()).max())
print("max |C^T y - Conv2DTranspose(y)| =", np.abs(C2.T @ y_3.ravel() - apply(deconv_s, y_3).ravel()).max())
""", SOLUTION),
    md(r"""
**Exercise 2 (when is the transpose an inverse?).** Take a 2×2 kernel with all weights ½ and stride 2 (each output
pixel is the scaled sum of a disjoint 2×2 block). Build its matrix with `layer_matrix` and show that $C C^\top = I$:
upsampling with the transposed convolution and then downsampling returns $y$ exactly. Is $C^\top C$ the identity too?
What is it?
"""),
    code(r"""
pool = keras.layers.Conv2D(1, 2, strides=2, use_bias=False, kernel_initializer=keras.initializers.Constant(0.5))
Cp = layer_matrix(pool, 8)
P = Cp.T @ Cp
print("||C C^T - I|| =", np.linalg.norm(Cp @ Cp.T - np.eye(Cp.shape[0])))
print("||C^T C - I|| =", np.linalg.norm(P - np.eye(P.shape[0])), "| C^T C is a projection (P P = P):", np.allclose(P @ P, P))
""", SOLUTION),
    md(r"""
**Exercise 3 (choosing λ).** For the 32×32 deblurring problem of section 3, compute the Wiener PSNR for λ on a log
grid from $10^{-6}$ to $10^{-1}$ and plot it. Where does the rule $\lambda = \sigma^2/(\operatorname{var}(y)-\sigma^2)$
fall? What happens to the best λ without noise?
"""),
    code(r"""
lams, CtC = np.logspace(-6, -1, 6), C_blur.T @ C_blur
fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
for label, obs in ((f"noise sigma {dl.degrade.DEBLUR_NOISE_SIGMA:g}", y), ("no noise", C_blur @ x)):
    curve = [dl.metrics.psnr(x_img, np.linalg.solve(CtC + lm * np.eye(x.size), C_blur.T @ obs).reshape(crop, crop).astype("float32"))
             for lm in lams]
    ax.semilogx(lams, curve, marker="o", label=label)
ax.axvline(lam, color="tab:red", linestyle="--", label=f"rule: {lam:.1e}")
ax.set_xlabel("lambda")
ax.set_ylabel("PSNR (dB)")
ax.legend()
plt.show()
""", SOLUTION),
    md(r"""
**Exercise 4 (which strides and kernels are checkerboard-free?).** For kernel sizes 1–6 and strides 2 and 3, compute
the overlap count of a `Conv2DTranspose` with all-ones weights on a constant input. Check the rule "the interior is
uniform exactly when the stride divides the kernel size".
"""),
    code(r"""
for s in (2, 3):
    for ksz in range(1, 7):
        layer = keras.layers.Conv2DTranspose(1, ksz, strides=s, padding="same", use_bias=False, kernel_initializer="ones")
        out = keras.ops.convert_to_numpy(layer(np.ones((1, 12, 12, 1), "float32")))[0, 8:-8, 8:-8, 0]
        print(f"k={ksz} s={s}: interior counts {sorted({int(v) for v in out.ravel()})}, uniform={out.min() == out.max()}, "
              f"s divides k={ksz % s == 0}")
""", SOLUTION),
    md(r"""
**Exercise 5 (sizes a strided encoder–decoder returns unchanged).** An encoder has three stride-2 `Conv2D` layers
(3×3, `'same'`). The decoder has three stride-2 `Conv2DTranspose` layers (4×4, `'same'`). Use `conv_output` and
`transposed_output` to find every input side from 1 to 40 that comes back at the same size. Which multiple should
`PadToMultiple` use for this network?
"""),
    code(r"""
def round_trip(side):
    for _ in range(3):
        side = conv_output(side, 3, 2, "same")
    for _ in range(3):
        side = transposed_output(side, 4, 2, "same")
    return side


print([side for side in range(1, 41) if round_trip(side) == side], "-> PadToMultiple(8)")
""", SOLUTION),
    md(r"""
## References

- Convolution arithmetic and the transposed convolution: {cite:t}`dumoulin2016guide`. Origin of the name
  "deconvolutional network": {cite:t}`zeiler2010deconvolutional`.
- Checkerboard artifacts and resize-convolution: {cite:t}`odena2016deconvolution`.
- The Wiener filter: {cite:t}`wiener1949`.
- RED-Net (add skips, transposed-conv decoder): {cite:t}`mao2016rednet`. U-Net (concatenation skips):
  {cite:t}`ronneberger2015unet`. Highway networks (gates): {cite:t}`srivastava2015highway`.
- Transposed-convolution and sub-pixel upsamplers in super-resolution: {cite:t}`dong2016fsrcnn`, {cite:t}`shi2016espcn`.

Full entries are in the book's {doc}`../book/bibliography`.
"""),
]

if __name__ == "__main__":
    out = write(ROOT / "notebooks" / "02_core_concepts.ipynb", cells, title=TITLE)
    print(f"wrote {out.relative_to(ROOT)} ({len(cells)} cells)")
