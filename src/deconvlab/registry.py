"""The benchmark data sets: registry, verified downloads, local copies and an offline fallback (no Keras import).

Where the images come from, in order:

1. ``$DECONVLAB_DATA``: a local copy laid out as ``<DECONVLAB_DATA>/<dataset>/<file>``; every file is checked
   against its sha256 in ``data/registry.tsv`` each time it is loaded.
2. Otherwise a download through pooch from the pinned GitHub commit in the registry, verified by sha256 and kept in
   :func:`cache_dir` (``$DECONVLAB_CACHE`` or the user cache).
3. With no network and no ``$DECONVLAB_DATA``: a fixed, documented split of photographs that ship with
   scikit-image (:data:`FALLBACK_TRAIN`, :data:`FALLBACK_TEST`), with one warning, so every notebook still runs.

The sets, their sources, terms and citations are in ``data/DATASETS.md``. Taught in chapter 1
(``notebooks/01_background``). Training patches are in :mod:`deconvlab.data`.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import functools
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from .checks import integer
from .errors import ArgumentError, DataError, DownloadError, HashMismatchError, UnknownDatasetError
from .io import _to_mode, check_image, read_image
from .paths import data_dir

__all__ = [
    "DATASET_NAMES", "FALLBACK_NAMES", "FALLBACK_TEST", "FALLBACK_TRAIN", "Dataset", "DatasetInfo", "FileInfo",
    "NoNetworkError", "FetchReport", "cache_dir", "fetch_all", "fetch_dataset", "fetch_file", "load_dataset",
    "registry",
]

#: The registered sets, in the order the book introduces them.
DATASET_NAMES = ("train400", "bsd68", "set12", "cbsd68", "set5", "set14", "t91")

#: Offline stand-in for training sets (train400): scikit-image photographs, mostly textures and scenes.
FALLBACK_TRAIN = (
    "brick", "cell", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
    "moon", "page", "retina", "stereo_motorcycle", "text",
)  # fmt: skip
#: Offline stand-in for test sets: classic natural photographs, disjoint from FALLBACK_TRAIN.
#: ``cat`` is left out (the same pixels as ``chelsea``), and ``clock`` too (motion-blurred on purpose, no clean truth).
FALLBACK_TEST = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket")
FALLBACK_NAMES = ("fallback-train", "fallback-test")
_TRAINING_SETS = frozenset({"train400", "t91"})

# Short citation and terms per set; data/DATASETS.md has the full references.
_BSDS = "images from BSDS (Martin et al., ICCV 2001)"
_BSDS_TERMS = "Berkeley Segmentation Dataset: non-commercial research and educational use only"
_META: dict[str, tuple[str, str]] = {
    "train400": (f"Chen & Pock, TPAMI 2017 (TNRD); Zhang et al., TIP 2017 (DnCNN); {_BSDS}", _BSDS_TERMS),
    "bsd68": (f"Roth & Black, IJCV 2009 (Fields of Experts); {_BSDS}", _BSDS_TERMS),
    "set12": ("Zhang et al., TIP 2017 (DnCNN)", "no licence stated, mixed copyright: research use only"),
    "cbsd68": (f"Roth & Black, IJCV 2009; Zhang et al., TIP 2018 (FFDNet); {_BSDS}", _BSDS_TERMS),
    "set5": ("Bevilacqua et al., BMVC 2012", "no licence text found: research benchmark use only"),
    "set14": ("Zeyde et al., Curves and Surfaces 2010", "no licence text found, mixed content: research use only"),
    "t91": ("Yang et al., IEEE TIP 2010 (image super-resolution via sparse representation)",
            "no licence text found: research use only"),
}

_TIMEOUT_S = 10  # one request that long is enough to call the machine offline
_RETRIES = 2  # pooch's retries after a failed attempt (it waits 1 s, then 2 s); offline costs 3 s


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


# ---------------------------------------------------------------------------------------------- registry


def registry() -> dict[str, DatasetInfo]:
    """All registered sets from ``<repo>/data/registry.tsv``, by name, files in registry order. Taught in chapter 4."""
    path = data_dir() / "registry.tsv"
    try:
        stat = path.stat()
    except OSError:
        raise DataError(
            f"no data registry at {path}: install the package from a clone of the book (pip install -e .) "
            "or set DECONVLAB_ROOT to that clone"
        ) from None
    return dict(_parse_registry(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=1)
def _parse_registry(path: Path, mtime_ns: int, size: int) -> dict[str, DatasetInfo]:
    """The registry file parsed once per version: a changed file (mtime or size) is parsed again."""
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


def dataset_key(name: str) -> str:
    """A set's name as the registry files it: ``" Train400"`` is ``train400``."""
    return str(name).strip().lower()


