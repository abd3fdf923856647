"""Training: the PSNR metric, mixed precision, and one ``train()`` for notebooks and the CLI.

``train(model, train_data, val_data)`` compiles the model with Adam on a cosine-decay schedule (a short linear
warmup first) and global-norm gradient clipping, then runs ``model.fit`` with a best-model checkpoint and a JSON
history written after every epoch, so an interrupted run can resume. The run profile (:mod:`deconvlab.config`)
gives every default; the arguments override it. Taught in chapter 3 (``notebooks/03_conv_deconv_fuse``) and
used in chapter 4 (``notebooks/04_code_example``).

Mixed precision. A Keras model computes in the dtype policy that was global *when its layers were built*, so
precision is chosen before building, not by ``train``::

    with precision_policy(profile=profile) as policy:  # "float32", "mixed_bfloat16" or "mixed_float16"
        model = red_net(width=profile.width, depth=profile.depth)
    train(model, ...)

The policy is ``mixed_bfloat16`` on GPUs with bfloat16 units (compute capability >= 8.0: A100, L4, H100, ...)
and ``mixed_float16`` on older ones (T4, V100). With ``mixed_float16`` Keras 3 itself wraps the optimizer in a
``LossScaleOptimizer`` at ``compile`` (``Trainer.compile`` checks the model's policy), so small float16
gradients do not underflow; bfloat16 has float32's exponent range and needs no loss scaling. The model's last
layer should compute in float32 (``dtype="float32"``; the builders in :mod:`deconvlab.models` do this), and the
loss and the PSNR metric cast to float32 anyway. ``train`` reports the policy it found in the history metadata.
Measured on one H200 with JAX (paper RED-Net, depth 15, width 64, batches of 128 patches of 50x50, XLA, ``fit``):
17.8 ms per step in float32, 7.8 ms in mixed_bfloat16 (benchmarks/results/speed_gpu.md); mixed_float16 was not
measured there.

Data-parallel training (chapter 5): call ``train`` inside ``strategy.scope()`` of
:func:`deconvlab.distribute.data_parallel`, with the model built in the same scope.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import threadpoolctl

from . import config
from .checks import integer, number
from .errors import ArgumentError, OutputError
from .io import unit_float
from .metrics import PSNR, PSNR_MAX_DB, psnr_metric, psnr_per_image  # noqa: F401  (chapter 3 names)
from .models import count_params
from .weights import load_history, save_history

__all__ = [
    "PSNR", "PSNR_MAX_DB", "HistoryWriter", "bf16_supported", "choose_precision", "learning_rate_schedule",
    "load_history", "make_validation_pairs", "model_precision", "precision_policy", "psnr_metric",
    "psnr_per_image", "resolve_jit_compile", "resolve_verbose", "set_precision", "train",
]

#: Final learning rate of the cosine schedule as a fraction of the initial one.
FINAL_LR_FRACTION = 0.01
#: Global norm of the gradients, over all variables at once, that ``train`` clips to.
GLOBAL_CLIPNORM = 1.0
HISTORY_FORMAT = "deconvlab-history/1"


# -------------------------------------------------------------------------------------- mixed precision


def _capability_at_least_8(capability: Any) -> bool | None:
    """True/False from a compute capability given as (8, 0) (TensorFlow) or "8.0" (JAX); None if unreadable."""
    if isinstance(capability, str):  # only the major version matters: "8.x" >= "8.0" for any minor x
        match = re.match(r"\s*(\d+)", capability)
        return None if match is None else int(match.group(1)) >= 8
    try:
        return tuple(int(c) for c in capability)[:2] >= (8, 0)
    except (TypeError, ValueError):  # None too
        return None


# GPUs with bfloat16 tensor cores (Ampere and later), for JAX builds whose devices do not report a capability
_BF16_GPU_NAMES = re.compile(
    r"\b(A100|A800|A30|A40|A10G?|A16|A2|A6000|A5000|A4000|H100|H200|H800|H20|GH200|B100|B200|GB200|L4|L40S?|"
    r"RTX (?:30|40|50)\d0|RTX A\d000|RTX \d000 Ada|MI2\d0|MI3\d0X?)\b",
    re.IGNORECASE,
)


def bf16_supported() -> bool:
    """True when the first visible GPU has bfloat16 units (compute capability >= 8.0)."""
    backend = config.keras_backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "tpu":
                return True
            if device.platform not in ("gpu", "cuda", "rocm"):
                return False
            found = _capability_at_least_8(getattr(device, "compute_capability", None))
            return found if found is not None else bool(_BF16_GPU_NAMES.search(device.device_kind))
        if backend == "torch":
            import torch

            return torch.cuda.is_available() and torch.cuda.get_device_capability(0) >= (8, 0)
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return False
        details = tf.config.experimental.get_device_details(gpus[0])
        return bool(_capability_at_least_8(details.get("compute_capability")))
    except Exception:  # no GPU runtime at all: no bfloat16 units to use
        return False


def choose_precision(mixed: bool | None = None, profile: str | config.Profile | None = None) -> str:
    """Dtype policy name for a run: "float32", "mixed_bfloat16" or "mixed_float16".

    ``mixed=None`` follows the profile (``mixed_precision``) and uses mixed precision only where a GPU is
    visible. ``mixed=True`` on a CPU gives "mixed_bfloat16" with a warning: it runs, but is rarely faster there.
    """
    if mixed is not None and not isinstance(mixed, (bool, np.bool_)):
        raise ArgumentError(f"mixed_precision={mixed!r}: pass True, False or None (follow the profile)")
    gpu = config.gpu_available()
    if mixed is None:
        mixed = _profile(profile).mixed_precision and gpu
    if not mixed:
        return "float32"
    if not gpu:
        warnings.warn("mixed precision without a GPU: using mixed_bfloat16, which is usually slower than "
                      "float32 on CPUs; pass mixed_precision=False for CPU runs", UserWarning, stacklevel=3)
        return "mixed_bfloat16"
    return "mixed_bfloat16" if bf16_supported() else "mixed_float16"


def set_precision(mixed: bool | None = None, profile: str | config.Profile | None = None) -> str:
    """Set the global Keras dtype policy (see :func:`choose_precision`) and return its name. Taught in chapter 4.

    Build the model after this call. :func:`precision_policy` does the same and restores the old policy.
    """
    name = choose_precision(mixed, profile)
    keras.mixed_precision.set_global_policy(name)
    return name


@contextlib.contextmanager
def precision_policy(mixed: bool | None = None, profile: str | config.Profile | None = None) -> Iterator[str]:
    """Context manager: build models inside it to compute in the chosen precision; yields the policy name. Taught in chapter 4."""
    previous = keras.mixed_precision.global_policy()
    try:
        yield set_precision(mixed, profile)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def model_precision(model: keras.Model) -> str:
    """Name of the dtype policy a model computes in ("float32", "mixed_float16", ...). Taught in chapter 4."""
    names = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    own = model.dtype_policy.name
    if names and own not in names:
        # the model object's policy is the one at build time; the layers with weights decide the arithmetic
        return sorted(names, key=lambda n: n == "float32")[0]
    return own


# ------------------------------------------------------------------------------------------------ options


def resolve_jit_compile(jit_compile: bool | str = "auto") -> bool:
    """``jit_compile="auto"``: XLA on JAX and on TensorFlow with a GPU, off on PyTorch and TensorFlow CPU. Taught in chapter 2.

    Whether XLA pays on a CPU depends on its instruction set and on how many steps amortise the compile time;
    chapter 5 measures it live on the machine that runs it. The default keeps TensorFlow CPU runs, and the
    committed chapter outputs that they made, on the plain path.
    """
    if isinstance(jit_compile, (bool, np.bool_)):
        return bool(jit_compile)
    if jit_compile != "auto":
        raise ArgumentError(f"jit_compile={jit_compile!r}: pass True, False or 'auto'")
    backend = config.keras_backend()
    return backend == "jax" or (backend == "tensorflow" and config.gpu_available())


def resolve_verbose(verbose: int | str = "auto") -> int:
    """``verbose="auto"``: 1 (live progress bar) in a terminal, 2 (one line per epoch) in notebooks and logs."""
    if verbose == "auto":
        # a notebook's stdout is not a TTY; one line per epoch keeps committed outputs short and readable
        return 1 if getattr(sys.stdout, "isatty", lambda: False)() else 2
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ArgumentError(f"verbose={verbose!r}: pass 0 (silent), 1 (progress bar), 2 (one line per epoch) or 'auto'")
    return int(verbose)


def _profile(profile: str | config.Profile | None) -> config.Profile:
    return profile if isinstance(profile, config.Profile) else config.get_profile(profile)


def learning_rate_schedule(learning_rate: float, total_steps: int,
                           warmup_steps: int = 0) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from lr/10 to lr, then cosine decay to 1% of lr at ``total_steps``. Taught in chapter 4."""
    warmup_steps = max(0, min(int(warmup_steps), total_steps - 1))
    warm = warmup_steps > 0  # without warmup, CosineDecay's own defaults (no target, 0 steps) apply
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warm else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1), alpha=FINAL_LR_FRACTION,
        warmup_target=learning_rate if warm else None, warmup_steps=warmup_steps,
    )


