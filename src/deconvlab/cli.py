"""The command line: ``python -m deconvlab {enhance,evaluate,train,benchmark,fetch,models}``. Taught in chapter 4.

Every failure a user can cause prints ONE line, ``deconvlab: error: <what to do>``, on stderr and exits
with status 2 (as argparse does for usage errors); nothing is written. Output paths are checked before
any expensive work, images are written atomically by :func:`deconvlab.io.write_image`, and ``train`` works in
a temporary folder whose files are moved into ``--out`` only when everything succeeded.
``evaluate --card`` exits with status 1 when the measured PSNR differs from the card by more than the
tolerance. Anything unexpected (a bug) is one line too, with status 70 (``EX_SOFTWARE``); Ctrl-C at any point
exits 130. Set ``DECONVLAB_DEBUG=1`` to see the traceback behind an error.

Keras and the models are imported only once the arguments and the input are known to be good: a typo
costs no TensorFlow start-up, and TensorFlow's C++ start-up chatter is kept off stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

# TensorFlow reads this when it is first imported; it must be set before anything imports keras.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from . import tasks  # noqa: E402
from .config import DEFAULT_TILE, import_keras  # noqa: E402
from .errors import ArgumentError, DeconvlabError, ImageTooLargeError, OutputError  # noqa: E402
from .io import check_output_path  # noqa: E402

PROG = "deconvlab"
COMMANDS = ("enhance", "evaluate", "train", "benchmark", "fetch", "models")
PROGRESS_PIXELS = 1_000_000  # show a progress bar from one megapixel on
EX_SOFTWARE = 70  # sysexits.h: an internal error (a bug), told apart from the user errors' 2
EX_INTERRUPTED = 130  # 128 + SIGINT, what shells expect from an interrupted program
SEED_MAX = 2**32 - 1  # NumPy's legacy seeding (which keras.utils.set_random_seed calls) takes no more
MAX_WORKERS = 256  # threads; more is a typo, and each one holds a batch in memory
# A card id becomes file names inside --out: one path component, no hidden files, no "..".
CARD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


class UsageError(DeconvlabError):
    """A command line argparse rejected (unknown option, missing argument, bad number)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse's own error prints the usage block too)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ------------------------------------------------------------------------------------------ plumbing


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


def _debug() -> bool:
    return os.environ.get("DECONVLAB_DEBUG", "").strip() not in ("", "0")


class _Interrupts:
    """Counts SIGINTs while a command runs, so a Ctrl-C that a library swallows (a bare ``except:`` during
    TensorFlow's start-up, a worker thread) still ends the run: :meth:`checkpoint` raises it again before
    anything is written, and :func:`main` reports it at the end."""

    def __init__(self) -> None:
        self.count = 0
        self.wrote: list[Path] = []  # outputs already in place, for an honest "interrupted" line
        self.note = "nothing was written"

    def handler(self, signum, frame) -> None:
        self.count += 1
        raise KeyboardInterrupt

    def checkpoint(self) -> None:
        if self.count:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread; Python's default then applies
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        stderr = sys.stderr
        # A KeyboardInterrupt raised inside a library's C-to-Python callback (TensorFlow's nest.flatten) can make
        # the library print a traceback of its own on the way out; after a Ctrl-C only main()'s line is shown.
        sys.stderr = _MutedAfterInterrupt(stderr, self)
        try:
            yield
        finally:
            sys.stderr = stderr
            signal.signal(signal.SIGINT, previous)

    def message(self) -> str:
        if self.wrote:
            return f"interrupted after writing {', '.join(map(str, self.wrote))}"
        return f"interrupted; {self.note}"


class _MutedAfterInterrupt:
    """sys.stderr that drops what is written once a SIGINT has arrived (see :meth:`_Interrupts.watching`)."""

    def __init__(self, stream: Any, state: _Interrupts) -> None:
        self._stream, self._state = stream, state

    def write(self, text: str) -> int:
        return len(text) if self._state.count else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_STATE = _Interrupts()


