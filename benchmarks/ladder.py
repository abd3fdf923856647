"""Ablation ladder (issue 14): do deconvolution and fusion give better images? Gray denoising at sigma 25.

Six rungs, each one change away from a neighbour, all at one parameter budget (within 5 % of rung e's):

* a: plain CNN, no residual, no BN (``plain_cnn(residual=False)``, 2 x depth conv layers);
* b: a + global residual (``plain_cnn(residual=True)``);
* c: stride-1 convs then transposed convs, no skips, no global residual (``red_net(skip_every=0,
  global_residual=False)``); a stride-1 'same' transposed conv is a conv with the kernel flipped and its
  channels swapped, so c computes what a computes (:func:`check_transposed_as_convolution` verifies it);
* d: c + symmetric skip fusion (``red_net(skip_every=2, fusion="add", global_residual=False)``);
* e: d + global residual: the shipped card ``data/weights/denoise-sigma25.json`` (``red_net`` 15+15, skips every
  2, add) at the ladder's width;
* f: a strided encoder and a transposed-convolution decoder that change resolution (``unet(widths=(u, 2u, 4u),
  depths=(2, 2, 2), fusion="add", global_residual=True)``), u chosen for the budget.

Protocol (the DnCNN setting, as the shipped cards):
* data: Train400 without its last 8 images (file order); those 8 (AWGN seeds 10,000 + i) choose the checkpoint
  (``deconvlab.fused.held_aside``); BSD68 and Set12 are seen only at the end;
* training: ``deconvlab.fused.train_denoiser`` (JAX, fused ``lax.scan`` steps, batches drawn on the device),
  same steps x batch x patch, Adam with peak lr 1e-3, linear warm-up then cosine decay to 1 %, global clipnorm 1,
  MSE, for every rung; one seed sets the initialisation (``keras.utils.set_random_seed`` before building), the
  patch stream and the training noise;
* initialisation by layer role, the same in every rung: hidden convs and transposed convs He normal (the U-Net's
  down and up layers too: ``up_init="he_normal"``), biases zero, the linear output layer near zero
  (``VarianceScaling(scale=OUTPUT_INIT_SCALE)``, ``plain_cnn(output_init="small")``);
* evaluation: ``deconvlab.evaluate.evaluate(model, set, "denoise", sigma=25, seed=0)`` on full BSD68 and Set12,
  under the training precision (as the cards); for the first seed of every rung also BSD68 at noise seeds 1
  and 2 (the evaluation-noise spread);
* kernel-gradient L2 norms of the MSE on one fixed batch (``deconvlab.grads.layer_gradient_norms``) at
  initialisation and for the chosen checkpoint (rungs a, b, d, e by default).

Usage:
  ``python benchmarks/ladder.py --rungs a,b,c,d,e,f --seeds 0,1,2 --steps 2000 --batch 64 --patch 50 --out DIR``
  (one JSON per run, written when it finishes; a run that diverges is written as ``<run>.diverged.json`` with one
  line on stderr, the other runs go on and the exit status is 1); ``--quick`` is the CPU smoke test; on one GPU,
  ``benchmarks/gpu_ladder.sh OUTDIR --steps ... --width 32 --unet-width 20`` runs one process per rung side by side
  and packs the runs and logs into ``OUTDIR/ladder.tar.gz``;
  ``python benchmarks/ladder.py collect DIR_OR_FILES... [--results benchmarks/results]`` writes
  ``ladder.json`` and ``ladder.md`` (mean +- std per rung, verdicts by :data:`RULE`);
  ``python benchmarks/ladder.py check`` runs the transposed-conv == conv check on a random rung-c network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deconvlab.errors import TrainingError
from deconvlab.report import pooled_std

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "data" / "weights" / "denoise-sigma25.json"
RESULTS = REPO / "benchmarks" / "results"
RUNGS = ("a", "b", "c", "d", "e", "f")
RUNG_NAMES = {
    "a": "plain CNN, no residual",
    "b": "plain CNN + global residual",
    "c": "conv -> transposed conv (stride 1), no skips, no residual",
    "d": "c + symmetric skip fusion (add, every 2)",
    "e": "d + global residual (the shipped RED-Net card, scaled)",
    "f": "strided encoder + transposed-conv decoder (U-Net, 3 scales)",
}
# (from, to, what changes): the ladder's steps first, then the comparisons the claim rests on
COMPARISONS = (
    ("a", "b", "global residual on the plain CNN"),
    ("a", "c", "second half as stride-1 transposed convs (same function class)"),
    ("c", "d", "symmetric skip fusion"),
    ("d", "e", "global residual on the encoder-decoder"),
    ("b", "e", "RED-Net against the residual plain CNN (the claim)"),
    ("e", "f", "resolution change (strided encoder, transposed-conv decoder)"),
    ("b", "f", "U-Net against the residual plain CNN"),
)
SIGMA = 25.0
TARGET_PARAMS = 260_000  # the shipped 15+15 RED-Net at width 32 (half its width) has 259,553
DEPTH = 15
UNET_DEPTHS = (2, 2, 2)
BUDGET_TOLERANCE = 0.05
GRAD_RUNGS = ("a", "b", "d", "e")
GRAD_BATCH_SEED = 4242  # the fixed batch of the gradient norms: PatchSampler(seed=4242).batch(0)
SPREAD_SEEDS = (0, 1, 2)
OVERFIT_TRAIN_EVAL = 64  # experiment 3 measures training PSNR on at most this many of the training images
RULE = ("A difference between two rungs (mean BSD68 PSNR over training seeds, second rung minus first) counts only "
        "when it exceeds twice the pooled seed standard deviation of the two rungs AND the evaluation-noise spread "
        "(the larger of the two rungs' ranges, max - min, of BSD68 PSNR over evaluation noise seeds 0, 1, 2 of one "
        "trained model): then the claim that the second rung is better is 'supported' (positive) or "
        "'contradicted' (negative); otherwise it is 'not distinguishable'.")
INIT_NOTE = ("hidden Conv2D and Conv2DTranspose layers (the U-Net's stride-2 down and up layers too, "
             "up_init='he_normal'): he_normal (VarianceScaling 2, fan_in, truncated normal); biases zero; the "
             "linear output layer: VarianceScaling(scale=OUTPUT_INIT_SCALE=1e-4, fan_in, truncated normal), as "
             "red_net and unet build it, plain_cnn(output_init='small'). Keras counts a Conv2DTranspose kernel's "
             "fan_in from its output channels, so the output layer of c, d, e (a transposed conv to 1 channel, "
             "fan_in 9) starts with std sqrt(1e-4/9) = 0.0033 and that of a, b, f (a conv, fan_in 9 x width) with "
             "sqrt(1e-4/(9 width)): both near zero; hidden layers start alike")


# ------------------------------------------------------------------------------------------------- the rungs
def card_kwargs(path: Path = CARD) -> dict[str, Any]:
    """The shipped sigma-25 card's red_net arguments (its architecture, before the ladder rescales the width)."""
    card = json.loads(Path(path).read_text())
    arch = card["architecture"]
    if arch["builder"] != "red_net":
        raise ValueError(f"{path} builds {arch['builder']}, not red_net")
    return dict(arch["kwargs"])


def _unet_by_width(width: int, depths: Sequence[int] = UNET_DEPTHS):
    from deconvlab import models

    return models.unet(channels=1, widths=(width, 2 * width, 4 * width), depths=tuple(depths),
                       up_init="he_normal", fusion="add", global_residual=True)


