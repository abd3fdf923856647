"""The GPU host's fast training path for denoisers and super-resolution: Keras on JAX, fused steps, batches
drawn on the device.

``model.fit`` on JAX dispatches one step at a time and waits for the host between them; here one jitted call runs
``steps_per_call`` Adam steps in a ``lax.scan`` over ``model.stateless_call`` + ``optimizer.stateless_apply``,
and every step draws its batch on the GPU with :class:`deconvlab.sampler.PatchSampler` (issue 17 measured
16.9 k patches/s against 16.4 k for ``fit`` and 11.4 k for ``train_on_batch``, ``benchmarks/results/speed_gpu.md``).

:func:`train_denoiser` trains any gray denoiser of :mod:`deconvlab.models` for a wall-clock budget: the cosine
schedule's length is re-estimated from the measured speed, so the decay ends inside the budget even when other
runs share the GPU. The checkpoint is chosen on held-aside training images (:func:`held_aside`), never on a test
set. ``python -m deconvlab.fused`` trains one model card with it (the shipped RED-Net and U-Net denoisers).

:func:`train_sr` is the same loop for post-upsampling super-resolution (``--task sr --scale S``): the Y channel
of T91 (8-bit, as the SRCNN/VDSR code reads it) and optionally Train400 (gray, mapped into Y's [16, 235] range)
are downscaled once on the host with the protocol's MATLAB bicubic (:func:`deconvlab.sampler.sr_pairs`), the
device crops aligned pairs (:class:`deconvlab.sampler.SRPatchSampler`), and the checkpoint is chosen on the last
:data:`SR_VAL_IMAGES` T91 images (:func:`held_aside_sr`), never on Set5 or Set14. On a machine without the
files, ``$DECONVLAB_DATA`` may hold packs (:mod:`deconvlab.packed`, ``benchmarks/pack_sr_data.py``).
JAX only; other backends train with :func:`deconvlab.train.train`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArgumentError, DataError, TrainingError, UnknownDatasetError
from .tasks import HELD_ASIDE_IMAGES, held_aside_split, y_range

__all__ = ["FusedTrainer", "LOSSES", "SR_VAL_IMAGES", "VAL_IMAGES", "VAL_NOISE_SEED", "cosine_lr", "held_aside",
           "held_aside_sr", "sr_training_images", "train_denoiser", "train_sr"]

VAL_IMAGES = HELD_ASIDE_IMAGES  # the last 8 Train400 images (file order) are held aside to choose the checkpoint
VAL_NOISE_SEED = 10_000
SR_VAL_IMAGES = 8  # the last 8 T91 images (registry order) choose an SR checkpoint
LOSSES = ("mse", "l1")


def cosine_lr(step, total, peak, warmup, final_fraction=0.01):
    """Linear warm-up from peak/10 to peak over ``warmup`` steps, then cosine decay to ``final_fraction * peak``.

    The recipe of :func:`deconvlab.train.learning_rate_schedule`; ``total`` may be a traced value, so a run's
    length can change after it started (a wall-clock budget).
    """
    import jax.numpy as jnp

    step = jnp.asarray(step, jnp.float32)
    warm = peak / 10 + (peak - peak / 10) * step / max(warmup, 1)
    progress = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1), 0.0, 1.0)
    decay = peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * progress)))
    return jnp.where(step < warmup, warm, decay)


class FusedTrainer:
    """``steps_per_call`` Adam steps of a Keras model per jitted dispatch, batches from a sampler or fixed arrays.

    ``state = trainer.init()``; ``state, loss = trainer.run(state, first_step, total_steps)``. With a
    ``sampler`` (any object with ``state()`` and a pure ``sample(*state, step)``) each step draws batch ``step``
    on the device; with ``fixed=(x, y)`` every step reuses those device arrays (the like-for-like speed
    benchmark). The learning rate is ``cosine_lr`` (``peak``, ``warmup``) written into the optimizer's
    learning-rate variable each step; gradients are clipped to a global norm of 1, as in ``deconvlab.train``;
    ``loss`` "mse" or "l1" (mean absolute error). With ``ema`` (a decay such as 0.999) the state also carries an
    exponential moving average of the weights, which :meth:`weights` (validation, the kept checkpoint) returns.
    With a ``strategy`` (:func:`deconvlab.distribute.data_parallel`, JAX) the state is replicated and each step's
    batch is split over the replicas (build the sampler with ``device=strategy.replicated()``).
    """

    def __init__(self, model, steps_per_call: int, sampler=None, fixed=None, peak_lr: float = 1e-3,
                 warmup: int = 0, strategy=None, loss: str = "mse", ema: float | None = None) -> None:
        import jax
        import jax.numpy as jnp
        import keras

        self.model = model
        self.steps_per_call = int(steps_per_call)
        self.ema = ema
        self.optimizer = keras.optimizers.Adam(peak_lr, global_clipnorm=1.0)
        self.optimizer.build(model.trainable_variables)
        lr_index = next(i for i, v in enumerate(self.optimizer.variables) if v.path.endswith("learning_rate"))

        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}: use one of {LOSSES}")
        # L1 is the SR literature's choice (EDSR, LapSRN's Charbonnier): it weighs the many small residual
        # errors more than MSE does, which the PSNR of a well-trained model is made of
        penalty = jnp.abs if loss == "l1" else jnp.square

        def loss_fn(trainable, non_trainable, x, y):
            pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return jnp.mean(penalty(pred.astype(jnp.float32) - y)), non_trainable

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def one_step(state, step, data, total):
            trainable, non_trainable, opt_vars, *averaged = state
            x, y = sampler.sample(*data, step) if sampler is not None else data
            if strategy is not None:  # data parallel: each replica computes on its slice of the global batch
                x, y = jax.lax.with_sharding_constraint((x, y), strategy.batch_sharding())
            (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            opt_vars = list(opt_vars)
            opt_vars[lr_index] = cosine_lr(step, total, peak_lr, warmup).astype(opt_vars[lr_index].dtype)
            trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
            if ema is not None:  # Polyak averaging: the mean of the last ~1/(1 - ema) steps' weights
                averaged = [[ema * a + (1 - ema) * w for a, w in zip(averaged[0], trainable, strict=True)]]
            return (trainable, non_trainable, opt_vars, *averaged), loss

        def run(state, data, first, total):
            steps = first + jnp.arange(self.steps_per_call, dtype=jnp.int32)
            state, losses = jax.lax.scan(lambda s, k: one_step(s, k, data, total), state, steps)
            return state, jnp.mean(losses)

        self._run = jax.jit(run, donate_argnums=0)
        self._data = sampler.state() if sampler is not None else tuple(fixed)
        self.strategy = strategy

        def predict(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        self._predict = jax.jit(predict)

    def init(self):
        import jax

        state = ([v.value for v in self.model.trainable_variables],
                 [v.value for v in self.model.non_trainable_variables],
                 [v.value for v in self.optimizer.variables])
        if self.ema is not None:  # a copy: the step donates its state, and one buffer cannot be donated twice
            state = (*state, [jax.numpy.copy(v.value) for v in self.model.trainable_variables])
        # committed like the step's outputs: an uncommitted first state would compile the step a second time
        where = self.strategy.replicated() if self.strategy else jax.tree.leaves(self._data)[0].sharding
        return jax.device_put(state, where)

    def run(self, state, first_step: int, total_steps: int):
        return self._run(state, self._data, np.int32(first_step), np.float32(total_steps))

    def weights(self, state) -> tuple:
        """(trainable, non-trainable) values that validation and checkpoints use: the average with ``ema``."""
        return (state[3] if self.ema is not None else state[0]), state[1]

    def predict(self, state, x):
        return self._predict(*self.weights(state), x)

    def write_back(self, trainable, non_trainable) -> None:
        """Copy weights (e.g. a kept checkpoint) into the Keras model's variables."""
        for var, value in zip(self.model.trainable_variables, trainable, strict=True):
            var.assign(value)
        for var, value in zip(self.model.non_trainable_variables, non_trainable, strict=True):
            var.assign(value)


