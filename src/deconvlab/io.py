"""Reading and writing images as float32 arrays in [0, 1].

Every image in the book passes through :func:`read_image`: gray images come back as ``(H, W)``, colour ones as
``(H, W, 3)``, whatever the file stored (8 or 16 bits, a palette, an alpha channel, gray saved as RGB, 1-bit,
float TIFF). A file that cannot give trustworthy pixels (missing, empty, truncated, too large, NaN) raises an
:class:`~deconvlab.errors.ImageError` whose one-line message says what to do. Taught in chapter 4
(``notebooks/04_code_example``); chapter 2 uses :func:`as_batch` and :func:`from_batch`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
import threading
import uuid
import warnings
import zlib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ArgumentError, ImageFileError, ImageTooLargeError, ImageValueError, OutputError

__all__ = [
    "LUMA_BT601", "as_batch", "as_numpy", "check_image", "from_batch", "max_pixels", "read_image", "rgb_to_gray",
    "unit_float", "write_image",
]

#: Weights of R, G, B in the BT.601 luma, the gray conversion of MATLAB ``rgb2gray`` and of the DnCNN sets.
LUMA_BT601 = (0.299, 0.587, 0.114)

_DEFAULT_MAX_PIXELS = 2**26  # 67 Mpx: a 8192 x 8192 photo fits, a decompression bomb does not
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# LOAD_TRUNCATED_IMAGES is process-global; the lock keeps our temporary "off" from racing another reader.
_TRUNCATED_LOCK = threading.Lock()


@dataclasses.dataclass
class _Notes:
    """What a reader noticed and read_image warns about once, at the caller's line."""

    alpha: bool = False  # an alpha channel (or extra samples) was dropped
    frames: int = 1  # frames or pages in the file; only the first is read
    broken_pages: str = ""  # why a TIFF page after those counted in ``frames`` could not be read
    float_samples: bool = False  # the file stores floats, taken as they are


def max_pixels() -> int:
    """The largest pixel count (width x height) read_image accepts: ``$DECONVLAB_MAX_PIXELS`` or 2**26."""
    raw = os.environ.get("DECONVLAB_MAX_PIXELS", "").strip()
    if not raw:
        return _DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ArgumentError(
            f"DECONVLAB_MAX_PIXELS={raw!r} is not a positive integer: set it to e.g. {_DEFAULT_MAX_PIXELS} or unset it"
        )
    return value


_pixel_limit = max_pixels  # read_image's ``max_pixels`` argument shadows the function there


def as_numpy(array: object, name: str = "image") -> np.ndarray:
    """``np.asarray(array)``, or an ImageValueError that says how to convert (e.g. a GPU tensor needs it first)."""
    try:
        return np.asarray(array)
    except Exception as exc:  # e.g. a GPU tensor that needs .cpu() first
        raise ImageValueError(
            f"{name} cannot be turned into a NumPy array ({exc}): pass a NumPy array or keras.ops.convert_to_numpy(x)"
        ) from None


def unit_float(arr: Any, dtype: Any = np.float32, name: str | None = None) -> np.ndarray:
    """bool as 0/1, unsigned integers over their dtype's maximum (as ``skimage.img_as_float``), floats as they are,
    all as ``dtype`` (an array already of it is not copied). Any other dtype (signed integers: 0-255 or 0-65535
    values? their scale is unknown) is refused with ImageValueError naming ``name``, or without ``name`` comes back
    unchanged for the caller (``metrics`` keeps signed values, as scikit-image does)."""
    arr, dtype = np.asarray(arr), np.dtype(dtype)
    if arr.dtype.kind in "bf":
        return arr.astype(dtype, copy=False)
    if arr.dtype.kind == "u":
        return arr.astype(dtype) / dtype.type(np.iinfo(arr.dtype).max)
    if name is not None:
        raise ImageValueError(
            f"{name} has dtype {arr.dtype}, not float or unsigned int: convert it to float32 in [0, 1] first")
    return arr


