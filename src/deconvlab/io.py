"""Reading and writing images as float32 arrays in [0, 1].

Every image in the book passes through :func:`read_image`: gray images come back as ``(H, W)``, colour ones as
``(H, W, 3)``, whatever the file stored (8 or 16 bits, a palette, an alpha channel, gray saved as RGB, 1-bit,
float TIFF). A file that cannot give trustworthy pixels (missing, empty, truncated, too large, NaN) raises an
:class:`~deconvlab.errors.ImageError` whose one-line message says what to do. Taught in chapter 1
(``notebooks/01_background``).
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ArgumentError, ImageFileError, ImageTooLargeError, ImageValueError, OutputError

__all__ = [
    "LUMA_BT601", "as_batch", "as_numpy", "check_image", "from_batch", "max_pixels", "read_image", "rgb_to_gray", "write_image",
]

#: Weights of R, G, B in the BT.601 luma, the gray conversion of MATLAB ``rgb2gray`` and of the DnCNN sets.
LUMA_BT601 = (0.299, 0.587, 0.114)

_DEFAULT_MAX_PIXELS = 2**26  # 67 Mpx: a 8192 x 8192 photo fits, a decompression bomb does not
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# LOAD_TRUNCATED_IMAGES is process-global; the lock keeps our temporary "off" from racing another reader.
_TRUNCATED_LOCK = threading.Lock()


def max_pixels() -> int:
    """The largest pixel count (width x height) read_image accepts: ``$DECONVLAB_MAX_PIXELS`` or 2**26. Taught in chapter 1."""
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


def as_numpy(array: object, name: str = "image") -> np.ndarray:
    """``np.asarray(array)``, or an ImageValueError that says how to convert (e.g. a GPU tensor needs it first)."""
    try:
        return np.asarray(array)
    except Exception as exc:  # e.g. a GPU tensor that needs .cpu() first
        raise ImageValueError(
            f"{name} cannot be turned into a NumPy array ({exc}): pass a NumPy array or keras.ops.convert_to_numpy(x)"
        ) from None


def check_image(array: object, name: str = "image") -> np.ndarray:
    """Validate an image array (finite, (H, W) or (H, W, C) with C in {1, 3}, non-empty); return it as float32. Taught in chapter 1.

    Float arrays are taken as they are (degraded images may leave [0, 1]); unsigned integer arrays are scaled by
    their dtype's maximum (uint8 by 255, uint16 by 65535) and bool becomes 0/1, as in ``skimage.img_as_float``.
    """
    arr = as_numpy(array, name)
    kind = arr.dtype.kind
    if kind == "b":
        arr = arr.astype(np.float32)
    elif kind == "u":
        arr = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    elif kind == "f":
        arr = arr.astype(np.float32, copy=False)
    else:
        raise ImageValueError(
            f"{name} has dtype {arr.dtype}, not float or unsigned int: convert it to float32 in [0, 1] first"
        )
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
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
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
        return _check_batch(arr)
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


def _check_batch(arr: np.ndarray) -> np.ndarray:
    for i in range(arr.shape[0]):
        check_image(arr[i], f"batch[{i}]")
    return arr.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, mode: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as float32 in [0, 1]: (H, W) gray or (H, W, 3) RGB. Taught in chapter 1.

    ``mode="gray"`` converts colour with the BT.601 luma (0.299, 0.587, 0.114); ``mode="rgb"`` repeats gray.
    Alpha is dropped with a warning; 16-bit data is divided by 65535; float TIFF is taken as stored.
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
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        raise ImageFileError(f"cannot read {where} ({exc.strerror or exc}): check its permissions") from None
    if size == 0:
        raise ImageFileError(f"{where} is empty (0 bytes): re-download or re-export it")
    alpha: list[bool] = []  # the readers note a dropped alpha channel here; we warn once, at the caller's line
    if head.startswith(_TIFF_MAGICS):
        img = _read_tiff(p, where, limit, alpha)
    else:
        img = _read_pillow(p, where, limit, head, alpha)
    if alpha:
        warnings.warn(
            f"{where}: alpha channel dropped, colour kept as stored; composite onto a background first if "
            "transparency matters",
            UserWarning,
            stacklevel=2,
        )
    img = check_image(img, where)
    if mode == "gray" and img.ndim == 3:
        img = rgb_to_gray(img)
    elif mode == "rgb" and img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img, dtype=np.float32)


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (..., 3) float image, the gray conversion of the DnCNN test sets. Taught in chapter 1."""
    weights = np.asarray(LUMA_BT601, dtype=np.float32)
    return np.tensordot(np.asarray(img, dtype=np.float32), weights, axes=([-1], [0])).astype(np.float32)


def _pixel_limit() -> int:
    return max_pixels()  # read_image's ``max_pixels`` argument shadows the function there


