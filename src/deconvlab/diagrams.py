"""Pictures of the ideas, drawn from code: the three steps, the encoder-decoder, a transposed convolution's scatter.

Each function returns a Matplotlib figure sized for the book's column. The scatter diagram is computed, not drawn
by hand: its overlap counts are those of :func:`overlap_counts`, the same arithmetic a ``Conv2DTranspose`` performs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from .checks import integer

__all__ = ["encoder_decoder", "overlap_counts", "three_steps", "transposed_scatter"]

_BOX = {"conv": "#cfe2f3", "deconv": "#f9dcc4", "fuse": "#d9ead3", "data": "#eeeeee"}


def _box(ax, x, y, w, h, text, kind, fontsize=10):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.05",
                                facecolor=_BOX[kind], edgecolor="#333333", linewidth=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, color="#333333", connection="arc3", linestyle="-"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, linewidth=1.2,
                                 connectionstyle=connection, linestyle=linestyle, shrinkA=2, shrinkB=2))


def three_steps() -> plt.Figure:
    """The article's method as a picture: convolve, deconvolve, fuse with the input. Taught in chapter 3."""
    fig, ax = plt.subplots(figsize=(7.2, 2.4), layout="constrained")
    steps = [(0.6, "input\n$x$", "data"), (2.2, "convolve\n$y = \\mathrm{Conv}(x, k)$", "conv"),
             (4.0, "deconvolve\n$x' = C^\\top y$", "deconv"), (5.7, "fuse\n$x'' = x + x'$", "fuse"),
             (7.0, "output\n$x''$", "data")]
    widths = {"data": 0.9, "conv": 1.6, "deconv": 1.5, "fuse": 1.3}
    for x, text, kind in steps:
        _box(ax, x, 1.0, widths[kind], 0.8, text, kind)
    for (x0, _, k0), (x1, _, k1) in zip(steps, steps[1:], strict=False):
        _arrow(ax, (x0 + widths[k0] / 2, 1.0), (x1 - widths[k1] / 2, 1.0))
    # The fusion's second input: the image itself, carried around the two learned steps.
    _arrow(ax, (0.6, 1.4), (5.7, 1.4), connection="arc3,rad=-0.25", color="#38761d")
    ax.text(3.15, 2.25, "skip: the input goes straight to the fusion", ha="center", fontsize=9, color="#38761d")
    ax.set(xlim=(0, 7.6), ylim=(0.3, 2.5))
    ax.set_axis_off()
    return fig


