"""The GPU host's fused training path, run tiny on the CPU: held-aside split, schedule, budget, a valid card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from deconvlab import degrade, fused, recipes, weights  # noqa: E402
from deconvlab.console import UsageError  # noqa: E402
from deconvlab.errors import ArgumentError, OutputError, WeightsError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_held_aside_keeps_validation_images_out_of_training():
    images = [np.full((20, 20), i / 10, dtype=np.float32) for i in range(10)]
    train, (noisy, clean) = fused.held_aside(images, (15.0, 50.0), count=3)
    assert [float(t[0, 0]) for t in train] == pytest.approx([i / 10 for i in range(7)])
    # one noisy copy per level of each held image, never a training image
    assert noisy.shape == clean.shape == (6, 20, 20, 1)
    assert sorted({round(float(c[0, 0, 0]), 3) for c in clean}) == [0.7, 0.8, 0.9]
    spread = [float(np.std(noisy[i] - clean[i])) * 255 for i in (0, 3)]
    assert spread[0] == pytest.approx(15, rel=0.2) and spread[1] == pytest.approx(50, rel=0.2)


def test_cosine_schedule_warms_up_then_decays_to_one_percent():
    lr = [float(fused.cosine_lr(s, 100, 1e-3, 10)) for s in (0, 10, 55, 100, 200)]
    assert lr[0] == pytest.approx(1e-4) and lr[1] == pytest.approx(1e-3)
    assert lr[2] == pytest.approx(0.505e-3, rel=1e-3)
    assert lr[3] == lr[4] == pytest.approx(1e-5)


SHARED = Path("/work/shared/datasets")


@pytest.fixture(autouse=True)
def _keep_the_precision_policy():
    """fused.main sets Keras' global precision policy (mixed_bfloat16 unless --precision says otherwise): left set,
    it made later tests in the same process build bfloat16 models and miss their float32 tolerances."""
    import keras

    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


def _refused(argv: list[str]) -> str:
    """The one line ``python -m deconvlab.fused`` refuses ``argv`` with (a UsageError: status 2 under console.run)."""
    with pytest.raises(UsageError) as exc:
        fused._arguments(argv)
    return str(exc.value)


def _run(tmp_path, *args):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    if (SHARED / "train400").is_dir():  # the tests below check Train400's names and split
        env.setdefault("DECONVLAB_DATA", str(SHARED))
    cmd = [sys.executable, "-m", "deconvlab.fused", "--arch", '{"widths": [4, 8], "depths": [1, 1]}',
           "--out", str(tmp_path), "--patch", "16", "--batch", "2", "--warmup", "10", "--eval-every", "10", "--steps-per-call", "10",
           "--train-limit", "12", "--eval", "set12", "--precision", "float32", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_fused_run_writes_a_card_that_loads_and_records_the_split(tmp_path):
    out = _run(tmp_path, "--id", "tiny-blind", "--sigma-range", "0", "55", "--steps", "20")
    card = weights.read_card(tmp_path / "tiny-blind.json")
    weights.validate_card(card, tmp_path / card["weights_file"])
    assert card["blind"] is True and card["sigma_range"] == [0.0, 55.0]
    assert card["training"]["steps"] == 20 and card["macs_per_pixel"] > 0
    assert card["data"]["validation"].startswith("held-aside Train400") and "15/25/50" in card["data"]["validation"]
    # --train-limit 12: the last 8 of those 12 were held aside, not the last 8 of Train400
    assert card["data"]["train"] == "train400 (first 12) without its last 8 images (4 images)"
    assert set(card["gpu_metrics"]) == {"set12@15", "set12@25", "set12@50"}
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result["id"] == "tiny-blind"


@pytest.mark.slow
def test_a_budget_run_stops_inside_its_budget(tmp_path):
    _run(tmp_path, "--id", "tiny25", "--sigma", "25", "--budget-s", "25", "--eval", "")
    record = weights.read_card(tmp_path / "tiny25.json")["training"]
    # the schedule's length was planned from the measured speed and the run ended before the budget
    assert record["train_seconds"] <= 25 + 5
    assert record["steps"] <= record["curve"][-1]["planned_steps"]


def test_held_aside_sr_crops_the_last_images_to_one_batch():
    images = [np.full((40 + 3 * i, 50 - i), i / 10, dtype=np.float32) for i in range(6)]
    train, (lr, hr) = fused.held_aside_sr(images, 3, count=2)
    assert len(train) == 4 and [float(t[0, 0]) for t in train] == pytest.approx([0, 0.1, 0.2, 0.3])
    # the largest size both held images share, rounded down to the scale; inputs are 3 times smaller
    assert hr.shape == (2, 51, 45, 1) and lr.shape == (2, 17, 15, 1)
    assert np.allclose(hr[1], 0.5) and np.allclose(lr[0], 0.4, atol=1e-6)


@pytest.mark.backends  # runs in the JAX stage of CI (make unit-jax)
def test_l1_and_mse_losses_differ_and_unknown_losses_are_refused():
    import keras

    if keras.backend.backend() != "jax":  # the fused trainer steps JAX arrays of a JAX-backend model
        pytest.skip("deconvlab.fused trains on the JAX backend")

    from deconvlab import models

    x = np.zeros((1, 8, 8, 1), np.float32)
    y = np.full_like(x, 0.5)
    losses = {}
    for loss in ("mse", "l1"):
        keras.utils.set_random_seed(0)
        model = models.red_net(depth=1, width=2)  # a run donates its state: one model per trainer
        trainer = fused.FusedTrainer(model, 1, fixed=(jax.numpy.asarray(x), jax.numpy.asarray(y)), peak_lr=0.0,
                                     loss=loss)
        losses[loss] = float(trainer.run(trainer.init(), 0, 10)[1])
    # the untrained model returns about its input (0): L1 ~ 0.5, MSE ~ 0.25
    assert losses["l1"] == pytest.approx(0.5, abs=0.01) and losses["mse"] == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError, match="loss"):
        fused.FusedTrainer(model, 1, fixed=(x, y), loss="huber")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "t91" / "MANIFEST.tsv").is_file(), reason="no local copy of T91")
def test_sr_run_writes_a_card_measured_under_the_sr_protocol(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "DECONVLAB_DATA": str(SHARED)}
    arch = '{"body": "resblocks", "skip": "bicubic", "depth": 1, "width": 4, "up_init": "bilinear"}'
    cmd = [sys.executable, "-m", "deconvlab.fused", "--task", "sr", "--scale", "3", "--arch", arch, "--id", "tiny-sr",
           "--out", str(tmp_path), "--steps", "20", "--patch", "10", "--batch", "2", "--warmup", "10",
           "--eval-every", "10", "--steps-per-call", "10", "--train-sets", "t91", "--train-limit", "12",
           "--val-images", "3", "--eval", "Set5", "--precision", "float32", "--loss", "l1",
           "--scale-augment", "0.9,0.01"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    card = weights.read_card(tmp_path / "tiny-sr.json")
    weights.validate_card(card, tmp_path / card["weights_file"])
    assert card["task"] == "sr" and card["scale"] == 3 and card["upsample"] == "post"
    assert card["training"]["steps"] == 20 and card["training"]["loss"] == "l1"
    assert set(card["macs_per_pixel"]) == {"3"} and card["data"]["validation"].startswith("held-aside T91")
    assert not {"set5", "set14"} & set(card["data"]["validation"].lower().split())
    assert set(card["data"]["registry_sha256"]) == {"t91"}
    # 9 T91 images trained on, each also bicubic-resized by 0.9; the 3 held aside are not, and the 0.01 copies
    # (a few pixels a side, under one 30-pixel patch) are left out, as the card says
    assert card["training"]["train_images_used"] == 18
    assert "resized by 0.9, 0.01 (9 under 30 pixels on a side left out), pairs by" in card["data"]["train"]
    assert card["data"]["train"].startswith("t91 (first 12) Y (MATLAB rgb2ycbcr, 8 bits) without its last 3 images "
                                            "(9 images) + each also")
    # an untrained-enough model is close to its bicubic skip: Set5 x3 near the 30.41 dB bicubic baseline; the key
    # names the set as the registry does, whatever the case of --eval
    assert set(card["gpu_metrics"]) == {"set5@x3"} and 29.0 < card["gpu_metrics"]["set5@x3"] < 32.0
    model = weights.load_pretrained(card=card)
    assert model(np.zeros((1, 7, 5, 1), np.float32)).shape == (1, 21, 15, 1)


def test_scale_augmentation_adds_a_bicubic_copy_per_factor_and_refuses_factors_outside_0_1(capsys):
    images = [np.random.default_rng(0).random((40, 30), dtype=np.float32)]
    out = fused.scale_augmented(images, (0.9, 0.5))
    assert [x.shape for x in out] == [(40, 30), (36, 27), (20, 15)]
    np.testing.assert_allclose(out[2], degrade.bicubic_resize(images[0], 0.5))
    base = ["--task", "sr", "--scale", "2", "--id", "x", "--out", "o", "--steps", "1"]
    assert fused._arguments(base + ["--scale-augment", "0.9,0.6"]).scale_augment == (0.9, 0.6)
    for bad in ("1.5", "0", "a,b"):
        assert "between 0 and 1" in _refused(base + ["--scale-augment", bad])


@pytest.mark.backends  # runs in the JAX stage of CI (make unit-jax); the TensorFlow stage skips it
def test_ema_state_is_the_moving_average_of_the_weights_and_is_what_validation_sees(capsys):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("deconvlab.fused trains on the JAX backend")

    from deconvlab import models

    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.random((2, 8, 8, 1), dtype=np.float32))
    y = jax.numpy.asarray(rng.random((2, 8, 8, 1), dtype=np.float32))
    keras.utils.set_random_seed(0)
    model = models.red_net(depth=1, width=2)
    start = [np.asarray(v.value) for v in model.trainable_variables]
    trainer = fused.FusedTrainer(model, 1, fixed=(x, y), peak_lr=1e-2, ema=0.5)
    state, _ = trainer.run(trainer.init(), 0, 10)
    # one step from w0 to w1: the average is 0.5 * w0 + 0.5 * w1, and validation reads the average
    for avg, w0, w1 in zip(state[3], start, state[0], strict=True):
        np.testing.assert_allclose(np.asarray(avg), 0.5 * w0 + 0.5 * np.asarray(w1), rtol=1e-6, atol=1e-7)
    assert trainer.weights(state)[0] is state[3]
    assert fused.FusedTrainer(models.red_net(depth=1, width=2), 1, fixed=(x, y)).weights(state)[0] is state[0]
    base = ["--sigma", "25", "--id", "x", "--out", "o", "--steps", "1"]
    assert fused._arguments(base + ["--ema", "0.999"]).ema == 0.999
    for bad in ("1", "0", "x"):
        assert "between 0 and 1" in _refused(base + ["--ema", bad])


def test_held_aside_sr_trains_on_no_copy_of_a_held_image():
    images = [np.full((30, 30), v, np.float32) for v in (0.1, 0.5, 0.2, 0.5)]
    train, (_, hr) = fused.held_aside_sr(images, 2, count=1)
    assert [float(t[0, 0]) for t in train] == pytest.approx([0.1, 0.2])
    assert np.allclose(hr, 0.5)


def test_an_arch_outside_the_card_limits_is_refused_before_training(capsys):
    with pytest.raises(ArgumentError, match="unknown model 'unett'"):
        fused._build(SimpleNamespace(id="tiny", builder="unett"), {})
    for bad in (["--steps", "0"], ["--steps-per-call", "0"]):
        assert "must be at least 1" in _refused(["--sigma", "25", "--id", "x", "--out", "o", "--steps", "1", *bad])
    args = SimpleNamespace(id="tiny", builder="unet")
    with pytest.raises(WeightsError, match="kernel_size=17 .*change --arch"):
        fused._build(args, {"widths": [4, 8], "depths": [1, 1], "kernel_size": 17})
    assert fused._build(args, {"widths": [4, 8], "depths": [1, 1]}).count_params() > 0


def _tiny_denoiser_run(model=None, **kwargs):
    import keras

    from deconvlab import models

    if keras.backend.backend() != "jax":
        pytest.skip("deconvlab.fused trains on the JAX backend")

    rng = np.random.default_rng(0)
    train, val = fused.held_aside([rng.random((40, 40)).astype("float32") for _ in range(6)], (25.0,), count=2)
    model = model or models.build_model("red_net", channels=1, depth=2, width=4)
    return fused.train_denoiser(model, train, val, sigma=25.0, patch=16, batch=4, steps_per_call=10, eval_every=10,
                                warmup=0, log=lambda _: None, **kwargs)


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_a_run_whose_validation_is_never_finite_ends_in_one_line_at_its_first_validation():
    from deconvlab.errors import TrainingError

    # NaN weights never recover, so the 40 steps after the first validation would only spend device time
    with pytest.raises(TrainingError, match="validation PSNR was never finite in 10 steps"):
        _tiny_denoiser_run(steps=50, lr=float("nan"))


def test_held_images_of_different_sizes_are_centre_cropped_to_one_batch():
    rng = np.random.default_rng(0)
    same = [rng.random((12, 12), dtype=np.float32) for _ in range(3)]
    _, (noisy, clean) = fused.held_aside(same, (25.0,), count=2)
    np.testing.assert_array_equal(clean[..., 0], np.stack(same[1:]))  # equal sizes: the images as they are
    np.testing.assert_array_equal(noisy[1, ..., 0], degrade.add_gaussian_noise(same[2], 25.0,
                                                                              seed=fused.VAL_NOISE_SEED + 1))
    mixed = [same[0], rng.random((14, 9), dtype=np.float32), rng.random((11, 13), dtype=np.float32)]
    _, (noisy, clean) = fused.held_aside(mixed, (25.0,), count=2)
    assert noisy.shape == clean.shape == (2, 11, 9, 1)
    np.testing.assert_array_equal(clean[0, ..., 0], mixed[1][1:12])
    np.testing.assert_array_equal(clean[1, ..., 0], mixed[2][:, 2:11])


def test_a_missing_data_set_or_a_bad_training_set_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DECONVLAB_DATA", str(tmp_path))
    assert fused.main(["--sigma", "25", "--steps", "1", "--id", "x", "--out", str(tmp_path / "o"), "--eval", "set12"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no folder set12/" in err and "Traceback" not in err
    # refused while parsing, as the other arguments are, in one line without argparse's usage block
    sr = ["--task", "sr", "--scale", "2", "--id", "x", "--out", "o", "--steps", "1"]
    assert "--train-sets: t91, or t91,train400" in _refused([*sr, "--train-sets", "train400"])
    assert fused.main([*sr, "--train-sets", "train400"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deconvlab: error: --train-sets: t91") and "usage" not in err
    parsed = fused._arguments(["--task", "sr", "--scale", "2", "--id", "x", "--out", "o", "--steps", "1", "--train-sets", "T91, t91"])
    assert parsed.train_sets == ("t91",)
    denoise = ["--sigma", "25", "--id", "x", "--out", "o", "--steps", "1"]
    for option in (["--train-sets", "t91"], ["--scale-augment", "0.9"]):  # taken and ignored before
        assert "--train-sets and --scale-augment apply to --task sr" in _refused([*denoise, *option])


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_offline_the_card_names_the_fallback_photographs_it_trained_on(tmp_path, monkeypatch, capsys):
    import keras

    from deconvlab import registry

    if keras.backend.backend() != "jax":
        pytest.skip("deconvlab.fused trains on the JAX backend")

    def offline(*_, **__):
        raise registry.NoNetworkError("no network")

    monkeypatch.setattr(registry, "fetch_dataset", offline)
    argv = ["--arch", '{"widths": [4, 8], "depths": [1, 1]}', "--out", str(tmp_path), "--patch", "16", "--batch", "2",
            "--warmup", "10", "--eval-every", "10", "--steps-per-call", "10", "--steps", "10", "--id", "fb",
            "--sigma", "25", "--val-images", "2", "--eval", "fallback-test", "--precision", "float32"]
    assert fused.main(argv) == 0, capsys.readouterr().err
    data = weights.read_card(tmp_path / "fb.json")["data"]
    assert data["fallback"] is True and data["registry_sha256"] == {}
    assert data["train"].startswith("fallback-train without its last 2 images")
    assert data["validation"].startswith("held-aside fallback-train ") and "(centre crops " in data["validation"]


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_steps_are_whole_calls_and_the_plan_says_what_ran():
    record = _tiny_denoiser_run(steps=25)  # 3 calls of 10 steps
    assert record["steps"] == record["curve"][-1]["planned_steps"] == 30


def test_mixed_float16_is_refused_for_want_of_loss_scaling(capsys):
    assert "invalid choice: 'mixed_float16'" in _refused(["--task", "denoise", "--sigma", "25", "--id", "x", "--out", "o", "--steps", "1", "--precision", "mixed_float16"])


def test_eval_sets_are_named_as_the_registry_files_them():
    # gpu_metrics keys pair with the cards' metrics entries by set name: "--eval Set5" measured "Set5@x2" before
    base = ["--task", "sr", "--scale", "2", "--id", "x", "--out", "o", "--steps", "1"]
    assert fused._arguments(base + ["--eval", " Set5,SET14,set5,"]).eval == ("set5", "set14")
    assert fused._arguments(base).eval == ("set5", "set14")
    assert fused._arguments(["--sigma", "25", "--id", "x", "--out", "o", "--steps", "1", "--eval", "BSD68"]).eval == ("bsd68",)
    assert fused._arguments(base + ["--eval", ""]).eval == ()


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_a_diverged_validation_is_null_in_the_curve_the_card_and_the_history(monkeypatch, tmp_path):
    from deconvlab import models

    psnrs = iter([20.0, float("nan")])  # a finite checkpoint, then a step that diverged
    monkeypatch.setattr(fused, "_validation", lambda *_: lambda state: next(psnrs))
    model = models.build_model("red_net", channels=1, depth=2, width=4)
    record = _tiny_denoiser_run(model, steps=20)
    assert [c["val_psnr"] for c in record["curve"]] == [20.0, None] and record["best_val_psnr"] == 20.0
    fields = {"id": "tiny", "task": "denoise", "sigma": 25.0, "training": dict(record), "data": {}}
    card = fused._save_card(model, fields, record, SimpleNamespace(out=tmp_path, id="tiny", budget_s=None, overwrite=False))

    def refuse(constant):
        raise AssertionError(f"{constant} in strict JSON")

    history = json.loads((tmp_path / "tiny.history.json").read_text(), parse_constant=refuse)
    assert history["history"]["val_psnr"] == [20.0, None] == card["history"]["val_psnr"]
    assert weights.read_card(tmp_path / "tiny.json")["training"]["curve"][1]["val_psnr"] is None


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_a_run_that_diverges_after_a_checkpoint_stops_and_keeps_it(monkeypatch):
    psnrs = iter([20.0, float("nan")])  # NaN weights (lr NaN) behind a finite first validation
    monkeypatch.setattr(fused, "_validation", lambda *_: lambda state: next(psnrs))
    record = _tiny_denoiser_run(steps=50, lr=float("nan"))
    assert record["steps"] == 20 and record["diverged_at_step"] == 20 and record["best_val_psnr"] == 20.0
    assert [c["val_psnr"] for c in record["curve"]] == [20.0, None]


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_a_failure_while_measuring_the_test_sets_keeps_the_trained_card(monkeypatch, tmp_path, capsys):
    import keras

    from deconvlab import evaluate

    if keras.backend.backend() != "jax":
        pytest.skip("deconvlab.fused trains on the JAX backend")
    if not (SHARED / "train400").is_dir():
        pytest.skip("needs Train400 and Set12 in ../shared/datasets")
    monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))

    def out_of_memory(*args, **kwargs):  # what a GPU shared by several jobs can do to the last step
        raise MemoryError("RESOURCE_EXHAUSTED: out of memory while measuring")

    monkeypatch.setattr(evaluate, "evaluate", out_of_memory)
    status = fused.main(["--arch", '{"widths": [4, 8], "depths": [1, 1]}', "--out", str(tmp_path), "--id", "t",
                         "--sigma", "25", "--steps", "20", "--patch", "16", "--batch", "2", "--warmup", "10",
                         "--eval-every", "10", "--steps-per-call", "10", "--train-limit", "12", "--eval", "set12",
                         "--precision", "float32"])
    assert status != 0 and "out of memory" in capsys.readouterr().err
    card = weights.read_card(tmp_path / "t.json")
    weights.validate_card(card, tmp_path / card["weights_file"])
    assert card["training"]["steps"] == 20 and "gpu_metrics" not in card


@pytest.mark.backends  # runs in the JAX stage of CI; the TensorFlow stage skips it
def test_train_seconds_leave_out_the_host_side_data_preparation(monkeypatch):
    from deconvlab import sampler

    clock = [0.0]

    def tick():  # a clock of whole seconds per reading: no test depends on the machine's speed
        clock[0] += 1.0
        return clock[0]

    class SlowSampler(sampler.PatchSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clock[0] += 1000.0  # preparing the data took 1000 s

    monkeypatch.setattr(fused, "time", SimpleNamespace(perf_counter=tick))
    monkeypatch.setattr(sampler, "PatchSampler", SlowSampler)
    record = _tiny_denoiser_run(steps=20)
    assert record["train_seconds"] < 10 and record["data_seconds"] >= 1000
    assert record["patches_per_s"] == pytest.approx(20 * 4 / record["train_seconds"], rel=0.01)
    assert all(c["seconds"] < 10 for c in record["curve"])


def test_a_misspelt_eval_set_is_refused_before_training(capsys):
    for task in (["--task", "sr", "--scale", "2"], ["--sigma", "25"]):
        base = [*task, "--id", "x", "--out", "o", "--steps", "1"]
        assert "--eval: unknown data set 'set55'" in _refused([*base, "--eval", "set5,set55"])
        # known sets pass, whatever their case; one the run cannot load (not packed here) is still noted after it
        assert fused._arguments([*base, "--eval", " Set5,bsd68,fallback-test"]).eval == ("set5", "bsd68", "fallback-test")


def test_options_out_of_range_are_refused_while_parsing(capsys):
    # each was taken and failed later: an internal error (--eval-every 0, --val-images 0, --budget-s nan, neither
    # --steps nor --budget-s), or a card trained as asked (--lr 0, --budget-s -5, --shared 0)
    base = ["--sigma", "25", "--id", "x", "--out", "o"]
    for bad, said in ((["--steps", "10", "--eval-every", "0"], "--eval-every must be at least 1"),
                      (["--steps", "10", "--val-images", "0"], "--val-images must be at least 1"),
                      (["--steps", "10", "--train-limit", "-3"], "--train-limit must be at least 1"),
                      (["--steps", "10", "--shared", "0"], "--shared must be at least 1"),
                      (["--steps", "10", "--warmup", "-10"], "--warmup must be at least 0"),
                      (["--steps", "10", "--patch", "0"], "--patch must be at least 1"),
                      (["--steps", "10", "--batch", "-2"], "--batch must be at least 1"),
                      (["--steps", "10", "--lr", "0"], "--lr 0: pass a finite number > 0"),
                      (["--steps", "10", "--lr=-1e-3"], "--lr -0.001: pass a finite number > 0"),
                      (["--budget-s", "-5"], "--budget-s -5: pass a finite number > 0"),
                      (["--budget-s", "nan"], "--budget-s nan: pass a finite number > 0"),
                      ([], "one of the arguments --budget-s --steps is required"),
                      (["--steps", "10", "--budget-s", "5"], "not allowed with argument")):
        assert said in _refused(base + bad)
    assert fused._arguments(base + ["--budget-s", "5", "--warmup", "0", "--val-images", "1"]).budget_s == 5


def test_noise_levels_outside_deconvlab_trains_limits_are_refused_while_parsing(capsys):
    base = ["--id", "x", "--out", "o", "--steps", "1"]
    for bad, said in ((["--sigma", "1e6"], "--sigma 1e+06 is outside (0, 100]"),
                      (["--sigma", "-5"], "--sigma -5 is outside (0, 100]"),
                      (["--sigma-range", "50", "10"], "--sigma-range 50 10: need 0 <= LO < HI <= 100"),
                      (["--sigma-range", "0", "500"], "--sigma-range 0 500: need 0 <= LO < HI <= 100")):
        assert said in _refused(base + bad)
    assert fused._arguments(base + ["--sigma-range", "0", "55"]).sigma_range == (0.0, 55.0)
    assert fused._arguments(base + ["--sigma", "100"]).sigma == 100.0


def test_an_arch_that_is_not_a_json_object_is_refused_while_parsing(capsys):
    base = ["--sigma", "25", "--id", "x", "--out", "o", "--steps", "1"]
    for bad, said in (("{widths", "--arch is not JSON (Expecting property name"),
                      ("[4, 8]", "--arch must be a JSON object")):
        assert said in _refused(base + ["--arch", bad])
    assert fused._arguments(base + ["--arch", '{"widths": [4, 8]}']).arch == {"widths": [4, 8]}
    assert fused._arguments(base).arch == {}


def test_an_arch_that_sets_what_the_trainer_sets_is_refused_while_parsing(capsys):
    # each was an internal error: "got multiple values for keyword argument", or (sr) after the data was loaded
    base = ["--id", "x", "--out", "o", "--steps", "1", "--arch"]
    for task, arch, said in ((["--sigma", "25"], '{"channels": 3}', "--arch sets channels, which --task (1: gray"),
                             (["--task", "sr", "--scale", "2"], '{"scale": 3, "depth": 2}',
                              "--arch sets scale, which --scale sets: drop it"),
                             (["--task", "sr", "--scale", "2"], '{"upsample": "pre"}',
                              "--arch sets upsample, which --task sr (post) sets: drop it")):
        assert said in _refused([*task, *base, arch])
    assert fused._arguments(["--task", "sr", "--scale", "2", *base, '{"depth": 2}']).arch == {"depth": 2}


def test_a_seed_outside_deconvlab_trains_range_is_refused_while_parsing(capsys):
    base = ["--sigma", "25", "--id", "x", "--out", "o", "--steps", "1"]
    for bad in ("-1", "99999999999"):  # Keras refused them, as an internal error
        assert f"--seed {bad}: pass an integer from 0 to 4294967295" in _refused([*base, "--seed", bad])
    assert fused._arguments([*base, "--seed", "4294967295"]).seed == 4294967295


def test_an_empty_out_is_refused_while_parsing(capsys):
    base = ["--sigma", "25", "--id", "x", "--steps", "1", "--out"]
    for bad in ("", " "):  # Path("") is ".": the card was written into the folder the command ran from
        assert "--out is empty: pass a folder" in _refused([*base, bad])
    assert fused._arguments([*base, "."]).out == Path(".")


def test_an_id_that_is_not_one_file_name_is_refused_while_parsing(capsys):
    base = ["--sigma", "25", "--out", "o", "--steps", "1"]
    for bad in ("a/b", "../x", ".hidden", ""):
        assert "it names the files written into --out" in _refused(base + ["--id", bad])
    assert fused._arguments(base + ["--id", "unet-s25.v2+ema"]).id == "unet-s25.v2+ema"


def test_a_rerun_refuses_to_replace_a_card_without_overwrite(tmp_path, monkeypatch, capsys):
    # as deconvlab train: a second run with the same --id replaced the first run's card and weights without a word
    monkeypatch.setenv("DECONVLAB_DATA", str(tmp_path / "no-data"))  # a run that got past the check stops here
    (tmp_path / "x.json").write_text("{}")
    (tmp_path / "x.weights.npz").write_bytes(b"first run")
    argv = ["--sigma", "25", "--steps", "1", "--id", "x", "--eval", "set12", "--out"]
    assert fused.main([*argv, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'x.json'} exists: pass --overwrite" in err
    assert (tmp_path / "x.weights.npz").read_bytes() == b"first run"
    assert fused.main([*argv, str(tmp_path / "x.json")]) == 2
    assert "x.json is a file: pass a folder" in capsys.readouterr().err
    # a card that appears while training (another job with the same --id) is not replaced either
    with pytest.raises(OutputError, match="x.json appeared while training: pass --overwrite"):
        _save_tiny_card(tmp_path, overwrite=False)
    assert (tmp_path / "x.weights.npz").read_bytes() == b"first run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.weights.npz"]  # no temporary folder left
    assert fused._arguments([*argv, str(tmp_path), "--overwrite"]).overwrite
    # as deconvlab train: a new --out goes into an existing folder ("no/such/runs" is more often a typo)
    recipes.check_out_dir(tmp_path / "new", "x")
    with pytest.raises(OutputError, match="new/deeper: the folder .*new does not exist"):
        recipes.check_out_dir(tmp_path / "new" / "deeper", "x")


def _save_tiny_card(out: Path, overwrite: bool) -> dict:
    """fused._save_card of an untrained tiny denoiser with one validation point, as card ``x`` into ``out``."""
    from deconvlab import models

    model = models.build_model("red_net", channels=1, depth=2, width=4)
    record = {"curve": [{"train_loss": 0.1, "val_psnr": 20.0, "seconds": 1.0}], "steps": 10}
    fields = {"id": "x", "task": "denoise", "sigma": 25.0, "data": {}}
    args = SimpleNamespace(out=out, id="x", budget_s=None, overwrite=overwrite)
    return fused._save_card(model, fields, record, args, datasets=())


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_save_that_fails_partway_leaves_out_as_it_was(tmp_path, monkeypatch, failure):
    # --overwrite wrote the history, the weights, then the card straight into --out: a failure or Ctrl-C before the
    # card left the new history and weights beside the old card. As deconvlab train, they now move in together.
    old = {"x.json": b'{"id": "x"}', "x.weights.npz": b"first run", "x.history.json": b"{}", "x.notes.txt": b"mine"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)

    def stopped(*_):
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(weights, "write_card", stopped)  # the card is the last file written
        with pytest.raises(type(failure)):
            _save_tiny_card(tmp_path, overwrite=True)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old  # no new file, no temporary folder
        with pytest.raises(type(failure)):  # a new --out is not left behind, empty or half written
            _save_tiny_card(tmp_path / "new", overwrite=True)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old
    # a save that finishes replaces the card's files; those it does not write stay, as with deconvlab train
    card = _save_tiny_card(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.history.json", "x.json", "x.notes.txt", "x.weights.npz"]
    assert (tmp_path / "x.notes.txt").read_bytes() == b"mine" and card["_path"] == str(tmp_path / "x.json")
    weights.validate_card(weights.read_card(tmp_path / "x.json"), tmp_path / "x.weights.npz")
    assert weights.load_history(tmp_path / "x.history.json")["history"]["val_psnr"] == [20.0]


def test_val_images_must_leave_images_to_train_on_and_be_t91_ones_for_sr(monkeypatch):
    from deconvlab import data

    rng = np.random.default_rng(0)
    loaded = SimpleNamespace(images=[rng.random((20, 20), dtype=np.float32) for _ in range(3)],
                             names=["a", "b", "c"], name="train400", is_fallback=False)
    monkeypatch.setattr(data, "load_dataset", lambda *_, **__: loaded)
    base = ["--id", "x", "--out", "o", "--steps", "1", "--eval", "", "--precision", "float32", "--val-images"]
    with pytest.raises(ArgumentError, match="--val-images 3: 3 training images were loaded; hold aside fewer"):
        fused._main_denoise(fused._arguments(["--sigma", "25", *base, "3"]), "")

    class Accepted(Exception):
        """Raised where a run the checks let through goes on to hold images aside."""

    def accepted(*_, **__):
        raise Accepted

    monkeypatch.setattr(fused, "held_aside", accepted)
    monkeypatch.setattr(fused, "held_aside_sr", accepted)
    with pytest.raises(Accepted):  # one image left to train on is enough
        fused._main_denoise(fused._arguments(["--sigma", "25", *base, "2"]), "")
    # SR: 12 held of 3 T91 + 3 Train400 images held Train400's too, in a card naming 12 held-aside T91 images
    t91 = [rng.random((24, 24), dtype=np.float32) for _ in range(3)]
    monkeypatch.setattr(fused, "sr_training_images", lambda sets, limit: (
        loaded.images + t91, {"train400": loaded.names, "t91": ["t1", "t2", "t3"]}))
    sr = ["--task", "sr", "--scale", "2", *base]
    for count in ("4", "12"):
        with pytest.raises(ArgumentError, match=f"--val-images {count}: .* 3 were loaded, so hold aside at most 3"):
            fused._main_sr(fused._arguments([*sr, count]), "")
    with pytest.raises(Accepted):  # all three T91 images held aside: Train400's are left to train on
        fused._main_sr(fused._arguments([*sr, "3"]), "")
    monkeypatch.setattr(fused, "sr_training_images", lambda sets, limit: (t91, {"t91": ["t1", "t2", "t3"]}))
    with pytest.raises(ArgumentError, match="--val-images 3: .* 3 were loaded, so hold aside at most 2"):
        fused._main_sr(fused._arguments([*sr, "3", "--train-sets", "t91"]), "")
    with pytest.raises(Accepted):
        fused._main_sr(fused._arguments([*sr, "2", "--train-sets", "t91"]), "")


def test_scale_augmented_copies_too_small_for_one_patch_are_left_out():
    # --scale-augment 0.01 made 2x3 copies, and sr_pairs stopped the run: "image 2x3 is smaller than scale=3"
    images = [np.random.default_rng(0).random((300, 240), dtype=np.float32)]
    out = fused.scale_augmented(images, (0.5, 0.01), min_side=3 * 8)
    assert [x.shape for x in out] == [(300, 240), (150, 120)]
    # exactly the copies SRPatchSampler would have left out: a side of scale * patch still gives one crop
    assert [x.shape for x in fused.scale_augmented(images, (0.1,), min_side=24)] == [(300, 240), (30, 24)]
    assert [x.shape for x in fused.scale_augmented(images, (0.1,), min_side=25)] == [(300, 240)]
    # an image given under one patch is left out too, as the sampler left it out: the card counts both
    assert [x.shape for x in fused.scale_augmented(images + [images[0][:20]], (0.5,), min_side=24)] == [
        (300, 240), (150, 120)]
