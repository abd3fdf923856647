"""The command line: ``python -m deconvlab {enhance,evaluate,train,benchmark,fetch,models}``. Taught in chapter 4.

Argument parsing, calls into the package, printing. Every failure a user can cause is one line on stderr and a
non-zero exit, with nothing written (:mod:`deconvlab.console`); output paths are checked before any expensive
work, images are written atomically (:func:`deconvlab.io.write_image`) and ``train`` moves its files into
``--out`` only when everything succeeded (:func:`deconvlab.recipes.train_card_into`). ``evaluate --card`` exits
with status 1 when the measured PSNR differs from the card by more than the tolerance. Keras and the models are
imported only once the arguments and the input are known to be good: a typo costs no TensorFlow start-up.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# TensorFlow reads this when it is first imported; it must be set before anything imports keras.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from . import __version__, console, tasks  # noqa: E402
from .config import DEFAULT_TILE, TRAIN_MAXIMA  # noqa: E402
from .console import PROG, UsageError, count, fail, info, positive, same_file, seed, user_path  # noqa: E402
from .errors import ArgumentError, ImageTooLargeError, OutputError  # noqa: E402
from .io import check_output_path  # noqa: E402

COMMANDS = ("enhance", "evaluate", "train", "benchmark", "fetch", "models")
PROGRESS_PIXELS = 1_000_000  # show a progress bar from one megapixel on
MAX_WORKERS = 256  # threads; more is a typo, and each one holds a batch in memory


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
    if same_file(args.input, args.output):
        # --overwrite is for earlier results; replacing the only copy of the input is never what was meant.
        raise OutputError(f"output {args.output} is the input file: choose another name (enhance never replaces "
                          "its input, even with --overwrite)")
    out = check_output_path(args.output, args.overwrite)
    start = time.perf_counter()
    image = io.read_image(args.input)
    scale = args.scale or 1
    pixels = image.shape[0] * image.shape[1] * scale * scale
    if pixels > io.max_pixels():
        raise ImageTooLargeError(
            f"the x{scale} result would have {image.shape[0] * scale}x{image.shape[1] * scale} pixels, more than "
            f"the limit {io.max_pixels():,}: crop the input or raise DECONVLAB_MAX_PIXELS"
        )
    bit_depth = args.bit_depth or io.source_bit_depth(args.input)
    console.start_keras()
    from .infer import check_exact_tile, enhance, estimate_noise_sigma, has_colour, tiled_side
    from .recipes import denoise_colour, resolve_weights

    colour, sigma, note = denoise_colour(args.task, has_colour(image), args.colour, args.sigma, args.weights,
                                         args.weights_dir)
    if note:
        info(note, args.quiet)
    # Y, Cb and Cr go one at a time through a gray model
    model, card, label = resolve_weights(args.weights, args.task, sigma=sigma, scale=args.scale,
                                         channels=1 if colour == "ycbcr" else 3 if has_colour(image) else 1,
                                         directory=args.weights_dir)
    if args.overlap is None and args.tile and tiled_side(model, max(image.shape[:2]), args.task, scale) > args.tile:
        check_exact_tile(model, label, args.tile)
    if args.task == "denoise" and args.sigma is None and not args.quiet:
        blind = card is not None and card.get("sigma_range") is not None
        info(f"estimated noise sigma {estimate_noise_sigma(image):.1f} (0-255 scale); using "
             f"{'the blind model ' if blind else ''}{label}")
    # overlap None: tile_predict derives the exact one (twice the receptive-field radius) from the model
    result = enhance(model, image, args.task, scale=scale, tile=args.tile or None, overlap=args.overlap,
                     progress=not args.quiet and pixels >= PROGRESS_PIXELS, colour=colour)
    console.state.checkpoint()
    # the pixels stay in the input's colour space: without its profile, viewers would take them for sRGB
    profile = io.icc_profile(args.input)
    io.write_image(out, result, bit_depth=bit_depth, overwrite=args.overwrite,
                   icc_profile=profile if profile is not None and io.icc_fits(profile, result) else None)
    console.state.wrote.append(out)
    h, w = result.shape[:2]
    info(f"wrote {out} ({w}x{h} {'RGB' if result.ndim == 3 else 'gray'}, {bit_depth}-bit) with {label} "
          f"in {time.perf_counter() - start:.1f} s", args.quiet)
    return 0


# ------------------------------------------------------------------------------------------ evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: PSNR/SSIM of shipped weights on a test set; with --card, check against the card."""
    if args.card is None and args.task is None:
        raise ArgumentError("pass --card ID, or --task with --sigma/--scale, to choose the weights")
    if args.task is not None:
        args.sigma, args.scale = tasks.check_task_args(args.task, args.sigma, args.scale)
    else:
        args.sigma, args.scale = tasks.check_sigma(args.sigma), tasks.check_scale(args.scale)
    count("--limit", args.limit)
    seed(args.seed)
    console.tile_side(args.tile)
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        # NaN compares False with everything: "abs(diff) > nan" would report a match for any weights.
        raise ArgumentError(f"--tolerance {args.tolerance:g}: pass a finite number of dB >= 0, e.g. 0.02")
    if args.csv is not None:
        check_output_path(args.csv, overwrite=args.overwrite, suffix=".csv")
    from . import recipes, weights

    card, sigma, scale = recipes.evaluation_card(args.card, args.task, args.sigma, args.scale, args.weights_dir)
    task = card["task"]
    dataset = recipes.evaluation_set(card, args.dataset, args.limit)
    console.start_keras()
    model = weights.load_pretrained(card=card, directory=args.weights_dir)
    result = recipes.run_evaluation(model, task, dataset, channels=weights.card_channels(card), sigma=sigma,
                                    scale=scale, seed=args.seed, limit=args.limit, tile=args.tile or None)
    psnr = round(result.mean_psnr, 4)  # as the card stores it: --tolerance 0 must be able to match
    print(result.to_markdown())
    print(f"{card['id']}: {result.summary()}")
    if args.csv is not None:
        console.state.checkpoint()
        result.to_csv(args.csv)
        console.state.wrote.append(Path(args.csv))
        print(f"wrote {args.csv}")
    if args.card is None:
        return 0
    entry = recipes.card_metric(card, dataset, sigma, scale, args.limit, args.seed)
    if entry is None:
        print(f"card {card['id']} has no number for {dataset} with these settings; nothing to compare")
        return 0
    card_psnr = float(entry["psnr"])
    if abs(psnr - card_psnr) > args.tolerance:
        tile = ", or compare without --tile (its seams move PSNR)" if args.tile else ""
        fail(f"PSNR {psnr:.4f} dB on {dataset} differs from the card's {card_psnr:.4f} dB by {psnr - card_psnr:+.4f} "
             f"dB (tolerance {args.tolerance:g}); check the weights, data and backend{tile}")
        return 1
    print(f"matches the card: {psnr:.3f} dB vs {card_psnr:.3f} dB (tolerance {args.tolerance:g} dB)")
    return 0