def _info(name: str) -> DatasetInfo:
    """The registered set of that name (any case), the sets with files; UnknownDatasetError for others, the
    fallback sets included (they have no files to fetch)."""
    key = dataset_key(name)
    if key in FALLBACK_NAMES:
        raise UnknownDatasetError(f"{name} is built in memory from scikit-image, not from files: there is nothing "
                                  f"to fetch; load_dataset({key!r}) builds it")
    sets = registry()
    if key not in sets:
        known = ", ".join([*sets, *FALLBACK_NAMES])
        raise UnknownDatasetError(f"unknown data set {name!r}: use one of {known}")
    return sets[key]


def cache_dir() -> Path:
    """Where downloads are kept: ``$DECONVLAB_CACHE``, else the user cache (``pooch.os_cache``)."""
    env = os.environ.get("DECONVLAB_CACHE", "").strip()
    return Path(env).expanduser() if env else Path(pooch_module().os_cache("deconvlab"))


@functools.cache
def pooch_module():
    """pooch, imported once without tqdm's "IProgress not found" warning."""
    with warnings.catch_warnings():
        # pooch imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns in 170 columns on the first
        # data load of every chapter, then uses its text bar: all a download needs.
        warnings.filterwarnings("ignore", "IProgress not found")
        import pooch
    return pooch


# ---------------------------------------------------------------------------------------------- fetching


def _pooch(info: DatasetInfo):
    """A pooch for one set: its cache folder, every file's URL and sha256 (pooch verifies and re-downloads)."""
    pooch = pooch_module()
    pooch.get_logger().setLevel(logging.WARNING)  # one line per file would bury the notebook output
    return pooch.create(
        path=cache_dir() / info.name, base_url="", retry_if_failed=_RETRIES,
        registry={f.file: f"sha256:{f.sha256}" for f in info.files}, urls={f.file: f.url for f in info.files},
    )


def fetch_file(dataset: str, filename: str) -> Path:
    """Path of one verified file: from ``$DECONVLAB_DATA`` if set, else downloaded (pooch) into the cache."""
    info = _info(dataset)
    return _fetch(info, info.file(filename))


def fetch_dataset(name: str, limit: int | None = None) -> list[Path]:
    """Paths of all (or the first ``limit``) verified files of a set, in registry order."""
    info = _info(name)
    files = info.files[: _check_limit(limit)]
    missing = [f for f in files if not (cache_dir() / info.name / f.file).is_file()]
    if _local_root() is None and len(missing) > 1:
        # said once the first file has arrived, so neither the offline fallback nor a refusal follows a download
        # that never started
        _fetch(info, missing[0])
        size = sum(m.bytes for m in missing) / 1e6
        print(f"deconvlab: downloading {len(missing)} files of {info.name} ({size:.1f} MB) into "
              f"{cache_dir() / info.name}", flush=True)
    return [_fetch(info, f) for f in files]


@dataclasses.dataclass
class FetchReport:
    """What :func:`fetch_all` did: every verified path by set, bytes verified, and the wall time."""

    paths: dict[str, list[Path]]
    bytes: int
    seconds: float
    source: str  # where the files are: "the local copy DECONVLAB_DATA=<folder>" or "the cache <folder>"

    def summary(self) -> str:
        files = sum(len(p) for p in self.paths.values())
        return (f"{files} files of {len(self.paths)} sets ({', '.join(self.paths)}), {self.bytes / 1e6:.1f} MB, "
                f"verified by sha256 in {self.seconds:.1f} s, in {self.source}")


def fetch_all(names: Sequence[str] | None = None, *, workers: int = 8, progress: bool = True) -> FetchReport:
    """Download (or, with ``$DECONVLAB_DATA``, verify) every file of the named sets, default all, in parallel.

    ``workers`` threads share pooch's fetch, one file each (downloads wait on the network, not the CPU); a tqdm bar
    on stderr counts bytes when ``progress``. Files already in the cache with the right sha256 are not downloaded
    again. Any failure stops the rest and raises the first file's :class:`~deconvlab.errors.DataError`; files
    verified before it stay in the cache. ``python -m deconvlab fetch`` is this call.
    """
    workers = integer("workers", workers, 1)
    sets = registry()
    chosen = dict.fromkeys(sets if names is None else [_info(n).name for n in names])  # once each, in order
    jobs = [(sets[name], f) for name in chosen for f in sets[name].files]
    total = sum(f.bytes for _, f in jobs)
    root = _local_root()
    pooch_module()  # imports tqdm.auto quietly, in this thread (catch_warnings is not thread-safe)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, leave=True,
               desc="verifying" if root is not None else "fetching", file=sys.stderr, disable=not progress)
    found: dict[tuple[str, str], Path] = {}
    start = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deconvlab-fetch")
    try:
        futures = {pool.submit(_fetch, info, f): f for info, f in jobs}
        for future in concurrent.futures.as_completed(futures):
            f = futures[future]
            found[(f.dataset, f.file)] = future.result()  # re-raises the worker's DataError here
            bar.update(f.bytes)
    except BaseException:
        bar.leave = False  # the error (one line) replaces the bar
        raise
    finally:
        # On a failure (or Ctrl-C) the queued files are dropped; the few in flight finish into pooch's temporaries.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    paths = {name: [found[(name, f.file)] for f in sets[name].files] for name in chosen}
    source = f"the local copy DECONVLAB_DATA={root}" if root is not None else f"the cache {cache_dir()}"
    return FetchReport(paths=paths, bytes=total, seconds=time.perf_counter() - start, source=source)


