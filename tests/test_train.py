"""Tests for deconvlab.train: the PSNR metric, precision policies, train() with checkpoint, history and resume."""

from __future__ import annotations

import io
import json
import os
import time
import types
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import threadpoolctl

from deconvlab import cli, config, metrics, models, recipes
from deconvlab import train as tr
from deconvlab.data import PatchDataset, load_dataset
from deconvlab.degrade import noise_degradation
from deconvlab.errors import ArgumentError, ImageValueError, OutputError, TrainingError
from deconvlab.evaluate import evaluate

# Runs on every Keras backend: `make unit-jax` (part of `make test`) repeats these tests on JAX.
pytestmark = pytest.mark.backends

SHARED = Path("/work/shared/datasets")


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.fixture(scope="module")
def train_images():
    # three offline photographs, gray: enough texture for 32x32 patches, no data set needed
    return load_dataset("fallback-train", mode="gray", limit=3).images


def _patches(images, steps=10, seed=0, batch_size=8):
    return PatchDataset(images, noise_degradation(25), patch_size=32, batch_size=batch_size,
                        steps_per_epoch=steps, seed=seed)


def _tiny():
    return models.red_net(depth=2, width=8)


# ------------------------------------------------------------------------------------------------ metric


def test_psnr_metric_equals_metrics_psnr_per_image_mean():
    y = _rand((4, 16, 17, 1))
    noisy = y + np.random.default_rng(1).normal(0, 0.05, y.shape).astype("float32") * np.arange(1, 5)[:, None, None, None]
    expected = np.mean([metrics.psnr(a, b) for a, b in zip(y, noisy, strict=True)])
    got = float(keras.ops.convert_to_numpy(tr.psnr_metric(y, noisy)))
    assert abs(got - expected) < 1e-3
    # per image, not the PSNR of the pooled MSE: the two differ by more than the tolerance here
    pooled = metrics.psnr(y, noisy)
    assert abs(pooled - expected) > 0.1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_psnr_metric_casts_reduced_precision_outputs(dtype):
    y = _rand((2, 12, 12, 3))
    pred = keras.ops.cast(y + 0.02, dtype)
    as_f32 = keras.ops.convert_to_numpy(keras.ops.cast(pred, "float32"))
    expected = np.mean([metrics.psnr(a, b) for a, b in zip(y, as_f32, strict=True)])
    got = float(keras.ops.convert_to_numpy(tr.psnr_metric(y, pred)))
    assert abs(got - expected) < 1e-3
    assert 33 < got < 35  # an error of 0.02 is 33.98 dB, before rounding to the reduced dtype


def test_psnr_metric_class_accumulates_the_mean_per_image_psnr():
    a, b = _rand((2, 8, 8, 1), 1), _rand((3, 8, 8, 1), 2)
    pa, pb = a + 0.1 * _rand(a.shape, 3), b + 0.03 * _rand(b.shape, 4)
    metric = tr.PSNR()
    metric.update_state(a, pa)
    metric.update_state(b, pb)
    per_image = [metrics.psnr(x, y) for x, y in zip(np.concatenate([a, b]), np.concatenate([pa, pb]), strict=True)]
    assert abs(float(metric.result()) - np.mean(per_image)) < 1e-3
    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric.update_state(a, a)  # exact: capped, not inf
    assert float(metric.result()) == pytest.approx(tr.PSNR_MAX_DB)
    metric.reset_state()
    metric.update_state(a, pa, sample_weight=np.array([1.0, 0.0]))
    assert abs(float(metric.result()) - metrics.psnr(a[0], pa[0])) < 1e-3


def test_psnr_metric_and_class_are_registered_and_serialisable():
    assert keras.saving.get_registered_object("deconvlab>PSNR") is tr.PSNR
    assert keras.saving.get_registered_object("deconvlab>psnr_metric") is tr.psnr_metric
    clone = tr.PSNR.from_config(tr.PSNR(name="val_psnr_x", max_db=60.0, dtype="float16").get_config())
    assert clone.name == "val_psnr_x" and clone.max_db == 60.0 and clone.dtype == "float32"
    same = np.full((2, 4, 4, 1), 0.5, dtype=np.float32)
    clone.update_state(same, same)
    assert float(clone.result()) == pytest.approx(60.0)  # the cap survives the round trip
    restored = keras.metrics.deserialize(keras.metrics.serialize(tr.PSNR()))
    assert isinstance(restored, tr.PSNR)


