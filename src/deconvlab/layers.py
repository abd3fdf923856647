"""Custom Keras layers the book's models need, written with ``keras.ops`` only.

They run unchanged on TensorFlow, JAX and PyTorch, work with unknown (``None``) spatial sizes, and are
registered with ``package="deconvlab"`` so ``keras.saving.load_model(path, safe_mode=True)`` rebuilds them.

* :class:`PadToMultiple` and :class:`CropToReference` let a strided encoder/decoder take any image size:
  pad the input up to a multiple of the total stride, crop the output back (chapter 2, shapes).
* :class:`DepthToSpace` is the sub-pixel (pixel-shuffle) upsampler (chapter 5, upsampling variants).
* :class:`BilinearUpsample` is an integer-factor bilinear resize that also works on unknown sizes (Keras'
  ``UpSampling2D(interpolation="bilinear")`` needs static sizes on TensorFlow) (chapter 4, super-resolution).
  :class:`BicubicUpsample` is the same for MATLAB's bicubic (the SR protocol's baseline, a global skip).
* :class:`Blend` is the output of a learned gate, ``g * a + (1 - g) * b`` (chapter 2, fusion).
* :class:`BilinearKernel` and :class:`ICNR` initialise learned upsamplers so that every output phase starts
  alike: no checkerboard at initialisation (chapter 5, upsampling variants).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from .checks import integer
from .errors import ArgumentError


def _padded_indices(n, n_out):
    """Source row indices 0..n_out-1 for an axis of length n, extended past n by mirroring (numpy "reflect").

    Gathering rows by index (instead of ``ops.pad``) works for any pad width, even wider than the axis
    itself: the mirror repeats periodically, so a 1-pixel axis degrades gracefully to edge.
    """
    i = ops.arange(n_out, dtype="int32")
    n = ops.cast(n, "int32")
    # period 2n-2 mirrors about the last sample without repeating it; n == 1 has no mirror, so period 1
    period = ops.maximum(2 * n - 2, 1)
    i = ops.mod(i, period)
    return ops.where(ops.greater_equal(i, n), period - i, i)


def _round_up(n, multiple: int):
    return ((n + multiple - 1) // multiple) * multiple


@keras.saving.register_keras_serializable(package="deconvlab")
class PadToMultiple(keras.layers.Layer):
    """Pad height and width (bottom and right) up to a multiple of `multiple`. Taught in chapter 2.

    The image is mirrored like ``numpy.pad(mode="reflect")``, periodically when the pad is wider than the
    image (a 1x1 input is repeated). Only the bottom and right sides are padded, so :class:`CropToReference`
    crops the top-left corner back out. (``mode`` stays in the config, so that saved ``.keras`` files load.)
    """

    def __init__(self, multiple: int, mode: str = "reflect", **kwargs):
        super().__init__(**kwargs)
        if mode != "reflect":  # symmetric, edge and constant were dropped: no model of the book used them
            raise ArgumentError(f"PadToMultiple pads by mirroring (mode='reflect'), not mode={mode!r}")
        self.multiple = integer("multiple", multiple, 1)  # int() took 2.5 as 2, a pad the stride may not divide
        self.mode = mode

    def call(self, x):
        if self.multiple == 1:
            return x
        shape = ops.shape(x)
        for axis in (1, 2):
            n = shape[axis]
            x = ops.take(x, _padded_indices(n, _round_up(n, self.multiple)), axis=axis)
        return x

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "mode": self.mode}


@keras.saving.register_keras_serializable(package="deconvlab")
class CropToReference(keras.layers.Layer):
    """Crop ``x`` to ``scale`` times the height and width of ``reference`` (top-left). Taught in chapter 2.

    Called as ``CropToReference(scale)([x, reference])``; undoes :class:`PadToMultiple`, and for
    post-upsampling super-resolution (``scale > 1``) crops the output to ``scale`` x the LR input.
    """

    def __init__(self, scale: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.scale = integer("scale", scale, 1)

    def call(self, inputs):
        x, reference = inputs
        _, h, w, _ = ops.shape(reference)
        return x[:, : h * self.scale, : w * self.scale, :]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="deconvlab")
class DepthToSpace(keras.layers.Layer):
    """Sub-pixel shuffle: (N, H, W, r*r*C) -> (N, r*H, r*W, C), same order as TF's depth_to_space. Taught in chapter 5."""

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = integer("block_size", block_size, 1)

    def call(self, x):
        # not keras.ops.depth_to_space: that op needs Keras >= 3.14 (Colab may hold an older one) and refuses r = 1
        r = self.block_size
        b, h, w, c = ops.shape(x)
        c_out = c // (r * r)
        # channel index (i*r + j)*C + c goes to output pixel (h*r + i, w*r + j), channel c
        x = ops.reshape(x, (b, h, w, r, r, c_out))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (b, h * r, w * r, c_out))

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % (self.block_size**2):
            raise ArgumentError(
                f"DepthToSpace({self.block_size}) needs channels divisible by {self.block_size**2}, got {channels}"
            )

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="deconvlab")
class Blend(keras.layers.Layer):
    """Gated fusion output ``g * a + (1 - g) * b`` for inputs ``[g, a, b]``. Taught in chapter 2."""

    def call(self, inputs):
        g, a, b = inputs
        return g * a + (1.0 - g) * b


