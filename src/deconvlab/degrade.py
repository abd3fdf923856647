"""Degradations: noise, blur, bicubic downscaling, JPEG and low light, on images and on training batches.

Every function takes float images in [0, 1], (H, W) gray or (H, W, C) colour, and most also NHWC batches; they
return float32 and never round to 8 bits (except the JPEG round trip). Noise levels ``sigma`` are on the
255 scale, as in DnCNN: ``sigma=25`` adds noise of standard deviation 25/255. Added noise is *not* clipped, so
a model sees the same statistics as the noise model in the papers.

:func:`bicubic_resize` reproduces MATLAB ``imresize(..., 'bicubic')``: the cubic kernel with a = -0.5, widened by
``1/scale`` when shrinking (antialiasing), mirrored borders, and ``ceil(size * scale)`` outputs. Downscaled test
images must come from this function: SR papers report numbers on MATLAB's bicubic, and a different resampler
(PIL, OpenCV, ``skimage.transform.resize``) shifts every PSNR by tenths of a dB.

The batch degradations at the end (:func:`noise_degradation`, :func:`blur_degradation`, :func:`sr_degradation`)
build the ``degrade(clean_batch, rng)`` callables that :class:`deconvlab.data.PatchDataset` applies to every
batch. Taught in chapter 1 (``notebooks/01_background``); the batch degradations in chapter 3.
"""

from __future__ import annotations

import io as _io
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from .checks import integer, number
from .errors import ArgumentError, ImageValueError
from .io import as_numpy, unit_float
from .metrics import modcrop
from .tasks import Degradation

__all__ = [
    "DEBLUR_NOISE_SIGMA", "DEBLUR_PSF_SIGMA", "DEBLUR_PSF_SIZE", "add_gaussian_noise",
    "bicubic_resize", "blur", "blur_degradation", "downscale", "gaussian_psf", "jpeg", "low_light", "motion_psf",
    "noise_degradation", "sr_degradation", "upscale",
]

#: The deblurring protocol of the book: a 25x25 Gaussian PSF of sigma 1.6 plus AWGN of sigma 2 (255 scale).
DEBLUR_PSF_SIGMA = 1.6
DEBLUR_PSF_SIZE = 25
DEBLUR_NOISE_SIGMA = 2.0

Seed = int | np.random.Generator | None
_Sampler = Callable[[np.random.Generator, int], np.ndarray]  # (rng, n) -> n noise levels


# ---------------------------------------------------------------------------------------------- checks


def _as_image(image: object, name: str = "image", batch: bool = True) -> np.ndarray:
    """A finite, non-empty float32 array (H, W), (H, W, C) or, when ``batch``, (N, H, W, C)."""
    # always a copy: e.g. noise_degradation(0) returns it as its output
    arr = unit_float(as_numpy(image, name), name=name).astype(np.float32)
    ranks = (2, 3, 4) if batch else (2, 3)
    if arr.ndim not in ranks:
        shapes = "(H, W), (H, W, C) or an NHWC batch" if batch else "(H, W) or (H, W, C)"
        raise ImageValueError(f"{name} has shape {arr.shape}: pass {shapes}")
    if arr.size == 0:
        raise ImageValueError(f"{name} is empty (shape {arr.shape}): check the crop or slice that produced it")
    if not np.isfinite(arr).all():
        raise ImageValueError(f"{name} has NaN/inf values: fix the step that produced them or use np.nan_to_num")
    return arr


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        return np.random.default_rng(seed)
    raise ArgumentError(f"seed={seed!r}: pass a non-negative integer, a numpy Generator or None")


# ---------------------------------------------------------------------------------------------- noise


def add_gaussian_noise(image: np.ndarray, sigma: float, seed: Seed = None) -> np.ndarray:
    """The image plus white Gaussian noise of std ``sigma / 255`` (AWGN), float32, not clipped. Taught in chapter 1.

    ``seed`` (an int or a ``np.random.Generator``) makes the noise repeatable; ``sigma=0`` returns a copy.
    """
    img = _as_image(image)
    sigma = number("sigma", sigma)
    rng = _rng(seed)
    if sigma == 0:
        return img.copy()
    return img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)


# ---------------------------------------------------------------------------------------------- blur


def gaussian_psf(sigma: float, size: int) -> np.ndarray:
    """A (size, size) Gaussian point-spread function that sums to 1 (MATLAB ``fspecial('gaussian')``). Taught in chapter 1."""
    sigma = number("sigma", sigma, 0.0, strict=True)
    size = integer("size", size, 1)
    if size % 2 == 0:
        raise ArgumentError(f"size={size} is even: use an odd size so the PSF has a centre pixel, e.g. {size + 1}")
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    psf = np.outer(g, g)
    return psf / psf.sum()


