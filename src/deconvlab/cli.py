"""The command line: ``python -m deconvlab {enhance,evaluate,train,benchmark}``. Taught in chapter 4.

Every failure a user can cause prints ONE line, ``deconvlab: error: <what to do>``, on stderr and exits
with status 2 (as argparse does for usage errors); nothing is written. Output paths are checked before
any expensive work, and images are written atomically by :func:`deconvlab.io.write_image`.
``evaluate --card`` exits with status 1 when the measured PSNR differs from the card by more than the
tolerance. Set ``DECONVLAB_DEBUG=1`` to see the traceback behind an error.

Keras and the models are imported only once the arguments and the input are known to be good: a typo
costs no TensorFlow start-up, and TensorFlow's C++ start-up chatter is kept off stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# TensorFlow reads this when it is first imported; it must be set before anything imports keras.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .errors import ArgumentError, DeconvlabError, ImageTooLargeError, OutputError  # noqa: E402

PROG = "deconvlab"
TASKS = ("denoise", "sr", "deblur")
SUPPORTED_SCALES = (2, 3, 4)
SIGMA_MAX = 100.0  # on the 255 scale; beyond it the "image" is mostly noise and no card is trained for it
# 256: a 4K UHD image stays under 2 GB peak RSS on CPU (1.5 GB measured; 512 took 3.3 GB), see benchmarks/results.
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
PROGRESS_PIXELS = 1_000_000  # show a progress bar from one megapixel on
DEFAULT_DATASETS = {"denoise": "bsd68", "sr": "set5", "deblur": "set12"}
DEFAULT_BUILDERS = {"denoise": "red_net", "sr": "red_net_sr", "deblur": "red_net"}

# MATLAB rgb2ycbcr on [0, 1] images: ycbcr = offset + M @ rgb (the super-resolution protocol's Y channel).
_YCBCR_MATRIX = np.array([[65.481, 128.553, 24.966],
                          [-37.797, -74.203, 112.0],
                          [112.0, -93.786, -18.214]]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0


class UsageError(DeconvlabError):
    """A command line argparse rejected (unknown option, missing argument, bad number)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse's own error prints the usage block too)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ------------------------------------------------------------------------------------------ plumbing


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_keras(cpu_only: bool = False) -> Any:
    """Import Keras (and its backend) with TensorFlow's C++ start-up logging kept off the terminal."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    if cpu_only:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    with _quiet_stderr():
        import keras

        # The first tensor initialises the device (TensorFlow logs its CUDA probing here).
        keras.ops.convert_to_numpy(keras.ops.zeros((1,)))
    return keras


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show warnings as ``deconvlab: warning: ...`` on one line, without the source line Python adds."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"{PROG}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _fail(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _info(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)


# ------------------------------------------------------------------------------------------ validation


def check_sigma(sigma: float | None) -> float | None:
    """Noise level on the 255 scale in (0, 100], or None. Taught in chapter 4 (notebooks/04_code_example)."""
    if sigma is None:
        return None
    if not math.isfinite(sigma) or not 0.0 < sigma <= SIGMA_MAX:
        raise ArgumentError(
            f"--sigma {sigma:g} is outside (0, {SIGMA_MAX:g}]: give the noise standard deviation on the "
            "0-255 scale, e.g. --sigma 25"
        )
    return float(sigma)


def check_scale(scale: int | None) -> int | None:
    """A super-resolution factor from SUPPORTED_SCALES, or None. Taught in chapter 4 (notebooks/04_code_example)."""
    if scale is None:
        return None
    if scale not in SUPPORTED_SCALES:
        raise ArgumentError(
            f"--scale {scale} is not supported: use one of {', '.join(map(str, SUPPORTED_SCALES))}"
        )
    return int(scale)


def _check_task_args(task: str, sigma: float | None, scale: int | None) -> tuple[float | None, int | None]:
    if task not in TASKS:
        raise ArgumentError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    sigma, scale = check_sigma(sigma), check_scale(scale)
    if sigma is not None and task != "denoise":
        raise ArgumentError(f"--sigma applies to --task denoise only; drop it for --task {task}")
    if scale is not None and task != "sr":
        raise ArgumentError(f"--scale applies to --task sr only; drop it for --task {task}")
    if task == "sr" and scale is None:
        raise ArgumentError(f"--task sr needs --scale ({', '.join(map(str, SUPPORTED_SCALES))})")
    return sigma, scale


def check_output_path(path: str | os.PathLike, overwrite: bool = False, suffix: str | None = ".png") -> Path:
    """Fail early (OutputError) if ``path`` exists without overwrite, or its folder is missing or read-only.

    Taught in chapter 4 (notebooks/04_code_example).
    """
    out = Path(path).expanduser()
    if out.is_dir():
        raise OutputError(f"output {out} is a directory: pass a file name such as {out / ('result' + (suffix or ''))}")
    if suffix is not None and out.suffix.lower() != suffix:
        raise ArgumentError(f"output {out} does not end in {suffix}: the output is written as {suffix[1:].upper()}")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} exists: pass --overwrite or choose another name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        # A missing folder might have a regular file somewhere above it; name the real problem.
        blocker = next((p for p in parent.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(f"cannot write {out}: {blocker} is a file, not a folder; choose another output path")
        raise OutputError(f"cannot write {out}: the folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: {parent} is a file, not a folder; choose another output path")
    try:  # os.access says yes to root even on a read-only mount, so try for real
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to the folder {parent} ({exc.strerror or exc}): choose a writable folder"
        ) from None
    return out


def source_bit_depth(path: str | os.PathLike) -> int:
    """16 for 16-bit (or float) PNG/TIFF files, else 8: enhance keeps 16-bit inputs 16-bit."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return 8
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) > 24 and head[12:16] == b"IHDR":
        return 16 if head[24] == 16 else 8
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        try:
            import tifffile

            with tifffile.TiffFile(p) as tif:
                page = tif.pages[0]
                return 16 if page.bitspersample > 8 or page.dtype.kind == "f" else 8
        except Exception:  # an unreadable TIFF failed read_image already; this is only a hint
            return 8
    return 8