# ------------------------------------------------------------------------------------------------ options


def test_precision_choice_and_policy_context_restores_global_policy():
    assert tr.choose_precision(False) == "float32"
    if not config.gpu_available():
        assert tr.choose_precision(None, "paper") == "float32"  # profile says mixed, but no GPU here
        assert not tr.bf16_supported()
        before = keras.mixed_precision.global_policy().name
        with pytest.warns(UserWarning, match="without a GPU"), tr.precision_policy(True) as name:
            assert name == "mixed_bfloat16"
            model = _tiny()
        assert keras.mixed_precision.global_policy().name == before
        assert tr.model_precision(model) == "mixed_bfloat16"
        assert model.outputs[0].dtype == "float32"  # the builders end in float32
    with pytest.raises(ArgumentError, match="mixed_precision"):
        tr.choose_precision("yes")


def test_set_precision_sets_the_global_policy():
    before = keras.mixed_precision.global_policy()
    try:
        assert tr.set_precision(False) == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy(before)


def test_compute_capability_parsing():
    parse = tr._capability_at_least_8
    assert parse((8, 0)) and parse("9.0") and parse((12, 0))
    assert parse((7, 5)) is False and parse("7.0") is False
    assert parse(None) is None and parse("unknown") is None


def test_jit_and_verbose_resolution(monkeypatch):
    expected = {"jax": True, "torch": False, "tensorflow": config.gpu_available()}[config.keras_backend()]
    assert tr.resolve_jit_compile("auto") is expected
    assert tr.resolve_jit_compile(True) is True and tr.resolve_jit_compile(False) is False
    with pytest.raises(ArgumentError):
        tr.resolve_jit_compile("yes")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdout", Tty())
    assert tr.resolve_verbose("auto") == 1
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert tr.resolve_verbose("auto") == 2  # notebooks and logs: one line per epoch
    assert tr.resolve_verbose(0) == 0
    with pytest.raises(ArgumentError):
        tr.resolve_verbose(3)


def test_schedule_warms_up_then_decays_to_one_percent():
    sched = tr.learning_rate_schedule(1e-3, total_steps=100, warmup_steps=10)
    lr = [float(sched(s)) for s in (0, 5, 10, 55, 100)]
    assert lr[0] == pytest.approx(1e-4) and lr[1] == pytest.approx(5.5e-4)
    assert lr[2] == pytest.approx(1e-3) and lr[2] > lr[3] > lr[4]
    assert lr[4] == pytest.approx(1e-5)
    no_warmup = tr.learning_rate_schedule(2e-3, total_steps=50)
    assert float(no_warmup(0)) == pytest.approx(2e-3) and float(no_warmup(50)) == pytest.approx(2e-5)


