"""On-device training patches for denoising: clean images resident on the accelerator, seeded crops, AWGN.

:class:`~deconvlab.data.PatchDataset` builds every batch on the host (NumPy crops, flips and noise, then a
host-to-device copy). On a fast GPU that input path costs time of its own (benchmarks/results/speed_gpu.md measures it). :class:`PatchSampler`
keeps the clean training images on the device and builds each batch there with one gather and one noise draw:

* batch ``step`` is a pure function of ``(seed, step)``: its key is ``fold_in(key(seed), step)`` of JAX's
  counter-based Threefry generator, so a run repeats bit for bit on any device, however many steps are fused
  into one dispatch (``lax.scan``) and in whatever order batches are drawn;
* an image is picked uniformly, then a crop position uniformly inside that image, then one of the 8 symmetries
  of the square (the same quarter turns and mirror as ``PatchDataset``); images of different sizes are padded
  into one array and each crop stays inside its own image;
* the input is ``clean + sigma / 255 * N(0, 1)`` in float32, not clipped (the DnCNN protocol's AWGN); a
  ``(lo, hi)`` sigma draws one level per patch, uniformly (blind denoising).

JAX only: the fast training path of the GPU host is Keras on JAX, and a counter-based generator is what makes
the batches independent of how steps are dispatched. Other backends keep ``PatchDataset``.

Super-resolution (:class:`SRPatchSampler`) does not port the MATLAB-bicubic degradation to the device: the host
downscales every whole training image once (:func:`deconvlab.degrade.downscale`, the protocol's own function),
and the device crops aligned pairs from the resident (low-resolution, high-resolution) images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .checks import SEED_MAX, integer
from .errors import ArgumentError

__all__ = ["PatchSampler", "SRPatchSampler", "dihedral_index_grids", "sr_pairs"]


def dihedral_index_grids(size: int) -> np.ndarray:
    """(8, size, size, 2) source (row, col) of every output pixel under each of the 8 symmetries of the square.

    Symmetry ``k`` is ``k % 4`` quarter turns (``np.rot90``), then a left-right mirror when ``k >= 4``: the
    order of :func:`deconvlab.data._dihedral`, so both samplers mean the same thing by a symmetry index.
    """
    flat = np.arange(size * size).reshape(size, size)
    grids = []
    for k in range(8):
        moved = np.rot90(flat, k % 4, axes=(0, 1))
        moved = moved[:, ::-1] if k >= 4 else moved
        grids.append(np.stack(np.divmod(moved, size), axis=-1))
    return np.stack(grids).astype(np.int32)


def _pad_stack(arrays: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """(H, W) arrays zero-padded at the bottom and right into one (N, height, width) float32 array."""
    stacked = np.zeros((len(arrays), height, width), dtype=np.float32)
    for i, a in enumerate(arrays):
        stacked[i, : a.shape[0], : a.shape[1]] = a
    return stacked


def _gather(images: Any, grids: Any, choice: dict[str, Any], rows: Any, cols: Any) -> Any:
    """NHWC crops of ``images`` at corners (rows, cols) under the drawn symmetries: one gather does both."""
    source = grids[choice["turns"]]  # (B, p, p, 2) source offsets inside the crop
    r = rows[:, None, None] + source[..., 0]
    c = cols[:, None, None] + source[..., 1]
    return images[choice["which"][:, None, None], r, c][..., None]


class _DeviceSampler:
    """What both samplers share: argument checks, the base key, crop corners and symmetries, ``batch``."""

    def _setup(self, patch_size: int, batch_size: int, seed: int) -> None:
        self.patch_size = integer("patch_size", patch_size, 1)
        self.batch_size = integer("batch_size", batch_size, 1)
        self.seed = integer("seed", seed, 0)
        if self.seed > SEED_MAX:
            raise ArgumentError(f"seed={seed!r}: pass an integer >= 0 and <= {SEED_MAX} (2**32 - 1): JAX keeps a "
                                "seed's low 32 bits only")

    def _start(self, device: Any) -> Callable[[np.ndarray], Any]:
        """Import JAX, set the base key and the jitted ``sample``; return the copy onto ``device`` (default:
        JAX's first)."""
        import jax

        self._jax = jax
        self.key = jax.random.key(self.seed)
        self._batch = jax.jit(self.sample)
        device = device or jax.devices()[0]
        return lambda array: jax.device_put(array, device)

    def _crops(self, which: Any, sizes: Any, k_row: Any, k_col: Any, k_turn: Any) -> dict[str, Any]:
        """Per patch: its image ``which``, a crop corner and a symmetry."""
        jax = self._jax
        count, size = self.batch_size, self.patch_size
        # each crop corner is uniform over the positions that keep the patch inside its own image
        rows = jax.random.randint(k_row, (count,), 0, sizes[which, 0] - size + 1)
        cols = jax.random.randint(k_col, (count,), 0, sizes[which, 1] - size + 1)
        turns = jax.random.randint(k_turn, (count,), 0, 8)
        return {"which": which, "rows": rows, "cols": cols, "turns": turns}

    def batch(self, step: int) -> tuple[Any, Any]:
        """Device arrays of batch ``step``, ``(noisy, clean)`` or ``(low-resolution, high-resolution)`` (one
        jitted dispatch; no host copy)."""
        integer("step", step, 0)
        return self._batch(*self.state(), np.uint32(step))


class PatchSampler(_DeviceSampler):
    """Seeded (noisy, clean) batches of gray patches built on the device from resident clean images.

    ``PatchSampler(images, patch_size=50, batch_size=128, sigma=25, seed=0)``; ``sampler.batch(step)`` returns
    the NHWC float32 device arrays ``(noisy, clean)`` of batch ``step``. Inside a jitted training step use the
    pure function ``sampler.sample(images, sizes, key, step)`` with ``sampler.state()`` (the resident arrays
    and the base key) so the sampling fuses with the step. ``device`` (a JAX device) defaults to JAX's first.
    """

    def __init__(self, images: Any, patch_size: int, batch_size: int, sigma: float | tuple[float, float],
                 seed: int = 0, device: Any = None) -> None:
        self._setup(patch_size, batch_size, seed)
        self.sigma = self._check_sigma(sigma)
        arrays = _gray_list(images, "the sampler trains gray denoisers; load the set with mode='gray'")
        sizes = np.array([a.shape for a in arrays], dtype=np.int32)
        stacked = _pad_stack(arrays, *sizes.max(axis=0))
        usable = np.all(sizes >= self.patch_size, axis=1)
        if not usable.any():
            raise ArgumentError(
                f"no image is at least {self.patch_size}x{self.patch_size}: pass larger images or a smaller patch_size"
            )
        # an image smaller than the patch would need crops outside itself: leave it out, as PatchDataset does
        stacked, sizes = stacked[usable], sizes[usable]
        self.num_images = int(stacked.shape[0])
        put = self._start(device)
        self.images = put(stacked)
        self.sizes = put(sizes)
        self.grids = put(dihedral_index_grids(self.patch_size))

    @staticmethod
    def _check_sigma(sigma: Any) -> tuple[float, float]:
        levels = tuple(sigma) if isinstance(sigma, (tuple, list)) else (sigma, sigma)
        if len(levels) != 2 or not all(
            isinstance(s, (int, float, np.integer, np.floating)) and not isinstance(s, bool) and math.isfinite(s)
            and s >= 0 for s in levels
        ) or levels[0] > levels[1]:
            raise ArgumentError(f"sigma={sigma!r}: pass a level >= 0 (255 scale) or a (lo, hi) range with lo <= hi")
        return float(levels[0]), float(levels[1])

    def state(self) -> tuple[Any, Any, Any, Any]:
        """The device arrays ``sample`` reads: (images, sizes, dihedral grids, base key)."""
        return self.images, self.sizes, self.grids, self.key

    def draw(self, key: Any, step: Any, sizes: Any) -> dict[str, Any]:
        """The random choices of batch ``step``: image index, crop corner, symmetry and noise level per patch."""
        jax = self._jax
        jnp = jax.numpy
        k_image, k_row, k_col, k_turn, k_sigma, k_noise = jax.random.split(jax.random.fold_in(key, step), 6)
        count = self.batch_size
        which = jax.random.randint(k_image, (count,), 0, self.num_images)
        lo, hi = self.sigma
        sigmas = (jnp.full((count,), lo, dtype=jnp.float32) if lo == hi
                  else jax.random.uniform(k_sigma, (count,), jnp.float32, lo, hi))
        return {**self._crops(which, sizes, k_row, k_col, k_turn), "sigmas": sigmas, "noise_key": k_noise}

    def sample(self, images: Any, sizes: Any, grids: Any, key: Any, step: Any) -> tuple[Any, Any]:
        """Pure function: NHWC float32 ``(noisy, clean)`` of batch ``step`` (jit- and scan-friendly)."""
        choice = self.draw(key, step, sizes)
        clean = _gather(images, grids, choice, choice["rows"], choice["cols"])
        noise = self._jax.random.normal(choice["noise_key"], clean.shape, dtype=self._jax.numpy.float32)
        noisy = clean + noise * (choice["sigmas"] / 255.0)[:, None, None, None]
        return noisy, clean


def sr_pairs(images: Any, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(low-resolution, high-resolution) gray float32 pairs of the SR protocol: ``hr = modcrop(image, scale)``,
    ``lr = downscale(hr, scale)`` (MATLAB bicubic, not rounded), so ``hr`` is exactly ``scale`` times ``lr``."""
    from .degrade import downscale
    from .metrics import modcrop

    return [(downscale(modcrop(a, scale), scale), modcrop(a, scale)) for a in _gray_list(images)]


def _gray_list(images: Any, hint: str = "SR trains on gray (Y) images") -> list[np.ndarray]:
    """Gray float32 (H, W) arrays from a list of images, an (N, H, W[, 1]) array or a Dataset."""
    from .io import check_image

    images = getattr(images, "images", images)  # a registry Dataset iterates as (name, image) pairs
    out = []
    for i, img in enumerate(images):
        arr = check_image(img, f"images[{i}]")
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise ArgumentError(f"images[{i}] has shape {arr.shape}: {hint}")
        out.append(np.asarray(arr, dtype=np.float32))
    if not out:
        raise ArgumentError("no training images: pass a non-empty list of gray images")
    return out


class SRPatchSampler(_DeviceSampler):
    """Seeded aligned (low-resolution, high-resolution) batches built on the device from resident image pairs.

    ``SRPatchSampler(pairs, scale=4, patch_size=24, batch_size=32, seed=0)`` with ``pairs`` from
    :func:`sr_pairs`; ``patch_size`` is the low-resolution side, the target is ``scale * patch_size``. Low-
    resolution patch (r, c) pairs with the high-resolution patch at (scale r, scale c): the bicubic kernel is
    centred on each block, so a pair stays aligned under the 8 symmetries of the square, applied to both. Each
    patch position of the whole set is equally likely (images of different sizes: an image is chosen in
    proportion to its number of crop positions). ``sample``/``state``/``batch`` as in :class:`PatchSampler`.
    """

    def __init__(self, pairs: Any, scale: int, patch_size: int, batch_size: int, seed: int = 0,
                 device: Any = None) -> None:
        self.scale = integer("scale", scale, 1)
        self._setup(patch_size, batch_size, seed)
        lows, highs = [], []
        for i, (lr, hr) in enumerate(pairs):
            lr, hr = np.asarray(lr, np.float32), np.asarray(hr, np.float32)
            if lr.ndim != 2 or hr.shape != (lr.shape[0] * self.scale, lr.shape[1] * self.scale):
                raise ArgumentError(f"pair {i}: hr {hr.shape} is not {self.scale} x lr {lr.shape}: build pairs "
                                    "with sr_pairs(images, scale)")
            if min(lr.shape) < self.patch_size:
                continue  # too small for one crop, as PatchSampler leaves such images out
            if lr.shape[0] > lr.shape[1]:
                # portrait images lie down: a quarter turn is one of the symmetries drawn anyway, and one
                # orientation pads the stacked arrays far less
                lr, hr = lr.T, hr.T
            lows.append(lr)
            highs.append(hr)
        if not lows:
            raise ArgumentError(f"no low-resolution image is at least {self.patch_size}x{self.patch_size}: "
                                "pass larger images or a smaller patch_size")
        self.num_images = len(lows)
        sizes = np.array([a.shape for a in lows], dtype=np.int32)
        h, w = sizes.max(axis=0)
        s = self.scale
        positions = np.prod(sizes - self.patch_size + 1, axis=1).astype(np.float64)
        self.pixels = int(sum(a.size for a in highs))
        put = self._start(device)
        self.lr = put(_pad_stack(lows, h, w))
        self.hr = put(_pad_stack(highs, h * s, w * s))
        self.sizes = put(sizes)
        self.logits = put(np.log(positions / positions.sum()).astype(np.float32))
        self.grids_lr = put(dihedral_index_grids(self.patch_size))
        self.grids_hr = put(dihedral_index_grids(self.patch_size * s))

    def state(self) -> tuple[Any, ...]:
        """The device arrays ``sample`` reads."""
        return self.lr, self.hr, self.sizes, self.logits, self.grids_lr, self.grids_hr, self.key

    def draw(self, key: Any, step: Any, sizes: Any, logits: Any) -> dict[str, Any]:
        """The random choices of batch ``step``: image, low-resolution crop corner and symmetry per patch."""
        jax = self._jax
        k_image, k_row, k_col, k_turn = jax.random.split(jax.random.fold_in(key, step), 4)
        which = jax.random.categorical(k_image, logits, shape=(self.batch_size,))
        return self._crops(which, sizes, k_row, k_col, k_turn)

    def sample(self, lr: Any, hr: Any, sizes: Any, logits: Any, grids_lr: Any, grids_hr: Any, key: Any,
               step: Any) -> tuple[Any, Any]:
        """Pure function: NHWC float32 ``(low-resolution, high-resolution)`` of batch ``step``."""
        choice = self.draw(key, step, sizes, logits)
        rows, cols, s = choice["rows"], choice["cols"], self.scale
        return _gather(lr, grids_lr, choice, rows, cols), _gather(hr, grids_hr, choice, rows * s, cols * s)