# ------------------------------------------------------------------------------------------ enhance


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` on a [0, 1] RGB image (Y in [16, 235]/255). Taught in chapter 4 (notebooks/04_code_example)."""
    return (np.asarray(image, np.float64) @ _YCBCR_MATRIX.T + _YCBCR_OFFSET).astype(np.float32)


def ycbcr_to_rgb(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`. Taught in chapter 4 (notebooks/04_code_example)."""
    inverse = np.linalg.inv(_YCBCR_MATRIX)
    return ((np.asarray(image, np.float64) - _YCBCR_OFFSET) @ inverse.T).astype(np.float32)


def _model_channels(model: Any) -> int:
    try:
        return int(model.inputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return 1


def enhance_image(
    model: Any,
    image: np.ndarray,
    task: str,
    *,
    scale: int = 1,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    progress: bool = False,
    clip: bool = True,
) -> np.ndarray:
    """Restore one image (H, W) or (H, W, 3) with a model, choosing how colour is handled.

    A gray model restores each RGB channel in turn (an image stored as RGB with R = G = B only once);
    for super-resolution it restores the Y channel and upscales Cb/Cr bicubically (the SR protocol);
    a pre-upsampling SR model gets the bicubic-upscaled image. Large images go through tiles.
    Taught in chapter 4 (notebooks/04_code_example).
    """
    from . import infer
    from .io import check_image, rgb_to_gray

    img = check_image(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    channels = _model_channels(model)
    model_factor = 1
    if task == "sr":
        model_factor = infer.model_scale(model, channels)
        if model_factor not in (1, scale):
            raise ArgumentError(
                f"the model upsamples by {model_factor}, but the scale asked for is {scale}: "
                f"pass --scale {model_factor} or weights trained for x{scale}"
            )

    def run(batch: np.ndarray) -> np.ndarray:
        """NHWC in (LR for SR), NHWC out, at the output resolution."""
        if task == "sr" and model_factor == 1:
            batch = np.stack([_bicubic_up(b, scale) for b in batch])
        if tile and max(batch.shape[1:3]) > tile:
            return infer.tile_predict(model, batch, tile=tile, overlap=overlap, progress=progress,
                                      scale=model_factor)
        return infer.predict_image(model, batch)

    if not _has_colour(img):
        plane = img if img.ndim == 2 else img[..., 0]
        if channels == 1:
            out = run(plane[None, :, :, None])[0, :, :, 0]
        else:
            out = rgb_to_gray(run(np.repeat(plane[None, :, :, None], 3, axis=-1))[0])
        if img.ndim == 3:
            out = np.repeat(out[..., None], 3, axis=-1)
    elif channels == 3:
        out = run(img[None])[0]
    elif task == "sr":
        ycc = rgb_to_ycbcr(img)
        y = run(ycc[None, :, :, :1])[0, :, :, 0]
        cbcr = _bicubic_up(ycc[..., 1:], scale)
        out = ycbcr_to_rgb(np.concatenate([y[..., None], cbcr], axis=-1))
    else:
        # A gray model on colour: the three channels go through as a batch of gray images.
        out = np.moveaxis(run(np.moveaxis(img, -1, 0)[..., None])[..., 0], 0, -1)
    out = out.astype(np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out


def _has_colour(image: np.ndarray) -> bool:
    """False for gray images and for gray stored as RGB (R = G = B), which a gray model restores once."""
    return image.ndim == 3 and not (np.array_equal(image[..., 0], image[..., 1])
                                    and np.array_equal(image[..., 0], image[..., 2]))


def _bicubic_up(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling by an integer factor to exactly scale x the size (MATLAB imresize)."""
    from . import degrade

    return degrade.upscale(image, scale).astype(np.float32)