def test_make_validation_pairs_is_deterministic(train_images):
    x1, y1 = tr.make_validation_pairs(train_images, noise_degradation(25), patch_size=24, n=6, seed=3)
    x2, y2 = tr.make_validation_pairs(train_images, noise_degradation(25), patch_size=24, n=6, seed=3)
    assert x1.shape == y1.shape == (6, 24, 24, 1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    noise = (x1 - y1).std() * 255
    assert 22 < noise < 28
    x3, _ = tr.make_validation_pairs(train_images, noise_degradation(25), patch_size=24, n=6, seed=4)
    assert not np.array_equal(x1, x3)
    with pytest.raises(ArgumentError):
        tr.make_validation_pairs(train_images, None, patch_size=24, n=0)


# ------------------------------------------------------------------------------------------------ train


def test_train_decreases_loss_and_writes_history_and_checkpoint(tmp_path, train_images):
    config.set_seed(0)
    model = _tiny()
    val = tr.make_validation_pairs(train_images, noise_degradation(25), patch_size=32, n=8, seed=1)
    ckpt, hist = tmp_path / "run" / "tiny.keras", tmp_path / "run" / "tiny.json"
    history = tr.train(model, _patches(train_images), val, profile="quick", epochs=3, checkpoint=ckpt,
                       history_path=hist, verbose=0)
    assert history.epoch == [0, 1, 2]
    loss = history.history["loss"]
    # The net starts near the identity (loss = the noise power), so learning shows as a clear drop below it.
    assert loss[-1] < 0.85 * loss[0]
    assert history.history["val_psnr"][-1] > history.history["val_psnr"][0]

    saved = tr.load_history(hist)
    assert saved["format"] == tr.HISTORY_FORMAT
    h, meta = saved["history"], saved["meta"]
    assert set(h) == {"loss", "psnr", "val_loss", "val_psnr", "learning_rate"}
    assert all(len(v) == 3 for v in h.values())
    np.testing.assert_allclose(h["loss"], loss, rtol=1e-6)
    assert h["learning_rate"][0] > h["learning_rate"][-1] == pytest.approx(2e-3 * tr.FINAL_LR_FRACTION)
    assert meta["precision"] == "float32" and meta["loss_scaling"] is False
    assert meta["params"] == models.count_params(model)
    assert meta["backend"] == config.keras_backend() and meta["device"] == config.device_name()
    assert (meta["profile"], meta["steps_per_epoch"], meta["batch_size"], meta["seed"]) == ("quick", 10, 8, 0)
    assert meta["epochs_done"] == 3 and meta["steps_done"] == 30 and len(meta["epoch_seconds"]) == 3
    assert meta["monitor"] == "val_psnr" and meta["best"]["epoch"] == int(np.argmax(h["val_psnr"])) + 1
    assert history.meta is not None and history.meta["epochs_done"] == 3

    best = keras.saving.load_model(ckpt, safe_mode=True)  # the best epoch by val_psnr, loadable safely
    best_psnr = float(keras.ops.convert_to_numpy(tr.psnr_metric(val[1], best(val[0]))))
    assert best_psnr == pytest.approx(max(h["val_psnr"]), abs=1e-3)

    from deconvlab.plots import plot_history

    fig = plot_history(tr.load_history(hist))  # the plotting helper reads the same file
    assert len(fig.axes) == 2  # loss and psnr panels; the learning rate is left out


def test_train_on_arrays_without_validation_monitors_loss(tmp_path, train_images):
    x, y = tr.make_validation_pairs(train_images, noise_degradation(15), patch_size=24, n=20, seed=0)
    history = tr.train(_tiny(), (x, y), profile="quick", epochs=2, checkpoint=tmp_path / "a.keras",
                       history_path=tmp_path / "a.json", verbose=0, learning_rate=1e-3, seed=5)
    meta = tr.load_history(tmp_path / "a.json")["meta"]
    assert meta["monitor"] == "loss" and meta["seed"] == 5
    assert meta["batch_size"] == 20 and meta["steps_per_epoch"] == 1  # profile batch 32 > 20 pairs
    assert (tmp_path / "a.keras").is_file() and "val_loss" not in history.history


def test_train_reads_8_bit_array_pairs_on_the_unit_scale(train_images):
    # uint8 pairs were cast as is, so the model trained on 0-255 values (a loss ~65,000 times larger)
    x, y = tr.make_validation_pairs(train_images, None, patch_size=16, n=8, seed=0)
    pixels = [np.round(np.clip(a, 0, 1) * 255).astype(np.uint8) for a in (x, y)]
    losses = []
    for pair in ((pixels[0] / np.float32(255), pixels[1] / np.float32(255)), pixels):
        keras.utils.set_random_seed(0)
        history = tr.train(_tiny(), pair, profile="quick", epochs=1, verbose=0, seed=0)
        losses.append(history.history["loss"][0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.complex64])
def test_train_refuses_pairs_of_unknown_scale(train_images, dtype):
    # signed integers were cast as is: 0-255 values trained off-scale, as uint8 pairs once did
    x, y = tr.make_validation_pairs(train_images, None, patch_size=16, n=4, seed=0)
    with pytest.raises(ImageValueError, match=f"train_data x has dtype {np.dtype(dtype)}, not float or unsigned int"):
        tr.train(_tiny(), ((x * 255).astype(dtype), y), profile="quick", epochs=1, verbose=0)


def _optimizer_state(model) -> list[tuple[str, np.ndarray]]:
    """(variable path without the optimizer's unique name, value) of the Adam moments, in order."""
    return [(v.path.split("/", 1)[-1], keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables
            if "iteration" not in v.path]


def test_resume_continues_epochs_weights_and_optimizer_state(tmp_path, train_images):
    ckpt, hist = tmp_path / "r.keras", tmp_path / "r.json"
    config.set_seed(0)
    first_patches = _patches(train_images)
    tr.train(_tiny(), first_patches, profile="quick", epochs=2, checkpoint=ckpt, history_path=hist, verbose=0)
    first = tr.load_history(hist)
    saved = keras.saving.load_model(ckpt, safe_mode=True)
    saved_opt = _optimizer_state(saved)

    seen = {}

    class Peek(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["iterations"] = int(self.model.optimizer.iterations)
            seen["weights"] = [w.copy() for w in self.model.get_weights()]
            seen["opt"] = _optimizer_state(self.model)

    patches = _patches(train_images)
    resumed = tr.train(_tiny(), patches, profile="quick", epochs=3, checkpoint=ckpt, history_path=hist,
                       resume=True, verbose=0, callbacks=[Peek()])
    assert resumed.epoch == [2]
    assert seen["iterations"] == 20  # the schedule continues after the 2 x 10 steps already done
    for a, b in zip(seen["weights"], saved.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(seen["opt"]) == len(saved_opt) > 0
    for (pa, a), (pb, b) in zip(seen["opt"], saved_opt, strict=True):
        assert pa == pb
        np.testing.assert_array_equal(a, b)  # Adam's moments came back too
    # fresh patches, as an uninterrupted run would draw: one epoch further than the first run got
    assert patches.epoch == first_patches.epoch + 1

    after = tr.load_history(hist)
    assert len(after["history"]["loss"]) == 3
    assert after["history"]["loss"][:2] == first["history"]["loss"]
    assert after["meta"]["resumed_at"] == [2] and after["meta"]["epochs_done"] == 3
    assert after["meta"]["started"] == first["meta"]["started"]

    done = tr.train(_tiny(), patches, profile="quick", epochs=3, checkpoint=ckpt, history_path=hist,
                    resume=True, verbose=0)
    assert done.epoch == [] and len(tr.load_history(hist)["history"]["loss"]) == 3


def test_resume_without_files_starts_fresh(tmp_path, train_images):
    history = tr.train(_tiny(), _patches(train_images, steps=2), profile="quick", epochs=1,
                       checkpoint=tmp_path / "n.keras", history_path=tmp_path / "n.json", resume=True, verbose=0)
    assert history.epoch == [0] and "resumed_at" not in history.meta
    with pytest.raises(ArgumentError, match="resume=True needs"):
        tr.train(_tiny(), _patches(train_images), profile="quick", resume=True, verbose=0)


def test_mixed_float16_model_gets_loss_scaling(train_images):
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _tiny()
    finally:
        keras.mixed_precision.set_global_policy(before)
    history = tr.train(model, _patches(train_images, steps=3), profile="quick", epochs=1, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert history.meta["precision"] == "mixed_float16" and history.meta["loss_scaling"] is True
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["psnr"][0])


@pytest.mark.parametrize(("kwargs", "steps", "message"), [
    ({"epochs": 10**20}, 10, "epochs=100000000000000000000: pass an integer >= 1 and <= 100,000"),
    ({"steps_per_epoch": 10**12}, 10, "steps_per_epoch=1000000000000: pass an integer >= 1 and <= 1,000,000"),
    ({}, 10**12, "steps_per_epoch=1000000000000: pass an integer >= 1 and <= 1,000,000"),  # the PatchDataset's own
])
def test_train_maxima_hold_outside_the_command_line(train_images, kwargs, steps, message):
    # such runs died late: 10**20 epochs inside TensorFlow, 10**12 steps in a MemoryError
    with pytest.raises(ArgumentError) as err:
        tr.train(_tiny(), _patches(train_images, steps=steps), verbose=0, **{"epochs": 1, **kwargs})
    assert str(err.value) == message


def test_a_dataset_of_many_real_batches_is_not_held_to_the_maximum():
    class Batches(keras.utils.PyDataset):  # 2,000,000 batches it really has, not an epoch of drawn ones
        def __len__(self):
            return 2_000_000

        def __getitem__(self, index):
            return np.zeros((1, 8, 8, 1), "float32"), np.zeros((1, 8, 8, 1), "float32")

    fit_args, _ = tr._fit_data(Batches(), None, None, config.get_profile("quick"))
    assert fit_args["steps_per_epoch"] == 2_000_000


def test_argument_errors(tmp_path, train_images):
    patches = _patches(train_images)
    with pytest.raises(ArgumentError, match=r"\.keras"):
        tr.train(_tiny(), patches, checkpoint=tmp_path / "x.h5", verbose=0)
    with pytest.raises(ArgumentError, match="epochs"):
        tr.train(_tiny(), patches, epochs=0, verbose=0)
    with pytest.raises(ArgumentError, match="learning_rate"):
        tr.train(_tiny(), patches, learning_rate=float("nan"), verbose=0)
    with pytest.raises(ArgumentError, match="train_data"):
        tr.train(_tiny(), "images/", verbose=0)
    with pytest.raises(ArgumentError, match="NHWC"):
        tr.train(_tiny(), (np.zeros((4, 8, 8)), np.zeros((4, 8, 8))), verbose=0)
    with pytest.raises(ArgumentError, match="keras.Model"):
        tr.train(lambda x: x, patches, verbose=0)
    with pytest.raises(ArgumentError, match="seed"):
        tr.train(_tiny(), patches, seed=-1, verbose=0)
    with pytest.raises(ArgumentError, match="callbacks"):
        tr.train(_tiny(), patches, callbacks=[print], verbose=0)
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(OutputError, match="folder"):
        tr.train(_tiny(), patches, checkpoint=tmp_path / "dir.keras", verbose=0)
    with pytest.raises(ArgumentError, match="does not exist"):
        tr.load_history(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArgumentError, match="not readable JSON"):
        tr.load_history(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"loss": [1.0]}))
    with pytest.raises(ArgumentError, match="not a deconvlab training history"):
        tr.load_history(tmp_path / "other.json")


def test_a_diverged_card_run_is_refused_before_its_test_sets_are_measured(tmp_path):
    # the last (NaN) weights were kept and measured: "test has NaN/inf values ... use np.nan_to_num"
    recipe = recipes.CardRecipe(task="denoise", out_dir=tmp_path / "runs", sigma=25, profile="quick",
                                epochs=1, steps=1, patch_size=16, learning_rate=1e9,
                                arch_kwargs={"depth": 2, "width": 4}, train_dataset="fallback-train",
                                train_limit=3, eval_datasets=["fallback-test"], eval_limit=1, verbose=0)
    with pytest.raises(TrainingError, match=r"^validation PSNR was never finite up to epoch 1 "
                                            r"\(training diverged\): lower --learning-rate$"):
        recipes.train_card_into(recipe, overwrite=False, log=lambda message: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [("--task", "sr", "--scale", "2", "--train-dataset", "set5"),
                                  ("--task", "denoise", "--sigma", "25", "--train-dataset", " BSD68")])
def test_card_recipe_refuses_to_train_on_a_test_set(argv):
    # the card then reported PSNR on the very images it was trained on
    options = vars(cli.build_parser().parse_args(["train", *argv, "--out", "runs"]))
    with pytest.raises(ArgumentError, match=r"^--train-dataset .* is a test set: the card would report PSNR "
                                            r"on the images it was trained on; leave --train-dataset out"):
        recipes.card_recipe(options, "deconvlab train")


def _card_recipe(*argv):
    options = vars(cli.build_parser().parse_args(["train", *argv]))
    return recipes.card_recipe(options, "deconvlab train")


@pytest.mark.parametrize("argv", [("--task", "denoise", "--sigma", "25", "--val-dataset", "TRAIN400"),
                                  ("--task", "sr", "--scale", "2", "--train-dataset", "t91",
                                   "--val-dataset", "t91")])
def test_card_recipe_refuses_to_validate_on_the_training_set(argv):
    # the checkpoint was chosen on images it was trained on
    with pytest.raises(ArgumentError, match=r"^--val-dataset \S+ is the training set: a checkpoint chosen on "
                                            r"it is chosen on images it was trained on; leave --val-dataset"):
        _card_recipe(*argv, "--out", "runs")


def test_card_recipe_refuses_colour_sr_before_training():
    # evaluate refused it only when measuring the card, after the whole run
    with pytest.raises(ArgumentError, match=r"^--channels 3 with --task sr: the SR protocol works on the Y "):
        _card_recipe("--task", "sr", "--scale", "2", "--channels", "3", "--out", "runs")


@pytest.mark.parametrize("card_id", ["a.history", "a.HISTORY"])
def test_card_ids_that_name_a_history_file_are_refused(card_id):
    # a.history.json is skipped by list_cards as a history, and --overwrite replaced card a's history
    with pytest.raises(ArgumentError, match=r"^--id '.*' ends in .history, which names training histories"):
        recipes.check_card_id(card_id)
    recipes.check_card_id("a.history1")


def test_card_recipe_refuses_an_empty_out():
    # Path("") is ".": the card went into the current folder
    with pytest.raises(OutputError, match=r"^--out is empty: pass a folder"):
        _card_recipe("--task", "denoise", "--sigma", "25", "--out", "")


def test_card_recipe_measures_a_test_set_named_twice_once_by_its_registry_name():
    recipe = _card_recipe("--task", "denoise", "--sigma", "25", "--out", "runs",
                          "--eval-datasets", "bsd68, BSD68,Set12")
    assert recipe.eval_sets == ["bsd68", "set12"]


def test_a_validation_set_is_named_by_the_images_loaded():
    # the card said "fallback-test" though only the quick profile's first test_images were loaded
    recipe = recipes.CardRecipe(task="denoise", out_dir=Path("runs"), sigma=25, steps=1, patch_size=16,
                                train_dataset="fallback-train", train_limit=3, val_dataset="fallback-test")
    profile = config.get_profile("quick")
    *_, val_set = recipes._patch_data(recipe, profile, post=False)
    assert val_set.name == f"fallback-test (first {profile.test_images})"


def test_a_blind_card_logs_each_sigma_it_is_measured_at(monkeypatch):
    # three lines "bsd68: PSNR ..." that named no sigma
    monkeypatch.setattr(recipes.weights, "load_pretrained", lambda card: None)
    monkeypatch.setattr(recipes, "run_evaluation", lambda *a, **k: types.SimpleNamespace(
        protocol={}, mean_psnr=30.0, mean_ssim=0.9))
    recipe = recipes.CardRecipe(task="denoise", out_dir=Path("runs"), sigma_range=(5, 55))
    lines = []
    recipes.measure_card({}, recipe, lines.append)
    assert [line.split(":")[0] for line in lines] == [f"bsd68 sigma {s:g}" for s in recipes.BLIND_LEVELS]


# ------------------------------------------------------------------------------------------------ integration


def _data_env(monkeypatch) -> bool:
    """Point DECONVLAB_DATA at the shared sets when they are here; False means: use the offline fallback."""
    if os.environ.get("DECONVLAB_DATA"):
        return True
    if SHARED.is_dir():
        monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))
        return True
    return False