def check_image(array: object, name: str = "image") -> np.ndarray:
    """Validate an image array (finite, (H, W) or (H, W, C) with C in {1, 3}, non-empty); return it as float32.

    Float arrays are taken as they are (degraded images may leave [0, 1]); unsigned integer arrays are scaled by
    their dtype's maximum (uint8 by 255, uint16 by 65535) and bool becomes 0/1, as in ``skimage.img_as_float``.
    """
    arr = unit_float(as_numpy(array, name), name=name)
    if arr.ndim == 4:
        raise ImageValueError(
            f"{name} has shape {arr.shape}, a batch: pass one image (H, W) or (H, W, C), e.g. deconvlab.io.from_batch(batch)"
        )
    if arr.ndim not in (2, 3):
        raise ImageValueError(f"{name} has shape {arr.shape}: an image must be (H, W) gray or (H, W, 3) colour")
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3):
        hint = "drop the alpha channel with image[..., :3]" if arr.shape[-1] == 4 else "use 1 (gray) or 3 (RGB)"
        raise ImageValueError(f"{name} has {arr.shape[-1]} channels (shape {arr.shape}): {hint}")
    if arr.size == 0:
        raise ImageValueError(f"{name} is empty (shape {arr.shape}): check the crop or slice that produced it")
    bad = arr.size - np.count_nonzero(np.isfinite(arr))
    if bad:
        raise ImageValueError(
            f"{name} has {bad} NaN/inf values: fix the step that produced them (e.g. a division by zero) or use np.nan_to_num"
        )
    return arr


def as_batch(img: np.ndarray) -> np.ndarray:
    """An image (H, W) or (H, W, C) as a one-image NHWC batch (1, H, W, C) float32; a batch passes through. Taught in chapter 2."""
    arr = np.asarray(img)
    if arr.ndim == 4:
        if 0 in arr.shape or arr.shape[-1] not in (1, 3):
            raise ImageValueError(f"batch has shape {arr.shape}: expected (N, H, W, C) with N, H, W > 0 and C in {{1, 3}}")
        # each image read as check_image reads one (8- and 16-bit pixels over their maximum), not cast as is
        return np.stack([check_image(arr[i], f"batch[{i}]") for i in range(arr.shape[0])])
    arr = check_image(arr)
    return (arr[..., None] if arr.ndim == 2 else arr)[None]


def from_batch(batch: object) -> np.ndarray:
    """A one-image NHWC batch (1, H, W, C) back as an image: (H, W) for C = 1, (H, W, 3) for C = 3. Taught in chapter 2."""
    try:
        arr = np.asarray(batch)
    except Exception:  # backend tensors on an accelerator
        import keras

        arr = keras.ops.convert_to_numpy(batch)
    if arr.ndim != 4:
        raise ImageValueError(f"batch has shape {arr.shape}, not (1, H, W, C): use as_batch(image) to make one")
    if arr.shape[0] != 1:
        raise ImageValueError(f"batch holds {arr.shape[0]} images: pick one with batch[i:i + 1] before from_batch")
    img = check_image(arr[0], "batch[0]")
    return img[..., 0] if img.shape[-1] == 1 else img


