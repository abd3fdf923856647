"""Data-parallel training on the engines Keras already has (taught in chapter 5).

``data_parallel()`` returns a strategy whose ``scope()`` wraps model building and ``compile``; ``fit`` then splits
every global batch across the replicas:

* JAX: ``keras.distribution.DataParallel`` over the visible accelerators;
* TensorFlow: ``tf.distribute.MirroredStrategy`` (one replica on a CPU-only machine);
* PyTorch: one replica on the device Keras computes on (no scope to enter); Keras 3 leaves multi-GPU PyTorch to
  ``torchrun`` and DDP, so asking for more than one device raises.

On JAX the strategy also gives the shardings of the same device mesh (:meth:`Strategy.batch_sharding`,
:meth:`Strategy.replicated`), for training loops that build the global batch on the devices themselves
(``benchmarks/time_to_quality.py`` with :class:`deconvlab.sampler.PatchSampler`): the clean images and the
weights are replicated, the sampled batch is constrained to the batch sharding, and XLA's SPMD partitioner splits
the step over the devices and all-reduces the gradients. JAX's partitionable Threefry makes the sampled batch
the same bits on any number of devices, so one and two devices train on identical data.
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
    distribution: Any = None  # the keras.distribution.DataParallel on JAX, else None

    def scope(self):
        """Build and compile the model inside this context."""
        return self._scope()

    def _sharding(self, batch: bool):
        from jax.sharding import NamedSharding, PartitionSpec

        if self.distribution is None:
            raise ArgumentError(
                f"shardings come from keras.distribution on the JAX backend; this strategy is {self.engine}: "
                "set KERAS_BACKEND=jax"
            )
        spec = PartitionSpec(self.distribution.batch_dim_name) if batch else PartitionSpec()
        return NamedSharding(self.distribution.device_mesh.backend_mesh, spec)

    def batch_sharding(self):
        """JAX sharding that splits axis 0 (the batch) over the replicas, the layout ``fit`` gives its batches."""
        return self._sharding(batch=True)

    def replicated(self):
        """JAX sharding with a full copy on every replica (weights, optimizer state, resident training images)."""
        return self._sharding(batch=False)


def data_parallel(devices: list[str] | None = None) -> Strategy:
    """Pick the data-parallel engine of the active Keras backend; ``devices`` defaults to every GPU (else CPU).

    On PyTorch it is one replica on one device (more raise :class:`ArgumentError`): see the module's docstring.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        found = devices or _jax_devices()
        dist = keras.distribution.DataParallel(devices=found)
        return Strategy("keras.distribution.DataParallel", len(found), list(found), dist.scope, dist)
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=devices)
        names = list(strategy.extended.worker_devices)
        return Strategy("tf.distribute.MirroredStrategy", strategy.num_replicas_in_sync, names, strategy.scope)
    if backend == "torch":
        if devices and len(devices) > 1:
            raise ArgumentError(
                "data_parallel() on PyTorch runs on one device; for several GPUs use torchrun with "
                "DistributedDataParallel, or set KERAS_BACKEND=jax"
            )
        # Keras computes on the first GPU when there is one: one replica there, the same code path as on one device.
        found = list(devices or (["cuda:0"] if _torch_gpu_count() else ["cpu"]))
        return Strategy("none (PyTorch: one device)", 1, found, contextlib.nullcontext)
    return Strategy("none", 1, ["cpu"], contextlib.nullcontext)


def _torch_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


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

    if keras.backend.backend() == "torch":  # keras.distribution has no PyTorch implementation
        return _torch_gpu_count()
    try:
        return len(keras.distribution.list_devices("gpu"))
    except Exception:  # backends without GPU support raise instead of returning []
        return 0
