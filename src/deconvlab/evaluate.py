"""Evaluate a model or a classical method on a test set with the protocol of the papers, image by image.

``evaluate(model_or_fn, dataset, task)`` degrades every clean test image, restores it, and measures PSNR and
SSIM of the result and of the degraded input. The protocols (taught in chapter 1, used in chapter 4):

* ``"denoise"`` (DnCNN): ``noisy = clean + N(0, (sigma/255)^2)`` with the noise of image ``i`` (0-based
  position in the set) drawn by ``add_gaussian_noise(clean, sigma, seed=seed + i)``, i.e. from
  ``np.random.default_rng(seed + i)``: every method sees exactly the same noise, and one image's noise does not
  depend on which other images are evaluated before it. The noisy input is not clipped. The output is clipped
  to [0, 1] (``clip=True``) but not rounded to 8 bits; PSNR/SSIM on the full image with ``data_range=1``
  (the 255-scale PSNR). Clipping alone lifts the identity from 20.17 to 20.48 dB at sigma 25 on BSD68 (seed
  0, as seed 1; Set12 20.18 to 20.35, CBSD68 20.17 to 20.54), so the input columns (unclipped) are the honest
  "noisy" baseline. Colour images are denoised as colour by a 3-channel model, channel by channel by a
  1-channel model.
* ``"sr"`` (SRCNN/VDSR): ``hr = modcrop(image, scale)``, Y of MATLAB ``rgb2ycbcr`` for colour images (gray as
  is), ``lr = downscale(hr_y, scale)`` (MATLAB bicubic, float). A "pre" model gets ``upscale(lr, scale)``,
  a "post" model ``lr``; which one is found from the model's scale (or ``upsample=``). Metrics by
  :func:`deconvlab.metrics.sr_metrics` (Y, ``scale`` pixels shaved); the input columns are the bicubic baseline.
* ``"deblur"``: ``blur(clean, gaussian_psf(DEBLUR_PSF_SIGMA, DEBLUR_PSF_SIZE))`` (mirrored borders) plus AWGN
  of ``DEBLUR_NOISE_SIGMA`` (or ``sigma``) from ``default_rng(seed + i)``; metrics on the full image.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import config, degrade, infer, metrics
from .checks import integer, number
from .errors import ArgumentError, OutputError
from .infer import from_model_batch, model_channels, model_scale, predict_image, tile_predict, to_model_batch
from .io import check_image, unit_float, write_atomic
from .report import grid_table
from .tasks import INPUT_LABEL, TASKS, check_task, evaluation_pair, protocol_psf

__all__ = ["TASKS", "EvalResult", "evaluate", "protocol_psf"]

UPSAMPLES = ("pre", "post")
COLUMNS = ("name", "psnr", "ssim", "input_psnr", "input_ssim", "seconds")


# ------------------------------------------------------------------------------------------------ result


def _mean(values: Sequence[float]) -> float:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


@dataclasses.dataclass
class EvalResult:
    """Per-image rows (name, psnr, ssim, input_psnr, input_ssim, seconds), their means and the protocol. Taught in chapter 6."""

    rows: list[dict[str, Any]]
    protocol: dict[str, Any]

    mean_psnr = property(lambda self: _mean([r["psnr"] for r in self.rows]), doc="Mean PSNR (dB) over the images.")
    mean_ssim = property(lambda self: _mean([r["ssim"] for r in self.rows]), doc="Mean SSIM over the images.")
    mean_input_psnr = property(lambda self: _mean([r["input_psnr"] for r in self.rows]),
                               doc="Mean PSNR (dB) of the degraded inputs: the baseline.")
    mean_input_ssim = property(lambda self: _mean([r["input_ssim"] for r in self.rows]),
                               doc="Mean SSIM of the degraded inputs.")

    @property
    def mean(self) -> dict[str, float]:
        """Means over the images: psnr, ssim, input_psnr, input_ssim, seconds (per image)."""
        return {key: _mean([r[key] for r in self.rows]) for key in COLUMNS[1:]}

    @property
    def gain(self) -> float:
        """Mean PSNR gain over the degraded input (dB)."""
        return self.mean_psnr - self.mean_input_psnr

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self, digits: int = 2) -> str:
        """The means as one line, e.g. 'red_net on bsd68 (denoise, sigma=25): PSNR 28.80 dB, SSIM 0.8249 (noisy 20.19 dB, 0.3760), 3 images'."""
        p = self.protocol
        setting = ", ".join(f"{k}={p[k]:g}" for k in ("sigma", "scale") if p.get(k) is not None)
        task = p.get("task", "?") + (f", {setting}" if setting else "")
        label = INPUT_LABEL.get(p.get("task"), "input")
        return (
            f"{p.get('method', 'method')} on {p.get('dataset', 'images')} ({task}): "
            f"PSNR {self.mean_psnr:.{digits}f} dB, SSIM {self.mean_ssim:.{digits + 2}f} "
            f"({label} {self.mean_input_psnr:.{digits}f} dB, {self.mean_input_ssim:.{digits + 2}f}), "
            f"{len(self.rows)} image{'s' if len(self.rows) != 1 else ''}"
        )

    def __str__(self) -> str:
        return self.summary()

    def to_markdown(self, digits: int = 2) -> str:
        """A Markdown table, one row per image and a bold mean row; SSIM gets two more digits than PSNR."""
        label = INPUT_LABEL.get(self.protocol.get("task"), "input")
        places = (digits, digits + 2, digits, digits + 2, 3)  # the decimals of COLUMNS[1:]

        def cells(values: dict[str, Any], mark: str = "") -> list[str]:
            return [f"{mark}{values[key]:.{n}f}{mark}" for key, n in zip(COLUMNS[1:], places, strict=True)]

        header = ["image", "PSNR (dB)", "SSIM", f"{label} PSNR (dB)", f"{label} SSIM", "seconds"]
        rows = [[row["name"], *cells(row)] for row in self.rows] + [["**mean**", *cells(self.mean, "**")]]
        return grid_table(header, rows) + "\n"

    def _repr_markdown_(self) -> str:  # a bare EvalResult at the end of a notebook cell shows the table
        return self.summary() + "\n\n" + self.to_markdown()

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the rows as CSV; the first line is ``# protocol: {json}`` (pandas: ``read_csv(path, comment="#")``)."""
        path = Path(path)
        buffer = io.StringIO()
        buffer.write("# protocol: " + json.dumps(self.protocol, sort_keys=True, default=str) + "\n")
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (row[k] if k == "name" else repr(float(row[k]))) for k in COLUMNS})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, buffer.getvalue().encode("utf-8"))  # a failed write keeps the old file whole
        except OSError as exc:
            raise OutputError(f"cannot write {path} ({exc.strerror or exc}): pick a writable file path") from None
        return path