@pytest.mark.slow
def test_quick_profile_red_net_beats_noisy_input_by_3db(monkeypatch, capsys):
    """The issue's acceptance criterion: quick-profile RED-Net on Train400, sigma 25, >= 3 dB over the noisy input."""
    profile = config.get_profile("quick")
    real = _data_env(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback's "not comparable" note
        train_set = load_dataset("train400" if real else "fallback-train", mode="gray", limit=profile.train_images)
        test_set = load_dataset("bsd68" if real else "fallback-test", mode="gray", limit=4)
    start = time.perf_counter()
    config.set_seed(0)
    with tr.precision_policy(profile=profile):
        model = models.red_net(width=profile.width, depth=profile.depth)
    patches = PatchDataset(train_set.images, noise_degradation(25), profile.patch_size, profile.batch_size,
                           profile.steps_per_epoch, seed=0)
    history = tr.train(model, patches, profile=profile, verbose=0)
    trained = time.perf_counter() - start
    result = evaluate(model, test_set, "denoise", sigma=25, seed=0)
    total = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[{train_set.name} -> {test_set.name}] {result.summary()}; gain {result.gain:.2f} dB; "
              f"train {trained:.1f} s ({profile.train_steps} steps), train+eval {total:.1f} s, "
              f"final loss {history.history['loss'][-1]:.5f}")
    assert len(history.epoch) == profile.epochs
    assert result.mean_input_psnr == pytest.approx(20.2, abs=0.3)  # sigma 25 noise on [0, 1] images
    assert result.gain >= 3.0