def motion_psf(length: float, angle_deg: float, size: int | None = None) -> np.ndarray:
    """A linear-motion PSF: a centred line ``length`` pixels long at ``angle_deg`` (counter-clockwise), sum 1. Taught in chapter 1.

    The line is sampled every 1/16 pixel and each sample is shared bilinearly between its four neighbouring
    pixels, so the PSF is antialiased and exactly point-symmetric. Angle 0 moves along the rows (horizontal
    blur), 90 along the columns; ``size`` must be odd, and the default is the smallest odd square that holds the line.
    """
    length = number("length", length)
    angle_deg = number("angle_deg", angle_deg, -math.inf)
    theta = math.radians(angle_deg)
    dx, dy = math.cos(theta), -math.sin(theta)  # image rows grow downwards: counter-clockwise means up-right
    needed = 2 * math.ceil(length / 2 * max(abs(dx), abs(dy))) + 1
    size = integer("size", needed if size is None else size, 1)
    if size > 4095:  # real motion blur spans tens of pixels; a side of 10**6 would allocate terabytes first
        raise ArgumentError(f"a motion PSF of side {size} (length={length:g}): use a side of at most 4095 pixels")
    if size % 2 == 0:  # blur() centres an even kernel at size // 2, half a pixel off this line's centre
        raise ArgumentError(f"size={size} is even: use an odd size so the PSF has a centre pixel, e.g. {size + 1}")
    if size < needed:
        raise ArgumentError(f"size={size} cannot hold a line of length {length:g}: use size >= {needed} or None")
    c = (size - 1) / 2.0
    psf = np.zeros((size, size), dtype=np.float64)
    count = max(1, math.ceil(length * 16))  # length 0: the one sample t = 0, the centre pixel
    t = (np.arange(count) + 0.5) / count - 0.5
    ys, xs = c + t * length * dy, c + t * length * dx
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for oy, ox, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(psf, (np.clip(y0 + oy, 0, size - 1), np.clip(x0 + ox, 0, size - 1)), w)
    # Samples come in mirrored pairs about the centre; averaging with the flip removes float round-off asymmetry.
    psf = 0.5 * (psf + psf[::-1, ::-1])
    return psf / psf.sum()


def _check_psf(psf: object) -> np.ndarray:
    try:
        k = np.asarray(psf, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError("psf must be a 2-D array of numbers, e.g. gaussian_psf(1.6, 25)") from None
    if k.ndim != 2 or k.size == 0 or not np.isfinite(k).all():
        raise ArgumentError(f"psf has shape {k.shape}: pass a finite 2-D array, e.g. gaussian_psf(1.6, 25)")
    total = k.sum()
    if total < 1e-12:  # a negative sum inverts the image, as a zero one blacks it out
        shown = f"{total:g}" if total <= -1e-12 else "0"
        raise ArgumentError(f"psf sums to {shown}: pass a blur kernel with a positive sum, e.g. gaussian_psf(1.6, 25)")
    return k


def blur(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Convolve every channel with ``psf`` (MATLAB ``imfilter(..., 'conv', 'symmetric')``: mirrored borders);
    float32. Works on (H, W), (H, W, C) and NHWC batches. Taught in chapter 1.
    """
    img = _as_image(image)
    k = _check_psf(psf)
    ndmode = "reflect"  # scipy's name for MATLAB's 'symmetric'
    row_axis = 1 if img.ndim == 4 else 0
    out = img.astype(np.float64)
    if (separable := _separable_factors(k)) is not None:
        # A rank-1 PSF (Gaussian, box) as two 1-D passes: 2n instead of n^2 products per pixel, same result.
        column, row = separable
        out = ndimage.convolve1d(out, column, axis=row_axis, mode=ndmode)
        return ndimage.convolve1d(out, row, axis=row_axis + 1, mode=ndmode).astype(np.float32)
    # Size-1 kernel axes on the batch and channel dimensions: one N-D call blurs each plane on its own.
    weights = k.reshape((1,) * (img.ndim == 4) + k.shape + (1,) * (img.ndim >= 3))
    return ndimage.convolve(out, weights, mode=ndmode).astype(np.float32)


def _separable_factors(psf: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) with ``psf == outer(column, row)`` to float64 precision, or None if the PSF is not rank 1."""
    u, s, vt = np.linalg.svd(psf)
    if s[0] == 0 or (len(s) > 1 and s[1] > 1e-12 * s[0]):
        return None
    return u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])


