"""Classical restoration baselines: the methods the book's networks have to beat, measured live in chapter 1.

Each function maps an image to an image: float in [0, 1], (H, W) gray or (H, W, 3) colour, float32 out (not
clipped). Denoisers take the noise level ``sigma`` on the 255 scale and set their own strength from it, so a
reader can compare them at one noise level without tuning anything:

* :func:`nlm_denoise`: non-local means (Buades et al. 2005), 5x5 patches searched within 6 pixels, filter
  strength ``h = 0.7 sigma``.
* :func:`tv_denoise`: total-variation denoising (Chambolle 2004) with weight ``(0.6 + 0.006 sigma) sigma``.
* :func:`wavelet_denoise`: BayesShrink soft thresholding (Chang et al. 2000) of a 4-level ``sym4`` wavelet
  transform.
* :func:`bm3d_denoise`: BM3D (Dabov et al. 2007) from the ``bm3d`` package, CBM3D for colour.

The factors in ``h`` and the TV weight, the wavelet and its levels were chosen by PSNR on six Train400
images (training data, never the test sets) at sigma 15, 25 and 50. The deconvolution baselines (Wiener,
Richardson-Lucy) mirror the image by the PSF size first, so the FFT's periodic borders do not ring into the
picture; :func:`tune_wiener_balance` and :func:`tune_rl_iterations` pick their one parameter on training images.
Taught in chapter 1 (``notebooks/01_background``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pywt
from skimage import color, exposure, filters, restoration

from . import degrade
from .checks import integer, number
from .errors import ArgumentError, ImageValueError
from .io import check_image
from .metrics import psnr

__all__ = [
    "bm3d_denoise", "clahe", "histogram_equalize", "nlm_denoise", "richardson_lucy_deconv", "tune_rl_iterations",
    "tune_wiener_balance", "tv_denoise", "tv_weight", "unsharp_mask", "wavelet_denoise", "wiener_deconv",
]

NLM_H_FACTOR = 0.7  # chosen on Train400; the skimage gallery's 0.8 smooths more
NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6
WAVELET = "sym4"
WAVELET_LEVELS = 4


def _image(image: object) -> tuple[np.ndarray, int | None, bool]:
    """(float64 image, channel_axis, had a trailing channel of 1) for one gray or colour image."""
    img = check_image(image).astype(np.float64)
    squeezed = img.ndim == 3 and img.shape[-1] == 1
    if squeezed:
        img = img[..., 0]
    return img, (-1 if img.ndim == 3 else None), squeezed


def _result(out: np.ndarray, squeezed: bool) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    return out[..., None] if squeezed else out


def _sigma(sigma: object) -> float:
    return number("sigma", sigma, hint=": the noise level on the 255 scale, e.g. 25") / 255.0


def _denoise(image: object, sigma: object, fn) -> np.ndarray:
    """``fn(img, sigma / 255, channel_axis)`` on a checked image; the image itself when ``sigma`` is 0."""
    img, axis, squeezed = _image(image)
    s = _sigma(sigma)
    return _result(img if s == 0 else fn(img, s, axis), squeezed)


# ---------------------------------------------------------------------------------------------- denoising


def nlm_denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """Non-local means (skimage, fast mode) with ``h = 0.7 sigma``, 5x5 patches, 13x13 search. Taught in chapter 1."""
    return _denoise(image, sigma, lambda img, s, axis: restoration.denoise_nl_means(
        img, patch_size=NLM_PATCH_SIZE, patch_distance=NLM_PATCH_DISTANCE, h=NLM_H_FACTOR * s, sigma=s,
        fast_mode=True, channel_axis=axis,
    ))


def tv_weight(sigma: float) -> float:
    """The Chambolle TV weight the book uses at noise level ``sigma`` (255 scale): (0.6 + 0.006 sigma) sigma / 255."""
    s = _sigma(sigma)
    return (0.6 + 0.006 * s * 255.0) * s


def tv_denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """Total-variation denoising (Chambolle) with the weight :func:`tv_weight` of ``sigma``. Taught in chapter 1."""
    return _denoise(image, sigma, lambda img, s, axis: restoration.denoise_tv_chambolle(
        img, weight=tv_weight(sigma), channel_axis=axis,
    ))


def wavelet_denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """BayesShrink wavelet denoising (soft thresholds, 4-level sym4, known ``sigma``). Taught in chapter 1."""
    # skimage's default depth (max level - 3) leaves a single level on a small image: too shallow for sym4.
    return _denoise(image, sigma, lambda img, s, axis: restoration.denoise_wavelet(
        img, sigma=s, wavelet=WAVELET, mode="soft", method="BayesShrink", rescale_sigma=True, channel_axis=axis,
        wavelet_levels=max(1, min(WAVELET_LEVELS, pywt.dwtn_max_level(img.shape[:2], WAVELET))),
    ))


def bm3d_denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (gray) or CBM3D (colour, opponent colour space) from the ``bm3d`` package. Taught in chapter 1."""
    import bm3d  # imported here: it loads slowly and only this baseline needs it

    def run(img: np.ndarray, s: float, axis: int | None) -> np.ndarray:
        if min(img.shape[:2]) < 8:
            raise ImageValueError(f"image is {img.shape[0]}x{img.shape[1]}: BM3D needs at least 8x8 pixels (its block size)")
        return bm3d.bm3d_rgb(img, s) if axis is not None else bm3d.bm3d(img, s)

    return _denoise(image, sigma, run)


