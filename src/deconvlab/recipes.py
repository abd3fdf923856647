"""Recipes that the CLI, the chapters and ``benchmarks/`` share: evaluate weights on a test set, check a card's
numbers, train a model and save it with its card, time ``enhance``.

Each recipe is the package's building blocks in the order a reader would call them; the CLI adds argument
parsing and printing only. Taught in chapter 4 (notebooks/04_code_example).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import inspect
import itertools
import json
import math
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import tasks, weights
from .errors import ArgumentError, DeconvlabError, OutputError, TrainingError, UnknownDatasetError
from .registry import FALLBACK_NAMES, _info, dataset_key, fetch_dataset, registry
from .tasks import BLIND_LEVELS


def run_evaluation(model: Any, task: str, dataset_name: str, *, channels: int, sigma: float | None,
                   scale: int | None, seed: int = 0, limit: int | None = None, tile: int | None = None) -> Any:
    """Load a test set (no offline fallback) and evaluate a model on it; returns the EvalResult."""
    from . import data, evaluate

    dataset = data.load_dataset(dataset_name, mode=tasks.dataset_mode(task, channels), limit=limit, fallback=False)
    # a sigma would change deblur's noise level: each task gets only its own setting
    return evaluate.evaluate(model, dataset, task=task, seed=seed, tile=tile,
                             sigma=sigma if task == "denoise" else None, scale=scale if task == "sr" else None)


def resolve_weights(spec: str | None, task: str, *, sigma: float | None, scale: int | None, channels: int,
                    directory: Path | None = None) -> tuple[Any, dict[str, Any] | None, str]:
    """(model, card or None, label) from a card id, a card JSON or a ``.keras`` file, else the task's shipped card."""
    if spec is not None and Path(spec).suffix == ".keras":
        return weights.load_keras_file(spec), None, Path(spec).name
    if spec is None:
        card = weights.find_card(task, sigma=sigma, scale=scale, channels=channels, directory=directory)
    else:
        card = weights.read_card(spec, directory)
        if card["task"] != task:
            raise ArgumentError(f"card {card['id']} is for --task {card['task']}, not {task}: "
                                f"pass --task {card['task']} or other weights")
        if task == "sr" and scale not in weights.card_scales(card):
            raise ArgumentError(f"card {card['id']} serves {weights.card_setting(card)}, not x{scale}")
        _warn_untrained_sigma(card, sigma, stacklevel=3)
    return weights.load_pretrained(card=card, directory=directory), card, str(card["id"])


def _warn_untrained_sigma(card: dict[str, Any], sigma: float | None, stacklevel: int) -> None:
    """Warn (``stacklevel`` above the caller) when ``sigma`` is not the level, or outside the range, that a denoising
    card was trained for: using it there is legitimate (how a model degrades), but the numbers are not the card's."""
    # find_card's own match (its exact sigma, or inside a blind card's range): a card it would pick gets no warning
    if sigma is not None and card["task"] == "denoise" and weights._rank(card, "denoise", sigma, None) is None:
        warnings.warn(f"card {card['id']} was trained for {weights.card_setting(card)}, not {sigma:g}", UserWarning,
                      stacklevel=stacklevel + 1)


def denoise_colour(task: str, colour_image: bool, colour: str, sigma: float | None, spec: str | None,
                   directory: Path | None = None) -> tuple[str, float | None, str | None]:
    """(colour for :func:`deconvlab.infer.enhance`, sigma that picks the card, a note for the user or None).

    ``colour`` is ``enhance --colour``: with "auto" a colour photo to denoise goes through the blind model on Y, Cb
    and Cr (chapter 5 measures that way above the per-channel one on CBSD68), unless weights were named (then R,
    G, B, or Y/Cb/Cr with "ycbcr") or a colour card is found for the sigma asked (a blind one too), or, with no
    sigma, the only blind card is a colour one: a colour card sees R, G and B together."""
    if task != "denoise" or not colour_image or colour == "rgb":
        return "rgb", sigma, None
    if spec is not None:
        return ("ycbcr" if colour == "ycbcr" else "rgb"), sigma, None
    # with no sigma, find_card prefers a gray blind card: a colour one comes back only where there is none
    if colour == "auto" and _found_channels(sigma, 1 if sigma is None else 3, directory) == 3:
        return "rgb", sigma, None
    if sigma is not None:  # refused, as for gray and --colour rgb, where the blind card was not trained
        blind = weights.find_card("denoise", channels=1, directory=directory)  # what resolve_weights picks
        if weights._rank(blind, "denoise", sigma, None) is None:
            raise ArgumentError(f"no shipped weights for denoise sigma={sigma:g} on a colour image: the "
                                f"blind model {blind['id']} serves {weights.card_setting(blind)}")
    note = None if sigma is None else (
        f"--sigma {sigma:g} on a colour image: using the blind model on Y, Cb and Cr, which measures higher on "
        "colour test images than the per-sigma model on R, G and B (--colour rgb picks that one)")
    return "ycbcr", None, note