def encoder_decoder(levels: int = 3, strided: bool = True) -> plt.Figure:
    """RED-Net / an encoder-decoder: convolutions down, transposed convolutions up, symmetric skips, a global skip.

    With ``strided=True`` each encoder level halves the resolution (drawn as a shorter block) and each decoder level's
    transposed convolution doubles it back; with ``strided=False`` every layer keeps the input's size (RED-Net as
    shipped by this book). Taught in chapter 3.
    """
    levels = integer("levels", levels, minimum=1)
    fig, ax = plt.subplots(figsize=(7.2, 3.6), layout="constrained")
    xs_enc = [1.5 + 1.0 * i for i in range(levels)]
    xs_dec = [1.5 + 1.0 * (2 * levels - 1 - i) for i in range(levels)]
    top = 2.6
    _box(ax, 0.4, top - 1.0, 0.7, 0.6, "input", "data", fontsize=8)
    _arrow(ax, (0.75, top - 1.0), (xs_enc[0] - 0.35, top - 1.0))
    for i in range(levels):
        h = max(2.0 / 2**i if strided else 2.0, 0.35)
        down, up = (" /2", " x2") if strided and i else ("", "")
        _box(ax, xs_enc[i], top - h / 2, 0.7, h, f"conv{down}", "conv", fontsize=8)
        _box(ax, xs_dec[i], top - h / 2, 0.7, h, f"deconv{up}", "deconv", fontsize=8)
        if i:
            _arrow(ax, (xs_enc[i - 1] + 0.35, top - 0.2), (xs_enc[i] - 0.35, top - 0.2))
            _arrow(ax, (xs_dec[i] + 0.35, top - 0.2), (xs_dec[i - 1] - 0.35, top - 0.2))
        # Symmetric skip: encoder features added to the decoder at the same resolution.
        _arrow(ax, (xs_enc[i], top + 0.05), (xs_dec[i], top + 0.05), color="#38761d",
               connection=f"arc3,rad=-{0.12 + 0.06 * (levels - i)}")
    _arrow(ax, (xs_enc[-1] + 0.35, top - 0.2), (xs_dec[-1] - 0.35, top - 0.2))
    x_out = xs_dec[0] + 1.0
    _box(ax, x_out, top - 1.0, 0.6, 0.6, "+", "fuse", fontsize=12)
    _arrow(ax, (xs_dec[0] + 0.35, top - 1.0), (x_out - 0.3, top - 1.0))
    # Global residual: under every block, from the input straight to the final sum.
    _arrow(ax, (0.4, top - 1.3), (x_out, top - 1.3), connection="arc3,rad=0.5", color="#38761d", linestyle="--")
    ax.text(x_out + 0.35, top - 1.0, "output", ha="left", va="center", fontsize=8)
    ax.text((0.4 + x_out) / 2, -1.75, "dashed: global residual (the network learns the correction)",
            ha="center", fontsize=8, color="#38761d")
    ax.set(xlim=(0, x_out + 1.0), ylim=(-1.95, top + 1.8))
    ax.set_axis_off()
    return fig


def overlap_counts(input_size: int = 2, kernel_size: int = 3, stride: int = 2) -> np.ndarray:
    """How many kernel copies land on each output pixel of a 'valid' transposed convolution (all-ones weights)."""
    n = integer("input_size", input_size, minimum=1)
    k = integer("kernel_size", kernel_size, minimum=1)
    s = integer("stride", stride, minimum=1)
    counts = np.zeros(((n - 1) * s + k,) * 2, dtype=int)
    for i, j in np.ndindex(n, n):
        counts[i * s:i * s + k, j * s:j * s + k] += 1
    return counts


def transposed_scatter(kernel_size: int = 3, stride: int = 2) -> plt.Figure:
    """A 2x2 input scattered by a strided transposed convolution: each input pixel paints one kernel copy.

    Left: the input; middle: the four kernel copies, offset by the stride; right: the overlap count of every output
    pixel. Unequal counts are the checkerboard built into the layer. Taught in chapter 2.
    """
    counts = overlap_counts(2, kernel_size, stride)
    size, colours = counts.shape[0], ("#cc0000", "#3d85c6", "#6aa84f", "#e69138")
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.7), layout="constrained",
                             gridspec_kw={"width_ratios": [2, size, size]})
    for (i, j), colour in zip(np.ndindex(2, 2), colours, strict=True):
        axes[0].add_patch(Rectangle((j, 1 - i), 1, 1, facecolor=colour, alpha=0.6, edgecolor="black"))
        axes[1].add_patch(Rectangle((j * stride, size - kernel_size - i * stride), kernel_size, kernel_size,
                                    facecolor=colour, alpha=0.25, edgecolor=colour, linewidth=2))
    axes[0].set(xlim=(0, 2), ylim=(0, 2), title="input 2×2")
    axes[1].set(xlim=(0, size), ylim=(0, size), title=f"{kernel_size}×{kernel_size} copies, stride {stride}")
    axes[2].imshow(counts, cmap="Greys", vmin=0, vmax=counts.max() + 1)
    for (i, j), c in np.ndenumerate(counts):
        axes[2].text(j, i, str(c), ha="center", va="center", fontsize=9)
    axes[2].set_title(f"output {size}×{size}: taps per pixel")
    for ax in axes:
        ax.set(xticks=[], yticks=[], aspect="equal")
    return fig