def _start_keras(cpu_only: bool = False) -> Any:
    """import_keras, whose start-up log (replayed on a failure, a Ctrl-C included) only DECONVLAB_DEBUG shows:
    every failure here is reported in one line by main()."""
    replay = StringIO()
    try:
        with contextlib.redirect_stderr(replay):
            keras = import_keras(cpu_only=cpu_only)
    except BaseException:
        if _debug():
            sys.stderr.write(replay.getvalue())
        raise
    _STATE.checkpoint()
    return keras


def _count(option: str, value: int | None, minimum: int = 1, maximum: int | None = None) -> int | None:
    """An integer option that, when given, is in [minimum, maximum]; 0 never silently means "the default"."""
    if value is None:
        return None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise ArgumentError(f"{option} {value}: pass an integer >= {minimum}{upper}")
    return value


def _positive(option: str, value: float | None, allow_zero: bool = False) -> float | None:
    """A float option that, when given, is finite and > 0 (>= 0 with ``allow_zero``)."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ArgumentError(f"{option} {value:g}: pass a finite number {'>=' if allow_zero else '>'} 0")
    return value


def _seed(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise ArgumentError(f"--seed {value}: pass an integer from 0 to {SEED_MAX} (2**32 - 1)")
    return value


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


# ------------------------------------------------------------------------------------------ enhance


def cmd_enhance(args: argparse.Namespace) -> int:
    """``enhance IN OUT --task ...``: restore one image file with shipped (or given) weights."""
    from . import io

    args.sigma, args.scale = tasks.check_task_args(args.task, args.sigma, args.scale)
    for option, value in (("--tile", args.tile), ("--overlap", args.overlap)):
        if value is not None and value < 0:
            raise ArgumentError(f"{option} {value}: pass sizes >= 0 (--tile 0: no tiles)")
    if args.overlap is not None and args.tile != 0 and args.tile <= 2 * args.overlap:
        # Each tile advances by tile - overlap; below 2x the overlap most of the work is thrown away.
        raise ArgumentError(f"--tile {args.tile} must be larger than twice --overlap ({args.overlap}), or 0")
    if _same_file(args.input, args.output):
        # --overwrite is for earlier results; replacing the only copy of the input is never what was meant.
        raise OutputError(f"output {args.output} is the input file: choose another name (enhance never replaces "
                          "its input, even with --overwrite)")
    out = check_output_path(args.output, args.overwrite)
    start = time.perf_counter()
    image = io.read_image(args.input)
    scale = args.scale or 1
    if image.shape[0] * image.shape[1] * scale * scale > io.max_pixels():
        raise ImageTooLargeError(
            f"the x{scale} result would have {image.shape[0] * scale}x{image.shape[1] * scale} pixels, more than "
            f"the limit {io.max_pixels():,}: crop the input or raise DECONVLAB_MAX_PIXELS"
        )
    bit_depth = args.bit_depth or io.source_bit_depth(args.input)
    _start_keras()
    from .infer import enhance, has_colour
    from .recipes import resolve_weights

    model, card, label = resolve_weights(args.weights, args.task, sigma=args.sigma, scale=args.scale,
                                         channels=3 if has_colour(image) else 1, directory=args.weights_dir)
    if args.overlap is None and args.tile and max(image.shape[:2]) * scale > args.tile:
        _check_exact_overlap(model, label, args.tile)
    if args.task == "denoise" and args.sigma is None and not args.quiet:
        blind = card is not None and card.get("sigma_range") is not None
        _info(f"estimated noise sigma {_estimate_sigma(image):.1f} (0-255 scale); using "
              f"{'the blind model ' if blind else ''}{label}")
    pixels = image.shape[0] * image.shape[1] * scale * scale
    # overlap None: tile_predict derives the exact one (twice the receptive-field radius) from the model
    result = enhance(model, image, args.task, scale=scale, tile=args.tile or None, overlap=args.overlap,
                     progress=not args.quiet and pixels >= PROGRESS_PIXELS)
    _STATE.checkpoint()
    io.write_image(out, result, bit_depth=bit_depth, overwrite=args.overwrite)
    _STATE.wrote.append(out)
    h, w = result.shape[:2]
    _info(f"wrote {out} ({w}x{h} {'RGB' if result.ndim == 3 else 'gray'}, {bit_depth}-bit) with {label} "
          f"in {time.perf_counter() - start:.1f} s", args.quiet)
    return 0


def _check_exact_overlap(model: Any, label: str, tile: int) -> None:
    """One-line error unless ``tile`` exceeds twice the overlap that tiles ``model`` exactly (its stride grid kept)."""
    from .infer import default_overlap, tiling_geometry

    geometry = tiling_geometry(model)
    if geometry is None:
        raise ArgumentError(f"cannot read the receptive field of {label} from its layers, so no tile overlap can be "
                            "derived: pass --overlap N (e.g. 64) or --tile 0")
    overlap, stride = default_overlap(model), geometry[1]
    least = -(-(2 * overlap + 1) // stride) * stride
    if tile < least:
        raise ArgumentError(f"--tile {tile} is too small for {label}: its receptive field needs an overlap of "
                            f"{overlap} pixels, so pass --tile {least} or more, --tile 0 (no tiles), or a smaller "
                            "--overlap (seams then blended, not exact)")


def _estimate_sigma(image: Any) -> float:
    """The noise standard deviation on the 0-255 scale (skimage's wavelet estimate; RGB: mean of the channels)."""
    from skimage.restoration import estimate_sigma

    colour = image.ndim == 3
    return 255.0 * float(estimate_sigma(image, channel_axis=-1 if colour else None, average_sigmas=colour))


# ------------------------------------------------------------------------------------------ evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: PSNR/SSIM of shipped weights on a test set; with --card, check against the card."""
    if args.card is None and args.task is None:
        raise ArgumentError("pass --card ID, or --task with --sigma/--scale, to choose the weights")
    if args.task is not None:
        args.sigma, args.scale = tasks.check_task_args(args.task, args.sigma, args.scale)
    else:
        args.sigma, args.scale = tasks.check_sigma(args.sigma), tasks.check_scale(args.scale)
    if args.limit is not None and args.limit < 1:
        raise ArgumentError(f"--limit {args.limit} must be >= 1")
    _seed(args.seed)
    _count("--tile", args.tile, minimum=0)
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        # NaN compares False with everything: "abs(diff) > nan" would report a match for any weights.
        raise ArgumentError(f"--tolerance {args.tolerance:g}: pass a finite number of dB >= 0, e.g. 0.02")
    if args.csv is not None:
        check_output_path(args.csv, overwrite=True, suffix=".csv")
    _start_keras()
    from . import recipes, weights

    card, sigma, scale = recipes.evaluation_card(args.card, args.task, args.sigma, args.scale, args.weights_dir)
    task = card["task"]
    dataset = args.dataset or next((m["dataset"] for m in card.get("metrics") or []), tasks.DEFAULT_DATASETS[task])
    model = weights.load_pretrained(card=card, directory=args.weights_dir)
    result = recipes.run_evaluation(model, task, dataset, channels=weights.card_channels(card), sigma=sigma,
                                    scale=scale, seed=args.seed, limit=args.limit, tile=args.tile or None)
    psnr = result.mean_psnr
    print(result.to_markdown())
    print(f"{card['id']}: {result.summary()}")
    if args.csv is not None:
        _STATE.checkpoint()
        result.to_csv(args.csv)
        _STATE.wrote.append(Path(args.csv))
        print(f"wrote {args.csv}")
    if args.card is None:
        return 0
    entry = recipes.card_metric(card, dataset, sigma, scale, args.limit, args.seed)
    if entry is None:
        print(f"card {card['id']} has no number for {dataset} with these settings; nothing to compare")
        return 0
    card_psnr = float(entry["psnr"])
    if abs(psnr - card_psnr) > args.tolerance:
        _fail(f"PSNR {psnr:.3f} dB on {dataset} differs from the card's {card_psnr:.3f} dB by {psnr - card_psnr:+.3f} "
              f"dB (tolerance {args.tolerance:g}); check the weights, data and backend")
        return 1
    print(f"matches the card: {psnr:.3f} dB vs {card_psnr:.3f} dB (tolerance {args.tolerance:g} dB)")
    return 0


# ------------------------------------------------------------------------------------------ train


def _train_recipe(args: argparse.Namespace) -> Any:
    """The CardRecipe of ``train``'s options, checked before Keras starts."""
    from .recipes import CardRecipe

    if args.scales is not None and (args.task != "sr" or args.scale is not None or args.upsample != "pre"):
        raise ArgumentError("--scales replaces --scale and needs --task sr with --upsample pre")
    scales = None if args.scales is None else tasks.parse_scales(args.scales)
    if scales is None:
        args.sigma, args.scale = tasks.check_task_args(args.task, args.sigma, args.scale)
    elif args.sigma is not None:
        raise ArgumentError("--sigma applies to --task denoise only; drop it for --task sr")
    if args.sigma_range is not None and (args.task != "denoise" or args.sigma is not None):
        raise ArgumentError("--sigma-range (blind denoising) replaces --sigma and needs --task denoise")
    sigma_range = None if args.sigma_range is None else tasks.check_sigma_range(*args.sigma_range)
    if args.task == "denoise" and args.sigma is None and sigma_range is None:
        raise ArgumentError("--task denoise needs --sigma S (or --sigma-range LO HI for a blind model)")
    _count("--workers", args.workers, maximum=MAX_WORKERS)
    _seed(args.seed)
    if args.id is not None and (not CARD_ID.fullmatch(args.id) or ".." in args.id):
        raise ArgumentError(f"--id {args.id!r}: use letters, digits and . _ + - (up to 100, no '/' or '..'); "
                            "it names the files written into --out")
    for option in ("epochs", "steps", "patch_size", "train_limit", "eval_limit"):
        _count(f"--{option.replace('_', '-')}", getattr(args, option))
    _positive("--learning-rate", args.learning_rate)
    _positive("--time-limit", args.time_limit)
    try:
        extra = json.loads(args.arch_kwargs) if args.arch_kwargs else {}
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"--arch-kwargs is not JSON ({exc.msg}): e.g. '{{\"fusion\": \"concat\"}}'") from None
    if not isinstance(extra, dict):
        raise ArgumentError("--arch-kwargs must be a JSON object, e.g. '{\"fusion\": \"concat\"}'")
    evals = [n.strip() for n in args.eval_datasets.split(",") if n.strip()] if args.eval_datasets else None
    return CardRecipe(
        task=args.task, out_dir=Path(args.out).expanduser(), sigma=args.sigma, sigma_range=sigma_range,
        scale=args.scale, scales=scales, channels=args.channels, arch=args.arch, arch_kwargs=extra,
        upsample=args.upsample, profile=args.profile, card_id=args.id, epochs=args.epochs, steps=args.steps,
        patch_size=args.patch_size, learning_rate=args.learning_rate, mixed_precision=args.mixed_precision,
        train_dataset=args.train_dataset, train_limit=args.train_limit, val_dataset=args.val_dataset,
        eval_datasets=evals, eval_limit=args.eval_limit, seed=args.seed, workers=args.workers,
        time_limit_min=args.time_limit, command=shlex.join(["python", "-m", PROG, *args.argv]),
        verbose=0 if args.quiet else "auto",
    )