def _found_channels(sigma: float | None, channels: int, directory: Path | None) -> int | None:
    """The channels of the card :func:`deconvlab.weights.find_card` gives (None: no card)."""
    try:
        return weights.card_channels(weights.find_card("denoise", sigma=sigma, channels=channels,
                                                       directory=directory))
    except ArgumentError:
        return None


def card_limit(dataset: str, limit: Any) -> Any:
    """``limit`` as a card entry records it: None (the whole set) when it is at least the set's image count, since
    ``--limit 12`` on Set12 measures the same 12 images as no limit; any other value as it is."""
    from .registry import FALLBACK_TEST, FALLBACK_TRAIN

    if not isinstance(limit, int) or isinstance(limit, bool):
        return limit
    key = dataset_key(dataset)
    if key in FALLBACK_NAMES:
        size = len(FALLBACK_TRAIN if key == "fallback-train" else FALLBACK_TEST)
    elif key in (sets := registry()):
        size = len(sets[key].files)
    else:
        return limit
    return None if limit >= size else limit


def card_metric(card: dict[str, Any], dataset: str, sigma: float | None, scale: int | None,
                limit: int | None, seed: int = 0) -> dict[str, Any] | None:
    """The card's metrics entry measured with the same data set, setting, image limit and noise seed; a limit
    that takes the whole set counts as none, on either side (:func:`card_limit`)."""
    limit = card_limit(dataset, limit)
    for entry in card.get("metrics") or []:
        protocol = entry.get("protocol") if isinstance(entry.get("protocol"), dict) else {}
        if ((protocol.get("seed") is None or int(protocol["seed"]) == seed)
                and str(entry.get("dataset", "")).lower() == dataset.lower()
                and (entry.get("sigma") is None or sigma is None or math.isclose(entry["sigma"], sigma))
                and (entry.get("scale") is None or scale is None or int(entry["scale"]) == scale)
                and card_limit(dataset, entry.get("limit")) == limit):
            return entry
    return None


def evaluation_card(spec: str | None, task: str | None, sigma: float | None, scale: int | None,
                    directory: Path | None = None) -> tuple[dict[str, Any], float | None, int | None]:
    """(card, sigma, scale) to evaluate: the card named (or the task's shipped one) at the setting given, else at
    the card's own; ArgumentError if that is ambiguous."""
    if spec is not None:
        card = weights.read_card(spec, directory)
        if task is not None and card["task"] != task:
            raise ArgumentError(f"card {card['id']} is for --task {card['task']}, not {task}")
    else:
        card = weights.find_card(task, sigma=sigma, scale=scale, directory=directory)
    task, where = card["task"], weights.card_setting(card)
    if (sigma is not None and task != "denoise") or (scale is not None and task != "sr"):
        raise ArgumentError(f"card {card['id']} is for --task {task}: drop --sigma / --scale that do not apply")
    _warn_untrained_sigma(card, sigma, stacklevel=2)
    sigma = sigma if sigma is not None else card.get("sigma")
    scales = weights.card_scales(card)
    scale = scale if scale is not None else (scales[0] if len(scales) == 1 else None)
    if task == "denoise" and sigma is None:
        raise ArgumentError(f"card {card['id']} is blind ({where}): pass --sigma")
    if task == "sr" and scale is None:
        raise ArgumentError(f"card {card['id']} serves {where}: pass --scale")
    if task == "sr" and scale not in scales:
        raise ArgumentError(f"card {card['id']} serves {where}, not x{scale}")
    return card, sigma, scale


def evaluation_set(card: dict[str, Any], dataset: str | None, limit: int | None) -> str:
    """The test set to evaluate ``card`` on: ``dataset``, else the first its metrics name, else the task's default.
    Its files are fetched now (no offline fallback), so a set that is not there is refused before Keras starts."""
    name = dataset or next((m["dataset"] for m in card.get("metrics") or []), tasks.DEFAULT_DATASETS[card["task"]])
    if dataset_key(name) not in FALLBACK_NAMES:
        fetch_dataset(name, limit=limit)
    return name


