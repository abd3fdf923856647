"""Tests of deconvlab.io: odd-but-valid files read right, bad ones raise one-line errors that say what to do."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from deconvlab import io
from deconvlab.errors import (
    ArgumentError,
    ImageFileError,
    ImageTooLargeError,
    ImageValueError,
    OutputError,
)

RNG = np.random.default_rng(1234)
GRAY8 = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (9, 13), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (9, 13, 3), dtype=np.uint16)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


def read_quietly(path, **kwargs) -> np.ndarray:
    """read_image that fails the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return io.read_image(path, **kwargs)


# ------------------------------------------------------------------------------------------- valid files


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif")])
def test_lossless_8bit_gray_and_rgb(tmp_path, fmt, suffix):
    for name, pixels in (("g", GRAY8), ("c", RGB8)):
        path = tmp_path / f"{name}{suffix}"
        Image.fromarray(pixels).save(path, format=fmt)
        img = read_quietly(path)
        assert img.dtype == np.float32 and img.shape == pixels.shape
        np.testing.assert_array_equal(img, pixels.astype(np.float32) / 255)


def test_jpeg_gray_and_rgb(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))
    Image.fromarray(smooth).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.dstack([smooth, smooth[::-1], 255 - smooth])).save(tmp_path / "c.jpg", quality=95)
    gray, rgb = read_quietly(tmp_path / "g.jpg"), read_quietly(tmp_path / "c.jpg")
    assert gray.shape == (24, 32) and rgb.shape == (24, 32, 3)
    assert np.abs(gray - smooth / 255).max() < 0.03  # lossy, but close on a smooth ramp


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the camera stored the photo on its side
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(tmp_path / "r.jpg", exif=exif)
    assert read_quietly(tmp_path / "r.jpg").shape == (16, 8)


def test_16bit_gray_png_and_tiff(tmp_path):
    Image.fromarray(GRAY16).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "g16.tif", GRAY16)
    for name in ("g16.png", "g16.tif"):
        img = read_quietly(tmp_path / name)
        np.testing.assert_array_equal(img, GRAY16.astype(np.float32) / 65535)


def test_16bit_pgm_reads_and_counts_as_16_bits(tmp_path):
    # read at 16 bits (Pillow mode "I"), but source_bit_depth read PNG and TIFF headers only: enhance wrote 8
    (tmp_path / "g16.pgm").write_bytes(b"P5\n13 9\n65535\n" + GRAY16.astype(">u2").tobytes())
    Image.fromarray(GRAY8).save(tmp_path / "g8.pgm")
    np.testing.assert_array_equal(read_quietly(tmp_path / "g16.pgm"), GRAY16.astype(np.float32) / 65535)
    assert (io.source_bit_depth(tmp_path / "g16.pgm"), io.source_bit_depth(tmp_path / "g8.pgm")) == (16, 8)


def test_16bit_rgb_tiff_is_lossless(tmp_path):
    tifffile.imwrite(tmp_path / "c16.tif", RGB16, photometric="rgb")
    np.testing.assert_array_equal(read_quietly(tmp_path / "c16.tif"), RGB16.astype(np.float32) / 65535)


def test_planar_rgb_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(RGB8, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_quietly(tmp_path / "planar.tif"), RGB8 / np.float32(255))


def test_rgb_tiff_with_an_undefined_planar_configuration_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "p0.tif", RGB8, photometric="rgb")
    with tifffile.TiffFile(tmp_path / "p0.tif", mode="r+b") as tif:
        tif.pages[0].tags["PlanarConfiguration"].overwrite(0)  # neither 1 (interleaved) nor 2 (separate)
    tifffile.imwrite(tmp_path / "g0.tif", GRAY8, extratags=[(285, "s", 0, "a", True)])  # PageName, in place
    with tifffile.TiffFile(tmp_path / "g0.tif") as tif:  # tifffile writes no PlanarConfiguration for one sample
        entry = tif.pages[0].tags[285].offset
    with open(tmp_path / "g0.tif", "r+b") as fh:
        fh.seek(entry)
        fh.write(struct.pack("<HHII", 284, 3, 1, 0))
    with tifffile.TiffFile(tmp_path / "g0.tif") as tif:
        assert tif.pages[0].tags[284].value == 0
    with pytest.raises(ImageFileError) as err:
        io.read_image(tmp_path / "p0.tif")
    assert "has PlanarConfiguration 0, which TIFF does not define" in one_line(err)
    # One sample per pixel has one layout either way.
    np.testing.assert_allclose(read_quietly(tmp_path / "g0.tif"), GRAY8 / 255, atol=1e-6)


