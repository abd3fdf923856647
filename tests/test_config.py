"""full_float32: the chapters' exactness checks must not run in TF32 on GPUs; seeds and profiles."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from deconvlab import config
from deconvlab.errors import ArgumentError


def test_full_float32_switches_tensorflow_off_tf32():
    import tensorflow as tf

    try:
        assert "TensorFlow" in config.full_float32()
        assert tf.config.experimental.tensor_float_32_execution_enabled() is False
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(True)


def test_full_float32_sets_jax_matmul_precision_to_highest():
    code = ("import jax, deconvlab.config as c; print(c.full_float32()); "
            "print(jax.config.jax_default_matmul_precision)")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.split()[-1] == "highest"


def test_smoke_profile_is_quick_with_fewer_steps():
    # CI's offline pass relies on smoke taking quick's CPU branches in the chapters, only with less training.
    quick, smoke = config.PROFILES["quick"], config.PROFILES["smoke"]
    assert smoke.for_cpu and quick.for_cpu
    assert not config.PROFILES["workshop"].for_cpu and not config.PROFILES["paper"].for_cpu
    assert (smoke.width, smoke.depth, smoke.patch_size) == (quick.width, quick.depth, quick.patch_size)
    assert smoke.train_steps * smoke.batch_size < quick.train_steps * quick.batch_size / 10


def test_set_seed_and_get_profile_check_their_argument_in_one_line():
    # Keras refused np.int64 and -1 with its own ValueErrors; get_profile(3) raised AttributeError
    config.set_seed(np.int64(5))
    first = random.random()
    config.set_seed(5)
    assert random.random() == first
    for call, message in ((lambda: config.set_seed(-1), "seed=-1: pass an integer >= 0 and <= 4,294,967,295"),
                          (lambda: config.get_profile(3), "unknown profile 3: set DECONVLAB_PROFILE to one")):
        with pytest.raises(ArgumentError) as excinfo:
            call()
        assert str(excinfo.value).startswith(message) and "\n" not in str(excinfo.value)