def _check_size(width: int, height: int, limit: int, where: str) -> None:
    if width * height > limit:
        raise ImageTooLargeError(
            f"{where} has {width}x{height} = {width * height:,} pixels, more than the limit {limit:,}: "
            "downscale it first, or raise DECONVLAB_MAX_PIXELS (or pass max_pixels=) if you trust it"
        )


def _corrupt(where: str, exc: BaseException) -> ImageFileError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ImageFileError(f"{where} is truncated or corrupt ({detail}): re-download or re-export the file")


def _read_pillow(p: Path, where: str, limit: int, head: bytes, alpha: list[bool]) -> np.ndarray:
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
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6):
            # Pillow keeps only the high byte of 16-bit colour PNGs; decode those ourselves, losslessly.
            return _read_png16(p, where, alpha)
        _load_fully(im, where)
        try:
            if im.getexif().get(0x0112, 1) != 1:  # camera JPEGs: store rotated, show upright
                im = ImageOps.exif_transpose(im)
        except Exception:  # a broken EXIF block must not cost the pixels
            pass
        return _pil_to_array(im, where, alpha)


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


def _pil_to_array(im: Image.Image, where: str, alpha: list[bool]) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.float32)
    if mode == "L":
        return np.asarray(im, dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32) / 65535.0
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageValueError(
                f"{where} holds 32-bit integers beyond the 16-bit range: save it as 16-bit or float32 TIFF"
            )
        return arr.astype(np.float32) / 65535.0
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode in ("P", "PA"):
        if mode == "PA" or "transparency" in im.info:
            alpha.append(True)
        with warnings.catch_warnings():
            # Pillow nags about palette transparency on convert; the alpha warning above already told the reader.
            warnings.simplefilter("ignore", UserWarning)
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        # An all-gray palette (R = G = B) is a gray image stored with a palette.
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0]
        return rgb
    if mode in ("LA", "La"):
        alpha.append(True)
        return np.asarray(im.convert("LA"), dtype=np.float32)[..., 0] / 255.0
    if mode in ("RGBA", "RGBa"):
        alpha.append(True)
        return np.asarray(im.convert("RGBA"), dtype=np.float32)[..., :3] / 255.0
    if mode == "RGB":
        return np.asarray(im, dtype=np.float32) / 255.0
    try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as exc:
        raise ImageFileError(f"{where} has Pillow mode {mode!r} that cannot become RGB ({exc}): convert the file to PNG") from None


def _read_tiff(p: Path, where: str, limit: int, alpha: list[bool]) -> np.ndarray:
    """TIFF through tifffile (lossless for 16-bit colour and float RGB, which Pillow cannot read), else Pillow."""
    try:
        import tifffile
    except ImportError:  # scikit-image brings tifffile; without it Pillow still reads the common TIFFs
        return _read_pillow(p, where, limit, b"", alpha)
    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages[0]
            _check_size(int(page.imagewidth), int(page.imagelength), limit, where)
            arr = page.asarray()
            photometric = int(page.photometric)
            planar = int(page.planarconfig)
            colormap = page.colormap
    except ImageTooLargeError:
        raise
    except Exception as exc:
        # Codecs tifffile lacks without imagecodecs (LZW, JPEG-in-TIFF) are in Pillow's libtiff.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's "Truncated File Read": the error below says it
                return _read_pillow(p, where, limit, b"", alpha)
        except ImageFileError:
            raise _corrupt(where, exc) from None
    if planar == 2 and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # PLANARCONFIG_SEPARATE: samples come first
    if photometric == 3 and colormap is not None:  # palette: 16-bit colour map entries
        rgb = np.moveaxis(np.asarray(colormap)[:, arr], 0, -1).astype(np.float32) / 65535.0
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0]
        return rgb
    if arr.ndim == 3:
        channels = arr.shape[-1]
        if channels in (2, 4) or channels > 4:
            alpha.append(True)  # gray + alpha, RGBA, or RGB + extra samples
        arr = arr[..., 0] if channels <= 2 else arr[..., :3]
    kind = arr.dtype.kind
    if kind == "b":
        out = arr.astype(np.float32)
    elif kind == "u":
        out = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    elif kind == "f":
        out = arr.astype(np.float32)
    else:
        raise ImageValueError(f"{where} stores {arr.dtype} samples: save it as 8/16-bit unsigned or float32 TIFF")
    if photometric == 0 and kind != "f":  # MINISWHITE: 0 is white (fax and scanner 1-bit files)
        out = 1.0 - out
    return out