# A 16-bit colour PNG written the way other tools write them: every row filter type, optionally Adam7
# interlaced, so the lossless decoder is checked against the PNG specification rather than against our writer.
def _paeth(a: int, b: int, c: int) -> int:
    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(sub: np.ndarray, bpp: int) -> bytes:
    out, prev = bytearray(), [0] * (sub.shape[1] * bpp)
    for y, row in enumerate(sub):
        raw = list(row.astype(">u2").tobytes())
        ftype = y % 5
        filtered = []
        for i, x in enumerate(raw):
            a = raw[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][ftype]
            filtered.append((x - pred) & 255)
        out += bytes([ftype, *filtered])
        prev = raw
    return bytes(out)


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")


def _png16(pixels: np.ndarray, interlace: bool = False, extra: bytes = b"") -> bytes:
    """``extra``: chunks placed between IHDR and IDAT."""
    h, w, c = pixels.shape
    bpp = 2 * c
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    data = b"".join(
        _filter_rows(pixels[y0::dy, x0::dx], bpp)
        for x0, y0, dx, dy in passes
        if pixels[y0::dy, x0::dx].size
    )
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([16, {3: 2, 4: 6, 2: 4}[c], 0, 0, int(interlace)])
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", zlib.compress(data))
            + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_rgb_png_every_filter_lossless(tmp_path, interlace):
    path = tmp_path / "c16.png"
    path.write_bytes(_png16(RGB16, interlace))
    np.testing.assert_array_equal(read_quietly(path), RGB16.astype(np.float32) / 65535)


