"""One figure style for the whole book: image grids with PSNR/SSIM titles, zoomed insets, training curves.

Taught in chapter 1 (notebooks/01_background) and used in every chapter after it.

Figures are created through pyplot (so a notebook's inline backend is set up) and then closed to pyplot
before they are returned: a cell that ends with ``compare(...)`` shows the figure exactly once, and a
script keeps no figure alive by accident. Save one with ``fig.savefig(path)``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .errors import ArgumentError, ImageValueError
from .io import unit_float

PANEL_INCHES = 3.2  # width of one image panel: four panels fit the book's text column at dpi 100

STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.cmap": "gray",
    # Nearest-neighbour display: a checkerboard or a one-pixel artifact must not be smoothed away.
    "image.interpolation": "nearest",
    "image.origin": "upper",
    "lines.linewidth": 1.5,
}


def apply_style() -> None:
    """Set the book's matplotlib style globally (figure sizes, fonts, gray colormap, no top/right spines).

    Taught in chapter 1 (notebooks/01_background).
    """
    mpl.rcParams.update(STYLE)


def style() -> contextlib.AbstractContextManager[None]:
    """The book's style for the figures made inside the ``with`` block only (the helpers here use it)."""
    return mpl.rc_context(STYLE)


def _planes(img: np.ndarray, dtype: Any = None) -> np.ndarray:
    """``img`` as an array without a trailing channel of 1."""
    arr = np.asarray(img, dtype=dtype)
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def _display_array(img: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) as a float array clipped to [0, 1] for display; metrics use the original."""
    arr = _planes(img)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3) or arr.size == 0:
        raise ImageValueError(
            f"{name} has shape {np.shape(img)}; pass a non-empty (H, W), (H, W, 1) or (H, W, 3) array"
        )
    arr = np.asarray(unit_float(arr), dtype=np.float32)  # 8- and 16-bit pixels over their maximum, as io reads them
    # NaN shows as black rather than breaking imshow's normalisation.
    return np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def show(ax: Axes, img: np.ndarray, title: str | None = None) -> AxesImage:
    """Draw one image on ``ax`` (gray or RGB, clipped to [0, 1] for display only), axes off.

    Taught in chapter 2 (notebooks/02_core_concepts).
    """
    arr = _display_array(img, title or "image")
    handle = ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0.0, vmax=1.0,
                       interpolation="nearest")
    if title:
        ax.set_title(title)
    ax.set_axis_off()
    return handle


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)  # see the module docstring: shown once by the notebook, never leaked by pyplot
    return fig


def _metrics_label(img: np.ndarray, reference: np.ndarray) -> str | None:
    """'PSNR xx.xx dB / SSIM 0.xxx' of ``img`` against ``reference``, None when they cannot be compared."""
    from . import metrics

    a, b = _planes(img), _planes(reference)
    if a.shape != b.shape:
        return None  # e.g. the low-resolution input of a super-resolution figure
    # read as the package reads images (8/16-bit over their maximum): metrics then compare both on [0, 1]
    a32, b32 = (np.asarray(unit_float(x), dtype=np.float32) for x in (a, b))
    label = f"PSNR {metrics.psnr(b32, a32):.2f} dB"
    if min(a.shape[:2]) < 11:
        return label  # smaller than SSIM's 11x11 Gaussian window: PSNR only
    return f"{label} / SSIM {metrics.ssim(b32, a32):.3f}"


def _check_zoom(zoom: Sequence[int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(zoom) != 4:
        raise ArgumentError(f"zoom must be (y, x, h, w), got {zoom!r}")
    y, x, h, w = (int(v) for v in zoom)
    height, width = shape[:2]
    if h <= 0 or w <= 0 or y < 0 or x < 0 or y + h > height or x + w > width:
        raise ArgumentError(
            f"zoom region (y={y}, x={x}, h={h}, w={w}) is not inside the {height}x{width} image; "
            "pass a region with y + h <= height and x + w <= width"
        )
    return y, x, h, w


def _add_zoom(ax: Axes, img: np.ndarray, region: tuple[int, int, int, int]) -> Axes:
    """A zoomed inset in the lower-right corner of ``ax`` and a rectangle marking the region."""
    y, x, h, w = region
    arr = _display_array(img)
    inset = ax.inset_axes((0.58, 0.0, 0.42, 0.42))
    inset.imshow(arr[y:y + h, x:x + w], cmap="gray" if arr.ndim == 2 else None, vmin=0.0, vmax=1.0,
                 interpolation="nearest")
    inset.set(xticks=[], yticks=[])
    for spine in inset.spines.values():
        spine.set(visible=True, edgecolor="tab:red", linewidth=1.2)
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="tab:red", linewidth=1.2))
    return inset


def compare(
    images: Mapping[str, np.ndarray],
    reference: np.ndarray | None = None,
    zoom: tuple[int, int, int, int] | None = None,
    ncols: int | None = None,
    title: str | None = None,
) -> Figure:
    """A grid of images titled with their name and PSNR/SSIM against ``reference``, with zoomed insets.

    The reference's own panel (the same array object, or one equal to it) gets no metrics. Metrics use
    the arrays as given (a noisy input is not clipped); only the display is clipped to [0, 1]. Panels
    whose shape differs from the reference (an SR input) are titled with their size instead.
    Taught in chapter 1 (notebooks/01_background).
    """
    if not images:
        raise ArgumentError("compare() needs at least one image: pass a dict {name: array}")
    names = list(images)
    arrays = [np.asarray(images[name]) for name in names]
    n = len(names)
    ncols = min(n, 4) if ncols is None else int(ncols)
    if ncols < 1:
        raise ArgumentError(f"ncols must be >= 1, got {ncols}")
    nrows = math.ceil(n / ncols)
    zoom_shape = (reference if reference is not None else arrays[0]).shape[:2]
    region = None if zoom is None else _check_zoom(zoom, zoom_shape)

    shape = arrays[0].shape
    aspect = shape[0] / max(shape[1], 1)
    title_lines = 2 if reference is not None else 1
    fig = _new_figure((PANEL_INCHES * ncols, (PANEL_INCHES * aspect + 0.22 * title_lines) * nrows + 0.3))
    with style():
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[n:]:
            fig.delaxes(ax)  # the grid's empty cells would otherwise count as (blank) panels
        for ax, name, arr in zip(axes, names, arrays, strict=False):
            label = name
            if reference is not None and not (arr is reference or np.array_equal(arr, reference)):
                metric = _metrics_label(arr, reference)
                size = f"{arr.shape[1]}x{arr.shape[0]} px"
                label = f"{name}\n{metric if metric is not None else size}"
            show(ax, arr, label)
            if region is not None and arr.shape[:2] == zoom_shape:
                _add_zoom(ax, arr, region)
        # Wrapped to the figure width: a long suptitle would otherwise be cut off at the figure edge.
        chars = max(int(fig.get_figwidth() * 11), 30)
        fig.suptitle(textwrap.fill(title or _default_title(names, reference is not None, region), chars))
    return fig


def _default_title(names: list[str], has_reference: bool, region: tuple[int, ...] | None) -> str:
    """A sentence that can double as alt text: what is shown, and what the numbers mean."""
    text = ", ".join(names)
    if has_reference:
        text += "; PSNR/SSIM against the reference"
    if region is not None:
        y, x, h, w = region
        text += f"; insets: the {h}x{w} region at row {y}, column {x} (red box)"
    return text


def _load_history(history: Any) -> tuple[dict[str, list[float]], dict[str, Any], int]:
    """(metric -> per-epoch values, metadata, number of the first epoch) from a keras History or a dict."""
    meta: dict[str, Any] = {}
    first = 1
    if hasattr(history, "history") and not isinstance(history, Mapping):  # keras.callbacks.History
        meta.update(getattr(history, "meta", None) or {})  # deconvlab.train.train attaches its metadata
        first = (getattr(history, "epoch", None) or [0])[0] + 1  # a resumed fit starts after epoch 1
        history = dict(history.history)
    if not isinstance(history, Mapping):
        raise ArgumentError(f"cannot plot a history of type {type(history).__name__}; pass a keras History or a "
                            "dict (for the JSON file train() writes: weights.load_history(path))")
    if "history" in history and isinstance(history["history"], Mapping):
        meta.update(history.get("meta") or {})
        history = history["history"]
    curves = {
        str(k): [float("nan") if v is None else float(v) for v in values]
        for k, values in ((k, v.tolist() if isinstance(v, np.ndarray) else v) for k, v in history.items())
        if isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0
        and all(v is None or isinstance(v, numbers.Real) for v in values)  # NumPy scalars too
    }
    if not curves:
        raise ArgumentError("the history has no per-epoch values to plot; train for at least one epoch")
    return curves, meta, first


def plot_history(
    history: Any,
    metrics: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Training curves (one panel per quantity, training and validation together) from a keras History,
    or a dict ({metric: [...]}, or {"history": {...}, "meta": {...}} as ``weights.load_history`` reads it).

    ``metrics=None`` plots every quantity (``loss`` with ``val_loss`` and so on); the learning rate is left out
    unless asked for. Taught in chapter 3 (notebooks/03_conv_deconv_fuse).
    """
    curves, meta, first = _load_history(history)
    if metrics is None:
        names = [k for k in curves if k not in ("learning_rate", "lr", "epoch")] or list(curves)
    else:
        names = list(metrics)
        missing = [m for m in names if m not in curves]
        if missing:
            raise ArgumentError(
                f"the history has no {', '.join(missing)}; it has {', '.join(sorted(curves))}"
            )
    # Group 'x' with 'val_x' so each panel compares training and validation.
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.removeprefix("val_"), []).append(name)

    fig = ax.figure if ax is not None else _new_figure((min(4.2 * len(groups), 12.8), 3.2))
    with style():
        panels = [ax] * len(groups) if ax is not None else fig.subplots(1, len(groups), squeeze=False).ravel()
        for panel, (base, members) in zip(panels, groups.items(), strict=True):
            for name in members:
                values = curves[name]
                # on the caller's axes several quantities may share one panel: each is labelled by its name
                label = name if ax is not None else "validation" if name.startswith("val_") else "training"
                panel.plot(np.arange(first, first + len(values)), values, marker="o" if len(values) < 30 else None,
                           markersize=3, label=label)
            panel.set_xlabel("epoch")
            panel.xaxis.set_major_locator(MaxNLocator(integer=True))
            unit = " (dB)" if "psnr" in base.lower() else ""
            panel.set_ylabel(base + unit if ax is None else "value")
            if ax is None:
                panel.set_title(base)
            if base in ("loss", "mse", "mae") and all(
                v > 0 for m in members for v in curves[m] if not math.isnan(v)
            ):
                panel.set_yscale("log")  # losses fall by orders of magnitude; a log axis shows the tail
            panel.legend()
        if ax is None:
            label = meta.get("model") or meta.get("name")
            fig.suptitle(f"Training curves of {label}" if label else "Training curves per epoch")
    return fig