def _move_results(tmp: Path, out_dir: Path, card_id: str, overwrite: bool) -> list[Path]:
    """Move a finished run from its temporary folder into --out: the card last, so a reader that lists the
    folder never sees a card whose weights are not there yet."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)  # one rename: the whole folder appears at once
        return sorted(out_dir.iterdir())
    card = f"{card_id}.json"
    if (out_dir / card).exists() and not overwrite:
        raise OutputError(f"{out_dir / card} appeared while training: pass --overwrite or another --out")
    names = sorted((p.name for p in tmp.iterdir()), key=lambda n: n == card)
    for name in names:
        os.replace(tmp / name, out_dir / name)
    tmp.rmdir()
    return [out_dir / n for n in names]


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: train a model with a profile, save weights + card (with this command line) in --out.

    The run writes into a hidden temporary folder next to (or inside) --out; only a run that finished,
    card and metrics included, moves its files in. A failure or Ctrl-C leaves --out as it was.
    """
    recipe = _train_recipe(args)
    recipe.check_out_dir(args.overwrite)
    _start_keras()
    from .recipes import train_card

    out_dir = recipe.out_dir
    # mkdir rather than mkdtemp: a new --out is this folder renamed, and should get the umask's permissions, not 0700
    tmp = (out_dir if out_dir.is_dir() else out_dir.parent) / f".{recipe.id}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    recipe.out_dir = tmp
    try:
        # train_card reports the files where it wrote them; they end up in --out under the same names.
        train_card(recipe, log=lambda message: _info(message.replace(str(tmp), str(out_dir)), args.quiet))
        _STATE.checkpoint()
        _STATE.wrote.extend(_move_results(tmp, out_dir, recipe.id, args.overwrite))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