# ---------------------------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, mode: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as float32 in [0, 1]: (H, W) gray or (H, W, 3) RGB. Taught in chapter 4.

    ``mode="gray"`` converts colour with the BT.601 luma (0.299, 0.587, 0.114); ``mode="rgb"`` repeats gray.
    Alpha is dropped with a warning; 16-bit data is divided by 65535; float TIFF is taken as stored (with a warning
    when it leaves [0, 1]); of a multi-frame file (GIF, APNG, multi-page TIFF) the first frame is read, with a
    warning; CMYK becomes RGB and the EXIF/TIFF orientation is applied.
    """
    if mode not in (None, "gray", "rgb"):
        raise ArgumentError(f"mode={mode!r}: use None (as stored), 'gray' or 'rgb'")
    limit = _pixel_limit() if max_pixels is None else int(max_pixels)
    if limit <= 0:
        raise ArgumentError(f"max_pixels={max_pixels!r}: pass a positive pixel count or None for the default")
    p = Path(path).expanduser()
    where = str(p)
    if not p.exists():
        raise ImageFileError(f"no file at {where}: check the path (working directory is {Path.cwd()})")
    if p.is_dir():
        raise ImageFileError(f"{where} is a directory: pass an image file inside it")
    if not p.is_file():
        # A pipe (bash's <(...)) or a device: the decoders open the path again, which a pipe cannot give twice,
        # and opening a FIFO nobody writes to would wait forever.
        raise ImageFileError(f"{where} is not a regular file (a pipe or a device): save the image to a file first")
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        raise ImageFileError(f"cannot read {where} ({exc.strerror or exc}): check its permissions") from None
    if size == 0:
        raise ImageFileError(f"{where} is empty (0 bytes): re-download or re-export it")
    notes = _Notes()
    if head.startswith(_TIFF_MAGICS):
        img = _read_tiff(p, where, limit, notes)
    else:
        img = _read_pillow(p, where, limit, head, notes)
    if notes.alpha:
        _warn(f"{where}: alpha channel dropped, colour kept as stored; composite onto a background first if "
              "transparency matters")
    if notes.broken_pages:
        _warn(f"{where} links to a page that cannot be read ({notes.broken_pages}) after {notes.frames} readable "
              "one(s): only the first is read; re-export the file if it should hold more")
    elif notes.frames > 1:
        _warn(f"{where} has {notes.frames} frames (an animation or a multi-page file): only the first is "
              "read; save the others as files of their own to restore them")
    img = check_image(img, where)
    if notes.float_samples and (img.min() < 0.0 or img.max() > 1.0):
        # A float TIFF exported on the 0-255 scale would otherwise come out all white after clipping.
        _warn(f"{where} stores floats from {img.min():g} to {img.max():g}, outside [0, 1]: taken as stored "
              "and clipped when written; divide by 255 (or 65535) first if that is their scale")
    return np.ascontiguousarray(_to_mode(img, mode), dtype=np.float32)


def _warn(message: str) -> None:
    """A UserWarning attributed to the line that called read_image (read_image -> _warn -> warnings)."""
    warnings.warn(message, UserWarning, stacklevel=3)


def _to_mode(img: np.ndarray, mode: str | None) -> np.ndarray:
    """``"gray"``: the BT.601 luma of colour; ``"rgb"``: gray repeated three times; None: as it is."""
    if mode == "gray" and img.ndim == 3:
        return rgb_to_gray(img)
    if mode == "rgb" and img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    return img


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (..., 3) float image, the gray conversion of the DnCNN test sets."""
    weights = np.asarray(LUMA_BT601, dtype=np.float32)
    return np.tensordot(np.asarray(img, dtype=np.float32), weights, axes=([-1], [0])).astype(np.float32)


def _check_size(width: int, height: int, limit: int, where: str) -> None:
    if width * height > limit:
        raise ImageTooLargeError(
            f"{where} has {width}x{height} = {width * height:,} pixels, more than the limit {limit:,}: "
            "downscale it first, or raise DECONVLAB_MAX_PIXELS (or pass max_pixels=) if you trust it"
        )


def _corrupt(where: str, exc: BaseException) -> ImageFileError:
    return ImageFileError(f"{where} is truncated or corrupt ({_detail(exc)}): re-download or re-export the file")


def _detail(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _read_pillow(p: Path, where: str, limit: int, head: bytes, notes: _Notes) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Our own pixel limit (checked next, before decoding) replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"{where} is larger than Pillow's decompression-bomb limit: downscale it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS and DECONVLAB_MAX_PIXELS if you trust it"
        ) from None
    except UnidentifiedImageError:
        raise ImageFileError(
            f"{where} is not an image Pillow can read: pass a PNG, BMP, TIFF or JPEG file"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _corrupt(where, exc) from None
    with im:
        _check_size(im.size[0], im.size[1], limit, where)
        try:
            notes.frames = _pillow_frames(im, notes)
        except _PILLOW_FRAME_ERRORS as exc:
            raise _corrupt(where, exc) from None
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6):
            # Pillow keeps only the high byte of 16-bit colour PNGs; decode those ourselves, losslessly.
            try:  # the orientation exif_transpose applies to every other image, below
                orientation = int(im.getexif().get(0x0112, 1))
            except Exception:  # a broken EXIF block must not cost the pixels
                orientation = 1
            return _orient(_read_png16(p, where, notes), orientation)
        _load_fully(im, where)
        try:
            ImageOps.exif_transpose(im, in_place=True)  # camera JPEGs: store rotated, show upright
        except Exception:  # a broken EXIF block must not cost the pixels
            pass
        return _pil_to_array(im, where, notes)


