"""Tests for deconvlab.evaluate: the denoise / SR / deblur protocols, noise seeds, model layouts, EvalResult I/O."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deconvlab import degrade, metrics, models
from deconvlab.data import load_dataset
from deconvlab.errors import ArgumentError, ImageValueError, OutputError
from deconvlab.evaluate import COLUMNS, evaluate, protocol_psf

# Runs on every Keras backend: `make unit-jax` (part of `make test`) repeats these tests on JAX.
pytestmark = pytest.mark.backends

SHARED = Path("/work/shared/datasets")


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.fixture(scope="module")
def images():
    """Two gray images and a colour one of odd sizes, smooth enough that denoising and SR are meaningful."""
    gray = load_dataset("fallback-test", mode="gray", limit=2).images
    colour = load_dataset("fallback-test", mode="rgb", limit=3).images[2]
    return ["a", "b", "c"], [gray[0][:45, :50], gray[1][100:151, 60:121], colour[:47, :38]]


def identity(image):
    return image


def _identity_model(channels: int) -> keras.Model:
    inputs = keras.Input(shape=(None, None, channels))
    return keras.Model(inputs, keras.layers.Identity()(inputs), name=f"identity{channels}")


# ------------------------------------------------------------------------------------------------ denoise


def test_denoise_identity_reproduces_the_noisy_input_with_seed_plus_index(images):
    names, imgs = images
    result = evaluate(identity, (names, imgs), "denoise", sigma=25, seed=7, clip=False)
    assert [r["name"] for r in result.rows] == names
    for i, (row, clean) in enumerate(zip(result.rows, imgs, strict=True)):
        noise = np.random.default_rng(7 + i).standard_normal(clean.shape, dtype=np.float32)
        noisy = clean + noise * np.float32(25 / 255)  # the documented protocol, written out
        assert row["input_psnr"] == pytest.approx(metrics.psnr(clean, noisy), abs=1e-9)
        assert row["input_ssim"] == pytest.approx(metrics.ssim(clean, noisy), abs=1e-9)
        assert row["psnr"] == row["input_psnr"] and row["ssim"] == row["input_ssim"]
    assert result.mean_input_psnr == pytest.approx(20.2, abs=0.4)
    assert result.gain == 0.0
    p = result.protocol
    assert (p["task"], p["sigma"], p["seed"], p["clip"], p["method"]) == ("denoise", 25.0, 7, False, "identity")
    assert "seed + i" in p["noise"] and "not clipped" in p["noise"]


def test_denoise_is_reproducible_and_per_image_seeded(images):
    names, imgs = images
    first = evaluate(identity, (names, imgs), "denoise", sigma=15)
    second = evaluate(identity, (names, imgs), "denoise", sigma=15)
    assert [r["psnr"] for r in first.rows] == [r["psnr"] for r in second.rows]
    other_seed = evaluate(identity, (names, imgs), "denoise", sigma=15, seed=1)
    assert other_seed.rows[0]["input_psnr"] != first.rows[0]["input_psnr"]
    # image 1 alone with seed 1 gets the noise it got as image 1 of the set with seed 0
    alone = evaluate(identity, (names[1:2], imgs[1:2]), "denoise", sigma=15, seed=1)
    assert alone.rows[0]["input_psnr"] == first.rows[1]["input_psnr"]
    # clipping the output of the identity already helps: the clipped noise is smaller
    assert first.rows[0]["psnr"] > first.rows[0]["input_psnr"]


def test_a_function_returning_8_or_16_bit_pixels_is_read_on_the_unit_scale(images):
    # its uint8 output was cast to float as is: 0-255 values, clipped to 1, gave a PSNR of about 5 dB
    names, imgs = images
    exact = evaluate(identity, (names, imgs), "denoise", sigma=5)
    for dtype in (np.uint8, np.uint16):
        top = np.iinfo(dtype).max
        result = evaluate(lambda x, top=top, dtype=dtype: np.round(np.clip(x, 0, 1) * top).astype(dtype),
                          (names, imgs), "denoise", sigma=5)
        assert result.mean_psnr == pytest.approx(exact.mean_psnr, abs=0.5)


def test_a_function_returning_signed_integers_is_refused(images):
    # its 0-255 int64 values were cast as is and scored about 5 dB, as uint8 once was
    with pytest.raises(ImageValueError, match="the method's output has dtype int64, not float or unsigned int"):
        evaluate(lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.int64), images, "denoise", sigma=5)


def test_a_function_returning_0_255_floats_is_refused(images):
    # its 0-255 float values were clipped to [0, 1] and scored about 5 dB without a word
    with pytest.raises(ArgumentError, match="return floats in \\[0, 1\\] or an 8/16-bit integer array"):
        evaluate(lambda x: np.clip(x, 0, 1) * 255, images, "denoise", sigma=25)
    evaluate(lambda x: x * 4, images, "denoise", sigma=100)  # noisy values around +-2 are not a scale mistake


def test_colour_with_gray_model_is_per_channel_and_colour_model_is_colour(images):
    names, imgs = images
    colour = ([names[2]], [imgs[2]])
    direct = evaluate(identity, colour, "denoise", sigma=25, clip=False)
    per_channel = evaluate(_identity_model(1), colour, "denoise", sigma=25, clip=False)
    as_colour = evaluate(_identity_model(3), colour, "denoise", sigma=25, clip=False)
    for result in (per_channel, as_colour):
        assert result.rows[0]["psnr"] == pytest.approx(direct.rows[0]["psnr"], abs=1e-6)
    assert per_channel.protocol["channels"] == "per-channel" and as_colour.protocol["channels"] == "colour"
    assert as_colour.protocol["method_kind"] == "keras model" and as_colour.protocol["batch"] == 1
    with pytest.raises(ArgumentError, match="mode='rgb'"):
        evaluate(_identity_model(3), (names[:1], imgs[:1]), "denoise", sigma=25)


def test_gray_images_with_a_channel_axis_are_labelled_gray(images):
    # (H, W, 1) has ndim 3 like colour: it was labelled "colour" in the protocol, the CSV header and the cards.
    names, imgs = images
    gray = evaluate(identity, (names[:2], [img[..., None] for img in imgs[:2]]), "denoise", sigma=25)
    assert gray.protocol["channels"] == "gray"
    assert evaluate(identity, (names[:2], imgs[:2]), "denoise", sigma=25).protocol["channels"] == "gray"
    assert evaluate(identity, (names[1:], [imgs[1][..., None], imgs[2]]), "denoise", sigma=25).protocol["channels"] == "colour"


def test_a_model_of_fixed_input_size_is_evaluated_on_images_of_that_size(images):
    # the warm-up crops a first image to 32 x 32, which a keras.Input((48, 48, 1)) model cannot take
    inputs = keras.Input(shape=(48, 48, 1))
    fixed = keras.Model(inputs, keras.layers.Identity()(inputs))
    result = evaluate(fixed, (["a", "b"], [_rand((48, 48)), _rand((48, 48), seed=1)]), "denoise", sigma=25,
                      clip=False)
    assert [r["psnr"] for r in result.rows] == [r["input_psnr"] for r in result.rows]


def test_tiles_give_the_same_numbers(images):
    names, imgs = images
    model = models.red_net(depth=2, width=4)  # receptive-field radius 4 <= overlap // 4
    whole = evaluate(model, (names[:2], imgs[:2]), "denoise", sigma=25)
    tiled = evaluate(model, (names[:2], imgs[:2]), "denoise", sigma=25, tile=24, overlap=16)
    for a, b in zip(whole.rows, tiled.rows, strict=True):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-3)
    assert tiled.protocol["tile"] == 24 and tiled.protocol["overlap"] == 16
    small = evaluate(model, (names[:1], imgs[:1]), "denoise", sigma=25, tile=24)  # default overlap 32 > tile
    assert small.protocol["overlap"] == 12
    assert all(r["seconds"] > 0 for r in whole.rows)


# ------------------------------------------------------------------------------------------------ SR


@pytest.mark.parametrize("scale", [2, 3])
def test_sr_identity_on_upsampled_input_equals_the_bicubic_baseline(images, scale):
    names, imgs = images
    result = evaluate(identity, (names, imgs), "sr", scale=scale)
    for row, img in zip(result.rows, imgs, strict=True):
        hr = metrics.rgb_to_y(metrics.modcrop(img, scale))
        bicubic = np.clip(degrade.upscale(degrade.downscale(hr, scale), scale), 0, 1)
        expected = metrics.sr_metrics(hr, bicubic, scale)
        assert (row["psnr"], row["ssim"]) == pytest.approx(expected, abs=1e-9)
        assert (row["input_psnr"], row["input_ssim"]) == pytest.approx(expected, abs=1e-9)
    assert result.protocol["upsample"] == "pre" and result.protocol["channels"] == "Y"
    # a "post" method gets the LR image: bicubic upscaling is again the baseline
    post = evaluate(lambda lr: degrade.upscale(lr, scale), (names, imgs), "sr", scale=scale, upsample="post")
    assert [r["psnr"] for r in post.rows] == pytest.approx([r["psnr"] for r in result.rows], abs=1e-9)
    with pytest.raises(ArgumentError, match="upsample='post'"):
        evaluate(identity, (names, imgs), "sr", scale=scale, upsample="post")


def test_sr_models_pre_and_post_are_recognised(images):
    names, imgs = images
    post = evaluate(models.fsrcnn(scale=2, d=4, s=2, m=1), (names, imgs), "sr", scale=2)
    pre = evaluate(models.red_net(depth=1, width=2), (names, imgs), "sr", scale=2)
    assert post.protocol["upsample"] == "post" and pre.protocol["upsample"] == "pre"
    assert post.rows[0]["input_psnr"] == pre.rows[0]["input_psnr"]  # the same bicubic baseline
    with pytest.raises(ArgumentError, match="scale=2"):
        evaluate(models.fsrcnn(scale=2, d=4, s=2, m=1), (names, imgs), "sr", scale=3)
    with pytest.raises(ArgumentError, match="Y channel"):
        evaluate(_identity_model(3), (names, imgs), "sr", scale=2)


@pytest.mark.skipif(not (os.environ.get("DECONVLAB_DATA") or SHARED.is_dir()), reason="needs the benchmark sets")
def test_sr_bicubic_baselines_match_the_published_set5_numbers(monkeypatch):
    if not os.environ.get("DECONVLAB_DATA"):
        monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))
    set5 = load_dataset("set5", fallback=False)
    for scale, published in ((2, 33.66), (3, 30.39), (4, 28.42)):
        result = evaluate(identity, set5, "sr", scale=scale)
        assert result.mean_psnr == pytest.approx(published, abs=0.035), scale  # README: within 0.03 dB


# ------------------------------------------------------------------------------------------------ deblur


def test_deblur_protocol_uses_the_constants(images):
    names, imgs = images
    result = evaluate(identity, (names, imgs), "deblur", seed=3, clip=False)
    psf = degrade.gaussian_psf(degrade.DEBLUR_PSF_SIGMA, degrade.DEBLUR_PSF_SIZE)
    np.testing.assert_array_equal(protocol_psf(), psf)
    for i, (row, clean) in enumerate(zip(result.rows, imgs, strict=True)):
        blurred = degrade.blur(clean, psf)
        noise = np.random.default_rng(3 + i).standard_normal(clean.shape, dtype=np.float32)
        degraded = blurred + noise * np.float32(degrade.DEBLUR_NOISE_SIGMA / 255)
        assert row["input_psnr"] == pytest.approx(metrics.psnr(clean, degraded), abs=1e-9)
        assert row["psnr"] == row["input_psnr"]
    p = result.protocol
    assert p["sigma"] == degrade.DEBLUR_NOISE_SIGMA == 2.0
    assert p["psf"] == {"kind": "gaussian", "sigma": 1.6, "size": 25, "boundary": "symmetric"}
    louder = evaluate(identity, (names, imgs), "deblur", sigma=10, clip=False)
    assert louder.mean_input_psnr < result.mean_input_psnr and louder.protocol["sigma"] == 10


# ------------------------------------------------------------------------------------------------ EvalResult


def test_eval_result_csv_round_trip_and_markdown(tmp_path, images):
    names, imgs = images
    result = evaluate(identity, (names, imgs), "denoise", sigma=25)
    path = result.to_csv(tmp_path / "out" / "result.csv")
    assert path.read_text().startswith("# protocol: {")
    assert result.mean_psnr == result.mean["psnr"]

    table = result.to_markdown(digits=2).strip().splitlines()
    assert table[0].startswith("| image | PSNR (dB) | SSIM | noisy PSNR (dB)")
    assert len(table) == 2 + len(names) + 1
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[0] == "a" and cells[1] == f"{result.rows[0]['psnr']:.2f}" and cells[2] == f"{result.rows[0]['ssim']:.4f}"
    assert table[-1].startswith("| **mean** | **" + f"{result.mean_psnr:.2f}")
    line = result.summary()
    assert "\n" not in line and f"PSNR {result.mean_psnr:.2f} dB" in line and "3 images" in line
    assert str(result) == line and len(result) == 3
    assert tuple(result.rows[0]) == COLUMNS


def test_eval_result_csv_failed_write_keeps_the_old_file(tmp_path, images, monkeypatch):
    names, imgs = images
    result = evaluate(identity, (names, imgs), "denoise", sigma=25)
    path = tmp_path / "result.csv"
    path.write_text("old results\n")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        result.to_csv(path)
    assert path.read_text() == "old results\n" and [p.name for p in tmp_path.iterdir()] == ["result.csv"]
    monkeypatch.undo()
    old_umask = os.umask(0o022)
    try:
        result.to_csv(path)
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o644  # as open() would create it, not mkstemp's 0o600


# ------------------------------------------------------------------------------------------------ errors


def test_argument_errors(images):
    names, imgs = images
    data = (names, imgs)
    cases = [
        (dict(task="inpaint"), "unknown task"),
        (dict(task="denoise"), "needs sigma"),
        (dict(task="denoise", sigma=-1), "sigma"),
        (dict(task="sr"), "needs scale"),
        (dict(task="sr", scale=1), "scale"),
        (dict(task="sr", scale=2, sigma=25), "drop sigma"),
        (dict(task="denoise", sigma=25, scale=2), "drop scale"),
        (dict(task="denoise", sigma=25, upsample="pre"), "drop upsample"),
        (dict(task="sr", scale=2, upsample="middle"), "upsample"),
        (dict(task="denoise", sigma=25, tile=64), "drop tile"),
        (dict(task="denoise", sigma=25, seed=-1), "seed"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ArgumentError, match=message):
            evaluate(identity, data, **kwargs)
    with pytest.raises(ArgumentError, match="keras.Model or a function"):
        evaluate("bm3d", data, "denoise", sigma=25)
    with pytest.raises(ArgumentError, match="load_dataset"):
        evaluate(identity, imgs, "denoise", sigma=25)
    with pytest.raises(ArgumentError, match="one name per image"):
        evaluate(identity, (names[:2], imgs), "denoise", sigma=25)
    for one in (imgs, imgs[:1]):  # a str was iterated as names: "4 names", or one image named "x"
        with pytest.raises(ArgumentError, match="pass a list of names"):
            evaluate(identity, ("mine", one), "denoise", sigma=25)
    with pytest.raises(ArgumentError, match="shape"):
        evaluate(lambda x: x[1:], data, "denoise", sigma=25)


def test_denoise_rows_are_psnr_and_ssim_of_the_clipped_output():
    """With clip=True the output columns score clip(output, 0, 1), the input columns the unclipped noisy
    image; the reference is scikit-image (Wang et al. SSIM settings) on the protocol's noise written out."""
    rng = np.random.default_rng(1)
    clean = [0.6 + 0.4 * rng.random((32, 36)).astype(np.float32) for _ in range(2)]  # bright: noise passes 1

    def shrink(x):  # a method whose output differs from its input and still passes 1 in places
        return 0.9 * x + 0.15

    result = evaluate(shrink, (["a", "b"], clean), "denoise", sigma=25, seed=2)
    for i, (row, img) in enumerate(zip(result.rows, clean, strict=True)):
        noise = np.random.default_rng(2 + i).standard_normal(img.shape, dtype=np.float32)
        noisy = (img + noise * np.float32(25 / 255)).astype(np.float64)
        out, ref = np.clip(shrink(noisy), 0, 1), img.astype(np.float64)
        assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, out, data_range=1), abs=1e-6)
        assert row["ssim"] == pytest.approx(_wang_ssim(ref, out), abs=1e-6)
        assert row["input_psnr"] == pytest.approx(peak_signal_noise_ratio(ref, noisy, data_range=1), abs=1e-6)
        assert row["input_ssim"] == pytest.approx(_wang_ssim(ref, noisy), abs=1e-6)



def _wang_ssim(ref: np.ndarray, out: np.ndarray) -> float:
    return structural_similarity(ref, out, data_range=1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
