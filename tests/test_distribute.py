"""Data parallelism: TensorFlow's MirroredStrategy with one CPU replica, JAX DataParallel over 2 emulated devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from deconvlab.distribute import data_parallel


def test_tensorflow_mirrored_strategy_trains_with_one_cpu_replica():
    import keras

    strategy = data_parallel()
    assert strategy.engine == "tf.distribute.MirroredStrategy"
    assert strategy.num_replicas == 1  # no GPU here: the TensorFlow path is checked with one replica
    with strategy.scope():
        model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3, padding="same")])
        model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((8, 12, 12, 1), dtype=np.float32)
    history = model.fit(x, x, batch_size=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_jax_data_parallel_splits_batches_over_two_devices():
    # XLA can pretend the CPU is two devices: the same sharding code path as two GPUs.
    code = """
import json, numpy as np, keras
from deconvlab.distribute import data_parallel
s = data_parallel()
with s.scope():
    m = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3, padding="same"),
                          keras.layers.Conv2D(1, 3, padding="same")])
    m.compile(optimizer="adam", loss="mse")
x = np.random.default_rng(0).random((8, 10, 10, 1), dtype=np.float32)
h = m.fit(x, x, batch_size=4, epochs=1, verbose=0)
print("RESULT", json.dumps({"engine": s.engine, "n": s.num_replicas, "loss": h.history["loss"][-1]}))
"""
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stderr[-2000:]
    result = json.loads(line.split(" ", 1)[1])
    assert result == {**result, "engine": "keras.distribution.DataParallel", "n": 2}
    assert np.isfinite(result["loss"])