# ------------------------------------------------------------------------------------------------ history


class HistoryWriter(keras.callbacks.Callback):
    """Callback: after every epoch, append the logs, learning rate and epoch time to a JSON file. Taught in chapter 4.

    ``previous`` (a loaded history) is continued, so a resumed run keeps one file for the whole training.
    The same data is kept in ``self.data`` when ``path`` is None.
    """

    def __init__(self, path: str | os.PathLike | None, meta: dict[str, Any],
                 previous: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.path = None if path is None else Path(path)
        old_meta = {} if previous is None else previous.get("meta", {})
        old_history = {} if previous is None else previous["history"]
        self.data = {"format": HISTORY_FORMAT,
                     "meta": {**old_meta, **meta, "epoch_seconds": list(old_meta.get("epoch_seconds", []))},
                     "history": {k: list(v) for k, v in old_history.items()}}
        self._epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        seconds = time.perf_counter() - self._epoch_start
        history, meta = self.data["history"], self.data["meta"]
        logs = dict(logs or {})
        lr = logs.pop("learning_rate", None)  # moved last, as in every history file
        # without a logged rate: the optimizer's value for the next step, after this epoch's updates
        logs["learning_rate"] = self.model.optimizer.learning_rate if lr is None else lr
        done = len(history.get("loss", []))
        for key, value in logs.items():
            column = history.setdefault(key, [None] * done)  # a metric that appears late keeps the epochs aligned
            value = float(np.asarray(keras.ops.convert_to_numpy(value)))
            column.append(value if math.isfinite(value) else None)  # JSON has no NaN/inf
        for column in history.values():  # a metric missing this epoch (no val_data on resume) keeps its slot
            column.extend([None] * (done + 1 - len(column)))
        meta["epoch_seconds"].append(round(seconds, 3))
        meta["epochs_done"] = epoch + 1
        meta["steps_done"] = meta.get("steps_done", 0) + int(meta.get("steps_per_epoch") or 0)
        meta["wall_time_s"] = round(sum(meta["epoch_seconds"]), 3)
        meta["finished"] = _now()
        monitor, mode = meta.get("monitor"), meta.get("monitor_mode", "min")
        values = [v for v in history.get(monitor, []) if v is not None]
        if values:
            best = max(values) if mode == "max" else min(values)
            meta["best"] = {"epoch": history[monitor].index(best) + 1, monitor: best}
        if self.path is not None:
            try:
                save_history(self.path, self.data)
            except OSError as exc:
                raise OutputError(f"cannot write the training history {self.path} ({exc.strerror or exc}): "
                                  "pick a writable history_path") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- data helpers


def make_validation_pairs(images, degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
                          patch_size: int, n: int, seed: int = 0, channels: int = 1,
                          scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A fixed validation set: ``n`` seeded crops (no flips) and their degraded inputs, as NHWC arrays. Taught in chapter 3.

    Deterministic: the crops and the degradation come from ``np.random.default_rng([seed, 0, 0])``, exactly
    batch 0 of a ``PatchDataset(..., augment=False)``, so every epoch (and every run) validates on the same pairs.
    """
    from .data import PatchDataset

    n = integer("n", n, 1)
    patches = PatchDataset(images, degrade, patch_size=patch_size, batch_size=n, steps_per_epoch=1, seed=seed,
                           augment=False, channels=channels, scale=scale)
    return patches[0]


def _check_pairs(data: Any, label: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) != 2:
        raise ArgumentError(f"{label} must be (x, y) with two arrays, got {len(data)} items")
    # 8- and 16-bit pixels over their maximum, as check_image reads images: 0-255 values would train off-scale
    x, y = (unit_float(np.asarray(a), name=f"{label} {part}") for part, a in zip("xy", data, strict=True))
    if x.ndim != 4 or y.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ArgumentError(f"{label} has x {x.shape} and y {y.shape}: "
                            "pass NHWC arrays with the same, non-zero number of images")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ArgumentError(f"{label} has NaN/inf values: fix the step that built it")
    return x, y


# ------------------------------------------------------------------------------------------------ train


def train(
    model: keras.Model,
    train_data: keras.utils.PyDataset | tuple[np.ndarray, np.ndarray],
    val_data: keras.utils.PyDataset | tuple[np.ndarray, np.ndarray] | None = None,
    *,
    profile: str | config.Profile | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    learning_rate: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    history_path: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int | None = None,
) -> keras.callbacks.History:
    """Compile and fit a restoration model: Adam, cosine decay, clipping, checkpoint, JSON history, resume. Taught in chapter 3.

    ``train_data`` is a :class:`~deconvlab.data.PatchDataset` (or any PyDataset) or a pair of NHWC arrays
    (unsigned integers read over their dtype maximum, as :func:`deconvlab.io.check_image` reads images);
    ``val_data`` likewise (e.g. from :func:`make_validation_pairs`). Unset sizes come from ``profile``: epochs,
    steps per epoch (a PyDataset's own length otherwise; a PatchDataset is set to ``steps_per_epoch``),
    learning rate, batch size (arrays only). The loss is the mean squared error. The learning rate warms up
    linearly for 2% of the run (at most 1000 steps) and decays by a cosine to 1% at the end of the run;
    gradients are clipped to a global norm of :data:`GLOBAL_CLIPNORM` (unlike per-variable ``clipnorm``, it
    keeps the update's direction) so a deep net survives a bad batch. :func:`resolve_jit_compile` decides XLA.

    The precision is the model's own (build it inside :func:`precision_policy`). ``checkpoint`` (a ``.keras`` file) keeps the best
    model by ``val_psnr`` (by training ``loss`` without ``val_data``). ``history_path`` gets the JSON history
    after every epoch (see :func:`load_history`). With ``resume=True`` and both files present, the checkpoint's
    weights and optimizer state are loaded, training continues at the epoch after the last one recorded, and
    the history is appended. ``seed`` (default: the PatchDataset's seed, else 0) goes to
    :func:`deconvlab.config.set_seed`. Returns Keras' ``History``, with the metadata as ``history.meta``.
    """
    prof = _profile(profile)
    epochs = integer("epochs", prof.epochs if epochs is None else epochs, 1, config.TRAIN_MAXIMA["epochs"])
    learning_rate = number("learning_rate", prof.learning_rate if learning_rate is None else learning_rate, 0.0, strict=True)
    if not isinstance(model, keras.Model):
        raise ArgumentError(f"model must be a keras.Model, got {type(model).__name__}: build one with deconvlab.models")
    verbose, jit = resolve_verbose(verbose), resolve_jit_compile()
    callbacks = list(callbacks)
    if not all(isinstance(cb, keras.callbacks.Callback) for cb in callbacks):
        raise ArgumentError("callbacks must be keras.callbacks.Callback objects (a list, or () for none)")
    fit_args, batch_size = _fit_data(train_data, val_data, steps_per_epoch, prof)
    steps_per_epoch = fit_args["steps_per_epoch"]
    total_steps = epochs * steps_per_epoch
    warmup = min(total_steps // 50, 1000)  # 2% of the run, at most 1000 steps: tames the first large Adam steps
    checkpoint, history_path, previous = _run_files(checkpoint, history_path, resume)
    precision = model_precision(model)
    seed = int(getattr(train_data, "seed", 0) or 0) if seed is None else integer("seed", seed, 0)
    config.set_seed(seed)
    _compile(model, learning_rate_schedule(learning_rate, total_steps, warmup), precision, jit)
    initial_epoch = _resume(model, train_data, checkpoint, previous, steps_per_epoch) if previous is not None else 0
    meta = _run_meta(model, train_data, prof, monitor="val_psnr" if val_data is not None else "loss", jit=jit,
                     seed=seed, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                     learning_rate=learning_rate, warmup=warmup, checkpoint=checkpoint, precision=precision)
    writer, own = _run_callbacks(meta, previous, history_path, checkpoint, initial_epoch)
    if initial_epoch >= epochs and verbose:
        print(f"already trained for {initial_epoch} epochs (history {history_path}); pass epochs > {initial_epoch} to continue")
    with _blas_threads(train_data):
        history = model.fit(epochs=epochs, initial_epoch=initial_epoch, callbacks=own + callbacks, verbose=verbose,
                            **fit_args)
    history.meta = writer.data["meta"]
    return history


def _blas_threads(train_data: Any) -> contextlib.AbstractContextManager:
    """One BLAS thread while several worker threads prepare batches (the bicubic resize is a BLAS product).

    Each worker's product otherwise starts a thread per core: on the 16-core H200 host, eight workers made the
    paper SR run 16-18 ms a step, one BLAS thread 9 ms (``benchmarks/results/NOTES.md``, 2026-12-04)."""
    if getattr(train_data, "workers", 1) > 1:
        return threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()


def _compile(model: keras.Model, schedule: Any, precision: str, jit: bool) -> None:
    optimizer = keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=GLOBAL_CLIPNORM)
    if precision == "mixed_float16" and model.dtype_policy.name != "mixed_float16":
        # compile only wraps when the model object itself carries the float16 policy
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="mse", metrics=[PSNR(name="psnr")], jit_compile=jit)


def _run_meta(model: keras.Model, train_data: Any, prof: config.Profile, *, monitor: str, jit: bool, seed: int,
              epochs: int, steps_per_epoch: int, batch_size: int, learning_rate: float, warmup: int,
              checkpoint: Path | None, precision: str) -> dict[str, Any]:
    """The run's metadata, as the history file and ``history.meta`` keep it."""
    return {
        "model": model.name, "params": count_params(model), "profile": prof.name,
        "backend": config.keras_backend(), "device": config.device_name(), "keras": keras.__version__,
        "precision": precision, "loss_scaling": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
        "jit_compile": jit, "seed": seed, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "total_steps": epochs * steps_per_epoch, "batch_size": int(batch_size),
        "patch_size": getattr(train_data, "patch_size", None), "optimizer": "Adam", "learning_rate": learning_rate,
        "schedule": f"linear warmup {warmup} steps from lr/10, cosine decay to {FINAL_LR_FRACTION:g} x lr",
        "warmup_steps": warmup, "global_clipnorm": GLOBAL_CLIPNORM, "loss": "mse",
        "monitor": monitor, "monitor_mode": "max" if monitor == "val_psnr" else "min",
        "checkpoint": None if checkpoint is None else str(checkpoint), "started": _now(),
    }


def _fit_data(train_data: Any, val_data: Any, steps_per_epoch: int | None,
              prof: config.Profile) -> tuple[dict[str, Any], int]:
    """``model.fit`` arguments for the data (steps per epoch included) and the batch size."""
    if isinstance(train_data, keras.utils.PyDataset):
        # the maximum is for a passed epoch of drawn batches (Keras lists every index; a PatchDataset holds its own
        # length to it), not for a dataset's real batches
        maximum = None if steps_per_epoch is None else config.TRAIN_MAXIMA["steps"]
        if steps_per_epoch is None:
            steps_per_epoch = len(train_data)
        steps_per_epoch = integer("steps_per_epoch", steps_per_epoch, 1, maximum)
        if hasattr(train_data, "steps_per_epoch") and train_data.steps_per_epoch != steps_per_epoch:
            train_data.steps_per_epoch = steps_per_epoch  # PatchDataset draws any batch index: just make the epoch longer
        elif steps_per_epoch > len(train_data):
            raise ArgumentError(f"steps_per_epoch={steps_per_epoch} but train_data has only "
                                f"{len(train_data)} batches: pass steps_per_epoch=None or a longer dataset")
        fit_args: dict[str, Any] = {"x": train_data}
        batch_size = getattr(train_data, "batch_size", None) or prof.batch_size
    elif isinstance(train_data, (tuple, list)):
        x, y = _check_pairs(train_data, "train_data")
        batch_size = min(prof.batch_size, x.shape[0])
        per_epoch = math.ceil(x.shape[0] / batch_size)
        steps_per_epoch = per_epoch if steps_per_epoch is None else integer("steps_per_epoch", steps_per_epoch, 1)
        if steps_per_epoch > per_epoch:
            raise ArgumentError(f"steps_per_epoch={steps_per_epoch} but {x.shape[0]} training pairs make "
                                f"{per_epoch} batches of {batch_size}: "
                                "pass steps_per_epoch=None or a PatchDataset")
        fit_args = {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    else:
        raise ArgumentError(f"train_data of type {type(train_data).__name__}: "
                            "pass a deconvlab.data.PatchDataset or (x, y) NHWC arrays")
    fit_args["steps_per_epoch"] = steps_per_epoch
    if val_data is not None:
        if isinstance(val_data, (tuple, list)):
            val_data = _check_pairs(val_data, "val_data")
            fit_args["validation_batch_size"] = batch_size
        elif not isinstance(val_data, keras.utils.PyDataset):
            raise ArgumentError(f"val_data of type {type(val_data).__name__}: "
                                "pass a PyDataset, (x, y) NHWC arrays or None")
        fit_args["validation_data"] = val_data
    return fit_args, batch_size


def _run_files(checkpoint: Any, history_path: Any, resume: bool) -> tuple[Path | None, Path | None, dict | None]:
    """(checkpoint, history path, the history to continue or None), their folders created."""
    checkpoint = None if checkpoint is None else Path(checkpoint)
    history_path = None if history_path is None else Path(history_path)
    if checkpoint is not None and checkpoint.suffix != ".keras":
        raise ArgumentError(f"checkpoint={str(checkpoint)!r}: use a .keras file name, e.g. 'red_net.keras'")
    for path in filter(None, (checkpoint, history_path)):
        if path.is_dir():
            raise OutputError(f"{path} is a folder: pass a file name for the checkpoint / history")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {path.parent} ({exc.strerror or exc}): "
                              "pick a writable folder") from None
    if not resume:
        return checkpoint, history_path, None
    if checkpoint is None or history_path is None:
        raise ArgumentError("resume=True needs checkpoint= and history_path= (the files of the run to continue)")
    if checkpoint.exists() and history_path.exists():
        return checkpoint, history_path, load_history(history_path)
    if checkpoint.exists() or history_path.exists():
        found, missing = (checkpoint, history_path) if checkpoint.exists() else (history_path, checkpoint)
        warnings.warn(f"resume=True found {found} but not {missing}: starting from epoch 0 and overwriting both",
                      UserWarning, stacklevel=3)
    return checkpoint, history_path, None


def _run_callbacks(meta: dict[str, Any], previous: dict | None, history_path: Path | None,
                   checkpoint: Path | None, initial_epoch: int) -> tuple[HistoryWriter, list]:
    """The JSON history writer (continuing ``previous``) and, with a checkpoint path, the best-model checkpoint."""
    if previous is not None:
        meta["started"] = previous["meta"].get("started", meta["started"])
        meta["resumed_at"] = [*previous["meta"].get("resumed_at", []), initial_epoch]
    writer = HistoryWriter(history_path, meta, previous)
    own: list[keras.callbacks.Callback] = [writer]
    if checkpoint is not None:
        best = None if previous is None else (previous["meta"].get("best") or {}).get(meta["monitor"])
        own.append(keras.callbacks.ModelCheckpoint(
            str(checkpoint), monitor=meta["monitor"], mode=meta["monitor_mode"], save_best_only=True, verbose=0,
            initial_value_threshold=best,
        ))
    return writer, own


def _resume(model: keras.Model, train_data: Any, checkpoint: Path, previous: dict[str, Any],
            steps_per_epoch: int) -> int:
    """Load weights and, where they match, the optimizer state of a checkpoint into a compiled model, move
    ``train_data`` on to the next epoch, and return the epoch to continue at."""
    epoch = int(previous["meta"].get("epochs_done", len(previous["history"].get("loss", []))))
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(checkpoint)  # a .keras file also holds the optimizer's moments and step count
    except Exception:
        # another optimizer or precision was used for the checkpoint: take the layer weights alone
        try:
            saved = keras.saving.load_model(checkpoint, compile=False, safe_mode=True)
            model.set_weights(saved.get_weights())
        except Exception as exc:
            raise ArgumentError(f"checkpoint {checkpoint} does not fit this model ({type(exc).__name__}): "
                                "build the same architecture, or pass resume=False to start over") from None
        warnings.warn(f"resumed the weights of {checkpoint} with a fresh optimizer state (it did not match)",
                      UserWarning, stacklevel=3)
    # the schedule continues from the last epoch recorded, even if the best checkpoint is older
    model.optimizer.iterations.assign(int(previous["meta"].get("steps_done", epoch * steps_per_epoch)))
    if hasattr(train_data, "epoch"):
        train_data.epoch = epoch  # fresh patches, not a replay of epoch 0's
    return epoch
