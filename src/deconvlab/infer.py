"""Run a trained model on whole images or on overlapping tiles (for images too big for memory).

Both functions take a gray image (H, W), a colour image (H, W, C) or an NHWC batch and return the
same layout, ``scale`` times larger for super-resolution models.

Tiles are blended with a separable window that, across each overlap of ``overlap`` pixels, is 0 on
the first ``margin`` pixels, rises as a raised cosine, and is 1 on the last ``margin`` (the neighbour's
window mirrors it, so the two sum to one). Pixels within ``margin`` of a tile's inner edge therefore never
count, which makes tiling *exact* for a fully convolutional model whose receptive-field radius is at most
``margin`` (e.g. ``d`` pixels for ``d`` 3x3 convs), and hides the seams smoothly otherwise. By default the
radius is read from the model's layers and the overlap is twice it; models with strided layers get tile
origins on their stride grid and tiles as long as the image modulo the stride (so up to stride - 1 pixels
longer than ``tile``, and each overlap as many pixels wider). Borders of the image are not ramped: the model
pads them the same way whether it sees a tile or the whole image.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from .checks import integer
from .config import DEFAULT_OVERLAP, DEFAULT_TILE
from .errors import ArgumentError
from .io import as_batch, check_image, rgb_to_gray
from .layers import _round_up
from .tasks import check_task

_PROBE = 16  # side of the blank image used to measure a model's scale factor
#: How :func:`enhance` hands a colour image to a gray model: per RGB channel, or per Y / Cb / Cr channel.
COLOURS = ("rgb", "ycbcr")


def model_channels(model) -> int | None:
    """Channels a model takes (1 gray, 3 colour), or None for a subclassed model without a symbolic input."""
    try:
        channels = model.inputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None if channels is None else int(channels)


def to_model_batch(image, channels: int | None, per_channel: bool = False) -> tuple[np.ndarray, str]:
    """The one image -> model adapter: an NHWC float32 batch and its layout for :func:`from_model_batch`.

    Layouts: "gray" (H, W), "hwc" (H, W, C), "nhwc" (a batch as given), and with ``per_channel`` a gray
    model on a colour image: "per-channel", each channel an image of its own.
    """
    arr = np.asarray(image)
    if arr.ndim == 4:
        batch, layout = as_batch(arr), "nhwc"  # each image checked and read as check_image reads one
    else:
        img = check_image(arr)
        batch, layout = (img[None, :, :, None], "gray") if img.ndim == 2 else (img[None], "hwc")
        if per_channel and channels == 1 and img.ndim == 3:
            return np.moveaxis(img, -1, 0)[..., None], "per-channel"
    if channels is not None and batch.shape[-1] != channels:
        raise ArgumentError(
            f"model expects {channels} channel(s), image has {batch.shape[-1]}: "
            + ("read the image (or load the set) with mode='rgb'" if channels == 3 else "read the image with mode='gray'")
        )
    return batch, layout


def from_model_batch(batch: np.ndarray, layout: str) -> np.ndarray:
    """Undo :func:`to_model_batch` on the model's output."""
    if layout == "nhwc":
        return batch
    if layout == "per-channel":
        return np.moveaxis(batch[..., 0], 0, -1)
    img = batch[0]
    return img[..., 0] if layout == "gray" and img.shape[-1] == 1 else img


def _forward(model, batch: np.ndarray, compiled: bool = False) -> np.ndarray:
    # tiles share one shape, so a compiled predict step pays off; whole images of new sizes would retrace it
    try:
        pred = model.predict_on_batch(batch) if compiled else model(batch, training=False)
    except ValueError:
        # a functional model refuses other input sizes than its own (a Sequential one runs): that is no bug
        fixed = _input_size(model)
        if all(side in (None, got) for side, got in zip(fixed, batch.shape[1:3], strict=True)):
            raise
        size = "x".join(str(side or "any") for side in fixed)
        raise ArgumentError(f"{model.name} takes {size} inputs only, not {batch.shape[1]}x{batch.shape[2]}: "
                            "enhancing needs a model that takes any input size, e.g. built on "
                            f"keras.Input((None, None, {batch.shape[-1]}))") from None
    return np.asarray(keras.ops.convert_to_numpy(pred), dtype="float32")


