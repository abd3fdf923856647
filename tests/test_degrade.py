"""Tests of deconvlab.degrade: noise statistics, PSFs, blur as convolution, MATLAB bicubic and batch degradations."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import signal

from deconvlab import degrade
from deconvlab.errors import ArgumentError, ImageValueError

RNG = np.random.default_rng(11)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- noise


def test_gaussian_noise_has_the_right_statistics():
    img = np.full((512, 512), 0.5, dtype=np.float32)
    noisy = degrade.add_gaussian_noise(img, 25, seed=0)
    noise = noisy.astype(np.float64) - 0.5
    assert noisy.dtype == np.float32 and noisy.shape == img.shape
    assert abs(noise.mean()) < 3 * (25 / 255) / 512  # three standard errors of the mean
    assert noise.std() == pytest.approx(25 / 255, rel=0.01)


def test_gaussian_noise_is_not_clipped():
    black = np.zeros((64, 64, 3), dtype=np.float32)
    noisy = degrade.add_gaussian_noise(black, 50, seed=1)
    assert (noisy < 0).mean() == pytest.approx(0.5, abs=0.05)
    white = degrade.add_gaussian_noise(black + 1, 50, seed=1)
    assert white.max() > 1.0


def test_gaussian_noise_repeats_with_a_seed():
    img = RNG.random((16, 16)).astype(np.float32)
    a = degrade.add_gaussian_noise(img, 15, seed=3)
    np.testing.assert_array_equal(a, degrade.add_gaussian_noise(img, 15, seed=3))
    assert not np.array_equal(a, degrade.add_gaussian_noise(img, 15, seed=4))
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(degrade.add_gaussian_noise(img, 15, seed=g1),
                                  degrade.add_gaussian_noise(img, 15, seed=g2))


def test_gaussian_noise_sigma_zero_is_a_copy_and_batches_work():
    img = RNG.random((2, 8, 8, 1)).astype(np.float32)
    out = degrade.add_gaussian_noise(img, 0)
    np.testing.assert_array_equal(out, img)
    assert out is not img
    assert degrade.add_gaussian_noise(img, 10, seed=0).shape == (2, 8, 8, 1)
    u8 = degrade.add_gaussian_noise(np.full((4, 4), 255, dtype=np.uint8), 0)
    np.testing.assert_array_equal(u8, 1.0)  # uint8 images are scaled to [0, 1]


@pytest.mark.parametrize("sigma", [-1, float("nan"), "25", None])
def test_gaussian_noise_rejects_bad_sigma(sigma):
    with pytest.raises(ArgumentError) as err:
        degrade.add_gaussian_noise(np.zeros((4, 4)), sigma)
    assert "sigma" in one_line(err)


def test_gaussian_noise_rejects_bad_images_and_seeds():
    with pytest.raises(ImageValueError):
        degrade.add_gaussian_noise(np.array([0.0, np.inf]).reshape(1, 2), 10)
    with pytest.raises(ImageValueError):
        degrade.add_gaussian_noise(np.zeros(5), 10)
    for signed in ("int16", "int64"):  # were read as [0, 1] values: 300s came back as 300s plus noise of 10/255
        with pytest.raises(ImageValueError) as err:
            degrade.add_gaussian_noise(np.full((4, 4), 300, signed), 10)
        assert one_line(err).startswith(f"image has dtype {signed}, not float or unsigned int: convert it to float32")
    with pytest.raises(ArgumentError) as err:
        degrade.add_gaussian_noise(np.zeros((4, 4)), 10, seed=-1)
    assert "seed" in one_line(err)


# ---------------------------------------------------------------------------------------------- PSFs


def test_gaussian_psf_is_normalised_symmetric_and_gaussian():
    psf = degrade.gaussian_psf(1.6, 25)
    assert psf.shape == (25, 25) and psf.dtype == np.float64
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(psf, psf.T, atol=0)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=0)
    assert np.unravel_index(psf.argmax(), psf.shape) == (12, 12)
    assert psf[12, 13] / psf[12, 12] == pytest.approx(math.exp(-1 / (2 * 1.6**2)), rel=1e-12)


def test_gaussian_psf_rejects_even_sizes_and_bad_sigma():
    with pytest.raises(ArgumentError) as err:
        degrade.gaussian_psf(1.0, 24)
    assert "25" in one_line(err)
    for bad in (0, -1.0):
        with pytest.raises(ArgumentError):
            degrade.gaussian_psf(bad, 5)
    np.testing.assert_array_equal(degrade.gaussian_psf(2.0, 1), [[1.0]])


def test_motion_psf_orientation():
    horizontal = degrade.motion_psf(9, 0)
    c = horizontal.shape[0] // 2
    assert horizontal.sum() == pytest.approx(1.0)
    assert horizontal[c].sum() == pytest.approx(1.0)  # all the mass on the centre row
    vertical = degrade.motion_psf(9, 90)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-12)
    diagonal = degrade.motion_psf(9, 45)
    c = diagonal.shape[0] // 2
    # Counter-clockwise 45 degrees: up-right and down-left of the centre, nothing on the other diagonal.
    assert diagonal[c - 2, c + 2] > 0.05 and diagonal[c + 2, c - 2] > 0.05
    assert diagonal[c - 2, c - 2] == 0 and diagonal[c + 2, c + 2] == 0


def test_motion_psf_length_and_symmetry():
    psf = degrade.motion_psf(12, 30)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-15)
    # A uniform line of length L has variance L^2 / 12 along its direction (plus 1/6 from the bilinear splat).
    ys, xs = np.indices(psf.shape) - psf.shape[0] // 2
    along = xs * math.cos(math.radians(30)) - ys * math.sin(math.radians(30))
    assert (psf * along**2).sum() == pytest.approx(12**2 / 12, rel=0.05)
    np.testing.assert_array_equal(degrade.motion_psf(0, 10), [[1.0]])
    assert degrade.motion_psf(5, 0, size=15).shape == (15, 15)
    with pytest.raises(ArgumentError) as err:
        degrade.motion_psf(20, 0, size=5)
    assert "size >=" in one_line(err)
    with pytest.raises(ArgumentError):
        degrade.motion_psf(-1, 0)


def test_motion_psf_refuses_a_side_beyond_the_bound():
    # length 1e6 tried to allocate a 7 TiB PSF and died with a raw MemoryError
    for kwargs in (dict(length=1e6, angle_deg=0), dict(length=5, angle_deg=0, size=10**6 + 1)):
        with pytest.raises(ArgumentError) as err:
            degrade.motion_psf(**kwargs)
        assert "at most 4095" in one_line(err)


def test_motion_psf_rejects_even_sizes_that_would_shift_the_blur():
    # An 8x8 line was centred at 3.5 while blur() centres an even kernel at 4: the blurred image moved half a pixel.
    with pytest.raises(ArgumentError) as err:
        degrade.motion_psf(3, 0, size=8)
    assert "size=8 is even" in one_line(err) and "9" in one_line(err)
    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1
    spread = degrade.blur(delta, degrade.motion_psf(3, 0, size=9))
    assert (np.arange(9) * spread.sum(0)).sum() == pytest.approx(4.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- blur


def test_blur_of_a_constant_is_the_constant():
    img = np.full((20, 31, 3), 0.3, dtype=np.float32)
    for psf in (degrade.gaussian_psf(1.6, 25), degrade.motion_psf(7, 20)):
        np.testing.assert_allclose(degrade.blur(img, psf), 0.3, atol=1e-6)


def test_blur_is_convolution_with_symmetric_borders():
    img = RNG.random((17, 23))
    psf = RNG.random((5, 3))
    psf /= psf.sum()  # deliberately asymmetric: correlation would give another result
    expected = signal.convolve2d(np.pad(img, ((2, 2), (1, 1)), mode="symmetric"), psf, mode="valid")
    np.testing.assert_allclose(degrade.blur(img, psf), expected, atol=1e-6)


def test_blur_shifts_in_the_direction_of_the_psf():
    img = np.zeros((9, 9), dtype=np.float32)
    img[4, 4] = 1
    psf = np.zeros((3, 3))
    psf[1, 2] = 1.0  # a delta right of centre moves the picture one pixel right
    out = degrade.blur(img, psf)
    assert out[4, 5] == 1 and out.sum() == 1


def test_blur_handles_channels_and_batches_per_plane():
    psf = degrade.gaussian_psf(1.0, 7)
    batch = RNG.random((2, 12, 14, 3)).astype(np.float32)
    out = degrade.blur(batch, psf)
    assert out.shape == batch.shape and out.dtype == np.float32
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(out[n, ..., c], degrade.blur(batch[n, ..., c], psf), atol=1e-6)
    np.testing.assert_allclose(degrade.blur(batch[0], psf), out[0], atol=1e-6)


def test_blur_errors():
    img = RNG.random((8, 8))
    with pytest.raises(ArgumentError):
        degrade.blur(img, np.zeros((3, 3)))
    with pytest.raises(ArgumentError):
        degrade.blur(img, np.ones(3))
    # a negative sum inverted the image instead of being refused
    with pytest.raises(ArgumentError) as err:
        degrade.blur(img, -degrade.gaussian_psf(1.6, 9))
    assert "psf sums to -1: pass a blur kernel with a positive sum" in one_line(err)


# ---------------------------------------------------------------------------------------------- bicubic


def test_bicubic_upscale_of_an_impulse_gives_keys_weights():
    # Keys' cubic with a = -0.5 at distances 1.75, 1.25, 0.75, 0.25: the taps of MATLAB's 2x bicubic.
    taps = [-0.0234375, -0.0703125, 0.2265625, 0.8671875]
    x = np.zeros((1, 16))
    x[0, 8] = 1.0
    out = degrade.bicubic_resize(x, 2.0).astype(np.float64)
    np.testing.assert_array_equal(out[0], out[1])  # (2, 32): the one input row, twice
    np.testing.assert_allclose(out[0, 13:21], taps + taps[::-1], atol=1e-7)
    assert out[0].sum() == pytest.approx(2.0, abs=1e-6)


def test_bicubic_downscale_of_an_impulse_gives_the_widened_kernel():
    # Antialiased 1/2: the kernel 0.5 * cubic(x / 2) at distances 0.5, 1.5, 2.5, 3.5 on each side.
    half = [0.43359375, 0.11328125, -0.03515625, -0.01171875]
    x = np.zeros((1, 32))
    x[0, 15] = 1.0  # input pixel 16 (1-based); output pixel j sits at 2 j - 0.5: 13.5, 15.5, 17.5, 19.5 for j = 7..10
    out = degrade.bicubic_resize(x, 0.5).astype(np.float64)
    np.testing.assert_allclose(out[0, 5:11], [0, half[2], half[0], half[1], half[3], 0], atol=1e-7)
    assert out.sum() == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2, 3, 4])
def test_bicubic_keeps_constants_and_linear_ramps(scale):
    const = np.full((13, 11, 3), 0.7)
    np.testing.assert_allclose(degrade.bicubic_resize(const, scale), 0.7, atol=1e-6)
    ramp = np.tile(np.arange(48, dtype=np.float64) / 47, (6, 1))
    out = degrade.bicubic_resize(ramp, scale).astype(np.float64)
    j = np.arange(1, out.shape[1] + 1)
    centres = j / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in 1-based input coordinates
    interior = (centres > 2 / min(scale, 1) + 1) & (centres < 48 - 2 / min(scale, 1))
    np.testing.assert_allclose(out[0, interior], (centres[interior] - 1) / 47, atol=1e-6)


@pytest.mark.parametrize(("shape", "scale", "expected"), [
    ((7, 9), 0.5, (4, 5)), ((10, 11, 3), 1 / 3, (4, 4, 3)), ((5, 5), 2, (10, 10)), ((2, 9, 6, 1), 0.25, (2, 3, 2, 1)),
])
def test_bicubic_output_size_is_ceil(shape, scale, expected):
    assert degrade.bicubic_resize(np.zeros(shape), scale).shape == expected


def test_bicubic_commutes_with_flips_and_works_per_channel():
    img = RNG.random((24, 30, 3))
    for scale in (0.5, 1 / 3, 2):
        out = degrade.bicubic_resize(img, scale)
        np.testing.assert_allclose(degrade.bicubic_resize(img[::-1, ::-1], scale), out[::-1, ::-1], atol=1e-6)
        np.testing.assert_allclose(degrade.bicubic_resize(img[..., 1], scale), out[..., 1], atol=1e-6)
    batch = degrade.bicubic_resize(img[None], 0.5)
    np.testing.assert_allclose(batch[0], degrade.bicubic_resize(img, 0.5), atol=1e-7)


def test_bicubic_argument_errors():
    img = np.zeros((8, 8))
    assert degrade.bicubic_resize(img, 1 / 3, output_shape=(2, 3)).shape == (2, 3)  # floor or ceil of 8/3
    for bad in ((0, 4), (4,), (2.5, 4), (4, 4, 1), (6, 4), (True, 4), 4, "big"):
        with pytest.raises(ArgumentError, match="output_shape"):
            degrade.bicubic_resize(img, 0.5, output_shape=bad)
    for bad in (0, -2, float("inf")):
        with pytest.raises(ArgumentError):
            degrade.bicubic_resize(img, bad)


def test_downscale_modcrops_and_upscale_restores_the_size():
    hr = RNG.random((50, 47, 3)).astype(np.float32)
    lr = degrade.downscale(hr, 3)
    assert lr.shape == (16, 15, 3) and lr.dtype == np.float32
    np.testing.assert_array_equal(lr, degrade.bicubic_resize(hr[:48, :45], 1 / 3))
    assert degrade.upscale(lr, 3).shape == (48, 45, 3)
    assert degrade.upscale(lr[None], 3).shape == (1, 48, 45, 3)
    with pytest.raises(ArgumentError):
        degrade.downscale(hr, 1.5)
    with pytest.raises(ImageValueError):
        degrade.downscale(hr[None], 2)


def _data_root() -> Path | None:
    env = os.environ.get("DECONVLAB_DATA", "").strip()
    for root in ([Path(env)] if env else []) + [Path("/work/shared/datasets")]:
        if (root / "set5").is_dir() and (root / "set14").is_dir():
            return root
    return None


@pytest.mark.skipif(_data_root() is None, reason="Set5/Set14 not found: set DECONVLAB_DATA to a local copy")
@pytest.mark.parametrize(("name", "expected"), [("set5", (33.69, 30.41, 28.43)), ("set14", (30.24, 27.55, 26.00))])
def test_bicubic_reproduces_the_published_sr_baselines(name, expected):
    # Everything but the resampler is independent of deconvlab: Pillow reads the BMPs, Y and PSNR are computed
    # here. The README's numbers (float pipeline, no 8-bit rounding) are within 0.03 dB of the published ones.
    files = sorted((_data_root() / name).glob("*.bmp"))
    assert len(files) == {"set5": 5, "set14": 14}[name]
    images = [np.asarray(Image.open(f), dtype=np.float64) / 255.0 for f in files]
    assert sum(img.ndim == 2 for img in images) == (1 if name == "set14" else 0)  # bridge.bmp is gray
    for scale, target in zip((2, 3, 4), expected, strict=True):
        values = []
        for img in images:
            h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
            hr = img[:h, :w]
            sr = degrade.upscale(degrade.downscale(hr, scale), scale).astype(np.float64)
            if hr.ndim == 3:  # MATLAB rgb2ycbcr luma
                weights = np.array([65.481, 128.553, 24.966]) / 255
                hr, sr = 16 / 255 + hr @ weights, 16 / 255 + sr @ weights
            err = (hr - sr)[scale:-scale, scale:-scale]
            values.append(10 * math.log10(1.0 / np.mean(err**2)))
        assert np.mean(values) == pytest.approx(target, abs=0.02), f"{name} x{scale}"


# ---------------------------------------------------------------------------------------------- JPEG, low light


def test_jpeg_round_trip_gray_and_rgb():
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    gray = (0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)
    rgb = np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)
    for img in (gray, rgb, gray[..., None]):
        good, bad = degrade.jpeg(img, 95), degrade.jpeg(img, 5)
        assert good.shape == img.shape and good.dtype == np.float32
        np.testing.assert_allclose(good * 255, np.round(good * 255), atol=1e-3)  # decoded 8-bit values
        err_good, err_bad = np.abs(good - img).mean(), np.abs(bad - img).mean()
        assert err_good < 0.01 < err_bad
    assert degrade.jpeg(rgb[None], 50).shape == (1, 64, 64, 3)


@pytest.mark.parametrize("quality", [0, 101, 50.0])
def test_jpeg_rejects_bad_quality(quality):
    with pytest.raises(ArgumentError) as err:
        degrade.jpeg(np.zeros((8, 8)), quality)
    assert "quality" in one_line(err)


def test_low_light_darkens_and_adds_poisson_and_read_noise():
    v, gamma, peak, read = 0.5, 2.2, 20.0, 4.0
    img = np.full((256, 256), v, dtype=np.float32)
    out = degrade.low_light(img, gamma=gamma, peak=peak, read_sigma=read, seed=0).astype(np.float64)
    dark = v**gamma
    assert out.mean() == pytest.approx(dark, abs=0.005)
    assert out.var() == pytest.approx(dark / peak + (read / 255) ** 2, rel=0.05)  # shot + read variance
    np.testing.assert_array_equal(out, degrade.low_light(img, gamma=gamma, peak=peak, read_sigma=read, seed=0))
    assert (degrade.low_light(np.zeros((64, 64)), read_sigma=5, seed=1) < 0).any()  # not clipped
    with pytest.raises(ArgumentError):
        degrade.low_light(img, peak=0)


# ---------------------------------------------------------------------------------------------- batches


def test_protocol_constants():
    assert (degrade.DEBLUR_PSF_SIGMA, degrade.DEBLUR_PSF_SIZE, degrade.DEBLUR_NOISE_SIGMA) == (1.6, 25, 2.0)


def test_noise_degradation_fixed_and_blind():
    clean = np.full((8, 40, 40, 1), 0.5, dtype=np.float32)
    fixed = degrade.noise_degradation(25)(clean, np.random.default_rng(0))
    assert fixed.shape == clean.shape and fixed.dtype == np.float32
    assert (fixed - 0.5).std() == pytest.approx(25 / 255, rel=0.03)
    np.testing.assert_array_equal(fixed, degrade.noise_degradation(25)(clean, np.random.default_rng(0)))
    blind = degrade.noise_degradation((0, 55))(clean, np.random.default_rng(1))
    stds = (blind - 0.5).std(axis=(1, 2, 3)) * 255
    assert stds.min() >= 0 and stds.max() <= 55 * 1.1 and stds.std() > 5  # one level per image
    with pytest.raises(ArgumentError) as err:
        degrade.noise_degradation((50, 10))
    assert "reversed" in one_line(err)
    with pytest.raises(ArgumentError):
        degrade.noise_degradation((1, 2, 3))


def test_blur_degradation_is_blur_plus_noise():
    clean = RNG.random((3, 32, 32, 1)).astype(np.float32)
    psf = degrade.gaussian_psf(degrade.DEBLUR_PSF_SIGMA, degrade.DEBLUR_PSF_SIZE)
    np.testing.assert_allclose(degrade.blur_degradation(psf, 0)(clean, np.random.default_rng(0)),
                               degrade.blur(clean, psf), atol=1e-7)
    noisy = degrade.blur_degradation()(clean, np.random.default_rng(0))
    assert (noisy - degrade.blur(clean, psf)).std() == pytest.approx(2 / 255, rel=0.05)
    with pytest.raises(ImageValueError):
        degrade.blur_degradation(psf, 2)(clean[0], np.random.default_rng(0))


def test_sr_degradation_pre_and_post_upsampling():
    rng = np.random.default_rng(0)
    clean = RNG.random((2, 24, 24, 1)).astype(np.float32)
    pre = degrade.sr_degradation(3)(clean, rng)
    assert pre.shape == clean.shape
    np.testing.assert_allclose(pre[1], degrade.upscale(degrade.downscale(clean[1], 3), 3), atol=1e-6)
    post = degrade.sr_degradation(3, pre_upsample=False)(clean, rng)
    assert post.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(post[0], degrade.downscale(clean[0], 3), atol=1e-6)
    odd = degrade.sr_degradation(3)(clean[:, :22, :23], rng)  # not a multiple of 3: mirrored up and cropped back
    assert odd.shape == (2, 22, 23, 1)
    assert np.abs(odd - clean[:, :22, :23]).mean() < 0.3
    with pytest.raises(ArgumentError) as err:
        degrade.sr_degradation(3, pre_upsample=False)(clean[:, :22, :22], rng)
    assert "PatchDataset" in one_line(err)
    with pytest.raises(ArgumentError):
        degrade.sr_degradation(0)


def test_batch_degradations_read_8_bit_batches_as_the_image_functions_do():
    # a uint8 batch was cast as is: 0-255 values plus noise of sigma/255, where add_gaussian_noise reads pixels/255
    pixels = (RNG.random((2, 12, 12, 1)) * 255).astype(np.uint8)
    unit = pixels / np.float32(255)
    psf = degrade.gaussian_psf(1.0, 5)
    for make, reference in (
        (lambda: degrade.noise_degradation(25), lambda rng: degrade.add_gaussian_noise(unit, 25, seed=rng)),
        (lambda: degrade.blur_degradation(psf, 0), lambda rng: degrade.blur(unit, psf)),
        (lambda: degrade.sr_degradation(2), lambda rng: degrade.sr_degradation(2)(unit, rng)),
    ):
        np.testing.assert_allclose(make()(pixels, np.random.default_rng(3)), reference(np.random.default_rng(3)),
                                   atol=1e-6)
    with pytest.raises(ImageValueError, match="NaN"):
        degrade.noise_degradation(25)(np.full((1, 4, 4, 1), np.nan), np.random.default_rng(0))


@pytest.mark.parametrize(("scale", "pad"), [(2, 3), (3, 3), (0.5, 4), (1 / 3, 6)])
def test_bicubic_borders_are_matlab_symmetric_padding(scale, pad):
    """imresize mirrors the border (edge pixel repeated): resizing the np.pad 'symmetric' image, then
    cropping, gives the same pixels, also at the border (a periodic wrap keeps constants, ramps and flips)."""
    img = np.random.default_rng(0).random((9, 11))
    direct = degrade.bicubic_resize(img, scale)
    padded = degrade.bicubic_resize(np.pad(img, pad, mode="symmetric"), scale)
    q = round(pad * scale)
    np.testing.assert_allclose(padded[q : q + direct.shape[0], q : q + direct.shape[1]], direct, atol=1e-6)



def test_jpeg_rounds_to_the_nearest_8_bit_level():
    """A flat image at quality 100 codes losslessly: the round trip shows the 8-bit level it rounds to."""
    for level, expected in ((100.0, 100), (100.4, 100), (100.497, 100), (100.6, 101), (0.4, 0), (254.6, 255)):
        for shape in ((16, 16), (16, 16, 3)):
            out = degrade.jpeg(np.full(shape, level / 255, np.float32), 100)
            np.testing.assert_array_equal(np.round(out * 255), expected)



def test_low_light_read_noise_has_std_read_sigma_over_255():
    """A black image collects no photons: the output is read noise alone, std read_sigma / 255 (to 0.3%)."""
    out = degrade.low_light(np.zeros((1000, 1000), np.float32), read_sigma=3.0, seed=0).astype(np.float64)
    assert out.std() == pytest.approx(3.0 / 255, rel=3e-3)
    assert abs(out.mean()) < 1e-4
