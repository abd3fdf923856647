"""Data-parallel training on the engines Keras already has (taught in chapter 5).

``data_parallel()`` returns a strategy whose ``scope()`` wraps model building and ``compile``; ``fit`` then splits
every global batch across the replicas:

* JAX: ``keras.distribution.DataParallel`` over the visible accelerators;
* TensorFlow: ``tf.distribute.MirroredStrategy`` (one replica on a CPU-only machine);
* PyTorch: not provided; Keras 3 leaves multi-GPU PyTorch to ``torchrun`` and DDP.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import ArgumentError


@dataclasses.dataclass
class Strategy:
    """What ``data_parallel`` picked: the engine, the replica count, and the scope to build models in."""

    engine: str
    num_replicas: int
    devices: list[str]
    _scope: Callable[[], Any]

    def scope(self):
        """Build and compile the model inside this context."""
        return self._scope()


def data_parallel(devices: list[str] | None = None) -> Strategy:
    """Pick the data-parallel engine of the active Keras backend; ``devices`` defaults to every GPU (else CPU)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        found = devices or _jax_devices()
        dist = keras.distribution.DataParallel(devices=found)
        return Strategy("keras.distribution.DataParallel", len(found), list(found), dist.scope)
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=devices)
        names = list(strategy.extended.worker_devices)
        return Strategy("tf.distribute.MirroredStrategy", strategy.num_replicas_in_sync, names, strategy.scope)
    if backend == "torch":
        raise ArgumentError(
            "data_parallel() covers the JAX and TensorFlow backends; on PyTorch use torchrun with "
            "DistributedDataParallel, or set KERAS_BACKEND=jax"
        )
    return Strategy("none", 1, ["cpu"], contextlib.nullcontext)


def _jax_devices() -> list[str]:
    """Every GPU JAX sees, else every CPU device (asking JAX for GPUs it lacks raises instead of returning [])."""
    import keras

    try:
        found = keras.distribution.list_devices("gpu")
    except RuntimeError:
        found = []
    return found or keras.distribution.list_devices("cpu")


def gpu_count() -> int:
    """Number of GPUs the active backend sees (0 on a CPU-only machine)."""
    import keras

    try:
        return len(keras.distribution.list_devices("gpu"))
    except Exception:  # backends without GPU support raise instead of returning []
        return 0
