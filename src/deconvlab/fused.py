"""The GPU host's fast training path for denoisers: Keras on JAX, fused steps, batches drawn on the device.

``model.fit`` on JAX dispatches one step at a time and waits for the host between them; here one jitted call runs
``steps_per_call`` Adam steps in a ``lax.scan`` over ``model.stateless_call`` + ``optimizer.stateless_apply``,
and every step draws its batch on the GPU with :class:`deconvlab.sampler.PatchSampler` (issue 17 measured
16.9 k patches/s against 16.4 k for ``fit`` and 11.4 k for ``train_on_batch``, ``benchmarks/results/speed_gpu.md``).

:func:`train_denoiser` trains any gray denoiser of :mod:`deconvlab.models` for a wall-clock budget: the cosine
schedule's length is re-estimated from the measured speed, so the decay ends inside the budget even when other
runs share the GPU. The checkpoint is chosen on held-aside training images (:func:`held_aside`), never on a test
set. ``python -m deconvlab.fused`` trains one model card with it (the paper profile's shipped U-Net denoisers).
JAX only; other backends train with :func:`deconvlab.train.train`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FusedTrainer", "cosine_lr", "held_aside", "train_denoiser", "VAL_IMAGES", "VAL_NOISE_SEED"]

VAL_IMAGES = 8  # the last 8 Train400 images (file order) are held aside to choose the checkpoint
VAL_NOISE_SEED = 10_000


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
    ``sampler`` each step draws batch ``step`` on the device; with ``fixed=(x, y)`` every step reuses those
    device arrays (the like-for-like speed benchmark). The learning rate is ``cosine_lr`` (``peak``, ``warmup``)
    written into the optimizer's learning-rate variable each step; ``global_clipnorm`` as in ``deconvlab.train``.
    With a ``strategy`` (:func:`deconvlab.distribute.data_parallel`, JAX) the state is replicated and each step's
    batch is split over the replicas (build the sampler with ``device=strategy.replicated()``).
    """

    def __init__(self, model, steps_per_call: int, sampler=None, fixed=None, peak_lr: float = 1e-3,
                 warmup: int = 0, global_clipnorm: float | None = 1.0, strategy=None) -> None:
        import jax
        import jax.numpy as jnp
        import keras

        self.model = model
        self.steps_per_call = int(steps_per_call)
        self.optimizer = keras.optimizers.Adam(peak_lr, global_clipnorm=global_clipnorm)
        self.optimizer.build(model.trainable_variables)
        lr_index = next(i for i, v in enumerate(self.optimizer.variables) if v.path.endswith("learning_rate"))

        def loss_fn(trainable, non_trainable, x, y):
            pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return jnp.mean(jnp.square(pred.astype(jnp.float32) - y)), non_trainable

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def one_step(state, step, data, total):
            trainable, non_trainable, opt_vars = state
            x, y = sampler.sample(*data, step) if sampler is not None else data
            if strategy is not None:  # data parallel: each replica computes on its slice of the global batch
                x = jax.lax.with_sharding_constraint(x, strategy.batch_sharding())
                y = jax.lax.with_sharding_constraint(y, strategy.batch_sharding())
            (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            opt_vars = list(opt_vars)
            opt_vars[lr_index] = cosine_lr(step, total, peak_lr, warmup).astype(opt_vars[lr_index].dtype)
            trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
            return (trainable, non_trainable, opt_vars), loss

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
        # committed like the step's outputs: an uncommitted first state would compile the step a second time
        where = self.strategy.replicated() if self.strategy else jax.tree.leaves(self._data)[0].sharding
        return jax.device_put(state, where)

    def run(self, state, first_step: int, total_steps: int):
        return self._run(state, self._data, np.int32(first_step), np.float32(total_steps))

    def predict(self, state, x):
        return self._predict(state[0], state[1], x)

    def write_back(self, trainable, non_trainable) -> None:
        """Copy weights (e.g. a kept checkpoint) into the Keras model's variables."""
        for var, value in zip(self.model.trainable_variables, trainable, strict=True):
            var.assign(value)
        for var, value in zip(self.model.non_trainable_variables, non_trainable, strict=True):
            var.assign(value)


def held_aside(images: list, sigmas: tuple[float, ...] = (25.0,), count: int = VAL_IMAGES):
    """(training images, (noisy, clean) NHWC validation arrays): the last ``count`` images are held aside.

    Each held image gets one noisy copy per level in ``sigmas`` (noise seed ``VAL_NOISE_SEED + i``, then
    ``+ 1000`` per further level), so a blind model is chosen on every level it is meant for.
    """
    from .degrade import add_gaussian_noise

    train, held = list(images[:-count]), list(images[-count:])
    noisy, clean = [], []
    for j, sigma in enumerate(sigmas):
        for i, img in enumerate(held):
            noisy.append(add_gaussian_noise(img, sigma, seed=VAL_NOISE_SEED + 1000 * j + i))
            clean.append(img)
    return train, (np.stack(noisy)[..., None].astype(np.float32), np.stack(clean)[..., None].astype(np.float32))


def _validation(trainer: FusedTrainer, val_noisy, val_clean) -> Callable[[Any], float]:
    import jax
    import jax.numpy as jnp

    x, y = jax.device_put(val_noisy), jax.device_put(val_clean)

    def psnr(state) -> float:
        out = jnp.clip(trainer.predict(state, x).astype(jnp.float32), 0, 1)
        return float(jnp.mean(-10 * jnp.log10(jnp.mean(jnp.square(out - y), axis=(1, 2, 3)))))

    return psnr


def train_denoiser(model, train_images: list, validation: tuple, *, sigma: float | tuple[float, float],
                   patch: int = 96, batch: int = 64, lr: float = 1e-3, warmup: int = 1000, seed: int = 0,
                   budget_s: float | None = None, steps: int | None = None, steps_per_call: int = 50,
                   eval_every: int = 1000, reserve_s: float = 10.0,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``model`` in place; its variables end as the checkpoint best on ``validation``; returns the record.

    Give ``steps`` (a fixed run) or ``budget_s`` (wall-clock seconds from this call, compilation included): the
    cosine schedule's total is then re-estimated at every validation from the speed of the last interval, and
    training stops at the budget whatever the estimate said.
    """
    import jax
    import jax.numpy as jnp

    from .sampler import PatchSampler

    if (steps is None) == (budget_s is None):
        raise ValueError("give steps or budget_s")
    start = time.perf_counter()
    k = int(steps_per_call)
    warmup, eval_every = -(-warmup // k) * k, -(-eval_every // k) * k
    sampler = PatchSampler(train_images, patch_size=patch, batch_size=batch, sigma=sigma, seed=seed)
    trainer = FusedTrainer(model, k, sampler=sampler, peak_lr=lr, warmup=warmup)
    val_psnr = _validation(trainer, *validation)
    state = trainer.init()
    total = steps if steps is not None else 10**9  # a budget run: placeholder until the speed is known
    step, curve, best, best_state, mark = 0, [], -math.inf, None, None
    while step < total:
        state, loss = trainer.run(state, step, total)
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
            best, best_state = psnr, jax.tree.map(jnp.copy, (state[0], state[1]))
        curve.append({"step": step, "seconds": round(now - start, 2), "train_loss": float(loss),
                      "val_psnr": round(psnr, 4), "planned_steps": int(min(total, 10**9))})
        log(f"step {step:6d}  {now - start:6.1f} s  loss {float(loss):.6f}  val {psnr:.3f} dB"
            f"{'  *' if psnr >= best else ''}  (of {total if total < 10**9 else '?'})")
        if budget_s is not None and now - start > budget_s:
            break
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    trainer.write_back(*best_state)
    return {"steps": step, "batch": batch, "patch": patch, "lr": lr, "warmup_steps": warmup,
            "steps_per_call": k, "seed": seed, "sigma": list(sigma) if isinstance(sigma, tuple) else sigma,
            "train_seconds": round(seconds, 1), "patches_per_s": round(step * batch / seconds, 1),
            "best_val_psnr": round(best, 4), "curve": curve}


def card_history(record: dict[str, Any], out_dir: Path, card_id: str) -> dict[str, Any]:
    """Card fields for the validation curve (one "epoch" per validation interval), with the history file that
    :func:`deconvlab.train.train` would write (``<id>.history.json``, read by ``weights.load_history``)."""
    from .recipes import dataset_digest
    from .train import HISTORY_FORMAT
    from .weights import HISTORY_SUFFIX, write_atomic

    curve = record["curve"]
    history = {"loss": [p["train_loss"] for p in curve], "val_psnr": [p["val_psnr"] for p in curve]}
    seconds = [b["seconds"] - a for a, b in zip([0.0] + [p["seconds"] for p in curve], curve, strict=False)]
    meta = {"epoch_seconds": [round(t, 3) for t in seconds], "epochs_done": len(curve),
            "steps_done": record["steps"], "monitor": "val_psnr", "monitor_mode": "max",
            "note": "one entry per validation interval of the fused trainer (deconvlab.fused)"}
    text = json.dumps({"format": HISTORY_FORMAT, "meta": meta, "history": history}, indent=1) + "\n"
    write_atomic(Path(out_dir) / f"{card_id}{HISTORY_SUFFIX}", text.encode("utf-8"))
    return {"history": history, "epochs_run": len(curve), "stopped_by_time_limit": record.get("budget_s") is not None,
            "registry_sha256": dataset_digest(["train400"])}


def _arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deconvlab.fused", description=__doc__.splitlines()[0])
    parser.add_argument("--builder", default="unet")
    parser.add_argument("--arch", default="{}", help="builder keyword arguments as JSON")
    level = parser.add_mutually_exclusive_group(required=True)
    level.add_argument("--sigma", type=float)
    level.add_argument("--sigma-range", type=float, nargs=2, metavar=("LO", "HI"))
    parser.add_argument("--id", required=True, help="card id")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--steps-per-call", type=int, default=50, help="training steps fused into one dispatch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", default="bsd68,set12", help="test sets measured on the GPU after training")
    parser.add_argument("--shared", type=int, default=1, help="how many runs shared the GPU (for the card)")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--train-limit", type=int, default=None, help="first N Train400 images (CPU smoke test)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    import keras

    from . import data, evaluate, models, tasks, weights

    args = _arguments(argv)
    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)
    wall = time.perf_counter()
    train_set = data.load_dataset("train400", mode="gray", limit=args.train_limit)
    sigma = tuple(args.sigma_range) if args.sigma_range else args.sigma
    val_sigmas = tasks.BLIND_LEVELS if args.sigma_range else (args.sigma,)
    train_images, validation = held_aside(list(train_set.images), val_sigmas)
    model = models.build_model(args.builder, channels=1, **json.loads(args.arch))
    record = train_denoiser(model, train_images, validation, sigma=sigma, patch=args.patch, batch=args.batch,
                            lr=args.lr, warmup=args.warmup, seed=args.seed, budget_s=args.budget_s,
                            steps=args.steps, eval_every=args.eval_every,
                            steps_per_call=args.steps_per_call)
    names = list(train_set.names)
    fields = {
        "id": args.id, "task": "denoise", "command": "python -m deconvlab.fused " + " ".join(argv or sys.argv[1:]),
        "profile": "paper", "seed": args.seed, "precision": args.precision,
        "wall_time_s": round(time.perf_counter() - wall, 1), "training": {k: v for k, v in record.items()},
        "gpu_shared_by": args.shared,
        "data": {"train": f"train400 without its last {VAL_IMAGES} images ({len(train_images)} images)",
                 "validation": f"held-aside Train400 {', '.join(names[-VAL_IMAGES:])}, sigma "
                               + "/".join(f"{s:g}" for s in val_sigmas),
                 "fallback": bool(train_set.is_fallback)},
    }
    fields.update({"sigma_range": list(sigma), "blind": True} if args.sigma_range else {"sigma": args.sigma})
    extra = card_history(dict(record, budget_s=args.budget_s), args.out, args.id)
    fields["data"]["registry_sha256"] = extra.pop("registry_sha256")
    fields.update(extra)
    card = weights.save_pretrained(model, fields, args.out)
    gpu = {}
    for name in [n for n in args.eval.split(",") if n]:
        test = data.load_dataset(name, mode="gray")
        for s in val_sigmas:
            gpu[f"{name}@{s:g}"] = round(evaluate.evaluate(model, test, "denoise", sigma=s, seed=0).mean_psnr, 4)
    card["gpu_metrics"] = gpu
    weights.write_card(card, card.pop("_path"))
    print("RESULT " + json.dumps({"id": args.id, "params": card["params"], "macs": card.get("macs_per_pixel"),
                                  "steps": record["steps"], "train_s": record["train_seconds"],
                                  "val": record["best_val_psnr"], **gpu}), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
