"""Tests of deconvlab.classical: every baseline improves a degraded image; the tuners pick a candidate."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from deconvlab import classical, degrade
from deconvlab.errors import ArgumentError, ImageValueError
from deconvlab.metrics import psnr

CAMERA = data.camera()[64:160, 160:256].astype(np.float32) / 255.0  # 96x96: tripod, coat and sky
ASTRONAUT = data.astronaut()[40:104, 180:244].astype(np.float32) / 255.0  # 64x64 colour: face
PSF = degrade.gaussian_psf(degrade.DEBLUR_PSF_SIGMA, degrade.DEBLUR_PSF_SIZE)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- denoising


@pytest.mark.parametrize(("denoise", "gain"), [
    (classical.nlm_denoise, 5.0), (classical.tv_denoise, 5.0), (classical.wavelet_denoise, 4.0),
])
def test_denoisers_improve_psnr_at_sigma_25(denoise, gain):
    noisy = degrade.add_gaussian_noise(CAMERA, 25, seed=0)
    out = denoise(noisy, 25)
    assert out.shape == CAMERA.shape and out.dtype == np.float32
    assert psnr(CAMERA, out) > psnr(CAMERA, noisy) + gain


def test_bm3d_beats_the_other_denoisers_on_gray_and_colour():
    gray = CAMERA[:64, :64]
    noisy = degrade.add_gaussian_noise(gray, 25, seed=0)
    scores = {f.__name__: psnr(gray, f(noisy, 25)) for f in (classical.bm3d_denoise, classical.wavelet_denoise)}
    assert scores["bm3d_denoise"] > psnr(gray, noisy) + 6
    assert scores["bm3d_denoise"] > scores["wavelet_denoise"]
    noisy_rgb = degrade.add_gaussian_noise(ASTRONAUT, 25, seed=1)
    out = classical.bm3d_denoise(noisy_rgb, 25)
    assert out.shape == (64, 64, 3)
    assert psnr(ASTRONAUT, out) > psnr(ASTRONAUT, noisy_rgb) + 6


@pytest.mark.parametrize("denoise", [classical.nlm_denoise, classical.tv_denoise, classical.wavelet_denoise])
def test_denoisers_work_on_colour_and_keep_layouts(denoise):
    noisy = degrade.add_gaussian_noise(ASTRONAUT, 25, seed=2)
    out = denoise(noisy, 25)
    assert out.shape == ASTRONAUT.shape
    assert psnr(ASTRONAUT, out) > psnr(ASTRONAUT, noisy) + 4
    assert denoise(noisy[..., :1], 25).shape == (64, 64, 1)
    np.testing.assert_array_equal(denoise(CAMERA, 0), CAMERA)  # no noise: nothing to remove


def test_tv_weight_grows_with_sigma():
    assert classical.tv_weight(0) == 0
    assert classical.tv_weight(25) == pytest.approx((0.6 + 0.15) * 25 / 255)
    assert classical.tv_weight(15) < classical.tv_weight(25) < classical.tv_weight(50)


@pytest.mark.parametrize("sigma", [-5, float("nan"), "25", None])
def test_denoisers_reject_bad_sigma(sigma):
    with pytest.raises(ArgumentError) as err:
        classical.nlm_denoise(CAMERA, sigma)
    assert "sigma" in one_line(err)


def test_denoisers_reject_bad_images():
    with pytest.raises(ImageValueError):
        classical.tv_denoise(np.full((8, 8), np.nan), 25)
    with pytest.raises(ImageValueError):
        classical.wavelet_denoise(np.zeros((2, 8, 8, 1)), 25)
    with pytest.raises(ImageValueError) as err:
        classical.bm3d_denoise(np.zeros((4, 30)), 25)
    assert "8x8" in one_line(err)


# ---------------------------------------------------------------------------------------------- deconvolution


def test_wiener_and_rl_improve_a_blurred_image():
    blurred = degrade.add_gaussian_noise(degrade.blur(CAMERA, PSF), degrade.DEBLUR_NOISE_SIGMA, seed=0)
    base = psnr(CAMERA, blurred)
    wiener = classical.wiener_deconv(blurred, PSF)
    rl = classical.richardson_lucy_deconv(blurred, PSF)
    assert wiener.shape == rl.shape == CAMERA.shape
    assert psnr(CAMERA, np.clip(wiener, 0, 1)) > base + 1.5
    assert psnr(CAMERA, np.clip(rl, 0, 1)) > base + 1.5


@pytest.mark.parametrize("odd_psf", [degrade.motion_psf(3, 0), degrade.motion_psf(7, 30)])
def test_even_sized_psfs_restore_like_the_same_blur_at_an_odd_size(odd_psf):
    # blur() centres an even kernel at index n // 2; a trailing zero row and column is the same blur
    psf = np.pad(odd_psf, ((1, 0), (1, 0)))  # 6x6 and 10x10 (motion_psf itself refuses even sizes)
    odd = np.pad(psf, ((0, 1), (0, 1)))
    blurred = degrade.blur(CAMERA, psf)
    np.testing.assert_allclose(degrade.blur(CAMERA, odd), blurred, atol=1e-6)
    for restore in (classical.wiener_deconv, classical.richardson_lucy_deconv):
        np.testing.assert_allclose(restore(blurred, psf), restore(blurred, odd), atol=1e-5)
    assert psnr(CAMERA, np.clip(classical.richardson_lucy_deconv(blurred, psf), 0, 1)) > psnr(CAMERA, blurred)


def test_deconvolution_of_colour_and_the_balance_trade_off():
    blurred = degrade.blur(ASTRONAUT, PSF)
    base = psnr(ASTRONAUT, blurred)
    assert psnr(ASTRONAUT, classical.wiener_deconv(blurred, PSF, 0.01)) > base + 1
    assert psnr(ASTRONAUT, classical.richardson_lucy_deconv(blurred, PSF, 20)) > base + 1
    noisy = degrade.add_gaussian_noise(degrade.blur(CAMERA, PSF), 10, seed=3)
    # With strong noise a tiny balance amplifies it: the result is worse than with a moderate one.
    assert psnr(CAMERA, classical.wiener_deconv(noisy, PSF, 1e-4)) < psnr(CAMERA, classical.wiener_deconv(noisy, PSF, 0.03))


def test_deconvolution_argument_errors():
    for bad in (0, -1, "0.1"):
        with pytest.raises(ArgumentError) as err:
            classical.wiener_deconv(CAMERA, PSF, bad)
        assert "balance" in one_line(err)
    for bad in (0, 2.5):
        with pytest.raises(ArgumentError):
            classical.richardson_lucy_deconv(CAMERA, PSF, bad)
    with pytest.raises(ArgumentError, match="positive sum"):
        classical.wiener_deconv(CAMERA, np.zeros((3, 3)))
    with pytest.raises(ArgumentError, match="positive sum"):
        classical.wiener_deconv(CAMERA, -PSF)
    np.testing.assert_allclose(classical.wiener_deconv(CAMERA, 2 * PSF), classical.wiener_deconv(CAMERA, PSF))


def test_tuners_return_a_candidate():
    train = [CAMERA[:48, :48], CAMERA[48:, 48:]]
    balances = (1e-4, 3e-3, 0.3)
    best, scores = classical.tune_wiener_balance(train, PSF, candidates=balances, return_scores=True)
    assert best in balances and set(scores) == set(balances)
    assert scores[best] == max(scores.values())
    assert best == 3e-3  # the extremes under- and over-regularise at sigma 2
    iterations = classical.tune_rl_iterations(train, PSF, candidates=(2, 30))
    assert iterations == 30  # two steps barely sharpen
    with pytest.raises(ArgumentError):
        classical.tune_rl_iterations(train, PSF, candidates=())
    with pytest.raises(ArgumentError):
        classical.tune_wiener_balance([], PSF)


# ---------------------------------------------------------------------------------------------- enhancement


def test_histogram_equalize_stretches_a_low_contrast_image():
    low = 0.4 + 0.2 * CAMERA
    out = classical.histogram_equalize(low)
    assert out.min() < 0.05 and out.max() == pytest.approx(1.0)
    order = np.argsort(low.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # a monotone mapping of the grey levels
    colour = classical.histogram_equalize(0.4 + 0.2 * ASTRONAUT)
    assert colour.shape == ASTRONAUT.shape and colour.max() > 0.9
    with pytest.raises(ArgumentError):
        classical.histogram_equalize(low, nbins=1)


def test_clahe_raises_local_contrast():
    low = 0.4 + 0.2 * CAMERA
    out = classical.clahe(low)
    assert out.shape == low.shape and 0 <= out.min() and out.max() <= 1
    assert out.std() > 2 * low.std()
    assert classical.clahe(ASTRONAUT, clip_limit=0.02).shape == ASTRONAUT.shape
    with pytest.raises(ArgumentError):
        classical.clahe(low, clip_limit=0)


def test_unsharp_mask_overshoots_edges_and_keeps_flat_areas():
    step = np.zeros((16, 16), dtype=np.float32)
    step[:, 8:] = 0.8
    step += 0.1
    out = classical.unsharp_mask(step, radius=1.0, amount=1.0)
    assert out[:, 8].mean() > 0.9 and out[:, 7].mean() < 0.1  # overshoot on both sides of the edge
    np.testing.assert_allclose(out[:, 0], 0.1, atol=1e-6)
    np.testing.assert_allclose(classical.unsharp_mask(step, amount=0), step, atol=1e-6)
    assert classical.unsharp_mask(ASTRONAUT).shape == ASTRONAUT.shape
    with pytest.raises(ArgumentError):
        classical.unsharp_mask(step, radius=-1)