def test_12bit_rgb_png_with_an_sbit_chunk_reads_on_its_own_scale(tmp_path):
    import png

    rgb12 = np.random.default_rng(0).integers(0, 4096, (3, 4, 3))
    with open(tmp_path / "c12.png", "wb") as fh:  # pypng writes 16-bit samples and sBIT 12
        png.Writer(4, 3, greyscale=False, bitdepth=12).write(fh, rgb12.reshape(3, 12).tolist())
    np.testing.assert_allclose(io.read_image(tmp_path / "c12.png"), rgb12 / 4095, atol=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_rgb_png_exif_orientation_matches_8bit(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RGB8).save(tmp_path / "c8.png", exif=exif)
    (tmp_path / "c16.png").write_bytes(_png16(RGB8.astype(np.uint16) * 257, extra=_png_chunk(b"eXIf", exif.tobytes())))
    expected = read_quietly(tmp_path / "c8.png")
    assert expected.shape == (RGB8.shape[1::-1] if orientation >= 5 else RGB8.shape[:2]) + (3,)
    np.testing.assert_allclose(read_quietly(tmp_path / "c16.png"), expected, rtol=0, atol=1e-7)


def test_16bit_rgba_png_drops_alpha_losslessly(tmp_path):
    rgba = np.concatenate([RGB16, np.full((9, 13, 1), 1000, np.uint16)], axis=-1)
    (tmp_path / "c16a.png").write_bytes(_png16(rgba))
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        img = io.read_image(tmp_path / "c16a.png")
    np.testing.assert_array_equal(img, RGB16.astype(np.float32) / 65535)


def test_rgba_drops_alpha_with_one_warning(tmp_path):
    rgba = np.dstack([RGB8, np.full((9, 13), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = io.read_image(tmp_path / "a.png")
    assert len(caught) == 1 and "alpha channel dropped" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line, not inside deconvlab
    np.testing.assert_array_equal(img, RGB8 / np.float32(255))


def test_la_mode_becomes_gray_with_warning(tmp_path):
    Image.fromarray(np.dstack([GRAY8, GRAY8 // 2]), mode="LA").save(tmp_path / "la.png")
    with pytest.warns(UserWarning, match="alpha"):
        img = io.read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(img, GRAY8 / np.float32(255))


def test_png_colour_key_transparency_warns_like_alpha(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "c.png", transparency=tuple(int(v) for v in RGB8[0, 0]))
    Image.fromarray(GRAY8).save(tmp_path / "g.png", transparency=int(GRAY8[0, 0]))
    Image.fromarray(GRAY16).save(tmp_path / "g16.png", transparency=int(GRAY16[0, 0]))
    for name, expected in (("c.png", RGB8 / np.float32(255)), ("g.png", GRAY8 / np.float32(255)),
                           ("g16.png", GRAY16 / np.float32(65535))):
        with Image.open(tmp_path / name) as im:
            assert "transparency" in im.info and "A" not in im.mode  # a tRNS chunk, no alpha channel
        with pytest.warns(UserWarning, match="alpha channel dropped"):
            img = io.read_image(tmp_path / name)
        np.testing.assert_array_equal(img, expected)  # the keyed colour keeps its value


def _palette_image(colours: list[tuple[int, int, int]]) -> tuple[Image.Image, np.ndarray]:
    index = RNG.integers(0, len(colours), (9, 13), dtype=np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette([v for rgb in colours for v in rgb])
    return im, np.asarray(colours, np.float32)[index] / 255


def test_palette_colour_gray_and_transparent(tmp_path):
    im, expected = _palette_image([(255, 0, 0), (0, 128, 255), (10, 20, 30)])
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_quietly(tmp_path / "p.png"), expected)

    gray_im, gray_expected = _palette_image([(0, 0, 0), (77, 77, 77), (255, 255, 255)])
    gray_im.save(tmp_path / "pg.bmp")
    img = read_quietly(tmp_path / "pg.bmp")
    assert img.ndim == 2  # an all-gray palette is a gray image
    np.testing.assert_array_equal(img, gray_expected[..., 0])

    im.save(tmp_path / "pt.png", transparency=1)
    with pytest.warns(UserWarning, match="alpha"):
        img = io.read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(img, expected)  # the transparent entry keeps its palette colour


@pytest.mark.parametrize("scale", [256, 257])
def test_palette_tiff_white_is_one_whether_the_map_is_stored_at_v256_or_v257(tmp_path, scale):
    colours = np.array([(255, 255, 255), (0, 128, 255), (10, 20, 30)])
    index = RNG.integers(0, 3, (9, 13), dtype=np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :3] = colours.T * scale  # Pillow writes v * 256 (white 65280), libtiff's tools v * 257
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=cmap)
    img = read_quietly(tmp_path / "p.tif")
    np.testing.assert_allclose(img, colours[index] / 255, rtol=0, atol=1e-7)
    assert img.max() == 1.0
    im, expected = _palette_image([(255, 255, 255), (0, 0, 0), (200, 100, 50)])
    im.save(tmp_path / "pillow.tif")
    np.testing.assert_allclose(read_quietly(tmp_path / "pillow.tif"), expected, rtol=0, atol=1e-7)


def test_gray_stored_as_rgb_stays_rgb_unless_asked(tmp_path):
    Image.fromarray(np.dstack([GRAY8] * 3)).save(tmp_path / "man.bmp")
    img = read_quietly(tmp_path / "man.bmp")
    assert img.shape == (9, 13, 3)
    gray = read_quietly(tmp_path / "man.bmp", mode="gray")
    np.testing.assert_allclose(gray, GRAY8 / 255, atol=1e-6)  # weights sum to 1


def test_mode_gray_uses_bt601_and_rgb_repeats(tmp_path):
    pure = np.zeros((2, 3, 3), np.uint8)
    pure[0, :, 0], pure[1, :, 1] = 255, 255
    Image.fromarray(pure).save(tmp_path / "rg.png")
    gray = io.read_image(tmp_path / "rg.png", mode="gray")
    np.testing.assert_allclose(gray[:, 0], [0.299, 0.587], rtol=1e-6)
    Image.fromarray(GRAY8).save(tmp_path / "g.png")
    rgb = io.read_image(tmp_path / "g.png", mode="rgb")
    assert rgb.shape == (9, 13, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    with pytest.raises(ArgumentError) as err:
        io.read_image(tmp_path / "g.png", mode="RGBA")
    assert "'gray' or 'rgb'" in one_line(err)


def test_one_bit_png_and_miniswhite_tiff(tmp_path):
    bits = RNG.random((9, 13)) > 0.5
    Image.fromarray(bits).save(tmp_path / "b.png")
    img = read_quietly(tmp_path / "b.png")
    np.testing.assert_array_equal(img, bits.astype(np.float32))
    tifffile.imwrite(tmp_path / "fax.tif", bits, photometric="miniswhite")
    np.testing.assert_array_equal(read_quietly(tmp_path / "fax.tif"), 1 - bits.astype(np.float32))


def test_float_tiff_taken_as_is_with_a_warning_outside_the_unit_range(tmp_path, monkeypatch):
    values = np.array([[-0.25, 0.0, 0.5], [1.0, 1.5, 0.125]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", values)
    with pytest.warns(UserWarning, match=r"stores floats from -0.25 to 1.5, outside \[0, 1\]") as caught:
        np.testing.assert_array_equal(io.read_image(tmp_path / "f.tif"), values)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    tifffile.imwrite(tmp_path / "frgb.tif", np.dstack([values] * 3) * 255, photometric="rgb")  # a 0-255 scale
    with pytest.warns(UserWarning, match="divide by 255"):
        assert io.read_image(tmp_path / "frgb.tif").shape == (2, 3, 3)
    inside = np.clip(values, 0, 1)
    tifffile.imwrite(tmp_path / "ok.tif", inside)
    np.testing.assert_array_equal(read_quietly(tmp_path / "ok.tif"), inside)  # [0, 1]: no warning
    tifffile.imwrite(tmp_path / "f255.tif", values * 255)
    monkeypatch.setattr(tifffile, "TiffFile", None)  # tifffile fails: Pillow's float mode "F" follows the same rule
    with pytest.warns(UserWarning, match="from -63.75 to 382.5"):
        np.testing.assert_allclose(io.read_image(tmp_path / "f255.tif"), values * 255)


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png"])
def test_multi_frame_files_warn_and_read_the_first_frame(tmp_path, suffix):
    frames = [Image.fromarray(np.full((6, 7), v, np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="has 3 frames") as caught:
        img = io.read_image(path)
    assert len(caught) == 1 and img.shape == (6, 7)
    np.testing.assert_allclose(img, 10 / 255, atol=1e-6)


def test_tiff_pyramid_pages_are_not_frames(tmp_path):
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(GRAY8, subifds=1)
        tif.write(GRAY8[::2, ::2], subfiletype=1)  # a reduced-resolution preview of the same image
    np.testing.assert_allclose(read_quietly(path), GRAY8 / 255, atol=1e-6)


def _link_tiff_page(path, index: int, target: int) -> None:
    """Point page ``index``'s next-page link (classic TIFF: count, 12-byte entries, then the link) at ``target``."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[index]
        link = page.offset + 2 + 12 * len(page.tags)
    with open(path, "r+b") as fh:
        fh.seek(link)
        fh.write(struct.pack("<I", target))


class _EndlessPages(BaseException):
    """Not an Exception, which read_image's fallback to Pillow would swallow: the test fails instead of hanging."""


def test_tiff_page_linked_back_to_an_earlier_page_is_counted_once(tmp_path, monkeypatch):
    tiffpages_iter = tifffile.TiffPages.__iter__

    def bounded(self):
        for i, page in enumerate(tiffpages_iter(self)):
            if i == 100:
                raise _EndlessPages("tifffile yielded a 101st page of a 1- or 2-page file")
            yield page

    monkeypatch.setattr(tifffile.TiffPages, "__iter__", bounded)
    tifffile.imwrite(tmp_path / "self.tif", GRAY8)
    _link_tiff_page(tmp_path / "self.tif", 0, 8)  # the first page links to itself (tifffile writes it at 8)
    np.testing.assert_allclose(read_quietly(tmp_path / "self.tif"), GRAY8 / 255, atol=1e-6)
    tifffile.imwrite(tmp_path / "two.tif", np.stack([GRAY8, 255 - GRAY8]))
    _link_tiff_page(tmp_path / "two.tif", 1, 8)  # the second page links back to the first
    with pytest.warns(UserWarning, match="has 2 frames") as caught:
        img = io.read_image(tmp_path / "two.tif")
    assert len(caught) == 1
    np.testing.assert_allclose(img, GRAY8 / 255, atol=1e-6)


def _link_to_garbage(path, index: int) -> None:
    with open(path, "ab") as fh:
        end = fh.tell() + fh.write(b"\0" * (fh.tell() % 2))
        fh.write(b"\xff" * 64)  # an IFD of 65535 entries, cut short
    _link_tiff_page(path, index, end)


def test_tiff_page_linked_to_garbage_reads_the_first_page(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "one.tif", GRAY8)
    _link_to_garbage(tmp_path / "one.tif", 0)
    tifffile.imwrite(tmp_path / "two.tif", np.stack([GRAY8, 255 - GRAY8]))
    _link_to_garbage(tmp_path / "two.tif", 1)
    _lzw_tiff(tmp_path / "lzw.tif", GRAY8, "minisblack")  # tifffile reads LZW only with imagecodecs
    _link_to_garbage(tmp_path / "lzw.tif", 0)
    with pytest.warns(UserWarning, match=r"links to a page that cannot be read \(.+\) after 1 readable"):
        np.testing.assert_allclose(io.read_image(tmp_path / "lzw.tif"), GRAY8 / 255, atol=1e-6)
    for reader in ("tifffile", "Pillow"):  # Pillow's frame count raises TypeError ("Missing dimensions")
        with pytest.warns(UserWarning, match=r"links to a page that cannot be read \(.+\) after 1 readable"):
            np.testing.assert_allclose(io.read_image(tmp_path / "one.tif"), GRAY8 / 255, atol=1e-6, err_msg=reader)
        with pytest.warns(UserWarning, match=r"links to a page that cannot be read \(.+\) after 2 readable"):
            np.testing.assert_allclose(io.read_image(tmp_path / "two.tif"), GRAY8 / 255, atol=1e-6, err_msg=reader)
        monkeypatch.setattr(tifffile, "TiffFile", None)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_matches_pillow(tmp_path, orientation):
    from PIL import ImageOps

    path = tmp_path / "o.tif"
    tifffile.imwrite(path, RGB16, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    stored = Image.fromarray(RGB16[..., 0])
    stored.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(stored), dtype=np.float32) / 65535
    assert expected.shape == (RGB16.shape[1::-1] if orientation >= 5 else RGB16.shape[:2])
    np.testing.assert_array_equal(read_quietly(path)[..., 0], expected)
    assert read_quietly(path).dtype == np.float32


def _lzw_tiff(path, pixels: np.ndarray, photometric: str) -> None:
    """An LZW-compressed TIFF, which tifffile cannot write without imagecodecs: every byte coded as a literal
    (9-bit codes, a Clear code every 200 bytes so the table never needs wider ones), valid if not compact."""
    data = np.ascontiguousarray(pixels).tobytes()
    codes = [code for i in range(0, len(data), 200) for code in (256, *data[i : i + 200])] + [257]
    bits = "".join(f"{code:09b}" for code in codes)
    bits += "0" * (-len(bits) % 8)
    strip = int(bits, 2).to_bytes(len(bits) // 8, "big")
    tifffile.imwrite(path, pixels, photometric=photometric, rowsperstrip=pixels.shape[0])
    with open(path, "ab") as fh:
        offset = fh.tell()
        fh.write(strip)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        tags["Compression"].overwrite(5)
        tags["StripOffsets"].overwrite(offset)
        tags["StripByteCounts"].overwrite(len(strip))


def test_16bit_lzw_tiff_reads_at_16_bits_or_says_imagecodecs(tmp_path):
    _lzw_tiff(tmp_path / "c8.tif", RGB8, "rgb")
    _lzw_tiff(tmp_path / "g16.tif", GRAY16, "minisblack")
    _lzw_tiff(tmp_path / "c16.tif", RGB16, "rgb")
    np.testing.assert_array_equal(read_quietly(tmp_path / "c8.tif"), RGB8 / np.float32(255))
    # Pillow's libtiff reads 16-bit gray LZW at 16 bits, whether or not tifffile can.
    np.testing.assert_array_equal(read_quietly(tmp_path / "g16.tif"), GRAY16 / np.float32(65535))
    with Image.open(tmp_path / "c16.tif") as im:
        assert im.mode == "RGB"  # ...but 16-bit colour only at 8 bits, the high bytes
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        with pytest.raises(ImageFileError) as err:
            io.read_image(tmp_path / "c16.tif")
        assert "16-bit TIFF compressed with LZW" in one_line(err) and "pip install imagecodecs" in str(err.value)
    else:
        np.testing.assert_array_equal(read_quietly(tmp_path / "c16.tif"), RGB16 / np.float32(65535))


def _with_a_second_page_tifffile_refuses(path) -> None:
    """Link a 1x1 8-bit gray page of 4097 entries (padded with a private tag) after the first: Pillow reads it,
    tifffile refuses it as a suspicious number of tags (over 4096) but still reads the first page."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        link = page.offset + 2 + 12 * len(page.tags)  # classic TIFF: count, 12-byte entries, then the link
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 0),
               (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)]
    entries += [(65000, 3, 1, 0)] * (4097 - len(entries))
    with open(path, "r+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        end += fh.write(b"\0" * (end % 2))  # IFDs start on a word boundary
        fh.write(struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4))
        fh.seek(link)
        fh.write(struct.pack("<I", end))


def test_16bit_colour_tiff_that_tifffile_refuses_is_not_read_at_8_bits(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "c16.tif", RGB16, photometric="rgb")
    _with_a_second_page_tifffile_refuses(tmp_path / "c16.tif")
    with Image.open(tmp_path / "c16.tif") as im:
        assert im.mode == "RGB" and im.n_frames == 2  # Pillow would read the first page's high bytes only
    with pytest.warns(UserWarning, match=r"links to a page that cannot be read \(.+\)"):
        np.testing.assert_array_equal(io.read_image(tmp_path / "c16.tif"), RGB16 / np.float32(65535))
    tifffile.imwrite(tmp_path / "plain16.tif", RGB16, photometric="rgb")
    tifffile.imwrite(tmp_path / "g16.tif", GRAY16)
    monkeypatch.setattr(tifffile, "TiffFile", None)  # tifffile fails on every file: Pillow reads what it can in full
    with pytest.raises(ImageFileError, match="16-bit TIFF that tifffile cannot read"):
        io.read_image(tmp_path / "plain16.tif")
    np.testing.assert_array_equal(read_quietly(tmp_path / "g16.tif"), GRAY16 / np.float32(65535))


def test_cmyk_tiff_and_jpeg(tmp_path):
    ink = np.zeros((2, 3, 4), np.uint8)
    ink[0, 0] = (255, 0, 0, 0)  # cyan ink only
    ink[0, 1] = (0, 0, 0, 255)  # black ink
    ink[0, 2] = (0, 255, 255, 0)  # magenta + yellow: red
    ink[1] = (0, 0, 0, 128)  # half black: mid gray
    tifffile.imwrite(tmp_path / "cmyk.tif", ink, photometric="separated")
    rgb = read_quietly(tmp_path / "cmyk.tif")
    assert rgb.shape == (2, 3, 3)
    np.testing.assert_allclose(rgb[0], [[0, 1, 1], [0, 0, 0], [1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(rgb[1], 1 - 128 / 255, atol=1e-6)
    Image.fromarray(ink, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    jpeg = read_quietly(tmp_path / "cmyk.jpg")
    assert jpeg.shape == (2, 3, 3) and jpeg.dtype == np.float32


# ------------------------------------------------------------------------------------------- bad files


def test_missing_directory_empty_and_text_files(tmp_path):
    cases = {
        tmp_path / "nope.png": "no file at",
        tmp_path: "is a directory",
    }
    (tmp_path / "empty.png").touch()
    cases[tmp_path / "empty.png"] = "empty (0 bytes)"
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    cases[tmp_path / "notes.png"] = "not an image"
    for path, expected in cases.items():
        with pytest.raises(ImageFileError) as err:
            io.read_image(path)
        assert expected in one_line(err) and str(path) in str(err.value)


@pytest.mark.skipif(os.name != "posix", reason="/dev/null and FIFOs")
def test_a_device_or_a_pipe_is_refused_as_not_a_regular_file(tmp_path):
    """/dev/null and bash's <(...) (a pipe) were "empty (0 bytes): re-download or re-export it"; a FIFO nobody
    writes to made read_image wait forever in open()."""
    os.mkfifo(tmp_path / "pipe.png")
    for path in (Path("/dev/null"), tmp_path / "pipe.png"):
        with pytest.raises(ImageFileError) as err:
            io.read_image(path)
        assert "not a regular file" in one_line(err) and str(path) in str(err.value)


def test_truncated_png_raises_even_if_pillow_is_told_to_pad(tmp_path, monkeypatch):
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFileError) as err:
        io.read_image(tmp_path / "half.png")
    assert "truncated or corrupt" in one_line(err) and "re-download" in str(err.value)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageFileError):
        io.read_image(tmp_path / "half.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_truncated_16bit_png_and_tiff(tmp_path):
    data = _png16(RGB16)
    (tmp_path / "half16.png").write_bytes(data[: len(data) // 2])
    tifffile.imwrite(tmp_path / "full.tif", RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    tif = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "half.tif").write_bytes(tif[: len(tif) // 2])
    for name in ("half16.png", "half.tif"):
        with pytest.raises(ImageFileError) as err:
            io.read_image(tmp_path / name)
        assert "truncated or corrupt" in one_line(err)


def test_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(GRAY8).save(tmp_path / "g.png")
    with pytest.raises(ImageTooLargeError) as err:
        io.read_image(tmp_path / "g.png", max_pixels=100)
    assert "117 pixels" in one_line(err) and "DECONVLAB_MAX_PIXELS" in str(err.value)
    monkeypatch.setenv("DECONVLAB_MAX_PIXELS", "116")
    assert io.max_pixels() == 116
    with pytest.raises(ImageTooLargeError):
        io.read_image(tmp_path / "g.png")
    monkeypatch.setenv("DECONVLAB_MAX_PIXELS", "lots")
    with pytest.raises(ArgumentError) as err:
        io.max_pixels()
    assert "positive integer" in one_line(err)
    monkeypatch.delenv("DECONVLAB_MAX_PIXELS")
    assert io.max_pixels() == 2**26

    # A header that claims 10000 x 10000 pixels with no pixel data: decoding would fail as truncated, so
    # ImageTooLargeError proves the size was checked from the header first.
    def chunk(ctype: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")

    def bomb(side: int) -> bytes:
        ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
        idat = zlib.compress(b"\x00" * 64)  # one short row of the claimed image
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")

    (tmp_path / "bomb.png").write_bytes(bomb(10_000))
    with pytest.raises(ImageTooLargeError):
        io.read_image(tmp_path / "bomb.png")
    (tmp_path / "bigger.png").write_bytes(bomb(20_000))  # beyond Pillow's own decompression-bomb guard
    with pytest.raises(ImageTooLargeError) as err:
        io.read_image(tmp_path / "bigger.png", max_pixels=10**9)
    assert "decompression-bomb" in one_line(err)


def test_nan_in_float_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "nan.tif", np.array([[0.5, np.nan], [np.inf, 0.0]], np.float32))
    with pytest.raises(ImageValueError) as err:
        io.read_image(tmp_path / "nan.tif")
    assert "2 NaN/inf values" in one_line(err)


# ------------------------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.array([[0.0, np.nan]]), "NaN/inf"),
        (np.array([[np.inf, 0.0]], np.float32), "NaN/inf"),
        (np.zeros(5), "an image must be"),
        (np.zeros((1, 4, 4, 1)), "a batch"),
        (np.zeros((4, 4, 4)), "drop the alpha channel"),
        (np.zeros((4, 4, 2)), "2 channels"),
        (np.zeros((0, 4)), "is empty"),
        (np.zeros((4, 4), np.int16), "dtype int16"),
        (np.array([["a"]]), "dtype <U1"),
    ],
)
def test_check_image_rejects(array, expected):
    with pytest.raises(ImageValueError) as err:
        io.check_image(array, name="x")
    assert expected in one_line(err) and one_line(err).startswith("x ")


def test_check_image_converts():
    assert io.check_image(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    assert io.check_image(np.array([[0, 65535]], np.uint16)).tolist() == [[0.0, 1.0]]
    assert io.check_image(np.array([[True, False]])).dtype == np.float32
    out = io.check_image(np.full((2, 2, 1), 1.25))  # degraded images may leave [0, 1]
    assert out.dtype == np.float32 and out.shape == (2, 2, 1) and out.max() == 1.25


def test_unit_float_is_the_public_reading_of_pixel_values():
    # degrade, metrics, train and evaluate read 8- and 16-bit pixels with it; metrics asks for float64 (exact numbers)
    u16 = np.array([[0, 1, 65535]], np.uint16)
    assert "unit_float" in io.__all__ and io.unit_float(u16).dtype == np.float32
    assert io.unit_float(u16, np.float64).tolist() == [[0.0, 1 / 65535, 1.0]]
    assert io.unit_float(np.array([True, False]), np.float64).tolist() == [1.0, 0.0]
    floats, signed = np.array([np.nan, 1.25], np.float32), np.array([-1, 300], np.int16)
    assert io.unit_float(floats) is floats and np.isnan(io.unit_float(floats, np.float64)[0])
    assert io.unit_float(signed) is signed  # left for the caller to refuse
    assert io.unit_float([True, False], "float64").tolist() == [1.0, 0.0]  # a list, a dtype by name


def test_as_batch_from_batch_round_trip():
    gray, rgb = RNG.random((5, 7), np.float32), RNG.random((5, 7, 3), np.float32)
    assert io.as_batch(gray).shape == (1, 5, 7, 1) and io.as_batch(rgb).shape == (1, 5, 7, 3)
    np.testing.assert_array_equal(io.from_batch(io.as_batch(gray)), gray)
    np.testing.assert_array_equal(io.from_batch(io.as_batch(rgb)), rgb)
    batch = RNG.random((2, 5, 7, 1))
    assert io.as_batch(batch).dtype == np.float32 and io.as_batch(batch).shape == (2, 5, 7, 1)
    with pytest.raises(ImageValueError) as err:
        io.from_batch(batch)
    assert "holds 2 images" in one_line(err)
    with pytest.raises(ImageValueError):
        io.from_batch(gray)


# ------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3), (6, 5, 1)])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_write_read_round_trip_is_exact(tmp_path, shape, bit_depth):
    top = 255 if bit_depth == 8 else 65535
    img = (RNG.integers(0, top + 1, shape) / top).astype(np.float32)
    path = io.write_image(tmp_path / "out.png", img, bit_depth=bit_depth)
    back = read_quietly(path)
    np.testing.assert_array_equal(back, img[..., 0] if shape[-1] == 1 else img)
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_16bit_rgb_png_round_trip_of_a_non_contiguous_array(tmp_path):
    import png

    # A transposed view: not C-contiguous (the hand-written encoder this replaced crashed on such arrays).
    pixels = RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16).transpose(1, 0, 2)
    img = pixels.astype(np.float32) / 65535
    assert not img.flags.c_contiguous
    path = io.write_image(tmp_path / "rgb16.png", img, bit_depth=16)
    np.testing.assert_array_equal(read_quietly(path), img)
    width, height, rows, info = png.Reader(bytes=path.read_bytes()).asDirect()
    assert (width, height, info["bitdepth"], info["planes"]) == (5, 7, 16, 3)
    np.testing.assert_array_equal(np.vstack([np.asarray(r) for r in rows]).reshape(7, 5, 3), pixels)
    assert io.source_bit_depth(path) == 16


def test_16bit_png_without_a_profile_is_encoded_straight_into_the_file(tmp_path, monkeypatch):
    # it was encoded into memory and re-chunked: about twice the encoded file's size at the peak, same bytes
    class NoBuffer:
        def __init__(self, *args):
            raise AssertionError("the 16-bit PNG went through an in-memory copy")

    monkeypatch.setattr(io, "BytesIO", NoBuffer)
    img = RNG.random((9, 6, 3)).astype(np.float32)
    path = io.write_image(tmp_path / "rgb16.png", img, bit_depth=16)
    np.testing.assert_array_equal(read_quietly(path), np.rint(img * 65535) / np.float32(65535))


def test_write_clips_and_rounds(tmp_path):
    path = io.write_image(tmp_path / "clip.png", np.array([[-0.5, 0.5 / 255, 1.6 / 255, 7.0]]))
    with Image.open(path) as im:
        assert np.asarray(im).tolist() == [[0, 0, 2, 255]]


def test_write_refuses_nan_and_leaves_no_file(tmp_path):
    with pytest.raises(ImageValueError):
        io.write_image(tmp_path / "nan.png", np.array([[0.1, np.nan]]))
    assert list(tmp_path.iterdir()) == []


def test_write_overwrite_rules(tmp_path):
    path = io.write_image(tmp_path / "a.png", np.zeros((2, 2)))
    before = path.read_bytes()
    with pytest.raises(OutputError) as err:
        io.write_image(path, np.ones((2, 2)), overwrite=False)
    assert "overwrite=True" in one_line(err) and path.read_bytes() == before
    io.write_image(path, np.ones((2, 2)))
    assert path.read_bytes() != before


def test_write_bad_targets(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError) as err:
        io.write_image(tmp_path / "file.txt" / "out.png", np.zeros((2, 2)))  # parent is a file: unwritable
    assert "writable folder" in one_line(err)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OutputError):
        io.write_image(tmp_path / "dir.png", np.zeros((2, 2)))
    with pytest.raises(ArgumentError):
        io.write_image(tmp_path / "out.jpg", np.zeros((2, 2)))
    with pytest.raises(ArgumentError):
        io.write_image(tmp_path / "out.png", np.zeros((2, 2)), bit_depth=12)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_write_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputError):
        io.write_image(locked / "out.png", np.zeros((2, 2)))


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    io.write_image(tmp_path / "keep.png", np.zeros((4, 4)))
    original = (tmp_path / "keep.png").read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OutputError) as err:
        io.write_image(tmp_path / "new.png", np.zeros((4, 4)))
    assert "No space left" in one_line(err)
    with pytest.raises(OutputError):
        io.write_image(tmp_path / "keep.png", np.ones((4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]  # no temp files, no new.png
    assert (tmp_path / "keep.png").read_bytes() == original


def test_written_file_respects_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = io.write_image(tmp_path / "perm.png", np.zeros((2, 2)))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_new_file_mode_follows_a_strict_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        io.write_atomic(tmp_path / "table.csv", b"a,b\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o640  # mkstemp would give 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444], ids=oct)
def test_overwrite_keeps_the_file_mode(tmp_path, mode):
    path = io.write_image(tmp_path / "keep.png", np.zeros((2, 2)))
    path.chmod(mode)
    io.write_image(path, np.ones((2, 2)))
    assert path.stat().st_mode & 0o777 == mode
    assert np.asarray(Image.open(path)).min() == 255  # the new pixels, not the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_as_batch_reads_a_pixel_batch_as_it_reads_one_image():
    batch = np.stack([RGB8, RGB8[::-1]])
    np.testing.assert_array_equal(io.as_batch(batch), np.stack([io.as_batch(RGB8)[0], io.as_batch(RGB8[::-1])[0]]))
    assert io.as_batch(batch).max() <= 1.0 and io.as_batch(batch).dtype == np.float32


def test_16bit_gray_alpha_png_reads_as_gray_losslessly(tmp_path):
    """Colour type 4 (gray + alpha, 2 samples) at 16 bits: the gray plane over 65535, alpha dropped."""
    la = np.dstack([GRAY16, np.full((9, 13), 1000, np.uint16)])
    (tmp_path / "la16.png").write_bytes(_png16(la))
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        img = io.read_image(tmp_path / "la16.png")
    np.testing.assert_array_equal(img, GRAY16.astype(np.float32) / 65535)


def test_gray_alpha_tiff_reads_as_gray(tmp_path):
    """A 2-sample TIFF (gray + extra alpha sample) reads as its gray plane, alpha dropped."""
    la = np.dstack([GRAY8, GRAY8 // 2])
    tifffile.imwrite(tmp_path / "la.tif", la, photometric="minisblack", extrasamples=[2])
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        img = io.read_image(tmp_path / "la.tif")
    np.testing.assert_array_equal(img, GRAY8 / np.float32(255))