# GIF counts its frames by reading them all; a TIFF link to garbage raises TypeError ("Missing dimensions").
_PILLOW_FRAME_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError)


def _pillow_frames(im: Image.Image, notes: _Notes) -> int:
    """The frames of an open image. In a TIFF, a page link that cannot be followed costs the pages after it, not
    the first page (as in ``_tiff_frames``); a broken GIF frame leaves the file corrupt."""
    if im.format != "TIFF":
        return int(getattr(im, "n_frames", 1))
    # Page by page from the first: after a failed n_frames, Pillow's page table may still hold the broken page.
    frames = 1
    try:
        while True:
            im.seek(frames)
            frames += 1
    except EOFError:
        pass
    except _PILLOW_FRAME_ERRORS as exc:
        notes.broken_pages = _detail(exc)
    im.seek(0)
    return frames


def _load_fully(im: Image.Image, where: str) -> None:
    try:
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            # Someone switched on Pillow's silent padding of truncated files; we want the error instead.
            with _TRUNCATED_LOCK:
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                try:
                    im.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = True
        else:
            im.load()
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{where} decodes to more pixels than its header says: the file is suspicious") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, IndexError) as exc:
        raise _corrupt(where, exc) from None


def _pil_to_array(im: Image.Image, where: str, notes: _Notes) -> np.ndarray:
    mode = im.mode
    # A tRNS colour key (one gray level or RGB colour made transparent) is an alpha channel by another name.
    notes.alpha = "transparency" in im.info or mode in ("PA", "LA", "La", "RGBA", "RGBa")
    if mode in ("P", "PA"):
        with warnings.catch_warnings():
            # Pillow nags about palette transparency on convert; the alpha warning already tells the reader.
            warnings.simplefilter("ignore", UserWarning)
            return _gray_if_neutral(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    if mode in ("LA", "La", "RGBA", "RGBa"):
        arr = np.asarray(im.convert(mode[:-1] + "A"))  # undoes the premultiplied La and RGBa first
        return unit_float(arr[..., 0] if mode[0] == "L" else arr[..., :3])
    if mode not in ("1", "L", "I", "F", "RGB") and not mode.startswith("I;16"):
        try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
            im = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageFileError(
                f"{where} has Pillow mode {mode!r} that cannot become RGB ({exc}): convert the file to PNG"
            ) from None
    arr = np.asarray(im)  # bool, uint8, uint16, int32 ("I") or float32 ("F")
    if mode == "I":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageValueError(
                f"{where} holds 32-bit integers beyond the 16-bit range: save it as 16-bit or float32 TIFF"
            )
        return arr.astype(np.float32) / 65535.0
    notes.float_samples = mode == "F"
    return unit_float(arr)


def _gray_if_neutral(rgb: np.ndarray) -> np.ndarray:
    """An all-gray palette (R = G = B everywhere) is a gray image stored with a palette: return (H, W)."""
    return rgb[..., 0] if (rgb == rgb[..., :1]).all() else rgb


def _read_tiff(p: Path, where: str, limit: int, notes: _Notes) -> np.ndarray:
    """TIFF through tifffile (lossless for 16-bit colour and float RGB, which Pillow cannot read), else Pillow."""
    import tifffile  # a dependency of scikit-image, which the package requires

    codec = None  # a known compression tifffile decodes only with the optional imagecodecs
    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages[0]
            _check_size(int(page.imagewidth), int(page.imagelength), limit, where)
            compression = page.compression
            if isinstance(compression, tifffile.COMPRESSION) and compression not in tifffile.TIFF.DECOMPRESSORS:
                codec = compression.name if importlib.util.find_spec("imagecodecs") is None else None
            arr = page.asarray()
            photometric, planar, colormap = int(page.photometric), int(page.planarconfig), page.colormap
            samples = int(page.samplesperpixel)
            orientation = int(page.tags.valueof(274, 1))
            notes.frames = _tiff_frames(tif, notes)
    except ImageTooLargeError:
        raise
    except Exception as exc:
        # Pillow has 16-bit modes for one sample only: colour would silently come back at 8 bits.
        stored = _bits_pillow_drops(p)
        if stored and codec is not None:
            raise ImageFileError(
                f"{where} is a {stored}-bit TIFF compressed with {codec}, which only the optional imagecodecs "
                f"package reads at {stored} bits: pip install imagecodecs, or re-save the file uncompressed"
            ) from None
        if stored:
            raise ImageFileError(
                f"{where} is a {stored}-bit TIFF that tifffile cannot read ({_detail(exc)}) and Pillow reads only at 8 "
                "bits: re-save it, e.g. as a 16-bit PNG"
            ) from None
        # Codecs tifffile lacks without imagecodecs (LZW, JPEG-in-TIFF) are in Pillow's libtiff.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's "Truncated File Read": the error below says it
                return _read_pillow(p, where, limit, b"", notes)
        except ImageFileError:
            raise _corrupt(where, exc) from None
    if samples > 1 and planar not in (1, 2):
        # tifffile then takes the samples as separate planes and Pillow as interleaved: the file does not say which.
        raise ImageFileError(
            f"{where} has PlanarConfiguration {planar}, which TIFF does not define (1: interleaved samples, "
            "2: separate planes): re-save it with the program that wrote it, or set the tag to the right value"
        )
    notes.float_samples = arr.dtype.kind == "f"
    if planar == 2 and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # PLANARCONFIG_SEPARATE: samples come first
    arr = _orient(arr, orientation)
    if photometric == 5 and arr.ndim == 3 and arr.shape[-1] >= 4:  # SEPARATED: CMYK inks
        ink = unit_float(arr[..., :4])
        if ink.dtype != np.float32:
            raise ImageValueError(f"{where} stores {arr.dtype} CMYK samples: save it as 8/16-bit RGB")
        notes.alpha = arr.shape[-1] > 4
        # The device-independent approximation (as Pillow's CMYK -> RGB): no ink is white, K darkens all three.
        return (1.0 - ink[..., :3]) * (1.0 - ink[..., 3:4])
    if photometric == 3 and colormap is not None:  # palette: 16-bit colour map entries
        cmap = np.asarray(colormap, dtype=np.uint16)
        # An 8-bit palette is stored as v * 257 (libtiff's tools) or v * 256 (Pillow, whose white is 65280);
        # the latter has no low byte, and reads, as Pillow and libtiff read it, as its high byte over 255.
        cmap = cmap.astype(np.float32) / 65535.0 if np.any(cmap & 0xFF) else (cmap >> 8).astype(np.float32) / 255.0
        return _gray_if_neutral(np.moveaxis(cmap[:, arr], 0, -1))
    if arr.ndim == 3:
        notes.alpha = arr.shape[-1] not in (1, 3)  # gray + alpha, RGBA, or RGB + extra samples
        arr = arr[..., 0] if arr.shape[-1] <= 2 else arr[..., :3]
    out = unit_float(arr)
    if out.dtype != np.float32:
        raise ImageValueError(f"{where} stores {arr.dtype} samples: save it as 8/16-bit unsigned or float32 TIFF")
    if photometric == 0 and arr.dtype.kind != "f":  # MINISWHITE: 0 is white (fax and scanner 1-bit files)
        out = 1.0 - out
    return out


def _tiff_frames(tif: Any, notes: _Notes) -> int:
    """The images in an open TIFF: reduced-resolution pages are previews of the first, not images of their own."""
    frames, seen = 0, set()
    try:
        for page in tif.pages:
            if page.offset in seen:  # a link back to an earlier page: tifffile would yield pages forever
                break
            seen.add(page.offset)
            frames += not getattr(page, "is_reduced", False)
    # tifffile's failures on a corrupt page link take many types (ValueError, IndexError, struct.error, OSError,
    # ...); whichever it is, it must not cost the first page, which was read already
    except Exception as exc:
        notes.broken_pages = _detail(exc)
    return frames


def _bits_pillow_drops(p: Path) -> int:
    """The bits per sample this TIFF stores where Pillow opens it in an 8-bit mode though they are more (16-bit
    colour), else 0 (Pillow keeps the depth: 16-bit or 32-bit gray, float; or cannot open the file)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our pixel limit was checked already
            with Image.open(p) as im:
                if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                    return 0
                bits = im.tag_v2.get(258, 1)  # BitsPerSample, one value per sample
                bits = max(bits) if isinstance(bits, tuple) else int(bits)
                return bits if bits > 8 else 0
    except Exception:  # Pillow cannot read it either; the fallback says so
        return 0


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright by the TIFF/EXIF Orientation tag, as ``PIL.ImageOps.exif_transpose`` does."""
    if orientation in (5, 6, 7, 8):
        arr = np.swapaxes(arr, 0, 1)  # the four orientations that swap rows and columns: transpose first
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    return np.flip(arr, flips) if flips else arr


def _read_png16(p: Path, where: str, notes: _Notes) -> np.ndarray:
    """16-bit colour PNG (colour types 2, 4, 6), which Pillow reduces to 8 bits, losslessly through pypng."""
    import png

    try:
        with open(p, "rb") as fh:
            width, height, rows, info = png.Reader(file=fh).asDirect()  # tRNS becomes an alpha plane
            pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except (png.Error, zlib.error, OSError, EOFError, ValueError) as exc:
        raise _corrupt(where, exc) from None
    planes = int(info["planes"])
    if pixels.shape != (height, width * planes):
        raise _corrupt(where, EOFError("image data shorter than the header says"))
    # asDirect shifts samples down to an sBIT chunk's significant bits (a 12-bit scan) and reports that depth
    img = pixels.reshape(height, width, planes).astype(np.float32) / np.float32((1 << int(info["bitdepth"])) - 1)
    notes.alpha = bool(info.get("alpha"))
    return img[..., 0] if planes <= 2 else img[..., :3]


def source_bit_depth(path: str | os.PathLike) -> int:
    """16 for files read_image reads at more than 8 bits (16-bit or float PNG, TIFF, PGM, ...), else 8:
    enhance keeps 16-bit inputs 16-bit."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
            return 16 if head[24:25] == b"\x10" else 8
        if head.startswith(_TIFF_MAGICS):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                return 16 if page.bitspersample > 8 or page.dtype.kind == "f" else 8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read_image has warned about this file already
            with Image.open(path) as im:  # the header only: the modes _pil_to_array keeps at more than 8 bits
                return 16 if im.mode in ("I", "F") or im.mode.startswith("I;16") else 8
    except Exception:  # an unreadable file failed read_image already; this is only a hint
        pass
    return 8


def icc_profile(path: str | os.PathLike) -> bytes | None:
    """The ICC colour profile a PNG, JPEG, WebP or TIFF file embeds, else None (also for an unreadable file).

    read_image returns the pixels as stored, in the file's colour space; enhance copies the profile into its
    output, without which viewers take a Display P3 or Adobe RGB photo's pixels for sRGB and mute its colours.
    """
    try:
        p = Path(path).expanduser()
        with open(p, "rb") as fh:
            head = fh.read(4)
        if head.startswith(_TIFF_MAGICS):
            import tifffile

            with tifffile.TiffFile(p) as tif:
                profile = tif.pages[0].tags.valueof(34675)  # InterColorProfile
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # read_image has warned about this file already
                with Image.open(p) as im:
                    profile = im.info.get("icc_profile")
    except Exception:  # only a hint, as source_bit_depth
        return None
    return bytes(profile) if profile else None


# ---------------------------------------------------------------------------------------------- writing


def check_output_path(path: str | os.PathLike, overwrite: bool = False, suffix: str | None = ".png") -> Path:
    """Fail early (OutputError) if ``path`` exists without overwrite, or its folder is missing or read-only."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise OutputError(f"output {out} is a directory: pass a file name such as {out / ('result' + (suffix or ''))}")
    if suffix is not None and out.suffix.lower() != suffix:
        raise ArgumentError(f"output {out} does not end in {suffix}: the output is written as {suffix[1:].upper()}")
    if os.path.lexists(out) and not overwrite:  # a dangling link too: replacing it loses it
        raise OutputError(f"output {out} exists: pass --overwrite or choose another name")
    parent = out.parent  # Path("x.png").parent is Path("."), never empty
    # The folder, or one above a missing folder, might be a regular file; name the real problem.
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot write {out}: {blocker} is a file, not a folder; choose another output path")
    if not parent.exists():
        raise OutputError(f"cannot write {out}: the folder {parent} does not exist; create it first")
    try:  # os.access says yes to root even on a read-only mount, so try for real
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to the folder {parent} ({exc.strerror or exc}): choose a writable folder"
        ) from None
    return out


