"""The GPU host's fused training path, run tiny on the CPU: held-aside split, schedule, budget, a valid card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from deconvlab import fused, weights  # noqa: E402

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


def _run(tmp_path, *args):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
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