def ladder_specs(target_params: int = TARGET_PARAMS, depth: int = DEPTH, unet_depths: Sequence[int] = UNET_DEPTHS,
                 width: int | None = None, unet_width: int | None = None) -> dict[str, dict[str, Any]]:
    """``{rung: {"builder": name, "kwargs": {...}}}`` for all six rungs at one parameter budget.

    The width w of the depth-d RED-Net nearest `target_params` sets rungs a-e (``plain_cnn(depth=2d, width=w)``
    has exactly the parameters of ``red_net(depth=d, width=w)``); the U-Net's base width is then chosen nearest
    rung e's count. The searches build a dozen models each (seconds apiece on JAX, which compiles every new
    initialiser shape): `width` and `unet_width`, when given, skip them (:func:`budget` still checks the result).
    For the defaults: w = 32 (259,553 parameters) and U-Net base width 20 (264,541).
    """
    from deconvlab import models

    if width is None:
        width = models.width_for_params("red_net", target_params, depth=depth, max_width=512)
    card = card_kwargs()
    e = dict(card, channels=1, depth=depth, width=width)
    plain = {"channels": 1, "depth": 2 * depth, "width": width, "kernel_size": card.get("kernel_size", 3),
             "output_init": "small"}
    red = {k: v for k, v in e.items() if k not in ("skip_every", "global_residual")}
    if unet_width is None:
        e_params = models.count_params(models.red_net(**e))
        unet_width = models.width_for_params(_unet_by_width, e_params, depths=tuple(unet_depths), max_width=512)
    base = unet_width
    return {
        "a": {"builder": "plain_cnn", "kwargs": dict(plain, residual=False)},
        "b": {"builder": "plain_cnn", "kwargs": dict(plain, residual=True)},
        "c": {"builder": "red_net", "kwargs": dict(red, skip_every=0, global_residual=False)},
        "d": {"builder": "red_net", "kwargs": dict(red, skip_every=card.get("skip_every", 2), global_residual=False)},
        "e": {"builder": "red_net", "kwargs": e},
        "f": {"builder": "unet", "kwargs": {"channels": 1, "widths": [base, 2 * base, 4 * base],
                                            "depths": list(unet_depths), "up_init": "he_normal", "fusion": "add",
                                            "global_residual": True}},
    }


