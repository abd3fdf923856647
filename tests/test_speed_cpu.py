"""benchmarks/speed_cpu.py without timing anything: its plan, its tiling arithmetic and its report."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_cpu.py"


@pytest.fixture(scope="module")
def speed_cpu():
    spec = importlib.util.spec_from_file_location("speed_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan_args(**kw):
    args = dict(sizes=[512, 3840], bm3d_sizes=[512, 1024], unet_tiles=[256, 512, 1024, 0], rednet_tiles=[256, 512, 0],
                rounds=3, repeats=2, small_max=512, whole_large=False, large_repeats={"unet": 0, "rednet": 0},
                optional_tiles={"unet": {0}, "rednet": {256}}, large_rounds={"unet": 2, "rednet": 1, "bm3d": 2})
    return argparse.Namespace(**dict(args, **kw))


def test_plan_interleaves_rounds_and_runs_large_images_once(speed_cpu):
    plan = speed_cpu.make_plan(plan_args())
    small = [s for s in plan if max(s["shape"]) <= 512]
    # tile 512 and "whole" are one configuration on a 512x512 image; each small one runs once per round
    keys = {speed_cpu.config_key(s) for s in small}
    assert keys == {("unet", (512, 512), 256), ("unet", (512, 512), 0), ("rednet", (512, 512), 256),
                    ("rednet", (512, 512), 0), ("bm3d", (512, 512), 0)}
    assert all(sum(speed_cpu.config_key(s) == k for s in small) == 3 for k in keys)
    firsts = [next(s["method"] for s in plan if s["round"] == r) for r in (1, 2, 3)]
    assert len(set(firsts)) > 1, "the order rotates between rounds"
    large = [(s["method"], s["tile"]) for s in plan if s["shape"] == (2160, 3840)]
    assert sorted(large) == [("rednet", 256), ("rednet", 512)] + 2 * [("unet", 256)] + 2 * [("unet", 512)] + 2 * [
        ("unet", 1024)]
    assert plan.index(next(s for s in plan if s["method"] == "unet" and s["tile"] == 1024)) < max(
        i for i, s in enumerate(plan) if s["method"] == "unet" and s["tile"] == 256), "the two runs are apart"
    assert not any(s["method"] == "bm3d" and s["shape"] == (2160, 3840) for s in plan), "no 4K BM3D"
    assert [s["optional"] for s in plan][-1] and not any(s["optional"] for s in plan[:-1])
    assert plan[-1]["method"] == "rednet" and plan[-1]["tile"] == 256, "RED-Net's tile 256 at 4K is optional"
    assert sum(s["shape"] == (1024, 1024) for s in plan) == 2


def test_tiling_counts_tiles_like_tile_predict(speed_cpu):
    from deconvlab import infer, models

    model = models.red_net(channels=1, depth=2, width=4)
    overlap = infer.default_overlap(model)
    assert speed_cpu.tiling(model, (100, 100), 128)["mode"] == "whole image"
    info = speed_cpu.tiling(model, (100, 150), 64)
    assert info["overlap"] == overlap and info["tiles"] == 2 * 3
    # 6 tiles of one shape go through in batches of 4, the last one padded to 4: 8 tiles of 64x64 for 100x150
    assert info["work_factor"] == pytest.approx(8 * 64 * 64 / (100 * 150))
    image = np.random.default_rng(0).random((100, 150), dtype=np.float32)
    tiled = infer.enhance(model, image, "denoise", tile=64, overlap=None)
    np.testing.assert_allclose(tiled, infer.enhance(model, image, "denoise", tile=0), atol=1e-5)


def test_report_ratios_and_goals(speed_cpu):
    def row(method, shape, tile, first, rss=1500.0, repeat=None):
        mpx = shape[0] * shape[1] / 1e6
        return {"method": method, "shape": list(shape), "tile": tile, "card": speed_cpu.CARDS.get(method),
                "megapixels": mpx, "first_s": first, "s_per_mpx": first / mpx, "n_first": 3, "overlap": 64,
                "repeat_s_per_mpx": repeat, "n_repeat": 0, "cpu_s_per_mpx": 2 * first / mpx, "peak_rss_mb": rss, "work_factor": 1.0,
                "macs_per_pixel": 1, "skipped": 0, "errors": []}

    k4 = (2160, 3840)
    rows = [row("unet", (512, 512), 0, 0.5), row("rednet", (512, 512), 0, 1.5), row("bm3d", (512, 512), 0, 10.0),
            row("bm3d", (1024, 1024), 0, 31.0), row("unet", k4, 512, 17.0), row("unet", k4, 1024, 15.0, rss=4000.0),
            row("rednet", k4, 512, 80.0, rss=3500.0)]
    ratios = speed_cpu.ratios(rows)
    by = {r["what"]: r["ratio"] for r in ratios}
    assert by["BM3D / U-Net, 512x512, same image"] == pytest.approx(20.0)
    assert by["RED-Net / U-Net, 3840x2160 (4K), same image"] == pytest.approx(80 / 15)  # fastest tile, any RSS
    assert any("not run at 4K" in w for w in by)
    best = speed_cpu.best_tiles(rows)
    assert best["unet 3840x2160 (4K)"]["tile"] == 512, "tile 1024 breaks the 2 GB goal"
    goals = speed_cpu.goals(rows, ratios, best)
    assert goals["peak RSS <= 2 GB at 4K"].endswith("met") and "NOT" not in goals["U-Net <= 5 s/Mpx at 3840x2160 (4K)"]
    meta = {"date": "d", "cpu": "c", "cores": 2, "tensorflow": "t", "keras": "k", "bm3d": "b", "image": "i",
            "load_average_start": 1.0, "load_average_end": 1.0, "wall_s": 1.0, "command": "x", "goals": goals}
    md = speed_cpu.render(meta, rows, ratios, best)
    assert "not run (too slow" in md and md.count("| U-Net |") == 4  # 3 rows + the whole-4K note
