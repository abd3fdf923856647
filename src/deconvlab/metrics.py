"""Image-quality metrics: PSNR, SSIM and the super-resolution evaluation protocol.

Images are float arrays in [0, 1], so ``data_range=1.0`` gives the usual PSNR "on the 255 scale" (the value is
the same as for 0-255 images with ``data_range=255``). SSIM uses the settings of Wang et al. (2004): an 11x11
Gaussian window with sigma 1.5 and population covariances, as the MATLAB ``ssim`` reference code does.

Super-resolution papers (SRCNN, VDSR, FSRCNN) measure on the luma Y of MATLAB ``rgb2ycbcr``, after cropping the
high-resolution image to a multiple of the scale (``modcrop``) and shaving ``scale`` pixels off every border,
because bicubic upsampling is unreliable there. :func:`sr_metrics` bundles that protocol. PSNR and SSIM are taught
in chapter 1 (``notebooks/01_background``), the super-resolution protocol in chapter 2.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops
from skimage import color
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .checks import integer, number
from .errors import ArgumentError, ImageValueError
from .io import as_numpy, unit_float

__all__ = [
    "PSNR", "PSNR_MAX_DB", "crop_border", "modcrop", "psnr", "psnr_metric", "psnr_per_image", "rgb_to_y",
    "rgb_to_ycbcr", "sr_metrics", "ssim", "ycbcr_to_rgb",
]

#: PSNR cap (dB) of the in-graph metric: an exact reconstruction would give +inf and poison every mean it enters.
PSNR_MAX_DB = 100.0

_SSIM_SIGMA = 1.5
_SSIM_WIN = 11  # skimage's window side for a Gaussian of sigma 1.5 (truncated at 3.5 sigma)


def _as_array(image: object, name: str) -> np.ndarray:
    """A finite, non-empty float64 array; integer images keep their values (as in skimage)."""
    arr = as_numpy(image, name)
    if arr.dtype.kind not in "biuf":
        raise ImageValueError(f"{name} has dtype {arr.dtype}: pass a float image in [0, 1]")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ImageValueError(f"{name} is empty (shape {arr.shape}): check the crop or slice that produced it")
    if not np.isfinite(arr).all():
        raise ImageValueError(f"{name} has NaN/inf values: fix the step that produced them or use np.nan_to_num")
    return arr


def _unit_array(image: object, name: str) -> np.ndarray:
    """:func:`_as_array` of :func:`deconvlab.io.unit_float` in float64 (8- and 16-bit pixels on [0, 1])."""
    return _as_array(unit_float(as_numpy(image, name), np.float64), name)


def _refuse_mixed(caller: str, first: tuple[str, np.ndarray], second: tuple[str, np.ndarray]) -> None:
    """Refuse an integer image next to a float one: the float may be on [0, 1] or on 0-255, so no reading is safe."""
    kinds = {first[1].dtype.kind: first, second[1].dtype.kind: second}
    integral = kinds.get("u", kinds.get("i"))
    if integral is None or "f" not in kinds:
        return
    (name, arr), (other, other_arr) = integral, kinds["f"]
    advice = (f"divide {name} by {np.iinfo(arr.dtype).max} (the {arr.dtype} maximum) to compare on [0, 1]"
              if arr.dtype.kind == "u" else f"convert {name} to float on the scale of {other}")
    raise ArgumentError(
        f"{name} is {arr.dtype} but {other} is {other_arr.dtype}: {caller} does not mix integer and float images; {advice}"
    )


def _pair(reference: object, test: object, data_range: float, caller: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Validated (reference, test, data_range); a trailing channel of 1 is dropped when only one has it."""
    ref_in, out_in = as_numpy(reference, "reference"), as_numpy(test, "test")
    ref, out = _as_array(ref_in, "reference"), _as_array(out_in, "test")
    _refuse_mixed(caller, ("reference", ref_in), ("test", out_in))
    if ref.ndim == out.ndim + 1 and ref.shape[-1] == 1:
        ref = ref[..., 0]
    elif out.ndim == ref.ndim + 1 and out.shape[-1] == 1:
        out = out[..., 0]
    if ref.shape != out.shape:
        raise ArgumentError(
            f"reference has shape {ref.shape} but test has {out.shape}: compare images of the same size "
            "(for super-resolution use sr_metrics, which applies modcrop)"
        )
    data_range = number("data_range", data_range, 0.0, strict=True, hint=": 1.0 for [0, 1] images, 255 for 0-255")
    # A float test image may span more than 2 (unclipped noise); integer pixels that do are 0-255 (or wider) values.
    for name, arr, given in (("reference", ref, ref_in), ("test", out, out_in)):
        span = float(arr.max() - arr.min())
        if (name == "reference" or given.dtype.kind in "iu") and span > 2 * data_range:
            # The classic mistake: 0-255 images with the default data_range of 1 give a PSNR that is ~48 dB too low.
            raise ArgumentError(
                f"{name} values span {span:g} but data_range={data_range:g}: pass data_range=255 for 0-255 images "
                "or divide them by 255"
            )
    return ref, out, data_range


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); inf for identical images. Taught in chapter 1.

    Any shape works (gray, colour, NHWC batch): the MSE runs over all values, as in skimage. Integer images keep
    their values (two 0-255 images need ``data_range=255``); an integer image next to a float one is refused.
    """
    ref, out, data_range = _pair(reference, test, data_range, "psnr")
    if np.array_equal(ref, out):
        return float("inf")  # skimage would divide by zero and warn
    return float(peak_signal_noise_ratio(ref, out, data_range=data_range))


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004: Gaussian window, sigma 1.5); colour averages channels. Taught in chapter 1.

    Takes (H, W), (H, W, C) or an NHWC batch (the mean over its images); both sides must be at least 11 pixels.
    Integer images keep their values, as in :func:`psnr`; an integer image next to a float one is refused.
    """
    ref, out, data_range = _pair(reference, test, data_range, "ssim")
    if ref.ndim == 4:
        return float(np.mean([ssim(r, t, data_range) for r, t in zip(ref, out, strict=True)]))
    if ref.ndim == 3 and ref.shape[-1] == 1:
        ref, out = ref[..., 0], out[..., 0]
    if ref.ndim not in (2, 3):
        raise ImageValueError(f"image has shape {ref.shape}: SSIM needs (H, W), (H, W, C) or (N, H, W, C)")
    if min(ref.shape[:2]) < _SSIM_WIN:
        raise ImageValueError(
            f"image is {ref.shape[0]}x{ref.shape[1]}, smaller than the {_SSIM_WIN}x{_SSIM_WIN} SSIM window: "
            "compare larger crops, or use psnr"
        )
    return float(
        structural_similarity(
            ref, out, data_range=data_range, gaussian_weights=True, sigma=_SSIM_SIGMA,
            use_sample_covariance=False, channel_axis=-1 if ref.ndim == 3 else None,
        )
    )


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Luma Y of MATLAB ``rgb2ycbcr`` in [16/255, 235/255] as (H, W) float32; gray passes through. Taught in chapter 4.

    Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in [0, 1]; (H, W, 1) becomes (H, W).
    Unsigned integers (8- or 16-bit pixels) are divided by their maximum first, as scikit-image reads them.
    """
    arr = _unit_array(image, "image")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageValueError(f"image has shape {arr.shape}: rgb_to_y takes (H, W) gray or (H, W, 3) RGB")
    return rgb_to_ycbcr(arr)[..., 0]


def _three_channels(arr: np.ndarray, caller: str) -> np.ndarray:
    if arr.ndim < 3 or arr.shape[-1] != 3:  # scikit-image's ValueError would name none of this package's functions
        raise ImageValueError(f"image has shape {arr.shape}: {caller} takes (H, W, 3) images (or a batch of them)")
    return arr


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` on a [0, 1] RGB image, scaled to [0, 1] (Y in [16, 235]/255).

    scikit-image's ``rgb2ycbcr`` uses the same BT.601 matrix and offsets on the 255 scale; float64 in keeps the
    SR protocol's numbers exactly those of the MATLAB formula. Unsigned integers (8- or 16-bit pixels) are
    divided by their maximum first, as :func:`rgb_to_y` reads them.
    """
    arr = _three_channels(_unit_array(image, "image"), "rgb_to_ycbcr")
    return (color.rgb2ycbcr(arr) / 255.0).astype(np.float32)


