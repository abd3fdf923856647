"""The benchmark data sets: registry, verified downloads, local copies, an offline fallback and training patches.

Where the images come from, in order:

1. ``$DECONVLAB_DATA``: a local copy laid out as ``<DECONVLAB_DATA>/<dataset>/<file>``; every file is checked
   against its sha256 in ``data/registry.tsv`` (once per process).
2. Otherwise a download through pooch from the pinned GitHub commit in the registry, verified by sha256 and kept in
   :func:`cache_dir` (``$DECONVLAB_CACHE`` or the user cache).
3. With no network and no ``$DECONVLAB_DATA``: a fixed, documented split of photographs that ship with
   scikit-image (:data:`FALLBACK_TRAIN`, :data:`FALLBACK_TEST`), with one warning, so every notebook still runs.

The sets, their sources, terms and citations are in ``data/DATASETS.md``. Taught in chapter 1
(``notebooks/01_background``); :class:`PatchDataset` in chapter 3 (``notebooks/03_conv_deconv_fuse``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import keras
import numpy as np

from .errors import (
    ArgumentError,
    DataError,
    DownloadError,
    HashMismatchError,
    UnknownDatasetError,
)
from .io import check_image, read_image, rgb_to_gray
from .paths import data_dir

__all__ = [
    "DATASET_NAMES",
    "FALLBACK_NAMES",
    "FALLBACK_TEST",
    "FALLBACK_TRAIN",
    "Dataset",
    "DatasetInfo",
    "FileInfo",
    "NoNetworkError",
    "PatchDataset",
    "cache_dir",
    "fetch_dataset",
    "fetch_file",
    "load_dataset",
    "registry",
]

#: The registered sets, in the order the book introduces them.
DATASET_NAMES = ("train400", "bsd68", "set12", "cbsd68", "set5", "set14")

#: Offline stand-in for training sets (train400): scikit-image photographs, mostly textures and scenes.
FALLBACK_TRAIN = (
    "brick", "cell", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
    "moon", "page", "retina", "stereo_motorcycle", "text",
)  # fmt: skip
#: Offline stand-in for test sets: classic natural photographs, disjoint from FALLBACK_TRAIN.
#: ``cat`` is left out (the same pixels as ``chelsea``), and ``clock`` too (motion-blurred on purpose, no clean truth).
FALLBACK_TEST = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket")
FALLBACK_NAMES = ("fallback-train", "fallback-test")
_TRAINING_SETS = frozenset({"train400"})

# Short citation and terms per set; data/DATASETS.md has the full references.
_META: dict[str, tuple[str, str]] = {
    "train400": (
        "Chen & Pock, TPAMI 2017 (TNRD); Zhang et al., TIP 2017 (DnCNN); images from BSDS (Martin et al., ICCV 2001)",
        "Berkeley Segmentation Dataset: non-commercial research and educational use only",
    ),
    "bsd68": (
        "Roth & Black, IJCV 2009 (Fields of Experts); images from BSDS (Martin et al., ICCV 2001)",
        "Berkeley Segmentation Dataset: non-commercial research and educational use only",
    ),
    "set12": ("Zhang et al., TIP 2017 (DnCNN)", "no licence stated, mixed copyright: research use only"),
    "cbsd68": (
        "Roth & Black, IJCV 2009; Zhang et al., TIP 2018 (FFDNet); images from BSDS (Martin et al., ICCV 2001)",
        "Berkeley Segmentation Dataset: non-commercial research and educational use only",
    ),
    "set5": ("Bevilacqua et al., BMVC 2012", "no licence text found: research benchmark use only"),
    "set14": ("Zeyde et al., Curves and Surfaces 2010", "no licence text found, mixed content: research use only"),
}

_TIMEOUT_S = 10  # one request that long is enough to call the machine offline
_RETRIES = 3  # attempts for transient failures (HTTP 5xx/429, cut-off transfers, slow reads)
_BACKOFF_S = 0.5  # first pause between attempts; doubles each time
_WORKERS = 8  # parallel downloads once the first file has shown the network works


class NoNetworkError(DownloadError):
    """The download server could not be reached at all (no network, DNS, proxy): the offline case."""


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One registered file: where to download it and what it must hash to."""

    dataset: str
    file: str
    url: str
    sha256: str
    bytes: int
    width: int
    height: int
    mode: str  # Pillow mode after a full decode: "L" or "RGB"

    @property
    def name(self) -> str:
        """The file name without its extension, as used in result tables."""
        return Path(self.file).stem


