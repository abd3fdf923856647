"""The time-to-quality collector's shortfall arithmetic (benchmarks/time_to_quality.py), on made-up runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import time_to_quality  # noqa: E402

RUN = {"tag": "r", "total_steps": 20_000, "measured_steps_per_s": 100.0, "train_seconds": 210.0,
       "precision": "mixed_bfloat16", "batch": 128, "patch": 50}


def test_shortfall_is_the_step_rate_that_fits_the_steps_into_180_s():
    # 200 s of steps + 10 s of overhead; 20,000 steps in the 170 s left need 117.6 steps/s.
    s = time_to_quality.shortfall(RUN)
    assert s["overhead_s"] == pytest.approx(10.0)
    assert s["steps_per_s_needed_at_least"] == pytest.approx(20_000 / 170)
    assert s["speedup_needed_at_least"] == pytest.approx(200 / 170)
    assert "mfu_needed_at_least" not in s


def test_shortfall_scales_the_matching_benchmark_row_mfu():
    bf16 = "mixed_bfloat16"
    rows = [{"mode": "fused_sampler", "precision": bf16, "batch": 64, "patch": 96, "mfu": 0.9},
            {"mode": "fused_sampler", "precision": "float32", "batch": 128, "patch": 50, "mfu": 0.2},
            {"mode": "fused_sampler", "precision": bf16, "batch": 128, "patch": 50, "mfu": 0.4},
            {"mode": "fit", "precision": bf16, "batch": 128, "patch": 50, "mfu": 0.3}]
    s = time_to_quality.shortfall(RUN, {"rows": rows, "mfu": 0.45})
    assert s["mfu_of_the_rate"] == 0.4
    assert s["mfu_needed_at_least"] == pytest.approx(0.4 * 200 / 170)
    assert s["best_mfu_measured"] == 0.45


def test_committed_result_carries_its_shortfall():
    result = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "time_to_quality.json").read_text())
    best = max(result["runs"], key=lambda r: r["final_checkpoint_bsd68_psnr"])
    assert result["time_to_29_27_s"] is None and result["shortfall"]["tag"] == best["tag"]
    assert result["shortfall"]["steps"] == best["total_steps"]