def held_aside(images: list, sigmas: tuple[float, ...] = (25.0,), count: int = VAL_IMAGES):
    """(training images, (noisy, clean) NHWC validation arrays): the last ``count`` images are held aside
    (:func:`deconvlab.tasks.held_aside_split`: copies of them leave training too). Held images of different
    sizes (the offline fallback's photographs; Train400's are all 180x180) are cropped as :func:`held_aside_sr`
    crops them.

    Each held image gets one noisy copy per level in ``sigmas`` (noise seed ``VAL_NOISE_SEED + i``, then
    ``+ 1000`` per further level), so a blind model is chosen on every level it is meant for.
    """
    from .degrade import add_gaussian_noise

    kept, held_ids = held_aside_split(images, count)
    train, held = [images[i] for i in kept], _centre_crops([images[i] for i in held_ids])
    noisy = [add_gaussian_noise(img, sigma, seed=VAL_NOISE_SEED + 1000 * j + i)
             for j, sigma in enumerate(sigmas) for i, img in enumerate(held)]
    clean = held * len(sigmas)
    return train, (np.stack(noisy)[..., None].astype(np.float32), np.stack(clean)[..., None].astype(np.float32))


def _validation(trainer: FusedTrainer, val_x, val_y, shave: int = 0) -> Callable[[Any], float]:
    """Mean PSNR of the held pairs, outputs clipped to [0, 1] and ``shave`` border pixels left out (SR: the
    scale, the protocol's metric)."""
    import jax
    import jax.numpy as jnp

    inner = (slice(None), slice(shave, -shave or None), slice(shave, -shave or None))
    x, y = jax.device_put(val_x), jax.device_put(val_y[inner])

    def psnr(state) -> float:
        out = jnp.clip(trainer.predict(state, x).astype(jnp.float32), 0, 1)[inner]
        return float(jnp.mean(-10 * jnp.log10(jnp.mean(jnp.square(out - y), axis=(1, 2, 3)))))

    return psnr