def ycbcr_to_rgb(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (scikit-image ``ycbcr2rgb``); unsigned integers are read over their maximum."""
    # not _unit_array, which refuses NaN: enhance converts model outputs, whose NaN must come through
    arr = np.asarray(unit_float(as_numpy(image, "image"), np.float64), np.float64)
    return color.ycbcr2rgb(_three_channels(arr, "ycbcr_to_rgb") * 255.0).astype(np.float32)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale``, keeping the top-left corner (MATLAB modcrop). Taught in chapter 2."""
    scale = integer("scale", scale, 1)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ImageValueError(f"image has shape {arr.shape}: modcrop takes (H, W) or (H, W, C)")
    h, w = arr.shape[0] - arr.shape[0] % scale, arr.shape[1] - arr.shape[1] % scale
    if h == 0 or w == 0:
        raise ImageValueError(
            f"image {arr.shape[0]}x{arr.shape[1]} is smaller than scale={scale}: use a larger image or a smaller scale"
        )
    return arr[:h, :w]


def crop_border(image: np.ndarray, n: int) -> np.ndarray:
    """Remove ``n`` pixels from every border of an (H, W) or (H, W, C) image ("shave"). Taught in chapter 5."""
    n = integer("n", n, 0)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ImageValueError(f"image has shape {arr.shape}: crop_border takes (H, W) or (H, W, C)")
    if n == 0:
        return arr
    if 2 * n >= min(arr.shape[:2]):
        raise ImageValueError(
            f"cannot shave {n} pixels from a {arr.shape[0]}x{arr.shape[1]} image: use a larger image or a smaller n"
        )
    return arr[n:-n, n:-n]


def sr_metrics(hr: np.ndarray, sr: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of a super-resolved image on Y after modcrop and a ``scale``-pixel shave. Taught in chapter 2.

    Colour images are compared on the Y of :func:`rgb_to_y`, gray ones as they are (so a gray ``sr`` against a
    colour ``hr`` is taken as a Y output). ``sr`` may have the size of the cropped or of the original ``hr``.
    Float images are read on [0, 1] and unsigned integers over their dtype maximum, as :func:`rgb_to_y` reads them;
    an integer image next to a float one is refused, as in :func:`psnr`.
    """
    scale = integer("scale", scale, 1)
    hr_in, sr_in = as_numpy(hr, "hr"), as_numpy(sr, "sr")
    hr, sr = _unit_array(hr_in, "hr"), _unit_array(sr_in, "sr")
    _refuse_mixed("sr_metrics", ("hr", hr_in), ("sr", sr_in))
    if hr.ndim not in (2, 3) or sr.ndim not in (2, 3):
        raise ImageValueError(f"hr {hr.shape} and sr {sr.shape}: pass single images (H, W) or (H, W, 3)")
    hr = modcrop(hr, scale)
    if sr.shape[:2] != hr.shape[:2]:
        if tuple(n - n % scale for n in sr.shape[:2]) != hr.shape[:2]:
            raise ArgumentError(
                f"sr is {sr.shape[0]}x{sr.shape[1]} but modcrop(hr, {scale}) is {hr.shape[0]}x{hr.shape[1]}: "
                "upscale the low-resolution image of downscale(hr, scale) by the same scale"
            )
        sr = modcrop(sr, scale)
    y_hr, y_sr = crop_border(rgb_to_y(hr), scale), crop_border(rgb_to_y(sr), scale)
    span = float(y_hr.max() - y_hr.min())
    if span > 2:  # psnr's own refusal would advise a data_range that sr_metrics does not take
        raise ArgumentError(
            f"hr values span {span:g} on Y: sr_metrics takes floats in [0, 1] or unsigned-integer pixels; divide 0-255 values by 255"
        )
    return psnr(y_hr, y_sr), ssim(y_hr, y_sr)


# ------------------------------------------------------------------- in-graph PSNR (Keras, for training)


def psnr_per_image(y_true, y_pred, max_db: float = PSNR_MAX_DB):
    """PSNR (dB) of every image of a batch of [0, 1] images, as a (N,) tensor. Taught in chapter 5."""
    # float16 outputs would square to inf/0 for large/small errors: compute the error in float32
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    axes = tuple(range(1, len(y_pred.shape)))
    mse = ops.mean(ops.square(y_true - y_pred), axis=axes)
    return -10.0 * ops.log10(ops.maximum(mse, 10.0 ** (-max_db / 10.0)))


@keras.saving.register_keras_serializable(package="deconvlab")
def psnr_metric(y_true, y_pred):
    """Mean over the batch of per-image PSNR (dB, data range 1: the 255-scale PSNR of [0, 1] images). Taught in chapter 3."""
    return ops.mean(psnr_per_image(y_true, y_pred))


@keras.saving.register_keras_serializable(package="deconvlab")
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean per-image PSNR (dB) over every image seen since the last reset. Taught in chapter 3.

    Averaging per-image PSNR (as the papers' tables do) differs from the PSNR of the mean MSE; batches of
    different sizes are weighted by their image count, so the epoch value does not depend on the batching.
    Exact reconstructions count as ``max_db`` (100 dB). The running sums are float32: ``dtype`` is accepted for
    saved configs and ignored (float16 sums would overflow after about 2,000 images).
    """

    def __init__(self, name: str = "psnr", max_db: float = PSNR_MAX_DB, dtype=None) -> None:
        super().__init__(psnr_per_image, name=name, dtype="float32", max_db=float(max_db))
        self.max_db = float(max_db)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "max_db": self.max_db}