# ------------------------------------------------------------------------------------------ fetch


def cmd_fetch(args: argparse.Namespace) -> int:
    """``fetch``: download (or verify a local copy of) every data set in parallel, with a progress bar."""
    _count("--workers", args.workers, maximum=MAX_WORKERS)
    from .registry import fetch_all

    _STATE.note = "files fetched so far stay in the cache, verified, and are not fetched again"
    # The bar only on a terminal: in a log every redraw would be a line of its own.
    report = fetch_all(args.datasets or None, workers=args.workers, progress=not args.quiet and sys.stderr.isatty())
    _info(report.summary(), args.quiet)
    return 0


# ------------------------------------------------------------------------------------------ benchmark


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``benchmark``: seconds per megapixel of enhance on synthetic images, as a Markdown table."""
    if args.task == "denoise" and args.sigma is None:
        args.sigma = 25.0  # the book's standard noise level; speed does not depend on it
    args.sigma, args.scale = tasks.check_task_args(args.task, args.sigma, args.scale)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise ArgumentError(f"--sizes {args.sizes!r}: give side lengths separated by commas, e.g. 256,512") from None
    if not sizes or min(sizes) < 1:
        raise ArgumentError(f"--sizes {args.sizes!r}: give positive side lengths, e.g. 256,512,1024")
    if args.repeat < 1:
        raise ArgumentError(f"--repeat {args.repeat} must be >= 1")
    _count("--tile", args.tile, minimum=0)
    from .io import max_pixels

    largest = max(sizes) * (args.scale or 1)
    if largest * largest > max_pixels():
        raise ImageTooLargeError(f"--sizes {max(sizes)}: a {largest}x{largest} result has more pixels than the limit "
                                 f"{max_pixels():,}; pass smaller sides or raise DECONVLAB_MAX_PIXELS")
    keras = _start_keras(cpu_only=args.device == "cpu")
    from . import config, models, recipes

    if args.arch is not None:
        model = models.build_model(args.arch, **recipes.builder_kwargs(
            args.arch, args.task, args.channels, args.scale, "pre", config.get_profile(args.profile), {}))
        label = f"{args.arch} (untrained; speed does not depend on the weights)"
    else:
        model, _card, label = recipes.resolve_weights(args.weights, args.task, sigma=args.sigma, scale=args.scale,
                                                      channels=args.channels, directory=args.weights_dir)
    rows = recipes.enhance_speed(model, args.task, sizes, scale=args.scale or 1, channels=args.channels,
                                 tile=args.tile or None, repeat=args.repeat)
    print(f"enhance speed, {args.task}, {label}; backend {keras.backend.backend()}, {config.device_name()}, "
          f"tile {args.tile or 'none'}, median of {args.repeat}")
    print("\n| input size | output Mpx | seconds | s / Mpx |\n|---|---:|---:|---:|")
    for n, mp, seconds, per in rows:
        print(f"| {n}x{n} | {mp:.3f} | {seconds:.3f} | {per:.2f} |")
    return 0


# ------------------------------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    """``models``: the model cards, one Markdown row each (from :func:`deconvlab.weights.model_rows`)."""
    from .paths import weights_dir
    from .weights import MODEL_ROW_DATASETS, model_rows

    rows = model_rows(args.weights_dir)
    if not rows:
        raise ArgumentError(f"no model cards in {args.weights_dir or weights_dir()}: git checkout data/weights, "
                            "or train one with `python -m deconvlab train`")
    header = ("id", "task", "setting", "default", "arch", "params", "MACs/px", "test PSNR (dB)", "CPU s/Mpx")
    cells = [[r["id"], r["task"], r["setting"], r["default"], r["builder"],
              "" if r["params"] is None else f"{r['params']:,}", r["macs_per_pixel"], r["test_psnr"],
              "" if r["cpu_s_per_mpx"] is None else f"{r['cpu_s_per_mpx']:.1f}"] for r in rows]
    cells = [[c or "-" for c in row] for row in cells]
    widths = [max(map(len, column)) for column in zip(header, *cells, strict=True)]
    for row in (header, ["-" * w for w in widths], *cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sets = ", ".join(f"{task}: {name}" for task, name in MODEL_ROW_DATASETS.items())
    print(f"\nPSNR: mean over the full test set ({sets}); MACs: multiply-adds per output pixel; CPU s/Mpx: from the "
          "card or benchmarks/results/speed_cpu.json (first enhance call on its largest image, default tile; '-': not "
          "measured); default: the card enhance picks for its setting.")
    return 0


# ------------------------------------------------------------------------------------------ parser


def _add_task_args(p: argparse.ArgumentParser, required: bool = True, sigma_help: str = "") -> None:
    p.add_argument("--task", choices=tasks.TASKS, required=required, help="what to restore")
    p.add_argument("--sigma", type=float, help="noise level on the 0-255 scale, in (0, 100] (denoise)" + sigma_help)
    p.add_argument("--scale", type=int, help=f"upscaling factor, one of {tasks.SUPPORTED_SCALES} (sr)")


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="CARD_OR_PATH",
                   help="a card id, a card .json or a .keras file (default: the shipped card for the task)")
    p.add_argument("--weights-dir", type=Path, metavar="DIR",
                   help="folder of model cards and weights (default: <repo>/data/weights)")


def _enhance_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="image file (PNG, BMP, TIFF, JPEG)")
    p.add_argument("output", help="PNG file to write")
    _add_task_args(p, sigma_help="; picks the model trained for that level. Default: the blind model, with the "
                   "level estimated from the image and printed")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile side for large images (default {DEFAULT_TILE}; 0: whole image at once)")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels (default: twice the model's receptive-field "
                   "radius, e.g. 60 for RED-Net, 64 for the U-Net, which makes tiles match the whole image exactly)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16),
                   help="bits per sample of the PNG (default: 16 for 16-bit inputs, else 8)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _add_weights_args(p)
    p.set_defaults(func=cmd_enhance)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
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


def _train_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--val-dataset", help="validation set that chooses the checkpoint (default: the last 8 images "
                   "of the training set, held aside; never pass a test set)")
    p.add_argument("--eval-datasets", help="comma-separated test sets for the card (default: bsd68 / set5 / set12 "
                   "by task)")
    p.add_argument("--eval-limit", type=int, help="only the first N test images (recorded in the card)")
    p.add_argument("--seed", type=int, default=0, help=f"random seed, 0 to {SEED_MAX}")
    p.add_argument("--overwrite", action="store_true", help="replace an existing card with the same id")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)


def _benchmark_args(p: argparse.ArgumentParser) -> None:
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


def _fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("datasets", nargs="*", metavar="SET", help="sets to fetch (default: all registered sets)")
    p.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_fetch)


def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights-dir", type=Path, metavar="DIR",
                   help="folder of model cards and weights (default: <repo>/data/weights)")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m deconvlab``."""
    parser = _Parser(prog=PROG, description="Image restoration with the book's conv/deconv networks.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")

    commands = (
        ("enhance", _enhance_args, "restore one image file (denoise, super-resolve or deblur)",
         "Restore one image with the shipped weights; any size, gray or RGB, 8/16-bit. The denoisers were trained "
         "for white Gaussian noise (the same level at every pixel, independent between pixels); on real camera noise "
         "or JPEG artefacts they remove some of it but are not trained for it, so expect leftover blotches or "
         "blocks. Without --sigma, --task denoise estimates the noise level, prints it and uses the blind model."),
        ("evaluate", _evaluate_args, "PSNR/SSIM of weights on a test set (and check a card's numbers)",
         "Evaluate weights on a test set; with --card, exit 1 if the mean PSNR differs from the card by more "
         "than --tolerance."),
        ("train", _train_args, "train a model and save its weights and model card",
         "Train with a profile; writes <id>.weights.npz, <id>.json and <id>.history.json into --out."),
        ("benchmark", _benchmark_args, "seconds per megapixel of enhance on synthetic images",
         "Time enhance on random images of the given sizes (CPU by default)."),
        ("fetch", _fetch_args, "download (or verify) all data sets in parallel",
         "Fetch every registered data set (or the SETs named) into the cache, in parallel, verified by sha256; "
         "with DECONVLAB_DATA set, verify that copy."),
        ("models", _models_args, "list the model cards: setting, default, size, cost, test PSNR",
         "One row per model card: its setting, whether enhance picks it by default, parameters, multiply-adds per "
         "pixel, test PSNR and CPU seconds per megapixel (where measured)."),
    )
    for name, add_arguments, summary, description in commands:
        add_arguments(sub.add_parser(name, help=summary, description=description))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m deconvlab``; returns the exit status."""
    global _STATE
    argv = list(sys.argv[1:] if argv is None else argv)
    _STATE = state = _Interrupts()
    debug = _debug()
    try:
        with state.watching(), _one_line_warnings():
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:
                raise UsageError(f"choose a command: {', '.join(COMMANDS)} (see `{PROG} --help`)")
            args.argv = argv
            if getattr(args, "weights_dir", None) is not None:
                args.weights_dir = Path(args.weights_dir).expanduser()
            code = int(args.func(args))
            state.checkpoint()  # a Ctrl-C some library swallowed still ends in 130
            return code
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or (state.count and isinstance(exc, Exception)):
            # After a Ctrl-C, whatever breaks next (a library half imported, an interrupt swallowed and turned
            # into another error) is its consequence: report the interruption, not that.
            if debug:  # where it was stopped, e.g. to see what hung; still status 130
                traceback.print_exc()
            _fail(state.message())
            return EX_INTERRUPTED
        if debug or not isinstance(exc, Exception):
            raise
        _fail(_failure(exc))
        return EX_SOFTWARE if _is_bug(exc) else 2


def _is_bug(exc: Exception) -> bool:
    return not isinstance(exc, (DeconvlabError, OSError, MemoryError))


def _failure(exc: Exception) -> str:
    """The one line for an exception that ended a command."""
    if isinstance(exc, DeconvlabError):
        return str(exc)
    if isinstance(exc, OSError):  # e.g. a disk that filled up mid-run
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}; check the path, free space and permissions"
    if isinstance(exc, MemoryError):
        return "out of memory: pass a smaller --tile, or crop the image"
    # The last resort: a bug, reported in one line rather than a traceback.
    return (f"unexpected {type(exc).__name__}: {_one_line(str(exc))[:300]}; rerun with DECONVLAB_DEBUG=1 to see "
            "the traceback, and please report it")