# ---------------------------------------------------------------------------------------------- bicubic


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, the kernel of MATLAB's bicubic."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) matrix of one 1-D MATLAB imresize pass (``contributions`` in imresize.m)."""
    # Shrinking: stretch the kernel by 1/scale so it low-passes below the new Nyquist frequency.
    stretch = scale if scale < 1 else 1.0
    width = 4.0 / stretch
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = stretch * _cubic(stretch * (u[:, None] - idx))
    w /= w.sum(axis=1, keepdims=True)
    # MATLAB mirrors out-of-range indices (symmetric, edge pixel repeated), periodically for tiny inputs.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), cols.ravel()), w.ravel())
    return mat


def bicubic_resize(image: np.ndarray, scale: float, output_shape: Sequence[int] | None = None) -> np.ndarray:
    """Bicubic resize as MATLAB ``imresize(img, scale, 'bicubic')``; float in, float32 out. Taught in chapter 5.

    The output is ``ceil(size * scale)`` unless ``output_shape`` (H, W) pins it to a size within one pixel of
    ``size * scale`` (e.g. ``floor``, against float round-off). Works on (H, W), (H, W, C) and NHWC batches.
    """
    img = _as_image(image)
    h_ax = 1 if img.ndim == 4 else 0
    in_shape = img.shape[h_ax : h_ax + 2]
    scale = number("scale", scale, 0.0, strict=True)
    try:
        out_shape = tuple(math.ceil(scale * n) for n in in_shape) if output_shape is None else tuple(output_shape)
    except TypeError:  # not a sequence: the message below says what to pass
        out_shape = ()
    if len(out_shape) != 2 or not all(isinstance(o, (int, np.integer)) and not isinstance(o, bool) and o >= 1
                                      and abs(o - scale * n) < 1 for o, n in zip(out_shape, in_shape, strict=False)):
        raise ArgumentError(f"output_shape={output_shape!r} for {in_shape} at scale {scale:g}: pass two integers "
                            "within one pixel of size * scale, or leave it out")
    out = img.astype(np.float64)
    for d in (0, 1):
        if out_shape[d] == in_shape[d] and scale == 1.0:
            continue  # an identity pass: MATLAB skips it too
        mat = _resize_matrix(in_shape[d], out_shape[d], scale)
        out = np.moveaxis(np.tensordot(mat, out, axes=([1], [h_ax + d])), 0, h_ax + d)
    return out.astype(np.float32)


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The low-resolution image of the SR protocol: bicubic (antialiased) of ``modcrop(hr, scale)`` by ``1/scale``. Taught in chapter 1.

    The protocol keeps floats (not rounded to 8 bits, as the VDSR test code): that reproduces the bicubic
    baselines of the data README.
    """
    scale = integer("scale", scale, 1)
    img = modcrop(_as_image(hr, "hr", batch=False), scale)
    h, w = img.shape[:2]
    return bicubic_resize(img, 1.0 / scale, output_shape=(h // scale, w // scale))


def upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling by an integer ``scale`` to exactly ``scale`` times the size (the bicubic baseline). Taught in chapter 1."""
    scale = integer("scale", scale, 1)
    # ceil(size * scale) is exactly size * scale for an integer scale: no output_shape needed.
    return bicubic_resize(_as_image(lr, "lr"), float(scale))