# ------------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: train a model with a profile, save weights + card (with this command line) in --out.

    The run writes into a hidden temporary folder next to (or inside) --out; only a run that finished,
    card and metrics included, moves its files in. A failure or Ctrl-C leaves --out as it was.
    """
    for option in ("epochs", "steps", "patch_size", "train_limit", "eval_limit"):
        count(f"--{option.replace('_', '-')}", getattr(args, option), maximum=TRAIN_MAXIMA.get(option))
    count("--workers", args.workers, maximum=MAX_WORKERS)
    seed(args.seed)
    positive("--learning-rate", args.learning_rate)
    positive("--time-limit", args.time_limit)
    from .recipes import card_recipe, check_out_dir, train_card_into

    recipe = card_recipe(vars(args), command=shlex.join(["python", "-m", PROG, *args.argv]))
    check_out_dir(recipe.out_dir, recipe.id, args.overwrite)
    console.start_keras()
    wrote = train_card_into(recipe, args.overwrite, log=lambda message: info(message, args.quiet),
                            before_move=console.state.checkpoint)
    console.state.wrote.extend(wrote)
    return 0


# ------------------------------------------------------------------------------------------ fetch


def cmd_fetch(args: argparse.Namespace) -> int:
    """``fetch``: download (or verify a local copy of) every data set in parallel, with a progress bar."""
    count("--workers", args.workers, maximum=MAX_WORKERS)
    from .registry import fetch_all

    console.state.note = "files fetched so far stay in the cache, verified, and are not fetched again"
    # The bar only on a terminal: in a log every redraw would be a line of its own.
    report = fetch_all(args.datasets or None, workers=args.workers, progress=not args.quiet and sys.stderr.isatty())
    info(report.summary(), args.quiet)
    return 0


# ------------------------------------------------------------------------------------------ benchmark


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``benchmark``: seconds per megapixel of enhance on synthetic images, as a Markdown table."""
    if args.task == "denoise" and args.sigma is None and args.weights is None:
        args.sigma = 25.0  # picks the book's standard card; speed does not depend on it
    args.sigma, args.scale = tasks.check_task_args(args.task, args.sigma, args.scale)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise ArgumentError(f"--sizes {args.sizes!r}: give side lengths separated by commas, e.g. 256,512") from None
    if not sizes or min(sizes) < 1:
        raise ArgumentError(f"--sizes {args.sizes!r}: give positive side lengths, e.g. 256,512,1024")
    count("--repeat", args.repeat)
    console.tile_side(args.tile)
    from .io import max_pixels

    largest = max(sizes) * (args.scale or 1)
    if largest * largest > max_pixels():
        raise ImageTooLargeError(f"--sizes {max(sizes)}: a {largest}x{largest} result has more pixels than the limit "
                                 f"{max_pixels():,}; pass smaller sides or raise DECONVLAB_MAX_PIXELS")
    keras = console.start_keras(cpu_only=args.device == "cpu")
    from . import config, models, recipes

    if args.arch is not None:
        model = models.build_model(args.arch, **recipes.builder_kwargs(
            args.arch, args.task, args.channels, args.scale, "pre", config.get_profile(args.profile), {}))
        label, card = f"{args.arch} (untrained; speed does not depend on the weights)", None
    else:
        model, card, label = recipes.resolve_weights(args.weights, args.task, sigma=args.sigma, scale=args.scale,
                                                     channels=args.channels, directory=args.weights_dir)
    rows = recipes.enhance_speed(model, args.task, sizes, scale=args.scale or 1, channels=args.channels,
                                 tile=args.tile or None, repeat=args.repeat, label=card["id"] if card else args.arch or label)
    print(f"enhance speed, {args.task}, {label}; backend {keras.backend.backend()}, {config.device_name()}, "
          f"tile {args.tile or 'none'}, median of {args.repeat}")
    print("\n| input size | output Mpx | seconds | s / Mpx |\n|---|---:|---:|---:|")
    for n, mp, seconds, per in rows:
        print(f"| {n}x{n} | {mp:.3f} | {seconds:.3f} | {per:.2f} |")
    return 0