@dataclasses.dataclass
class DatasetInfo:
    """A registered set: its files in order, "gray" or "rgb", a short citation and its terms of use."""

    name: str
    files: list[FileInfo]
    color: str
    citation: str
    terms: str = ""

    @property
    def source(self) -> str:
        """Where the files come from, e.g. ``cszn/DnCNN@e93b278:testsets/BSD68``."""
        url = urlparse(self.files[0].url)
        parts = url.path.strip("/").split("/")
        if url.netloc == "raw.githubusercontent.com" and len(parts) >= 4:
            return f"{parts[0]}/{parts[1]}@{parts[2][:7]}:{'/'.join(parts[3:-1])}"
        return self.files[0].url.rsplit("/", 1)[0]

    @property
    def total_bytes(self) -> int:
        """Download size of the whole set."""
        return sum(f.bytes for f in self.files)

    def file(self, filename: str) -> FileInfo:
        """The registry row of one file, by file name (``"test001.png"``) or name (``"test001"``)."""
        for f in self.files:
            if filename in (f.file, f.name):
                return f
        raise UnknownDatasetError(
            f"{self.name} has no file {filename!r}: its files are {self.files[0].file} ... {self.files[-1].file}"
        )


@dataclasses.dataclass
class Dataset:
    """Loaded images (float32 in [0, 1]) with their names; ``is_fallback`` marks the offline stand-in."""

    name: str
    images: list[np.ndarray]
    names: list[str]
    is_fallback: bool
    color: str
    note: str

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(zip(self.names, self.images, strict=True))


# ---------------------------------------------------------------------------------------------- registry

_REGISTRY_CACHE: dict[tuple[str, int, int], dict[str, DatasetInfo]] = {}


def registry() -> dict[str, DatasetInfo]:
    """All registered sets from ``<repo>/data/registry.tsv``, by name, files in registry order. Taught in chapter 1."""
    path = data_dir() / "registry.tsv"
    try:
        stat = path.stat()
    except OSError:
        raise DataError(
            f"no data registry at {path}: install the package from a clone of the book (pip install -e .) "
            "or set DECONVLAB_ROOT to that clone"
        ) from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _REGISTRY_CACHE:
        _REGISTRY_CACHE.clear()
        _REGISTRY_CACHE[key] = _parse_registry(path)
    return dict(_REGISTRY_CACHE[key])


