"""The on-device patch sampler on the CPU: bitwise reproducible from its seed, the crops and symmetries it claims."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from deconvlab.errors import ArgumentError  # noqa: E402
from deconvlab.sampler import PatchSampler, dihedral_index_grids  # noqa: E402

CPU = jax.devices("cpu")[0]


def _images(n=5, size=(40, 48), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(size, dtype=np.float32) for _ in range(n)]


def _sampler(images=None, seed=0, **kw):
    args = {"patch_size": 16, "batch_size": 12, "sigma": 25.0, "seed": seed, "device": CPU, **kw}
    return PatchSampler(_images() if images is None else images, **args)


def test_same_seed_gives_bitwise_equal_batches():
    a, b = _sampler(seed=7), _sampler(seed=7)
    for step in (0, 1, 1000):
        (xa, ya), (xb, yb) = a.batch(step), b.batch(step)
        assert np.asarray(xa).tobytes() == np.asarray(xb).tobytes()
        assert np.asarray(ya).tobytes() == np.asarray(yb).tobytes()


def test_other_seeds_and_steps_give_other_batches():
    base_x, base_y = (np.asarray(t) for t in _sampler(seed=7).batch(3))
    other_x, other_y = (np.asarray(t) for t in _sampler(seed=8).batch(3))
    next_x, next_y = (np.asarray(t) for t in _sampler(seed=7).batch(4))
    assert not np.array_equal(base_y, other_y) and not np.array_equal(base_x, other_x)
    assert not np.array_equal(base_y, next_y) and not np.array_equal(base_x, next_x)


def test_a_fused_scan_draws_the_same_batches_as_single_dispatches():
    sampler = _sampler(seed=3)
    images, sizes, grids, key = sampler.state()

    def body(carry, step):
        return carry, sampler.sample(images, sizes, grids, key, step)

    _, (xs, ys) = jax.jit(lambda: jax.lax.scan(body, 0, jax.numpy.arange(5, 9)))()
    for i, step in enumerate(range(5, 9)):
        x, y = sampler.batch(step)
        assert np.asarray(xs[i]).tobytes() == np.asarray(x).tobytes()
        assert np.asarray(ys[i]).tobytes() == np.asarray(y).tobytes()


def _numpy_dihedral(patch, k):
    out = np.rot90(patch, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def test_clean_patches_are_the_drawn_crops_under_the_drawn_symmetries():
    images = _images()
    sampler = _sampler(images, seed=11, batch_size=64)
    _, clean = sampler.batch(2)
    choice = {k: np.asarray(v) for k, v in sampler.draw(sampler.key, 2, sampler.sizes).items() if k != "noise_key"}
    assert set(np.unique(choice["turns"])) == set(range(8))  # 64 draws: every symmetry shows up
    size = sampler.patch_size
    for b in range(clean.shape[0]):
        i, y, x, k = (int(choice[n][b]) for n in ("which", "rows", "cols", "turns"))
        expected = _numpy_dihedral(images[i][y : y + size, x : x + size], k)
        np.testing.assert_array_equal(np.asarray(clean)[b, ..., 0], expected)


def test_dihedral_grids_match_the_patch_dataset_symmetries():
    from deconvlab.data import _dihedral

    patch = np.arange(5 * 5, dtype=np.float32).reshape(5, 5, 1)
    grids = dihedral_index_grids(5)
    for k in range(8):
        np.testing.assert_array_equal(patch[grids[k, ..., 0], grids[k, ..., 1]], _dihedral(patch, k))


def test_noise_is_awgn_of_sigma_and_not_clipped():
    sampler = _sampler(batch_size=64, sigma=25.0)
    noisy, clean = (np.asarray(t) for t in sampler.batch(0))
    residual = noisy - clean
    assert abs(residual.std() - 25 / 255) < 0.003 and abs(residual.mean()) < 0.003
    assert noisy.min() < 0 and noisy.max() > 1  # the DnCNN protocol does not clip the noisy input


def test_blind_range_draws_one_level_per_patch():
    sampler = _sampler(batch_size=64, sigma=(0.0, 50.0))
    levels = np.asarray(sampler.draw(sampler.key, 0, sampler.sizes)["sigmas"])
    assert levels.min() >= 0 and levels.max() <= 50 and np.unique(levels).size == 64
    noisy, clean = (np.asarray(t) for t in sampler.batch(0))
    per_patch = (noisy - clean).reshape(64, -1).std(axis=1) * 255
    assert np.corrcoef(per_patch, levels)[0, 1] > 0.99


def test_crops_stay_inside_images_of_different_sizes():
    # ones in every image, zeros in the padding: a crop reaching into the padding would show a zero
    images = [np.ones((20, 30), np.float32), np.ones((64, 17), np.float32), np.ones((16, 16), np.float32),
              np.ones((10, 40), np.float32)]
    sampler = _sampler(images, batch_size=256)
    assert sampler.num_images == 3  # the 10-row image cannot hold a 16x16 patch
    for step in range(4):
        _, clean = sampler.batch(step)
        assert np.asarray(clean).min() == 1.0


@pytest.mark.parametrize("kw, match", [
    ({"sigma": -1.0}, "sigma"),
    ({"sigma": (30.0, 10.0)}, "sigma"),
    ({"patch_size": 0}, "patch_size"),
    ({"patch_size": 100}, "no image"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_say_what_to_pass(kw, match):
    with pytest.raises(ArgumentError, match=match):
        _sampler(**kw)


def test_seeds_beyond_32_bits_are_refused_by_both_samplers():
    from deconvlab.sampler import SRPatchSampler

    # jax.random.key keeps the low 32 bits: seed 2**32 would repeat seed 0's batches, and 2**63 overflows
    pairs = _sr_pairs(2)
    for seed in (2**32, 2**32 + 7, 2**63):
        with pytest.raises(ArgumentError, match=r"seed=\d+: pass an integer >= 0 and <= 4294967295"):
            _sampler(seed=seed)
        with pytest.raises(ArgumentError, match="<= 4294967295"):
            SRPatchSampler(pairs, scale=2, patch_size=8, batch_size=2, seed=seed, device=CPU)
    top = _sampler(seed=2**32 - 1).batch(0)[0]
    assert not np.array_equal(np.asarray(top), np.asarray(_sampler(seed=0).batch(0)[0]))


def test_a_dataset_an_array_and_a_list_draw_the_same_batches():
    from deconvlab.registry import Dataset

    images = _images()
    dataset = Dataset("five", images, [str(i) for i in range(5)], is_fallback=False, color="gray", note="")
    expected = np.asarray(_sampler(images).batch(0)[1])
    for same in (dataset, np.stack(images)):
        np.testing.assert_array_equal(np.asarray(_sampler(same).batch(0)[1]), expected)


def test_colour_images_are_refused():
    with pytest.raises(ArgumentError, match="gray"):
        _sampler([np.zeros((20, 20, 3), np.float32)])


def _sr_pairs(scale, n=3, seed=0):
    from deconvlab.sampler import sr_pairs

    rng = np.random.default_rng(seed)
    return sr_pairs([rng.random((30 + 6 * i, 42)).astype(np.float32) for i in range(n)], scale)


@pytest.mark.parametrize("scale", [2, 3])
def test_sr_sampler_pairs_stay_aligned_under_every_symmetry(scale):
    from deconvlab.degrade import downscale
    from deconvlab.sampler import SRPatchSampler

    pairs = _sr_pairs(scale)
    sampler = SRPatchSampler(pairs, scale=scale, patch_size=8, batch_size=16, seed=1, device=CPU)
    lr, hr = (np.asarray(a) for a in sampler.batch(0))
    assert lr.shape == (16, 8, 8, 1) and hr.shape == (16, 8 * scale, 8 * scale, 1)
    # bicubic downscaling commutes with the symmetries, so every target's own downscale equals its input away
    # from the crop's border (the antialiased kernel reaches 2 low-resolution pixels; a shift by one would not)
    for x, y in zip(lr, hr, strict=True):
        assert np.abs(downscale(y[..., 0], scale)[2:-2, 2:-2] - x[2:-2, 2:-2, 0]).max() < 1e-5
    choice = sampler.draw(sampler.key, 0, sampler.sizes, sampler.logits)
    assert set(np.asarray(choice["turns"]).tolist()) - set(range(8)) == set()


def test_sr_sampler_is_reproducible_and_refuses_misaligned_pairs():
    from deconvlab.sampler import SRPatchSampler

    pairs = _sr_pairs(2)
    a = SRPatchSampler(pairs, scale=2, patch_size=6, batch_size=4, seed=3, device=CPU)
    b = SRPatchSampler(pairs, scale=2, patch_size=6, batch_size=4, seed=3, device=CPU)
    assert np.array_equal(np.asarray(a.batch(5)[1]), np.asarray(b.batch(5)[1]))
    assert not np.array_equal(np.asarray(a.batch(5)[1]), np.asarray(a.batch(6)[1]))
    with pytest.raises(ArgumentError, match="is not 3 x lr"):
        SRPatchSampler(pairs, scale=3, patch_size=4, batch_size=2, device=CPU)
