"""benchmarks/colour_denoise.py --methods: the named methods are measured again, the others copied from the run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
needs_cbsd68 = pytest.mark.skipif(not os.environ.get("DECONVLAB_DATA"), reason="needs CBSD68: set DECONVLAB_DATA")


@pytest.fixture
def colour_denoise():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import colour_denoise

    yield colour_denoise
    sys.path.remove(str(REPO / "benchmarks"))


def _first_image_of_the_committed_run() -> dict:
    committed = json.loads((REPO / "benchmarks/results/colour_denoise.json").read_text())
    return {"meta": {**committed["meta"], "names": committed["meta"]["names"][:1]},
            "per_image": {m: {s: v[:1] for s, v in by.items()} for m, by in committed["per_image"].items()}}


@needs_cbsd68
def test_one_method_measured_again_matches_the_committed_run_and_the_rest_is_copied(tmp_path, colour_denoise):
    first = _first_image_of_the_committed_run()
    (tmp_path / "colour_denoise.json").write_text(json.dumps(first))
    argv = ["--images", "1", "--out", str(tmp_path), "--methods", "sigma RGB", "sigma RGB"]
    assert colour_denoise.main(argv) == 0
    result = json.loads((tmp_path / "colour_denoise.json").read_text())
    for method, by_sigma in first["per_image"].items():
        for s, committed in by_sigma.items():
            # measured again (once, though named twice) with the shipped cards: the committed numbers
            expected = pytest.approx(committed, abs=0.01) if method == "sigma RGB" else committed
            assert result["per_image"][method][s] == expected, (method, s)
    meta = result["meta"]
    assert list(meta["seconds_per_method"]) == ["sigma RGB"]  # this run's timings only
    # provenance travels with a copy of a copy: CBM3D still names the run that measured it, and its seconds
    assert meta["copied"]["CBM3D"] == first["meta"]["copied"]["CBM3D"]
    assert meta["copied"]["blind RGB"]["seconds_per_method"] == first["meta"]["seconds_per_method"]
    report = (tmp_path / "colour_denoise.md").read_text()
    assert "CBM3D: copied from the run of 2026-12-03" in report
    cbm3d_seconds = first["meta"]["copied"]["CBM3D"]["seconds_per_method"]["CBM3D"]
    assert f" | {cbm3d_seconds:.0f} |" in next(line for line in report.splitlines() if line.startswith("| CBM3D"))


def test_copying_without_a_committed_run_is_refused_in_one_line(tmp_path, colour_denoise, capsys):
    assert colour_denoise.main(["--images", "1", "--out", str(tmp_path), "--methods", "CBM3D"]) == 1
    assert "cannot copy blind RGB, blind YCbCr, sigma RGB" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@needs_cbsd68
def test_copying_from_a_run_on_other_images_is_refused(tmp_path, colour_denoise, capsys):
    other = _first_image_of_the_committed_run()
    other["meta"]["names"] = ["not-a-cbsd68-image"]
    (tmp_path / "colour_denoise.json").write_text(before := json.dumps(other))
    assert colour_denoise.main(["--images", "1", "--out", str(tmp_path), "--methods", "CBM3D"]) == 1
    assert "other images" in capsys.readouterr().err
    assert (tmp_path / "colour_denoise.json").read_text() == before  # nothing overwritten


def test_a_run_that_records_no_time_for_a_copied_method_is_refused_before_measuring(tmp_path, colour_denoise,
                                                                                   capsys):
    first = _first_image_of_the_committed_run()
    del first["meta"]["copied"]["CBM3D"]["seconds_per_method"]
    (tmp_path / "colour_denoise.json").write_text(json.dumps(first))
    argv = ["--images", "1", "--out", str(tmp_path), "--methods", "blind RGB", "blind YCbCr", "sigma RGB"]
    assert colour_denoise.main(argv) == 1
    assert "cannot copy CBM3D: the committed run records no values or time for it" in capsys.readouterr().err


def test_the_committed_report_is_what_the_script_writes_from_the_committed_json(colour_denoise):
    result = json.loads((REPO / "benchmarks/results/colour_denoise.json").read_text())
    assert colour_denoise.markdown(result) == (REPO / "benchmarks/results/colour_denoise.md").read_text()
