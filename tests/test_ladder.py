"""Tests for benchmarks/ladder.py (issue 14): the rungs' budget, rung c as an all-convolution net, collect/verdicts."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from deconvlab import models
from deconvlab.errors import ArgumentError, TrainingError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ladder  # noqa: E402
import unet_recipe  # noqa: E402


# ------------------------------------------------------------------------------------------------ the rungs
def test_plain_cnn_output_init_small_starts_like_red_net():
    keras.utils.set_random_seed(0)
    default = models.plain_cnn(depth=3, width=16)
    small = models.plain_cnn(depth=3, width=16, output_init="small")
    std = lambda m: float(np.std(keras.ops.convert_to_numpy(m.get_layer("conv3").kernel)))  # noqa: E731
    fan_in = 9 * 16
    assert std(default) == pytest.approx(math.sqrt(2 / fan_in), rel=0.35)  # He normal, unchanged default
    assert std(small) == pytest.approx(math.sqrt(models.OUTPUT_INIT_SCALE / fan_in), rel=0.35)
    assert models.model_spec(default)["kwargs"]["output_init"] == "he_normal"
    assert models.count_params(small) == models.count_params(default)
    with pytest.raises(ArgumentError, match="output_init"):
        models.plain_cnn(depth=2, width=2, output_init="zeros")


def test_rungs_share_one_parameter_budget_and_the_shipped_card():
    specs = ladder.ladder_specs(width=32, unet_width=20)
    sizes = ladder.budget(specs)
    assert all(abs(s["params_vs_reference"]) <= ladder.BUDGET_TOLERANCE for s in sizes.values()), sizes
    assert {sizes[r]["params"] for r in "abcde"} == {259_553}  # plain_cnn(2d, w) == red_net(d, w) exactly
    assert sizes["f"]["macs_per_pixel"] < sizes["e"]["macs_per_pixel"] / 4  # the U-Net computes at lower resolution
    card = ladder.card_kwargs()
    assert specs["e"]["kwargs"] == dict(card, width=32)
    assert specs["c"]["kwargs"]["skip_every"] == 0 and not specs["c"]["kwargs"]["global_residual"]
    assert specs["d"]["kwargs"]["skip_every"] == card["skip_every"] and not specs["d"]["kwargs"]["global_residual"]
    assert not specs["a"]["kwargs"]["residual"] and specs["b"]["kwargs"]["residual"]
    assert {specs[r]["kwargs"]["output_init"] for r in "ab"} == {"small"}
    assert specs["f"]["kwargs"]["up_init"] == "he_normal"  # hidden (up) layers start He normal in every rung


def test_width_search_finds_the_nearest_widths():
    specs = ladder.ladder_specs(target_params=2500, depth=3, unet_depths=(1, 1, 1))
    assert specs["e"]["kwargs"]["width"] == 8  # red_net(depth=3, width=8): 2,489 parameters
    assert specs["f"]["kwargs"]["widths"] == [2, 4, 8]  # 1,775 parameters; base width 3 has 3,937
    if keras.backend.backend() != "jax":  # JAX compiles each new initialiser shape: a minute and more there
        full = ladder.ladder_specs()
        assert full["e"]["kwargs"]["width"] == 32 and full["f"]["kwargs"]["widths"] == [20, 40, 80]


def test_build_is_seeded():
    spec = ladder.ladder_specs(target_params=2500, depth=3, width=8, unet_width=3)["d"]
    first, again, other = (ladder.build(spec, s).get_weights() for s in (1, 1, 2))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


# ----------------------------------------------------------------------- rung c == an all-convolution net
def test_rung_c_equals_an_all_convolution_network():
    result = ladder.check_transposed_as_convolution(seed=3)
    assert result["equal"], result
    assert result["transposed_layers"] == 3 and result["layers"] == 6
    assert result["max_abs_output"] > 0.1  # a non-trivial output was compared
    unflipped = ladder.check_transposed_as_convolution(seed=3, flip=False)
    assert not unflipped["equal"]  # the spatial flip is what makes them equal


def test_all_convolution_network_is_plain_cnn_shaped_and_keeps_the_global_residual():
    keras.utils.set_random_seed(0)
    model = models.red_net(depth=2, width=5, kernel_size=5, skip_every=0, global_residual=True)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    conv = ladder.transposed_as_convolution(model)
    assert all(isinstance(layer, (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.Add))
               and not isinstance(layer, keras.layers.Conv2DTranspose) for layer in conv.layers)
    assert models.count_params(conv) == models.count_params(models.plain_cnn(depth=4, width=5, kernel_size=5))
    x = rng.random((2, 9, 11, 1), dtype=np.float32)
    with ladder.full_float32_precision():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(conv(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5)
    image = rng.random((15, 13), dtype=np.float32)
    assert ladder.check_transposed_as_convolution(model, image)["equal"]


@pytest.mark.parametrize("kwargs", [dict(skip_every=2, global_residual=False), dict(down="strided", skip_every=0)])
def test_networks_with_skips_or_strides_are_refused(kwargs):
    model = models.red_net(depth=3, width=4, **kwargs)  # depth 3: a skip at level 2
    with pytest.raises(ArgumentError):
        ladder.transposed_as_convolution(model)


def test_full_float32_precision_restores_the_setting():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        read = lambda: jax.config.jax_default_matmul_precision  # noqa: E731
    elif backend == "tensorflow":
        import tensorflow as tf

        read = tf.config.experimental.tensor_float_32_execution_enabled
    else:
        pytest.skip(f"no precision flag read here for {backend}")
    before = read()
    with ladder.full_float32_precision() as switched:
        assert switched != "nothing to switch"
    assert read() == before


# ----------------------------------------------------------------------------------- collect and verdicts
def test_verdict_rule():
    x, y = [29.00, 29.02, 29.04], [29.30, 29.31, 29.32]  # pooled std ~0.016, difference 0.29
    assert ladder.verdict(x, y, 0.01, 0.02)["verdict"] == "supported"
    assert ladder.verdict(x, y, 0.01, 0.35)["verdict"] == "not distinguishable"  # the noise spread is larger
    wide = [28.8, 29.3, 29.8]
    assert ladder.verdict(wide, y, 0.01, 0.01)["verdict"] == "not distinguishable"  # 2 x pooled std is larger
    assert ladder.verdict([29.0], y, 0.01, 0.01)["reason"] == "fewer than 2 seeds in a rung"
    assert ladder.verdict(x, y, None, None)["verdict"] == "not distinguishable"
    v = ladder.verdict(y, x, 0.01, 0.02)  # the second rung is worse: the claim that it is better is contradicted
    assert v["verdict"] == "contradicted" and v["difference_db"] == pytest.approx(-0.29, abs=1e-4)


def _record(rung: str, seed: int, bsd: float, set12: float, spread: dict | None = None) -> dict:
    grads = [["conv1", 0.1 + seed], ["conv2", 0.2], ["conv3", 1.0]] if rung in "abde" else None
    return {"rung": rung, "seed": seed, "bsd68_psnr": bsd, "set12_psnr": set12, "steps": 2000, "batch": 64,
            "minutes": 0.5, "params": 264_541 if rung == "f" else 259_553,
            "macs_per_pixel": 40_760.0 if rung == "f" else 258_624.0, "commit": "abc1234", "hardware": "NVIDIA H200",
            "precision": "mixed_bfloat16", "test_images": {"bsd68": 68, "set12": 12},
            "bsd68_psnr_by_noise_seed": spread, "grad_norms_init": grads, "grad_norms_final": grads,
            "conv_equivalence": {"equal": True, "max_abs_diff": 1e-7, "precision": "x", "image_shape": [1, 5, 5, 1]}
            if rung == "c" and seed == 0 else None}


def test_collect_writes_table_and_verdicts(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    means = {"a": 28.0, "b": 29.00, "c": 28.05, "d": 28.90, "e": 29.02, "f": 28.95}
    for rung, mean in means.items():
        for seed, jitter in zip((0, 1, 2), (-0.01, 0.0, 0.01), strict=True):
            spread = {"0": mean + jitter, "1": mean + jitter + 0.004, "2": mean + jitter - 0.003} if seed == 0 else None
            rec = _record(rung, seed, round(mean + jitter, 4), round(mean + 1.2 + jitter, 4), spread)
            (runs / f"ladder-{rung}-seed{seed}.json").write_text(json.dumps(rec))
    (runs / "ladder-f-seed3.skipped.json").write_text(json.dumps({"rung": "f", "seed": 3, "skipped": True}))
    summary = ladder.collect([runs], tmp_path / "results")
    assert summary["rungs"]["b"]["bsd68_mean"] == pytest.approx(29.0)
    assert summary["rungs"]["b"]["bsd68_std"] == pytest.approx(0.01)
    assert summary["rungs"]["a"]["noise_spread"] == pytest.approx(0.007)
    assert summary["params_within_5_percent_of_e"] is True
    verdicts = {(v["from"], v["to"]): v["verdict"] for v in summary["verdicts"]}
    assert verdicts[("a", "b")] == "supported"  # +1.0 dB
    assert verdicts[("b", "e")] == "not distinguishable"  # +0.02 dB < 2 x 0.01
    assert verdicts[("c", "d")] == "supported"
    assert len(summary["all_pairs"]) == 15 and summary["skipped"][0]["seed"] == 3
    assert summary["rungs"]["a"]["grad_norms_init"]["first_layer"] == pytest.approx(1.1)
    md = (tmp_path / "results" / "ladder.md").read_text()
    assert md.index("**Rule.**") < md.index("| rung |")  # the rule is printed above the table
    assert "| b | plain CNN + global residual | 259,553 | 258,624 | 3 | 29.000 ± 0.010 | 30.200 ± 0.010 |" in md
    assert "full sets" in md and "Skipped (deadline): f seed 3" in md
    data = json.loads((tmp_path / "results" / "ladder.json").read_text())
    assert data["rule"] == ladder.RULE and len(data["runs"]) == 18
    assert data["conv_equivalence_rung_c"]["equal"] is True


def test_collect_with_one_seed_says_not_distinguishable(tmp_path):
    for rung, bsd in (("a", 27.0), ("e", 29.0)):
        (tmp_path / f"ladder-{rung}-seed0.json").write_text(json.dumps(_record(rung, 0, bsd, bsd, {"0": bsd, "1": bsd})))
    summary = ladder.collect(sorted(tmp_path.glob("ladder-*.json")), tmp_path / "results")
    assert summary["verdicts"] == []  # a and e are no listed comparison; every pair still gets a verdict
    assert summary["all_pairs"]["a->e"]["verdict"] == "not distinguishable"
    assert "29.000 (1 seed)" in (tmp_path / "results" / "ladder.md").read_text()


def test_middle_ratio_leaves_out_the_output_layer():
    norms = [["c1", 1.0], ["c2", 0.5], ["c3", 0.01], ["c4", 0.02], ["c5", 0.5], ["c6", 2.0], ["out", 1e-4]]
    # hidden c1..c6: middle third c3, c4 -> median 0.015 over the largest 2.0
    assert ladder.middle_ratio(norms) == pytest.approx(0.0075)
    assert ladder.middle_ratio({"error": "x"}) is None and ladder.middle_ratio(norms[:2]) is None


def _grads(middle: float, seed: int) -> list:
    return [[f"c{i}", v] for i, v in enumerate([1.0, 0.8, middle * (1 + 0.01 * seed), middle, 0.9, 1.0, 1e-4])]


def test_gradient_verdicts_use_the_middle_of_the_network():
    runs = []
    for seed in (0, 1, 2):
        for rung, middle in (("a", 1e-4), ("d", 0.3), ("b", 0.5), ("e", 0.6)):
            runs.append({"rung": rung, "seed": seed, "grad_norms_init": _grads(middle, seed),
                         "grad_norms_final": _grads(middle, seed)})
    verdicts = {(v["when"], v["from"], v["to"]): v for v in ladder.gradient_verdicts(runs)}
    assert verdicts["init", "a", "d"]["verdict"] == "supported"  # 1e-4 -> 0.3: fusion rescues the middle
    assert verdicts["final", "b", "e"]["verdict"] == "no vanishing gradient to reduce"  # both >= 0.1
    reverse = [dict(r, rung={"a": "d", "d": "a"}.get(r["rung"], r["rung"])) for r in runs]
    flipped = {(v["when"], v["from"], v["to"]): v for v in ladder.gradient_verdicts(reverse)}
    assert flipped["init", "a", "d"]["verdict"] == "contradicted"  # fusion lowering the middle below 0.1
    mild = [dict(r, grad_norms_final=_grads(0.5 if r["rung"] == "a" else 0.9, r["seed"])) for r in runs]
    assert {(v["when"], v["from"]): v["verdict"] for v in ladder.gradient_verdicts(mild)}[
        "final", "a"] == "no vanishing gradient to reduce"


def test_overfit_runs_collect_into_their_own_table(tmp_path):
    for n, gaps in ((2, {"b": 1.0, "e": 0.5}), (392, {"b": 0.02, "e": 0.03})):
        for rung, gap in gaps.items():
            for seed in (0, 1, 2):
                rec = _record(rung, seed, 28.0, 29.0)
                g = gap + 0.01 * seed
                rec.update(train_images=n, train_psnr=28.0 + g, heldaside_psnr=27.9, gap_db=g, patch=50)
                (tmp_path / ladder.run_path(tmp_path, rung, seed, n).name).write_text(json.dumps(rec))
    assert ladder.run_path(tmp_path, "b", 1, 8).name == "overfit-n8-b-seed1.json"
    summary = ladder.collect([tmp_path], tmp_path / "results")  # no ladder runs: the overfit table only
    assert summary == {}
    data = json.loads((tmp_path / "results" / "overfit.json").read_text())
    verdicts = {(v["train_images"], v["from"], v["to"]): v["verdict"] for v in data["verdicts"]}
    assert verdicts[2, "b", "e"] == "supported" and verdicts[392, "b", "e"] == "not distinguishable"
    assert data["verdicts"][0]["difference_db"] == pytest.approx(-0.5)  # e's gap is smaller: the claim holds
    row = next(r for r in data["table"] if r["train_images"] == 2 and r["rung"] == "b")
    assert row["gap_db_mean"] == pytest.approx(1.01) and row["gap_db_std"] == pytest.approx(0.01)
    md = (tmp_path / "results" / "overfit.md").read_text()
    assert md.index("**Rule.**") < md.index("| n images |") and "| 2 | b -> e |" in md


def test_run_plan_names_every_run_file_by_experiment():
    plan = ladder.run_plan(ladder._train_arguments(["--rungs", "b,e", "--seeds", "0,1", "--out", "o"]))
    assert [p.name for *_, p in plan][:3] == ["ladder-b-seed0.json", "ladder-e-seed0.json", "ladder-b-seed1.json"]
    sizes = ladder.run_plan(ladder._train_arguments(["--rungs", "e", "--seeds", "2", "--train-images", "2,392"]))
    assert [p.name for *_, p in sizes] == ["overfit-n2-e-seed2.json", "overfit-n392-e-seed2.json"]
    tagged = ladder.run_plan(ladder._train_arguments(["--rungs", "e", "--train-images", "392", "--tag", "res-p25"]))
    assert {p.name for *_, p in tagged} == {f"res-p25-e-seed{s}.json" for s in (0, 1, 2)}  # not the overfit names
    with pytest.raises(SystemExit):
        ladder._train_arguments(["--tag", "../x"])


def test_a_diverged_run_is_recorded_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    def train_one(rung, seed, spec, data, args, log, n):  # a stand-in: rung a's seed 0 diverges
        if (rung, seed) == ("a", 0):
            raise TrainingError("validation PSNR was never finite in 20 steps (training diverged): lower --lr")
        return dict(_record(rung, seed, 28.0 + seed, 29.0), first_interval_overhead_s=0.0, spread_eval_seconds=0.0)

    monkeypatch.setattr(ladder, "train_one", train_one)
    args = ladder._train_arguments(["--rungs", "a,e", "--seeds", "0,1", "--out", str(tmp_path)])
    assert ladder.train_runs(args, dict.fromkeys("ae", {}), {}, print, 0.0) == 1  # the others ran; status 1
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "ladder-a-seed0.diverged.json", "ladder-a-seed1.json", "ladder-e-seed0.json", "ladder-e-seed1.json"]
    record = json.loads((tmp_path / "ladder-a-seed0.diverged.json").read_text())
    assert record["diverged"] and record["skipped"] and "20 steps" in record["reason"]
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "ladder: a seed 0 diverged: validation PSNR was never finite in 20 steps (training diverged): lower --lr"]
    summary = ladder.collect([tmp_path], tmp_path / "results")
    assert summary["rungs"]["a"]["seeds"] == [1] and summary["rungs"]["a"]["bsd68_mean"] == pytest.approx(29.0)
    assert [(s["rung"], s["seed"], s["diverged"]) for s in summary["skipped"]] == [("a", 0, True)]
    md = (tmp_path / "results" / "ladder.md").read_text()
    assert "- Diverged (held-aside PSNR never finite: no checkpoint; left out of the means and verdicts): a seed 0" in md
    assert "Skipped (deadline)" not in md


def test_a_run_that_diverged_after_a_checkpoint_is_named_in_the_notes(tmp_path):
    for seed in (0, 1):
        late = {"diverged_at_step": 1500} if seed == 1 else {}
        (tmp_path / f"ladder-a-seed{seed}.json").write_text(json.dumps({**_record("a", seed, 29.0, 30.0), **late}))
    ladder.collect([tmp_path], tmp_path / "results")
    md = (tmp_path / "results" / "ladder.md").read_text()
    assert "- Diverged after a finite checkpoint (stopped there; the best earlier checkpoint is measured and in the " \
           "means): a seed 1 at step 1500" in md


def test_held_aside_images_are_the_ones_fused_validates_on(monkeypatch):
    # 12 images, the last 8 held aside; i3 is a copy of the held i10, so held_aside trains on i0-i2 only
    rng = np.random.default_rng(0)
    images = [rng.random((16, 16), dtype=np.float32) for _ in range(12)]
    images[3] = images[10].copy()
    names = [f"i{k}" for k in range(12)]

    class Sampler:  # no JAX: the gradient batch is not what this test is about
        def __init__(self, *args, **kwargs):
            pass

        def batch(self, step):
            return np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1))

    monkeypatch.setattr("deconvlab.data.load_dataset", lambda *a, **k: SimpleNamespace(images=images, names=names))
    monkeypatch.setattr("deconvlab.sampler.PatchSampler", Sampler)
    data = ladder._load_data(SimpleNamespace(train_limit=None, test_limit=None, patch=8, batch=2))
    assert len(data["train"]) == 3
    assert data["held_names"] == names[4:]  # not i3, the training-set copy that images[len(train):] took in
    assert all(np.array_equal(a, b) for a, b in zip(data["held"], images[4:], strict=True))


def test_unet_recipe_reads_a_curve_with_a_diverged_point():
    # deconvlab.fused writes None for a non-finite validation PSNR; max() over such a curve raised TypeError
    curve = [{"step": 1000, "val_psnr": 27.5}, {"step": 2000, "val_psnr": None}, {"step": 3000, "val_psnr": 28.1}]
    training = {"steps": 3000, "batch": 8, "patch": 64, "train_seconds": 9.0, "best_val_psnr": 28.1, "curve": curve}
    card = {"id": "s25-ema", "params": 1, "macs_per_pixel": 1, "training": training}
    row = unet_recipe.row(card)
    assert row["best_step"] == 3000 and row["curve"][1] == [2000, None]


def test_resolution_runs_left_out_are_named(tmp_path):
    # collect_resolution dropped skipped runs and runs without a gap silently: the table's seeds simply shrank
    runs = Path(ladder.__file__).parent / "results" / "ladder_runs"
    for f in sorted(runs.glob("res-p*-e-seed*.json")):
        (tmp_path / f.name).write_text(f.read_text())
    assert ladder.collect_resolution([tmp_path], tmp_path / "a") and "left_out" not in json.loads(
        (tmp_path / "a" / "resolution.json").read_text())  # the committed runs: nothing left out
    # seed 0 finished at patch 25 and 50: its skip at 100 is still a run left out
    (tmp_path / "res-p100-e-seed0.skipped.json").write_text(json.dumps(
        {"rung": "e", "seed": 0, "skipped": True, "train_images": 392, "patch": 100, "reason": "deadline"}))
    (tmp_path / "res-p100-e-seed0.json").unlink()
    record = json.loads((tmp_path / "res-p100-e-seed2.json").read_text())
    (tmp_path / "res-p100-e-seed2.json").write_text(json.dumps(dict(record, gap_db=None)))
    summary = ladder.collect_resolution([tmp_path], tmp_path / "b")
    assert summary["left_out"] == ["e seed 0 patch 100", "e seed 2 patch 100"]
    assert [row["seeds"] for row in summary["table"]][-1] == [1]
    md = (tmp_path / "b" / "resolution.md").read_text()
    assert md.rstrip().endswith("Left out (skipped, failed or without a gap): e seed 0 patch 100, e seed 2 patch 100")
    assert "(2 x pooled std none: one seed): **not distinguishable**" in md  # it raised a TypeError on one seed