def plot_psf(psf: np.ndarray, ax: Axes, title: str | None = None) -> Figure:
    """A point-spread function as an image with a colour bar, drawn on ``ax``.

    Taught in chapter 1 (notebooks/01_background).
    """
    kernel = np.asarray(psf, dtype=np.float64)
    if kernel.ndim != 2 or kernel.size == 0 or not np.all(np.isfinite(kernel)):
        raise ImageValueError(f"a PSF must be a finite, non-empty 2-D array; got shape {kernel.shape}")
    with style():
        handle = ax.imshow(kernel, cmap="viridis", interpolation="nearest")
        ax.set(xticks=[], yticks=[], title=title or f"PSF {kernel.shape[0]}x{kernel.shape[1]}, sum {kernel.sum():.3f}")
        ax.grid(False)
        ax.figure.colorbar(handle, ax=ax, shrink=0.8)
    return ax.figure


def spectrum(img: np.ndarray) -> np.ndarray:
    """log(1 + |FFT|) of the image (luma for colour), centred so the zero frequency is in the middle.

    Taught in chapter 2 (notebooks/02_core_concepts).
    """
    arr = _planes(img, np.float64)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr @ np.array([0.299, 0.587, 0.114])
    if arr.ndim != 2 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ImageValueError(f"spectrum needs a finite (H, W) or (H, W, 3) image, got shape {np.shape(img)}")
    # Removing the mean keeps the DC peak from flattening the colour scale of everything else.
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(arr - arr.mean()))))


def plot_spectrum(img: np.ndarray, ax: Axes, title: str | None = None) -> Figure:
    """Log magnitude of the centred FFT; a checkerboard artifact shows as bright peaks at +-1/2 cycle/pixel.

    Taught in chapter 2 (notebooks/02_core_concepts).
    """
    mag = spectrum(img)
    h, w = mag.shape
    # fftshift puts frequency k/n at index k + n//2; the extent centres each pixel on its frequency.
    extent = (
        (-(w // 2) - 0.5) / w, (w - w // 2 - 0.5) / w,
        (h - h // 2 - 0.5) / h, (-(h // 2) - 0.5) / h,
    )
    with style():
        handle = ax.imshow(mag, cmap="magma", extent=extent, interpolation="nearest")
        ax.set(xlabel="horizontal frequency (cycles/pixel)", ylabel="vertical frequency (cycles/pixel)",
               title=title or "log magnitude spectrum")
        ax.grid(False)
        ax.figure.colorbar(handle, ax=ax, shrink=0.8, label="log(1 + |F|)")
    return ax.figure