def builder_kwargs(builder: str, task: str, channels: int, scale: int | None, upsample: str,
                   profile: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Builder arguments: the profile's depth/width where the builder takes them, then ``extra``."""
    from . import models

    if builder not in models.BUILDERS:
        raise ArgumentError(f"unknown --arch {builder!r}: use one of {', '.join(models.BUILDERS)}")
    params = inspect.signature(models.BUILDERS[builder]).parameters
    if task != "sr" and "scale" in params and params["scale"].default is inspect.Parameter.empty \
            and extra.get("scale") != 1:  # an fsrcnn of scale 1 (--arch-kwargs) is a denoiser
        # else build_model's "missing 1 required positional argument: 'scale'; pass the missing argument"
        raise ArgumentError(f"--arch {builder} is a super-resolution architecture: use --task sr --scale S, "
                            f"--arch-kwargs '{{\"scale\": 1}}', or another --arch for --task {task}")
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if task == "sr" and "scale" not in params and not takes_any:
        upscalers = [n for n, fn in models.BUILDERS.items() if "scale" in inspect.signature(fn).parameters]
        raise ArgumentError(f"--arch {builder} returns images of its input's size (it takes no scale): use --task denoise "
                            f"or deblur, or one of {', '.join(upscalers)} for --task sr")
    kwargs: dict[str, Any] = {"channels": channels}
    kwargs.update({n: getattr(profile, n) for n in ("depth", "width") if n in params or takes_any})
    if task == "sr":
        kwargs["scale"] = scale
        if "upsample" in params:
            kwargs["upsample"] = upsample
    kwargs.update(extra)
    return kwargs


def dataset_digest(names: Sequence[str]) -> dict[str, str]:
    """sha256 over each data set's registry hashes, so a card names exactly the files it was trained on."""
    try:
        reg = registry()
    except DeconvlabError:
        return {}
    return {key: hashlib.sha256("".join(sorted(f.sha256 for f in reg[key].files)).encode()).hexdigest()
            for key in map(dataset_key, names) if key in reg}


def deadline_callback(seconds: float) -> Any:
    """A Keras callback that ends training after the first epoch that finishes past ``seconds`` of wall time;
    ``fired`` says whether that left epochs out."""
    import keras

    class Deadline(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fired = False
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            # the last epoch asked for may also end past the limit, but then no epoch was left out
            if time.perf_counter() - self.start > seconds and epoch + 1 < self.params["epochs"]:
                self.fired = True
                self.model.stop_training = True

    return Deadline()


@dataclasses.dataclass
class CardRecipe:
    """Everything one trained model card depends on; the CLI's ``train`` fills it from its options."""

    task: str
    out_dir: Path
    sigma: float | None = None
    sigma_range: tuple[float, float] | None = None
    scale: int | None = None
    scales: list[int] | None = None
    channels: int = 1
    arch: str | None = None
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    upsample: str = "pre"
    profile: str | None = None
    card_id: str | None = None
    epochs: int | None = None
    steps: int | None = None
    patch_size: int | None = None
    learning_rate: float | None = None
    mixed_precision: bool | None = None
    train_dataset: str = "train400"
    train_limit: int | None = None
    val_dataset: str | None = None
    eval_datasets: list[str] | None = None
    eval_limit: int | None = None
    seed: int = 0
    workers: int = 1
    time_limit_min: float | None = None
    command: str = ""
    verbose: int | str = "auto"

    @property
    def id(self) -> str:
        return self.card_id or tasks.card_id(self.task, self.sigma, self.scale, self.sigma_range, self.channels,
                                             self.scales)

    @property
    def eval_sets(self) -> list[str]:
        """The test sets the card is measured on: ``eval_datasets``, else the task's default one."""
        return self.eval_datasets or [tasks.DEFAULT_DATASETS[self.task]]

    @property
    def settings(self) -> list[tuple[float | None, int | None]]:
        """Every (sigma, scale) the card is measured at: each of :data:`BLIND_LEVELS` for a blind denoiser."""
        sigmas = [self.sigma] if self.sigma_range is None else list(BLIND_LEVELS)
        return list(itertools.product(sigmas, self.scales or [self.scale]))


def check_out_dir(out_dir: Path, card_id: str, overwrite: bool = False) -> None:
    """OutputError unless card ``card_id`` can be written into the folder ``out_dir``: the card exists (without
    ``overwrite``), ``out_dir`` is a file, a broken link or not writable, or, for a new folder, its parent is
    missing or not writable. ``deconvlab train`` and ``python -m deconvlab.fused`` call it before any work."""
    from .io import check_output_path

    if out_dir.is_symlink() and not out_dir.exists():
        raise OutputError(f"--out {out_dir} is a broken symbolic link: remove it or point it at a folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file: pass a folder for the weights and the card")
    if out_dir.is_dir():
        check_output_path(out_dir / f"{card_id}.json", overwrite=overwrite, suffix=".json")
        # weights or a history left without their card (a run stopped by hand, a copy) are replaced just as silently
        for name in (f"{card_id}{weights.WEIGHTS_SUFFIX}", f"{card_id}{weights.HISTORY_SUFFIX}"):
            if os.path.lexists(out_dir / name) and not overwrite:
                raise OutputError(f"{out_dir / name} exists: pass --overwrite or another --out")
    else:  # a new folder, in an existing one: "no/such/runs" is more often a typo than a wish
        check_output_path(out_dir, overwrite=False, suffix=None)


def held_aside(train_set: Any) -> tuple[Any, Any]:
    """(training part, validation part) of a loaded set: its last :func:`tasks.held_aside_count` images held aside
    (and copies of them left out of training, :func:`tasks.held_aside_split`).
    The parts are named as every card records them (:mod:`deconvlab.fused` too): e.g. ``train400 without its last
    8 images (392 images)`` and ``held-aside train400 test_393, ..., test_400``."""
    kept, held = tasks.held_aside_split(train_set.images, tasks.held_aside_count(len(train_set)))

    def subset(ids: list[int], **changes: Any) -> Any:
        return dataclasses.replace(train_set, images=[train_set.images[i] for i in ids],
                                   names=[train_set.names[i] for i in ids], **changes)

    copies = [train_set.names[i] for i in range(held[0]) if i not in set(kept)]
    kept_name = tasks.training_part_name(train_set.name, len(held), copies, len(kept))
    held_names = ", ".join(train_set.names[i] for i in held)
    return subset(kept, name=kept_name), subset(held, name=f"held-aside {train_set.name} {held_names}")


def _patch_data(recipe: CardRecipe, profile: Any, post: bool) -> tuple[Any, Any, Any, Any]:
    """(train PatchDataset, fixed (x, y) validation pairs, train set, validation set) of a recipe."""
    from . import data

    sr_y = recipe.task == "sr" and recipe.channels == 1
    mode = "rgb" if recipe.channels == 3 else None if sr_y else "gray"  # SR maps colour and gray files apart
    limit = recipe.train_limit or profile.train_images
    train_set = data.load_dataset(recipe.train_dataset, mode=mode, limit=limit)
    if limit is not None:  # so that the card's "without its last 8 images" reads as of the images loaded
        train_set = dataclasses.replace(train_set, name=f"{train_set.name} (first {len(train_set)})")
    train_set = _sr_y(train_set) if sr_y else train_set
    if recipe.val_dataset:
        val_set = data.load_dataset(recipe.val_dataset, mode=mode, limit=profile.test_images)
        if profile.test_images is not None:  # as the training set's name says, of the images loaded
            val_set = dataclasses.replace(val_set, name=f"{val_set.name} (first {len(val_set)})")
        val_set = _sr_y(val_set) if sr_y else val_set
    else:  # the checkpoint is chosen on training images held aside, never on a test set
        train_set, val_set = held_aside(train_set)
    degradation = tasks.training_degradation(recipe.task, sigma=recipe.sigma_range or recipe.sigma,
                                             scale=recipe.scale, scales=recipe.scales, post=post)
    steps = recipe.steps or profile.steps_per_epoch
    patch_args = {"patch_size": recipe.patch_size or profile.patch_size, "channels": recipe.channels,
                  "scale": recipe.scale if post else 1}
    train_data = data.PatchDataset(train_set.images, degradation, steps_per_epoch=steps, seed=recipe.seed,
                                   workers=recipe.workers, batch_size=profile.batch_size, **patch_args)
    pairs = min(max(1, steps // 10) * profile.batch_size, VALIDATION_PAIRS_MAX)
    return train_data, _validation_pairs(recipe, val_set.images, pairs, post, patch_args), train_set, val_set


def _sr_y(dataset: Any) -> Any:
    """A set in the range of the SR protocol's Y (:func:`tasks.sr_training_y`), its name saying how."""
    images, how = tasks.sr_training_y(dataset.images)
    return dataclasses.replace(dataset, images=images, name=f"{dataset.name} {how}")


#: At most this many fixed validation pairs: the paper profile's 100 batches of 128 would hold 256 MB of them.
VALIDATION_PAIRS_MAX = 4096


def _validation_pairs(recipe: CardRecipe, images: list, n: int, post: bool,
                      patch_args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fixed (degraded, clean) pairs that choose the checkpoint, the same every epoch so that val_psnr
    moves with the weights only (pairs drawn anew each epoch moved a fixed model's val_psnr by up to 0.6 dB).
    A multi-scale SR model gets a share at each scale: one draw degrades all its pairs by one scale."""
    from .train import make_validation_pairs

    scales = recipe.scales or [recipe.scale]
    sigma = recipe.sigma_range or recipe.sigma
    degradations = [tasks.training_degradation(recipe.task, sigma=sigma, scale=k, post=post) for k in scales]
    share = max(1, n // len(scales))
    parts = [make_validation_pairs(images, degrade, n=share, seed=recipe.seed + 1, **patch_args)
             for degrade in degradations]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def measure_card(card: dict[str, Any], recipe: CardRecipe, log: Callable[[str], None] = print) -> None:
    """Put into the card its ``metrics``, measured on the weights as stored (float16), not on the in-memory
    float32 model, and its ``anchors``: the published numbers for every (sigma, scale) it was measured at."""
    shipped = weights.load_pretrained(card=card)
    metrics = []
    for name, (sigma, scale) in itertools.product(recipe.eval_sets, recipe.settings):
        result = run_evaluation(shipped, recipe.task, name, channels=recipe.channels, sigma=sigma, scale=scale,
                                seed=0, limit=recipe.eval_limit)
        protocol = {k: v for k, v in result.protocol.items() if k != "date"}
        entry = {"dataset": name, "protocol": protocol, "psnr": round(result.mean_psnr, 4),
                 "ssim": round(result.mean_ssim, 5), "limit": card_limit(name, recipe.eval_limit)}
        entry.update({"sigma": sigma} if recipe.task == "denoise" else {})
        entry.update({"scale": scale} if recipe.task == "sr" else {})
        metrics.append(entry)
        setting = f" x{scale}" if scale else f" sigma {sigma:g}" if recipe.sigma_range is not None else ""
        log(f"{name}{setting}: PSNR {entry['psnr']:.2f} dB, SSIM {entry['ssim']:.4f}")
    card["metrics"] = metrics
    datasets = sorted({m["dataset"] for m in metrics})
    card["anchors"] = [dict(a, scale=k) if k else dict(a, sigma=s) if recipe.sigma_range is not None else a
                       for s, k in recipe.settings for a in weights.anchors_for(recipe.task, s, k, datasets)]


def finish_card(path: str | os.PathLike, eval_datasets: Sequence[str],
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure a card written elsewhere (e.g. by :mod:`deconvlab.fused` on the GPU host) here, from its stored
    float16 file, and write its ``metrics`` and ``anchors`` into it.

    Denoisers are measured at their sigma (blind ones at each of :data:`BLIND_LEVELS`), super-resolvers at every
    scale they serve (``scale`` or ``scales``) under the SR protocol; ``eval_datasets`` are full test sets."""
    path = Path(path)
    card = weights.read_card(path)
    rng = card.get("sigma_range")
    scales = weights.card_scales(card) if card["task"] == "sr" else []
    if card["task"] == "sr" and not scales:
        raise ArgumentError(f"SR card {card['id']} records no scale or scales: it cannot be measured")
    recipe = CardRecipe(task=card["task"], out_dir=path.parent, sigma=card.get("sigma"),
                        sigma_range=tuple(rng) if rng else None, scale=scales[0] if len(scales) == 1 else None,
                        scales=scales if len(scales) > 1 else None, channels=weights.card_channels(card),
                        eval_datasets=list(eval_datasets))
    measure_card(card, recipe, log)
    card.pop("_path", None)
    weights.write_card(card, path)
    return card


def train_card(recipe: CardRecipe, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build, train and save a model with its card (weights, card and history in ``recipe.out_dir``)."""
    from . import config, models, train

    profile = config.get_profile(recipe.profile)
    config.set_seed(recipe.seed)
    builder = recipe.arch or tasks.DEFAULT_BUILDERS[recipe.task]
    kwargs = builder_kwargs(builder, recipe.task, recipe.channels, recipe.scale, recipe.upsample, profile,
                            recipe.arch_kwargs)
    # the card is checked against these limits when it is saved: refuse before any data is loaded or trained on
    weights.check_builder_arguments(recipe.id, builder, kwargs,
                                    advice="change --arch-kwargs: a model card must keep to weights.ARG_LIMITS")
    with train.precision_policy(recipe.mixed_precision, profile) as precision:
        model = models.build_model(builder, **kwargs)
    if model.count_params() > weights.MAX_CARD_PARAMS:  # load_pretrained would refuse the card after the run
        raise ArgumentError(f"--arch-kwargs describe {model.count_params():,} parameters, more than a model card may "
                            f"hold ({weights.MAX_CARD_PARAMS:,}): make the model smaller")
    # The card is measured on the real test sets, never on an offline stand-in: fetch their files now, so that
    # no network (or a local copy without them) fails here and not after the whole training run.
    for name in recipe.eval_sets:
        if dataset_key(name) not in FALLBACK_NAMES:
            fetch_dataset(name, limit=recipe.eval_limit)
    post = recipe.task == "sr" and (builder == "fsrcnn" or kwargs.get("upsample") == "post")
    train_data, val_data, train_set, val_set = _patch_data(recipe, profile, post)
    recipe.out_dir.mkdir(parents=True, exist_ok=True)
    deadline = deadline_callback(recipe.time_limit_min * 60) if recipe.time_limit_min else None
    history_path = recipe.out_dir / f"{recipe.id}{weights.HISTORY_SUFFIX}"
    checkpoint = recipe.out_dir / f"{recipe.id}.checkpoint.keras"
    start = time.perf_counter()
    history = train.train(model, train_data, val_data, profile=profile, epochs=recipe.epochs,
                          steps_per_epoch=train_data.steps_per_epoch, learning_rate=recipe.learning_rate,
                          checkpoint=checkpoint, history_path=history_path,
                          verbose=recipe.verbose, callbacks=[deadline] if deadline else ())
    wall = time.perf_counter() - start
    kept = _keep_best(model, checkpoint, history)
    fields: dict[str, Any] = {
        "id": recipe.id, "task": recipe.task,
        # Every argument, defaults included: the card must rebuild this model even if a default changes later.
        "architecture": models.model_spec(model) or {"builder": builder, "kwargs": kwargs},
        "command": recipe.command, "profile": profile.name, "seed": recipe.seed, "precision": precision,
        "wall_time_s": round(wall, 1), "epochs_run": len(history.history.get("loss", [])),
        "stopped_by_time_limit": bool(deadline and deadline.fired), "kept_epoch": kept,
        # per-epoch lists, NaN as None (JSON has no NaN)
        "history": {str(k): [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]
                    for k, values in history.history.items()},
        "data": {"train": train_set.name, "validation": val_set.name,
                 "fallback": bool(train_set.is_fallback or val_set.is_fallback),
                 # by the registry names asked for: a held-aside part carries a longer name
                 "registry_sha256": dataset_digest([name for name, part in ((recipe.train_dataset, train_set),
                                                                            (recipe.val_dataset, val_set))
                                                    if name and not part.is_fallback])},
    }
    if recipe.task == "denoise":
        fields.update({"sigma": recipe.sigma} if recipe.sigma_range is None else {"sigma_range": list(recipe.sigma_range)})
    if recipe.task == "sr":
        fields.update({"scales": recipe.scales, "upsample": "pre"} if recipe.scales else
                      {"scale": recipe.scale, "upsample": "post" if post else "pre"})
    card = weights.save_pretrained(model, fields, recipe.out_dir)
    # the history's checkpoint names the card's weights file: the temporary one it named is gone
    saved = weights.load_history(history_path)
    saved["meta"]["checkpoint"] = card["weights_file"]
    weights.save_history(history_path, saved)
    measure_card(card, recipe, log)
    weights.write_card(card, card["_path"])
    log(f"wrote {card['_path']} and {Path(card['_path']).parent / card['weights_file']} "
        f"({card['params']:,} parameters, epoch {kept} of {fields['epochs_run']} kept, {wall:.0f} s)")
    return card


def _keep_best(model: Any, checkpoint: Path, history: Any) -> int:
    """Load the checkpoint (best val_psnr) into ``model`` and delete its file, whose weights the card's file
    replaces; returns the epoch kept. TrainingError where val_psnr was never finite (it diverged)."""
    kept, best = len(history.history.get("loss", [])), history.meta.get("best")
    if not best:  # NaN weights: measuring them would fail on a test set, naming the NaN
        raise TrainingError(f"validation PSNR was never finite up to epoch {kept} (training diverged): "
                            "lower --learning-rate")
    if checkpoint.exists():
        model.load_weights(checkpoint)
        kept = int(best["epoch"])
    checkpoint.unlink(missing_ok=True)
    return kept


#: A card id becomes file names inside the output folder: one path component, no hidden files, no "..".
CARD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def check_card_id(card_id: str) -> None:
    """ArgumentError unless ``card_id`` can name the files written into --out (``deconvlab train``, ``fused``)."""
    if not CARD_ID.fullmatch(card_id) or ".." in card_id:
        raise ArgumentError(f"--id {card_id!r}: use letters, digits and . _ + - (up to 100, no '/' or '..'); "
                            "it names the files written into --out")
    if card_id.lower().endswith(".history"):  # "{id}.history.json" is a history file's name, not a card's
        raise ArgumentError(f"--id {card_id!r} ends in .history, which names training histories: "
                            "pick another id")


#: Model names every backend accepts (TensorFlow's root scope refused "é" and "a b" after the data loaded).
MODEL_NAME = re.compile(r"(?:[A-Za-z0-9.][A-Za-z0-9._-]*)?")


def json_object(option: str, text: str, example: str) -> dict[str, Any]:
    """The JSON object an option gives (builder keyword arguments), else an ArgumentError naming ``option``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{option} is not JSON ({exc.msg}): e.g. '{example}'") from None
    if not isinstance(value, dict):
        raise ArgumentError(f"{option} must be a JSON object, e.g. '{example}'")
    return value


def card_recipe(options: dict[str, Any], command: str) -> CardRecipe:
    """The :class:`CardRecipe` of ``deconvlab train``'s options (argparse's names), checked before Keras starts."""
    o = dict(options)
    if o["scales"] is not None and (o["task"] != "sr" or o["scale"] is not None or o["upsample"] != "pre"):
        raise ArgumentError("--scales replaces --scale and needs --task sr with --upsample pre")
    scales = None if o["scales"] is None else tasks.parse_scales(o["scales"])
    if scales is None:
        o["sigma"], o["scale"] = tasks.check_task_args(o["task"], o["sigma"], o["scale"])
    elif o["sigma"] is not None:
        raise ArgumentError("--sigma applies to --task denoise only; drop it for --task sr")
    if o["sigma_range"] is not None and (o["task"] != "denoise" or o["sigma"] is not None):
        raise ArgumentError("--sigma-range (blind denoising) replaces --sigma and needs --task denoise")
    sigma_range = None if o["sigma_range"] is None else tasks.check_sigma_range(*o["sigma_range"])
    if o["task"] == "denoise" and o["sigma"] is None and sigma_range is None:
        raise ArgumentError("--task denoise needs --sigma S (or --sigma-range LO HI for a blind model)")
    if o["task"] == "sr" and o["channels"] == 3:  # else evaluate refused it after the whole run
        raise ArgumentError("--channels 3 with --task sr: the SR protocol works on the Y channel (colour "
                            "images are upscaled through it); leave --channels out (1)")
    if o["id"] is not None:
        check_card_id(o["id"])
    if not o["out"]:  # Path("") is ".": the files went into the current folder
        raise OutputError("--out is empty: pass a folder for the weights and the card (--out . for this one)")
    extra = json_object("--arch-kwargs", o["arch_kwargs"], '{"fusion": "concat"}') if o["arch_kwargs"] else {}
    _check_set_by_options(extra, o["task"], o["channels"], o["scale"], o["scales"])
    if "name" in extra and not (isinstance(extra["name"], str) and MODEL_NAME.fullmatch(extra["name"])):
        raise ArgumentError(f"--arch-kwargs name={extra['name']!r}: name the model with letters, digits and . _ - "
                            "(not starting with _ or -), e.g. \"red_net\"")
    if o["val_dataset"] is not None and dataset_key(o["val_dataset"]) in tasks.TEST_SETS:
        raise ArgumentError(f"--val-dataset {o['val_dataset']} is a test set: a checkpoint chosen on it is tuned to "
                            "the numbers the card reports; leave --val-dataset out (the last training images are "
                            "held aside) or pass a training set")
    if o["val_dataset"] is not None and dataset_key(o["val_dataset"]) == dataset_key(o["train_dataset"]):
        raise ArgumentError(f"--val-dataset {o['val_dataset']} is the training set: a checkpoint chosen on "
                            "it is chosen on images it was trained on; leave --val-dataset out (the last "
                            "training images are held aside) or pass another training set")
    if dataset_key(o["train_dataset"]) in tasks.TEST_SETS:
        raise ArgumentError(f"--train-dataset {o['train_dataset']} is a test set: the card would report PSNR "
                            "on the images it was trained on; leave --train-dataset out (train400) or pass a "
                            "training set")
    evals = [n.strip() for n in o["eval_datasets"].split(",") if n.strip()] if o["eval_datasets"] else None
    # a misspelt set would otherwise surface when it is loaded: the test sets only after the whole training run
    for option, name in [("--train-dataset", o["train_dataset"]), ("--val-dataset", o["val_dataset"]),
                         *(("--eval-datasets", n) for n in evals or [])]:
        check_set_name(option, name)
    # a set named twice ("bsd68,BSD68") was measured twice: once, by its registry name, as fused does
    evals = list(dict.fromkeys(map(dataset_key, evals))) if evals else None
    return CardRecipe(
        task=o["task"], out_dir=Path(o["out"]).expanduser(), sigma=o["sigma"], sigma_range=sigma_range,
        scale=o["scale"], scales=scales, channels=o["channels"], arch=o["arch"], arch_kwargs=extra,
        upsample=o["upsample"], profile=o["profile"], card_id=o["id"], epochs=o["epochs"], steps=o["steps"],
        patch_size=o["patch_size"], learning_rate=o["learning_rate"], mixed_precision=o["mixed_precision"],
        train_dataset=o["train_dataset"], train_limit=o["train_limit"], val_dataset=o["val_dataset"],
        eval_datasets=evals, eval_limit=o["eval_limit"], seed=o["seed"], workers=o["workers"],
        time_limit_min=o["time_limit"], command=command, verbose=0 if o["quiet"] else "auto",
    )


def _check_set_by_options(extra: dict[str, Any], task: str, channels: int, scale: int | None,
                          scales: str | None) -> None:
    """ArgumentError where --arch-kwargs gives channels (or, for sr, scale) other than the options: the data are
    prepared for the options' values, so a model built for others failed after loading them (channels) or saved a
    card whose setting its architecture contradicts (scale)."""
    given = [("channels", "--channels", channels)]
    if task == "sr":
        given.append(("scale", "--scales" if scales is not None else "--scale", scales or scale))
    for key, option, value in given:
        # with --scales every scale is trained, so no one scale in --arch-kwargs can agree with them all
        if key in extra and (extra[key] != value or (key == "scale" and scales is not None)):
            raise ArgumentError(f"--arch-kwargs {key}={extra[key]!r} contradicts {option} {value}: drop {key} from "
                                f"--arch-kwargs ({option} sets it)")


def check_set_name(option: str, name: str | None) -> None:
    """UnknownDatasetError unless ``name`` is a registered set or a fallback one (reads the registry only)."""
    if name is None or dataset_key(name) in FALLBACK_NAMES:
        return
    try:
        _info(name)
    except UnknownDatasetError as exc:
        raise UnknownDatasetError(f"{option}: {exc}") from None


def train_card_into(recipe: CardRecipe, overwrite: bool, log: Callable[[str], None] = print,
                    before_move: Callable[[], None] = lambda: None) -> list[Path]:
    """:func:`train_card` through :func:`write_card_into`: a failure leaves ``recipe.out_dir`` as it was."""
    out_dir = recipe.out_dir

    def write(tmp: Path) -> None:
        # train_card reports the files where it wrote them; they end up in out_dir under the same names.
        train_card(dataclasses.replace(recipe, out_dir=tmp),
                   log=lambda message: log(message.replace(str(tmp), str(out_dir))))

    return write_card_into(out_dir, recipe.id, overwrite, write, before_move)


def write_card_into(out_dir: Path, card_id: str, overwrite: bool, write: Callable[[Path], Any],
                    before_move: Callable[[], None] = lambda: None) -> list[Path]:
    """``write(folder)`` in a hidden temporary folder next to (or inside) ``out_dir``, whose files move in only when
    it returned (``before_move`` may still stop it, e.g. after a Ctrl-C): a failure leaves ``out_dir`` as it was.
    Files of ``out_dir`` that ``write`` did not write stay. Returns the files moved in. ``deconvlab train`` and
    ``python -m deconvlab.fused`` save their cards through it."""
    # mkdir rather than mkdtemp: a new out_dir is this folder renamed, and gets the umask's permissions, not 0700
    tmp = (out_dir if out_dir.is_dir() else out_dir.parent) / f".{card_id}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        before_move()
        return _move_results(tmp, out_dir, card_id, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_results(tmp: Path, out_dir: Path, card_id: str, overwrite: bool) -> list[Path]:
    """Move a finished run into ``out_dir``, the card last, so a reader that lists the folder never sees a card
    whose weights are not there yet."""
    if not out_dir.exists():
        try:
            os.replace(tmp, out_dir)  # one rename: the whole folder appears at once
        except OSError as exc:  # another job created out_dir since the check: move in file by file, as below
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        else:
            return sorted(out_dir.iterdir())
    card = f"{card_id}.json"
    names = sorted((p.name for p in tmp.iterdir()), key=lambda n: n == card)
    there = [n for n in names if os.path.lexists(out_dir / n)]
    if there and not overwrite:
        raise OutputError(f"{out_dir / there[-1]} appeared while training: pass --overwrite or another --out (another "
                          "job wrote it; nothing of this run was moved in, and its trained files were discarded)")
    for name in names:
        os.replace(tmp / name, out_dir / name)
    tmp.rmdir()
    return [out_dir / n for n in names]


def enhance_speed(model: Any, task: str, sizes: Sequence[int], *, scale: int = 1, channels: int = 1,
                  tile: int | None = None, repeat: int = 3,
                  label: str = "the model") -> list[tuple[int, float, float, float]]:
    """(side, output megapixels, median seconds, seconds per megapixel) of :func:`deconvlab.infer.enhance` on random
    square images; a warm-up call first, since graph tracing is not speed. ArgumentError (naming ``label``) where
    ``tile`` is too small to tile the model exactly, as ``enhance`` would be asked to."""
    from .infer import check_exact_tile, enhance, tiled_side

    if tile and tiled_side(model, max(sizes), task, scale) > tile:
        # tile_predict's own refusal named an overlap this command has no option for
        check_exact_tile(model, label, tile, overlap_option=False)

    rng = np.random.default_rng(0)

    def image(n: int) -> np.ndarray:
        return rng.random((n, n) if channels == 1 else (n, n, 3), dtype=np.float32)

    enhance(model, image(min(sizes)), task, scale=scale, tile=tile, overlap=None)
    rows = []
    for n in sizes:
        img, times = image(n), []
        for _ in range(repeat):
            t0 = time.perf_counter()
            enhance(model, img, task, scale=scale, tile=tile, overlap=None)
            times.append(time.perf_counter() - t0)
        seconds, megapixels = float(np.median(times)), n * n * scale * scale / 1e6
        rows.append((n, megapixels, seconds, seconds / megapixels))
    return rows