class _BlasThreads(keras.callbacks.Callback):
    """Records the BLAS thread limit that the batches of a training step run under."""

    def on_train_batch_begin(self, batch, logs=None):
        self.seen = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


@pytest.mark.parametrize("workers, expected", [(2, {1}), (1, {2})])
def test_train_keeps_blas_to_one_thread_only_while_worker_threads_prepare_batches(train_images, workers, expected):
    patches = PatchDataset(train_images, noise_degradation(25), patch_size=32, batch_size=4, steps_per_epoch=1,
                           seed=0, workers=workers)
    probe = _BlasThreads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        tr.train(_tiny(), patches, epochs=1, verbose=0, callbacks=[probe])
        after = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    assert probe.seen == expected
    assert after == {2}  # the limit ends with the run


def test_history_columns_stay_aligned_when_validation_skips_a_resumed_run():
    model = types.SimpleNamespace(optimizer=types.SimpleNamespace(learning_rate=1e-3))
    history = None
    for monitor, epochs in (("val_psnr", [{"loss": 1.0, "val_psnr": 20.0}, {"loss": 0.9, "val_psnr": 21.0}]),
                            ("loss", [{"loss": 0.8}]),  # resumed without val_data
                            ("val_psnr", [{"loss": 0.7, "val_psnr": 25.0}])):
        writer = tr.HistoryWriter(None, {"monitor": monitor, "monitor_mode": "max" if monitor != "loss" else "min"},
                                  previous=history)
        writer.set_model(model)
        done = len(writer.data["history"].get("loss", []))
        for epoch, logs in enumerate(epochs, start=done):
            writer.on_epoch_end(epoch, logs)
        history = writer.data
    assert history["history"]["val_psnr"] == [20.0, 21.0, None, 25.0]
    assert history["meta"]["best"] == {"epoch": 4, "val_psnr": 25.0}