def _resolve_weights(args: argparse.Namespace, channels: int) -> tuple[Any, dict[str, Any] | None, str]:
    """(model, card or None, label) from --weights (card id, card JSON or .keras file) or the task."""
    _import_keras()
    from . import weights

    directory = args.weights_dir
    spec = args.weights
    if spec is not None and Path(spec).suffix == ".keras":
        path = Path(spec)
        if not path.is_file():
            raise ArgumentError(f"--weights {spec}: no such .keras file; pass a card id, a card .json or a .keras file")
        return _load_keras_file(path), None, path.name
    if spec is not None:
        card = weights.read_card(spec, directory)
        if card["task"] != args.task:
            raise ArgumentError(f"card {card['id']} is for --task {card['task']}, not {args.task}: "
                                f"pass --task {card['task']} or other weights")
        if args.task == "sr" and args.scale not in weights.card_scales(card):
            raise ArgumentError(f"card {card['id']} serves {weights.card_setting(card)}, not x{args.scale}")
        if args.task == "denoise" and args.sigma is not None and card.get("sigma") is not None \
                and not math.isclose(float(card["sigma"]), args.sigma):
            warnings.warn(f"card {card['id']} was trained for sigma={card['sigma']:g}, not {args.sigma:g}",
                          UserWarning, stacklevel=2)
    else:
        card = weights.find_card(args.task, sigma=args.sigma, scale=args.scale, channels=channels,
                                 directory=directory)
    model = weights.load_pretrained(card=card, directory=directory)
    return model, card, str(card["id"])


def _load_keras_file(path: Path) -> Any:
    import keras

    from . import layers, models  # noqa: F401  (registers the custom layers for safe deserialisation)

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a bad archive; all mean "not a usable model file"
        raise ArgumentError(
            f"--weights {path} could not be loaded as a Keras model ({type(exc).__name__}: "
            f"{_one_line(exc)[:200]}); pass a .keras file saved by model.save() or a card id"
        ) from None


def cmd_enhance(args: argparse.Namespace) -> int:
    """``enhance IN OUT --task ...``: restore one image file with shipped (or given) weights."""
    from . import io

    args.sigma, args.scale = _check_task_args(args.task, args.sigma, args.scale)
    if args.tile < 0 or args.overlap < 0:
        raise ArgumentError(f"--tile {args.tile} / --overlap {args.overlap}: pass sizes >= 0 (--tile 0: no tiles)")
    if args.tile != 0 and args.tile <= 2 * args.overlap:
        # Each tile advances by tile - overlap; below 2x the overlap most of the work is thrown away.
        raise ArgumentError(f"--tile {args.tile} must be larger than twice --overlap ({args.overlap}), or 0")
    out = check_output_path(args.output, args.overwrite)
    start = time.perf_counter()
    image = io.read_image(args.input)
    scale = args.scale or 1
    if image.shape[0] * image.shape[1] * scale * scale > io.max_pixels():
        raise ImageTooLargeError(
            f"the x{scale} result would have {image.shape[0] * scale}x{image.shape[1] * scale} pixels, more than "
            f"the limit {io.max_pixels():,}: crop the input or raise DECONVLAB_MAX_PIXELS"
        )
    bit_depth = args.bit_depth or source_bit_depth(args.input)
    model, _card, label = _resolve_weights(args, channels=3 if _has_colour(image) else 1)
    pixels = image.shape[0] * image.shape[1] * scale * scale
    result = enhance_image(model, image, args.task, scale=scale, tile=args.tile or None, overlap=args.overlap,
                           progress=not args.quiet and pixels >= PROGRESS_PIXELS)
    io.write_image(out, result, bit_depth=bit_depth, overwrite=args.overwrite)
    h, w = result.shape[:2]
    _info(f"wrote {out} ({w}x{h} {'RGB' if result.ndim == 3 else 'gray'}, {bit_depth}-bit) with {label} "
          f"in {time.perf_counter() - start:.1f} s", args.quiet)
    return 0


# ------------------------------------------------------------------------------------------ evaluate


def _dataset_mode(task: str, channels: int) -> str | None:
    if task == "sr":
        return None  # the SR protocol takes Y of colour images and gray images as they are
    return "rgb" if channels == 3 else "gray"


def run_evaluation(model: Any, task: str, dataset_name: str, *, channels: int, sigma: float | None,
                   scale: int | None, seed: int = 0, limit: int | None = None, tile: int | None = None) -> Any:
    """Load a test set (no offline fallback) and evaluate a model on it; returns the EvalResult."""
    from . import data, evaluate

    dataset = data.load_dataset(dataset_name, mode=_dataset_mode(task, channels), limit=limit, fallback=False)
    kwargs: dict[str, Any] = {"seed": seed, "tile": tile}
    if task == "denoise":
        kwargs["sigma"] = sigma
    if task == "sr":
        kwargs["scale"] = scale
    return evaluate.evaluate(model, dataset, task=task, **kwargs)