def train_denoiser(model, train_images: list, validation: tuple, *, sigma: float | tuple[float, float],
                   patch: int = 96, batch: int = 64, seed: int = 0, loss: str = "mse", **loop: Any) -> dict[str, Any]:
    """Train ``model`` in place; its variables end as the checkpoint best on ``validation``; returns the record.

    Give ``steps`` (a fixed run) or ``budget_s`` (wall-clock seconds from this call, compilation included): the
    cosine schedule's total is then re-estimated at every validation from the speed of the last interval, and
    training stops at the budget whatever the estimate said. ``loop`` takes the loop's options and their defaults:
    ``lr=1e-3``, ``warmup=1000``, ``budget_s``, ``steps``, ``steps_per_call=50``, ``eval_every=1000``,
    ``reserve_s=10`` (budget seconds the step plan keeps back), ``ema=None``, ``log=print``.

    The record's ``train_seconds`` (and ``patches_per_s``, and each curve point's ``seconds``) count from the
    loop's start, compilation and validation included; ``data_seconds`` is the host-side preparation before it
    (the sampler's images put on the device; SR: also the bicubic pairs). A budget counts both.

    A run stops at the first validation where both the loss and the validation PSNR are not finite (diverged
    weights never recover): it keeps its best earlier checkpoint and records ``diverged_at_step``, or raises
    TrainingError if it had none.
    """
    from .sampler import PatchSampler

    start = time.perf_counter()
    sampler = PatchSampler(train_images, patch_size=patch, batch_size=batch, sigma=sigma, seed=seed)
    record = _train_loop(model, sampler, validation, start=start, batch=batch, seed=seed, loss=loss, **loop)
    return {**record, "patch": patch, "sigma": list(sigma) if isinstance(sigma, tuple) else sigma}


def _finite(value: float) -> float | None:
    """``value``, None where it is NaN or infinite (a diverged step): JSON has no NaN, and the curve goes into the
    card and the history file, which :func:`deconvlab.train.train` writes the same way."""
    return value if math.isfinite(value) else None


