"""Small helpers the chapters repeat: result tables, verdicts on measured differences, mean PSNR, ripple measures.

Each function computes exactly what the chapter helper of the same purpose computed; the names say what is
measured (the chapters had three different ``ripple`` and three different ``verdict`` functions).
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ArgumentError


def _cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def numeric_columns(rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    """For each key of the first row: True when every row holds a number there (those columns are right-aligned)."""
    return [all(_is_number(row[k]) for row in rows) for k in rows[0]]


def markdown_table(rows: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """A list of dicts (one per row, same keys) as Markdown text; floats rounded to ``digits``, columns of numbers
    right-aligned. Taught in chapter 4."""
    keys = list(rows[0])
    align = ["---:" if numeric else "---" for numeric in numeric_columns(rows)]
    lines = ["| " + " | ".join(keys) + " |", "|" + "".join(f"{a}|" for a in align)]
    lines += ["| " + " | ".join(_cell(row[k], digits) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def html_table(rows: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """A list of dicts (one per row, same keys) as an HTML table; text escaped, floats rounded, cells of number
    columns of class ``text-right`` (the class MyST gives right-aligned cells, so the book's CSS treats both alike).
    Taught in chapter 1."""
    cls = [' class="text-right"' if numeric else "" for numeric in numeric_columns(rows)]
    head = "".join(f"<th{c}>{_html.escape(key)}</th>" for c, key in zip(cls, rows[0], strict=True))
    body = "".join("<tr>" + "".join(f"<td{c}>{_html.escape(_cell(v, digits))}</td>"
                                    for c, v in zip(cls, row.values(), strict=True))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def grid_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """Rows of preformatted cells under ``header`` as Markdown: first column left-aligned, the others right, or as
    ``align`` says ("l" or "r" per column, e.g. "llrr"). Taught in chapter 5."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align={align!r}: give 'l' or 'r' for each of the {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "".join(":--|" if a == "l" else "--:|" for a in align)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def table(rows: Sequence[Mapping[str, Any]], digits: int = 2, html: bool = False) -> Any:
    """:func:`markdown_table` (or :func:`html_table`) shown as a notebook cell's output. Taught in chapter 4."""
    from IPython.display import HTML, Markdown

    return HTML(html_table(rows, digits)) if html else Markdown(markdown_table(rows, digits))


# ---------------------------------------------------------------------------------------------- verdicts


def metric_agreement(d_psnr: float, d_ssim: float) -> str:
    """'helps' when PSNR and SSIM both rise, 'hurts' when both fall, else 'mixed'. Taught in chapter 1."""
    return "helps" if d_psnr > 0 and d_ssim > 0 else "hurts" if d_psnr < 0 and d_ssim < 0 else "mixed"


#: The book's tie margin for models trained once (no seed spread measured): a PSNR difference under 0.05 dB is a
#: tie (chapter 5). Where a spread is measured, a difference must exceed it as well (:func:`difference_verdict`).
TIE_DB = 0.05


def difference_verdict(diff_db: float, spread_db: float | None = None, tie_db: float = TIE_DB) -> str:
    """'ahead' or 'behind' when a PSNR difference counts, 'tie' when it does not. Taught on the results page.

    A difference counts only when it is at least ``tie_db`` and larger than the measured spread ``spread_db``
    (None when nothing was measured, e.g. one training run per model): 0.03 dB is a tie, 0.05 dB counts.
    Pass the difference of the numbers as shown (rounded to 0.01 dB) so that readers can check it by hand.
    A NaN or infinite difference or spread raises ArgumentError.
    """
    # NaN fails every comparison below: a NaN difference would read as 'behind', a NaN spread as counting
    for name, value in (("diff_db", diff_db), ("spread_db", 0.0 if spread_db is None else spread_db)):
        if not math.isfinite(float(value)):
            raise ArgumentError(f"{name}={value!r}: pass a finite number of dB; check the scores it came from")
    margin = round(abs(float(diff_db)), 9)  # 29.27 - 29.22 is 0.0500000000000007 in binary floating point
    if margin < tie_db or (spread_db is not None and margin <= spread_db):
        return "tie"
    return "ahead" if diff_db > 0 else "behind"


def pooled_std(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pooled sample standard deviation of two groups of runs (None if either has fewer than 2 values).

    The book's rule for seeded verdicts: a difference of means counts only beyond twice this. Taught in chapter 5.
    """
    if len(x) < 2 or len(y) < 2:
        return None
    ss = (len(x) - 1) * np.var(x, ddof=1) + (len(y) - 1) * np.var(y, ddof=1)
    return float(np.sqrt(ss / (len(x) + len(y) - 2)))


def mean_pm(values: Sequence[float], digits: int = 2) -> str:
    """'mean ± std' of runs (sample std), or the value alone when there is one (a deterministic baseline).
    Taught in chapter 5."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def signed_difference(diff_db: float, spread_db: float | None = None) -> str:
    """A difference as shown in the book's result tables and figure: '+0.04 tie', '-0.10 behind', '+1.55 ahead'."""
    return f"{diff_db:+.2f} {difference_verdict(diff_db, spread_db)}"


def anchor_verdict(ours: float, bm3d: float, dncnn: float, spread_db: float | None = None) -> str:
    """Where a PSNR falls against the published BM3D and DnCNN-S numbers, by :func:`difference_verdict`.

    ``spread_db``: the measured spread of the recipe (chapter 4 passes :func:`deconvlab.claims.recipe_spread`),
    so a margin inside it is a tie, not a win. Taught in chapter 4.
    """
    vs_dncnn = difference_verdict(round(ours - dncnn, 2), spread_db)
    if vs_dncnn != "behind":
        return "above DnCNN-S" if vs_dncnn == "ahead" else "tie with DnCNN-S"
    vs_bm3d = difference_verdict(round(ours - bm3d, 2), spread_db)
    return {"ahead": "between BM3D and DnCNN-S", "tie": "tie with BM3D", "behind": "below BM3D"}[vs_bm3d]


# ---------------------------------------------------------------------------------------------- measures


def mean_psnr(references: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float:
    """Mean over image pairs of :func:`deconvlab.metrics.psnr` (the papers' per-image mean). Taught in chapter 6."""
    from .metrics import psnr

    return float(np.mean([psnr(r, o) for r, o in zip(references, outputs, strict=True)]))


def model_psnr(model: Any, clean_images: Iterable[np.ndarray], degraded_images: Iterable[np.ndarray]) -> float:
    """:func:`mean_psnr` of a model's outputs, each clipped to [0, 1], against the clean images. Taught in chapter 1."""
    from .infer import predict_image

    outputs = [np.clip(predict_image(model, x), 0, 1) for x in degraded_images]
    return mean_psnr(clean_images, outputs)


def peak_to_peak_gray_levels(model: Any, flat: np.ndarray, border: int) -> float:
    """Peak-to-peak ripple (0-255 gray levels) of a model's output on a flat input, ``border`` pixels from each
    edge left out; a perfect upsampler answers a flat image with a flat one (0). Taught in chapter 2."""
    import keras

    out = keras.ops.convert_to_numpy(model(flat))[0, :, :, 0]
    out = out[border : out.shape[0] - border, border : out.shape[1] - border]
    return 255 * float(out.max() - out.min())


def flat_response(model: Any, flat: np.ndarray, margin: int) -> tuple[np.ndarray, float]:
    """(output crop, its standard deviation) of a model on a flat input, ``margin`` pixels from the borders left
    out (they see the zero padding); the standard deviation measures the pattern the operator adds. Taught in chapter 5."""
    from .infer import predict_image

    out = predict_image(model, flat)[0, ..., 0]
    out = out[margin : out.shape[0] - margin, margin : out.shape[1] - margin]  # [m:-m] is empty for m = 0
    return out, float(out.std())


def relative_ripple(out: np.ndarray) -> float:
    """Peak-to-peak of an operator's response to a flat input, relative to its largest magnitude. Taught in chapter 6."""
    return float((out.max() - out.min()) / np.abs(out).max())
