"""Tests for deconvlab.models and deconvlab.layers: shapes at odd sizes, parameter counts, save/load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from deconvlab import layers, models
from deconvlab.errors import ArgumentError

# Runs on every Keras backend: `make unit-jax` (part of `make test`) repeats these tests on JAX.
pytestmark = pytest.mark.backends

ODD_SIZES = [(1, 1), (7, 9), (41, 41), (33, 50)]

# tiny versions of every model (key: (builder, kwargs)), so each builds and runs in well under a second
SMALL = {
    "red_net": ("red_net", dict(depth=3, width=4)),
    "red_net_strided": ("red_net", dict(depth=3, width=4, down="strided")),
    "red_net_gate_subpixel": ("red_net", dict(depth=3, width=4, down="strided", fusion="gate", up="subpixel")),
    "red_net_concat_resize": ("red_net", dict(depth=3, width=4, down="strided", fusion="concat", up="resize")),
    "plain_cnn": ("plain_cnn", dict(depth=3, width=4, residual=True)),
    "dncnn": ("dncnn", dict(depth=3, width=4)),
    "fsrcnn": ("fsrcnn", dict(scale=3, d=6, s=3, m=1)),
    "red_net_sr_pre": ("red_net_sr", dict(scale=2, upsample="pre", depth=2, width=4)),
    "red_net_sr_post": ("red_net_sr", dict(scale=2, upsample="post", depth=2, width=4, down="strided")),
    "red_net_sr_post_bilinear": ("red_net_sr", dict(scale=3, upsample="post", depth=2, width=4, up_init="bilinear")),
    "red_net_sr_post_icnr": ("red_net_sr", dict(scale=2, upsample="post", depth=2, width=4, up="subpixel",
                                                up_init="icnr")),
    "unet": ("unet", dict(widths=(4, 8, 16), depths=(1, 1, 2))),
    "unet_icnr_concat": ("unet", dict(widths=(4, 8), depths=(1, 1), up_kernel=2, up_init="icnr",
                                      fusion="concat")),
}
SCALE = {"fsrcnn": 3, "red_net_sr_post": 2, "red_net_sr_post_bilinear": 3, "red_net_sr_post_icnr": 2}


def _build(key: str, channels: int = 1) -> keras.Model:
    builder, kwargs = SMALL[key]
    return models.build_model(builder, channels=channels, **kwargs)


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("key", list(SMALL))
def test_every_model_keeps_odd_sizes(key):
    model = _build(key)
    s = SCALE.get(key, 1)
    for h, w in ODD_SIZES:
        y = model(_rand((2, h, w, 1)))
        assert tuple(y.shape) == (2, h * s, w * s, 1), (key, h, w)


@pytest.mark.parametrize(
    "fusion,down,up",
    [(f, "none", "transposed") for f in models.FUSIONS]
    + [(f, "strided", u) for f in models.FUSIONS for u in models.UPS],
)
def test_red_net_variants_at_41x41(fusion, down, up):
    model = models.red_net(depth=4, width=4, fusion=fusion, down=down, up=up)
    x = _rand((1, 41, 41, 1))
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (1, 41, 41, 1)
    assert np.all(np.isfinite(y))
    names = [layer.name for layer in model.layers]
    # depth 4 with skip_every 2 fuses only level 2 (level 0 is the global residual)
    assert ("fuse2" in names) and ("fuse1" not in names) and ("fuse3" not in names)
    assert ("gate2" in names) == (fusion == "gate")
    assert ("pad" in names) == (down == "strided")


def test_red_net_strided_runs_middle_at_half_resolution():
    model = models.red_net(depth=3, width=4, down="strided")
    probe = keras.Model(model.input, model.get_layer("conv3").output)
    assert tuple(probe(_rand((1, 41, 41, 1))).shape) == (1, 21, 21, 4)


def test_red_net_global_residual_is_identity_when_decoder_is_zero():
    model = models.red_net(depth=2, width=4)
    last = model.get_layer("deconv2")
    last.set_weights([np.zeros_like(v) for v in last.get_weights()])
    x = _rand((1, 7, 9, 1))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), x, atol=1e-7)
    no_res = models.red_net(depth=2, width=4, global_residual=False)
    assert "residual" not in [layer.name for layer in no_res.layers]


def test_skip_every_zero_builds_no_fusion():
    model = models.red_net(depth=4, width=4, skip_every=0)
    assert not [layer.name for layer in model.layers if layer.name.startswith("fuse")]
    every = models.red_net(depth=4, width=4, skip_every=1)
    assert {"fuse1", "fuse2", "fuse3"} <= {layer.name for layer in every.layers}


def test_rgb_models():
    for key in ("red_net_strided", "dncnn", "fsrcnn"):
        y = _build(key, channels=3)(_rand((1, 7, 9, 3)))
        s = SCALE.get(key, 1)
        assert tuple(y.shape) == (1, 7 * s, 9 * s, 3)


def test_dncnn_parameter_count_matches_authors_code():
    # cszn/DnCNN Keras code: bias only in the first conv, BN in the 15 middle layers
    model = models.dncnn()
    conv, middle, bn, last = 9 * 64 + 64, 9 * 64 * 64, 2 * 64, 9 * 64
    assert models.count_params(model) == conv + 15 * (middle + bn) + last == 556_096
    assert models.count_params(model, trainable_only=False) == 556_096 + 15 * 2 * 64


def test_fsrcnn_weight_count_matches_paper():
    model = models.fsrcnn(scale=3)
    kernels = sum(int(np.prod(v.shape)) for v in model.trainable_variables if v.name == "kernel")
    assert kernels == 12_464  # Dong et al. 2016, FSRCNN(56, 12, 4)
    assert model.get_layer("deconv").strides == (3, 3)


def test_red_net_default_matches_plain_cnn_of_twice_the_depth():
    red = models.red_net()
    assert models.count_params(red) == 640 + 28 * (9 * 64 * 64 + 64) + 577 == 1_035_201
    assert models.count_params(models.plain_cnn(depth=30)) == models.count_params(red)


@pytest.mark.slow  # 13 s on JAX (a model built per width tried), backend-neutral: left out of the JAX subset
def test_width_for_params_finds_the_matching_width():
    target = models.count_params(models.plain_cnn(depth=4, width=12))
    assert models.width_for_params("plain_cnn", target, depth=4, max_width=64) == 12
    assert models.width_for_params(models.plain_cnn, target + 1, depth=4, max_width=64) == 12


@pytest.mark.parametrize("key", list(SMALL))
def test_save_load_round_trip_safe_mode(key, tmp_path):
    model = _build(key)
    x = _rand((1, 9, 11, 1), seed=1)
    if key == "dncnn":  # move BN statistics away from their initial values so they must be saved
        bn = model.get_layer("bn2")
        bn.set_weights([w + 0.5 for w in bn.get_weights()])
    before = keras.ops.convert_to_numpy(model(x))
    path = tmp_path / f"{key}.keras"
    keras.saving.save_model(model, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), before)


def test_model_spec_and_build_model_round_trip():
    model = models.build_model("red_net", depth=2, width=4, fusion="gate")
    spec = models.model_spec(model)
    assert spec["builder"] == "red_net"
    assert spec["kwargs"]["fusion"] == "gate" and spec["kwargs"]["skip_every"] == 2
    json.dumps(spec)  # weights cards store it as JSON
    again = models.build_model(spec["builder"], **spec["kwargs"])
    assert models.count_params(again) == models.count_params(model)
    sr = models.red_net_sr(2, upsample="post", depth=2, width=4)
    assert models.model_spec(sr)["builder"] == "red_net_sr"
    sr_spec = models.model_spec(sr)["kwargs"]
    assert sr_spec["depth"] == 2 and sr_spec["fusion"] == "add" and sr_spec["name"] == "red_net_sr"
    assert models.count_params(models.build_model("red_net_sr", **sr_spec)) == models.count_params(sr)


def test_mixed_precision_models_return_float32():
    policy = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        built = [
            models.red_net(depth=2, width=4, down="strided", global_residual=False),
            models.dncnn(depth=3, width=4),
            models.fsrcnn(2, d=4, s=2, m=1),
        ]
        assert built[0].get_layer("conv1").compute_dtype == "float16"
        for model in built:
            assert keras.backend.standardize_dtype(model(_rand((1, 7, 9, 1))).dtype) == "float32", model.name
    finally:
        keras.mixed_precision.set_global_policy(policy)


def test_bad_arguments_raise_argument_error():
    with pytest.raises(ArgumentError, match="fusion"):
        models.red_net(fusion="mul")
    with pytest.raises(ArgumentError, match="depth"):
        models.red_net(depth=0)
    with pytest.raises(ArgumentError, match="up"):
        models.red_net(up="pixelshuffle")
    with pytest.raises(ArgumentError, match="unknown model"):
        models.build_model("vgg")
    with pytest.raises(ArgumentError, match="does not take"):
        models.build_model("dncnn", fusion="add")
    with pytest.raises(ArgumentError, match="scale"):
        models.build_model("fsrcnn")
    with pytest.raises(ArgumentError, match="scale"):
        models.red_net_sr(upsample="post")
    with pytest.raises(ArgumentError, match="unknown arguments"):
        models.red_net_sr(2, widht=4)
    with pytest.raises(ValueError):  # ArgumentError is also a ValueError
        models.fsrcnn(scale=0)


def test_pad_to_multiple_matches_numpy_reflect():
    for h, w in [(1, 1), (2, 3), (5, 9), (8, 8)]:
        x = _rand((2, h, w, 3))
        y = keras.ops.convert_to_numpy(layers.PadToMultiple(4)(x))
        ph, pw = -h % 4, -w % 4
        assert y.shape == (2, h + ph, w + pw, 3)
        try:
            ref = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        except ValueError:  # numpy cannot reflect a 1-pixel axis; ours repeats it
            ref = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        np.testing.assert_array_equal(y, ref)
    with pytest.raises(ArgumentError, match="mode='reflect'"):
        layers.PadToMultiple(4, "edge")


def test_pad_wider_than_image_reflects_periodically():
    x = np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1)
    y = keras.ops.convert_to_numpy(layers.PadToMultiple(8, "reflect")(x))
    assert y[0, :, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]


def test_crop_undoes_pad_and_scales():
    x = _rand((1, 5, 7, 2))
    padded = layers.PadToMultiple(4)(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layers.CropToReference()([padded, x])), x)
    big = _rand((1, 24, 24, 2))
    assert tuple(layers.CropToReference(3)([big, x]).shape) == (1, 15, 21, 2)


@pytest.mark.parametrize("value", [2.5, True, "2"])
def test_pad_and_crop_refuse_a_multiple_or_scale_that_is_not_a_positive_integer(value):
    # int() took 2.5 as 2 and True as 1 without a word, and "x" raised int()'s ValueError
    with pytest.raises(ArgumentError, match=f"multiple={value!r}: pass an integer >= 1"):
        layers.PadToMultiple(value)
    with pytest.raises(ArgumentError, match=f"scale={value!r}: pass an integer >= 1"):
        layers.CropToReference(value)


@pytest.mark.parametrize("h, w", [(None, None), (7, 9)])
def test_symbolic_shapes_of_the_custom_layers(h, w):
    # none of them defines compute_output_shape: Keras traces call on symbolic tensors, which must give these
    def times(n, f):
        return None if n is None else n * f

    x = keras.Input((h, w, 8))
    padded = layers.PadToMultiple(4)(x)
    assert tuple(padded.shape) == (None, None if h is None else 8, None if w is None else 12, 8)
    assert tuple(layers.CropToReference()([padded, x]).shape) == (None, h, w, 8)
    assert tuple(layers.DepthToSpace(2)(x).shape) == (None, times(h, 2), times(w, 2), 2)
    for up in (layers.BilinearUpsample(3), layers.BicubicUpsample(3)):
        assert tuple(up(x).shape) == (None, times(h, 3), times(w, 3), 8)
    assert tuple(layers.Blend()([x, x, x]).shape) == (None, h, w, 8)
    sr = models.red_net_sr(2, upsample="post", depth=2, width=4, up="subpixel", skip="bicubic")
    assert tuple(sr(keras.Input((h, w, 1))).shape) == (None, times(h, 2), times(w, 2), 1)
    assert tuple(models.unet(widths=(4, 8, 16), depths=(1, 1, 1))(keras.Input((h, w, 1))).shape) == (None, h, w, 1)


def test_depth_to_space_is_the_pixel_shuffle():
    x = _rand((2, 3, 5, 12))
    ours = keras.ops.convert_to_numpy(layers.DepthToSpace(2)(x))
    # TF's order: output pixel (2h + i, 2w + j), channel c reads input channel (2i + j) * 3 + c
    shuffle = x.reshape(2, 3, 5, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 10, 3)
    np.testing.assert_array_equal(ours, shuffle)
    # pixel (2, 5) is i = 0, j = 1 of block (1, 2): channel 1 reads (0 * 2 + 1) * 3 + 1 = 4 (i, j swapped: 7; CRD: 5)
    assert ours[0, 2, 5, 1] == x[0, 1, 2, 4]
    tf = pytest.importorskip("tensorflow")
    np.testing.assert_array_equal(ours, tf.nn.depth_to_space(x, 2).numpy())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layers.DepthToSpace(1)(x)), x)
    with pytest.raises(ArgumentError, match="divisible"):
        layers.DepthToSpace(2).build((None, None, None, 6))


def test_bilinear_upsample_matches_image_resize():
    x = _rand((1, 5, 4, 2))
    ours = keras.ops.convert_to_numpy(layers.BilinearUpsample(3)(x))
    ref = keras.ops.image.resize(x, (15, 12), interpolation="bilinear", antialias=False)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(ref), atol=1e-6)


def test_blend_is_a_convex_combination():
    g = np.full((1, 2, 2, 1), 0.25, np.float32)
    a, b = np.ones_like(g), np.full_like(g, 5.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layers.Blend()([g, a, b])), 4.0)


JAX_SCRIPT = textwrap.dedent(
    """
    import json, numpy as np, keras
    from deconvlab import grads, models
    model = models.red_net(depth=3, width=4, down="strided", fusion="gate", up="subpixel")
    x = np.random.default_rng(0).random((1, 41, 41, 1), dtype=np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    norms = grads.layer_gradient_norms(model, x, np.zeros_like(x))
    conv = keras.layers.Conv2D(2, 3, padding="same", use_bias=False)
    v = np.random.default_rng(1).random((1, 6, 6, 2), dtype=np.float32)
    back = grads.vjp(conv, x[:, :6, :6], v)
    ref = keras.layers.Conv2DTranspose(1, 3, padding="same", use_bias=False)
    ref.build((None, None, None, 2))
    ref.set_weights(conv.get_weights())
    err = float(np.abs(back - keras.ops.convert_to_numpy(ref(v))).max())
    print(json.dumps({"backend": keras.backend.backend(), "shape": list(y.shape), "norms": norms, "err": err}))
    """
)


def test_red_net_on_jax_backend():
    if keras.backend.backend() == "jax":
        pytest.skip("this run is on JAX already: every test here covers it")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["shape"] == [1, 41, 41, 1]
    names = [name for name, _ in result["norms"]]
    # 3 convs, 2 transposed convs, 1 gate conv, the sub-pixel conv
    assert names == ["conv1", "conv2", "conv3", "deconv1", "gate2", "deconv2", "deconv3"]
    assert all(norm > 0 for _, norm in result["norms"])
    assert result["err"] < 1e-5


# ------------------------------------------------------------------------------------------------ unet


def test_unet_runs_each_scale_at_its_resolution_and_crops_back():
    model = models.unet(widths=(4, 8, 16), depths=(1, 1, 1))
    x = _rand((1, 41, 39, 1))
    sizes = {}
    for name in ("enc0_conv1", "enc1_conv1", "enc2_conv1", "up1", "up0", "tail"):
        probe = keras.Model(model.input, model.get_layer(name).output)
        sizes[name] = tuple(probe(x).shape[1:])
    # 41 x 39 is padded to 44 x 40 (a multiple of 4), halved twice, brought back up, cropped at the end
    assert sizes == {"enc0_conv1": (44, 40, 4), "enc1_conv1": (22, 20, 8), "enc2_conv1": (11, 10, 16),
                     "up1": (22, 20, 8), "up0": (44, 40, 4), "tail": (44, 40, 1)}
    assert tuple(model(x).shape) == (1, 41, 39, 1)
    assert model.get_layer("down0").strides == (2, 2) and model.get_layer("up0").strides == (2, 2)


def test_unet_starts_near_the_identity_and_bad_arguments():
    model = models.unet(widths=(4, 8), depths=(1, 1))
    x = _rand((1, 13, 17, 1))
    assert float(np.abs(keras.ops.convert_to_numpy(model(x)) - x).max()) < 0.1  # the tail starts near zero
    with pytest.raises(ArgumentError, match="two or more widths"):
        models.unet(widths=(8,), depths=(1,))
    with pytest.raises(ArgumentError, match="one depth per width"):
        models.unet(widths=(4, 8), depths=(1,))
    with pytest.raises(ArgumentError, match="list of integers"):
        models.unet(widths=8)
    with pytest.raises(ArgumentError, match="multiple of the stride"):
        models.unet(up_kernel=3, up_init="icnr")
    with pytest.raises(ArgumentError, match="up_kernel=4"):
        models.unet(up_kernel=2, up_init="bilinear")
    with pytest.raises(ArgumentError, match="up_init"):
        models.red_net(down="strided", up="resize", up_init="icnr")
    with pytest.raises(ArgumentError, match="bilinear"):
        models.red_net_sr(2, upsample="post", up="subpixel", up_init="bilinear")


def _interior_spread(model: keras.Model, layer: str, size: int = 96) -> float:
    """(max - min) / max|value| of a layer's output on a flat image, over the central half (away from borders)."""
    probe = keras.Model(model.input, model.get_layer(layer).output)
    y = keras.ops.convert_to_numpy(probe(np.full((1, size, size, 1), 0.5, np.float32)))
    h, w = y.shape[1:3]
    centre = y[0, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    spread = centre.max(axis=(0, 1)) - centre.min(axis=(0, 1))  # per channel
    return float(spread.max() / max(np.abs(centre).max(), 1e-12))


@pytest.mark.parametrize(
    ("builder", "kwargs", "layers_"),
    [
        ("unet", dict(widths=(4, 8, 16), depths=(1, 1, 1)), ("up1", "up0", "tail")),
        ("unet", dict(widths=(4, 8, 16), depths=(1, 1, 1), up_kernel=2, up_init="icnr"), ("up1", "up0")),
        ("red_net_sr", dict(scale=3, upsample="post", depth=2, width=4, up_init="bilinear"), ("upsample",)),
        ("red_net_sr", dict(scale=4, upsample="post", depth=2, width=4, up_init="icnr"), ("upsample",)),
        ("red_net_sr", dict(scale=2, upsample="post", depth=2, width=4, up="subpixel", up_init="icnr"),
         ("upsample_shuffle",)),
        ("red_net", dict(depth=2, width=4, down="strided", up_init="bilinear"), ("deconv2",)),
    ],
)
def test_checkerboard_free_upsamplers_map_flat_to_flat_at_init(builder, kwargs, layers_):
    keras.utils.set_random_seed(0)
    model = models.build_model(builder, **kwargs)
    for layer in layers_:
        assert _interior_spread(model, layer) < 1e-5, layer
    # the control: the same network with He-initialised upsamplers paints a checkerboard on a flat image
    keras.utils.set_random_seed(0)
    he = models.build_model(builder, **{**kwargs, "up_init": "he_normal"})
    assert _interior_spread(he, layers_[0]) > 1e-2


def test_bilinear_kernel_with_identity_mixing_is_bilinear_upsampling():
    assert layers.bilinear_filter(2) == [0.25, 0.75, 0.75, 0.25]
    assert all(abs(sum(layers.bilinear_filter(s)[p::s]) - 1.0) < 1e-12 for s in (2, 3, 4) for p in range(s))
    deconv = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", use_bias=False,
                                          kernel_initializer=layers.BilinearKernel(2))
    deconv.build((None, None, None, 2))
    kernel = keras.ops.convert_to_numpy(deconv.kernel)
    taps = np.outer(layers.bilinear_filter(2), layers.bilinear_filter(2))
    mix = kernel[0, 0] / taps[0, 0]
    np.testing.assert_allclose(kernel, taps[:, :, None, None] * mix[None, None], rtol=1e-5)
    deconv.set_weights([taps[:, :, None, None] * np.eye(2, dtype=np.float32)[None, None]])
    x = _rand((1, 9, 11, 2))
    ours = keras.ops.convert_to_numpy(deconv(x))[0, 1:-1, 1:-1]  # the outer ring sees the zero padding
    ref = keras.ops.convert_to_numpy(layers.BilinearUpsample(2)(x))[0, 1:-1, 1:-1]
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ------------------------------------------------------------------------------- MACs and receptive field


def test_macs_per_pixel_hand_counts():
    # shipped RED-Net: 1->64 and 64->1 3x3 layers, 28 3x3 64->64 layers
    assert models.macs_per_pixel(models.red_net()) == 2 * 9 * 64 + 28 * 9 * 64 * 64 == 1_033_344
    assert models.macs_per_pixel(models.dncnn()) == 9 * 64 + 15 * 9 * 64 * 64 + 9 * 64
    # strided RED-Net: 5 3x3 4-channel layers at half resolution (conv1 1->4, then 4->4), a 4x4/2 transposed 4->1
    strided = models.red_net(depth=3, width=4, down="strided")
    assert models.macs_per_pixel(strided) == (9 * 4 + 4 * 9 * 16) / 4 + 16 * 4 / 4 == 169
    # U-Net 4/8/16: each 3x3 layer costs 36 (1->4, 4->1) or 144 per pixel at every scale; 2x2 downs 32 each;
    # 4x4 transposed ups: 16*16*8/4 per half-resolution pixel = 128, 16*8*4/4 = 128
    unet = models.unet(widths=(4, 8, 16), depths=(1, 1, 1))
    assert models.macs_per_pixel(unet) == 36 + 32 + 144 + 32 + 144 + 128 + 144 + 128 + 144 + 36 == 968
    # post-upsampling SR: conv 1->4 and transposed conv 4->4 at low resolution, 4x4/2 transposed 4->1 at high
    sr = models.red_net_sr(2, upsample="post", depth=1, width=4, skip_every=0)
    assert models.macs_per_pixel(sr) == (36 + 144) / 4 + 16 * 4 / 4 == 61
    # gated fusion adds a 1x1 conv over [encoder, decoder]: 8 -> 4 channels
    gated = models.red_net(depth=2, width=4, fusion="gate", skip_every=1)
    assert models.macs_per_pixel(gated) == 36 + 144 + 144 + 8 * 4 + 36 == 392
    # FSRCNN(56, 12, 4) x3: 7928 multiply-adds per LR pixel, then a 9x9 56->1 deconvolution
    assert models.macs_per_pixel(models.fsrcnn(3)) == pytest.approx((25 * 56 + 2 * 56 * 12 + 4 * 9 * 144 + 81 * 56) / 9)


def test_macs_per_pixel_counts_depthwise_separable_dense_and_free_resizes():
    inputs = keras.Input((None, None, 4))
    x = keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same")(inputs)  # 72 / 4
    x = keras.layers.SeparableConv2D(8, 3, padding="same")(x)  # (9 * 8 + 8 * 8) / 4
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)  # free
    x = keras.layers.Dense(3)(x)  # 8 * 3
    model = keras.Model(inputs, x)
    assert models.macs_per_pixel(model) == 72 / 4 + 136 / 4 + 24 == 76
    assert models.total_stride(model) == 2