def _read_png16(p: Path, where: str, alpha: list[bool]) -> np.ndarray:
    """Lossless decoder for 16-bit colour PNG (colour types 2, 4, 6), which Pillow reduces to 8 bits."""
    data = p.read_bytes()
    pos, idat, ihdr, has_trns, ended = 8, [], b"", False, False
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) < length or len(crc) < 4:
            raise _corrupt(where, EOFError(f"chunk {ctype!r} cut off"))
        if zlib.crc32(ctype + body) != int.from_bytes(crc, "big"):
            raise _corrupt(where, ValueError(f"CRC error in chunk {ctype!r}"))
        if ctype == b"IHDR":
            ihdr = body
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"tRNS":
            has_trns = True
        elif ctype == b"IEND":
            ended = True
            break
        pos += 12 + length
    if not ended or len(ihdr) != 13:
        raise _corrupt(where, EOFError("no IEND chunk"))
    width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    ctype_code, interlace = ihdr[9], ihdr[12]
    channels = {2: 3, 4: 2, 6: 4}[ctype_code]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise _corrupt(where, exc) from None
    bpp = 2 * channels
    out = np.empty((height, width, channels), dtype=np.uint16)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    offset = 0
    for x0, y0, dx, dy in passes:
        pw, ph = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if pw <= 0 or ph <= 0:
            continue
        nbytes = ph * (1 + pw * bpp)
        if offset + nbytes > len(raw):
            raise _corrupt(where, EOFError("image data shorter than the header says"))
        rows = _unfilter(raw[offset : offset + nbytes], ph, pw * bpp, bpp, where)
        offset += nbytes
        out[y0::dy, x0::dx] = rows.view(">u2").reshape(ph, pw, channels)
    if has_trns or channels in (2, 4):
        alpha.append(True)
    img = out.astype(np.float32) / 65535.0
    if channels == 2:
        return img[..., 0]
    return img[..., :3]


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _unfilter(raw: bytes, height: int, rowbytes: int, bpp: int, where: str) -> np.ndarray:
    """Undo the PNG row filters (None, Sub, Up, Average, Paeth) of one (sub)image."""
    lines = np.frombuffer(raw, dtype=np.uint8).reshape(height, rowbytes + 1)
    out = np.zeros((height, rowbytes), dtype=np.uint8)
    prev = np.zeros(rowbytes, dtype=np.uint8)
    for y in range(height):
        ftype, line = lines[y, 0], lines[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:  # Sub: a running sum along each byte position of the pixel, mod 256
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.int64) & 255).astype(np.uint8).ravel()
        elif ftype == 2:
            cur = line + prev  # uint8 arithmetic wraps mod 256, as the filter wants
        elif ftype in (3, 4):
            cur = _unfilter_sequential(line.tolist(), prev.tolist(), bpp, ftype)
        else:
            raise _corrupt(where, ValueError(f"unknown PNG filter type {ftype}"))
        out[y] = cur
        prev = out[y]
    return out


def _unfilter_sequential(line: list[int], prev: list[int], bpp: int, ftype: int) -> np.ndarray:
    cur = [0] * len(line)
    for i, value in enumerate(line):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if ftype == 3:
            cur[i] = (value + ((a + b) >> 1)) & 255
        else:
            c = prev[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (value + pred) & 255
    return np.asarray(cur, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8, overwrite: bool = True
) -> Path:
    """Write an image as an 8- or 16-bit PNG (clipped to [0, 1], rounded), atomically; return the path. Taught in chapter 4."""
    if bit_depth not in (8, 16):
        raise ArgumentError(f"bit_depth={bit_depth!r}: use 8 or 16")
    out = Path(path).expanduser()
    if out.suffix.lower() != ".png":
        raise ArgumentError(f"write_image writes PNG, but {out} does not end in .png: change the file name")
    img = check_image(image, "image to write")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if out.is_dir():
        raise OutputError(f"{out} is a directory: pass a file name ending in .png")
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists: pass overwrite=True or choose another name")
    scale = 255.0 if bit_depth == 8 else 65535.0
    pixels = np.rint(np.clip(img, 0.0, 1.0) * scale).astype(np.uint8 if bit_depth == 8 else np.uint16)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {out.parent} ({exc.strerror or exc}): choose a writable folder") from None
    # Write next to the target and rename: a crash or a full disk never leaves a half-written PNG behind.
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & umask, like open()
    except OSError as exc:
        raise OutputError(f"cannot write to {out.parent} ({exc.strerror or exc}): choose a writable folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if bit_depth == 16 and pixels.ndim == 3:
                fh.write(_encode_png16_rgb(pixels))
            else:
                Image.fromarray(pixels).save(fh, format="PNG")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out} ({exc.strerror or exc}): check free space and permissions") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _encode_png16_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one), every row with the Sub filter for smaller files."""
    height, width, _ = pixels.shape
    raw = pixels.astype(">u2").view(np.uint8).reshape(height, width * 6)
    sub = raw.copy()
    sub[:, 6:] = raw[:, 6:] - raw[:, :-6]  # uint8 wraps mod 256
    rows = np.concatenate([np.ones((height, 1), dtype=np.uint8), sub], axis=1)

    def chunk(ctype: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 2, 0, 0, 0])
    return (
        _PNG_SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
