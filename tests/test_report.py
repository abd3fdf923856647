"""deconvlab.report computes what the chapters' own helpers computed (their definitions are copied here verbatim)."""

from __future__ import annotations

import html

import keras
import numpy as np
import pytest

from deconvlab import infer, metrics, models, report
from deconvlab.errors import ArgumentError

RNG = np.random.default_rng(3)
ROWS = [{"method": "BM3D <fast>", "PSNR (dB)": 28.5712, "images": 68},
        {"method": "RED-Net & co", "PSNR (dB)": 29.1, "images": 68}]


# ----------------------------------------------------------------------- the chapters' helpers, as they were


def chapter1_table(rows, digits=2):
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(key)}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def chapter4_table(rows, digits=2):
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def chapter5_md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|:--|" + "--:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def chapter1_verdict(d_psnr, d_ssim):
    return "helps" if d_psnr > 0 and d_ssim > 0 else "hurts" if d_psnr < 0 and d_ssim < 0 else "mixed"


def chapter4_verdict(ours, bm3d, dncnn, spread=None):
    vs_dncnn = report.difference_verdict(round(ours - dncnn, 2), spread)
    if vs_dncnn == "ahead":
        return "above DnCNN-S"
    if vs_dncnn == "tie":
        return "tie with DnCNN-S"
    vs_bm3d = report.difference_verdict(round(ours - bm3d, 2), spread)
    return {"ahead": "between BM3D and DnCNN-S", "tie": "tie with BM3D", "behind": "below BM3D"}[vs_bm3d]


# ----------------------------------------------------------------------------------------------- tests


def right_aligned_md(text):
    """chapter 4's table with the number columns of ROWS (the 2nd and 3rd) right-aligned."""
    return text.replace("|---|---|---|", "|---|---:|---:|", 1)


def right_aligned_html(text):
    """chapter 1's table with every cell after the first of a row (ROWS's number columns) of class text-right."""
    return (text.replace("</th><th>", '</th><th class="text-right">')
            .replace("</td><td>", '</td><td class="text-right">'))


def test_tables_match_the_chapter_helpers_with_numbers_right_aligned():
    for digits in (1, 2, 4):
        assert report.html_table(ROWS, digits) == right_aligned_html(chapter1_table(ROWS, digits))
        assert report.markdown_table(ROWS, digits) == right_aligned_md(chapter4_table(ROWS, digits))
    assert "&lt;fast&gt;" in report.html_table(ROWS) and "28.57" in report.markdown_table(ROWS)
    assert report.html_table(ROWS).count('class="text-right"') == 2 * (1 + len(ROWS))
    rows = [["red_net", "29.10", 0.5], ["bm3d", "28.57", 12]]
    assert report.grid_table(["method", "PSNR", "seconds"], rows) == chapter5_md_table(["method", "PSNR", "seconds"], rows)
    assert report.grid_table(["method", "PSNR", "seconds"], rows, align="lrl").splitlines()[1] == "|:--|--:|:--|"
    with pytest.raises(ValueError):
        report.grid_table(["method", "PSNR"], rows, align="lrr")
    assert report.table(ROWS).data == right_aligned_md(chapter4_table(ROWS))
    assert report.table(ROWS, html=True).data == right_aligned_html(chapter1_table(ROWS))


def test_a_column_is_numeric_only_when_every_row_holds_a_number():
    rows = [{"a": 1, "b": 2.5, "c": "x", "d": True, "e": np.float32(1.5)},
            {"a": 2, "b": "n/a", "c": "y", "d": False, "e": np.int64(3)}]
    assert report.numeric_columns(rows) == [True, False, False, False, True]
    assert report.markdown_table(rows).splitlines()[1] == "|---:|---|---|---|---:|"


@pytest.mark.parametrize(("diff", "verdict"), [(0.0, "tie"), (0.03, "tie"), (-0.04, "tie"), (0.05, "ahead"),
                                               (-0.05, "behind"), (0.12, "ahead"), (-1.0, "behind")])
def test_difference_verdict_ties_below_the_margin(diff, verdict):
    assert report.difference_verdict(diff) == verdict
    assert report.signed_difference(diff) == f"{diff:+.2f} {verdict}"


def test_difference_verdict_on_shown_numbers_and_a_measured_spread():
    # differences of two-decimal numbers are not exact in binary: 29.27 - 29.22 must count as 0.05
    assert report.difference_verdict(29.27 - 29.22) == "ahead" and report.difference_verdict(26.18 - 26.23) == "behind"
    assert report.difference_verdict(0.08, spread_db=0.1) == "tie"  # within the measured spread
    assert report.difference_verdict(0.12, spread_db=0.1) == "ahead"
    assert report.difference_verdict(0.08, spread_db=0.01) == "ahead"  # the margin still applies below it
    assert report.difference_verdict(0.03, spread_db=0.01) == "tie"
    assert report.difference_verdict(0.03, tie_db=0.02) == "ahead"