def _bilinear_axis(x, factor: int, axis: int):
    """Upsample one axis by an integer factor with half-pixel centres and clamped edges (as tf.image.resize)."""
    n = ops.shape(x)[axis]
    src = (ops.arange(n * factor, dtype="float32") + 0.5) / factor - 0.5
    lo = ops.floor(src)
    frac = src - lo
    n_last = ops.cast(n, "float32") - 1.0
    i0 = ops.cast(ops.clip(lo, 0.0, n_last), "int32")
    i1 = ops.cast(ops.clip(lo + 1.0, 0.0, n_last), "int32")
    frac = ops.reshape(ops.cast(frac, x.dtype), (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))
    a = ops.take(x, i0, axis=axis)
    b = ops.take(x, i1, axis=axis)
    return a + frac * (b - a)


class _IntegerUpsample(keras.layers.Layer):
    """Separable upsampling by an integer ``factor``: a subclass sets ``axis_upsample(x, factor, axis)``."""

    axis_upsample: Callable[..., Any]

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = integer("factor", factor, 1)

    def call(self, x):
        if self.factor == 1:
            return x
        return self.axis_upsample(self.axis_upsample(x, self.factor, 1), self.factor, 2)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="deconvlab")
class BilinearUpsample(_IntegerUpsample):
    """Bilinear upsampling by an integer factor that works on unknown image sizes. Taught in chapter 2.

    Equals ``keras.ops.image.resize(x, (f*H, f*W), "bilinear")`` (half-pixel centres, no antialias, which
    only matters when shrinking) but is built from gathers, so TensorFlow accepts ``None`` spatial sizes.
    """

    axis_upsample = staticmethod(_bilinear_axis)


