"""Tests for deconvlab.grads on the active backend: TensorFlow in `make unit`, then JAX (the `backends` subset)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from deconvlab import grads, models
from deconvlab.errors import ArgumentError

# Runs on every Keras backend: `make unit-jax` (part of `make test`) repeats these tests on JAX.
pytestmark = pytest.mark.backends


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _conv_and_transpose(in_ch: int, out_ch: int, strides: int):
    conv = keras.layers.Conv2D(out_ch, 3, strides=strides, padding="same", use_bias=False)
    conv.build((None, None, None, in_ch))
    conv.set_weights([np.random.default_rng(7).normal(size=(3, 3, in_ch, out_ch)).astype(np.float32)])
    # Conv2DTranspose(in_ch) stores its kernel as (kh, kw, in_ch, out_ch): the very same array
    tconv = keras.layers.Conv2DTranspose(in_ch, 3, strides=strides, padding="same", use_bias=False)
    tconv.build((None, None, None, out_ch))
    tconv.set_weights(conv.get_weights())
    return conv, tconv


@pytest.mark.parametrize("strides,size", [(1, (7, 9)), (2, (8, 10))])
def test_vjp_of_conv_is_transposed_conv(strides, size):
    conv, tconv = _conv_and_transpose(in_ch=2, out_ch=3, strides=strides)
    x = _rand((1, *size, 2), seed=1)
    cx = keras.ops.convert_to_numpy(conv(x))
    y = _rand(cx.shape, seed=2)
    ct_y = grads.vjp(conv, x, y)
    np.testing.assert_allclose(ct_y, keras.ops.convert_to_numpy(tconv(y)), atol=1e-5)
    # the adjoint identity <Cx, y> = <x, C^T y>
    lhs, rhs = float(np.sum(cx * y)), float(np.sum(x * ct_y))
    assert abs(lhs - rhs) <= 1e-5 * max(1.0, abs(lhs))


def test_vjp_of_linear_ops_code():
    x = _rand((3, 4))
    v = _rand((3, 4), seed=1)
    # fn(x) = 2x + x[::-1] is linear; its adjoint maps v to 2v + v[::-1]
    got = grads.vjp(lambda t: 2.0 * t + keras.ops.flip(t, axis=0), x, v)
    np.testing.assert_allclose(got, 2.0 * v + v[::-1], atol=1e-6)


def test_vjp_checks_cotangent_shape():
    conv, _ = _conv_and_transpose(1, 2, 1)
    with pytest.raises(ArgumentError, match="cotangent shape"):
        grads.vjp(conv, _rand((1, 5, 5, 1)), _rand((1, 5, 5, 1)))


def test_gradients_match_finite_differences():
    model = models.plain_cnn(depth=2, width=3)
    x, y = _rand((2, 6, 5, 1)), _rand((2, 6, 5, 1), seed=3)
    g = grads.gradients(model, x, y)
    assert set(g) == {v.path for v in model.trainable_variables}
    bias = model.get_layer("conv2").bias
    analytic = g[bias.path][0]
    eps = 1e-2
    losses = []
    for delta in (eps, -eps):
        bias.assign(bias.numpy() + delta)
        losses.append(float(np.mean((keras.ops.convert_to_numpy(model(x)) - y) ** 2)))
        bias.assign(bias.numpy() - delta)
    assert abs(analytic - (losses[0] - losses[1]) / (2 * eps)) < 1e-3


def test_gradients_of_output_bias_for_mse_is_twice_mean_residual():
    model = models.plain_cnn(depth=1, width=1)  # one linear conv
    x, y = _rand((1, 5, 5, 1)), _rand((1, 5, 5, 1), seed=4)
    pred = keras.ops.convert_to_numpy(model(x))
    g = grads.gradients(model, x, y)
    np.testing.assert_allclose(g[model.get_layer("conv1").bias.path], [2 * np.mean(pred - y)], rtol=1e-5)


def test_layer_gradient_norms_one_per_conv_layer_in_order():
    model = models.red_net(depth=4, width=4, fusion="concat")
    x = _rand((1, 9, 9, 1))
    norms = grads.layer_gradient_norms(model, x, np.zeros_like(x))
    conv_layers = [la.name for la in model.layers if isinstance(la, keras.layers.Conv2D | keras.layers.Conv2DTranspose)]
    assert len(norms) == len(conv_layers) == 9  # 4 convs, 4 transposed convs, 1 fusion 1x1 conv
    assert [name for name, _ in norms] == conv_layers
    assert all(np.isfinite(n) and n > 0 for _, n in norms)


def test_gradients_leave_batchnorm_statistics_alone():
    model = models.dncnn(depth=3, width=4)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    x = _rand((2, 6, 6, 1))
    grads.gradients(model, x, x * 0.5)
    for old, v in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(v.numpy(), old)


def test_bad_input():
    model = models.plain_cnn(depth=1, width=1)
    x = _rand((1, 4, 4, 1))
    with pytest.raises(ArgumentError, match="finite"):
        grads.gradients(model, np.full_like(x, np.nan), x)