def icc_fits(profile: bytes, image: np.ndarray) -> bool:
    """Whether an ICC profile's data colour space (header bytes 16-20) is the image's: 'GRAY' for (H, W), 'RGB '
    for (H, W, 3). A CMYK file's profile does not fit the RGB pixels read_image makes of it."""
    return bytes(profile[16:20]) == (b"RGB " if np.ndim(image) == 3 and np.shape(image)[-1] == 3 else b"GRAY")


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function that writes into the open file) next to ``path`` and rename it into
    place: a crash or a full disk never leaves half a file, and a failed write keeps the old one whole. The file is
    created 0o666 & umask, as by ``open()``; a file it replaces keeps its permission bits, as with ``cp``. Images,
    cards, weights, histories and CSV tables all go through here; an OSError propagates for the caller to explain."""
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = None
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
        if mode is not None:  # else the renamed-in file would have the umask's mode, undoing a chosen 0600
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failure (or Ctrl-C); already renamed away after a success


def write_image(
    path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8, overwrite: bool = True,
    icc_profile: bytes | None = None,
) -> Path:
    """Write an image as an 8- or 16-bit PNG (clipped to [0, 1], rounded), atomically; return the path. Taught in chapter 4.

    ``icc_profile`` (e.g. :func:`icc_profile` of the file the pixels came from) is embedded as the PNG's iCCP
    chunk; it must describe the image's colour space, gray or RGB (:func:`icc_fits`), else ArgumentError.
    """
    if bit_depth not in (8, 16):
        raise ArgumentError(f"bit_depth={bit_depth!r}: use 8 or 16")
    out = Path(path).expanduser()
    if out.suffix.lower() != ".png":
        raise ArgumentError(f"write_image writes PNG, but {out} does not end in .png: change the file name")
    img = check_image(image, "image to write")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if icc_profile is not None and not icc_fits(icc_profile, img):
        raise ArgumentError(f"icc_profile is for the colour space {bytes(icc_profile[16:20]).decode('latin-1').strip()!r}, not the image's "
                            f"{'RGB' if img.ndim == 3 else 'gray'} pixels: pass a matching profile or None")
    if out.is_dir():
        raise OutputError(f"{out} is a directory: pass a file name ending in .png")
    if os.path.lexists(out) and not overwrite:
        raise OutputError(f"{out} exists: pass overwrite=True or choose another name")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    pixels = np.rint(np.clip(img, 0.0, 1.0) * np.iinfo(dtype).max).astype(dtype)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {out.parent} ({exc.strerror or exc}): choose a writable folder") from None

    def encode(fh: BinaryIO) -> None:
        profile = None if icc_profile is None else bytes(icc_profile)
        if bit_depth == 8:  # Pillow writes no iCCP chunk for icc_profile=None
            Image.fromarray(pixels).save(fh, format="PNG", icc_profile=profile)
            return
        import png  # Pillow cannot write 16-bit colour PNG; pypng writes both kinds

        png16 = png.from_array(pixels.reshape(len(pixels), -1), "L;16" if pixels.ndim == 2 else "RGB;16")
        if profile is None:  # straight to the file: no second copy of the encoded image in memory
            png16.write(fh)
            return
        encoded = BytesIO()
        png16.write(encoded)
        chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
        # pypng writes no iCCP; it goes right after IHDR (before PLTE and IDAT)
        png.write_chunks(fh, [chunks[0], (b"iCCP", b"ICC profile\0\0" + zlib.compress(profile)), *chunks[1:]])

    try:
        write_atomic(out, encode)
    except OSError as exc:
        raise OutputError(f"cannot write {out} ({exc.strerror or exc}): check free space and permissions") from None
    return out