# ---------------------------------------------------------------------------------------------- deconvolution


def _psf(psf: object) -> np.ndarray:
    k = degrade._check_psf(psf)
    if k.sum() <= 0:
        raise ArgumentError(f"psf sums to {k.sum():g}: pass a blur kernel with a positive sum, e.g. gaussian_psf(1.6, 25)")
    # An even side has no centre pixel: blur() centres it at index n // 2, and skimage's 'same' convolutions
    # would shift Richardson-Lucy's two passes a pixel apart (it drifts to garbage). A trailing zero row or
    # column gives the same blur an odd side with that centre.
    return np.pad(k / k.sum(), [(0, 1 - n % 2) for n in k.shape])


def _per_channel(img: np.ndarray, psf: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn(plane)`` to each channel of a mirror-padded image and crop the padding back off."""
    pad = max(psf.shape)

    def restore(plane: np.ndarray) -> np.ndarray:
        return fn(np.pad(plane, pad, mode="symmetric"))[pad:-pad, pad:-pad]

    return restore(img) if img.ndim == 2 else np.stack([restore(p) for p in np.moveaxis(img, -1, 0)], axis=-1)


def wiener_deconv(image: np.ndarray, psf: np.ndarray, balance: float = 0.003) -> np.ndarray:
    """Wiener-Hunt deconvolution (skimage ``wiener``, Laplacian regulariser) with trade-off ``balance``. Taught in chapter 1.

    A larger ``balance`` suppresses more noise and restores less detail; :func:`tune_wiener_balance` picks it
    (0.003, the default, is its choice for the book's deblurring protocol on 24 Train400 images).
    """
    img, _, squeezed = _image(image)
    k = _psf(psf)
    balance = number("balance", balance, 0.0, strict=True, hint=", e.g. 0.003 (tune_wiener_balance picks one)")
    out = _per_channel(img, k, lambda p: restoration.wiener(p, k, float(balance), clip=False))
    return _result(out, squeezed)


def richardson_lucy_deconv(image: np.ndarray, psf: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Richardson-Lucy deconvolution (skimage, ``clip=False``) for ``iterations`` steps. Taught in chapter 1.

    RL assumes non-negative intensities, so negative noisy pixels are set to 0 first; more iterations restore
    more detail and amplify more noise (:func:`tune_rl_iterations` picks the count; the default 40 is its choice
    for the book's deblurring protocol on 24 Train400 images).
    """
    img, _, squeezed = _image(image)
    k = _psf(psf)
    iterations = integer("iterations", iterations, 1)
    out = _per_channel(np.maximum(img, 0.0), k, lambda p: restoration.richardson_lucy(
        p, k, num_iter=int(iterations), clip=False, filter_epsilon=1e-12,
    ))
    return _result(out, squeezed)


def _tune(clean_images: Sequence[np.ndarray], psf: np.ndarray, noise_sigma: float, candidates: Sequence,
          seed: int, restore, return_scores: bool) -> object:
    if len(candidates) == 0:
        raise ArgumentError("candidates is empty: pass at least one value to try")
    images = [check_image(im, f"clean_images[{i}]") for i, im in enumerate(clean_images)]
    if not images:
        raise ArgumentError("clean_images is empty: pass a few training images")
    k = _psf(psf)
    # Noise seed seed + i for image i, the evaluation protocol's convention, so tuning sees fixed degradations.
    degraded = [degrade.add_gaussian_noise(degrade.blur(im, k), noise_sigma, seed=seed + i) for i, im in enumerate(images)]
    scores = {}
    for value in candidates:
        restored = [np.clip(restore(d, k, value), 0.0, 1.0) for d in degraded]
        scores[value] = float(np.mean([psnr(c, r) for c, r in zip(images, restored, strict=True)]))
    best = max(scores, key=scores.get)
    return (best, scores) if return_scores else best


def tune_wiener_balance(
    clean_images: Sequence[np.ndarray],
    psf: np.ndarray,
    noise_sigma: float = degrade.DEBLUR_NOISE_SIGMA,
    candidates: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    seed: int = 0,
    return_scores: bool = False,
) -> float | tuple[float, dict[float, float]]:
    """The Wiener ``balance`` with the best mean PSNR on blurred, noisy copies of training images. Taught in chapter 1.

    With ``return_scores`` it also returns ``{candidate: mean PSNR}``, e.g. to plot the trade-off.
    """
    return _tune(clean_images, psf, noise_sigma, candidates, seed, wiener_deconv, return_scores)


def tune_rl_iterations(
    clean_images: Sequence[np.ndarray],
    psf: np.ndarray,
    noise_sigma: float = degrade.DEBLUR_NOISE_SIGMA,
    candidates: Sequence[int] = (10, 20, 40, 80, 160),
    seed: int = 0,
    return_scores: bool = False,
) -> int | tuple[int, dict[int, float]]:
    """The Richardson-Lucy iteration count with the best mean PSNR on degraded training images. Taught in chapter 1.

    With ``return_scores`` it also returns ``{candidate: mean PSNR}``.
    """
    return _tune(clean_images, psf, noise_sigma, candidates, seed, richardson_lucy_deconv, return_scores)


# ---------------------------------------------------------------------------------------------- enhancement


def _on_value(img: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn`` to a gray image clipped to [0, 1], or to the V channel of HSV so colour keeps its hues."""
    img = np.clip(img, 0.0, 1.0)
    if img.ndim == 2:
        return fn(img)
    hsv = color.rgb2hsv(img)
    hsv[..., 2] = fn(hsv[..., 2])
    return color.hsv2rgb(hsv)


def histogram_equalize(image: np.ndarray, nbins: int = 256) -> np.ndarray:
    """Global histogram equalisation (skimage ``equalize_hist``); colour on the V of HSV. Taught in chapter 1."""
    img, _, squeezed = _image(image)
    nbins = integer("nbins", nbins, 2)
    return _result(_on_value(img, lambda v: exposure.equalize_hist(v, nbins=int(nbins))), squeezed)


def clahe(image: np.ndarray, clip_limit: float = 0.01, kernel_size: int | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (skimage ``equalize_adapthist``). Taught in chapter 1.

    ``kernel_size`` is the tile side (default: 1/8 of the image); colour works on the V of HSV.
    """
    img, _, squeezed = _image(image)
    if number("clip_limit", clip_limit, 0.0, strict=True) > 1:
        raise ArgumentError(f"clip_limit={clip_limit!r}: pass a number in (0, 1], e.g. 0.01")
    return _result(_on_value(img, lambda v: exposure.equalize_adapthist(
        v, kernel_size=kernel_size, clip_limit=float(clip_limit),
    )), squeezed)


def unsharp_mask(image: np.ndarray, radius: float = 1.0, amount: float = 1.0) -> np.ndarray:
    """Unsharp masking: add ``amount`` times the image minus its Gaussian blur of ``radius`` (skimage). Taught in chapter 1."""
    img, axis, squeezed = _image(image)
    radius, amount = number("radius", radius), number("amount", amount)
    out = filters.unsharp_mask(img, radius=float(radius), amount=float(amount), preserve_range=True, channel_axis=axis)
    return _result(out, squeezed)