def test_history_times_each_epoch_from_its_begin_to_its_end(monkeypatch):
    """epoch_seconds is end - begin of each epoch (a clock stepped by hand); wall_time_s is their sum."""
    writer = tr.HistoryWriter(None, {"monitor": "loss"})
    clock = iter([100.0, 103.25, 200.0, 201.5])
    monkeypatch.setattr(tr.time, "perf_counter", lambda: next(clock))
    for epoch, loss in enumerate((1.0, 0.5)):
        writer.on_epoch_begin(epoch)
        writer.on_epoch_end(epoch, {"loss": loss, "learning_rate": 1e-3})
    assert writer.data["meta"]["epoch_seconds"] == [3.25, 1.5]
    assert writer.data["meta"]["wall_time_s"] == 4.75


def test_compute_capability_8_0_as_jax_reports_it_has_bfloat16():
    """The boundary in JAX's string form: "8.0" (A100) and "8.6" (RTX 30) are Ampere, "7.5" is not."""
    parse = tr._capability_at_least_8
    assert parse("8.0") is True and parse("8.6") is True and parse("7.5") is False


def test_an_epoch_of_array_pairs_covers_every_pair_with_a_last_partial_batch():
    """n pairs in batches of b make ceil(n / b) steps per epoch: one more than a full batch takes two."""
    prof = config.get_profile("quick")
    n = prof.batch_size + 1
    pairs = (_rand((n, 8, 8, 1)), _rand((n, 8, 8, 1), seed=1))
    fit_args, batch_size = tr._fit_data(pairs, None, None, prof)
    assert batch_size == prof.batch_size and fit_args["steps_per_epoch"] == 2
    # reshuffled every epoch: else a shorter steps_per_epoch would only ever train on the first pairs
    assert fit_args["shuffle"] is True


def test_gradients_are_clipped_to_the_global_norm_of_1_that_chapter_4_states():
    """Chapter 4 and the shipped histories say "clipped to a global norm of 1": the compiled Adam does."""
    model = _tiny()
    tr._compile(model, 1e-3, "float32", False)
    assert model.optimizer.global_clipnorm == 1.0 and model.optimizer.clipnorm is None
