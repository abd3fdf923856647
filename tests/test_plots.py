"""Tests of deconvlab.plots: panel counts, metric titles, insets, history curves, PSF and spectrum plots."""

from __future__ import annotations

import json
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from deconvlab import plots, weights  # noqa: E402
from deconvlab.errors import ArgumentError, ImageValueError  # noqa: E402


@pytest.fixture
def clean() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    return np.clip(0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0) + 0.02 * rng.standard_normal((48, 64)),
                   0, 1).astype(np.float32)


def _noisy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return (clean + sigma / 255 * np.random.default_rng(seed).standard_normal(clean.shape)).astype(np.float32)


def _expected_label(reference: np.ndarray, img: np.ndarray) -> str:
    psnr = peak_signal_noise_ratio(reference, img, data_range=1.0)
    ssim = structural_similarity(reference, img, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    return f"PSNR {psnr:.2f} dB / SSIM {ssim:.3f}"


def test_apply_style_sets_the_book_style():
    with matplotlib.rc_context():
        plots.apply_style()
        assert matplotlib.rcParams["image.cmap"] == "gray"
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert matplotlib.rcParams["axes.spines.right"] is False
        assert matplotlib.rcParams["savefig.bbox"] == "tight"
        assert matplotlib.rcParams["figure.dpi"] == 100


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3)])
def test_show_handles_layouts_and_clips_for_display_only(shape):
    img = np.linspace(-0.5, 1.5, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    original = img.copy()
    fig, ax = plt.subplots()
    handle = plots.show(ax, img, "x")
    shown = np.asarray(handle.get_array())
    plt.close(fig)
    assert shown.shape == shape[:2] + ((3,) if shape[-1] == 3 and len(shape) == 3 else ())
    assert shown.min() == 0.0 and shown.max() == 1.0
    assert np.array_equal(img, original)  # the caller's array is untouched
    assert ax.get_title() == "x" and not ax.axison


def test_show_and_compare_scale_integer_images_by_their_dtype(clean):
    # 8- and 16-bit images were clipped to [0, 1] unscaled and showed near white
    for dtype in (np.uint8, np.uint16):
        pixels = np.round(clean * np.iinfo(dtype).max).astype(dtype)
        fig, ax = plt.subplots()
        shown = np.asarray(plots.show(ax, pixels).get_array())
        plt.close(fig)
        np.testing.assert_allclose(shown, clean, atol=0.5 / np.iinfo(dtype).max + 1e-6)
        panel = plots.compare({"a": pixels}).axes[0]
        np.testing.assert_array_equal(panel.images[0].get_array(), shown)


def test_show_rejects_four_channels():
    fig, ax = plt.subplots()
    with pytest.raises(ImageValueError, match="shape"):
        plots.show(ax, np.zeros((4, 4, 4)))
    plt.close(fig)


def test_compare_titles_hold_independent_psnr_ssim(clean):
    noisy15, noisy25 = _noisy(clean, 15, 1), _noisy(clean, 25, 2)
    before = plt.get_fignums()
    fig = plots.compare({"clean": clean, "sigma 15": noisy15, "sigma 25": noisy25}, reference=clean)
    assert plt.get_fignums() == before  # closed to pyplot: shown once in a notebook, never leaked
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "clean"  # the reference panel has no metrics
    assert titles[1] == "sigma 15\n" + _expected_label(clean, noisy15)
    assert titles[2] == "sigma 25\n" + _expected_label(clean, noisy25)
    assert fig._suptitle.get_text().startswith("clean, sigma 15, sigma 25; PSNR/SSIM")


def test_compare_grid_drops_empty_cells_and_zoom_adds_insets(clean, tmp_path):
    images = {f"img{i}": _noisy(clean, 10, i) for i in range(3)}
    fig = plots.compare(images, reference=clean, ncols=2)
    assert len(fig.axes) == 3
    zoomed = plots.compare(images, reference=clean, zoom=(10, 20, 12, 16), title="three noisy copies")
    panels = zoomed.axes
    assert len(panels) == 3  # the insets are child axes of their panel
    for ax in panels:
        assert len(ax.child_axes) == 1
        rects = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(rects) == 1
        assert rects[0].get_width() == 16 and rects[0].get_height() == 12
    inset_pixels = np.asarray(panels[0].child_axes[0].images[0].get_array())
    assert inset_pixels.shape == (12, 16)
    assert np.allclose(inset_pixels, np.clip(images["img0"][10:22, 20:36], 0, 1))
    assert zoomed._suptitle.get_text() == "three noisy copies"
    out = tmp_path / "fig.png"
    zoomed.savefig(out)
    assert out.stat().st_size > 1000


def test_compare_colour_and_size_mismatch(clean):
    rgb = np.stack([clean, clean[::-1], clean[:, ::-1]], axis=-1)
    low_res = rgb[::2, ::2]
    fig = plots.compare({"LR input": low_res, "output": np.clip(rgb + 0.01, 0, 1)}, reference=rgb)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "LR input\n32x24 px"
    expected_psnr = peak_signal_noise_ratio(rgb, np.clip(rgb + 0.01, 0, 1), data_range=1.0)
    assert f"PSNR {expected_psnr:.2f} dB" in titles[1]


def test_compare_tiny_images_get_psnr_only():
    ref = np.full((6, 6), 0.5, dtype=np.float32)
    test = ref + 0.1
    fig = plots.compare({"ref": ref, "test": test}, reference=ref)
    assert fig.axes[1].get_title() == "test\nPSNR 20.00 dB"  # 10 log10(1 / 0.01)


def test_compare_metrics_read_integer_images_on_the_unit_scale(clean):
    # a uint8 panel against a float reference was titled PSNR -43 dB; two uint8 images raised a data_range error
    pixels = np.round(clean * 255).astype(np.uint8)
    noisy = np.round(np.clip(_noisy(clean, 15, 1), 0, 1) * 255).astype(np.uint8)
    titles = [plots.compare({"a": pixels}, reference=clean).axes[0].get_title(),
              plots.compare({"a": noisy}, reference=pixels).axes[0].get_title()]
    assert titles == ["a\n" + _expected_label(clean, pixels / np.float32(255)),
                      "a\n" + _expected_label(pixels / np.float32(255), noisy / np.float32(255))]


def test_compare_rejects_bad_arguments(clean):
    with pytest.raises(ArgumentError, match="at least one"):
        plots.compare({})
    with pytest.raises(ArgumentError, match="not inside"):
        plots.compare({"a": clean}, zoom=(40, 0, 20, 10))
    with pytest.raises(ArgumentError, match=r"\(y, x, h, w\)"):
        plots.compare({"a": clean}, zoom=(0, 0, 5))


def test_plot_history_of_the_json_file_train_writes(tmp_path):
    saved = {"history": {"loss": [0.1, 0.05, 0.02], "val_loss": [0.12, 0.07, 0.03],
                         "psnr": [20.0, 24.0, 26.5], "val_psnr": [19.0, 23.0, 25.0],
                         "learning_rate": [1e-3, 5e-4, 1e-4]},
             "meta": {"model": "red_net"}}
    path = tmp_path / "history.json"
    path.write_text(json.dumps(saved))
    fig = plots.plot_history(weights.load_history(path))
    assert len(fig.axes) == 2  # loss and psnr panels; the learning rate is left out
    loss_ax, psnr_ax = fig.axes
    assert loss_ax.get_title() == "loss" and psnr_ax.get_title() == "psnr"
    ys = [list(line.get_ydata()) for line in loss_ax.lines]
    assert ys == [saved["history"]["loss"], saved["history"]["val_loss"]]
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["training", "validation"]
    assert loss_ax.get_yscale() == "log"
    assert "red_net" in fig._suptitle.get_text()


def test_plot_history_plain_dict_history_object_and_axes():
    class FakeHistory:  # the two attributes of keras.callbacks.History that matter
        history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
        epoch = [0, 1]

    fig = plots.plot_history(FakeHistory(), metrics=("loss",))
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    fig2, ax = plt.subplots()
    out = plots.plot_history({"psnr": [20, 22, 23], "val_psnr": [19, 21, 22]}, ax=ax)
    assert out is fig2 and len(ax.lines) == 2
    plt.close(fig2)
    with pytest.raises(ArgumentError, match="has no val_psnr"):
        plots.plot_history({"loss": [1.0]}, metrics=("val_psnr",))
    with pytest.raises(ArgumentError, match="no per-epoch values"):
        plots.plot_history({"meta": "x"})


def test_plot_history_numbers_a_resumed_fit_from_its_first_epoch_and_takes_numpy_values():
    class ResumedHistory:  # model.fit(initial_epoch=2) records epochs 2 and 3 (0-based)
        history = {"loss": [np.float32(0.4), np.float32(0.3)]}
        epoch = [2, 3]

    fig = plots.plot_history(ResumedHistory())
    assert list(fig.axes[0].lines[0].get_xdata()) == [3, 4]
    fig = plots.plot_history({"loss": np.array([1.0, 0.5])})
    assert list(fig.axes[0].lines[0].get_ydata()) == [1.0, 0.5]
    plt.close("all")


def test_plot_psf_shows_the_kernel_with_a_colour_bar():
    y, x = np.mgrid[-3:4, -3:4]
    psf = np.exp(-(x**2 + y**2) / 2.0)
    psf /= psf.sum()
    fig, ax = plt.subplots()
    assert plots.plot_psf(psf, ax) is fig
    assert len(fig.axes) == 2  # kernel, colour bar
    np.testing.assert_allclose(ax.images[0].get_array(), psf)
    assert "7x7" in ax.get_title() and "sum 1.000" in ax.get_title()
    plt.close(fig)
    with pytest.raises(ImageValueError):
        plots.plot_psf(np.zeros((3, 3, 3)), ax)


def test_spectrum_puts_a_checkerboard_at_half_a_cycle():
    i, j = np.mgrid[0:32, 0:32]
    smooth = 0.5 + 0.1 * np.sin(2 * np.pi * j / 32)
    checker = smooth + 0.05 * (-1.0) ** (i + j)
    mag = plots.spectrum(checker)
    # fftshift puts frequency -1/2 (the Nyquist of an even size) at index 0 of both axes
    assert np.unravel_index(np.argmax(mag), mag.shape) == (0, 0)
    assert plots.spectrum(smooth)[0, 0] < 1e-6
    rgb = np.repeat(checker[..., None], 3, axis=-1)
    assert np.allclose(plots.spectrum(rgb), mag, atol=1e-6)
    fig = plots.plot_spectrum(checker, plt.subplots()[1])
    assert len(fig.axes) == 2  # spectrum and colour bar
    extent = fig.axes[0].images[0].get_extent()
    assert extent[0] == pytest.approx(-16.5 / 32) and extent[1] == pytest.approx(15.5 / 32)
    plt.close(fig)
