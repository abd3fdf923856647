"""Run a trained model on whole images or on overlapping tiles (for images too big for memory).

Both functions take a gray image (H, W), a colour image (H, W, C) or an NHWC batch and return the
same layout, ``scale`` times larger for super-resolution models.

Tiles are blended with a separable window that, across each overlap of ``overlap`` pixels, is 0 on
the first quarter, rises as a raised cosine over the middle half, and is 1 on the last quarter (the
neighbour's window mirrors it, so the two sum to one). Pixels within ``overlap // 4`` of a tile's
inner edge therefore never count, which makes tiling *exact* for a stride-1 fully convolutional model
whose receptive-field radius is at most ``overlap // 4`` (e.g. ``d`` pixels for ``d`` 3x3 convs), and
hides the seams smoothly otherwise. Borders of the image are not ramped: the model pads them the
same way whether it sees a tile or the whole image.
"""

from __future__ import annotations

import keras
import numpy as np

from .checks import integer
from .config import DEFAULT_OVERLAP, DEFAULT_TILE
from .errors import ArgumentError, ImageValueError
from .io import check_image

_PROBE = 16  # side of the blank image used to measure a model's scale factor


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
        if arr.size == 0:
            raise ImageValueError(f"batch is empty (shape {arr.shape}): pass at least one non-empty image")
        batch, layout = arr.astype("float32", copy=False), "nhwc"
        if not np.all(np.isfinite(batch)):
            raise ImageValueError("batch has NaN/inf values: fix the step that produced them or use np.nan_to_num")
    else:
        img = check_image(arr)
        layout = "gray" if img.ndim == 2 else "hwc"
        batch = img[None, :, :, None] if img.ndim == 2 else img[None]
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
    pred = model.predict_on_batch(batch) if compiled else model(batch, training=False)
    return np.asarray(keras.ops.convert_to_numpy(pred), dtype="float32")


def predict_image(model: keras.Model, image) -> np.ndarray:
    """Whole-image prediction; (H, W), (H, W, C) or NHWC in, same layout out. Taught in chapter 4."""
    batch, layout = to_model_batch(image, model_channels(model))
    # one image at a time: a batch of large images is the usual way to run out of memory
    out = np.concatenate([_forward(model, batch[i : i + 1]) for i in range(batch.shape[0])])
    return from_model_batch(out, layout)


def model_scale(model: keras.Model, channels: int | None = None) -> int:
    """Output size / input size of a model (1 for restoration, the SR factor otherwise), measured on a probe."""
    channels = channels or model_channels(model) or 1
    out_shape = _forward(model, np.zeros((1, _PROBE, _PROBE, channels), "float32")).shape
    scale = out_shape[1] // _PROBE
    if scale < 1 or out_shape[1] != scale * _PROBE or out_shape[2] != scale * _PROBE:
        raise ArgumentError(
            f"model maps {_PROBE}x{_PROBE} to {out_shape[1]}x{out_shape[2]}, not an integer scale: "
            "tile_predict needs an output that is an integer multiple of the input"
        )
    return scale


def _ramp(overlap: int) -> np.ndarray:
    """Rising weights across an overlap: 0 on the first quarter, raised cosine, 1 on the last quarter."""
    q = overlap // 4
    n = overlap - 2 * q
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return np.concatenate([np.zeros(q), rise, np.ones(q)]).astype("float32")


def _axis_window(length: int, overlap: int, inner_start: bool, inner_end: bool) -> np.ndarray:
    w = np.ones(length, "float32")
    if overlap:
        ramp = _ramp(overlap)
        if inner_start:
            w[:overlap] *= ramp
        if inner_end:
            w[-overlap:] *= ramp[::-1]
    return w


def _starts(size: int, tile: int, step: int) -> list[int]:
    """Tile origins along an axis; the last tile is clamped to end at the border."""
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def tile_predict(model: keras.Model, image, tile: int = 256, overlap: int = 32, batch_size: int = 4,
                 progress: bool = False, scale: int | None = None) -> np.ndarray:
    """Predict with overlapping tiles blended by a smooth window; same layout as the input. Taught in chapter 5.

    At most `batch_size` tiles are in memory at a time; the result is accumulated in a float32 output
    and a weight map, then normalised. `scale` (the SR factor) is measured on a small probe when None.
    Exact, up to float error, for stride-1 models whose receptive-field radius is <= overlap // 4.
    """
    tile = integer("tile", tile, 1)
    overlap = integer("overlap", overlap, 0)
    batch_size = integer("batch_size", batch_size, 1)
    if overlap >= tile:
        raise ArgumentError(f"overlap ({overlap}) must be smaller than tile ({tile}): e.g. tile=256, overlap=32")
    batch, layout = to_model_batch(image, model_channels(model))
    scale = model_scale(model, batch.shape[-1]) if scale is None else integer("scale", scale, 1)
    n, h, w, _ = batch.shape
    th, tw = min(tile, h), min(tile, w)
    ys = _starts(h, th, tile - overlap)
    xs = _starts(w, tw, tile - overlap)
    s, o = scale, overlap * scale

    # per-tile windows on the output grid; image borders are not ramped
    wy = {y: _axis_window(th * s, o, y > 0, y + th < h) for y in ys}
    wx = {x: _axis_window(tw * s, o, x > 0, x + tw < w) for x in xs}
    weight = np.zeros((h * s, w * s), "float32")
    for y in ys:
        for x in xs:
            weight[y * s : (y + th) * s, x * s : (x + tw) * s] += np.outer(wy[y], wx[x])

    jobs = [(i, y, x) for i in range(n) for y in ys for x in xs]
    # pad the last chunk to full size when there are several, so compiled backends see one shape
    pad_chunks = len(jobs) > batch_size
    bar = keras.utils.Progbar(len(jobs), unit_name="tile") if progress else None
    out = None
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

def has_colour(image: np.ndarray) -> bool:
    """False for gray images and for gray stored as RGB (R = G = B), which a gray model restores once."""
    return image.ndim == 3 and not (np.array_equal(image[..., 0], image[..., 1])
                                    and np.array_equal(image[..., 0], image[..., 2]))


def enhance(model: keras.Model, image: np.ndarray, task: str, *, scale: int = 1, tile: int | None = DEFAULT_TILE,
            overlap: int = DEFAULT_OVERLAP, progress: bool = False, clip: bool = True) -> np.ndarray:
    """Restore one image (H, W) or (H, W, 3) with a model, choosing how colour is handled. Taught in chapter 4.

    A gray model restores each RGB channel in turn (an image stored as RGB with R = G = B only once);
    for super-resolution it restores the Y channel and upscales Cb/Cr bicubically (the SR protocol);
    a pre-upsampling SR model gets the bicubic-upscaled image. Large images go through tiles.
    """
    from .degrade import upscale
    from .io import rgb_to_gray
    from .metrics import rgb_to_ycbcr, ycbcr_to_rgb

    img = check_image(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    channels = model_channels(model) or 1
    factor = model_scale(model, channels) if task == "sr" else 1
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
        batch, layout = to_model_batch(img, 1, per_channel=True)
        out = from_model_batch(run(batch), layout)
    out = out.astype(np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out
