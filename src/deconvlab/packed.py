"""Registered sets packed into one compact file each, for a machine that has neither the network nor the files.

The GPU host gets only what travels with the working tree (64 MiB in all), so the super-resolution training and
test sets go there as ``<folder>/<set>.<view>.npz``: every image losslessly PNG-encoded (8 bits), with the
registry's sha256 of the file it came from and a sha256 of its decoded pixels. Two views:

* ``"stored"``: the pixels as stored (gray or RGB), so :func:`load_dataset` returns exactly what
  :func:`deconvlab.registry.load_dataset` reads from the files (the test sets, and Train400);
* ``"y"``: the luma of MATLAB ``rgb2ycbcr`` rounded to 8 bits (gray passes through), the training input of the
  SRCNN/VDSR code, which converts uint8 images and keeps uint8; T91's luma is 3.2 MB this way against 16 MB of
  RGB files.

:func:`load_dataset` reads a pack when ``$DECONVLAB_DATA`` holds one and the registry otherwise (the "y" view is
then computed from the files, the same pixels). A pack whose source hashes differ from ``data/registry.tsv`` is
refused, so a stale pack cannot stand in for a changed set.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .errors import DataError
from .tasks import pixel_hash

__all__ = ["VIEWS", "load_dataset", "pack_set", "pack_path", "y_uint8"]

VIEWS = ("stored", "y")


def y_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit luma of an 8-bit image: MATLAB ``rgb2ycbcr`` on uint8 (Y rounded, in [16, 235]); gray as is."""
    from .metrics import rgb_to_y

    if pixels.ndim == 2:
        return pixels.astype(np.uint8)
    y = rgb_to_y(pixels.astype(np.float64) / 255.0).astype(np.float64) * 255.0
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def _decode_file(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "RGB"):
            raise DataError(f"{path} has mode {im.mode}: packs hold 8-bit gray or RGB images")
        return np.asarray(im)


def pack_path(folder: str | os.PathLike, name: str, view: str) -> Path:
    return Path(folder) / f"{name}.{view}.npz"


def pack_set(name: str, folder: str | os.PathLike, view: str = "stored") -> Path:
    """Write ``<folder>/<name>.<view>.npz`` from the verified files of a registered set; returns its path."""
    from PIL import Image

    from .registry import _info, fetch_dataset

    if view not in VIEWS:
        raise DataError(f"view={view!r}: use one of {', '.join(VIEWS)}")
    info = _info(name)
    name = info.name
    blobs, hashes = [], []
    for path in fetch_dataset(name):
        pixels = _decode_file(path)
        if view == "y":
            pixels = y_uint8(pixels)
        encoded = io.BytesIO()
        Image.fromarray(pixels).save(encoded, format="PNG", optimize=True)
        blobs.append(encoded.getvalue())
        hashes.append(pixel_hash(pixels))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out = pack_path(folder, name, view)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, png=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             names=np.array([f.name for f in info.files]), files=np.array([f.file for f in info.files]),
             file_sha256=np.array([f.sha256 for f in info.files]), pixel_sha256=np.array(hashes),
             view=np.array(view), dataset=np.array(name))
    os.replace(tmp, out)
    return out


def _read_pack(path: Path, name: str, limit: int | None) -> tuple[list[str], list[np.ndarray]]:
    from PIL import Image

    from .registry import registry

    with np.load(path) as pack:
        expected = [f.sha256 for f in registry()[name].files]
        if list(pack["file_sha256"]) != expected:
            raise DataError(f"{path} was packed from other files than data/registry.tsv lists for {name}: "
                            "re-pack it (benchmarks/pack_sr_data.py)")
        blob, offsets = pack["png"].tobytes(), pack["offsets"]
        names, hashes = [str(n) for n in pack["names"][:limit]], list(pack["pixel_sha256"])
    images = []
    for i in range(len(names)):
        with Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]])) as im:
            pixels = np.asarray(im)
        if pixel_hash(pixels) != hashes[i]:
            raise DataError(f"{path}: image {names[i]} does not decode to the pixels it was packed from: re-pack it")
        images.append(pixels)
    return names, images


def load_dataset(name: str, view: str = "stored", mode: str | None = None, limit: int | None = None):
    """A set as :class:`deconvlab.registry.Dataset` (float32 in [0, 1]): from ``$DECONVLAB_DATA/<name>.<view>.npz``
    when that pack exists, else from the registry (the "y" view computed from the files, never the fallback).

    ``mode`` ("gray"/"rgb", "stored" view only) converts as :func:`deconvlab.registry.load_dataset` does.
    """
    from .io import _to_mode
    from .registry import Dataset, _check_limit, _info, _local_root, fetch_dataset
    from .registry import load_dataset as registry_load

    if view not in VIEWS:
        raise DataError(f"view={view!r}: use one of {', '.join(VIEWS)}")
    # a pack is read without the registry's loader, so its checks come first: name (any case) and limit
    info = _info(name)
    name, limit = info.name, _check_limit(limit)
    root = _local_root()
    path = pack_path(root, name, view) if root is not None else None
    if path is not None and path.is_file():
        names, pixels = _read_pack(path, name, limit)
        source = f"the pack {path}"
    elif view == "stored":
        return registry_load(name, mode=mode, limit=limit, fallback=False)
    else:
        pixels = [y_uint8(_decode_file(p)) for p in fetch_dataset(name, limit=limit)]
        names, source = [f.name for f in info.files[: len(pixels)]], "its files"
    images = [_to_mode(p.astype(np.float32) / 255.0, mode) for p in pixels]
    what = "8-bit MATLAB-rgb2ycbcr luma" if view == "y" else "pixels as stored"
    return Dataset(name=name, images=images, names=names, is_fallback=False,
                   color="gray" if view == "y" else (mode or info.color),
                   note=f"{name}: {len(images)} images, {what}, from {source}")