# ------------------------------------------------------------------------------------------------ helpers


def _images_of(dataset: Any) -> tuple[str, list[str], list[np.ndarray], bool]:
    from .data import Dataset

    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and isinstance(dataset[0], str):
        raise ArgumentError(f"names={dataset[0]!r} is one str, read as one name per letter: pass a list of names")
    if isinstance(dataset, Dataset):
        name, names, images, fallback = dataset.name, list(dataset.names), list(dataset.images), dataset.is_fallback
    elif (isinstance(dataset, (tuple, list)) and len(dataset) == 2 and not isinstance(dataset[0], np.ndarray)
          and all(isinstance(n, str) for n in dataset[0])):
        name, names, images, fallback = "images", list(dataset[0]), list(dataset[1]), False
    else:
        raise ArgumentError(
            f"dataset of type {type(dataset).__name__}: pass deconvlab.data.load_dataset(...) or a (names, images) pair"
        )
    if len(names) != len(images):
        raise ArgumentError(f"{len(names)} names but {len(images)} images: pass one name per image")
    if not images:
        raise ArgumentError("the dataset has no images: check the limit= or the folder you loaded")
    images = [check_image(img, f"{name}[{n}]") for n, img in zip(names, images, strict=True)]
    return name, names, images, fallback


def _forward(model, batch: np.ndarray, tile: int | None, overlap: int) -> np.ndarray:
    if tile is None:
        return predict_image(model, batch)  # one image at a time: large images stay within memory
    return tile_predict(model, batch, tile=tile, overlap=_tile_overlap(model, tile, overlap), scale=None)