# ------------------------------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    """``models``: the model cards, one Markdown row each (:func:`deconvlab.weights.model_table`)."""
    from .weights import model_table

    print(model_table(args.weights_dir))
    return 0


# ------------------------------------------------------------------------------------------ parser


def _add_task_args(p: argparse.ArgumentParser, required: bool = True, sigma_help: str = "") -> None:
    p.add_argument("--task", choices=tasks.TASKS, required=required, help="what to restore")
    p.add_argument("--sigma", type=float, help="noise level on the 0-255 scale, in (0, 100] (denoise)" + sigma_help)
    p.add_argument("--scale", type=int, help=f"upscaling factor, one of {tasks.SUPPORTED_SCALES} (sr)")


def _add_weights_args(p: argparse.ArgumentParser, weights: bool = True) -> None:
    if weights:
        p.add_argument("--weights", metavar="CARD_OR_PATH", help="a card id, a card .json or a .keras file "
                       "(default: the shipped card for the task)")
    p.add_argument("--weights-dir", type=user_path, metavar="DIR",
                   help="folder of model cards and weights (default: <repo>/data/weights)")


def _enhance_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=user_path, help="image file (PNG, BMP, TIFF, JPEG)")
    p.add_argument("output", type=user_path, help="PNG file to write")
    _add_task_args(p, sigma_help="; picks the model trained for that level. Default: the blind model, with the "
                   "level estimated from the image and printed")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile side for large images (default {DEFAULT_TILE}; 0: whole image at once)")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels (default: twice the model's receptive-field "
                   "radius, e.g. 60 for RED-Net, 64 for the U-Net, which makes tiles match the whole image exactly)")
    p.add_argument("--colour", choices=("auto", "ycbcr", "rgb"), default="auto",
                   help="colour images with --task denoise: 'auto' runs the blind model on Y, Cb and Cr (chapter 5 "
                   "measures it above the per-channel way on CBSD68), 'rgb' the chosen model on R, G and B (a colour "
                   "card, which 'auto' also prefers, sees them together)")
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
    p.add_argument("--csv", type=user_path, metavar="PATH", help="also write the per-image table as CSV")
    p.add_argument("--overwrite", action="store_true", help="replace the --csv file if it exists")
    p.add_argument("--tolerance", type=float, default=0.02, help="allowed PSNR difference to the card, dB")
    _add_weights_args(p, weights=False)
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
    p.add_argument("--train-dataset", default="train400", help="training set (default train400; not a test set)")
    p.add_argument("--train-limit", type=int, help="only the first N training images")
    p.add_argument("--val-dataset", help="validation set that chooses the checkpoint (default: the last 8 images "
                   "of the training set, held aside; never pass a test set)")
    p.add_argument("--eval-datasets", help="comma-separated test sets for the card (default: bsd68 / set5 / set12 "
                   "by task)")
    p.add_argument("--eval-limit", type=int, help="only the first N test images (recorded in the card)")
    p.add_argument("--seed", type=int, default=0, help=f"random seed, 0 to {console.SEED_MAX}")
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
    _add_weights_args(p, weights=False)
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m deconvlab``."""
    parser = console.OneLineParser(prog=PROG, description="Image restoration with the book's conv/deconv networks.")
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
         "than --tolerance (the --csv table, the measurement, is written first)."),
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
    """Entry point of ``python -m deconvlab``; returns the exit status (see :mod:`deconvlab.console`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return console.run(lambda: _dispatch(argv))


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        raise UsageError(f"choose a command: {', '.join(COMMANDS)} (see `{PROG} --help`)")
    args.argv = argv
    return args.func(args)
