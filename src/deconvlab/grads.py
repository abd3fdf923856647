"""Gradients for teaching: one call, three backends (TensorFlow, JAX, PyTorch).

This is the one module of the package that touches backend APIs: ``tf.GradientTape``, ``jax.grad`` /
``jax.vjp`` on ``model.stateless_call``, and ``torch.autograd``. Each is imported inside the function
that needs it, so importing :mod:`deconvlab` never pulls in a backend Keras does not use.

Chapter 2 uses :func:`vjp` to show that the transposed convolution *is* the adjoint (the gradient) of
the convolution; chapter 3 uses :func:`layer_gradient_norms` to test whether skip connections keep the gradients of deep
encoder-decoders from vanishing (its trained ladder says they do not need to).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from .errors import ArgumentError


def _mse(y_true, y_pred):
    return keras.ops.mean(keras.losses.mean_squared_error(y_true, y_pred))


def _as_float32(name: str, array) -> np.ndarray:
    arr = np.asarray(array, dtype="float32")
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ArgumentError(f"{name} must be a non-empty finite array, got shape {arr.shape}")
    return arr


def _backend() -> str:
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        raise ArgumentError(f"gradients need the tensorflow, jax or torch backend, not {backend!r}: set KERAS_BACKEND")
    return backend


def gradients(model: keras.Model, x, y) -> dict[str, np.ndarray]:
    """Gradients of the MSE of ``model(x)`` against ``y`` w.r.t. every trainable variable, keyed by variable path.
    Taught in chapter 3.

    As a training step sees them: BatchNorm uses batch statistics (its moving statistics are left unchanged).
    """
    x = _as_float32("x", x)
    y = _as_float32("y", y)
    variables = model.trainable_variables
    backend = _backend()
    if backend == "jax":
        import jax

        def objective(trainable, non_trainable):
            pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return _mse(y, pred)

        grads = jax.grad(objective)(
            [v.value for v in variables], [v.value for v in model.non_trainable_variables]
        )
    else:
        # a forward pass with training=True updates BN moving statistics on TF and torch: undo it
        saved = [(v, keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables]
        try:
            if backend == "tensorflow":
                import tensorflow as tf

                with tf.GradientTape() as tape:
                    value = _mse(y, model(x, training=True))
                grads = tape.gradient(value, [v.value for v in variables])
            else:
                import torch

                value = _mse(keras.ops.convert_to_tensor(y), model(keras.ops.convert_to_tensor(x), training=True))
                grads = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
        finally:
            for v, old in saved:
                v.assign(old)
    out = {}
    for v, g in zip(variables, grads, strict=True):
        # a variable the loss does not reach (e.g. an unused branch) has gradient zero, not None
        out[v.path] = np.zeros(tuple(v.shape), "float32") if g is None else np.asarray(keras.ops.convert_to_numpy(g))
    return out


def layer_gradient_norms(model: keras.Model, x, y) -> list[tuple[str, float]]:
    """L2 norm of each layer's kernel gradient (MSE loss), in layer order (layers with a kernel only). Taught in chapter 3."""
    grads = gradients(model, x, y)
    norms = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None) if layer.built else None
        if kernel is not None and kernel.path in grads:
            norms.append((layer.name, float(np.linalg.norm(grads[kernel.path]))))
    return norms


def _check_cotangent(out, cotangent: np.ndarray) -> None:
    # broadcasting would silently pair the wrong entries, so the shapes must match exactly
    if tuple(out.shape) != cotangent.shape:
        raise ArgumentError(f"cotangent shape {cotangent.shape} differs from fn(x) shape {tuple(out.shape)}: pass one of fn(x)'s shape")


def vjp(fn: Callable, x, cotangent) -> np.ndarray:
    """Gradient of ``<fn(x), cotangent>`` w.r.t. x: for a linear fn, its adjoint applied to cotangent. Taught in chapter 2.

    ``fn`` maps a backend tensor to a backend tensor (a Keras layer, a model, or ``keras.ops`` code).
    """
    x = _as_float32("x", x)
    cotangent = _as_float32("cotangent", cotangent)
    backend = _backend()
    if backend == "jax":
        import jax

        out, pullback = jax.vjp(fn, keras.ops.convert_to_tensor(x))
        _check_cotangent(out, cotangent)
        (grad,) = pullback(keras.ops.convert_to_tensor(cotangent, dtype=out.dtype))
    elif backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            out = fn(xt)
            _check_cotangent(out, cotangent)
            value = tf.reduce_sum(out * tf.cast(cotangent, out.dtype))
        grad = tape.gradient(value, xt)
    else:
        import torch

        xt = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
        out = fn(xt)
        _check_cotangent(out, cotangent)
        value = (out * keras.ops.convert_to_tensor(cotangent, dtype=out.dtype)).sum()
        (grad,) = torch.autograd.grad(value, [xt], allow_unused=True)
    if grad is None:  # fn does not depend on x
        return np.zeros_like(x)
    return np.asarray(keras.ops.convert_to_numpy(grad), dtype="float32")