def _tile_overlap(model: Any, tile: int, overlap: int) -> int:
    # the overlap tile_predict will use: the default (32), else half the tile, each put on a strided model's grid by
    # tile_predict's own plan; where both fill the tile, half of it rounded down (--tile 3 on the U-Net: a tile of 4,
    # overlap 0)
    for candidate in (overlap, tile // 2):
        planned, rounded, _, stride = infer._tile_plan(model, tile, candidate)
        if rounded < planned:
            return rounded
    return planned // 2 // stride * stride


def _clip(image: np.ndarray, clip: bool) -> np.ndarray:
    return np.clip(image, 0.0, 1.0) if clip else image


# ------------------------------------------------------------------------------------------------ evaluate


def evaluate(
    model_or_fn: Any,
    dataset: Any,
    task: str = "denoise",
    *,
    sigma: float | None = None,
    scale: int | None = None,
    seed: int = 0,
    clip: bool = True,
    tile: int | None = None,
    upsample: str | None = None,
    overlap: int = config.DEFAULT_OVERLAP,
) -> EvalResult:
    """PSNR/SSIM of a Keras model or an image -> image function on a test set, per image and mean. Taught in chapter 4.

    ``dataset``: a :class:`deconvlab.data.Dataset` or a ``(names, images)`` pair. ``sigma``: the noise level
    (255 scale; required for "denoise", overrides ``DEBLUR_NOISE_SIGMA`` for "deblur"); ``scale``: the SR
    factor (required for "sr"). Image ``i`` gets noise from ``seed + i``. ``tile`` runs models with
    :func:`deconvlab.infer.tile_predict` (``overlap`` pixels); models see one image per forward pass;
    ``seconds`` is the model/function time per image (degradation and metrics excluded; a small warm-up call
    first). ``upsample`` ("pre"/"post") says what an SR method takes; None measures a model's scale and assumes
    "pre" for functions. A function's unsigned-integer output (8- or 16-bit pixels) is read over its dtype
    maximum, as :func:`deconvlab.io.check_image` reads images. Returns an :class:`EvalResult`.
    """
    is_model = isinstance(model_or_fn, keras.Model)
    sigma, scale, seed, tile, overlap = _checked_args(
        model_or_fn, is_model, task, sigma, scale, seed, tile, overlap, upsample)
    set_name, names, images, fallback = _images_of(dataset)
    channels = model_channels(model_or_fn) if is_model else None

    psf = protocol_psf() if task == "deblur" else None
    pairs = [evaluation_pair(task, clean, i, sigma=sigma, scale=scale, seed=seed, psf=psf) for i, clean in enumerate(images)]
    references, baselines, lows = (list(column) for column in zip(*pairs, strict=True))
    if task == "sr":
        upsample = _sr_upsample(model_or_fn, channels, scale, upsample) if is_model else upsample or "pre"
    inputs = lows if upsample == "post" else baselines

    outputs, seconds, layouts = (_run_model(model_or_fn, inputs, channels, tile, overlap) if is_model
                                 else _run_function(model_or_fn, inputs))
    rows = [_measure(task, name, out, ref, base, scale, clip, sec, is_model)
            for name, out, ref, base, sec in zip(names, outputs, references, baselines, seconds, strict=True)]
    return EvalResult(rows=rows, protocol=_protocol(
        task=task, method=model_or_fn, is_model=is_model, dataset=set_name, fallback=fallback,
        sigma=sigma, scale=scale, seed=seed, clip=clip, tile=tile, overlap=overlap, upsample=upsample,
        layouts=layouts, images=images,
    ))


def _checked_args(method: Any, is_model: bool, task: str, sigma: Any, scale: Any, seed: Any, tile: Any,
                  overlap: Any, upsample: Any) -> tuple:
    """(sigma, scale, seed, tile, overlap) checked against the task's protocol."""
    check_task(task)
    seed = integer("seed", seed, 0)
    if not is_model and not callable(method):
        raise ArgumentError(f"model_or_fn of type {type(method).__name__}: pass a keras.Model or a function image -> image")
    if task == "denoise":
        if sigma is None:
            raise ArgumentError("task='denoise' needs sigma (255 scale), e.g. evaluate(model, data, 'denoise', sigma=25)")
        sigma = number("sigma", sigma)
    elif task == "deblur":
        sigma = degrade.DEBLUR_NOISE_SIGMA if sigma is None else number("sigma", sigma)
    elif sigma is not None:
        raise ArgumentError("sigma applies to 'denoise' and 'deblur'; the SR protocol adds no noise: drop sigma")
    if task == "sr":
        if scale is None:
            raise ArgumentError("task='sr' needs scale, e.g. evaluate(model, data, 'sr', scale=2)")
        scale = integer("scale", scale, 2)
    elif scale is not None:
        raise ArgumentError(f"scale applies to task='sr' only (task={task!r}): drop scale")
    if tile is not None:
        if not is_model:
            raise ArgumentError("tile applies to Keras models; a plain function gets the whole image: drop tile")
        tile = integer("tile", tile, 2)
    overlap = integer("overlap", overlap, 0)
    if upsample is not None and upsample not in UPSAMPLES:
        raise ArgumentError(f"upsample={upsample!r}: use 'pre' (bicubic-upsampled input), 'post' (LR input) or None")
    if upsample is not None and task != "sr":
        raise ArgumentError(f"upsample applies to task='sr' only (task={task!r}): drop upsample")
    return sigma, scale, seed, tile, overlap


def _sr_upsample(model: Any, channels: int | None, scale: int, upsample: str | None) -> str:
    """``upsample`` if given, else "pre" for a model that keeps the size, "post" for one that upsamples by ``scale``."""
    if channels not in (None, 1):
        raise ArgumentError(f"the SR protocol works on the Y channel, the model takes {channels}: build it with channels=1")
    if upsample is not None:
        return upsample
    found = model_scale(model, 1)
    if found not in (1, scale):
        raise ArgumentError(f"the model upsamples by {found}, not scale={scale}: evaluate it with scale={found}")
    return "pre" if found == 1 else "post"


def _run_model(model: Any, inputs: list[np.ndarray], channels: int | None, tile: int | None,
               overlap: int) -> tuple[list[np.ndarray], list[float], list[str]]:
    """Outputs, seconds per image and layouts."""
    batches, layouts = zip(*(to_model_batch(x, channels, per_channel=True) for x in inputs), strict=True)
    # first-call costs (graph building) are not speed; a crop keeps them small, but a model built for one
    # input size (keras.Input((48, 48, 1))) runs on nothing else
    first = batches[0][:1]
    predict_image(model, first if any(infer._input_size(model)) else first[:, :32, :32])
    outputs, seconds = [], []
    for batch, layout in zip(batches, layouts, strict=True):
        start = time.perf_counter()
        out = np.asarray(_forward(model, batch, tile, overlap), dtype=np.float32)
        seconds.append(time.perf_counter() - start)
        outputs.append(from_model_batch(out, layout))
    return outputs, seconds, list(layouts)


def _run_function(fn: Any, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[float], list[str]]:
    outputs, seconds = [], []
    for x in inputs:
        start = time.perf_counter()
        out = fn(x.copy())  # a copy: an in-place method must not alter the protocol's input
        seconds.append(time.perf_counter() - start)
        # unit scale as check_image reads images: an img_as_ubyte at the end gives 8-bit pixels, not 0-255 values
        outputs.append(unit_float(keras.ops.convert_to_numpy(out), name="the method's output"))
    return outputs, seconds, []


def _measure(task: str, name: str, out: np.ndarray, ref: np.ndarray, base: np.ndarray, scale: int | None,
             clip: bool, seconds: float, is_model: bool) -> dict[str, Any]:
    """One result row: PSNR/SSIM of the output and of the degraded input against the reference."""
    if out.shape != ref.shape:
        hint = "pass upsample='post' if it takes the low-resolution image" if task == "sr" else "return the input's shape"
        raise ArgumentError(
            f"{'model' if is_model else 'function'} returned shape {out.shape} for {name}, expected {ref.shape}: {hint}"
        )
    # noisy outputs leave [0, 1] by about 2 at most (AWGN at sigma 100); past 10 they are 0-255 (or wider) values,
    # which the clip below would score as ~5 dB without a word
    if not is_model and np.abs(out).max() > 10:
        raise ArgumentError(f"function returned values up to {np.abs(out).max():g} for {name}: return floats in [0, 1] "
                            "or an 8/16-bit integer array")
    out = _clip(out, clip)
    if task == "sr":
        (p, s), (ip, iss) = metrics.sr_metrics(ref, out, scale), metrics.sr_metrics(ref, _clip(base, clip), scale)
    else:
        p, s, ip, iss = metrics.psnr(ref, out), metrics.ssim(ref, out), metrics.psnr(ref, base), metrics.ssim(ref, base)
    return {"name": name, "psnr": p, "ssim": s, "input_psnr": ip, "input_ssim": iss, "seconds": seconds}


def _method_name(method: Any, is_model: bool) -> str:
    if is_model:
        return method.name
    inner = getattr(method, "func", method)  # functools.partial
    return getattr(inner, "__name__", type(inner).__name__)


def _protocol(*, task: str, method: Any, is_model: bool, dataset: str, fallback: bool, sigma, scale,
              seed: int, clip: bool, tile, overlap: int, upsample, layouts: list[str], images) -> dict:
    p: dict[str, Any] = {
        "task": task,
        "dataset": dataset,
        "images": len(images),
        "fallback": fallback,
        "method": _method_name(method, is_model),
        "method_kind": "keras model" if is_model else "function",
        "sigma": sigma,
        "scale": scale,
        "seed": seed,
        "clip": clip,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if task in ("denoise", "deblur"):
        p["noise"] = (f"AWGN std {sigma:g}/255 added to image i with add_gaussian_noise(..., seed={seed} + i), "
                      "i.e. np.random.default_rng(seed + i); not clipped")
        p["metrics"] = "PSNR and SSIM (Gaussian window, sigma 1.5) on the full image, data_range=1"
    if task == "deblur":
        p["psf"] = {"kind": "gaussian", "sigma": degrade.DEBLUR_PSF_SIGMA, "size": degrade.DEBLUR_PSF_SIZE,
                    "boundary": "symmetric"}
    if task == "sr":
        p["upsample"] = upsample
        p["degradation"] = (f"Y of rgb2ycbcr (gray as is) of modcrop(hr, {scale}), MATLAB bicubic downscale x1/{scale} "
                            f"in float; input: {'bicubic upscale x' + str(scale) if upsample == 'pre' else 'the LR image'}")
        p["metrics"] = f"sr_metrics: PSNR and SSIM on Y, {scale} pixels shaved; input columns: bicubic baseline"
    p["output"] = "clipped to [0, 1], not rounded" if clip else "not clipped, not rounded"
    if task == "sr":
        p["channels"] = "Y"
    elif "per-channel" in layouts:  # only models have layouts
        p["channels"] = "per-channel"
    else:
        p["channels"] = "colour" if any(img.ndim == 3 and img.shape[-1] == 3 for img in images) else "gray"
    if is_model:
        p["tile"] = tile
        p["overlap"] = _tile_overlap(method, tile, overlap) if tile else None
        p["batch"] = 1
        p["backend"] = config.keras_backend()
        p["device"] = config.device_name()
    return p
