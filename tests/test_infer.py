"""Tests for deconvlab.infer: tiled prediction equals whole-image prediction, layouts, SR shapes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from deconvlab import infer, models
from deconvlab.errors import ArgumentError, ImageValueError


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.fixture(scope="module")
def small_net():
    # three 3x3 convs: receptive-field radius 3 <= overlap // 4 below, so tiling is exact
    keras.utils.set_random_seed(0)
    return models.plain_cnn(depth=3, width=4, residual=True)


def test_tile_predict_equals_whole_image(small_net):
    image = _rand((50, 61))
    whole = infer.predict_image(small_net, image)
    tiled = infer.tile_predict(small_net, image, tile=24, overlap=12, batch_size=3)
    assert tiled.shape == whole.shape == (50, 61)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    assert np.abs(tiled - image).max() > 1e-3  # the net really changed the image


def test_tile_predict_nhwc_batch(small_net):
    batch = _rand((2, 30, 27, 1), seed=1)
    whole = infer.predict_image(small_net, batch)
    tiled = infer.tile_predict(small_net, batch, tile=16, overlap=12, batch_size=4)
    assert tiled.shape == batch.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_small_receptive_field_red_net_tiles_exactly():
    keras.utils.set_random_seed(1)
    model = models.red_net(depth=1, width=4)  # one conv + one transposed conv: radius 2
    image = _rand((33, 40), seed=2)
    np.testing.assert_allclose(
        infer.tile_predict(model, image, tile=20, overlap=8),
        infer.predict_image(model, image),
        atol=1e-4,
    )


def test_odd_sized_rgb_image():
    keras.utils.set_random_seed(2)
    model = models.plain_cnn(channels=3, depth=2, width=4)
    image = _rand((23, 37, 3), seed=3)
    whole = infer.predict_image(model, image)
    tiled = infer.tile_predict(model, image, tile=16, overlap=8, batch_size=2)
    assert tiled.shape == whole.shape == (23, 37, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_image_smaller_than_tile(small_net):
    image = _rand((5, 3), seed=4)
    out = infer.tile_predict(small_net, image, tile=256, overlap=32)
    np.testing.assert_allclose(out, infer.predict_image(small_net, image), atol=1e-6)
    one = infer.tile_predict(small_net, np.full((1, 1), 0.5, np.float32), tile=8, overlap=4)
    assert one.shape == (1, 1)


def test_sr_model_shapes_and_scale_probe():
    keras.utils.set_random_seed(3)
    model = models.fsrcnn(scale=3, d=6, s=3, m=1)
    assert infer.model_scale(model) == 3
    lr = _rand((17, 22), seed=5)
    sr = infer.tile_predict(model, lr, tile=8, overlap=4, batch_size=4)
    assert sr.shape == (51, 66)
    assert infer.predict_image(model, lr).shape == (51, 66)
    assert np.all(np.isfinite(sr))
    with pytest.raises(ArgumentError, match="scale"):
        infer.tile_predict(model, lr, tile=8, overlap=4, scale=2)


def test_sr_tiling_is_exact_for_small_receptive_field():
    keras.utils.set_random_seed(4)
    # conv 3x3 + transposed conv 3x3 + 6x6 stride-3 upsampler: at most 4 LR pixels, so overlap // 4 >= 4
    model = models.red_net_sr(3, upsample="post", depth=1, width=4, skip_every=0)
    lr = _rand((30, 41), seed=6)
    np.testing.assert_allclose(
        infer.tile_predict(model, lr, tile=28, overlap=20, scale=3), infer.predict_image(model, lr), atol=1e-4
    )
    # too small an overlap for that receptive field leaves visible (if blended) differences
    rough = infer.tile_predict(model, lr, tile=12, overlap=4, scale=3)
    assert np.abs(rough - infer.predict_image(model, lr)).max() > 1e-3


def test_blending_window_is_a_partition_of_unity():
    ramp = infer._ramp(12)
    assert ramp[:3].max() == 0.0 and ramp[-3:].min() == 1.0
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-6)
    assert np.all(np.diff(ramp) >= 0)


def test_argument_and_image_errors(small_net):
    image = _rand((10, 10))
    with pytest.raises(ArgumentError, match="overlap"):
        infer.tile_predict(small_net, image, tile=16, overlap=16)
    with pytest.raises(ArgumentError, match="batch_size"):
        infer.tile_predict(small_net, image, batch_size=0)
    with pytest.raises(ArgumentError, match="channel"):
        infer.predict_image(small_net, _rand((10, 10, 3)))
    with pytest.raises(ImageValueError, match="NaN"):
        infer.tile_predict(small_net, np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ImageValueError, match="empty"):
        infer.predict_image(small_net, np.zeros((0, 4, 4, 1), np.float32))
