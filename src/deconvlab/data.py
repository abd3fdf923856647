"""Training patches: :class:`PatchDataset`, a Keras ``PyDataset`` of (degraded, clean) random crops. Taught in
chapter 3 (``notebooks/03_conv_deconv_fuse``).

The data sets themselves (registry, downloads, local copies, offline fallback) are in :mod:`deconvlab.registry`,
which does not import Keras; their names are re-exported here, so ``deconvlab.data.load_dataset`` keeps working.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np

from .checks import integer
from .config import TRAIN_MAXIMA
from .errors import ArgumentError
from .io import check_image, rgb_to_gray
from .registry import (  # noqa: F401  (the chapters' spelling: dl.data.load_dataset, dl.data.registry)
    DATASET_NAMES,
    FALLBACK_NAMES,
    FALLBACK_TEST,
    FALLBACK_TRAIN,
    Dataset,
    DatasetInfo,
    FileInfo,
    NoNetworkError,
    cache_dir,
    fetch_dataset,
    fetch_file,
    load_dataset,
    registry,
)


def _dihedral(patch: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square: k % 4 quarter turns, then a mirror for k >= 4."""
    out = np.rot90(patch, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


class PatchDataset(keras.utils.PyDataset):
    """Batches (degraded, clean) of random patches, fresh crops, flips and degradation for every batch. Taught in chapter 3.

    Each batch ``i`` of epoch ``e`` draws from ``np.random.default_rng([seed, e, i])``, whichever worker builds it,
    while every batch and epoch sees new patches and new noise. Through ``model.fit`` a run repeats exactly on
    TensorFlow with any number of workers, and on JAX with one. On JAX with ``workers`` > 1 (Keras 3.15), the
    model is built on a batch pulled through the worker queue and the batches the workers had prepared by then
    are served first: the run trains on other batches than a one-worker run, and is not guaranteed to repeat.
    Images are picked uniformly, positions uniformly within the image. ``degrade(clean_batch, rng)`` returns the
    degraded batch: the same size, or smaller by ``scale`` for post-upsampling super-resolution (the patch side is
    then rounded down to a multiple of ``scale``). ``channels=1`` turns colour images into BT.601 luma,
    ``channels=3`` repeats gray. Extra keyword arguments (``workers``, ``use_multiprocessing``, ``max_queue_size``)
    go to ``keras.utils.PyDataset``.
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
        patch_size = integer("patch_size", patch_size, 1)
        self.batch_size = integer("batch_size", batch_size, 1)
        self.steps_per_epoch = integer("steps_per_epoch", steps_per_epoch, 1, TRAIN_MAXIMA["steps"])
        self.scale = scale = integer("scale", scale, 1)
        self.seed = integer("seed", seed, 0)
        if channels not in (1, 3):
            raise ArgumentError(f"channels={channels!r}: use 1 (gray models) or 3 (colour models)")
        if patch_size < scale:
            raise ArgumentError(f"patch_size={patch_size} is smaller than scale={scale}: use at least {4 * scale}")
        if degrade is not None and not callable(degrade):
            raise ArgumentError("degrade must be a function (clean_batch, rng) -> degraded_batch, e.g. noise_degradation(25)")
        self.degrade = degrade
        self.patch_size = patch_size // scale * scale
        self.augment = bool(augment)
        self.channels = int(channels)
        self.epoch = 0
        self.images = self._prepare(images)

    def _prepare(self, images: Sequence[np.ndarray] | Dataset | np.ndarray) -> list[np.ndarray]:
        if isinstance(images, Dataset):
            images = images.images
        elif isinstance(images, np.ndarray) and images.ndim != 4:
            raise ArgumentError(
                f"images has shape {images.shape}: pass a list of (H, W) / (H, W, 3) images or an NHWC array"
            )
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
        heights, widths = np.array([self.images[k].shape[:2] for k in which]).T
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