@pytest.mark.parametrize("diff", [float("nan"), np.float64("nan"), float("inf"), -float("inf")])
def test_difference_verdict_refuses_a_non_finite_difference(diff):
    # NaN (a failed score upstream) fails every comparison and came back as "behind"
    with pytest.raises(ArgumentError) as err:
        report.difference_verdict(diff)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("diff_db=") and "finite" in msg
    with pytest.raises(ArgumentError):
        report.signed_difference(diff)
    with pytest.raises(ArgumentError, match="spread_db="):  # a NaN spread made any difference count
        report.difference_verdict(0.2, spread_db=diff)


def test_pooled_std_and_mean_pm_match_chapter_5s_rule():
    """Equal groups: the pooled std is the root mean of the variances (chapter 5's two-seed-set case)."""
    a, b = [35.04, 34.90, 35.19], [34.93, 34.64, 35.22]
    assert report.pooled_std(a, b) == pytest.approx(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))
    assert report.pooled_std([1.0, 3.0], [2.0, 2.0, 2.0]) == pytest.approx(np.sqrt(2 / 3))  # unequal sizes
    assert report.pooled_std([1.0], b) is None
    assert report.mean_pm([1.0, 2.0, 3.0]) == "2.00 ± 1.00"
    assert report.mean_pm([0.9061], 3) == "0.906"  # one deterministic value: no "± 0"


@pytest.mark.parametrize("d_psnr", [-0.3, 0.0, 0.2])
@pytest.mark.parametrize("d_ssim", [-0.01, 0.0, 0.02])
def test_metric_agreement(d_psnr, d_ssim):
    assert report.metric_agreement(d_psnr, d_ssim) == chapter1_verdict(d_psnr, d_ssim)


@pytest.mark.parametrize("gain", [-0.5, -0.1, -0.05, 0.0, 0.09, 0.1, 0.7])
def test_anchor_verdicts(gain):
    ours = 28.0 + 10 * gain
    for spread in (None, 0.14):
        assert report.anchor_verdict(ours, 28.57, 29.23, spread) == chapter4_verdict(ours, 28.57, 29.23, spread)
    assert {report.anchor_verdict(x, 28.57, 29.23) for x in (27.0, 28.6, 29.0, 29.26, 30.0)} == {
        "below BM3D", "tie with BM3D", "between BM3D and DnCNN-S", "tie with DnCNN-S", "above DnCNN-S"}
    # the shipped sigma-25 card's +0.04 dB over DnCNN-S is no win
    assert report.anchor_verdict(29.27, 28.57, 29.23) == "tie with DnCNN-S"
    assert report.anchor_verdict(29.31, 28.57, 29.23, spread_db=0.14) == "tie with DnCNN-S"


def test_mean_psnr_and_model_psnr():
    clean = [RNG.random((12, 10)).astype(np.float32) for _ in range(3)]
    noisy = [np.clip(c + RNG.normal(0, 0.1, c.shape), 0, 1).astype(np.float32) for c in clean]
    # chapter 6: the mean over images of per-image PSNR
    assert report.mean_psnr(clean, noisy) == float(np.mean([metrics.psnr(t, o) for t, o in zip(clean, noisy, strict=True)]))
    # chapter 1: a model's outputs, clipped to [0, 1]
    model = models.plain_cnn(depth=2, width=4)
    expected = float(np.mean([metrics.psnr(c, np.clip(infer.predict_image(model, n), 0, 1))
                              for c, n in zip(clean, noisy, strict=True)]))
    assert report.model_psnr(model, clean, noisy) == expected
    with pytest.raises(ValueError):
        report.mean_psnr(clean, noisy[:2])


def test_ripple_measures():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    up = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", use_bias=False)
    model = keras.Model(inputs, up(inputs))
    flat = np.full((1, 32, 32, 1), 0.5, "float32")
    # chapter 2: peak-to-peak of the centre 32x32 of the 64x64 output, in gray levels
    out = keras.ops.convert_to_numpy(model(flat))[0, 16:48, 16:48, 0]
    assert report.peak_to_peak_gray_levels(model, flat, border=16) == 255 * float(out.max() - out.min()) > 0
    # chapter 5: the crop and its standard deviation
    crop, std = report.flat_response(model, flat, margin=8)
    expected = infer.predict_image(model, flat)[0, 8:-8, 8:-8, 0]
    np.testing.assert_array_equal(crop, expected)
    assert std == float(expected.std()) > 0
    # margin 0 keeps the whole output (the slice [0:-0] was empty: a NaN standard deviation)
    crop, std = report.flat_response(model, flat, margin=0)
    np.testing.assert_array_equal(crop, infer.predict_image(model, flat)[0, :, :, 0])
    assert crop.shape == (64, 64) and std == float(crop.std()) > 0
    # chapter 6: peak-to-peak relative to the largest magnitude; a flat response has none
    response = RNG.normal(size=(9, 9))
    assert report.relative_ripple(response) == float((response.max() - response.min()) / np.abs(response).max())
    assert report.relative_ripple(np.full((4, 4), 0.3)) == 0.0
