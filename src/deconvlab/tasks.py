"""The three restoration tasks in one place: what each trains on, how it is evaluated, its default sets and card id.

* ``denoise`` (DnCNN protocol): AWGN of ``sigma`` on the 0-255 scale; test set BSD68 (validation: held-aside training images).
* ``sr`` (SRCNN/VDSR protocol): Y of ``modcrop(hr, scale)``, MATLAB bicubic downscale; test set Set5;
  training images in the same range of Y (:func:`sr_training_y`).
* ``deblur``: ``gaussian_psf(DEBLUR_PSF_SIGMA, DEBLUR_PSF_SIZE)`` with symmetric borders, then AWGN of
  ``DEBLUR_NOISE_SIGMA``; test set Set12.

Training (:func:`training_degradation`), evaluation (:func:`evaluation_pair`), the CLI and the model cards all ask
this module, so a protocol changes in one place. Taught in chapter 4 (notebooks/04_code_example).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .errors import ArgumentError

TASKS = ("denoise", "sr", "deblur")
SUPPORTED_SCALES = (2, 3, 4)
SIGMA_MAX = 100.0  # on the 255 scale; beyond it the "image" is mostly noise and no card is trained for it
#: The test set of ``evaluate`` and of a new card's metrics when none is named. Never a validation set: training
#: chooses its checkpoint on images held aside from its own training set (:func:`held_aside_count`).
DEFAULT_DATASETS = {"denoise": "bsd68", "sr": "set5", "deblur": "set12"}
#: The registry's test sets (data/DATASETS.md): what cards report, so never what chooses a checkpoint.
TEST_SETS = ("bsd68", "cbsd68", "set12", "set5", "set14")
#: Training images held aside (the last ones, in file order) to choose a checkpoint: Train400's test_393..400.
HELD_ASIDE_IMAGES = 8
DEFAULT_BUILDERS = {"denoise": "red_net", "sr": "red_net_sr", "deblur": "red_net"}
#: What the degraded input is called in result tables (the "input" columns).
INPUT_LABEL = {"denoise": "noisy", "sr": "bicubic", "deblur": "degraded"}

Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else ArgumentError."""
    if task not in TASKS:
        raise ArgumentError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    return task


def check_sigma(sigma: float | None) -> float | None:
    """Noise level on the 255 scale in (0, 100], or None."""
    if sigma is None:
        return None
    if not math.isfinite(sigma) or not 0.0 < sigma <= SIGMA_MAX:
        raise ArgumentError(
            f"--sigma {sigma:g} is outside (0, {SIGMA_MAX:g}]: give the noise standard deviation on the "
            "0-255 scale, e.g. --sigma 25"
        )
    return float(sigma)


def check_scale(scale: int | None) -> int | None:
    """A super-resolution factor from SUPPORTED_SCALES, or None."""
    if scale is None:
        return None
    if scale not in SUPPORTED_SCALES:
        raise ArgumentError(f"--scale {scale} is not supported: use one of {', '.join(map(str, SUPPORTED_SCALES))}")
    return int(scale)


# the noise levels a blind denoiser is chosen and measured at: the three of the DnCNN tables
BLIND_LEVELS = (15.0, 25.0, 50.0)