def _mean(result: Any, key: str) -> float:
    mean = result.mean
    return float(mean[key] if isinstance(mean, dict) else getattr(mean, key))


def _card_metric(card: dict[str, Any], dataset: str, sigma: float | None, scale: int | None,
                 limit: int | None, seed: int = 0) -> dict[str, Any] | None:
    """The card's metrics entry measured with the same data set, setting, image limit and noise seed."""
    for entry in card.get("metrics") or []:
        protocol = entry.get("protocol") if isinstance(entry.get("protocol"), dict) else {}
        if protocol.get("seed") is not None and int(protocol["seed"]) != seed:
            continue
        if str(entry.get("dataset", "")).lower() != dataset.lower():
            continue
        if entry.get("sigma") is not None and sigma is not None and not math.isclose(entry["sigma"], sigma):
            continue
        if entry.get("scale") is not None and scale is not None and int(entry["scale"]) != scale:
            continue
        if entry.get("limit") != limit:
            continue
        return entry
    return None


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: PSNR/SSIM of shipped weights on a test set; with --card, check against the card."""
    if args.card is None and args.task is None:
        raise ArgumentError("pass --card ID, or --task with --sigma/--scale, to choose the weights")
    if args.task is not None:
        args.sigma, args.scale = _check_task_args(args.task, args.sigma, args.scale)
    else:
        args.sigma, args.scale = check_sigma(args.sigma), check_scale(args.scale)
    if args.limit is not None and args.limit < 1:
        raise ArgumentError(f"--limit {args.limit} must be >= 1")
    if args.csv is not None:
        check_output_path(args.csv, overwrite=True, suffix=".csv")
    _import_keras()
    from . import weights

    if args.card is not None:
        card = weights.read_card(args.card, args.weights_dir)
        if args.task is not None and card["task"] != args.task:
            raise ArgumentError(f"card {card['id']} is for --task {card['task']}, not {args.task}")
    else:
        card = weights.find_card(args.task, sigma=args.sigma, scale=args.scale, directory=args.weights_dir)
    task = card["task"]
    if (args.sigma is not None and task != "denoise") or (args.scale is not None and task != "sr"):
        raise ArgumentError(f"card {card['id']} is for --task {task}: drop --sigma / --scale that do not apply")
    sigma = args.sigma if args.sigma is not None else card.get("sigma")
    scales = weights.card_scales(card)
    scale = args.scale if args.scale is not None else (scales[0] if len(scales) == 1 else None)
    if task == "denoise" and sigma is None:
        raise ArgumentError(f"card {card['id']} is blind ({weights.card_setting(card)}): pass --sigma")
    if task == "sr" and scale is None:
        raise ArgumentError(f"card {card['id']} serves {weights.card_setting(card)}: pass --scale")
    if task == "sr" and scale not in scales:
        raise ArgumentError(f"card {card['id']} serves {weights.card_setting(card)}, not x{scale}")
    dataset = args.dataset or next(
        (m["dataset"] for m in card.get("metrics") or []), DEFAULT_DATASETS[task])
    model = weights.load_pretrained(card=card, directory=args.weights_dir)
    result = run_evaluation(model, task, dataset, channels=weights.card_channels(card), sigma=sigma,
                            scale=scale, seed=args.seed, limit=args.limit, tile=args.tile or None)
    psnr = _mean(result, "psnr")
    print(result.to_markdown())
    print(f"{card['id']}: {result.summary()}")
    if args.csv is not None:
        result.to_csv(args.csv)
        print(f"wrote {args.csv}")
    if args.card is None:
        return 0
    entry = _card_metric(card, dataset, sigma, scale, args.limit, args.seed)
    if entry is None:
        print(f"card {card['id']} has no number for {dataset} with these settings; nothing to compare")
        return 0
    diff = psnr - float(entry["psnr"])
    if abs(diff) > args.tolerance:
        _fail(f"PSNR {psnr:.3f} dB on {dataset} differs from the card's {float(entry['psnr']):.3f} dB by "
              f"{diff:+.3f} dB (tolerance {args.tolerance:g}); check the weights, data and backend")
        return 1
    print(f"matches the card: {psnr:.3f} dB vs {float(entry['psnr']):.3f} dB (tolerance {args.tolerance:g} dB)")
    return 0


# ------------------------------------------------------------------------------------------ train


def _builder_kwargs(builder: str, task: str, channels: int, scale: int | None, upsample: str,
                    profile: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Builder arguments: the profile's depth/width where the builder takes them, then --arch-kwargs."""
    import inspect

    from . import models

    if builder not in models.BUILDERS:
        raise ArgumentError(f"unknown --arch {builder!r}: use one of {', '.join(models.BUILDERS)}")
    params = inspect.signature(models.BUILDERS[builder]).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {"channels": channels}
    if "depth" in params or takes_any:
        kwargs["depth"] = profile.depth
    if "width" in params or takes_any:
        kwargs["width"] = profile.width
    if task == "sr":
        kwargs["scale"] = scale
        if "upsample" in params:
            kwargs["upsample"] = upsample
    kwargs.update(extra)
    return kwargs


