"""Tests for deconvlab.infer: tiled prediction equals whole-image prediction, layouts, SR shapes."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from deconvlab import infer, models
from deconvlab.errors import ArgumentError, ImageValueError
from deconvlab.layers import CropToReference

# Runs on every Keras backend: `make unit-jax` (part of `make test`) repeats these tests on JAX.
pytestmark = pytest.mark.backends


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
        infer.tile_predict(small_net, _rand((40, 40)), tile=16, overlap=16)
    with pytest.raises(ArgumentError, match="batch_size"):
        infer.tile_predict(small_net, image, batch_size=0)
    with pytest.raises(ArgumentError, match="channel"):
        infer.predict_image(small_net, _rand((10, 10, 3)))
    with pytest.raises(ImageValueError, match="NaN"):
        infer.tile_predict(small_net, np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ImageValueError, match=r"N, H, W > 0"):
        infer.predict_image(small_net, np.zeros((0, 4, 4, 1), np.float32))


# ------------------------------------------------------------------------ exact tiling of multi-scale networks


def _sharpen_tail(model, layer: str, factor: float = 300.0):
    # an untrained residual branch is near zero; scale it up so the test compares more than the identity
    kernel, bias = model.get_layer(layer).get_weights()
    model.get_layer(layer).set_weights([kernel * factor, bias])
    return model


@pytest.mark.parametrize(
    ("builder", "kwargs", "tail"),
    [
        # the shipped RED-Net's depth (radius 30) at a test-sized width
        ("red_net", dict(depth=15, width=6), "deconv15"),
        # the recommended U-Net's depths (radius 31, stride 4) at a test-sized width
        ("unet", dict(widths=(4, 8, 16), depths=(2, 2, 3)), "tail"),
    ],
)
def test_default_tiling_equals_whole_image_on_an_odd_image(builder, kwargs, tail):
    keras.utils.set_random_seed(5)
    model = _sharpen_tail(models.build_model(builder, **kwargs), tail)
    radius, stride = infer.tiling_geometry(model)
    image = _rand((157, 131), seed=7)
    whole = infer.predict_image(model, image)
    assert np.abs(whole - image).max() > 0.05  # the network changes the image
    overlap = infer.default_overlap(model)
    assert overlap == -(-2 * radius // stride) * stride
    tiled = infer.tile_predict(model, image, tile=overlap + 42)  # 3 x 3 tiles; 42 is off the stride grid
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    # the old fixed default (overlap 32, so 8 pixels discarded) is not exact for a reach of 30 pixels
    old = infer.tile_predict(model, image, tile=overlap + 42, overlap=32)
    assert np.abs(old - whole).max() > 1e-4


def test_shipped_red_net_geometry_and_default_tile():
    model = models.red_net()
    assert infer.tiling_geometry(model) == (30, 1)
    assert infer.default_overlap(model) == 60
    assert infer.default_tile(model) == 256
    unet = models.unet(widths=(48, 96, 192), depths=(2, 2, 3))
    assert infer.tiling_geometry(unet) == (31, 4)
    assert infer.default_overlap(unet) == 64 and infer.default_tile(unet) == 256


def test_strided_sr_tiling_is_exact_on_an_odd_image():
    keras.utils.set_random_seed(6)
    model = models.red_net_sr(3, upsample="post", depth=3, width=4, down="strided", up_init="bilinear")
    lr = _rand((45, 38), seed=8)
    whole = infer.predict_image(model, lr)
    tiled = infer.tile_predict(model, lr, tile=infer.default_overlap(model) + 9)
    assert tiled.shape == whole.shape == (135, 114)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic", "lanczos3", "lanczos5"])
def test_upsampling2d_tiling_is_exact_for_every_interpolation(interpolation):
    # bicubic and lanczos read 4, 6 and 10 input pixels per axis: fewer in the traced reach leaves tile seams
    keras.utils.set_random_seed(7)
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.UpSampling2D(2, interpolation=interpolation)(x)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(x))
    lr = _rand((37, 29), seed=9)
    tiled = infer.tile_predict(model, lr, tile=infer.default_overlap(model) + 5)
    np.testing.assert_allclose(tiled, infer.predict_image(model, lr), atol=2e-5)


def _strided_without_pad(levels: int):
    # a reader's model: stride-2 'same' 3x3 convs, as many transposed 3x3 convs up, cropped, no PadToMultiple
    x = inputs = keras.Input((None, None, 1))
    for _ in range(levels):
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    for level in range(levels):
        x = keras.layers.Conv2DTranspose(4 if level < levels - 1 else 1, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, CropToReference()([x, inputs]))


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("shape", [(64, 72), (61, 66), (70, 59), (67, 63)])  # every side modulo 4
def test_default_tiling_is_exact_for_strided_same_convs_without_pad_to_multiple(levels, shape):
    # 'same' pads a stride-2 3x3 conv 0 pixels before an even input and 1 before an odd one: tiles must be
    # as long as the image modulo the stride, and the traced reach must allow for the wider pad (3, not 2,
    # for one level: with 2, tiles of odd images differ by 0.07)
    keras.utils.set_random_seed(8)
    model = _strided_without_pad(levels)
    assert infer.tiling_geometry(model) == ((3, 2) if levels == 1 else (9, 4))
    image = _rand(shape, seed=10)
    whole = infer.predict_image(model, image)
    tiled = infer.tile_predict(model, image, tile=infer.default_overlap(model) + 12)  # 3 x 3 tiles or more
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def test_unaligned_origins_break_a_strided_network():
    # the control for the stride grid: the same tiles shifted by one pixel are downsampled on another grid
    keras.utils.set_random_seed(7)
    model = _sharpen_tail(models.unet(widths=(4, 8), depths=(1, 1)), "tail")
    image = _rand((40, 40), seed=9)
    whole = infer.predict_image(model, image)
    shifted = infer.predict_image(model, image[1:, 1:])
    assert np.abs(shifted[4:-4, 4:-4] - whole[5:-4, 5:-4]).max() > 1e-3
    np.testing.assert_allclose(infer.tile_predict(model, image, tile=27), whole, atol=2e-5)


def test_an_image_in_one_tile_needs_no_overlap_on_a_strided_model():
    # tile=overlap+1 falls to the overlap on the stride grid; that was refused even for an image in one tile
    model = models.unet(widths=(4, 8), depths=(1, 1))
    overlap, image = infer.default_overlap(model), _rand((12, 12), seed=11)
    assert infer.tiling_geometry(model)[1] == 2 and overlap % 2 == 0 and image.shape[0] <= overlap
    whole = infer.tile_predict(model, image, tile=overlap + 1)
    np.testing.assert_allclose(whole, infer.predict_image(model, image), atol=2e-5)
    with pytest.raises(ArgumentError, match="stride grid of 2"):  # split into tiles, it still needs the room
        infer.tile_predict(model, _rand((40, 40)), tile=overlap + 1)


def test_window_margins_and_untraceable_models():
    ramp = infer._ramp(12, margin=5)
    assert ramp[:5].max() == 0.0 and ramp[-5:].min() == 1.0 and ramp.shape == (12,)
    assert infer._ramp(10, margin=5).tolist() == [0.0] * 5 + [1.0] * 5  # a hard seam in the middle
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0, atol=1e-6)
    inputs = keras.Input((None, None, 1))
    opaque = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    assert infer.tiling_geometry(opaque) is None
    with pytest.raises(ArgumentError, match="overlap="):
        infer.tile_predict(opaque, _rand((20, 20)))
    out = infer.tile_predict(opaque, _rand((20, 20)), tile=8, overlap=4)
    np.testing.assert_allclose(out, 2.0 * _rand((20, 20)), atol=1e-6)


def test_enhance_hands_a_colour_image_to_a_gray_model_per_rgb_or_per_ycbcr_channel():
    identity = keras.Sequential([keras.Input((None, None, 1)),
                                 keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones")])
    image = np.random.default_rng(0).random((9, 13, 3)).astype(np.float32) * 0.8 + 0.1
    for colour in infer.COLOURS:  # Y/Cb/Cr and back is the identity up to float rounding
        np.testing.assert_allclose(infer.enhance(identity, image, "denoise", colour=colour), image, atol=1e-5)
    zero = keras.Sequential([keras.Input((None, None, 1)),
                              keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="zeros")])
    # a model that outputs 0 maps Y/Cb/Cr = 0 to an RGB image unlike the RGB zeros: the two paths differ
    assert not np.allclose(infer.enhance(zero, image, "denoise", colour="ycbcr"), 0)
    with pytest.raises(ArgumentError, match="colour='lab'"):
        infer.enhance(identity, image, "denoise", colour="lab")


def test_enhance_refuses_ycbcr_for_a_colour_model_instead_of_running_it_on_rgb():
    # a 3-channel model took colour="ycbcr" and ran on R, G and B as with "rgb", saying nothing
    identity = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()])
    image = np.random.default_rng(0).random((9, 13, 3)).astype(np.float32)
    with pytest.raises(ArgumentError, match=r"colour='ycbcr' runs a gray model .* takes 3 channels"):
        infer.enhance(identity, image, "denoise", colour="ycbcr")
    np.testing.assert_allclose(infer.enhance(identity, image, "denoise", colour="rgb"), image, atol=1e-6)


def test_ycbcr_path_equals_the_colour_benchmarks_plane_by_plane_computation():
    """The committed colour_denoise.json was measured with Y, Cb, Cr one call each (commit 9db08fb); enhance
    batches the three planes: the same numbers."""
    from deconvlab import metrics

    keras.utils.set_random_seed(0)
    model = models.red_net(channels=1, depth=2, width=4)
    image = np.random.default_rng(1).random((20, 24, 3)).astype(np.float32)
    ycc = metrics.rgb_to_ycbcr(image)
    planes = [keras.ops.convert_to_numpy(model(ycc[None, ..., c, None]))[0, ..., 0] for c in range(3)]
    expected = np.clip(metrics.ycbcr_to_rgb(np.stack(planes, axis=-1)), 0.0, 1.0)
    np.testing.assert_allclose(infer.enhance(model, image, "denoise", colour="ycbcr"), expected, atol=1e-5)


def test_enhance_checks_the_task_and_the_scale():
    # a typo or a missing scale silently restored at the input's size: no upscaling, no error
    keras.utils.set_random_seed(0)
    pre = models.red_net_sr(2, depth=2, width=4)  # pre-upsampling: keeps the size
    lr = _rand((20, 24))
    assert infer.enhance(pre, lr, "sr", scale=2).shape == (40, 48)
    with pytest.raises(ArgumentError, match="unknown task 'super-resolution'"):
        infer.enhance(pre, lr, "super-resolution", scale=2)
    with pytest.raises(ArgumentError, match=r"task='sr' needs the upscaling factor.*got scale=1"):
        infer.enhance(pre, lr, "sr")
    with pytest.raises(ArgumentError, match="scale=2 applies to task='sr' only"):
        infer.enhance(pre, lr, "denoise", scale=2)
    with pytest.raises(ArgumentError, match="scale=2.0"):
        infer.enhance(pre, lr, "sr", scale=2.0)


def test_enhance_refuses_an_upscaling_or_channel_changing_model_for_restoration():
    # an SR model under task="denoise" wrote an upscaled image; a 2-channel output became its channel 0
    keras.utils.set_random_seed(0)
    post = models.red_net_sr(2, upsample="post", depth=2, width=4)
    two = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 1)])
    lr = _rand((20, 24))
    for tile in (None, 16):  # whole image and tiles
        with pytest.raises(ArgumentError, match=r"upscales by 2 \(\d+x\d+ to \d+x\d+\): it is for --task sr"):
            infer.enhance(post, lr, "denoise", tile=tile, overlap=4)
        with pytest.raises(ArgumentError, match="output has 2 channel\\(s\\) where its input has 1"):
            infer.enhance(two, lr, "deblur", tile=tile, overlap=4)
    assert infer.enhance(post, lr, "sr", scale=2, tile=16, overlap=4).shape == (40, 48)


def test_a_post_upsampling_model_is_tiled_on_its_low_resolution_input():
    from deconvlab import recipes

    keras.utils.set_random_seed(0)
    post = models.red_net_sr(4, upsample="post", depth=8, width=4)
    pre = models.red_net_sr(4, depth=2, width=4)
    assert infer.tiled_side(post, 24, "sr", 4) == 24 and infer.tiled_side(pre, 24, "sr", 4) == 96
    # enhance runs a 24-pixel image untiled under --tile 32; the benchmark took its 96-pixel output for the side
    # tiled, and refused a tile that the model's receptive field does not fit
    assert len(recipes.enhance_speed(post, "sr", [24], scale=4, tile=32, repeat=1)) == 1


def test_estimate_noise_sigma_reads_uint8_images_on_the_0_255_scale():
    from deconvlab import degrade

    ramp = np.tile(np.linspace(0.2, 0.8, 128, dtype=np.float32), (128, 1))
    noisy = degrade.add_gaussian_noise(ramp, 25, seed=1)
    as_float = infer.estimate_noise_sigma(noisy)
    assert as_float == pytest.approx(25, abs=1.5)
    # 8-bit rounding barely moves it (its noise, 0.29 on the 0-255 scale, adds in quadrature); uint8 was 6415
    as_uint8 = infer.estimate_noise_sigma(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8))
    assert as_uint8 == pytest.approx(as_float, abs=0.5)
    with pytest.raises(ImageValueError, match="NaN"):
        infer.estimate_noise_sigma(np.full((8, 8), np.nan, np.float32))


def test_estimate_noise_sigma_of_a_narrow_image_does_not_warn():
    """skimage warns "If this is a color image, please set channel_axis=-1" for any last axis of <= 4 pixels, and
    the CLI showed that to a reader who can do nothing about it, for a 3-pixel-wide gray strip or a 2x2 RGB image."""
    rng = np.random.default_rng(2)
    for image in (rng.random((40, 3), np.float32), rng.random((2, 2, 3), np.float32), rng.random((9, 1), np.float32)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isfinite(infer.estimate_noise_sigma(image))


def test_estimate_noise_sigma_of_flat_channels_is_finite_and_quiet():
    """skimage drops zero wavelet coefficients, so a flat channel gave NaN with two RuntimeWarnings."""
    from deconvlab import degrade

    red = np.zeros((40, 40, 3), np.float32)
    red[..., 0] = 1
    noisy = degrade.add_gaussian_noise(np.full((64, 64), 0.5, np.float32), 25, seed=3)
    no_blue = np.stack([noisy, noisy[::-1], np.zeros_like(noisy)], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert infer.estimate_noise_sigma(np.zeros((16, 16), np.float32)) == 0
        assert infer.estimate_noise_sigma(red) == pytest.approx(0, abs=1e-6)
        # the flat blue channel does not dilute the noise of the other two
        sigma = infer.estimate_noise_sigma(noisy)
        assert infer.estimate_noise_sigma(no_blue) == pytest.approx(sigma, rel=0.05)


def test_an_integer_batch_is_read_as_one_image_is(small_net):
    pixels = (np.random.default_rng(4).random((2, 12, 11, 1)) * 255).astype(np.uint8)
    as_float = infer.predict_image(small_net, pixels / np.float32(255))
    for batch in (pixels, pixels.astype(np.uint16) * 257):  # 8- and 16-bit pixels over their maximum
        np.testing.assert_allclose(infer.predict_image(small_net, batch), as_float, atol=1e-6)
        np.testing.assert_allclose(infer.tile_predict(small_net, batch, tile=16, overlap=12), as_float, atol=1e-4)
    np.testing.assert_array_equal(infer.predict_image(small_net, pixels[:1])[0], infer.predict_image(small_net, pixels[0]))
    with pytest.raises(ImageValueError, match=r"batch\[0\] has dtype int32"):
        infer.predict_image(small_net, pixels.astype(np.int32))


def test_a_model_of_fixed_input_size_has_its_scale_measured_at_that_size():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((24, 20, 1))
    model = keras.Model(inputs, keras.layers.UpSampling2D(3)(keras.layers.Conv2D(1, 3, padding="same")(inputs)))
    assert infer.model_scale(model) == 3
    image = _rand((24, 20), seed=6)
    assert infer.enhance(model, image, task="sr", scale=3).shape == (72, 60)


def test_a_model_of_fixed_input_size_is_refused_on_other_sizes_in_one_line():
    # Keras' shape ValueError reached the CLI as "unexpected ValueError ... please report it", status 70
    inputs = keras.Input((24, 20, 1))  # functional, as .keras files load (a Sequential one runs on any size)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    calls = {"20x24": lambda: infer.enhance(model, _rand((20, 24)), "denoise"),
             "16x24": lambda: infer.predict_image(model, _rand((16, 24)))}
    if keras.backend.backend() == "tensorflow":  # JAX's compiled predict_on_batch runs the convolution on any size
        calls["20x20"] = lambda: infer.enhance(model, _rand((24, 40)), "denoise", tile=20, overlap=4)  # tiles
    for size, call in calls.items():
        with pytest.raises(ArgumentError) as excinfo:
            call()
        assert str(excinfo.value) == (f"{model.name} takes 24x20 inputs only, not {size}: enhancing needs a "
                                      "model that takes any input size, e.g. built on "
                                      "keras.Input((None, None, 1))")
    assert infer.enhance(model, _rand((24, 20)), "denoise").shape == (24, 20)


def _gain(kernel: float, bias: float = 0.0) -> keras.Model:
    # a 1x1 gray "model" whose output is known by hand: kernel * x + bias
    return keras.Sequential([keras.Input((None, None, 1)),
                             keras.layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(kernel),
                                                 bias_initializer=keras.initializers.Constant(bias))])


def test_enhance_sr_of_a_colour_image_with_an_identity_model_is_bicubic_rgb_upscaling():
    """Y through the model, Cb/Cr bicubic: an identity model gives bicubic RGB (linear, weights sum to 1)."""
    from deconvlab import degrade

    image = np.random.default_rng(3).random((10, 12, 3)).astype(np.float32) * 0.8 + 0.1
    out = infer.enhance(_gain(1.0), image, "sr", scale=2)
    assert out.shape == (20, 24, 3)
    np.testing.assert_allclose(out, np.clip(degrade.upscale(image, 2), 0, 1), atol=1e-5)


def test_enhance_clips_the_model_output_to_the_unit_range():
    """3x - 1 reaches -1 and 2 on [0, 1]: enhance returns exactly np.clip(3x - 1, 0, 1)."""
    image = _rand((9, 13), seed=12)
    out = infer.enhance(_gain(3.0, -1.0), image, "denoise", tile=None)
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, np.clip(3 * image - 1, 0, 1), atol=1e-6)


def test_enhance_reads_a_one_channel_image_as_gray():
    """An (H, W, 1) image is gray: enhance returns (H, W), the model's output on its one plane."""
    image = _rand((9, 13, 1), seed=13)
    np.testing.assert_allclose(infer.enhance(_gain(0.5), image, "denoise"), 0.5 * image[..., 0], atol=1e-6)


def test_has_colour_compares_every_channel_with_the_first():
    """Gray only when R = G = B: an image with R = G but another B (or R = B, another G) has colour."""
    plane = _rand((6, 7), seed=14)
    assert not infer.has_colour(plane) and not infer.has_colour(np.stack([plane] * 3, axis=-1))
    other = 1 - plane
    assert infer.has_colour(np.stack([plane, plane, other], axis=-1))
    assert infer.has_colour(np.stack([plane, other, plane], axis=-1))


def test_a_colour_model_restores_gray_stored_as_rgb_to_the_bt601_luma_of_its_output():
    """R = G = B through a 3-channel model: the gray result is the BT.601 luma of the model's RGB output."""
    mix = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 1, use_bias=False)])
    mix.layers[-1].set_weights([np.diag([1.0, 0.5, 0.25]).astype(np.float32)[None, None]])  # x, x/2, x/4
    plane = _rand((8, 9), seed=15)
    out = infer.enhance(mix, np.stack([plane] * 3, axis=-1), "denoise", tile=None)
    luma = (0.299 * 1.0 + 0.587 * 0.5 + 0.114 * 0.25) * plane
    np.testing.assert_allclose(out, np.stack([luma] * 3, axis=-1), atol=1e-5)