def build(spec: dict[str, Any], seed: int | None = None):
    """The rung's model; ``seed`` (if given) seeds Python, NumPy and Keras first, so it sets the initialisation."""
    import keras

    from deconvlab import models

    if seed is not None:
        keras.utils.set_random_seed(seed)
    kwargs = dict(spec["kwargs"])
    for key in ("widths", "depths"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return models.build_model(spec["builder"], **kwargs)


def budget(specs: dict[str, dict[str, Any]], reference: str = "e",
           rungs: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parameters, MACs per pixel and the deviation from the reference rung's parameters, per rung (of `rungs`,
    default all; the reference is always measured)."""
    from deconvlab import models

    out = {}
    wanted = set(specs if rungs is None else rungs) | {reference}
    for rung, spec in specs.items():
        if rung not in wanted:
            continue
        model = build(spec)
        out[rung] = {"params": models.count_params(model), "macs_per_pixel": models.macs_per_pixel(model)}
    ref = out[reference]["params"] if reference in out else None
    for row in out.values():
        row["params_vs_reference"] = None if ref is None else round(row["params"] / ref - 1, 4)
    return out


# --------------------------------------------------------------- rung c is the all-convolution network a
def _chain(model) -> tuple[list[Any], bool]:
    """The conv / transposed-conv layers of a skip-free stride-1 network, in order, and whether it adds its input."""
    import keras

    convs, residual = [], False
    current = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):  # Conv2DTranspose is no Conv2D
            kernel = tuple(int(k) for k in layer.kernel_size)
            if (tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1) or layer.padding != "same"
                    or any(k % 2 == 0 for k in kernel) or getattr(layer, "groups", 1) != 1):
                raise _argument_error(f"layer {layer.name}: only stride-1, undilated, 'same', odd-kernel layers map "
                                      "onto a convolution of the same size")
            if layer.input is not current:
                raise _argument_error(f"layer {layer.name} does not read the previous layer: a network with skip "
                                      "connections is no chain of convolutions")
            convs.append(layer)
            current = layer.output
        elif (isinstance(layer, keras.layers.Add) and len(layer.input) == 2
              and any(t is model.inputs[0] for t in layer.input)):
            if not any(t is current for t in layer.input):
                raise _argument_error(f"layer {layer.name} adds something other than the chain's output")
            residual, current = True, layer.output
        elif isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "linear":
            current = layer.output  # the float32 cast at the end of a mixed-precision model
        else:
            raise _argument_error(f"layer {layer.name} ({type(layer).__name__}) has no counterpart in an "
                                  "all-convolution network: use a stride-1 red_net without skips (rung c)")
    if not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in convs):
        raise _argument_error(f"{model.name} has no transposed convolution to map")
    return convs, residual


def _argument_error(message: str) -> Exception:
    from deconvlab.errors import ArgumentError

    return ArgumentError(message)


def transposed_as_convolution(model, flip: bool = True):
    """The all-convolution network that computes what `model` (stride-1 convs and transposed convs in a chain,
    no skips, optionally a global residual: rung c) computes, in float32.

    A stride-1 'same' transposed convolution with an odd kernel K (Keras layout (kh, kw, out, in)) is the
    convolution with kernel ``K[::-1, ::-1]`` transposed to (kh, kw, in, out): each output pixel gathers the same
    taps the transposed convolution scatters. ``flip=False`` leaves the spatial flip out (for teaching: the
    outputs then differ). The result is ``plain_cnn``'s structure: rung c is rung a with its weights re-laid out.
    """
    import keras

    convs, residual = _chain(model)
    channels = int(model.inputs[0].shape[-1])
    inputs = keras.Input(shape=(None, None, channels), name="image")
    x = inputs
    weights = []
    for i, layer in enumerate(convs, start=1):
        kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), dtype=np.float32)
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kernel = kernel[::-1, ::-1] if flip else kernel
            kernel = np.ascontiguousarray(kernel.transpose(0, 1, 3, 2))
        conv = keras.layers.Conv2D(kernel.shape[-1], kernel_size=kernel.shape[:2], padding="same",
                                   activation=layer.activation, use_bias=layer.use_bias, dtype="float32",
                                   name=f"conv{i}")
        x = conv(x)
        weights.append((conv, [kernel] + ([np.asarray(keras.ops.convert_to_numpy(layer.bias), np.float32)]
                                          if layer.use_bias else [])))
    if residual:
        x = keras.layers.Add(dtype="float32", name="residual")([inputs, x])
    net = keras.Model(inputs, x, name=f"{model.name}_as_convolutions")
    for conv, values in weights:
        conv.set_weights(values)
    return net


@contextlib.contextmanager
def full_float32_precision() -> Iterator[str]:
    """``deconvlab.config.full_float32()`` for the block, then the backend's previous setting back.

    ``full_float32`` switches for the rest of the session (JAX and PyTorch run float32 convolutions as TF32 on
    NVIDIA GPUs by default); a check that runs between trainings must not change how later trainings compute.
    """
    import keras

    from deconvlab.config import full_float32

    backend = keras.backend.backend()
    restore = None
    if backend == "jax":
        import jax

        saved = getattr(jax.config, "jax_default_matmul_precision", None)

        def restore():
            jax.config.update("jax_default_matmul_precision", saved)
    elif backend == "tensorflow":
        import tensorflow as tf

        saved = tf.config.experimental.tensor_float_32_execution_enabled()

        def restore():
            tf.config.experimental.enable_tensor_float_32_execution(saved)
    elif backend == "torch":
        import torch

        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

        def restore():
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    try:
        yield full_float32()
    finally:
        if restore is not None:
            restore()


@contextlib.contextmanager
def _policy(name: str) -> Iterator[None]:
    import keras

    saved = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(saved)


def _float32_copy(model):
    """`model` itself if it computes in float32, else the same network rebuilt in float32 with its weights."""
    from deconvlab import models

    if all(getattr(layer, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model
    spec = models.model_spec(model)
    if spec is None:
        raise _argument_error(f"{model.name} computes in {model.compute_dtype} and was not built in this session: "
                              "build it with deconvlab.models under a float32 policy and load its weights")
    with _policy("float32"):
        copy = build(spec)
    copy.set_weights(model.get_weights())
    return copy


def check_transposed_as_convolution(model=None, image=None, *, seed: int = 0, flip: bool = True,
                                    tolerance: float = 1e-5) -> dict[str, Any]:
    """Rung c's weights on an all-convolution network give rung c's output, at full float32 precision.

    `model`: a stride-1 encoder-decoder without skips (default: a small rung-c ``red_net(depth=3, width=8,
    skip_every=0, global_residual=False)`` with seeded random kernels and biases); a mixed-precision model is
    compared as its float32 copy. `image`: (H, W) or NHWC (default: a seeded 37x41 random image). Both nets run
    under :func:`full_float32_precision`; ``equal`` is ``max |difference| <= tolerance * max(1, max |output|)``.
    """
    import keras

    from deconvlab import models

    if model is None:
        with _policy("float32"):
            keras.utils.set_random_seed(seed)
            model = models.red_net(channels=1, depth=3, width=8, skip_every=0, global_residual=False)
            rng = np.random.default_rng(seed)  # biases too, so the check sees them move
            model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    reference = _float32_copy(model)
    if image is None:
        image = np.random.default_rng(seed + 1).random((37, 41), dtype=np.float32)
    x = np.asarray(image, dtype=np.float32)
    x = x[None, ..., None] if x.ndim == 2 else x[None] if x.ndim == 3 else x
    with full_float32_precision() as switched:
        conv_net = transposed_as_convolution(reference, flip=flip)
        y_ref = np.asarray(keras.ops.convert_to_numpy(reference(x, training=False)), np.float64)
        y_conv = np.asarray(keras.ops.convert_to_numpy(conv_net(x, training=False)), np.float64)
    diff = float(np.max(np.abs(y_ref - y_conv)))
    scale = max(1.0, float(np.max(np.abs(y_ref))))
    convs, _ = _chain(reference)
    return {
        "equal": diff <= tolerance * scale, "max_abs_diff": diff, "max_abs_output": float(np.max(np.abs(y_ref))),
        "tolerance": tolerance, "flip": flip, "image_shape": list(x.shape), "precision": switched,
        "layers": len(convs), "transposed_layers": sum(isinstance(c, keras.layers.Conv2DTranspose) for c in convs),
        "backend": keras.backend.backend(),
    }


# ----------------------------------------------------------------------------------------------- training
def _write_json(path: Path, data: dict[str, Any]) -> None:
    from deconvlab.io import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def run_path(out: Path, rung: str, seed: int, train_images: int | None = None, tag: str = "") -> Path:
    if tag:
        return Path(out) / f"{tag}-{rung}-seed{seed}.json"
    if train_images is None:
        return Path(out) / f"ladder-{rung}-seed{seed}.json"
    return Path(out) / f"overfit-n{train_images}-{rung}-seed{seed}.json"


def _grad_norms(model, batch) -> list[list[Any]] | dict[str, str]:
    from deconvlab.grads import layer_gradient_norms

    try:
        return [[name, round(norm, 8)] for name, norm in layer_gradient_norms(model, batch[0], batch[1])]
    except Exception as err:  # a measurement must not cost the run (one GPU call, no second try)
        return {"error": f"{type(err).__name__}: {err}"}


def _output_kernel_std(model) -> float:
    kernels = [layer.kernel for layer in model.layers if getattr(layer, "kernel", None) is not None]
    import keras

    return float(np.std(keras.ops.convert_to_numpy(kernels[-1])))


def train_one(rung: str, seed: int, spec: dict[str, Any], data: dict[str, Any], args, log,
              train_images: int | None = None) -> dict[str, Any]:
    """Build (seeded), train, evaluate and measure one rung; returns its record.

    ``train_images`` (experiment 3): train on the first n of the training images only, keep the final weights
    and also measure PSNR on (up to :data:`OVERFIT_TRAIN_EVAL`) of those training images and on the 8 held-aside
    ones, so the record holds the generalisation gap.
    """
    import jax
    import keras

    from deconvlab import models
    from deconvlab.evaluate import evaluate
    from deconvlab.fused import train_denoiser
    from deconvlab.weights import git_commit

    wall = time.perf_counter()
    model = build(spec, seed)
    params, macs = models.count_params(model), models.macs_per_pixel(model)
    grads = rung in args.grad_rungs
    grad_init = _grad_norms(model, data["grad_batch"]) if grads else None
    output_std = _output_kernel_std(model)
    train = data["train"] if train_images is None else data["train"][:train_images]
    record = train_denoiser(model, train, data["validation"], sigma=SIGMA, patch=args.patch,
                            batch=args.batch, lr=args.lr, warmup=args.warmup, seed=seed, steps=args.steps,
                            steps_per_call=args.steps_per_call, eval_every=args.eval_every,
                            log=lambda line: log(f"[{rung} seed {seed} n {train_images}] {line}"))
    start_eval = time.perf_counter()
    gap = None
    if train_images is not None:
        seen = train[:OVERFIT_TRAIN_EVAL]
        gap = {"train_psnr": evaluate(model, ([f"train{i}" for i in range(len(seen))], seen), "denoise",
                                      sigma=SIGMA, seed=0).mean_psnr,
               "heldaside_psnr": evaluate(model, (data["held_names"], data["held"]), "denoise",
                                          sigma=SIGMA, seed=0).mean_psnr}
    bsd = evaluate(model, data["bsd68"], "denoise", sigma=SIGMA, seed=0)
    set12 = evaluate(model, data["set12"], "denoise", sigma=SIGMA, seed=0)
    first_eval = time.perf_counter() - start_eval
    noise = None
    if seed == args.seeds[0] and train_images is None:  # one run per rung: the evaluation-noise spread on BSD68
        noise = {"0": round(bsd.mean_psnr, 4)}
        for s in args.spread_seeds:
            if s != 0:
                noise[str(s)] = round(evaluate(model, data["bsd68"], "denoise", sigma=SIGMA, seed=s).mean_psnr, 4)
    eval_seconds = time.perf_counter() - start_eval
    spread_seconds = time.perf_counter() - start_eval - first_eval
    grad_final = _grad_norms(model, data["grad_batch"]) if grads else None
    conv_check = None
    if rung == "c" and seed == args.seeds[0] and train_images is None:
        try:
            conv_check = check_transposed_as_convolution(model, data["bsd68"].images[0])
        except Exception as err:
            conv_check = {"error": f"{type(err).__name__}: {err}"}
    curve = record["curve"]
    first = curve[0] if curve else {"step": 0, "seconds": 0.0}
    per_step = ((curve[-1]["seconds"] - first["seconds"]) / (curve[-1]["step"] - first["step"])
                if len(curve) > 1 else record["train_seconds"] / max(record["steps"], 1))
    compile_seconds = max(0.0, first["seconds"] - per_step * first["step"])
    result = {
        "rung": rung, "seed": seed,
        "bsd68_psnr": round(bsd.mean_psnr, 4), "set12_psnr": round(set12.mean_psnr, 4),
        "bsd68_ssim": round(bsd.mean_ssim, 5), "set12_ssim": round(set12.mean_ssim, 5),
        "steps": record["steps"], "batch": args.batch, "patch": args.patch,
        "minutes": round(record["train_seconds"] / 60, 3),
        "params": params, "macs_per_pixel": macs,
        "commit": git_commit(), "hardware": jax.devices()[0].device_kind,
        "name": RUNG_NAMES[rung], "builder": spec["builder"], "kwargs": spec["kwargs"],
        "lr": args.lr, "warmup_steps": record["warmup_steps"], "steps_per_call": record["steps_per_call"],
        "eval_every": args.eval_every, "sigma": SIGMA, "precision": args.precision,
        "gpu_processes": args.shared, "best_val_psnr": record["best_val_psnr"],
        "patches_per_s": record["patches_per_s"], "train_seconds": record["train_seconds"],
        "eval_minutes": round(eval_seconds / 60, 3), "wall_minutes": round((time.perf_counter() - wall) / 60, 3),
        "seconds_per_step": round(per_step, 5), "first_interval_overhead_s": round(compile_seconds, 1),
        "spread_eval_seconds": round(spread_seconds, 1),
        "val_curve": record["curve"],
        # fused stops a run whose weights went NaN after a finite checkpoint, and measures that checkpoint
        **({"diverged_at_step": record["diverged_at_step"]} if "diverged_at_step" in record else {}),
        "bsd68_psnr_by_noise_seed": noise,
        "output_kernel_std_init": round(output_std, 6),
        "grad_norms_init": grad_init, "grad_norms_final": grad_final,
        "grad_batch": (f"PatchSampler(train, patch={args.patch}, batch={args.batch}, sigma=25, "
                       f"seed={GRAD_BATCH_SEED}).batch(0)") if grads else None,
        "conv_equivalence": conv_check,
        "test_images": {"bsd68": len(data["bsd68"].images), "set12": len(data["set12"].images)},
        "train_images": len(train), "init": INIT_NOTE,
        "keras": keras.__version__, "jax": jax.__version__,
        "command": "python benchmarks/ladder.py " + " ".join(args.argv),
    }
    if gap is not None:
        result.update({k: round(v, 4) for k, v in gap.items()})
        result["train_eval_images"] = len(train[:OVERFIT_TRAIN_EVAL])
        result["gap_db"] = round(gap["train_psnr"] - bsd.mean_psnr, 4)
        result["heldaside_gap_db"] = round(gap["train_psnr"] - gap["heldaside_psnr"], 4)
    return result


def _load_data(args) -> dict[str, Any]:
    from deconvlab.data import load_dataset
    from deconvlab.fused import VAL_IMAGES, held_aside
    from deconvlab.sampler import PatchSampler
    from deconvlab.tasks import held_aside_split

    train_set = load_dataset("train400", mode="gray", limit=args.train_limit)
    train, validation = held_aside(list(train_set.images), (SIGMA,))
    # held_aside's own split: training leaves out copies of held images, so the held ones are not images[len(train):]
    _, held_ids = held_aside_split(train_set.images, VAL_IMAGES)
    sampler = PatchSampler(train, patch_size=args.patch, batch_size=args.batch, sigma=SIGMA, seed=GRAD_BATCH_SEED)
    x, y = sampler.batch(0)
    return {
        "train": train, "validation": validation, "grad_batch": (np.asarray(x), np.asarray(y)),
        "held": [train_set.images[i] for i in held_ids], "held_names": [train_set.names[i] for i in held_ids],
        "bsd68": load_dataset("bsd68", mode="gray", limit=args.test_limit),
        "set12": load_dataset("set12", mode="gray", limit=args.test_limit),
    }


def _csv(text: str, cast=str) -> tuple:
    return tuple(cast(t.strip()) for t in str(text).split(",") if t.strip())


def _train_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/ladder.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", default=",".join(RUNGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: steps / 20)")
    parser.add_argument("--eval-every", type=int, default=250, help="validation (checkpoint choice) interval")
    parser.add_argument("--steps-per-call", type=int, default=50)
    parser.add_argument("--target-params", type=int, default=TARGET_PARAMS)
    parser.add_argument("--depth", type=int, default=DEPTH, help="red_net depth (plain_cnn gets twice as many)")
    parser.add_argument("--width", type=int, default=None, help="width of rungs a-e (default: nearest the target)")
    parser.add_argument("--unet-width", type=int, default=None, help="U-Net base width (default: nearest rung e)")
    parser.add_argument("--unet-depths", default=",".join(map(str, UNET_DEPTHS)))
    parser.add_argument("--grad-rungs", default=",".join(GRAD_RUNGS))
    parser.add_argument("--spread-seeds", default=",".join(map(str, SPREAD_SEEDS)))
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--out", type=Path, default=RESULTS / "tmp" / "ladder")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="skip a seed that would end after this many seconds since start (judged by the last)")
    parser.add_argument("--shared", type=int, default=1, help="processes sharing the device (recorded)")
    parser.add_argument("--compile-cache", type=Path, default=None, help="JAX persistent compilation cache")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--train-images", default="",
                        help="experiment 3: comma-separated training-set sizes (first n images); final weights kept")
    parser.add_argument("--tag", default="", help="run-file prefix instead of ladder / overfit-n<N> (e.g. res-p100)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke test: tiny widths, 20 steps, 2 train images, 2 test images, float32")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.target_params, args.unet_depths = 3, 2500, "1,1,1"
        args.steps, args.batch, args.patch = 20, 4, 24
        args.steps_per_call, args.eval_every, args.warmup = 5, 10, 5
        args.train_limit, args.test_limit, args.precision = 8 + 2, 2, "float32"
    args.argv = argv
    if args.tag and (not args.tag.replace("-", "").replace("_", "").isalnum() or args.tag.startswith(("ladder", "overfit"))):
        parser.error(f"--tag {args.tag!r}: letters, digits, - and _ only, not starting with ladder or overfit")
    args.rungs = _csv(args.rungs)
    unknown = sorted(set(args.rungs) - set(RUNGS))
    if unknown:
        parser.error(f"unknown rungs {unknown}: use {','.join(RUNGS)}")
    args.seeds = _csv(args.seeds, int)
    args.grad_rungs = _csv(args.grad_rungs)
    args.spread_seeds = _csv(args.spread_seeds, int)
    args.unet_depths = _csv(args.unet_depths, int)
    args.train_images = _csv(args.train_images, int)
    if any(n < 1 for n in args.train_images):
        parser.error("--train-images: sizes must be >= 1")
    if args.train_images:  # the overfitting gap needs the final weights: no checkpoint choice, no side measures
        args.eval_every, args.spread_seeds = args.steps, (0,)
    if args.warmup is None:
        args.warmup = max(args.steps_per_call, args.steps // 20)
    return args


def run_plan(args) -> list[tuple[int, int | None, str, Path]]:
    """(seed, training-set size or None, rung, run file) in training order: every rung's seed 0 first."""
    return [(seed, n, rung, run_path(args.out, rung, seed, n, args.tag))
            for seed in args.seeds for n in (args.train_images or (None,)) for rung in args.rungs]


def train_main(argv: list[str]) -> int:
    start = time.perf_counter()
    args = _train_arguments(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("the ladder trains with deconvlab.fused (JAX): set KERAS_BACKEND=jax")
    if args.compile_cache:
        try:  # seeds 1, 2 reuse seed 0's compiled step (a new closure per run misses the in-memory cache)
            jax.config.update("jax_compilation_cache_dir", str(args.compile_cache))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        except Exception as err:  # an option this JAX lacks: compile again instead
            print(f"compilation cache not set: {err}", flush=True)

    def log(line: str) -> None:
        print(f"{time.perf_counter() - start:7.1f} s  {line}", flush=True)

    specs = ladder_specs(args.target_params, args.depth, args.unet_depths, args.width, args.unet_width)
    sizes = budget(specs, rungs=args.rungs)
    for rung in sizes:
        log(f"rung {rung}: {specs[rung]['builder']} {json.dumps(specs[rung]['kwargs'])} "
            f"params {sizes[rung]['params']:,} ({sizes[rung]['params_vs_reference']:+.1%} vs e), "
            f"MACs/px {sizes[rung]['macs_per_pixel']:,.0f}")
    off = {r: s["params_vs_reference"] for r, s in sizes.items() if abs(s["params_vs_reference"]) > BUDGET_TOLERANCE}
    if off:
        message = f"rungs outside the +-{BUDGET_TOLERANCE:.0%} parameter budget: {off}"
        if not args.quick:
            raise SystemExit(message)
        log("warning (quick mode, tiny widths): " + message)
    keras.mixed_precision.set_global_policy(args.precision)
    data = _load_data(args)
    log(f"data: {len(data['train'])} training images, 8 held aside; BSD68 {len(data['bsd68'].images)}, "
        f"Set12 {len(data['set12'].images)}; device {jax.devices()[0].device_kind}")
    return train_runs(args, specs, data, log, start)


def train_runs(args, specs: dict[str, dict[str, Any]], data: dict[str, Any], log, start: float) -> int:
    """Every run of :func:`run_plan`, each written to its JSON as it ends; returns the exit status.

    A run that diverges (``deconvlab.errors.TrainingError``: no finite held-aside PSNR to choose a checkpoint by) or
    fails is written as ``<run>.diverged.json`` or ``<run>.skipped.json`` (``"skipped": true``, so :func:`collect`
    leaves it out of the means and lists it) and the other runs go on; the status is 1 if any run diverged or
    failed, else 0.
    """
    last, failed = None, 0
    for seed, n, rung, path in run_plan(args):
        elapsed = time.perf_counter() - start
        if args.deadline_s is not None and last is not None and elapsed + last > args.deadline_s:
            log(f"skip {rung} seed {seed}: {elapsed:.0f} s + {last:.0f} s (last run) > deadline {args.deadline_s:.0f} s")
            _write_json(path.with_suffix(".skipped.json"), {"rung": rung, "seed": seed, "skipped": True,
                        "train_images": n, "patch": args.patch, "reason": f"deadline {args.deadline_s} s: {elapsed:.0f} s elapsed, last run {last:.0f} s"})
            continue
        t0 = time.perf_counter()
        try:
            result = train_one(rung, seed, specs[rung], data, args, log, n)
        except TrainingError as err:  # an outcome of the rung's recipe, not a bug: one line, no traceback
            failed += 1
            print(f"ladder: {rung} seed {seed}{'' if n is None else f' n {n}'} diverged: {err}", file=sys.stderr,
                  flush=True)
            _write_json(path.with_suffix(".diverged.json"), {
                "rung": rung, "seed": seed, "skipped": True, "diverged": True, "train_images": n, "patch": args.patch,
                "reason": f"diverged: {err}", "planned_steps": args.steps, "batch": args.batch, "lr": args.lr,
                "command": "python benchmarks/ladder.py " + " ".join(args.argv)})
            continue
        except Exception as err:  # one failed run must not stop the other seeds
            import traceback

            failed += 1
            log(f"FAILED {rung} seed {seed}: {traceback.format_exc()}")
            _write_json(path.with_suffix(".skipped.json"), {"rung": rung, "seed": seed, "skipped": True,
                        "train_images": n, "patch": args.patch, "reason": f"failed: {type(err).__name__}: {err}"})
            continue
        # the next seed's time: this one's, less half its compilation (cached now) and the noise-spread passes
        last = (time.perf_counter() - t0 - 0.5 * result["first_interval_overhead_s"]
                - result["spread_eval_seconds"])
        _write_json(path, result)
        keys = ("rung", "seed", "train_images", "bsd68_psnr", "set12_psnr", "steps", "minutes", "params",
                "best_val_psnr", "gap_db")
        log(f"RESULT {json.dumps({k: result.get(k) for k in keys})}")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------ collect
def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _std(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def noise_spread(records: Sequence[dict[str, Any]]) -> float | None:
    """Range (max - min) of BSD68 PSNR over evaluation noise seeds of the rung's run that measured it."""
    spreads = [max(r["bsd68_psnr_by_noise_seed"].values()) - min(r["bsd68_psnr_by_noise_seed"].values())
               for r in records if r.get("bsd68_psnr_by_noise_seed") and len(r["bsd68_psnr_by_noise_seed"]) >= 2]
    return max(spreads) if spreads else None


def verdict(x: Sequence[float], y: Sequence[float], spread_x: float | None, spread_y: float | None) -> dict[str, Any]:
    """:data:`RULE` applied to the seeds' BSD68 PSNRs of two rungs (difference is y - x)."""
    diff = float(np.mean(y) - np.mean(x)) if len(x) and len(y) else None
    pooled = pooled_std(x, y)
    known = [s for s in (spread_x, spread_y) if s is not None]
    spread = max(known) if known else None
    out = {"difference_db": None if diff is None else round(diff, 4),
           "pooled_seed_std": None if pooled is None else round(pooled, 4),
           "twice_pooled_std": None if pooled is None else round(2 * pooled, 4),
           "noise_spread": None if spread is None else round(spread, 4)}
    if diff is None or pooled is None:
        out.update(verdict="not distinguishable", reason="fewer than 2 seeds in a rung")
    elif spread is None:
        out.update(verdict="not distinguishable", reason="no evaluation-noise spread measured")
    elif abs(diff) > 2 * pooled and abs(diff) > spread:
        out.update(verdict="supported" if diff > 0 else "contradicted", reason=f"|{diff:+.3f}| dB > 2 x pooled std {2 * pooled:.3f} and spread {spread:.3f}")
    else:
        out.update(verdict="not distinguishable",
                   reason=f"|{diff:+.3f}| dB <= max(2 x pooled std {2 * pooled:.3f}, spread {spread:.3f})")
    return out


def _read_runs(paths: Sequence[Path], prefix: str = "ladder") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    files = []
    for p in map(Path, paths):
        files += sorted(p.glob(f"{prefix}-*.json")) if p.is_dir() else [p] if p.name.startswith(prefix) else []
    runs, skipped = [], []
    for f in files:
        data = json.loads(f.read_text())
        (skipped if data.get("skipped") else runs).append(data)
    done = {(r["rung"], r["seed"], r.get("train_images"), r.get("patch")) for r in runs}
    # a run skipped in one GPU call and completed in a later one counts as completed (at the same patch size:
    # resolution runs differ by nothing else)
    skipped = [s for s in skipped if (s["rung"], s["seed"], s.get("train_images"), s.get("patch")) not in done]
    runs.sort(key=lambda r: (r.get("train_images") or 0, r["rung"], r["seed"]))
    return runs, skipped


def _grad_summary(records: Sequence[dict[str, Any]], key: str) -> dict[str, float] | None:
    lists = [r[key] for r in records if isinstance(r.get(key), list) and r[key]]  # not an {"error": ...}
    if not lists:
        return None
    norms = np.array([[n for _, n in g] for g in lists], dtype=np.float64)  # seeds x layers
    mean = norms.mean(axis=0)
    positive = mean[mean > 0]
    return {"first_layer": float(mean[0]), "last_layer": float(mean[-1]),
            "min_over_max": float(positive.min() / positive.max()) if positive.size else 0.0,
            "layers": [name for name, _ in lists[0]], "mean_over_seeds": [float(v) for v in mean]}


GRADIENT_COMPARISONS = (("a", "d", "symmetric skip fusion (a is c reparametrised: same gradient norms)"),
                        ("b", "e", "skip fusion, both with the global residual"))
GRADIENT_RULE = ("Middle of the network: the median kernel-gradient norm of the middle third of the hidden layers "
                 "divided by the largest hidden-layer norm (the output layer left out: its near-zero start scales "
                 "every gradient upstream by the same small factor, so it cancels in a ratio but not in a raw "
                 "first-layer norm); log10 per seed. A difference counts when the mean log10 ratios differ by more "
                 "than twice the pooled seed std. 'No vanishing gradient to reduce' when the rung without fusion is "
                 "at 0.1 or above and fusion does not lower the ratio below 0.1; otherwise fusion 'reduces vanishing "
                 "gradients' (supported) when it raises the ratio, 'contradicted' when it lowers it, and 'not "
                 "distinguishable' when the difference does not count.")


def middle_ratio(norms: Sequence[Sequence[Any]]) -> float | None:
    """Median kernel-gradient norm of the middle third of the hidden layers over the largest hidden-layer norm."""
    if not isinstance(norms, list) or len(norms) < 4:
        return None
    hidden = np.array([n for _, n in norms[:-1]], dtype=np.float64)
    third = len(hidden) // 3
    top = hidden.max()
    return float(np.median(hidden[third:len(hidden) - third]) / top) if top > 0 else None


def gradient_verdicts(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:data:`GRADIENT_RULE` for :data:`GRADIENT_COMPARISONS`, at initialisation and for the trained checkpoints."""
    out = []
    for when in ("init", "final"):
        for a, b, what in GRADIENT_COMPARISONS:
            logs = {}
            for rung in (a, b):
                ratios = [middle_ratio(r.get(f"grad_norms_{when}")) for r in runs if r["rung"] == rung]
                logs[rung] = [math.log10(x) for x in ratios if x]
            if not logs[a] or not logs[b]:
                continue
            v = verdict(logs[a], logs[b], 0.0, 0.0)
            v.pop("noise_spread")
            mean_a, mean_b = 10 ** float(np.mean(logs[a])), 10 ** float(np.mean(logs[b]))
            if min(mean_a, mean_b) >= 0.1:
                v.update(verdict="no vanishing gradient to reduce", reason="both middle ratios >= 0.1")
            elif v["verdict"] == "supported" and mean_a >= 0.1:
                v.update(verdict="no vanishing gradient to reduce", reason="the rung without fusion keeps >= 0.1")
            out.append({"when": when, "from": a, "to": b, "change": what,
                        "middle_ratio_from": mean_a, "middle_ratio_to": mean_b,
                        "log10_difference": v.pop("difference_db"), **v})
    return out


def collect(paths: Sequence[Path], results: Path = RESULTS) -> dict[str, Any]:
    """Merge run JSONs into ``results/ladder.json`` and ``ladder.md``: mean +- std per rung, verdicts by :data:`RULE`."""
    runs, skipped = _read_runs(paths)
    if not runs:
        if collect_overfit(paths, results) is not None:
            return {}
        left = f" ({len(skipped)} diverged, failed or skipped)" if skipped else ""
        raise SystemExit(f"no finished ladder runs under {', '.join(map(str, paths))}{left}")
    rungs = {}
    for rung in RUNGS:
        recs = [r for r in runs if r["rung"] == rung]
        if not recs:
            continue
        bsd, s12 = [r["bsd68_psnr"] for r in recs], [r["set12_psnr"] for r in recs]
        rungs[rung] = {
            "name": recs[0].get("name", RUNG_NAMES[rung]), "builder": recs[0].get("builder"),
            "kwargs": recs[0].get("kwargs"), "seeds": [r["seed"] for r in recs],
            "params": recs[0]["params"], "macs_per_pixel": recs[0]["macs_per_pixel"],
            "bsd68_mean": _mean(bsd), "bsd68_std": _std(bsd), "set12_mean": _mean(s12), "set12_std": _std(s12),
            "noise_spread": noise_spread(recs),
            "minutes_mean": _mean([r["minutes"] for r in recs]),
            "steps": sorted({r["steps"] for r in recs}), "batch": sorted({r["batch"] for r in recs}),
            "grad_norms_init": _grad_summary(recs, "grad_norms_init"),
            "grad_norms_final": _grad_summary(recs, "grad_norms_final"),
        }
    verdicts = []
    for a, b, what in COMPARISONS:
        if a in rungs and b in rungs:
            xs = [r["bsd68_psnr"] for r in runs if r["rung"] == a]
            ys = [r["bsd68_psnr"] for r in runs if r["rung"] == b]
            verdicts.append({"from": a, "to": b, "change": what,
                             **verdict(xs, ys, rungs[a]["noise_spread"], rungs[b]["noise_spread"])})
    all_pairs = {}
    present = list(rungs)
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            xs = [r["bsd68_psnr"] for r in runs if r["rung"] == a]
            ys = [r["bsd68_psnr"] for r in runs if r["rung"] == b]
            all_pairs[f"{a}->{b}"] = verdict(xs, ys, rungs[a]["noise_spread"], rungs[b]["noise_spread"])
    budget_ok = None
    if "e" in rungs:
        ref = rungs["e"]["params"]
        budget_ok = all(abs(r["params"] / ref - 1) <= BUDGET_TOLERANCE for r in rungs.values())
    conv = next((r["conv_equivalence"] for r in runs if r.get("conv_equivalence")), None)
    first = runs[0]
    summary = {
        "rule": RULE,
        "claim": "deconvolution and fusion give better images (gray denoising, sigma 25, DnCNN protocol)",
        "protocol": __doc__.split("Protocol (the DnCNN setting, as the shipped cards):")[1].split("Usage:")[0].strip(),
        "initialisation": first.get("init", INIT_NOTE),
        "params_within_5_percent_of_e": budget_ok,
        "hardware": sorted({r["hardware"] for r in runs}), "commit": sorted({r["commit"] for r in runs}),
        "precision": sorted({r.get("precision", "") for r in runs}),
        "gpu_processes": sorted({r.get("gpu_processes", 1) for r in runs}),
        "test_images": first.get("test_images"),
        "conv_equivalence_rung_c": conv,
        "rungs": rungs, "verdicts": verdicts, "all_pairs": all_pairs,
        "gradient_rule": GRADIENT_RULE, "gradient_verdicts": gradient_verdicts(runs),
        "skipped": skipped,
        "collected_by": "python benchmarks/ladder.py collect " + " ".join(map(str, paths)),
        "runs": runs,
    }
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    _write_json(results / "ladder.json", summary)
    (results / "ladder.md").write_text(to_markdown(summary))
    collect_overfit(paths, results)
    collect_resolution(paths, results)
    return summary


OVERFIT_COMPARISONS = (("b", "e", "global residual and fusion (plain CNN + residual vs RED-Net)"),
                       ("d", "e", "global residual on the encoder-decoder"))


def collect_overfit(paths: Sequence[Path], results: Path = RESULTS) -> dict[str, Any] | None:
    """Experiment 3: ``results/overfit.json`` and ``overfit.md`` from the ``overfit-n*`` runs (None if there are none).

    The gap is training PSNR (noise seed 0, on up to :data:`OVERFIT_TRAIN_EVAL` training images) minus full-BSD68
    PSNR, both for the final weights. Two rungs' gaps differ ("supported") only when the difference of their means
    exceeds twice the pooled seed standard deviation of the gaps.
    """
    runs, skipped = _read_runs(paths, "overfit")
    if not runs:
        return None
    table = []
    for n in sorted({r["train_images"] for r in runs}):
        for rung in RUNGS:
            recs = [r for r in runs if r["train_images"] == n and r["rung"] == rung]
            if recs:
                row = {"train_images": n, "rung": rung, "seeds": [r["seed"] for r in recs]}
                for key in ("train_psnr", "heldaside_psnr", "bsd68_psnr", "gap_db"):
                    row[f"{key}_mean"], row[f"{key}_std"] = _mean([r[key] for r in recs]), _std([r[key] for r in recs])
                table.append(row)
    verdicts = []
    for n in sorted({r["train_images"] for r in runs}):
        for a, b, what in OVERFIT_COMPARISONS:
            xs = [r["gap_db"] for r in runs if r["train_images"] == n and r["rung"] == a]
            ys = [r["gap_db"] for r in runs if r["train_images"] == n and r["rung"] == b]
            if xs and ys:
                v = verdict(xs, ys, 0.0, 0.0)  # the gap's own seed spread is the yardstick here
                v.pop("noise_spread")
                # the claim is a *smaller* gap for the second rung: a negative difference supports it
                v["verdict"] = {"supported": "contradicted", "contradicted": "supported"}.get(v["verdict"], v["verdict"])
                verdicts.append({"train_images": n, "from": a, "to": b, "change": what, **v})
    first = runs[0]
    summary = {
        "experiment": "overfitting: gap between training and held-out PSNR against the number of training images",
        "rule": ("The claim is that the second rung overfits less (a smaller gap). A difference in gap between two "
                 "rungs at one training-set size counts only when it exceeds twice the pooled seed standard deviation "
                 "of the two rungs' gaps: a smaller gap 'supports' the claim, a larger one 'contradicts' it; "
                 "otherwise 'not distinguishable'."),
        "gap": "training PSNR (first min(n, 64) training images, noise seed 0) - full BSD68 PSNR, final weights",
        "steps": sorted({r["steps"] for r in runs}), "batch": sorted({r["batch"] for r in runs}),
        "patch": sorted({r["patch"] for r in runs}), "hardware": sorted({r["hardware"] for r in runs}),
        "commit": sorted({r["commit"] for r in runs}), "precision": sorted({r.get("precision", "") for r in runs}),
        "params": {r["rung"]: r["params"] for r in runs}, "test_images": first.get("test_images"),
        "table": table, "verdicts": verdicts, "skipped": skipped, "runs": runs,
        "collected_by": "python benchmarks/ladder.py collect " + " ".join(map(str, paths)),
    }
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    _write_json(results / "overfit.json", summary)
    (results / "overfit.md").write_text(overfit_markdown(summary))
    return summary


def collect_resolution(paths: Sequence[Path], results: Path = RESULTS) -> dict[str, Any] | None:
    """The article's "high-resolution training" claim: ``results/resolution.json`` and ``.md`` from ``res-p*`` runs.

    One rung trained at several patch sizes with the same pixels per step (batch x patch^2) and steps; final
    weights. The claim is that higher resolution brings overfitting (a larger gap) and vanishing gradients (a
    lower middle ratio, :func:`middle_ratio`); each is judged smallest patch -> largest by the 2x pooled-std rule.
    """
    found, skipped = _read_runs(paths, "res")
    runs = [r for r in found if r.get("gap_db") is not None]
    # runs left out are named, as collect names its rungs': a mean over fewer seeds says why
    left_out = [f"{r['rung']} seed {r['seed']}" + (f" patch {r['patch']}" if "patch" in r else "")
                for r in skipped + [r for r in found if r not in runs]]
    if not runs:
        return None
    table = []
    for patch in sorted({r["patch"] for r in runs}):
        recs = [r for r in runs if r["patch"] == patch]
        ratios = [middle_ratio(r.get("grad_norms_final")) for r in recs]
        logs = [math.log10(x) for x in ratios if x]
        table.append({"patch": patch, "batch": recs[0]["batch"], "rung": recs[0]["rung"],
                      "seeds": [r["seed"] for r in recs], "pixels_per_step": recs[0]["batch"] * patch ** 2,
                      **{f"{k}_{f}": fn([r[k] for r in recs]) for k in ("bsd68_psnr", "train_psnr", "gap_db")
                         for f, fn in (("mean", _mean), ("std", _std))},
                      "middle_ratio_log10": logs})
    lo, hi = table[0], table[-1]
    gap = verdict([r["gap_db"] for r in runs if r["patch"] == lo["patch"]],
                  [r["gap_db"] for r in runs if r["patch"] == hi["patch"]], 0.0, 0.0)
    if lo["middle_ratio_log10"] and hi["middle_ratio_log10"]:
        grad = verdict(hi["middle_ratio_log10"], lo["middle_ratio_log10"], 0.0, 0.0)  # lower at high res: supports
        grad.pop("noise_spread")
        grad["difference_log10"] = grad.pop("difference_db")
    else:
        grad = {"verdict": "not measured", "reason": "no gradient norms in these runs", "difference_log10": None}
    gap.pop("noise_spread")
    summary = {
        "claim": "training at high resolution brings overfitting and vanishing gradients (article, section 5)",
        "rule": ("Patch sizes compared smallest -> largest at equal pixels per step and equal steps: the claim is "
                 "'supported' when the largest patch's gap (training - BSD68 PSNR) is larger, or its middle "
                 "gradient ratio lower (log10), by more than twice the pooled seed std; 'contradicted' when the "
                 "opposite holds by that margin; otherwise 'not distinguishable'."),
        "table": table, "gap_verdict": {"from_patch": lo["patch"], "to_patch": hi["patch"], **gap},
        "gradient_verdict": {"from_patch": lo["patch"], "to_patch": hi["patch"], **grad},
        "steps": sorted({r["steps"] for r in runs}), "hardware": sorted({r["hardware"] for r in runs}),
        "commit": sorted({r["commit"] for r in runs}), "runs": runs, **({"left_out": left_out} if left_out else {}),
    }
    _write_json(Path(results) / "resolution.json", summary)
    lines = ["# High-resolution training: overfitting and vanishing gradients? (rung e, sigma 25)", "",
             f"`benchmarks/ladder.py --tag res-p<patch>`: rung e trained {summary['steps'][0]} steps at each patch "
             f"size with the same pixels per step, final weights; {', '.join(summary['hardware'])}.", "",
             f"**Rule.** {summary['rule']}", "",
             "| patch | batch | seeds | BSD68 | train PSNR | gap | middle gradient ratio (log10) |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['patch']} | {r['batch']} | {len(r['seeds'])} | {_pm(r['bsd68_psnr_mean'], r['bsd68_psnr_std'])}"
                     f" | {_pm(r['train_psnr_mean'], r['train_psnr_std'])} | {_pm(r['gap_db_mean'], r['gap_db_std'])} |"
                     f" {_pm(_mean(r['middle_ratio_log10']), _std(r['middle_ratio_log10']))} |")
    lines += ["", f"- Gap, patch {lo['patch']} -> {hi['patch']}: {gap['difference_db']:+.3f} dB "
                  f"(2 x pooled std {_std_text(gap['twice_pooled_std'], 3)}): **{gap['verdict']}**",
              f"- Middle gradient ratio, patch {lo['patch']} -> {hi['patch']}: " + (
                  f"{-grad['difference_log10']:+.2f} log10 (2 x pooled std {_std_text(grad['twice_pooled_std'], 2)}): "
                  if grad["difference_log10"] is not None else f"{grad['reason']}: ") + f"**{grad['verdict']}**"]
    lines += ["", "Left out (skipped, failed or without a gap): " + ", ".join(left_out)] if left_out else []
    (Path(results) / "resolution.md").write_text("\n".join(lines) + "\n")
    return summary


def overfit_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Experiment 3: does the encoder-decoder overfit less? (gray denoising, sigma 25)", "",
        f"`benchmarks/ladder.py --train-images ...` (issue 14): rungs of the ladder trained on the first n Train400 "
        f"images for {', '.join(map(str, summary['steps']))} steps x batch {', '.join(map(str, summary['batch']))} "
        f"(patch {', '.join(map(str, summary['patch']))}), final weights (no checkpoint choice, so early stopping "
        f"cannot hide overfitting). Gap = {summary['gap']}. Mean ± sample std over seeds. Hardware: "
        f"{', '.join(summary['hardware'])}; precision {', '.join(summary['precision'])}; "
        f"commit {', '.join(summary['commit'])}.", "",
        f"**Rule.** {summary['rule']}", "",
        "| n images | rung | seeds | train PSNR | held-aside 8 | BSD68 | gap (train - BSD68) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["table"]:
        lines.append(f"| {r['train_images']} | {r['rung']} | {len(r['seeds'])} | "
                     f"{_pm(r['train_psnr_mean'], r['train_psnr_std'])} | "
                     f"{_pm(r['heldaside_psnr_mean'], r['heldaside_psnr_std'])} | "
                     f"{_pm(r['bsd68_psnr_mean'], r['bsd68_psnr_std'])} | {_pm(r['gap_db_mean'], r['gap_db_std'])} |")
    lines += ["", "Verdicts on the gap (difference = second rung - first; negative: the second overfits less):", "",
              "| n images | comparison | what changes | gap difference dB | 2 x pooled seed std | verdict |",
              "|---|---|---|---|---|---|"]
    for v in summary["verdicts"]:
        lines.append(f"| {v['train_images']} | {v['from']} -> {v['to']} | {v['change']} | {_num(v['difference_db'])} | "
                     f"{_num(v['twice_pooled_std'])} | **{v['verdict']}** |")
    if summary["skipped"]:
        lines += ["", "Skipped: " + ", ".join(f"{s['rung']} n {s.get('train_images')} seed {s['seed']}"
                                              + ("" if _why_left_out(s) == "deadline" else f" ({_why_left_out(s)})")
                                              for s in summary["skipped"])]
    return "\n".join(lines) + "\n"


def _why_left_out(entry: dict[str, Any]) -> str:
    """Why a run has no result: "diverged", "failed" (an error) or "deadline" (:func:`train_runs` writes the reason)."""
    if entry.get("diverged"):
        return "diverged"
    return "failed" if str(entry.get("reason", "")).startswith("failed") else "deadline"


def _std_text(std: float | None, digits: int) -> str:
    return "none: one seed" if std is None else f"{std:.{digits}f}"


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f} (1 seed)"


def _test_sets(counts: dict[str, int] | None) -> str:
    full = {"bsd68": 68, "set12": 12}
    if not counts:
        return "BSD68 and Set12"
    if all(counts.get(k) == n for k, n in full.items()):
        return "BSD68 and Set12: full sets"
    return f"BSD68 (first {counts.get('bsd68')} images) and Set12 (first {counts.get('set12')})"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(summary: dict[str, Any]) -> str:
    rungs = summary["rungs"]
    steps = sorted({s for r in rungs.values() for s in r["steps"]})
    batch = sorted({b for r in rungs.values() for b in r["batch"]})
    lines = [
        "# Ablation ladder: do deconvolution and fusion give better images? (gray denoising, sigma 25)", "",
        "`benchmarks/ladder.py` (issue 14). Every rung: the same parameter budget (within 5 % of rung e), the same "
        "initialiser per layer role, the same data (Train400 less its last 8 images, which choose the checkpoint), "
        f"the same {', '.join(map(str, steps))} steps x batch {', '.join(map(str, batch))} and optimiser. "
        f"{_test_sets(summary.get('test_images'))}, sigma 25, noise seed 0, mean PSNR (dB) over training seeds, "
        "± sample std. "
        f"Hardware: {', '.join(summary['hardware'])}; precision {', '.join(summary['precision'])}; "
        f"commit {', '.join(summary['commit'])}.", "",
        f"**Rule.** {summary['rule']}", "",
        "| rung | network | params | MACs/px | seeds | BSD68 | Set12 | eval-noise spread (BSD68) | train min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rung, r in rungs.items():
        lines.append(f"| {rung} | {r['name']} | {r['params']:,} | {r['macs_per_pixel']:,.0f} | {len(r['seeds'])} | "
                     f"{_pm(r['bsd68_mean'], r['bsd68_std'])} | {_pm(r['set12_mean'], r['set12_std'])} | "
                     f"{_num(r['noise_spread'])} | {_num(r['minutes_mean'], 2)} |")
    lines += ["", "Verdicts (BSD68; difference = second rung - first):", "",
              "| comparison | what changes | difference dB | 2 x pooled seed std | eval-noise spread | verdict |",
              "|---|---|---|---|---|---|"]
    for v in summary["verdicts"]:
        lines.append(f"| {v['from']} -> {v['to']} | {v['change']} | {_num(v['difference_db'])} | "
                     f"{_num(v['twice_pooled_std'])} | {_num(v['noise_spread'])} | **{v['verdict']}** |")
    grads = [(k, r) for k, r in rungs.items() if r.get("grad_norms_init")]
    if grads:
        lines += ["", "Kernel-gradient L2 norms of the MSE on one fixed batch (mean over seeds; after training: the "
                  "chosen checkpoint):", "",
                  "| rung | init: first layer | init: last layer | init: min/max over layers | trained: first | "
                  "trained: last | trained: min/max |", "|---|---|---|---|---|---|---|"]
        for rung, r in grads:
            i, f = r["grad_norms_init"], r.get("grad_norms_final") or {}
            lines.append(f"| {rung} | {i['first_layer']:.3g} | {i['last_layer']:.3g} | {i['min_over_max']:.3g} | "
                         f"{f.get('first_layer', float('nan')):.3g} | {f.get('last_layer', float('nan')):.3g} | "
                         f"{f.get('min_over_max', float('nan')):.3g} |")
    if summary.get("gradient_verdicts"):
        lines += ["", f"**Gradient rule.** {summary['gradient_rule']}", "",
                  "| when | comparison | what changes | middle ratio (from) | middle ratio (to) | "
                  "log10 difference | 2 x pooled seed std | verdict |", "|---|---|---|---|---|---|---|---|"]
        for v in summary["gradient_verdicts"]:
            lines.append(f"| {v['when']} | {v['from']} -> {v['to']} | {v['change']} | {v['middle_ratio_from']:.3g} | "
                         f"{v['middle_ratio_to']:.3g} | {_num(v['log10_difference'], 2)} | "
                         f"{_num(v['twice_pooled_std'], 2)} | **{v['verdict']}** |")
    conv = summary.get("conv_equivalence_rung_c")
    lines += ["", "Notes:", "",
              f"- Initialisation: {summary['initialisation']}.",
              "- Parameters within 5 % of rung e: " + {True: "yes", False: "NO", None: "rung e not collected"}[
                  summary["params_within_5_percent_of_e"]] + "."]
    if conv:
        lines.append(f"- Rung c as an all-convolution network (kernels flipped, channels swapped), full float32 "
                     f"({conv['precision']}): max |difference| {conv['max_abs_diff']:.2e} on an image of shape "
                     f"{conv['image_shape']} (equal: {conv['equal']}).")
    for why, label in (("deadline", "Skipped (deadline)"),
                       ("diverged", "Diverged (held-aside PSNR never finite: no checkpoint; left out of the means "
                                    "and verdicts)"), ("failed", "Failed (an error: see the run's .skipped.json)")):
        entries = [s for s in summary["skipped"] if _why_left_out(s) == why]
        if entries:
            lines.append(f"- {label}: " + ", ".join(f"{s['rung']} seed {s['seed']}" for s in entries))
    late = [r for r in summary["runs"] if r.get("diverged_at_step") is not None]
    if late:
        lines.append("- Diverged after a finite checkpoint (stopped there; the best earlier checkpoint is measured "
                     "and in the means): " + ", ".join(f"{r['rung']} seed {r['seed']} at step {r['diverged_at_step']}"
                                                      for r in late))
    lines.append("- The evaluation-noise seeds s = 0, 1, 2 give image i the noise of generator seed s + i "
                 "(`deconvlab.evaluate`), so every image gets a new draw but the sets of noise fields overlap.")
    return "\n".join(lines) + "\n"


def collect_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/ladder.py collect")
    parser.add_argument("paths", type=Path, nargs="+", help="run JSONs or folders holding ladder-*.json")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    summary = collect(args.paths, args.results)
    if summary:
        print(to_markdown(summary))
    overfit = Path(args.results) / "overfit.md"
    if overfit.exists() and any(_read_runs(args.paths, "overfit")[0]):
        print(overfit.read_text())
    return 0


def check_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/ladder.py check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = check_transposed_as_convolution(seed=args.seed)
    print(json.dumps(result, indent=1))
    return 0 if result["equal"] else 1


def recover_resolution_main(argv: list[str]) -> int:
    """Rebuild ``res-p<patch>-e-seed<s>.json`` from the RESULT lines of ``res<patch>.log`` (see the logs' README)."""
    parser = argparse.ArgumentParser(prog="python benchmarks/ladder.py recover-resolution")
    parser.add_argument("logs", type=Path, nargs="+", help="res<patch>.log files of a gpu_ladder.sh call")
    parser.add_argument("--out", type=Path, default=RESULTS / "ladder_runs")
    parser.add_argument("--pixels-per-step", type=int, default=64 * 50 ** 2)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--hardware", default="NVIDIA H200")
    args = parser.parse_args(argv)
    for log in args.logs:
        patch = int(log.stem.removeprefix("res"))
        for line in log.read_text().splitlines():
            if "RESULT " not in line:
                continue
            r = json.loads(line.split("RESULT ", 1)[1])
            record = {**r, "patch": patch, "batch": args.pixels_per_step // patch ** 2, "sigma": SIGMA,
                      "train_psnr": round(r["bsd68_psnr"] + r["gap_db"], 4), "grad_norms_final": None,
                      "hardware": args.hardware, "commit": args.commit, "precision": "mixed_bfloat16",
                      "recovered_from": f"{log.parent.name}/{log.name}"}
            _write_json(run_path(args.out, r["rung"], r["seed"], tag=f"res-p{patch}"), record)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["recover-resolution"]:
        return recover_resolution_main(argv[1:])
    if argv[:1] == ["collect"]:
        return collect_main(argv[1:])
    if argv[:1] == ["check"]:
        return check_main(argv[1:])
    return train_main(argv)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
