"""Tests of deconvlab.metrics: PSNR/SSIM known values, MATLAB's Y, modcrop/shave and the SR protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deconvlab import metrics
from deconvlab.errors import ArgumentError, DeconvlabError, ImageValueError

RNG = np.random.default_rng(7)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- PSNR


@pytest.mark.parametrize("shape", [(32, 40), (32, 40, 3), (2, 16, 16, 1)])
def test_psnr_of_a_known_mse(shape):
    ref = RNG.uniform(0.2, 0.8, shape).astype(np.float32)
    signs = np.where(RNG.random(shape) < 0.5, -1.0, 1.0)
    test = ref + 0.01 * signs  # every error is +-0.01: MSE = 1e-4 exactly, PSNR = 40 dB
    assert metrics.psnr(ref, test) == pytest.approx(40.0, abs=1e-4)


def test_psnr_of_identical_images_is_inf():
    img = RNG.random((16, 16)).astype(np.float32)
    assert metrics.psnr(img, img.copy()) == math.inf


def test_psnr_data_range_mistake_adds_48_db():
    ref = RNG.random((24, 24))
    test = ref + RNG.normal(0, 0.05, ref.shape)
    gap = metrics.psnr(ref, test, data_range=255) - metrics.psnr(ref, test, data_range=1.0)
    assert gap == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert gap == pytest.approx(48.13, abs=0.01)


def test_psnr_refuses_0_255_images_with_data_range_1():
    ref = RNG.integers(0, 256, (16, 16)).astype(np.float64)
    with pytest.raises(ArgumentError) as err:
        metrics.psnr(ref, ref + 1)
    assert "data_range=255" in one_line(err)
    assert metrics.psnr(ref, ref + 1, data_range=255) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_refuses_0_255_integer_test_images_with_data_range_1():
    # A flat reference passes the span check; the 8-bit test image beside it must not score on a range of 1.
    flat = np.full((16, 16), 128, np.uint8)
    test = RNG.integers(0, 256, (16, 16)).astype(np.uint8)
    with pytest.raises(ArgumentError) as err:
        metrics.psnr(flat, test)
    assert one_line(err).startswith("test values span") and "data_range=255" in one_line(err)
    assert metrics.psnr(flat, test, data_range=255) == pytest.approx(
        10 * math.log10(255**2 / np.mean((test - 128.0) ** 2)), rel=1e-12
    )
    noisy = RNG.random((16, 16)) + RNG.normal(0, 1.0, (16, 16))  # unclipped float noise may span more than 2
    assert np.ptp(noisy) > 2 and math.isfinite(metrics.psnr(RNG.random((16, 16)), noisy))


@pytest.mark.parametrize("metric", [metrics.psnr, metrics.ssim])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_psnr_and_ssim_refuse_an_integer_image_next_to_a_float_one(metric, dtype):
    # Keeping the integer values against a [0, 1] float gave -42 dB without a word.
    ref = RNG.random((24, 24))
    top = np.iinfo(dtype).max
    pixels = np.round(ref * top).astype(dtype)
    with pytest.raises(ArgumentError) as err:
        metric(ref, pixels)
    msg = one_line(err)
    assert f"{metric.__name__} does not mix" in msg and f"divide test by {top}" in msg
    with pytest.raises(ArgumentError) as err:
        metric(pixels, ref)
    assert f"divide reference by {top}" in one_line(err)
    with pytest.raises(ArgumentError) as err:
        metric(np.round(ref).astype(np.int64), ref)
    assert "convert reference to float" in one_line(err)
    assert metric(ref, pixels / top) > (40 if metric is metrics.psnr else 0.99)
    assert metric(pixels, pixels, top) == (math.inf if metric is metrics.psnr else pytest.approx(1.0))
    assert metric(ref > 0.5, ref) == metric((ref > 0.5).astype(float), ref)  # bool images are 0/1


def test_psnr_matches_the_formula_on_random_images():
    ref, test = RNG.random((20, 30, 3)), RNG.random((20, 30, 3))
    expected = 10 * math.log10(1.0 / np.mean((ref - test) ** 2))
    assert metrics.psnr(ref, test) == pytest.approx(expected, rel=1e-12)


def test_psnr_accepts_a_trailing_channel_of_one_on_one_side():
    ref = RNG.random((16, 16))
    test = ref + 0.01
    assert metrics.psnr(ref, test[..., None]) == pytest.approx(40.0, abs=1e-6)
    assert metrics.psnr(ref[..., None], test) == pytest.approx(40.0, abs=1e-6)


def test_bad_inputs_raise_one_line_errors():
    a = RNG.random((16, 16))
    with pytest.raises(ArgumentError) as err:
        metrics.psnr(a, a[:15])
    assert "same size" in one_line(err)
    bad = a.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ImageValueError) as err:
        metrics.psnr(a, bad)
    assert "NaN" in one_line(err)
    with pytest.raises(ImageValueError):
        metrics.ssim(np.zeros((0, 5)), np.zeros((0, 5)))
    for dr in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ArgumentError):
            metrics.psnr(a, a + 0.1, data_range=dr)
    with pytest.raises(ImageValueError) as err:
        metrics.psnr(np.array(["a"]), np.array(["b"]))
    assert issubclass(ArgumentError, DeconvlabError)


# ---------------------------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("shape", [(32, 32), (32, 40, 3), (32, 32, 1)])
def test_ssim_of_identical_images_is_one(shape):
    img = RNG.random(shape)
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_two_constant_images_is_the_luminance_term():
    # No variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with C1 = (0.01 L)^2.
    a, b, c1 = 0.5, 0.4, 0.01**2
    got = metrics.ssim(np.full((24, 24), a), np.full((24, 24), b))
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_ssim_of_colour_is_the_mean_over_channels():
    ref = RNG.random((32, 32, 3))
    test = np.clip(ref + RNG.normal(0, 0.1, ref.shape), 0, 1)
    per_channel = [metrics.ssim(ref[..., c], test[..., c]) for c in range(3)]
    assert metrics.ssim(ref, test) == pytest.approx(np.mean(per_channel), rel=1e-9)


def test_ssim_drops_with_noise_and_batches_average():
    ref = RNG.random((2, 32, 32, 1))
    light = ref + RNG.normal(0, 0.02, ref.shape)
    heavy = ref + RNG.normal(0, 0.2, ref.shape)
    assert 1.0 > metrics.ssim(ref, light) > metrics.ssim(ref, heavy)
    expected = np.mean([metrics.ssim(ref[i], heavy[i]) for i in range(2)])
    assert metrics.ssim(ref, heavy) == pytest.approx(expected, rel=1e-12)


def test_ssim_uses_the_wang_gaussian_window():
    # A uniform 7x7 window (skimage's default) would give another value: check we pass sigma=1.5, population cov.
    ref = RNG.random((40, 40))
    test = np.clip(ref + RNG.normal(0, 0.1, ref.shape), 0, 1)
    wang = structural_similarity(ref, test, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    default = structural_similarity(ref, test, data_range=1.0)
    assert metrics.ssim(ref, test) == pytest.approx(wang, rel=1e-12)
    assert abs(wang - default) > 1e-4


def test_ssim_on_images_smaller_than_the_window():
    with pytest.raises(ImageValueError) as err:
        metrics.ssim(np.zeros((8, 30)), np.zeros((8, 30)))
    assert "11x11" in one_line(err)


# ---------------------------------------------------------------------------------------------- Y, crops


@pytest.mark.parametrize(
    ("rgb", "y255"),
    [((1, 0, 0), 81.481), ((0, 1, 0), 144.553), ((0, 0, 1), 40.966), ((1, 1, 1), 235.0), ((0, 0, 0), 16.0)],
)
def test_rgb_to_y_matches_matlab_rgb2ycbcr(rgb, y255):
    # MATLAB rgb2ycbcr on double input; on uint8 input it rounds these to 81, 145, 41, 235 and 16.
    img = np.broadcast_to(np.asarray(rgb, dtype=np.float64), (3, 4, 3))
    y = metrics.rgb_to_y(img)
    assert y.shape == (3, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y * 255, y255, atol=1e-4)


def test_ycbcr_through_scikit_image_keeps_the_matlab_numbers():
    # The SR protocol's Y and the CLI's colour handling, against the BT.601 formula written out in float64.
    rgb = RNG.random((7, 9, 3))
    matrix = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255
    offset = np.array([16.0, 128.0, 128.0]) / 255
    expected = rgb @ matrix.T + offset
    assert np.abs(metrics.rgb_to_y(rgb) - expected[..., 0]).max() <= 1e-6
    assert np.abs(metrics.rgb_to_ycbcr(rgb) - expected).max() <= 1e-6
    np.testing.assert_allclose(metrics.ycbcr_to_rgb(expected), rgb, atol=1e-6)


def test_rgb_to_y_passes_gray_through():
    gray = RNG.random((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(metrics.rgb_to_y(gray), gray)
    np.testing.assert_array_equal(metrics.rgb_to_y(gray[..., None]), gray)
    with pytest.raises(ImageValueError) as err:
        metrics.rgb_to_y(np.zeros((4, 4, 4)))
    assert "(H, W, 3)" in one_line(err)


def test_rgb_to_y_reads_8_and_16_bit_pixels_on_the_unit_scale():
    white = np.full((2, 2, 3), 255, np.uint8)
    np.testing.assert_allclose(metrics.rgb_to_y(white), 235 / 255, atol=1e-6)
    np.testing.assert_allclose(metrics.rgb_to_y(white.astype(np.uint16) * 257), 235 / 255, atol=1e-6)
    np.testing.assert_allclose(metrics.rgb_to_y(np.full((2, 2), 51, np.uint8)), 0.2, atol=1e-6)


def test_ycbcr_conversions_read_8_and_16_bit_pixels_and_refuse_other_shapes():
    # rgb_to_ycbcr took uint8 values as [0, 1] ones (white gave Y = 219 instead of 235/255)
    rgb = RNG.random((3, 4, 3))
    pixels = np.round(rgb * 255).astype(np.uint8)
    np.testing.assert_allclose(metrics.rgb_to_ycbcr(pixels), metrics.rgb_to_ycbcr(pixels / 255.0), atol=1e-6)
    np.testing.assert_allclose(metrics.rgb_to_ycbcr(pixels.astype(np.uint16) * 257),
                               metrics.rgb_to_ycbcr(pixels / 255.0), atol=1e-6)
    ycc = np.round(metrics.rgb_to_ycbcr(rgb) * 255).astype(np.uint8)  # MATLAB's uint8 YCbCr
    np.testing.assert_allclose(metrics.ycbcr_to_rgb(ycc), metrics.ycbcr_to_rgb(ycc / 255.0), atol=1e-6)
    for convert in (metrics.rgb_to_ycbcr, metrics.ycbcr_to_rgb):
        for shape in ((4, 4), (4, 4, 4)):  # gray and RGBA: scikit-image's ValueError before
            with pytest.raises(ImageValueError) as err:
                convert(np.zeros(shape))
            assert f"{convert.__name__} takes (H, W, 3)" in one_line(err)


def test_modcrop_keeps_the_top_left_corner():
    img = np.arange(13 * 10 * 3).reshape(13, 10, 3)
    out = metrics.modcrop(img, 4)
    assert out.shape == (12, 8, 3)
    np.testing.assert_array_equal(out, img[:12, :8])
    assert metrics.modcrop(img[..., 0], 1).shape == (13, 10)
    with pytest.raises(ImageValueError):
        metrics.modcrop(np.zeros((3, 9)), 4)
    for bad in (0, 2.0, True):
        with pytest.raises(ArgumentError):
            metrics.modcrop(img, bad)


def test_crop_border_shaves_every_side():
    img = np.arange(8 * 9).reshape(8, 9)
    np.testing.assert_array_equal(metrics.crop_border(img, 2), img[2:6, 2:7])
    assert metrics.crop_border(img, 0) is img
    with pytest.raises(ImageValueError) as err:
        metrics.crop_border(img, 4)
    assert "smaller n" in one_line(err)
    with pytest.raises(ArgumentError):
        metrics.crop_border(img, -1)


# ---------------------------------------------------------------------------------------------- SR protocol


def test_sr_metrics_ignore_the_shaved_border_and_the_modcrop_remainder():
    hr = RNG.random((50, 47, 3))
    sr = metrics.modcrop(hr, 3).copy()
    sr[:3] = 0.0  # the border that the protocol shaves off
    sr[:, -3:] = 1.0
    assert metrics.sr_metrics(hr, sr, 3) == (math.inf, pytest.approx(1.0))
    assert metrics.sr_metrics(hr, hr, 3)[0] == math.inf  # sr of the original size is modcropped too


def test_sr_metrics_compare_on_matlab_y():
    hr = RNG.uniform(0.1, 0.8, (40, 40, 3))
    sr = hr + 0.01  # Y moves by 0.01 * 219 / 255
    expected = 10 * math.log10(1.0 / (0.01 * 219 / 255) ** 2)
    assert metrics.sr_metrics(hr, sr, 2)[0] == pytest.approx(expected, abs=1e-3)
    gray = hr[..., 0]
    assert metrics.sr_metrics(gray, gray + 0.01, 2)[0] == pytest.approx(40.0, abs=1e-3)
    # a gray sr against a colour hr is a Y output: compared with hr's Y
    assert metrics.sr_metrics(hr, metrics.rgb_to_y(hr) + 0.01, 2)[0] == pytest.approx(40.0, abs=1e-3)


def test_sr_metrics_read_8_and_16_bit_pixels_on_the_unit_scale():
    # sr_metrics turned pixels into floats before rgb_to_y could scale them: 0-255 Y values, refused with a hint
    # about a data_range argument that sr_metrics does not have.
    hr8 = RNG.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    sr8 = np.clip(hr8 + RNG.integers(-3, 4, hr8.shape), 0, 255).astype(np.uint8)
    expected = metrics.sr_metrics(hr8 / 255, sr8 / 255, 2)
    assert metrics.sr_metrics(hr8, sr8, 2) == expected
    hr16, sr16 = hr8.astype(np.uint16) * 257, sr8.astype(np.uint16) * 257
    assert metrics.sr_metrics(hr16, sr16, 2) == pytest.approx(expected, rel=1e-9)
    assert metrics.sr_metrics(hr8[..., 0], sr8[..., 0], 2) == metrics.sr_metrics(hr8[..., 0] / 255, sr8[..., 0] / 255, 2)


def test_sr_metrics_refuse_mixed_or_0_255_float_images_with_their_own_advice():
    hr = RNG.random((30, 30, 3))
    sr8 = np.round(hr * 255).astype(np.uint8)
    with pytest.raises(ArgumentError) as err:
        metrics.sr_metrics(hr, sr8, 2)
    msg = one_line(err)
    assert "sr_metrics does not mix" in msg and "divide sr by 255" in msg
    with pytest.raises(ArgumentError) as err:
        metrics.sr_metrics(hr * 255, hr * 255, 2)
    msg = one_line(err)
    assert "sr_metrics" in msg and "divide 0-255 values by 255" in msg and "data_range" not in msg


def test_sr_metrics_reject_a_wrong_size():
    hr = RNG.random((40, 40))
    with pytest.raises(ArgumentError) as err:
        metrics.sr_metrics(hr, hr[:20, :20], 2)
    assert "upscale" in one_line(err)
    with pytest.raises(ArgumentError):
        metrics.sr_metrics(hr, hr, 0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_metrics_shave_exactly_scale_pixels_and_use_data_range_one(scale):
    """The SR protocol scores Y[scale:-scale, scale:-scale] with data_range 1 (not the image's own range): a
    low-contrast gray pair, with an error in the first row kept, checked against scikit-image on that crop."""
    rng = np.random.default_rng(scale)
    hr = 0.4 + 0.3 * rng.random((26, 29))
    sr = hr + 0.02 * rng.standard_normal(hr.shape)
    sr[scale, 12] += 0.2  # inside the kept region, next to the shaved border
    crop = (slice(scale, 26 - 26 % scale - scale), slice(scale, 29 - 29 % scale - scale))  # modcrop; shave
    ref, out = (img.astype(np.float32)[crop].astype(np.float64) for img in (hr, sr))  # Y: float32
    psnr, ssim = metrics.sr_metrics(hr, sr, scale)
    assert psnr == pytest.approx(peak_signal_noise_ratio(ref, out, data_range=1), abs=1e-9)
    assert ssim == pytest.approx(_wang_ssim(ref, out), abs=1e-9)



def _wang_ssim(ref: np.ndarray, out: np.ndarray) -> float:
    return structural_similarity(ref, out, data_range=1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