# ---------------------------------------------------------------------------------------------- JPEG, low light


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip at ``quality`` (1-100) with Pillow, as float32 in [0, 1]. Taught in chapter 1.

    Gray images are coded as one channel, RGB with Pillow's default 4:2:0 chroma subsampling; the input is
    clipped and rounded to 8 bits first, as any JPEG file is. NHWC batches are coded image by image.
    """
    img = _as_image(image)
    quality = integer("quality", quality, 1)
    if quality > 100:
        raise ArgumentError(f"quality={quality}: use 1 (worst) to 100 (best); 75 is Pillow's default")
    if img.ndim == 4:
        return np.stack([jpeg(one, quality) for one in img])
    channels = 1 if img.ndim == 2 else img.shape[-1]
    if channels not in (1, 3):
        raise ImageValueError(f"image has {channels} channels: JPEG codes gray (1) or RGB (3) images")
    pixels = np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(pixels.reshape(pixels.shape[:2]) if channels == 1 else pixels)  # Pillow infers L or RGB from the shape
    buffer = _io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded, dtype=np.float32) / 255.0
    return out.reshape(img.shape)


def low_light(
    image: np.ndarray, gamma: float = 2.2, peak: float = 30.0, read_sigma: float = 3.0, seed: Seed = None
) -> np.ndarray:
    """A low-light capture: darkened by ``x**gamma``, Poisson shot noise at ``peak`` photons, Gaussian read noise. Taught in chapter 1.

    A pixel of value 1 collects on average ``peak`` photons, so fewer photons mean more relative noise; the read
    noise has std ``read_sigma / 255``. The result is float32 and not clipped (read noise may go below 0).
    """
    img = _as_image(image)
    gamma = number("gamma", gamma, 0.0, strict=True)
    peak = number("peak", peak, 0.0, strict=True)
    read_sigma = number("read_sigma", read_sigma)
    rng = _rng(seed)
    dark = np.clip(img.astype(np.float64), 0.0, 1.0) ** gamma
    shot = rng.poisson(dark * peak) / peak
    out = shot + rng.standard_normal(img.shape) * (read_sigma / 255.0)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------- batches


def _check_batch(batch: object) -> np.ndarray:
    arr = as_numpy(batch, "batch")
    if arr.ndim != 4 or arr.size == 0:
        raise ImageValueError(f"batch has shape {arr.shape}: a degradation takes an NHWC batch (N, H, W, C)")
    # read as every image function here reads one: 8-bit pixels over 255, not noise of sigma/255 on 0-255 values
    return _as_image(arr, "batch")


def _sigma_sampler(sigma: float | Sequence[float], name: str) -> _Sampler:
    """A function (rng, n) -> n noise levels: the fixed ``sigma``, or uniform in ``[lo, hi]`` (blind training)."""
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ArgumentError(f"{name}={sigma!r}: pass one level or a range (lo, hi), e.g. (0, 55)")
        lo, hi = number(f"{name}[0]", sigma[0]), number(f"{name}[1]", sigma[1])
        if lo > hi:
            raise ArgumentError(f"{name}=({lo:g}, {hi:g}) is reversed: pass (lo, hi) with lo <= hi")
        return lambda rng, n: rng.uniform(lo, hi, n)
    level = number(name, sigma)
    return lambda rng, n: np.full(n, level)


def _noisy(draw: _Sampler, psf: np.ndarray | None = None) -> Degradation:
    """The batch degradation: blur with ``psf`` (if any), then AWGN of one level per image from ``draw``."""

    def degrade(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        arr = _check_batch(batch)
        if psf is not None:
            arr = blur(arr, psf)
        sigmas = draw(rng, arr.shape[0])
        if not np.any(sigmas):
            return arr
        noise = rng.standard_normal(arr.shape, dtype=np.float32)
        return arr + noise * (sigmas.astype(np.float32) / np.float32(255.0))[:, None, None, None]

    return degrade


def noise_degradation(sigma: float | tuple[float, float]) -> Degradation:
    """A batch degradation adding AWGN of ``sigma`` (or, blind, a level drawn uniformly per image from (lo, hi)). Taught in chapter 3."""
    return _noisy(_sigma_sampler(sigma, "sigma"))


def blur_degradation(
    psf: np.ndarray | None = None, noise_sigma: float | tuple[float, float] = DEBLUR_NOISE_SIGMA
) -> Degradation:
    """A batch degradation: blur with ``psf`` (default: the book's 25x25 Gaussian, sigma 1.6), then AWGN."""
    k = _check_psf(gaussian_psf(DEBLUR_PSF_SIGMA, DEBLUR_PSF_SIZE) if psf is None else psf)
    return _noisy(_sigma_sampler(noise_sigma, "noise_sigma"), k)


def sr_degradation(scale: int, pre_upsample: bool = True) -> Degradation:
    """A batch degradation for SR: bicubic downscale by ``scale`` and, for pre-upsampling models, bicubic back up. Taught in chapter 2.

    With ``pre_upsample`` the output has the patch size (patches that are not a multiple of ``scale`` are
    mirrored up to one and cropped back); without it the patch side must be a multiple of ``scale``.
    """
    scale = integer("scale", scale, 1)

    def degrade(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        arr = _check_batch(batch)
        h, w = arr.shape[1:3]
        if not pre_upsample and (h % scale or w % scale):
            raise ArgumentError(
                f"patches are {h}x{w}, not a multiple of scale={scale}: pass scale={scale} to PatchDataset"
            )
        padded = np.pad(arr, ((0, 0), (0, -h % scale), (0, -w % scale), (0, 0)), mode="symmetric")
        hh, ww = padded.shape[1:3]
        lr = bicubic_resize(padded, 1.0 / scale, output_shape=(hh // scale, ww // scale))
        return upscale(lr, scale)[:, :h, :w] if pre_upsample else lr

    return degrade