def test_receptive_field_radius_and_stride_by_hand():
    assert models.receptive_field_radius(models.red_net()) == 30  # 30 3x3 layers
    assert models.total_stride(models.red_net()) == 1
    assert models.receptive_field_radius(models.plain_cnn(depth=3, width=4)) == 3
    assert models.receptive_field_radius(models.dncnn(depth=5, width=4)) == 5
    # 3x3 at scale 0 (1), 2x2/2 (0), 3x3 at scale 1 (2), 2x2/2 (0), 3x3 at scale 2 (4), 4x4/2 up to scale 1 (4),
    # 3x3 (2), 4x4/2 up to scale 0 (2), 3x3 (1), tail (1)
    unet = models.unet(widths=(4, 8, 16), depths=(1, 1, 1))
    assert models.receptive_field_radius(unet) == 1 + 2 + 4 + 4 + 2 + 2 + 1 + 1 == 17
    assert models.total_stride(unet) == 4
    assert models.total_stride(models.red_net_sr(3, upsample="post", depth=2, width=4, down="strided")) == 2
    subclassed = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3, padding="valid")])
    with pytest.raises(ArgumentError, match="padding='valid'"):
        models.receptive_field_radius(subclassed)


def _measured_reach(model: keras.Model, size: int, stride: int, scale: int = 1) -> int:
    """Farthest input pixel (in input pixels) that moves an output pixel, with all weights positive.

    Positive kernels, zero biases and a zero image with one positive pixel keep every ReLU open and let no two
    paths cancel, so an output pixel changes exactly when the pixel is inside its receptive field.
    """
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.0, w.shape).astype(np.float32) / max(w.size // w.shape[-1], 1)
                       if w.ndim == 4 else np.zeros_like(w) for w in model.get_weights()])
    reach = 0
    centre = size // 2 // stride * stride
    for dy in range(stride):  # every phase of the stride grid
        x = np.zeros((1, size, size, 1), np.float32)
        x[0, centre + dy, centre + dy] = 1.0
        y = keras.ops.convert_to_numpy(model(x))[0, ..., 0]
        rows, cols = np.nonzero(y)
        reach = max(reach, int(np.abs(rows // scale - (centre + dy)).max()),
                    int(np.abs(cols // scale - (centre + dy)).max()))
    return reach


@pytest.mark.parametrize(
    ("builder", "kwargs", "scale"),
    [
        ("red_net", dict(depth=4, width=2, global_residual=False), 1),
        ("red_net", dict(depth=3, width=2, down="strided", global_residual=False), 1),
        ("unet", dict(widths=(2, 2, 2), depths=(1, 1, 1), global_residual=False), 1),
        ("unet", dict(widths=(2, 2), depths=(1, 1), fusion="concat", global_residual=False), 1),
        ("unet", dict(widths=(2, 2), depths=(2, 1), down_kernel=3, up_kernel=2, up_init="icnr",
                      global_residual=False), 1),
        ("red_net_sr", dict(scale=3, upsample="post", depth=2, width=2, global_residual=False), 3),
        ("red_net_sr", dict(scale=2, upsample="post", depth=2, width=2, down="strided", up="subpixel",
                            global_residual=False), 2),
    ],
)
def test_receptive_field_radius_matches_a_measurement(builder, kwargs, scale):
    model = models.build_model(builder, **kwargs)
    radius, stride = models.receptive_field_radius(model), models.total_stride(model)
    measured = _measured_reach(model, 64, stride, scale)
    # never too small (tiling would not be exact), and tight to within one pixel
    assert radius - 1 <= measured <= radius, (measured, radius)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (9, 14)])
def test_bicubic_upsample_layer_equals_the_protocols_matlab_bicubic(shape):
    from deconvlab.degrade import upscale
    from deconvlab.layers import BicubicUpsample

    x = np.random.default_rng(0).random(shape).astype(np.float32)
    for factor in (2, 3, 4):
        out = np.asarray(BicubicUpsample(factor)(x[None, ..., None]))[0, ..., 0]
        assert out.shape == (shape[0] * factor, shape[1] * factor)
        assert np.abs(out - upscale(x, factor)).max() < 2e-6


@pytest.mark.parametrize("scale,depth", [(2, 12), (3, 14), (4, 24)])
def test_post_upsampling_resblocks_start_as_bicubic_and_cost_a_fraction_of_pre(scale, depth):
    from deconvlab.degrade import upscale

    model = models.red_net_sr(scale=scale, upsample="post", body="resblocks", skip="bicubic", depth=depth,
                              up_init="bilinear")
    x = np.random.default_rng(1).random((11, 7)).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(x[None, ..., None]))[0, ..., 0]
    assert out.shape == (11 * scale, 7 * scale)
    # the small-gain upsampler adds a few hundredths at first (at gain 1 it would add an O(1) random image):
    # the untrained model is about the bicubic baseline
    assert np.abs(out - upscale(x, scale)).max() < 0.1
    # issue 16's cost goals against the shipped pre-upsampling card (1,033,344 MACs per output pixel)
    share = models.macs_per_pixel(model) / 1_033_344
    assert share <= (0.25 if scale == 2 else 0.125)


def test_sr_body_and_skip_are_checked():
    with pytest.raises(ArgumentError, match="body"):
        models.red_net_sr(scale=2, upsample="post", body="unet")
    with pytest.raises(ArgumentError, match="upsample='post'"):
        models.red_net_sr(upsample="pre", skip="bicubic")
    with pytest.raises(ArgumentError, match="drop down$"):
        models.red_net_sr(scale=2, upsample="post", body="resblocks", down="strided")
    # arguments a model would not use, which its card would still record
    with pytest.raises(ArgumentError, match="drop fusion, skip_every"):
        models.red_net_sr(scale=2, upsample="post", body="resblocks", fusion="concat", skip_every=3)
    with pytest.raises(ArgumentError, match="global_residual=False"):
        models.red_net_sr(scale=2, upsample="post", skip="bicubic", global_residual=False)
    for ignored in ({"up": "subpixel"}, {"up_init": "bilinear"}):
        with pytest.raises(ArgumentError, match="x2 upsampler of down='strided'"):
            models.red_net(depth=2, width=4, **ignored)
        with pytest.raises(ArgumentError, match="x2 upsampler of down='strided'"):
            models.red_net_sr(upsample="pre", depth=2, width=4, **ignored)
    assert models.red_net(depth=2, width=4, down="strided", up="subpixel", up_init="icnr").count_params() > 0