def _parse_registry(path: Path) -> dict[str, DatasetInfo]:
    files: dict[str, list[FileInfo]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for line_no, row in enumerate(csv.DictReader(fh, delimiter="\t"), start=2):
            try:
                info = FileInfo(
                    dataset=row["dataset"], file=row["file"], url=row["url"], sha256=row["sha256"].lower(),
                    bytes=int(row["bytes"]), width=int(row["width"]), height=int(row["height"]), mode=row["mode"],
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path} line {line_no} is malformed ({exc}): regenerate it with tools/make_registry.py") from None
            files.setdefault(info.dataset, []).append(info)
    out = {}
    for name, rows in files.items():
        citation, terms = _META.get(name, ("", ""))
        color = "gray" if all(f.mode in ("L", "1", "I;16") for f in rows) else "rgb"
        out[name] = DatasetInfo(name=name, files=rows, color=color, citation=citation, terms=terms)
    return out


def _info(name: str) -> DatasetInfo:
    sets = registry()
    key = str(name).strip().lower()
    if key not in sets:
        known = ", ".join([*sets, *FALLBACK_NAMES])
        raise UnknownDatasetError(f"unknown data set {name!r}: use one of {known}")
    return sets[key]


def cache_dir() -> Path:
    """Where downloads are kept: ``$DECONVLAB_CACHE``, else the user cache (``pooch.os_cache``). Taught in chapter 1."""
    env = os.environ.get("DECONVLAB_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("deconvlab"))


# ---------------------------------------------------------------------------------------------- verification

# (path, size, mtime) -> sha256: a file is hashed once per process, however often a set is loaded.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = _sha256(path)
    return _DIGESTS[key]


def _remember(path: Path, sha256: str) -> None:
    stat = path.stat()
    _DIGESTS[(str(path.resolve()), stat.st_size, stat.st_mtime_ns)] = sha256


def _known_good(path: Path, sha256: str) -> bool:
    """True when this process already hashed ``path`` (unchanged since) and it matched."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return _DIGESTS.get((str(path.resolve()), stat.st_size, stat.st_mtime_ns)) == sha256


# ---------------------------------------------------------------------------------------------- fetching


def fetch_file(dataset: str, filename: str) -> Path:
    """Path of one verified file: from ``$DECONVLAB_DATA`` if set, else downloaded (pooch) into the cache. Taught in chapter 1."""
    return _fetch(_info(dataset).file(filename))


def fetch_dataset(name: str, limit: int | None = None) -> list[Path]:
    """Paths of all (or the first ``limit``) verified files of a set, in registry order. Taught in chapter 1."""
    if str(name).strip().lower() in FALLBACK_NAMES:
        raise UnknownDatasetError(
            f"{name} is built in memory from scikit-image, not from files: use load_dataset({name!r})"
        )
    info = _info(name)
    files = info.files[: _check_limit(limit)]
    if _local_root() is not None:
        return [_fetch(f) for f in files]
    target = cache_dir() / info.name
    missing = [f for f in files if not (target / f.file).is_file()]
    with _quiet_pooch():
        paths = {}
        if missing:
            # The first download alone: offline shows up after one request, not after a burst of them.
            paths[missing[0].file] = _download(missing[0])
        if len(missing) > 1:
            size = sum(f.bytes for f in missing) / 1e6
            print(f"deconvlab: downloading {len(missing)} files of {info.name} ({size:.1f} MB) into {target}", flush=True)
            with concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS) as pool:
                futures = {f.file: pool.submit(_download, f) for f in missing[1:]}
            for f in missing[1:]:
                paths[f.file] = futures[f.file].result()  # the first failure in registry order is raised
        return [paths.get(f.file) or _fetch(f) for f in files]


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ArgumentError(f"limit={limit!r}: pass a positive number of images or None for all")
    return int(limit)


def _local_root() -> Path | None:
    env = os.environ.get("DECONVLAB_DATA", "").strip()
    return Path(env).expanduser() if env else None


def _fetch(f: FileInfo) -> Path:
    root = _local_root()
    if root is not None:
        return _local_file(root, f)
    path = cache_dir() / f.dataset / f.file
    if _known_good(path, f.sha256):
        return path
    with _quiet_pooch():
        return _download(f)


def _local_file(root: Path, f: FileInfo) -> Path:
    path = root / f.dataset / f.file
    if not path.is_file():
        if not (root / f.dataset).is_dir():
            raise DataError(
                f"DECONVLAB_DATA={root} has no folder {f.dataset}/: copy the set there as "
                f"<DECONVLAB_DATA>/{f.dataset}/<file> (see data/DATASETS.md) or unset DECONVLAB_DATA to download it"
            )
        raise DataError(
            f"{path} is missing from the local copy in DECONVLAB_DATA: copy {f.file} there from {f.url} "
            "or unset DECONVLAB_DATA to download the set"
        )
    if _digest(path) != f.sha256:
        raise HashMismatchError(
            f"{path} does not match its sha256 in data/registry.tsv (corrupted or another version): "
            f"replace it with {f.url} or unset DECONVLAB_DATA to download the set"
        )
    return path


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Pooch logs one line per file; 400 of them would bury the notebook output."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(f: FileInfo) -> Path:
    """pooch.retrieve with the registry hash, a timeout and a few retries; failures become DataError subclasses."""
    import pooch
    import requests

    folder = cache_dir() / f.dataset
    what = f"{f.dataset}/{f.file}"
    fix = "set DECONVLAB_DATA to a local copy of the sets (see data/DATASETS.md)"
    for attempt in range(_RETRIES):
        last = attempt == _RETRIES - 1
        try:
            path = Path(
                pooch.retrieve(
                    f.url,
                    known_hash=f"sha256:{f.sha256}",
                    fname=f.file,
                    path=folder,
                    downloader=pooch.HTTPDownloader(timeout=_TIMEOUT_S, progressbar=False),
                    progressbar=False,
                )
            )
            _remember(path, f.sha256)
            return path
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if (status >= 500 or status == 429) and not last:
                time.sleep(_BACKOFF_S * 2**attempt)
                continue
            raise DownloadError(
                f"download of {what} failed with HTTP {status} from {f.url}: try again later or {fix}"
            ) from None
        except requests.ConnectionError as exc:
            host = urlparse(f.url).netloc
            raise NoNetworkError(
                f"cannot reach {host} to download {what} ({_reason(exc)}): connect to the internet or {fix}"
            ) from None
        except (requests.Timeout, requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            if not last:
                time.sleep(_BACKOFF_S * 2**attempt)
                continue
            raise DownloadError(
                f"download of {what} was cut off {_RETRIES} times ({_reason(exc)}): try again later or {fix}"
            ) from None
        except requests.RequestException as exc:
            raise DownloadError(f"download of {what} from {f.url} failed ({_reason(exc)}): {fix}") from None
        except ValueError as exc:
            if "hash" not in str(exc).lower():
                raise
            # pooch deletes the temporary download before raising, so the bad bytes never reach the cache.
            raise HashMismatchError(
                f"downloaded {what} does not match its sha256 in data/registry.tsv (changed upstream or corrupted "
                f"in transit); nothing was kept: try again, or {fix}"
            ) from None
        except OSError as exc:
            raise DataError(
                f"cannot write {folder} ({exc.strerror or exc}): set DECONVLAB_CACHE to a writable folder"
            ) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _reason(exc: BaseException) -> str:
    """A short cause: urllib3 wraps it as "HTTPSConnectionPool(...): Max retries exceeded ... (Caused by X)"."""
    inner = exc.args[0] if exc.args else exc
    inner = getattr(inner, "reason", None) or inner
    if isinstance(inner, BaseException) and inner.args and isinstance(inner.args[0], str):
        inner = inner.args[0]
    text = str(inner).splitlines()[0] if str(inner) else type(exc).__name__
    text = re.sub(r"<[^>]* object at 0x[0-9a-fA-F]+>:?\s*", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------------------------------------- loading


def load_dataset(
    name: str, mode: str | None = None, limit: int | None = None, fallback: bool = True
) -> Dataset:
    """A set as float32 images in [0, 1] with their names; offline, the documented scikit-image stand-in. Taught in chapter 1.

    ``mode`` None keeps each file as stored (Set14's ``bridge`` is gray among colour images), ``"gray"`` or
    ``"rgb"`` converts all; ``limit`` takes the first N in registry order.
    """
    if mode not in (None, "gray", "rgb"):
        raise ArgumentError(f"mode={mode!r}: use None (as stored), 'gray' or 'rgb'")
    limit = _check_limit(limit)
    key = str(name).strip().lower()
    if key in FALLBACK_NAMES:
        return _load_fallback(key, mode, limit, stands_in_for=None)
    info = _info(key)
    try:
        paths = fetch_dataset(key, limit=limit)
    except NoNetworkError:
        if not fallback:
            raise
        warnings.warn(
            f"no network and no DECONVLAB_DATA: using scikit-image's bundled photographs instead of {key}; "
            "set DECONVLAB_DATA=<folder with the sets> or connect to download the real sets; "
            "results are not comparable with published numbers",
            UserWarning,
            stacklevel=2,
        )
        split = "fallback-train" if key in _TRAINING_SETS else "fallback-test"
        return _load_fallback(split, mode or info.color, limit, stands_in_for=key)
    files = info.files[: len(paths)]
    images = [read_image(p, mode=mode) for p in paths]
    return Dataset(
        name=key,
        images=images,
        names=[f.name for f in files],
        is_fallback=False,
        color=mode or info.color,
        note=f"{key}: {len(images)} of {len(info.files)} images from {info.source} ({info.terms or 'see data/DATASETS.md'})",
    )


def _load_fallback(split: str, mode: str | None, limit: int | None, stands_in_for: str | None) -> Dataset:
    names = list(FALLBACK_TRAIN if split == "fallback-train" else FALLBACK_TEST)[:limit]
    images = []
    for photo in names:
        img = _skimage_photo(photo)
        if mode == "gray" and img.ndim == 3:
            img = rgb_to_gray(img)
        elif mode == "rgb" and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        images.append(img)
    instead = f" standing in for {stands_in_for}" if stands_in_for else ""
    return Dataset(
        name=split,
        images=images,
        names=names,
        is_fallback=True,
        color=mode or "rgb",
        note=(
            f"offline fallback: {len(images)} scikit-image photographs ({split}){instead}; "
            "results are not comparable with published numbers"
        ),
    )


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    try:
        img = getattr(skimage.data, name)()
    except Exception as exc:  # every name here ships inside the scikit-image wheel; failing means a broken install
        raise DataError(
            f"scikit-image could not load its bundled image {name!r} ({_reason(exc)}): reinstall scikit-image"
        ) from None
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity); the left view is the photograph
        img = img[0]
    return check_image(img, f"skimage.data.{name}")


# ---------------------------------------------------------------------------------------------- patches


def _dihedral(patch: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square: k % 4 quarter turns, then a mirror for k >= 4."""
    out = np.rot90(patch, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


class PatchDataset(keras.utils.PyDataset):
    """Batches (degraded, clean) of random patches, fresh crops, flips and degradation for every batch. Taught in chapter 3.

    Each batch ``i`` of epoch ``e`` draws from ``np.random.default_rng([seed, e, i])``, so a run repeats exactly
    (with any number of workers) while every batch and epoch sees new patches and new noise. Images are picked
    uniformly, positions uniformly within the image. ``degrade(clean_batch, rng)`` returns the degraded batch: the
    same size, or smaller by ``scale`` for post-upsampling super-resolution (the patch side is then rounded down
    to a multiple of ``scale``). ``channels=1`` turns colour images into BT.601 luma, ``channels=3`` repeats gray.
    Extra keyword arguments (``workers``, ``use_multiprocessing``, ``max_queue_size``) go to
    ``keras.utils.PyDataset``.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray] | Dataset | np.ndarray,
        degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
        patch_size: int,
        batch_size: int,
        steps_per_epoch: int,
        seed: int = 0,
        augment: bool = True,
        channels: int = 1,
        scale: int = 1,
        **pydataset_kwargs,
    ) -> None:
        super().__init__(**pydataset_kwargs)
        for label, value, low in (
            ("patch_size", patch_size, 1), ("batch_size", batch_size, 1), ("steps_per_epoch", steps_per_epoch, 1),
            ("scale", scale, 1), ("seed", seed, 0),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ArgumentError(f"{label}={value!r}: pass an integer >= {low}")
        if channels not in (1, 3):
            raise ArgumentError(f"channels={channels!r}: use 1 (gray models) or 3 (colour models)")
        if patch_size < scale:
            raise ArgumentError(f"patch_size={patch_size} is smaller than scale={scale}: use at least {4 * scale}")
        if degrade is not None and not callable(degrade):
            raise ArgumentError("degrade must be a function (clean_batch, rng) -> degraded_batch, e.g. noise_degradation(25)")
        self.degrade = degrade
        self.patch_size = int(patch_size) // int(scale) * int(scale)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.augment = bool(augment)
        self.channels = int(channels)
        self.scale = int(scale)
        self.epoch = 0
        self.images = self._prepare(images)

    def _prepare(self, images: Sequence[np.ndarray] | Dataset | np.ndarray) -> list[np.ndarray]:
        if isinstance(images, Dataset):
            images = images.images
        elif isinstance(images, np.ndarray):
            if images.ndim != 4:
                raise ArgumentError(
                    f"images has shape {images.shape}: pass a list of (H, W) / (H, W, 3) images or an NHWC array"
                )
            images = list(images)
        prepared, too_small = [], 0
        for i, img in enumerate(images):
            arr = check_image(img, f"images[{i}]")
            if arr.ndim == 2:
                arr = arr[..., None]
            if self.channels == 1 and arr.shape[-1] == 3:
                arr = rgb_to_gray(arr)[..., None]
            elif self.channels == 3 and arr.shape[-1] == 1:
                arr = np.repeat(arr, 3, axis=-1)
            if min(arr.shape[:2]) < self.patch_size:
                too_small += 1
                continue
            prepared.append(np.ascontiguousarray(arr, dtype=np.float32))
        if not prepared:
            raise ArgumentError(
                f"no image is at least {self.patch_size}x{self.patch_size}: pass larger images or a smaller patch_size"
            )
        if too_small:
            warnings.warn(
                f"PatchDataset: {too_small} image(s) smaller than patch_size={self.patch_size} are not used",
                UserWarning,
                stacklevel=3,
            )
        return prepared

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch {index} out of range: this epoch has {self.steps_per_epoch} batches")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        size, count = self.patch_size, self.batch_size
        which = rng.integers(0, len(self.images), count)
        heights = np.array([self.images[k].shape[0] for k in which])
        widths = np.array([self.images[k].shape[1] for k in which])
        ys = rng.integers(0, heights - size + 1)
        xs = rng.integers(0, widths - size + 1)
        turns = rng.integers(0, 8, count) if self.augment else np.zeros(count, dtype=np.int64)
        clean = np.empty((count, size, size, self.channels), dtype=np.float32)
        for b in range(count):
            patch = self.images[which[b]][ys[b] : ys[b] + size, xs[b] : xs[b] + size]
            clean[b] = _dihedral(patch, int(turns[b]))
        # The degradation gets a copy: one that works in place must not change the target.
        degraded = clean.copy() if self.degrade is None else self.degrade(clean.copy(), rng)
        degraded = np.asarray(degraded, dtype=np.float32)
        small = size // self.scale
        if degraded.shape not in ((count, size, size, self.channels), (count, small, small, self.channels)):
            raise ArgumentError(
                f"degrade returned shape {degraded.shape} for clean patches {clean.shape}: it must keep the batch "
                f"and channels and give {size}x{size} (or {small}x{small} for scale={self.scale})"
            )
        return degraded, clean

    def on_epoch_end(self) -> None:
        """Keras calls this after each epoch: the next epoch draws new patches."""
        self.epoch += 1
