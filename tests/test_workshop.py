"""The generated pages stay true: workshop timings/agendas and the results table match what the scripts make now."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_figures  # noqa: E402
import make_workshop  # noqa: E402


def test_workshop_tables_match_the_notebooks_and_measurements():
    for name, text in make_workshop.generate().items():
        path = make_workshop.OUT / name
        assert path.is_file() and path.read_text(encoding="utf-8") == text, \
            f"book/workshop/_generated/{name} is stale: run `make workshop`"


def test_agendas_fit_their_time():
    for key in make_workshop.AGENDAS:
        text = (make_workshop.OUT / f"{key}.md").read_text(encoding="utf-8")
        assert "(fits)" in text, f"{key}: the agenda is longer than planned"


def test_results_table_and_readme_match_the_cards():
    from deconvlab import weights

    cards = weights.list_cards(make_figures.ROOT / "data" / "weights")
    table = make_figures.TABLE_PATH.read_text(encoding="utf-8")
    expected = make_figures.render_table(cards) if cards else make_figures.PENDING
    assert table == expected, "book/_generated/model_cards.md is stale: run `make figures`"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(make_figures.README_START, 1)[1].split(make_figures.README_END, 1)[0]
    copy = ROOT / "_build" / "README.check.md"
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(f"{make_figures.README_START}\n{make_figures.README_END}\n", encoding="utf-8")
    make_figures.update_readme(copy, expected)
    assert copy.read_text(encoding="utf-8").split(make_figures.README_START, 1)[1].split(
        make_figures.README_END, 1)[0] == section, "README.md's results section is stale: run `make figures`"
    copy.unlink()


def test_results_figure_is_drawn_from_the_cards_when_they_exist():
    from PIL import Image

    from deconvlab import weights

    with Image.open(make_figures.FIGURE_PATH) as img:
        height = img.height
    pending = not weights.list_cards(ROOT / "data" / "weights")
    assert (height < 300) == pending, "book/_static/results.png does not match data/weights: run `make figures`"


@pytest.mark.slow
def test_gpu_estimates_from_an_h100_card(tmp_path, monkeypatch):
    """The T4 estimate scales a card's H100 wall time by the peak ratio (same MFU on both cards)."""
    from deconvlab import models, weights

    model = models.red_net(channels=1, depth=2, width=8)
    card = weights.save_pretrained(model, {"task": "denoise", "sigma": 25, "profile": "paper",
                                           "hardware": "NVIDIA H100 80GB HBM3", "wall_time_s": 60.0}, tmp_path)
    history = {"meta": {"patch_size": 50, "batch_size": 128, "steps_done": 1000}}
    (tmp_path / f"{card['id']}{weights.HISTORY_SUFFIX}").write_text(json.dumps(history))
    monkeypatch.setattr(make_workshop, "SPEED_GPU", tmp_path / "missing.json")
    (run,) = make_workshop.gpu_runs(tmp_path)
    assert run["steps"] == 1000 and run["batch"] == 128 and run["patch"] == 50
    ratio = make_workshop.H100_DATASHEET_TFLOPS / make_workshop.T4_PEAK_TFLOPS
    assert run["t4_s"] == pytest.approx(60.0 * ratio)
    assert run["tflops"] == pytest.approx(run["flops"] / 60.0 / 1e12)
    cell = make_workshop.workshop_cell_t4([run])
    assert cell is not None and cell["t4_s"] > 0 and cell["mfu"] == pytest.approx(run["mfu"])
    shutil.rmtree(tmp_path)
