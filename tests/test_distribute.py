"""Data parallelism: TensorFlow's MirroredStrategy with one CPU replica, JAX DataParallel over 2 emulated devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deconvlab.distribute import data_parallel


def test_tensorflow_mirrored_strategy_trains_with_one_cpu_replica():
    import keras

    if keras.backend.backend() != "tensorflow":  # data_parallel() picks the engine of the active backend
        pytest.skip("tf.distribute.MirroredStrategy is the TensorFlow backend's engine")
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


def test_jax_data_parallel_fused_training_matches_one_device():
    # The fast path of benchmarks/time_to_quality.py on 2 emulated devices: the on-device sampler draws the same
    # bits on any device count, the step is split over the replicas (an all-reduce appears in the compiled
    # step), and training ends at the weights one device reaches, up to the order of the gradient sums.
    code = """
import json, sys, numpy as np, jax, keras
sys.path.insert(0, "benchmarks")
from time_to_quality import FusedTrainer
from deconvlab.distribute import data_parallel
from deconvlab.models import red_net
from deconvlab.sampler import PatchSampler

rng = np.random.default_rng(0)
images = [rng.random((40, 48), dtype=np.float32) for _ in range(6)]

def train(devices):
    s = data_parallel(devices)
    keras.utils.set_random_seed(1)
    with s.scope():
        model = red_net(depth=2, width=8)
    sampler = PatchSampler(images, 16, 8, 25.0, seed=3, device=s.replicated())
    sharded = jax.jit(sampler.sample, out_shardings=(s.batch_sharding(),) * 2)(*sampler.state(), 5)
    t = FusedTrainer(model, 3, sampler=sampler, warmup=2, strategy=s)
    state = t.init()
    start = [np.asarray(w) for w in state[0]]  # host copies: the step donates the state's buffers
    hlo = t._run.lower(state, t._data, np.int32(0), np.float32(6)).compile().as_text()
    for first in (0, 3):
        state, loss = t.run(state, first, 6)
    moved = max(float(np.max(np.abs(np.asarray(w) - w0))) for w, w0 in zip(state[0], start))
    return s, sharded, state, float(loss), "all-reduce" in hlo, moved

one, batch1, state1, loss1, reduce1, moved = train(["cpu:0"])
two, batch2, state2, loss2, reduce2, _ = train(["cpu:0", "cpu:1"])
diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(state1[0], state2[0]))
print("RESULT", json.dumps({
    "replicas": [one.num_replicas, two.num_replicas],
    "shards": len(batch2[0].addressable_shards),
    "shard_rows": [s.data.shape[0] for s in batch2[0].addressable_shards],
    "same_bits": all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(batch1, batch2)),
    "all_reduce": [reduce1, reduce2], "loss": [loss1, loss2], "max_weight_diff": diff,
    "moved": moved}))
"""
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=root)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stderr[-2000:]
    result = json.loads(line.split(" ", 1)[1])
    assert result["replicas"] == [1, 2]
    assert result["shards"] == 2 and result["shard_rows"] == [4, 4]  # global batch 8 split 4 + 4
    assert result["same_bits"]
    assert result["all_reduce"] == [False, True]
    assert np.isfinite(result["loss"]).all() and abs(result["loss"][0] - result["loss"][1]) < 1e-5
    assert result["moved"] > 1e-4 and result["max_weight_diff"] < 1e-5  # training moved the weights, alike


def test_torch_data_parallel_is_one_replica_and_refuses_several_devices(monkeypatch):
    # Keras 3 has no data-parallel engine for PyTorch (torchrun + DDP sit outside Keras): chapter 5's cells get one
    # replica on the device Keras computes on, and gpu_count() asks torch (keras.distribution cannot there).
    import keras
    import pytest

    from deconvlab import distribute
    from deconvlab.errors import ArgumentError

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    for gpus, device in ((0, "cpu"), (1, "cuda:0"), (2, "cuda:0")):
        monkeypatch.setattr(distribute, "_torch_gpu_count", lambda gpus=gpus: gpus)
        s = data_parallel()
        assert (s.engine, s.num_replicas, s.devices) == ("none (PyTorch: one device)", 1, [device])
        with s.scope():
            pass
        assert distribute.gpu_count() == gpus
    with pytest.raises(ArgumentError, match="torchrun"):
        data_parallel(["cuda:0", "cuda:1"])