def _cubic(x):
    """Keys' cubic kernel with a = -0.5 (MATLAB's bicubic), as :func:`deconvlab.degrade.bicubic_resize` uses."""
    ax = ops.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * ops.cast(ax <= 1.0, x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ops.cast((ax > 1.0) & (ax <= 2.0), x.dtype)
    return near + far


def _bicubic_axis(x, factor: int, axis: int):
    """Upsample one axis by an integer factor as MATLAB ``imresize(..., 'bicubic')`` does (no antialias when
    enlarging): four taps around the half-pixel-centred source, borders mirrored with the edge repeated."""
    n = ops.shape(x)[axis]
    src = (ops.arange(n * factor, dtype="float32") + 0.5) / factor - 0.5
    lo = ops.floor(src)
    frac = src - lo
    lo = ops.cast(lo, "int32")
    period = 2 * n
    out = None
    for k in range(4):
        idx = ops.mod(lo - 1 + k, period)  # floor mod: non-negative on every backend
        # MATLAB's mirror: [0 .. n-1, n-1 .. 0] repeated, so even a 1-pixel axis has four valid taps
        idx = ops.where(idx < n, idx, period - 1 - idx)
        weight = ops.reshape(ops.cast(_cubic(frac + 1.0 - k), x.dtype), (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))
        term = weight * ops.take(x, idx, axis=axis)
        out = term if out is None else out + term
    return out


@keras.saving.register_keras_serializable(package="deconvlab")
class BicubicUpsample(_IntegerUpsample):
    """MATLAB-bicubic upsampling by an integer factor on unknown image sizes (the SR protocol's baseline).

    Equals :func:`deconvlab.degrade.upscale` (float64 there, float32 here: within 2e-6, tests/test_models.py), so a post-upsampling
    model's global skip starts from exactly the bicubic image its PSNR is compared with.
    """

    axis_upsample = staticmethod(_bicubic_axis)


# ------------------------------------------------------------------------------------- upsampler initialisers
# A stride-s transposed convolution computes s*s interleaved "phases", each with its own taps of the kernel; with
# independent random taps a flat input already comes out as an s x s checkerboard. Both initialisers below give
# every phase the same response to a flat input, so the untrained upsampler starts checkerboard-free.


def bilinear_filter(stride: int):
    """The 1-D bilinear taps of a ``2 * stride`` kernel (FCN, Long et al. 2015): every phase sums to one."""
    stride = integer("stride", stride, 1)
    k = 2 * stride
    centre = (k - 1) / 2
    return [1.0 - abs(i - centre) / stride for i in range(k)]


@keras.saving.register_keras_serializable(package="deconvlab")
class BilinearKernel(keras.initializers.Initializer):
    """Conv2DTranspose kernel ``(2s, 2s, out, in)`` = bilinear filter x a He-normal ``out x in`` channel mixing.

    At initialisation the layer is bilinear upsampling followed by a 1x1 convolution: a flat input gives a flat
    output away from the borders. ``gain`` multiplies the whole kernel (a small gain starts a residual output
    near zero).
    """

    def __init__(self, stride: int, seed: int | None = None, gain: float = 1.0):
        self.stride = integer("stride", stride, 1)
        self.seed = seed
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        kh, kw, c_out, c_in = shape
        if kh != 2 * self.stride or kw != 2 * self.stride:
            raise ArgumentError(f"BilinearKernel({self.stride}) needs a {2 * self.stride}x{2 * self.stride} kernel, "
                                f"got {kh}x{kw}: use kernel_size = 2 * stride")
        taps = ops.convert_to_tensor(bilinear_filter(self.stride), dtype="float32")
        spatial = ops.reshape(taps, (-1, 1, 1, 1)) * ops.reshape(taps, (1, -1, 1, 1))
        mix = keras.random.normal((1, 1, c_out, c_in), stddev=(2.0 / c_in) ** 0.5, seed=self.seed)
        return ops.cast(spatial * mix * self.gain, dtype or "float32")

    def get_config(self):
        return {"stride": self.stride, "seed": self.seed, "gain": self.gain}


@keras.saving.register_keras_serializable(package="deconvlab")
class ICNR(keras.initializers.Initializer):
    """ICNR (Aitken et al. 2017): every upsampling phase starts with the same He-normal sub-kernel.

    ``transposed=True``: a Conv2DTranspose kernel ``(k, k, out, in)`` with ``k`` a multiple of ``stride``; tap
    ``a * stride + p`` of each axis gets sub-tap ``a`` for every phase ``p``. ``transposed=False``: the convolution
    before a :class:`DepthToSpace` shuffle, ``(k, k, in, out * stride**2)``, whose channel ``phase * out + c``
    gets channel ``c`` of one ``(k, k, in, out)`` kernel. Either way the layer starts as nearest-neighbour
    upsampling combined with a random convolution. ``gain`` multiplies the whole kernel.
    """

    def __init__(self, stride: int, transposed: bool = True, seed: int | None = None, gain: float = 1.0):
        self.stride = integer("stride", stride, 1)
        self.transposed = bool(transposed)
        self.seed = seed
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        s = self.stride
        kh, kw, a, b = shape
        if self.transposed:
            if kh % s or kw % s:
                raise ArgumentError(f"ICNR({s}) needs a kernel that is a multiple of the stride, got {kh}x{kw}")
            sub_shape = (kh // s, kw // s, a, b)
            fan_in = sub_shape[0] * sub_shape[1] * b  # transposed kernels are (k, k, out, in)
            sub = keras.random.normal(sub_shape, stddev=(2.0 / fan_in) ** 0.5, seed=self.seed)
            kernel = ops.repeat(ops.repeat(sub, s, axis=0), s, axis=1)
        else:
            if b % (s * s):
                raise ArgumentError(f"ICNR({s}) needs output channels divisible by {s * s}, got {b}")
            sub = keras.random.normal((kh, kw, a, b // (s * s)), stddev=(2.0 / (kh * kw * a)) ** 0.5,
                                      seed=self.seed)
            kernel = ops.tile(sub, (1, 1, 1, s * s))
        return ops.cast(kernel * self.gain, dtype or "float32")

    def get_config(self):
        return {"stride": self.stride, "transposed": self.transposed, "seed": self.seed, "gain": self.gain}