def _dataset_digest(names: Sequence[str]) -> dict[str, str]:
    """sha256 over each data set's registry hashes, so a card names exactly the files it was trained on."""
    import hashlib

    from . import data

    try:
        reg = data.registry()
    except DeconvlabError:
        return {}
    out = {}
    for name in names:
        info = reg.get(name)
        if info is None:
            continue
        digest = hashlib.sha256("".join(sorted(f.sha256 for f in info.files)).encode()).hexdigest()
        out[name] = digest
    return out


def _card_history(history: Any) -> dict[str, list[float | None]]:
    """Per-epoch lists of a keras History, NaN as None (JSON has no NaN)."""
    return {str(k): [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]
            for k, values in history.history.items()}


def _parse_scales(text: str | None, task: str, scale: int | None, upsample: str) -> list[int] | None:
    """``--scales 2,3,4``: one pre-upsampling SR model for several factors (VDSR's multi-scale training)."""
    if text is None:
        return None
    if task != "sr" or scale is not None or upsample != "pre":
        raise ArgumentError("--scales replaces --scale and needs --task sr with --upsample pre")
    try:
        scales = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise ArgumentError(f"--scales {text!r}: give factors separated by commas, e.g. 2,3,4") from None
    if len(scales) < 2 or any(check_scale(k) != k for k in scales):
        raise ArgumentError(f"--scales {text!r}: give two or more of {SUPPORTED_SCALES}, e.g. 2,3,4")
    return scales