def _check_limit(limit: int | None) -> int | None:
    return None if limit is None else integer("limit", limit, 1)


def _local_root() -> Path | None:
    env = os.environ.get("DECONVLAB_DATA", "").strip()
    return Path(env).expanduser() if env else None


def _fetch(info: DatasetInfo, f: FileInfo) -> Path:
    root = _local_root()
    return _local_file(root, f) if root is not None else _download(info, f)


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
    if pooch_module().file_hash(str(path)) != f.sha256:
        raise HashMismatchError(
            f"{path} does not match its sha256 in data/registry.tsv (corrupted or another version): "
            f"replace it with {f.url} or unset DECONVLAB_DATA to download the set"
        )
    return path


def _download(info: DatasetInfo, f: FileInfo) -> Path:
    """pooch's fetch (hash check, retries, atomic move); its failures become DataError subclasses."""
    import requests

    store = _pooch(info)
    what, folder = f"{f.dataset}/{f.file}", Path(store.abspath)
    fix = "set DECONVLAB_DATA to a local copy of the sets (see data/DATASETS.md)"
    downloader = pooch_module().HTTPDownloader(timeout=_TIMEOUT_S, progressbar=False)
    try:
        return Path(store.fetch(f.file, downloader=downloader))
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise DownloadError(f"download of {what} failed with HTTP {status} from {f.url}: try again later or {fix}") from None
    except requests.ConnectionError as exc:
        raise _no_network(f, exc, fix, folder / f.file) from None
    except requests.RequestException as exc:
        raise DownloadError(f"download of {what} was cut off or failed {_RETRIES + 1} times ({_reason(exc)}): "
                            f"try again later or {fix}") from None
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise
        # pooch deletes the temporary download before raising, so the bad bytes never reach the cache.
        raise HashMismatchError(
            f"downloaded {what} does not match its sha256 in data/registry.tsv (changed upstream or corrupted "
            f"in transit); nothing was kept: try again, or {fix}"
        ) from None
    except OSError as exc:
        unwritable = f"cannot write {folder} ({exc.strerror or exc}): set DECONVLAB_CACHE to a writable folder"
        # pooch makes the folder and its temporary file before any request, so this failure says nothing about the
        # network. Offline, no cache would let the download happen: that is the offline case (load_dataset falls
        # back), not a folder to fix first; with the server there, the folder is what stops the download.
        try:
            requests.head(f.url, timeout=_TIMEOUT_S).close()
        except requests.ConnectionError as offline:  # TLS and proxy failures too, as for the download above
            raise _no_network(f, offline, f"{fix}; also, {unwritable}", folder / f.file) from None
        except requests.RequestException:
            pass  # failed after reaching the host (a slow answer, a redirect loop): the folder is what to fix
        raise DataError(unwritable) from None


def _no_network(f: FileInfo, exc: BaseException, fix: str, cached: Path) -> NoNetworkError:
    # pooch downloads a file it holds only where that copy fails its sha256 check: say so, not just "no network"
    stale = (f"the cached {cached} does not match its sha256 in data/registry.tsv (corrupted or another version) "
             "and ") if cached.is_file() else ""
    return NoNetworkError(f"{stale}cannot reach {urlparse(f.url).netloc} to download {f.dataset}/{f.file}"
                          f"{' again' if stale else ''} ({_reason(exc)}): connect to the internet or {fix}")


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
    key = dataset_key(name)
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
            UserWarning, stacklevel=2,
        )
        split = "fallback-train" if key in _TRAINING_SETS else "fallback-test"
        return _load_fallback(split, mode or info.color, limit, stands_in_for=key)
    images = [read_image(p, mode=mode) for p in paths]
    return Dataset(
        name=key, images=images, names=[f.name for f in info.files[: len(paths)]], is_fallback=False,
        color=mode or info.color,
        note=f"{key}: {len(images)} of {len(info.files)} images from {info.source} ({info.terms or 'see data/DATASETS.md'})",
    )


def _load_fallback(split: str, mode: str | None, limit: int | None, stands_in_for: str | None) -> Dataset:
    names = list(FALLBACK_TRAIN if split == "fallback-train" else FALLBACK_TEST)[:limit]
    images = [_to_mode(_skimage_photo(photo), mode) for photo in names]
    instead = f" standing in for {stands_in_for}" if stands_in_for else ""
    return Dataset(
        name=split, images=images, names=names, is_fallback=True, color=mode or "rgb",
        note=(f"offline fallback: {len(images)} scikit-image photographs ({split}){instead}; "
              "results are not comparable with published numbers"),
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