def predict_image(model: keras.Model, image) -> np.ndarray:
    """Whole-image prediction; (H, W), (H, W, C) or NHWC in, same layout out. Taught in chapter 4."""
    batch, layout = to_model_batch(image, model_channels(model))
    # one image at a time: a batch of large images is the usual way to run out of memory
    out = np.concatenate([_forward(model, batch[i : i + 1]) for i in range(batch.shape[0])])
    return from_model_batch(out, layout)


def _input_size(model: keras.Model) -> tuple[int | None, int | None]:
    """(height, width) a model's input is built for; None for a side of any size, and for subclassed models."""
    try:
        height, width = model.inputs[0].shape[1:3]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None, None
    return height, width


def model_scale(model: keras.Model, channels: int | None = None) -> int:
    """Output size / input size of a model (1 for restoration, the SR factor otherwise), measured on a probe."""
    channels = channels or model_channels(model) or 1
    # a model built for one input size runs on nothing else: probe it at that size
    h, w = (side or _PROBE for side in _input_size(model))
    out_shape = _forward(model, np.zeros((1, h, w, channels), "float32")).shape
    if out_shape[-1] != channels:  # a 2-channel output of a gray model became its channel 0 without a word
        raise ArgumentError(f"the model's output has {out_shape[-1]} channel(s) where its input has {channels}: "
                            "use one that returns as many channels as it takes")
    scale = out_shape[1] // h
    if scale < 1 or out_shape[1] != scale * h or out_shape[2] != scale * w:
        raise ArgumentError(
            f"model maps {h}x{w} to {out_shape[1]}x{out_shape[2]}, not an integer scale: "
            "tile_predict needs an output that is an integer multiple of the input"
        )
    return scale


def _ramp(overlap: int, margin: int | None = None) -> np.ndarray:
    """Rising weights across an overlap: 0 on `margin` pixels (default a quarter), raised cosine, 1 on `margin`."""
    q = overlap // 4 if margin is None else margin
    n = overlap - 2 * q
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n) if n > 0 else np.zeros(0)
    return np.concatenate([np.zeros(q), rise, np.ones(q)]).astype("float32")


def _axis_window(length: int, overlap: int, margin: int | None, inner_start: bool, inner_end: bool) -> np.ndarray:
    w = np.ones(length, "float32")
    if overlap:
        ramp = _ramp(overlap, margin)
        if inner_start:
            w[:overlap] *= ramp
        if inner_end:
            w[-overlap:] *= ramp[::-1]
    return w


def _starts(size: int, tile: int, step: int, grid: int = 1) -> list[int]:
    """Tile origins along an axis, all on multiples of `grid`; the last tile reaches the border (it may be longer)."""
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile + 1, step))
    last = (size - tile) // grid * grid
    if starts[-1] != last:
        starts.append(last)
    return starts


def tiling_geometry(model: keras.Model) -> tuple[int, int] | None:
    """(receptive-field radius, total stride) of a model, read from its layers; None for a model that cannot be traced."""
    from . import models

    try:
        return models.receptive_field_radius(model), models.total_stride(model)
    except ArgumentError:
        return None


def default_overlap(model: keras.Model) -> int:
    """The smallest overlap that keeps tiling exact: twice the receptive-field radius, on the stride grid.

    The shipped 15+15 RED-Net reaches 30 pixels, so 60 (the old fixed default of 32 was not exact for it).
    """
    geometry = tiling_geometry(model)
    if geometry is None:
        raise ArgumentError(f"cannot read the receptive field of {model.name} from its layers: pass overlap=")
    radius, stride = geometry
    return _round_up(2 * radius, stride)


def default_tile(model: keras.Model, overlap: int | None = None) -> int:
    """DEFAULT_TILE, or four overlaps if that is larger (measured: 1.7x the work of one whole pass on a 4K image,
    3.0x on a 512x512 one; benchmarks/results/speed_cpu.md)."""
    geometry = tiling_geometry(model)
    stride = 1 if geometry is None else geometry[1]
    overlap = default_overlap(model) if overlap is None else overlap
    return _round_up(max(DEFAULT_TILE, 4 * overlap), stride)