def _multiscale_degradation(per_scale: list) -> Callable:
    """Each batch is degraded at one factor drawn from the batch's own generator (so runs repeat exactly)."""

    def degrade(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return per_scale[int(rng.integers(len(per_scale)))](batch, rng)

    return degrade


def _deadline_callback(seconds: float):
    """A Keras callback that ends training after the first epoch that finishes past ``seconds`` of wall time."""
    import keras

    class Deadline(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fired = False
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.start > seconds:
                self.fired = True
                self.model.stop_training = True

    return Deadline()


def _fit_verbosity(quiet: bool) -> int | str:
    """Progress bars on a terminal; one line per epoch in a log file, where bars would fill it with updates."""
    if quiet:
        return 0
    return "auto" if sys.stdout.isatty() else 2


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: train a model with a profile, save weights + card (with this command line) in --out."""
    scales = _parse_scales(args.scales, args.task, args.scale, args.upsample)
    if scales is None:
        args.sigma, args.scale = _check_task_args(args.task, args.sigma, args.scale)
    elif args.sigma is not None:
        raise ArgumentError("--sigma applies to --task denoise only; drop it for --task sr")
    sigma_range = None
    if args.sigma_range is not None:
        if args.task != "denoise" or args.sigma is not None:
            raise ArgumentError("--sigma-range (blind denoising) replaces --sigma and needs --task denoise")
        lo, hi = args.sigma_range
        if not 0 <= lo < hi <= SIGMA_MAX:
            raise ArgumentError(f"--sigma-range {lo:g} {hi:g}: need 0 <= LO < HI <= {SIGMA_MAX:g}")
        sigma_range = (float(lo), float(hi))
    elif args.task == "denoise" and args.sigma is None:
        raise ArgumentError("--task denoise needs --sigma S (or --sigma-range LO HI for a blind model)")
    if args.workers < 1:
        raise ArgumentError(f"--workers {args.workers}: pass 1 or more data-loading threads")
    try:
        extra = json.loads(args.arch_kwargs) if args.arch_kwargs else {}
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"--arch-kwargs is not JSON ({exc.msg}): e.g. '{{\"fusion\": \"concat\"}}'") from None
    if not isinstance(extra, dict):
        raise ArgumentError("--arch-kwargs must be a JSON object, e.g. '{\"fusion\": \"concat\"}'")

    from .weights import default_card_id

    card_id = args.id or default_card_id(args.task, args.sigma, args.scale, sigma_range, args.channels)
    if scales is not None and not args.id:
        card_id = "sr-x" + "-".join(str(k) for k in scales) + ("-rgb" if args.channels == 3 else "")
    out_dir = Path(args.out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file: pass a folder for the weights and the card")
    if out_dir.is_dir():
        check_output_path(out_dir / f"{card_id}.json", overwrite=args.overwrite, suffix=".json")
    else:
        check_output_path(out_dir, overwrite=False, suffix=None)  # its parent must be writable

    _import_keras()
    from . import config, data, degrade, models, train, weights

    profile = config.get_profile(args.profile)
    config.set_seed(args.seed)
    builder = args.arch or DEFAULT_BUILDERS[args.task]
    kwargs = _builder_kwargs(builder, args.task, args.channels, args.scale, args.upsample, profile, extra)
    with train.precision_policy(args.mixed_precision, profile) as precision:
        model = models.build_model(builder, **kwargs)
    post = args.task == "sr" and (builder == "fsrcnn" or kwargs.get("upsample") == "post")

    mode = "rgb" if args.channels == 3 else "gray"
    train_set = data.load_dataset(args.train_dataset, mode=mode, limit=args.train_limit or profile.train_images)
    val_name = args.val_dataset or DEFAULT_DATASETS[args.task]
    val_set = data.load_dataset(val_name, mode=mode, limit=profile.test_images)
    if args.task == "denoise":
        degradation = degrade.noise_degradation(sigma_range if sigma_range else args.sigma)
    elif args.task == "sr" and scales is not None:
        degradation = _multiscale_degradation([degrade.sr_degradation(k) for k in scales])
    elif args.task == "sr":
        degradation = degrade.sr_degradation(args.scale, pre_upsample=not post)
    else:
        psf = degrade.gaussian_psf(degrade.DEBLUR_PSF_SIGMA, degrade.DEBLUR_PSF_SIZE)
        degradation = degrade.blur_degradation(psf, degrade.DEBLUR_NOISE_SIGMA)
    steps = args.steps or profile.steps_per_epoch
    patch_args = {"patch_size": args.patch_size or profile.patch_size, "batch_size": profile.batch_size,
                  "channels": args.channels, "scale": args.scale if post else 1}
    train_data = data.PatchDataset(train_set.images, degradation, steps_per_epoch=steps, seed=args.seed,
                                   workers=args.workers, **patch_args)
    val_data = data.PatchDataset(val_set.images, degradation, steps_per_epoch=max(1, steps // 10),
                                 seed=args.seed + 1, augment=False, **patch_args)
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = out_dir / f"{card_id}{weights.HISTORY_SUFFIX}"
    start = time.perf_counter()
    deadline = _deadline_callback(args.time_limit * 60) if args.time_limit else None
    history = train.train(model, train_data, val_data, profile=profile, epochs=args.epochs,
                          steps_per_epoch=steps, learning_rate=args.learning_rate, history_path=history_path,
                          mixed_precision=args.mixed_precision, verbose=_fit_verbosity(args.quiet),
                          callbacks=[deadline] if deadline else ())
    wall = time.perf_counter() - start

    fields: dict[str, Any] = {
        "id": card_id,
        "task": args.task,
        # Every argument, defaults included: the card must rebuild this model even if a default changes later.
        "architecture": models.model_spec(model) or {"builder": builder, "kwargs": kwargs},
        "command": shlex.join(["python", "-m", PROG, *args.argv]),
        "profile": profile.name,
        "seed": args.seed,
        "precision": precision,
        "wall_time_s": round(wall, 1),
        "epochs_run": len(history.history.get("loss", [])),
        "stopped_by_time_limit": bool(deadline and deadline.fired),
        "history": _card_history(history),
        "data": {"train": train_set.name, "validation": val_set.name,
                 "fallback": bool(train_set.is_fallback or val_set.is_fallback),
                 "registry_sha256": _dataset_digest([train_set.name, val_set.name])},
    }
    if args.task == "denoise":
        fields.update({"sigma": args.sigma} if sigma_range is None else {"sigma_range": list(sigma_range)})
    if args.task == "sr" and scales is not None:
        fields.update({"scales": scales, "upsample": "pre"})
    elif args.task == "sr":
        fields.update({"scale": args.scale, "upsample": "post" if post else "pre"})
    card = weights.save_pretrained(model, fields, out_dir)

    # Metrics come from the weights as stored (float16), not the in-memory float32 model.
    shipped = weights.load_pretrained(card=card)
    metrics, eval_names = [], args.eval_datasets.split(",") if args.eval_datasets else [val_name]
    settings = [(n.strip(), k) for n in eval_names if n.strip() for k in (scales or [args.scale])]
    for name, eval_scale in settings:
        eval_sigma = args.sigma if sigma_range is None else 25.0
        result = run_evaluation(shipped, args.task, name, channels=args.channels, sigma=eval_sigma,
                                scale=eval_scale, seed=0, limit=args.eval_limit)
        protocol = {k: v for k, v in getattr(result, "protocol", {}).items() if k != "date"}
        entry = {"dataset": name, "protocol": protocol,
                 "psnr": round(_mean(result, "psnr"), 4), "ssim": round(_mean(result, "ssim"), 5),
                 "limit": args.eval_limit}
        if args.task == "denoise":
            entry["sigma"] = eval_sigma
        if args.task == "sr":
            entry["scale"] = eval_scale
        metrics.append(entry)
        _info(f"{name}{f' x{eval_scale}' if eval_scale else ''}: PSNR {entry['psnr']:.2f} dB, SSIM {entry['ssim']:.4f}", args.quiet)
    card["metrics"] = metrics
    card["anchors"] = [dict(a, scale=k) if k else a for k in (scales or [args.scale]) for a in weights.anchors_for(
        args.task, args.sigma, k, sorted({m["dataset"] for m in metrics}))]
    weights.write_card(card, card["_path"])
    _info(f"wrote {card['_path']} and {Path(card['_path']).parent / card['weights_file']} "
          f"({card['params']:,} parameters, {wall:.0f} s)", args.quiet)
    return 0


# ------------------------------------------------------------------------------------------ benchmark


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``benchmark``: seconds per megapixel of enhance on synthetic images, as a Markdown table."""
    if args.task == "denoise" and args.sigma is None:
        args.sigma = 25.0  # the book's standard noise level; speed does not depend on it
    args.sigma, args.scale = _check_task_args(args.task, args.sigma, args.scale)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise ArgumentError(f"--sizes {args.sizes!r}: give side lengths separated by commas, e.g. 256,512") from None
    if not sizes or min(sizes) < 1:
        raise ArgumentError(f"--sizes {args.sizes!r}: give positive side lengths, e.g. 256,512,1024")
    if args.repeat < 1:
        raise ArgumentError(f"--repeat {args.repeat} must be >= 1")
    keras = _import_keras(cpu_only=args.device == "cpu")
    from . import config, models

    if args.arch is not None:
        model = models.build_model(args.arch, **_builder_kwargs(
            args.arch, args.task, args.channels, args.scale, "pre", config.get_profile(args.profile), {}))
        label = f"{args.arch} (untrained; speed does not depend on the weights)"
    else:
        model, _card, label = _resolve_weights(args, channels=args.channels)
    scale = args.scale or 1
    rng = np.random.default_rng(0)
    shape = (lambda n: (n, n)) if args.channels == 1 else (lambda n: (n, n, 3))
    enhance_image(model, rng.random(shape(min(sizes)), dtype=np.float32), args.task, scale=scale,
                  tile=args.tile or None)  # warm-up: graph tracing is not speed
    rows = []
    for n in sizes:
        image = rng.random(shape(n), dtype=np.float32)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            enhance_image(model, image, args.task, scale=scale, tile=args.tile or None)
            times.append(time.perf_counter() - t0)
        seconds = float(np.median(times))
        megapixels = n * n * scale * scale / 1e6
        rows.append((n, megapixels, seconds, seconds / megapixels))
    print(f"enhance speed, {args.task}, {label}; backend {keras.backend.backend()}, {config.device_name()}, "
          f"tile {args.tile or 'none'}, median of {args.repeat}")
    print("\n| input size | output Mpx | seconds | s / Mpx |\n|---|---:|---:|---:|")
    for n, mp, seconds, per in rows:
        print(f"| {n}x{n} | {mp:.3f} | {seconds:.3f} | {per:.2f} |")
    return 0


# ------------------------------------------------------------------------------------------ parser


def _add_task_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--task", choices=TASKS, required=required, help="what to restore")
    p.add_argument("--sigma", type=float, help="noise level on the 0-255 scale, in (0, 100] (denoise)")
    p.add_argument("--scale", type=int, help=f"upscaling factor, one of {SUPPORTED_SCALES} (sr)")


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="CARD_OR_PATH",
                   help="a card id, a card .json or a .keras file (default: the shipped card for the task)")
    p.add_argument("--weights-dir", type=Path, metavar="DIR",
                   help="folder of model cards and weights (default: <repo>/data/weights)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m deconvlab``. Taught in chapter 4 (notebooks/04_code_example)."""
    parser = _Parser(prog=PROG, description="Image restoration with the book's conv/deconv networks.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{enhance,evaluate,train,benchmark}")

    p = sub.add_parser("enhance", help="restore one image file (denoise, super-resolve or deblur)",
                       description="Restore one image with the shipped weights; any size, gray or RGB, 8/16-bit.")
    p.add_argument("input", help="image file (PNG, BMP, TIFF, JPEG)")
    p.add_argument("output", help="PNG file to write")
    _add_task_args(p)
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile side for large images (default {DEFAULT_TILE}; 0: whole image at once)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in pixels")
    p.add_argument("--bit-depth", type=int, choices=(8, 16),
                   help="bits per sample of the PNG (default: 16 for 16-bit inputs, else 8)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _add_weights_args(p)
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser("evaluate", help="PSNR/SSIM of weights on a test set (and check a card's numbers)",
                       description="Evaluate weights on a test set; with --card, exit 1 if the mean PSNR "
                                   "differs from the card by more than --tolerance.")
    p.add_argument("--card", metavar="ID", help="model card id (or .json path) to evaluate and check")
    _add_task_args(p, required=False)
    p.add_argument("--dataset", help="test set name, e.g. bsd68, set12, cbsd68, set5, set14")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--seed", type=int, default=0, help="noise seed (image i uses seed + i)")
    p.add_argument("--tile", type=int, default=0, help="tile side (default 0: whole images)")
    p.add_argument("--csv", metavar="PATH", help="also write the per-image table as CSV")
    p.add_argument("--tolerance", type=float, default=0.02, help="allowed PSNR difference to the card, dB")
    p.add_argument("--weights-dir", type=Path, metavar="DIR",
                   help="folder of model cards and weights (default: <repo>/data/weights)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model and save its weights and model card",
                       description="Train with a profile; writes <id>.weights.npz, <id>.json and "
                                   "<id>.history.json into --out.")
    _add_task_args(p)
    p.add_argument("--sigma-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="blind denoising: sigma drawn uniformly from [LO, HI] per image")
    p.add_argument("--profile", choices=("quick", "workshop", "paper"), help="run profile (default: $DECONVLAB_PROFILE)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the weights and the card")
    p.add_argument("--id", help="card id (default from the task, e.g. denoise-sigma25)")
    p.add_argument("--arch", help="builder in deconvlab.models (default: red_net, red_net_sr for sr)")
    p.add_argument("--arch-kwargs", metavar="JSON", help="builder arguments, e.g. '{\"fusion\": \"concat\"}'")
    p.add_argument("--upsample", choices=("pre", "post"), default="pre", help="SR: bicubic input or learned upsampling")
    p.add_argument("--scales", metavar="K,K,...", help="SR: one multi-scale model for these factors, e.g. 2,3,4")
    p.add_argument("--time-limit", type=float, metavar="MIN",
                   help="stop after the epoch that ends past MIN minutes (recorded in the card)")
    p.add_argument("--workers", type=int, default=1, help="threads preparing training batches (GPU runs: 4-8)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1: gray / Y channel, 3: RGB")
    p.add_argument("--epochs", type=int, help="override the profile's epochs")
    p.add_argument("--steps", type=int, help="override the profile's steps per epoch")
    p.add_argument("--patch-size", type=int, help="override the profile's patch size")
    p.add_argument("--learning-rate", type=float, help="override the profile's learning rate")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="override the profile's mixed precision")
    p.add_argument("--train-dataset", default="train400", help="training set (default train400)")
    p.add_argument("--train-limit", type=int, help="only the first N training images")
    p.add_argument("--val-dataset", help="validation set (default: bsd68 / set5 / set12 by task)")
    p.add_argument("--eval-datasets", help="comma-separated test sets for the card (default: the validation set)")
    p.add_argument("--eval-limit", type=int, help="only the first N test images (recorded in the card)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing card with the same id")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("benchmark", help="seconds per megapixel of enhance on synthetic images",
                       description="Time enhance on random images of the given sizes (CPU by default).")
    _add_task_args(p, required=False)
    p.set_defaults(task="denoise")
    p.add_argument("--sizes", default="256,512,1024", help="square image sides, comma-separated")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per size (the median is reported)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile side (0: whole image)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1, help="gray or RGB test images")
    p.add_argument("--device", choices=("cpu", "default"), default="cpu",
                   help="cpu hides GPUs (set before Keras starts); default uses what Keras finds")
    p.add_argument("--arch", help="time an untrained builder from deconvlab.models instead of shipped weights")
    p.add_argument("--profile", choices=("quick", "workshop", "paper"), help="sizes of the untrained --arch")
    _add_weights_args(p)
    p.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m deconvlab``; returns the exit status. Taught in chapter 4 (notebooks/04_code_example)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = os.environ.get("DECONVLAB_DEBUG", "").strip() not in ("", "0")
    try:
        with _one_line_warnings():
            args = parser.parse_args(argv)
            if args.command is None:
                raise UsageError(f"choose a command: enhance, evaluate, train or benchmark (see `{PROG} --help`)")
            args.argv = argv
            if getattr(args, "weights_dir", None) is not None:
                args.weights_dir = Path(args.weights_dir).expanduser()
            return int(args.func(args))
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written")
        return 130
    except (DeconvlabError, OSError) as exc:
        if debug:
            raise
        if isinstance(exc, DeconvlabError):
            _fail(str(exc))
        else:  # e.g. a disk that filled up mid-run
            where = f" ({exc.filename})" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}; check the path, free space and permissions")
        return 2
    except MemoryError:
        _fail("out of memory: pass a smaller --tile, or crop the image")
        return 2
