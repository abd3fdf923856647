"""The generated pages stay true: workshop timings/agendas and the results table match what the scripts make now."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
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


@pytest.fixture(scope="module")
def chapters():
    return make_workshop.read_chapters()


def test_agendas_fit_their_time(chapters):
    for key in make_workshop.AGENDAS:
        agenda = make_workshop.plan_agenda(key, chapters)
        assert agenda.fits, f"{key}: {agenda.total_min} min planned in {agenda.limit_min}"


def test_every_chapter_states_its_time_to_learn(chapters):
    for stem, ch in chapters.items():
        if stem != "00_setup":
            assert ch.learn_min, f"{stem}: no '**Time to learn**: about N minutes' in its Prerequisites"


def test_no_chapter_slot_of_the_day_is_shorter_than_its_estimate(chapters):
    agenda = make_workshop.plan_agenda("agenda_day", chapters)
    slots = {s.chapter.stem: s for s in agenda.slots if s.chapter is not None}
    assert set(slots) == set(chapters), "the one-day agenda leaves out a chapter"
    for stem, ch in chapters.items():
        slot = slots[stem]
        estimate = (ch.learn_min or 0) + slot.exercise_min + slot.run_s / 60 + slot.block.fixed_min
        assert slot.minutes >= estimate >= (ch.learn_min or 0), \
            f"{stem}: slot {slot.minutes} min, estimate {estimate:.1f} min (time to learn {ch.learn_min})"
        assert slot.run_s >= (ch.total_s or 0) - sum(e.solution_s for e in ch.exercises) - 1e-6, \
            f"{stem}: the slot does not run the whole notebook"


def test_one_day_agenda_leaves_at_most_a_tenth_unallocated(chapters):
    agenda = make_workshop.plan_agenda("agenda_day", chapters)
    assert 0 <= agenda.unallocated_min <= make_workshop.UNALLOCATED_MAX * agenda.limit_min, \
        f"{agenda.unallocated_min} of {agenda.limit_min} minutes unallocated"


def test_time_to_learn_is_read_as_the_chapters_state_it():
    read = make_workshop.time_to_learn
    assert read("**Time to learn**: about 45 minutes. In the `quick` profile") == 45
    assert read("**Time to learn**: about an hour to read; a few minutes to run") == 60
    assert read("**Time to learn**: 1.5 hours") == 90
    assert read("**Time to learn**: about an hour and a half") == 90
    assert read("Time to learn is not stated here") is None


def test_training_runs_are_counted_in_loops_functions_and_train_on_batch():
    """Every training call counts, as often as the loops around it run: the regex count found 1 per cell."""
    cells = [
        'MODELS = ("plain", "skip", "fuse")\nsizes = [2, 8]\n',
        "for name in MODELS:\n    for n in sizes:\n        dl.train.train(build(name), data(n))\n",
        "histories = {k: m.fit(x, y) for k, m in {'a': a, 'b': b}.items()}\n",
        "def finetune(model, steps):\n    for _ in range(steps):\n        model.train_on_batch(x, y)\n"
        "        disc.train_on_batch(x, z)\n    return model\n",
        "for w in (0.0, 0.1):\n    finetune(copy(g), n_steps)\n",
        "def probe(model, steps=3):\n    model.train_on_batch(x, y)\n    for _ in range(steps):\n"
        "        model.train_on_batch(x, y)\n",
        "rates = [probe(m) for m in (a, b, c, d)]\n",
        "def helper():\n    return model.fit(x, y)\n",  # defined, never called: trains nothing
        "if n_gpus < 2:\n    print('skipped')\nelse:\n    model.fit(x, y)\n",
        "for batch in loader:\n    model.fit(batch)\n",  # unknown length: counted once
        "%env DECONVLAB_PROFILE=quick\n!python -m deconvlab train --task denoise\n",
        "def one_step():\n    model.train_on_batch(x, y)\n",
        "for _ in range(50):\n    one_step()\nfor _ in range(n_steps):\n    one_step()\n",
        "model.train_on_batch(x, y)\nfor _ in range(9):\n    model.train_on_batch(x, y)\n",
    ]
    counter = make_workshop.TrainingCounter()
    per_cell = [counter.count(c) for c in cells]
    Run = make_workshop.Run
    assert per_cell[0] == [] and per_cell[7] == []
    assert per_cell[1] == [Run(6)]  # 3 models x 2 sizes
    assert per_cell[2] == [Run(2)]  # a comprehension over a dict literal
    assert per_cell[3] == []  # defining a training function trains nothing
    assert per_cell[4] == [Run(2)]  # two fine-tunes, each one run of unknown step count (both steps inside)
    assert per_cell[5] == []
    assert per_cell[6] == [Run(4, steps=4)]  # 4 probes of 1 + 3 literal steps each
    assert per_cell[8] == [Run(1)]
    assert per_cell[9] == [Run(1)]
    assert per_cell[10] == [Run(1)]
    assert per_cell[11] == []
    assert per_cell[12] == [Run(1, steps=50), Run(1)]  # a loop of unknown length over steps: a whole run
    assert per_cell[13] == [Run(1, steps=10)]  # the steps of one cell form one run
    assert make_workshop.total_runs(r for runs in per_cell for r in runs) == 20


def test_runs_given_epochs_and_steps_from_the_profile_count_their_steps():
    """Chapter 5 shortens its runs (``profile.train_steps // 2``): they cost their share of a workshop run."""
    from deconvlab import config

    workshop = config.get_profile("workshop")
    cells = [
        "sr_steps, depth = profile.train_steps // 2, profile.depth - 2\n",
        "for up in ('transposed', 'resize'):\n"
        "    dl.train.train(m, p, epochs=1, steps_per_epoch=sr_steps)\n",
        "dl.train.train(m, p, epochs=profile.epochs, steps_per_epoch=profile.steps_per_epoch)\n",
        "model.fit(p, epochs=2, steps_per_epoch=100)\n",
        "model.fit(p, epochs=1)\n",  # the steps come from the data: a whole run
        "dl.train.train(m, p, epochs=1, steps_per_epoch=n_unknown)\n",
        "dl.train.train(m, p, profile=profile, steps_per_epoch=profile.steps_per_epoch // 2)\n",
        "model.fit(p, steps_per_epoch=100)\n",  # Keras's fit trains one epoch by default, not the profile's
    ]
    counter = make_workshop.TrainingCounter()
    per_cell = [counter.count(c) for c in cells]
    Run = make_workshop.Run
    assert per_cell[1] == [Run(2, steps=workshop.train_steps // 2)]
    assert per_cell[2] == [Run(1, steps=workshop.epochs * workshop.steps_per_epoch)]
    assert per_cell[3] == [Run(1, steps=200)]
    assert per_cell[4] == [Run(1)] and per_cell[5] == [Run(1)]
    assert per_cell[6] == [Run(1, steps=workshop.epochs * (workshop.steps_per_epoch // 2))]
    assert per_cell[7] == [Run(1)]
    assert make_workshop.runs_t4_s(per_cell[1], {"t4_s": 100.0, "steps": workshop.train_steps}) == pytest.approx(
        2 * 100 * (workshop.train_steps // 2) / workshop.train_steps)


def test_run_estimate_weighs_literal_step_counts():
    cell_t4 = {"t4_s": 120.0, "steps": 3000}
    runs = [make_workshop.Run(2), make_workshop.Run(3, steps=30)]
    assert make_workshop.runs_t4_s(runs, cell_t4) == pytest.approx(2 * 120 + 3 * 120 * 30 / 3000)
    assert make_workshop.runs_t4_s(runs, None) is None and make_workshop.runs_t4_s([], None) == 0.0


def _timed(cell, seconds):
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z",
                                  "shell.execute_reply": f"2026-01-01T00:00:{seconds:02d}Z"}
    return cell


def test_exercises_are_counted_from_directives_and_solution_blocks(tmp_path):
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("# A chapter"),
        v4.new_markdown_cell("## Prerequisites\n\n**Time to learn**: about 20 minutes."),
        v4.new_markdown_cell("## 1. Teaching " + "word " * 300),
        _timed(v4.new_code_cell("model.fit(x, y)"), 30),
        v4.new_markdown_cell("## 2. More " + "word " * 100),
        _timed(v4.new_code_cell("y = 1"), 2),
        v4.new_markdown_cell("## Exercises"),
        v4.new_markdown_cell(":::{exercise} First\n:label: x-1\n\nDo it.\n:::"),
        v4.new_markdown_cell("```{solution-start} x-1\n:class: dropdown\n```"),
        _timed(v4.new_code_cell("for s in (1, 2, 3):\n    model.fit(x, y)", metadata={"tags": ["solution"]}), 9),
        _timed(v4.new_code_cell("print(2)", metadata={"tags": ["solution"]}), 1),
        v4.new_markdown_cell("An explanation."),
        v4.new_markdown_cell("```{solution-end}\n```"),
        v4.new_markdown_cell(":::{exercise} Second, no answer shipped\n:label: x-2\n:::"),
    ]
    nb = v4.new_notebook(cells=cells, metadata={"deconvlab": {"seconds": 45.0, "device": "CPU"}})
    path = tmp_path / "09_test.ipynb"
    nbformat.write(nb, path)
    ch = make_workshop.read_chapter(path)
    assert ch.learn_min == 20
    assert [(e.label, e.title, e.solution_s, make_workshop.total_runs(e.runs)) for e in ch.exercises] == \
        [("x-1", "First", 10.0, 3), ("x-2", "Second, no answer shipped", 0.0, 0)]
    first, second = (s for s in ch.sections if s.title.startswith(("1.", "2.")))
    assert ch.section_learn_min(first) / ch.section_learn_min(second) == pytest.approx(first.words / second.words)
    assert first.words > 2.5 * second.words
    assert sum(ch.section_learn_min(s) for s in ch.sections) == pytest.approx(20)
    assert make_workshop.total_runs(ch.runs) == 1 and ch.overhead_s == pytest.approx(45 - 42)


def test_results_table_and_readme_match_the_cards():
    from deconvlab import weights

    cards = weights.list_cards(make_figures.ROOT / "data" / "weights")
    table = make_figures.TABLE_PATH.read_text(encoding="utf-8")
    expected = make_figures.render_table(cards) if cards else make_figures.PENDING
    assert table == expected, "book/_generated/model_cards.md is stale: run `make figures`"
    if cards:
        expected = make_figures.readme_section(cards, make_figures.load_quality())
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