def _tile_plan(model: keras.Model, tile: int | None, overlap: int | None) -> tuple[int, int, int | None, int]:
    """(tile, overlap, margin, stride) of :func:`tile_predict`, checked and put on the model's stride grid."""
    geometry = tiling_geometry(model)
    stride = 1 if geometry is None else geometry[1]
    margin = None
    if overlap is None:
        overlap = default_overlap(model)
        margin = geometry[0]
    overlap = integer("overlap", overlap, 0)
    tile = default_tile(model, overlap) if tile is None else integer("tile", tile, 1)
    # origins on the stride grid: tile side rounded down, overlap up, to multiples of the stride
    tile = max(tile // stride * stride, stride)
    overlap = _round_up(overlap, stride)
    return tile, overlap, margin, stride


def tile_predict(model: keras.Model, image, tile: int | None = None, overlap: int | None = None,
                 batch_size: int = 4, progress: bool = False, scale: int | None = None) -> np.ndarray:
    """Predict with overlapping tiles blended by a smooth window; same layout as the input. Taught in chapter 5.

    Each tile's window is 0 on `margin` pixels at its inner edges, a raised cosine across the rest of the overlap,
    and 1 elsewhere, so an output pixel only comes from tiles that saw at least `margin` pixels around it. With
    ``overlap=None`` (the default) the overlap and margin come from the model's layers: margin = its
    receptive-field radius (:func:`deconvlab.models.receptive_field_radius`), overlap = twice that, and the result
    equals whole-image prediction up to float rounding. An explicit overlap keeps ``margin = overlap // 4``.
    ``tile=None`` is :func:`default_tile`. For models with strided layers, tile origins, `tile` and
    `overlap` sit on multiples of the total stride (:func:`deconvlab.models.total_stride`), and every tile
    is as long as the image modulo the stride: up to stride - 1 pixels longer than `tile`, its overlaps as
    many pixels wider. A strided 'same' convolution pads by the input's length modulo its stride, so every
    tile is then padded and downsampled on the same grid as the whole image, with or without
    :class:`~deconvlab.layers.PadToMultiple`. At most `batch_size` tiles are in memory at a time. `scale`
    (the SR factor) is measured on a small probe when None.
    """
    tile, overlap, margin, stride = _tile_plan(model, tile, overlap)
    batch_size = integer("batch_size", batch_size, 1)
    batch, layout = to_model_batch(image, model_channels(model))
    scale = model_scale(model, batch.shape[-1]) if scale is None else integer("scale", scale, 1)
    n, h, w, _ = batch.shape
    # every tile as long as the image modulo the stride: a strided 'same' conv pads an input according to its
    # length modulo the stride, so only then does it pad (and sample) each tile as it does the whole image
    th, tw = min(tile + h % stride, h), min(tile + w % stride, w)
    if overlap >= tile and (th < h or tw < w):  # an image in one tile has no overlap to keep
        raise ArgumentError(f"overlap ({overlap}) must be smaller than tile ({tile}"
                            + (f", both on the model's stride grid of {stride}" if stride > 1 else "")
                            + "): e.g. tile=256, overlap=32")
    # the last origin is then h - th, a multiple of the stride: every tile is th x tw and ends in the image
    ys = _starts(h, th, tile - overlap, stride)
    xs = _starts(w, tw, tile - overlap, stride)
    s = scale
    m = overlap * s // 4 if margin is None else margin * s
    # the ramps span all that neighbours share, the longer tiles' extra pixels included, so the windows mirror
    oy, ox = (overlap + h % stride) * s, (overlap + w % stride) * s

    # per-tile windows on the output grid; image borders are not ramped
    wy = {y: _axis_window(th * s, oy, m, y > 0, y + th < h) for y in ys}
    wx = {x: _axis_window(tw * s, ox, m, x > 0, x + tw < w) for x in xs}
    weight = np.zeros((h * s, w * s), "float32")
    for y in ys:
        for x in xs:
            weight[y * s : (y + th) * s, x * s : (x + tw) * s] += np.outer(wy[y], wx[x])

    jobs = [(i, y, x) for i in range(n) for y in ys for x in xs]
    bar = keras.utils.Progbar(len(jobs), unit_name="tile") if progress else None
    out = None
    # pad the last chunk to full size when there are several, so compiled backends see one shape
    pad_chunks = len(jobs) > batch_size
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        tiles = np.stack([batch[i, y : y + th, x : x + tw] for i, y, x in chunk])
        if pad_chunks and len(chunk) < batch_size:
            tiles = np.concatenate([tiles, np.zeros((batch_size - len(chunk),) + tiles.shape[1:], "float32")])
        pred = _forward(model, tiles, compiled=True)
        if pred.shape[1:3] != (th * s, tw * s):
            raise ArgumentError(
                f"model turned {th}x{tw} tiles into {pred.shape[1]}x{pred.shape[2]}, not scale={s}: "
                "pass the model's scale or scale=None to measure it"
            )
        if out is None:
            out = np.zeros((n, h * s, w * s, pred.shape[-1]), "float32")
        for k, (i, y, x) in enumerate(chunk):
            window = np.outer(wy[y], wx[x])[..., None]
            out[i, y * s : (y + th) * s, x * s : (x + tw) * s] += pred[k] * window
        if bar is not None:
            bar.add(len(chunk))
    out /= weight[None, :, :, None]
    return from_model_batch(out, layout)


# ------------------------------------------------------------------------------------------------ enhance

def check_exact_tile(model: keras.Model, label: str, tile: int, overlap_option: bool = True) -> None:
    """ArgumentError unless ``tile`` exceeds twice the overlap that tiles ``model`` exactly (its stride grid kept);
    without ``overlap_option`` (``benchmark`` has no --overlap) the advice names --tile only."""
    geometry = tiling_geometry(model)
    if geometry is None:
        raise ArgumentError(f"cannot read the receptive field of {label} from its layers, so no tile overlap can be "
                            f"derived: pass {'--overlap N (e.g. 64) or ' if overlap_option else ''}--tile 0")
    overlap, stride = default_overlap(model), geometry[1]
    least = _round_up(2 * overlap + 1, stride)
    if tile < least:
        more = ", or a smaller --overlap (seams then blended, not exact)" if overlap_option else ""
        raise ArgumentError(f"--tile {tile} is too small for {label}: its receptive field needs an overlap of "
                            f"{overlap} pixels, so pass --tile {least} or more{',' if more else ' or'} --tile 0 "
                            f"(no tiles){more}")


def tiled_side(model: keras.Model, side: int, task: str, scale: int = 1) -> int:
    """The longest side :func:`enhance` tiles for an image of ``side`` pixels: a pre-upsampling SR model runs on the
    bicubic-upscaled image, a post-upsampling one on the image itself."""
    return side * scale if task == "sr" and scale > 1 and model_scale(model) == 1 else side


def estimate_noise_sigma(image: np.ndarray) -> float:
    """The noise standard deviation on the 0-255 scale (skimage's wavelet estimate; RGB: the channels' mean).

    Unsigned integer images are scaled to [0, 1] first (:func:`deconvlab.io.check_image`), as enhance does.
    A channel without detail (flat, e.g. the blue of a pure red image) has no noise to measure and is left out
    of the mean, so that it does not dilute the noise of the others; an image without any detail gives 0.
    """
    from skimage.restoration import estimate_sigma

    # estimate_sigma works in the image's own units: a uint8 image would give 255 times the answer
    img = check_image(image)
    colour = img.ndim == 3
    with warnings.catch_warnings():
        # skimage takes a last axis of <= 4 pixels for possible colour channels and warns to pass channel_axis;
        # here it is known, so a 3-pixel-wide gray strip (or each channel of a narrow RGB image) is not colour
        warnings.filterwarnings("ignore", message="image is size .* on the last axis", category=UserWarning)
        # skimage drops zero wavelet coefficients: a flat channel has none left, and their median is NaN
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        sigmas = np.atleast_1d(estimate_sigma(img, channel_axis=-1 if colour else None))
    sigmas = sigmas[np.isfinite(sigmas)]
    return 255.0 * float(np.mean(sigmas)) if sigmas.size else 0.0


def has_colour(image: np.ndarray) -> bool:
    """False for gray images and for gray stored as RGB (R = G = B), which a gray model restores once."""
    return image.ndim == 3 and not (np.array_equal(image[..., 0], image[..., 1])
                                    and np.array_equal(image[..., 0], image[..., 2]))


def enhance(model: keras.Model, image: np.ndarray, task: str, *, scale: int = 1, tile: int | None = DEFAULT_TILE,
            overlap: int | None = DEFAULT_OVERLAP, progress: bool = False, colour: str = "rgb") -> np.ndarray:
    """Restore one image (H, W) or (H, W, 3) with a model, choosing how colour is handled. Taught in chapter 4.

    ``task`` is one of :data:`deconvlab.tasks.TASKS`; ``scale`` is the upscaling factor for ``"sr"`` (2 or
    more, required) and stays 1 for the other tasks.

    A gray model restores each RGB channel in turn (``colour="rgb"``; an image stored as RGB with R = G = B only
    once) or, with ``colour="ycbcr"``, each of Y, Cb and Cr (MATLAB ``rgb2ycbcr``) and converts back: chapter 5
    measures the blind denoiser that way on CBSD68, where the chroma planes' correlated noise is easier to remove;
    for super-resolution it restores the Y channel and upscales Cb/Cr bicubically (the SR protocol);
    a pre-upsampling SR model gets the bicubic-upscaled image. A colour model (3 channels) sees R, G and B
    together: ``colour="ycbcr"`` is for gray models, and ArgumentError for a colour one. Large images go through
    tiles (:func:`tile_predict`; ``overlap=None`` derives the exact overlap from the model, as the CLI does). The
    result is clipped to [0, 1].
    """
    from .degrade import upscale
    from .metrics import rgb_to_ycbcr, ycbcr_to_rgb

    check_task(task)
    scale = integer("scale", scale, 1)
    # scale=1 for sr, or a scale for another task, would silently restore at the input's size
    if task == "sr" and scale < 2:
        raise ArgumentError(f"task='sr' needs the upscaling factor, scale=2 or more (got scale={scale})")
    if task != "sr" and scale != 1:
        raise ArgumentError(f"scale={scale} applies to task='sr' only: drop it for task={task!r}")
    if colour not in COLOURS:
        raise ArgumentError(f"colour={colour!r}: use one of {', '.join(COLOURS)}")
    img = check_image(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    channels = model_channels(model) or 1
    if colour == "ycbcr" and channels == 3:  # it would run on R, G and B as if colour="rgb", without a word
        raise ArgumentError("colour='ycbcr' runs a gray model on Y, Cb and Cr, but this model takes 3 channels "
                            "(R, G and B together): pass colour='rgb' (--colour rgb), or gray weights")
    factor = model_scale(model, channels)
    if task != "sr" and factor != 1:  # an SR model under task="denoise" wrote an upscaled image
        h, w = img.shape[:2]
        raise ArgumentError(f"the model upscales by {factor} ({h}x{w} to {h * factor}x{w * factor}): it is for "
                            f"--task sr (task='sr'), not {task}")
    if factor not in (1, scale):
        raise ArgumentError(f"the model upsamples by {factor}, but the scale asked for is {scale}: "
                            f"pass --scale {factor} or weights trained for x{scale}")

    def run(batch: np.ndarray) -> np.ndarray:
        """NHWC in (LR for SR), NHWC out, at the output resolution."""
        if task == "sr" and factor == 1:
            batch = np.stack([upscale(b, scale) for b in batch]).astype(np.float32)
        if tile and max(batch.shape[1:3]) > tile:
            return tile_predict(model, batch, tile=tile, overlap=overlap, progress=progress, scale=factor)
        return predict_image(model, batch)

    if not has_colour(img):
        plane = (img if img.ndim == 2 else img[..., 0])[None, :, :, None]
        out = run(plane)[0, :, :, 0] if channels == 1 else rgb_to_gray(run(np.repeat(plane, 3, axis=-1))[0])
        out = np.repeat(out[..., None], 3, axis=-1) if img.ndim == 3 else out
    elif channels == 3:
        out = run(img[None])[0]
    elif task == "sr":
        ycc = rgb_to_ycbcr(img)
        y = run(ycc[None, :, :, :1])[0]
        out = ycbcr_to_rgb(np.concatenate([y, upscale(ycc[..., 1:], scale).astype(np.float32)], axis=-1))
    else:
        planes = rgb_to_ycbcr(img) if colour == "ycbcr" else img
        batch, layout = to_model_batch(planes, 1, per_channel=True)
        out = from_model_batch(run(batch), layout)
        out = ycbcr_to_rgb(out) if colour == "ycbcr" else out
    return np.clip(out.astype(np.float32), 0.0, 1.0)
