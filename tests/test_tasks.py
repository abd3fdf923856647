"""deconvlab.tasks (one place per task) and deconvlab.checks (argument checks at the public boundary)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from deconvlab import checks, degrade, evaluate, metrics, tasks, weights
from deconvlab.errors import ArgumentError

RNG = np.random.default_rng(5)
SRC = Path(__file__).resolve().parents[1] / "src" / "deconvlab"


def test_tasks_are_defined_once():
    assert evaluate.TASKS is tasks.TASKS and weights.TASKS is tasks.TASKS
    definitions = [p.name for p in SRC.glob("*.py") if re.search(r"^TASKS = ", p.read_text(), re.M)]
    assert definitions == ["tasks.py"]
    assert set(tasks.DEFAULT_DATASETS) == set(tasks.DEFAULT_BUILDERS) == set(tasks.INPUT_LABEL) == set(tasks.TASKS)


def test_training_degradations_are_the_protocols():
    clean = RNG.random((2, 24, 24, 1)).astype(np.float32)

    def run(fn, seed=3):
        return fn(clean.copy(), np.random.default_rng(seed))

    np.testing.assert_array_equal(run(tasks.training_degradation("denoise", sigma=25)),
                                  run(degrade.noise_degradation(25)))
    np.testing.assert_array_equal(run(tasks.training_degradation("denoise", sigma=(0, 55))),
                                  run(degrade.noise_degradation((0, 55))))
    psf = degrade.gaussian_psf(degrade.DEBLUR_PSF_SIGMA, degrade.DEBLUR_PSF_SIZE)
    np.testing.assert_array_equal(run(tasks.training_degradation("deblur")),
                                  run(degrade.blur_degradation(psf, degrade.DEBLUR_NOISE_SIGMA)))
    assert run(tasks.training_degradation("sr", scale=3)).shape == clean.shape  # pre-upsampling: same size
    assert run(tasks.training_degradation("sr", scale=3, post=True)).shape == (2, 8, 8, 1)
    multi = tasks.training_degradation("sr", scales=[2, 3, 4])
    outputs = {seed: run(multi, seed) for seed in range(12)}
    for seed, out in outputs.items():  # the factor comes from the batch's own generator: runs repeat exactly
        np.testing.assert_array_equal(out, run(multi, seed))
    assert len({out.tobytes() for out in outputs.values()}) == 3  # no noise in SR: one output per factor, all used
    with pytest.raises(ArgumentError, match="unknown task"):
        tasks.training_degradation("inpaint")


def test_evaluation_pairs_are_the_protocols():
    clean = RNG.random((26, 31, 3)).astype(np.float32)
    ref, noisy, low = tasks.evaluation_pair("denoise", clean, 4, sigma=25, seed=10)
    assert ref is clean and low is None
    np.testing.assert_array_equal(noisy, degrade.add_gaussian_noise(clean, 25, seed=14))
    ref, blurred, _ = tasks.evaluation_pair("deblur", clean, 0, sigma=2.0, seed=0)
    expected = degrade.add_gaussian_noise(degrade.blur(clean, tasks.protocol_psf()), 2.0, seed=0)
    np.testing.assert_array_equal(blurred, expected)
    hr, bicubic, low = tasks.evaluation_pair("sr", clean, 0, scale=3)
    np.testing.assert_array_equal(hr, metrics.rgb_to_y(metrics.modcrop(clean, 3)))
    assert hr.shape == (24, 30) and low.shape == (8, 10) and bicubic.shape == hr.shape
    np.testing.assert_array_equal(bicubic, degrade.upscale(degrade.downscale(hr, 3), 3))


def test_card_ids_and_dataset_modes():
    assert tasks.card_id("denoise", sigma=25) == "denoise-sigma25"
    assert tasks.card_id("denoise", sigma_range=(0, 55), channels=3) == "denoise-blind0-55-rgb"
    assert tasks.card_id("sr", scale=2) == "sr-x2" and tasks.card_id("sr", scales=[2, 3, 4]) == "sr-x2-3-4"
    assert tasks.card_id("deblur") == "deblur" and weights.default_card_id("sr", scale=4) == "sr-x4"
    assert tasks.dataset_mode("sr", 3) is None and tasks.dataset_mode("denoise", 3) == "rgb"
    assert tasks.dataset_mode("deblur", 1) == "gray"


def test_task_argument_checks():
    assert tasks.check_task_args("sr", None, 2) == (None, 2)
    assert tasks.check_task_args("denoise", 15, None) == (15.0, None)
    for args, message in ((("sr", None, None), "needs --scale"), (("deblur", 25, None), "--sigma applies"),
                          (("denoise", None, 2), "--scale applies"), (("denoise", 101, None), "outside"),
                          (("sr", None, 5), "not supported"), (("x", None, None), "unknown task")):
        with pytest.raises(ArgumentError, match=message):
            tasks.check_task_args(*args)
    assert tasks.parse_scales("4, 2,3") == [2, 3, 4]
    for text in ("2", "2,5", "2,x"):
        with pytest.raises(ArgumentError, match="--scales"):
            tasks.parse_scales(text)
    assert tasks.check_sigma_range(0, 55) == (0.0, 55.0)
    with pytest.raises(ArgumentError, match="LO < HI"):
        tasks.check_sigma_range(30, 10)


def test_checks_refuse_bools_non_numbers_and_out_of_range():
    assert checks.integer("n", np.int64(3), 1) == 3 and type(checks.integer("n", np.int64(3), 1)) is int
    assert checks.number("s", np.float32(2.5)) == 2.5 and checks.number("a", -3, None) == -3.0
    for bad in (True, 2.0, "3", None, 0):
        with pytest.raises(ArgumentError, match=r"n=.*: pass an integer >= 1"):
            checks.integer("n", bad, 1)
    for bad in (False, math.nan, math.inf, "1", -0.5):
        with pytest.raises(ArgumentError, match="finite number >= 0"):
            checks.number("sigma", bad)
    with pytest.raises(ArgumentError, match=r"> 0, e\.g\. 1"):
        checks.number("scale", 0, strict=True, hint=", e.g. 1")


@pytest.mark.parametrize(("n", "held"), [(2, 1), (9, 1), (64, 8), (400, 8)])
def test_held_aside_count_leaves_most_images_for_training(n, held):
    assert tasks.held_aside_count(n) == held


def test_a_single_training_image_cannot_be_split():
    with pytest.raises(ArgumentError, match="cannot spare"):
        tasks.held_aside_count(1)


def test_held_aside_split_leaves_copies_of_held_images_out_of_training():
    # T91's t36 = t65: a held-aside picture must not also be trained on
    images = [np.full((4, 5), v, np.float32) for v in (0.1, 0.2, 0.3, 0.2, 0.4)]
    assert tasks.held_aside_split(images, 2) == ([0, 2], [3, 4])
    # equal values in another shape are another image
    images[1] = np.full((5, 4), 0.2, np.float32)
    assert tasks.held_aside_split(images, 2) == ([0, 1, 2], [3, 4])


def test_y_range_maps_gray_onto_the_matlab_luma_range():
    """Gray SR training images go to (16 + 219 x) / 255: 0 -> 16/255, 1 -> 235/255, linearly in between."""
    gray = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    np.testing.assert_allclose(tasks.y_range(gray), (16 + 219 * gray) / 255, atol=1e-7)
    np.testing.assert_allclose(tasks.y_range(gray)[0, [0, 3]], [16 / 255, 235 / 255], atol=1e-7)



def test_sr_training_y_takes_matlab_y_of_colour_and_the_luma_range_of_gray():
    """Colour images become rgb2ycbcr luma (pure red: (16 + 65.481) / 255), gray ones (H, W) or (H, W, 1) the
    [16, 235] / 255 range, and the returned text names the mapping used."""
    red = np.zeros((4, 5, 3), np.float32)
    red[..., 0] = 1.0
    gray = np.full((4, 5), 0.5, np.float32)
    mapped, how = tasks.sr_training_y([red, gray, gray[..., None]])
    np.testing.assert_allclose(mapped[0], (16 + 65.481) / 255, atol=1e-6)
    for out in mapped[1:]:
        assert out.shape == (4, 5)
        np.testing.assert_allclose(out, (16 + 219 * 0.5) / 255, atol=1e-6)
    assert how == "Y (MATLAB rgb2ycbcr), gray images mapped to [16, 235]/255"
    assert tasks.sr_training_y([red])[1] == "Y (MATLAB rgb2ycbcr)"
    assert tasks.sr_training_y([gray])[1] == "mapped to [16, 235]/255"



def test_sr_evaluation_input_is_the_unclipped_bicubic_upscale():
    """The SR protocol feeds a pre-upsampling model upscale(downscale(hr)) as is: bicubic overshoots a sharp
    gray edge past [0, 1], and those values must reach the model (evaluate clips only what it measures)."""
    edge = np.zeros((24, 24), np.float32)
    edge[:, 12:] = 1.0
    edge[5:9, 5:9] = 1.0
    hr, bicubic, low = tasks.evaluation_pair("sr", edge, 0, scale=3)
    np.testing.assert_array_equal(bicubic, degrade.upscale(degrade.downscale(edge, 3), 3))
    assert bicubic.min() < 0 and bicubic.max() > 1
    np.testing.assert_array_equal(hr, metrics.rgb_to_y(edge))