def held_aside_count(n_images: int) -> int:
    """How many of ``n_images`` training images are held aside for validation: :data:`HELD_ASIDE_IMAGES` (8 of
    Train400, 8 of the quick profile's 64), or a fifth of a set under 40 images (at least one)."""
    if n_images < 2:
        raise ArgumentError(f"a training set of {n_images} image(s) cannot spare one for validation")
    return max(1, min(HELD_ASIDE_IMAGES, n_images // 5))


def held_aside_split(images: Sequence[np.ndarray], count: int) -> tuple[list[int], list[int]]:
    """(training indices, held-aside indices): the last ``count`` images are held aside, and a training image
    pixel-identical to a held one is left out of training, so that validation sees no trained-on picture (T91 holds
    one such pair: ``t36`` = ``t65``)."""
    held = list(range(len(images) - count, len(images)))
    held_hashes = {pixel_hash(images[i]) for i in held}
    return [i for i in range(len(images) - count) if pixel_hash(images[i]) not in held_hashes], held


def training_part_name(name: str, held: int, copies: Sequence[str], kept: int) -> str:
    """How a card names its training data less the held-aside images (:func:`held_aside_split`), e.g.
    ``train400 without its last 8 images (392 images)``, with ``and t36 (copies of held-aside images)`` where a
    training image repeats a held one."""
    last = "image" if held == 1 else f"{held} images"
    also = f" and {', '.join(copies)} (copies of held-aside images)" if copies else ""
    return f"{name} without its last {last}{also} ({kept} image{'s' * (kept != 1)})"


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-256 of an array's shape and bytes: equal for pixel-identical images of one dtype (the packs of
    :mod:`deconvlab.packed` store it of their uint8 pixels)."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def check_task_args(task: str, sigma: float | None, scale: int | None) -> tuple[float | None, int | None]:
    """(sigma, scale) checked for one task: sigma for denoise only, a scale required for sr and only there."""
    check_task(task)
    sigma, scale = check_sigma(sigma), check_scale(scale)
    if sigma is not None and task != "denoise":
        raise ArgumentError(f"--sigma applies to --task denoise only; drop it for --task {task}")
    if scale is not None and task != "sr":
        raise ArgumentError(f"--scale applies to --task sr only; drop it for --task {task}")
    if task == "sr" and scale is None:
        raise ArgumentError(f"--task sr needs --scale ({', '.join(map(str, SUPPORTED_SCALES))})")
    return sigma, scale


def parse_scales(text: str) -> list[int]:
    """``"2,3,4"``: two or more supported factors, sorted, for one multi-scale SR model (VDSR's training)."""
    try:
        scales = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise ArgumentError(f"--scales {text!r}: give factors separated by commas, e.g. 2,3,4") from None
    if len(scales) < 2 or any(k not in SUPPORTED_SCALES for k in scales):
        raise ArgumentError(f"--scales {text!r}: give two or more of {SUPPORTED_SCALES}, e.g. 2,3,4")
    return scales


def check_sigma_range(lo: float, hi: float) -> tuple[float, float]:
    """The noise range of blind denoising: 0 <= lo < hi <= SIGMA_MAX (255 scale)."""
    if not 0 <= lo < hi <= SIGMA_MAX:
        raise ArgumentError(f"--sigma-range {lo:g} {hi:g}: need 0 <= LO < HI <= {SIGMA_MAX:g}")
    return float(lo), float(hi)


def dataset_mode(task: str, channels: int) -> str | None:
    """How ``load_dataset`` should read a set for this task: the SR protocol keeps files as stored (it takes Y)."""
    return None if task == "sr" else "rgb" if channels == 3 else "gray"


def protocol_psf() -> np.ndarray:
    """The deblurring protocol's PSF: ``gaussian_psf(DEBLUR_PSF_SIGMA, DEBLUR_PSF_SIZE)`` (for Wiener and co). Taught in chapter 4."""
    from .degrade import DEBLUR_PSF_SIGMA, DEBLUR_PSF_SIZE, gaussian_psf

    return gaussian_psf(DEBLUR_PSF_SIGMA, DEBLUR_PSF_SIZE)


def evaluation_pair(task: str, clean: np.ndarray, index: int, *, sigma: float | None = None, scale: int | None = None,
              seed: int = 0, psf: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(reference, degraded input, low-resolution image or None) of test image ``index`` under the task's protocol.

    Denoise and deblur draw the noise of image ``index`` from ``default_rng(seed + index)``; SR returns the Y
    channel of ``modcrop(clean, scale)``, its bicubic baseline and the low-resolution image.
    """
    from . import degrade as dg
    from . import metrics as mt

    if task == "sr":
        hr = mt.rgb_to_y(mt.modcrop(clean, scale))  # gray passes through rgb_to_y unchanged
        low = dg.downscale(hr, scale)
        return hr, dg.upscale(low, scale), low
    degraded = clean if task == "denoise" else dg.blur(clean, protocol_psf() if psf is None else psf)
    return clean, dg.add_gaussian_noise(degraded, sigma, seed=seed + index), None


def y_range(gray: np.ndarray) -> np.ndarray:
    """A gray [0, 1] image mapped into the range of MATLAB's luma, [16, 235] / 255 (Train400 as SR data)."""
    return (16.0 + 219.0 * np.asarray(gray, np.float32)) / 255.0


def sr_training_y(images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
    """(images, how a card names the mapping) for one-channel SR training, in the range SR is tested in:
    colour images as the MATLAB Y that :func:`evaluation_pair` compares, gray ones mapped by :func:`y_range`
    (as :mod:`deconvlab.fused` trains); full-range luma would train on a wider range than the tests use."""
    from .metrics import rgb_to_y

    colour = [img.ndim == 3 and img.shape[-1] == 3 for img in images]
    mapped = [rgb_to_y(img) if c else y_range(np.squeeze(img, axis=-1) if img.ndim == 3 else img)
              for img, c in zip(images, colour, strict=True)]
    gray_part = "mapped to [16, 235]/255"
    how = (gray_part if not any(colour) else "Y (MATLAB rgb2ycbcr)" if all(colour)
           else f"Y (MATLAB rgb2ycbcr), gray images {gray_part}")
    return mapped, how


def training_degradation(task: str, *, sigma: float | Sequence[float] | None = None, scale: int | None = None,
                         scales: Sequence[int] | None = None, post: bool = False) -> Degradation:
    """The ``degrade(clean_batch, rng)`` a task trains with (see :class:`deconvlab.data.PatchDataset`).

    ``sigma``: a level or a ``(lo, hi)`` range (blind denoising); ``scales``: several SR factors, one drawn per
    batch from the batch's own generator (so runs repeat exactly); ``post``: SR models that upsample themselves
    get the low-resolution patch.
    """
    from . import degrade as dg

    check_task(task)
    if task == "denoise":
        return dg.noise_degradation(sigma)
    if task == "deblur":
        return dg.blur_degradation(protocol_psf(), dg.DEBLUR_NOISE_SIGMA)
    if scales is None:
        return dg.sr_degradation(scale, pre_upsample=not post)
    per_scale = [dg.sr_degradation(k) for k in scales]

    def multiscale(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return per_scale[int(rng.integers(len(per_scale)))](batch, rng)

    return multiscale


def card_id(task: str, sigma: float | None = None, scale: int | None = None,
            sigma_range: Iterable[float] | None = None, channels: int = 1, scales: Sequence[int] | None = None) -> str:
    """'denoise-sigma25', 'denoise-blind0-55', 'sr-x2', 'sr-x2-3-4', 'deblur' (plus '-rgb' for colour models)."""
    if task == "denoise" and sigma is not None:
        base = f"denoise-sigma{sigma:g}"
    elif task == "denoise" and sigma_range is not None:
        lo, hi = sigma_range
        base = f"denoise-blind{lo:g}-{hi:g}"
    elif task == "sr" and scales:
        base = "sr-x" + "-".join(str(int(k)) for k in scales)
    elif task == "sr" and scale is not None:
        base = f"sr-x{int(scale)}"
    else:
        base = task
    return base + ("-rgb" if channels == 3 else "")
