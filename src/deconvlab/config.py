"""Run profiles, runtime description and seeding.

``DECONVLAB_PROFILE`` picks one of three profiles (taught in the setup notebook, ``00_setup``):

* ``quick``: CPU and CI; a training run takes up to about a minute on 2 cores.
* ``workshop``: a Colab GPU; a training run is estimated at about 3 minutes on a T4 (book/workshop/timings).
* ``paper``: one H200, at most 10 minutes a model: the size of the shipped weights.

A fourth, ``smoke``, is ``quick`` with a few training steps on a few images: CI runs every chapter a second time
with it, offline, to show that each runs on the fallback photographs (``make notebooks-offline``); its numbers
mean nothing.

The default is ``workshop`` when a GPU is visible and ``quick`` otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from .checks import SEED_MAX, integer
from .errors import ArgumentError

#: Tile side and overlap of ``enhance``: a 4K UHD image stays under 2 GB peak RSS on CPU with 256-pixel tiles
#: (measured: U-Net card 1.1 GB at 256, 1.6 GB at 512; RED-Net 1.6 GB and 3.5 GB), see benchmarks/results/speed_cpu.md.
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
#: The most ``train --epochs``/``--steps`` and :func:`deconvlab.train.train` take: Keras shuffles a list of every
#: batch index each epoch (3e9 steps held 19 GB before the kernel killed the run); a total past int64 failed in TF.
TRAIN_MAXIMA = {"epochs": 100_000, "steps": 1_000_000}


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes and budgets of one run profile."""

    name: str
    patch_size: int  # training patch side, pixels
    batch_size: int
    epochs: int
    steps_per_epoch: int
    train_images: int | None  # None: the whole training set
    test_images: int | None  # None: the whole test set
    width: int  # feature channels of the book's models
    depth: int  # conv layers in the encoder (the decoder mirrors it)
    mixed_precision: bool
    learning_rate: float
    description: str
    for_cpu: bool = False  # sized for a CPU: chapters evaluate fewer images and smaller crops

    @property
    def train_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


_QUICK = Profile(
    name="quick", patch_size=40, batch_size=32, epochs=4, steps_per_epoch=50,
    train_images=64, test_images=6, width=32, depth=5, mixed_precision=False,
    learning_rate=2e-3, description="CPU / CI: up to about a minute per training run on 2 cores",
    for_cpu=True,
)

PROFILES: dict[str, Profile] = {
    "quick": _QUICK,
    "smoke": dataclasses.replace(
        _QUICK, name="smoke", batch_size=8, epochs=2, steps_per_epoch=20, train_images=8,
        description="CI's offline pass: quick's networks, a few training steps",
    ),
    "workshop": Profile(
        name="workshop", patch_size=48, batch_size=64, epochs=10, steps_per_epoch=300,
        train_images=None, test_images=None, width=64, depth=10, mixed_precision=True,
        learning_rate=1e-3, description="a Colab GPU: about 3 minutes per training run on a T4 (estimated)",
    ),
    "paper": Profile(
        name="paper", patch_size=50, batch_size=128, epochs=30, steps_per_epoch=1000,
        train_images=None, test_images=None, width=64, depth=15, mixed_precision=True,
        learning_rate=1e-3, description="one H200: at most 10 minutes per model (shipped weights)",
    ),
}


def gpu_available() -> bool:
    """True when the active Keras backend sees a GPU (checked without allocating one)."""
    backend = keras_backend()
    try:
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # a backend that fails to import has no GPU for us
        return False


def keras_backend() -> str:
    """Name of the Keras backend in use (or the one Keras will pick on import)."""
    import keras

    return keras.backend.backend()


def get_profile(name: str | None = None) -> Profile:
    """The profile named, else ``$DECONVLAB_PROFILE``, else ``workshop`` on a GPU and ``quick`` on CPU."""
    name = name or os.environ.get("DECONVLAB_PROFILE") or ("workshop" if gpu_available() else "quick")
    try:
        return PROFILES[name.strip().lower()]
    except (AttributeError, KeyError):  # AttributeError: not a string, e.g. get_profile(3)
        raise ArgumentError(
            f"unknown profile {name!r}: set DECONVLAB_PROFILE to one of {', '.join(PROFILES)}"
        ) from None


def device_name() -> str:
    """A short human name of the device Keras computes on, e.g. 'NVIDIA H200 x1' or 'CPU (2 cores, x86_64)'."""
    backend = keras_backend()
    try:
        if backend == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform == "gpu":
                return f"{dev.device_kind} x{len(jax.devices())}"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
        else:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
                return f"{name} x{len(gpus)}"
    except Exception:
        pass
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def runtime_info(profile: str | Profile | None = None) -> dict[str, str]:
    """Backend, device, profile and library versions, as a dict (what ``describe_runtime`` prints)."""
    import keras
    import skimage

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    info = {
        "profile": prof.name,
        "backend": keras_backend(),
        "device": device_name(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,
    }
    backend = info["backend"]
    if backend in ("tensorflow", "jax", "torch"):
        info[backend] = __import__(backend).__version__
    from . import __version__

    info["deconvlab"] = __version__
    return info


def describe_runtime(profile: str | Profile | None = None) -> dict[str, str]:
    """Print backend, device, profile and versions on one line each; return them as a dict."""
    info = runtime_info(profile)
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return info


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and the Keras backend so a run repeats (up to GPU non-determinism).

    ``keras.utils.set_random_seed`` seeds all three (Python's ``random``, NumPy's global generator, the backend).
    """
    import keras

    keras.utils.set_random_seed(integer("seed", seed, 0, SEED_MAX))  # Keras takes no NumPy integer


def full_float32() -> str:
    """Compute float32 matrix products and convolutions at full precision from now on; return what was switched.

    NVIDIA GPUs since Ampere may run float32 convolutions as TF32 (a 10-bit mantissa, relative error ~1e-3): JAX
    and PyTorch do so by default, TensorFlow too on those GPUs. Checks that compare two computations to 1e-5 need
    real float32, so the chapters with such checks call this first. On a CPU nothing changes. Taught in chapter 2.
    """
    backend = keras_backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
        return "jax_default_matmul_precision=highest"
    if backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return "torch allow_tf32=False (matmul, cuDNN)"
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
        return "TensorFlow tensor_float_32_execution=False"
    return "nothing to switch"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras(cpu_only: bool = False) -> Any:
    """Import Keras (and its backend) with TensorFlow's C++ start-up logging kept off the terminal."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    if cpu_only:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    with quiet_stderr():
        try:
            import keras
        except (ImportError, ValueError) as exc:  # Keras raises ValueError for an unknown backend name
            # a set-up problem, not a bug: the reader picked a backend that is not installed (or no Keras at all)
            backend = os.environ.get("KERAS_BACKEND") or "the configured one (default tensorflow)"
            reason = " ".join(str(exc).split())[:200]
            raise ArgumentError(f"Keras could not start with the backend {backend} ({reason}): install it "
                                "(tensorflow, jax or torch) or set KERAS_BACKEND to one that is installed") from None

        # The first tensor initialises the device (TensorFlow logs its CUDA probing here).
        keras.ops.convert_to_numpy(keras.ops.zeros((1,)))
    return keras