def _train_loop(model, sampler, validation: tuple, *, start: float, batch: int, seed: int, loss: str, shave: int = 0,
                lr: float = 1e-3, warmup: int = 1000, budget_s: float | None = None, steps: int | None = None,
                steps_per_call: int = 50, eval_every: int = 1000, reserve_s: float = 10.0,
                ema: float | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    import jax

    if (steps is None) == (budget_s is None):
        raise ValueError("give steps or budget_s")
    begin = time.perf_counter()  # training's own clock; the budget's is `start`, before the data was prepared
    k = int(steps_per_call)
    warmup, eval_every = -(-warmup // k) * k, -(-eval_every // k) * k
    trainer = FusedTrainer(model, k, sampler=sampler, peak_lr=lr, warmup=warmup, loss=loss, ema=ema)
    val_psnr = _validation(trainer, *validation, shave)
    state = trainer.init()
    # whole calls of k steps, as warmup and eval_every; a budget run: a placeholder until the speed is known
    total = -(-int(steps) // k) * k if steps is not None else 10**9
    step, curve, best, best_state, mark, diverged = 0, [], -math.inf, None, None, None
    while step < total:
        state, loss_value = trainer.run(state, step, total)
        step += k
        if step % eval_every and step < total:
            continue
        psnr, now = val_psnr(state), time.perf_counter()
        if budget_s is not None:
            if mark is not None:  # seconds per step over the last interval, validation included
                left = budget_s - reserve_s - (now - start)
                total = step + max(0, int(left * (step - mark[1]) / (now - mark[0]) / k)) * k
            mark = (now, step)
        if psnr > best:
            best, best_state = psnr, jax.tree.map(jax.numpy.copy, trainer.weights(state))
        curve.append({"step": step, "seconds": round(now - begin, 2), "train_loss": _finite(float(loss_value)),
                      "val_psnr": _finite(round(psnr, 4)), "planned_steps": int(min(total, 10**9))})
        log(f"step {step:6d}  {now - begin:6.1f} s  loss {float(loss_value):.6f}  val {psnr:.3f} dB"
            f"{'  *' if psnr >= best else ''}  (of {total if total < 10**9 else '?'})")
        if budget_s is not None and now - start > budget_s:
            break
        if not (math.isfinite(psnr) or math.isfinite(float(loss_value))):
            # NaN weights stay NaN (Adam's moments carry them on): the steps left would only spend device time
            log(f"step {step}: loss and validation are not finite (training diverged): stopping here")
            diverged = step
            break
    jax.block_until_ready(state)
    seconds = time.perf_counter() - begin
    if best_state is None:  # NaN is never > best: nothing to keep, and write_back would fail on None
        raise TrainingError(f"validation PSNR was never finite in {step} steps (training diverged): lower --lr")
    trainer.write_back(*best_state)
    return {"steps": step, "batch": batch, "lr": lr, "warmup_steps": warmup, "steps_per_call": k, "seed": seed,
            "loss": loss, "train_seconds": round(seconds, 1), "patches_per_s": round(step * batch / seconds, 1),
            "data_seconds": round(begin - start, 1),
            "best_val_psnr": round(best, 4), "curve": curve, **({"ema": ema} if ema is not None else {}),
            **({"diverged_at_step": diverged} if diverged is not None else {})}


# ------------------------------------------------------------------------------------------- super-resolution


def sr_training_images(sets: tuple[str, ...] = ("t91",), limit: int | None = None) -> tuple[list, dict[str, list[str]]]:
    """(gray images, names per set) for SR training: T91 as 8-bit luma, Train400 mapped by
    :func:`deconvlab.tasks.y_range`.

    Each set comes from a pack in ``$DECONVLAB_DATA`` if there is one (:mod:`deconvlab.packed`), else from the
    registry's verified files. T91 comes last in the list, so :func:`held_aside_sr` holds back its last images.
    """
    from . import packed

    images, names = [], {}
    for name in sorted(sets, key=lambda n: n == "t91"):
        if name == "t91":
            found = packed.load_dataset("t91", view="y", limit=limit)
            images += list(found.images)
        elif name == "train400":
            found = packed.load_dataset("train400", view="stored", mode="gray", limit=limit)
            images += [y_range(x) for x in found.images]
        else:
            raise ValueError(f"SR training set {name!r}: use t91 and/or train400")
        names[name] = list(found.names)
    return images, names


def scale_augmented(images: list, factors: Sequence[float], min_side: int = 1) -> list:
    """``images`` followed by MATLAB-bicubic copies of each at every factor in ``factors`` (e.g. 0.9 ... 0.6):
    the data augmentation of FSRCNN (Dong et al. 2016), more distinct textures for the same small training set.
    An image or copy with a side under ``min_side`` is left out: ``python -m deconvlab.fused`` passes
    ``scale * patch``, below which :class:`deconvlab.sampler.SRPatchSampler` leaves an image out anyway."""
    from .degrade import bicubic_resize

    copies = (bicubic_resize(x, f) for f in factors for x in images)
    return [x for x in (*images, *copies) if min(x.shape) >= min_side]


def held_aside_sr(images: list, scale: int, count: int = SR_VAL_IMAGES):
    """(training images, (lr, hr) NHWC validation arrays): the last ``count`` images are held aside
    (:func:`deconvlab.tasks.held_aside_split`: copies of them leave training too).

    Every held image is cropped about its centre to the largest size all of them share (a multiple of
    ``scale``), so validation is one batch; each low-resolution input is the protocol's MATLAB-bicubic
    downscale of its crop.
    """
    from .degrade import downscale

    kept, held_ids = held_aside_split(images, count)
    train, crops = [images[i] for i in kept], _centre_crops([images[i] for i in held_ids], scale)
    lows = [downscale(c, scale) for c in crops]
    return train, (np.stack(lows)[..., None].astype(np.float32), np.stack(crops)[..., None].astype(np.float32))


def _centre_crops(images: list, multiple: int = 1) -> list[np.ndarray]:
    """Each image cropped about its centre to the largest size all of them share, a multiple of ``multiple``."""
    h = min(x.shape[0] for x in images) // multiple * multiple
    w = min(x.shape[1] for x in images) // multiple * multiple
    corners = [((x.shape[0] - h) // 2, (x.shape[1] - w) // 2) for x in images]
    return [np.asarray(x[top : top + h, left : left + w], np.float32)
            for x, (top, left) in zip(images, corners, strict=True)]


def train_sr(model, train_images: list, validation: tuple, *, scale: int, patch: int = 32, batch: int = 32,
             seed: int = 0, loss: str = "l1", log: Callable[[str], None] = print, **loop: Any) -> dict[str, Any]:
    """Train a post-upsampling SR ``model`` (low-resolution in, ``scale`` times larger out) in place, as
    :func:`train_denoiser` does; ``patch`` is the low-resolution side (the target is ``scale * patch``)."""
    from .sampler import SRPatchSampler, sr_pairs

    start = time.perf_counter()
    sampler = SRPatchSampler(sr_pairs(train_images, scale), scale=scale, patch_size=patch, batch_size=batch, seed=seed)
    log(f"SR x{scale}: {sampler.num_images} training images, {sampler.pixels / 1e6:.2f} Mpx high-resolution, "
        f"pairs ready in {time.perf_counter() - start:.1f} s")
    record = _train_loop(model, sampler, validation, shave=scale, start=start, batch=batch, seed=seed, loss=loss,
                         log=log, **loop)
    return {**record, "patch": patch, "patch_hr": patch * scale, "scale": scale,
            "train_images_used": sampler.num_images}


def _save_card(model, fields: dict[str, Any], record: dict[str, Any], args: argparse.Namespace,
               datasets: tuple[str, ...] = ("train400",)) -> dict[str, Any]:
    """Save ``model`` with ``fields``, the validation curve (one "epoch" per validation interval) and the training
    sets' digest; the curve also goes to the history file that :func:`deconvlab.train.train` would write
    (``<id>.history.json``, read by ``weights.load_history``; a non-finite value is null). Returns the card. As
    ``deconvlab train``, the files are written into a temporary folder and moved into ``args.out`` together
    (:func:`deconvlab.recipes.write_card_into`): a failure or a Ctrl-C leaves ``args.out`` as it was, and a card
    of that id there is an OutputError unless ``args.overwrite``."""
    from . import console
    from .recipes import dataset_digest, write_card_into
    from .train import HISTORY_FORMAT
    from .weights import HISTORY_SUFFIX, save_history, save_pretrained

    curve = record["curve"]
    history = {"loss": [p["train_loss"] for p in curve], "val_psnr": [p["val_psnr"] for p in curve]}
    seconds = [b["seconds"] - a for a, b in zip([0.0] + [p["seconds"] for p in curve], curve, strict=False)]
    meta = {"epoch_seconds": [round(t, 3) for t in seconds], "epochs_done": len(curve),
            "steps_done": record["steps"], "monitor": "val_psnr", "monitor_mode": "max",
            "note": "one entry per validation interval of the fused trainer (deconvlab.fused)"}
    fields["data"]["registry_sha256"] = dataset_digest(list(datasets))
    fields.update(history=history, epochs_run=len(curve), stopped_by_time_limit=args.budget_s is not None)
    card: dict[str, Any] = {}

    def write(folder: Path) -> None:
        save_history(folder / f"{args.id}{HISTORY_SUFFIX}", {"format": HISTORY_FORMAT, "meta": meta, "history": history})
        card.update(save_pretrained(model, fields, folder))

    console.state.wrote.extend(write_card_into(args.out, args.id, args.overwrite, write,
                                               before_move=console.state.checkpoint))
    card["_path"] = str(args.out / f"{args.id}.json")  # where it was moved to
    return card


def _fraction(what: str, example: str, many: bool = False) -> Callable[[str], Any]:
    """argparse type: a number strictly between 0 and 1 (``many``: a tuple of comma-separated ones)."""

    def parse(text: str) -> Any:
        try:
            values = tuple(float(f) for f in text.split(",") if f.strip()) if many else (float(text),)
        except ValueError:
            values = (0.0,)
        if not all(0 < f < 1 for f in values):
            raise argparse.ArgumentTypeError(f"{text!r}: give {what} between 0 and 1, e.g. {example}")
        return values if many else values[0]

    return parse


def _parser() -> argparse.ArgumentParser:
    from .console import OneLineParser

    parser = OneLineParser(prog="python -m deconvlab.fused", description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("denoise", "sr"), default="denoise")
    parser.add_argument("--builder", default=None, help="default: unet (denoise), red_net_sr (sr)")
    parser.add_argument("--arch", default="{}", help="builder keyword arguments as JSON")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--sigma", type=float)
    level.add_argument("--sigma-range", type=float, nargs=2, metavar=("LO", "HI"))
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), help="SR factor (--task sr)")
    parser.add_argument("--train-sets", default=None, help="SR training sets: t91, or t91,train400 (the default)")
    parser.add_argument("--scale-augment", type=_fraction("factors", "0.9,0.8,0.7,0.6", many=True),
                        default=(), metavar="F1,F2,...",
                        help="SR: also train on bicubic copies of every training image at these factors "
                        "(FSRCNN: 0.9,0.8,0.7,0.6)")
    parser.add_argument("--id", required=True, help="card id")
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing card with the same id")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--budget-s", type=float, default=None)
    length.add_argument("--steps", type=int, default=None, help="rounded up to whole --steps-per-call calls")
    parser.add_argument("--patch", type=int, default=None, help="patch side (SR: low-resolution side); "
                        "default 96 (denoise), 32 (sr)")
    parser.add_argument("--batch", type=int, default=None, help="default 64 (denoise), 32 (sr)")
    parser.add_argument("--loss", choices=LOSSES, default=None, help="default mse (denoise), l1 (sr)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--steps-per-call", type=int, default=50, help="training steps fused into one dispatch")
    parser.add_argument("--ema", type=_fraction("a decay", "0.999"), default=None, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights (e.g. 0.999)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", default=None, help="test sets measured on the GPU after training "
                        "(default bsd68,set12 for denoise, set5,set14 for sr; sets not in DECONVLAB_DATA are skipped "
                        "with a note for sr)")
    parser.add_argument("--shared", type=int, default=1, help="how many runs shared the GPU (for the card)")
    parser.add_argument("--precision", default="mixed_bfloat16", choices=("float32", "mixed_bfloat16"),
                        help="no mixed_float16: the fused loop has no loss scaling")
    parser.add_argument("--train-limit", type=int, default=None, help="first N images of each training set (CPU smoke test)")
    parser.add_argument("--val-images", type=int, default=None, help="held-aside images (default 8)")
    return parser


def _arguments(argv) -> argparse.Namespace:
    """The parsed command line, each option in its range: a refusal is one line (UsageError), before any work."""
    from .console import seed
    from .recipes import check_card_id, check_set_name, json_object
    from .registry import dataset_key
    from .tasks import check_sigma, check_sigma_range

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.out.strip():  # Path("") is ".": the card would land in whatever folder the command ran from
        parser.error("--out is empty: pass a folder for the weights and the card (--out . for this one)")
    args.out = Path(args.out)
    if args.task == "denoise":
        if args.sigma is None and args.sigma_range is None:
            parser.error("--task denoise needs --sigma or --sigma-range")
        if args.scale is not None:
            parser.error("--scale applies to --task sr")
    else:
        if args.scale is None:
            parser.error("--task sr needs --scale 2, 3 or 4")
        if args.sigma is not None or args.sigma_range is not None:
            parser.error("--sigma applies to --task denoise")
    # refused here rather than where the value is first used: after the data was read and the model built, or
    # (--budget-s nan, --val-images 0) as an internal error
    for name, least in (("steps", 1), ("steps_per_call", 1), ("eval_every", 1), ("warmup", 0), ("shared", 1),
                        ("train_limit", 1), ("val_images", 1), ("patch", 1), ("batch", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    for name in ("budget_s", "lr"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} {value:g}: pass a finite number > 0")
    try:
        if args.sigma_range is not None:  # deconvlab train's limits: --sigma 1e6 trained a card nothing else takes
            args.sigma_range = check_sigma_range(*args.sigma_range)
        args.sigma = check_sigma(args.sigma)
        check_card_id(args.id)  # it names the files: 'a/b' trained the whole run and then could not save it
        seed(args.seed)  # deconvlab train's range: Keras refused others as an internal error
        args.arch = json_object("--arch", args.arch, '{"widths": [4, 8]}')  # was an internal error after loading
    except ArgumentError as exc:
        parser.error(str(exc))
    sr = args.task == "sr"
    # the trainer passes these to the builder itself: given again, they failed after the data was loaded
    owned = {"channels": "--task (1: gray, or Y for sr)"}
    owned.update({"scale": "--scale", "upsample": "--task sr (post)"} if sr else {})
    clash = sorted(owned.keys() & args.arch.keys())
    if clash:
        parser.error(f"--arch sets {clash[0]}, which {owned[clash[0]]} sets: drop it")
    if not sr and (args.train_sets is not None or args.scale_augment):  # they were ignored without a word
        parser.error("--train-sets and --scale-augment apply to --task sr")
    sets = (args.train_sets or "t91,train400").split(",")
    args.train_sets = tuple(dict.fromkeys(n.strip().lower() for n in sets if n.strip()))
    if sr and ("t91" not in args.train_sets or set(args.train_sets) - {"t91", "train400"}):
        parser.error("--train-sets: t91, or t91,train400 (the checkpoint is chosen on held-aside T91 images)")
    defaults = {"builder": "red_net_sr" if sr else "unet", "patch": 32 if sr else 96, "batch": 32 if sr else 64,
                "loss": "l1" if sr else "mse", "eval": "set5,set14" if sr else "bsd68,set12",
                "val_images": SR_VAL_IMAGES if sr else VAL_IMAGES}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # refused here, before any data is read: sr would note a misspelt set as "not measured" after training
    names = [n.strip() for n in args.eval.split(",") if n.strip()]
    for name in names:
        try:
            check_set_name("--eval", name)
        except UnknownDatasetError as exc:
            parser.error(str(exc))
    # gpu_metrics keys name each set as the registry files it and the cards' metrics entries do ("set5@x2" for
    # "--eval Set5"): tests/test_cards.py pairs the two by that name
    args.eval = tuple(dict.fromkeys(dataset_key(n) for n in names))
    return args


def main(argv=None) -> int:
    """``python -m deconvlab.fused``: a bad argument or a missing data set is one line, as in ``deconvlab``."""
    from .console import run

    return run(lambda: _run(argv))


def _run(argv) -> int:
    import keras

    from .recipes import check_out_dir

    args = _arguments(argv)
    check_out_dir(args.out, args.id, args.overwrite)  # a rerun replaced the card without a word
    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)
    # a benchmarks/gpu_fused.sh job (split on spaces), not a shell line: --arch's JSON is left unquoted
    command = "python -m deconvlab.fused " + " ".join(argv or sys.argv[1:])
    return _main_sr(args, command) if args.task == "sr" else _main_denoise(args, command)


def _options(args) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("patch", "batch", "lr", "warmup", "seed", "budget_s", "steps",
                                          "eval_every", "steps_per_call", "loss", "ema")}


def _build(args, arch: dict[str, Any]) -> Any:
    from . import models, weights

    # the card is refused at the end for arguments outside these limits: refuse them before training instead
    weights.check_builder_arguments(args.id, args.builder, arch, advice="change --arch to keep to weights.ARG_LIMITS")
    return models.build_model(args.builder, channels=1, **arch)


def _loaded(name: str, names: list[str], args) -> str:
    """A training set's name as a card gives it, ``(first N)`` added under ``--train-limit`` as recipes adds it:
    "without its last 8 images" then reads as of the images loaded."""
    return f"{name} (first {len(names)})" if args.train_limit is not None else name


def _main_denoise(args, command: str) -> int:
    from . import data, evaluate, tasks

    wall = time.perf_counter()
    # the test sets are loaded first: a missing one should stop the run before training, not after
    tests = {name: data.load_dataset(name, mode="gray") for name in args.eval}
    train_set = data.load_dataset("train400", mode="gray", limit=args.train_limit)
    sigma = tuple(args.sigma_range) if args.sigma_range else args.sigma
    val_sigmas = tasks.BLIND_LEVELS if args.sigma_range else (args.sigma,)
    count = args.val_images
    if count >= len(train_set.images):  # else "no training images" from the sampler, after the model was built
        raise ArgumentError(f"--val-images {count}: {len(train_set.images)} training images were loaded; hold "
                            "aside fewer, so that some are left to train on")
    train_images, validation = held_aside(list(train_set.images), val_sigmas, count=count)
    model = _build(args, args.arch)
    record = train_denoiser(model, train_images, validation, sigma=sigma, **_options(args))
    names = list(train_set.names)
    # offline, the fallback photographs stand in for Train400, and the card says so
    source = train_set.name if train_set.is_fallback else "Train400"
    cropped = len({img.shape for img in train_set.images[-count:]}) > 1
    fields = {
        "id": args.id, "task": "denoise", "command": command,
        "profile": "paper", "seed": args.seed, "precision": args.precision,
        "wall_time_s": round(time.perf_counter() - wall, 1), "training": dict(record),
        "gpu_shared_by": args.shared,
        "data": {"train": tasks.training_part_name(_loaded(train_set.name, names, args), count, (),
                                                    len(train_images)),
                 "validation": f"held-aside {source} {', '.join(names[-count:])}"
                               + (" (centre crops {}x{})".format(*validation[1].shape[1:3]) if cropped else "")
                               + ", sigma " + "/".join(f"{s:g}" for s in val_sigmas),
                 "fallback": bool(train_set.is_fallback)},
    }
    fields.update({"sigma_range": list(sigma), "blind": True} if args.sigma_range else {"sigma": args.sigma})
    card = _save_card(model, fields, record, args, datasets=() if train_set.is_fallback else ("train400",))
    gpu = {f"{name}@{s:g}": round(evaluate.evaluate(model, test, "denoise", sigma=s, seed=0).mean_psnr, 4)
           for name, test in tests.items() for s in val_sigmas}
    return _finish(card, record, gpu, args.id)


def _finish(card: dict[str, Any], record: dict[str, Any], gpu: dict[str, float], card_id: str) -> int:
    """Add the test-set PSNRs to the saved card (one atomic write) and print the RESULT line. They are measured
    after saving, so a failure while measuring (GPU memory, with jobs sharing the GPU; a Ctrl-C) keeps the trained
    card, without ``gpu_metrics``."""
    from . import weights

    card["gpu_metrics"] = gpu
    weights.write_card(card, card.pop("_path"))
    print("RESULT " + json.dumps({"id": card_id, "params": card["params"], "macs": card.get("macs_per_pixel"),
                                  "steps": record["steps"], "train_s": record["train_seconds"],
                                  "val": record["best_val_psnr"], **gpu}), flush=True)
    return 0


def _main_sr(args, command: str) -> int:
    from . import evaluate, packed, tasks

    wall = time.perf_counter()
    sets = args.train_sets
    images, names = sr_training_images(sets, limit=args.train_limit)
    count, scale = args.val_images, args.scale
    # held images past T91's would be Train400's, which the card still called held-aside T91 images
    most = len(names["t91"]) - ("train400" not in names)
    if count > most:
        raise ArgumentError(f"--val-images {count}: the checkpoint is chosen on held-aside T91 images; "
                            f"{len(names['t91'])} were loaded, so hold aside at most {most}")
    train_images, validation = held_aside_sr(images, scale, count=count)
    kept, _ = tasks.held_aside_split(images, count)
    factors = args.scale_augment
    # a copy smaller than the scale stopped the run in sr_pairs ("image 2x3 is smaller than scale=3")
    side, made = scale * args.patch, len(train_images) * (1 + len(factors))
    train_images = scale_augmented(train_images, factors, min_side=side)
    small = f" ({made - len(train_images)} under {side} pixels on a side left out)" if len(train_images) < made else ""
    model = _build(args, {"scale": scale, "upsample": "post", **args.arch})
    record = train_sr(model, train_images, validation, scale=scale, **_options(args))
    all_names = [n for part in names.values() for n in part]  # the order of `images`: t91 last
    copies = [all_names[i] for i in sorted(set(range(len(images) - count)) - set(kept))]
    t91 = _loaded("t91", names["t91"], args)
    parts = [tasks.training_part_name(f"{t91} Y (MATLAB rgb2ycbcr, 8 bits)", count, copies,
                                      len(names["t91"]) - count - len(copies))]
    if "train400" in names:
        gray = names["train400"]
        parts.append(f"{_loaded('train400', gray, args)} mapped to [16, 235]/255 ({len(gray)})")
    if factors:
        parts.append(f"each also bicubic-resized by {', '.join(map(str, factors))}")
    fields = {
        "id": args.id, "task": "sr", "scale": scale, "upsample": "post", "command": command,
        "profile": "paper", "seed": args.seed, "precision": args.precision,
        "wall_time_s": round(time.perf_counter() - wall, 1), "training": dict(record),
        "gpu_shared_by": args.shared,
        "data": {"train": " + ".join(parts) + small + f", pairs by MATLAB bicubic x1/{scale} of modcrop(hr, {scale})",
                 "validation": f"held-aside T91 {', '.join(names['t91'][-count:])} (Y, centre crops "
                               f"{validation[1].shape[1]}x{validation[1].shape[2]}, x{scale}, {scale} pixels shaved)",
                 "fallback": False},
    }
    card = _save_card(model, fields, record, args, datasets=tuple(sorted(sets)))
    gpu = {}
    for name in args.eval:
        try:  # the SR protocol reads the sets as stored (it takes Y of colour images itself)
            test = packed.load_dataset(name, view="stored")
        except DataError as exc:
            print(f"note: {name} not measured here ({exc})", flush=True)
            continue
        gpu[f"{name}@x{scale}"] = round(evaluate.evaluate(model, test, "sr", scale=scale).mean_psnr, 4)
    return _finish(card, record, gpu, args.id)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
