"""The results page says what the committed data say: the per-task tables, the card table and the figure are what
``tools/make_figures.py`` makes from ``data/weights/*.json`` and ``benchmarks/results/quality.json``, every number in
the tables is checked here against those files by a parser of its own, and the figure's text is readable.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from deconvlab import claims, models, report, weights

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_figures  # noqa: E402

CARDS = weights.list_cards(ROOT / "data" / "weights")
pytestmark = pytest.mark.skipif(not CARDS, reason="no shipped model cards yet (results pending)")
DATASETS = {"BSD68": "bsd68", "Set12": "set12", "Set5": "set5", "Set14": "set14"}


@pytest.fixture(scope="module")
def quality():
    return make_figures.load_quality()


@pytest.fixture(scope="module")
def generated():
    return make_figures.RESULTS_PATH.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- the files


def test_generated_tables_are_what_the_data_make_now(quality, generated):
    assert generated == make_figures.render_results(CARDS, quality), \
        "book/_generated/results_tables.md is stale: run `make figures`"
    assert make_figures.TABLE_PATH.read_text(encoding="utf-8") == make_figures.render_table(CARDS), \
        "book/_generated/model_cards.md is stale: run `make figures`"


def test_results_page_includes_the_tables_and_types_no_number():
    page = (ROOT / "book" / "results.md").read_text(encoding="utf-8")
    for name in ("_generated/results_tables.md", "_generated/model_cards.md", "_static/results.png"):
        assert name in page, f"book/results.md does not show {name}"
    prose = re.sub(r"```.*?```", "", page, flags=re.S)  # directives, code blocks
    prose = re.sub(r"\$[^$]*\$", "", prose)  # formulas
    typed = re.findall(r"\d+\.\d+|\d+(?:\.\d+)?\s*(?:dB|MACs|min\b|%)", prose)
    assert not typed, f"book/results.md types numbers that belong in the generated tables: {typed}"


# ---------------------------------------------------------------------------------------------- every number


def _tables(text):
    """(section, caption, header, rows) for every Markdown table of the generated file."""
    section = caption = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            section = line[4:]
        elif line.startswith("**"):
            caption = line
        elif line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|:--"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            yield section, caption, header, rows
            continue
        i += 1


def _card_psnr(card_id, dataset, setting):
    card = next(c for c in CARDS if c["id"] == card_id)
    for m in card["metrics"]:
        if m.get("limit") or m["dataset"] != dataset:
            continue
        value = m.get("sigma", card.get("sigma")) if card["task"] == "denoise" else m.get("scale")
        if setting is None or (value is not None and float(value) == float(setting)):
            return m["psnr"]
    return None


def _anchor(method, task, setting, dataset):
    key = "sigma" if task == "denoise" else "scale"
    found = [a["psnr"] for a in weights.ANCHORS if a["method"] == method and a["task"] == task
             and a[key] == setting and a["dataset"] == dataset]
    return found[0] if found else None


def _quality(quality, task, dataset, method_prefix, setting=None):
    rows = [r for r in quality["rows"] if r["task"] == task and r["dataset"] == dataset and r["source"] == "measured"
            and r["method"].replace("Richardson-Lucy", "Richardson–Lucy").startswith(method_prefix)
            and (setting is None or r["setting"] == setting)]
    assert len(rows) == 1, (task, dataset, method_prefix, setting)
    return rows[0]


def _num(cell):
    return None if cell in ("—", "") else float(cell.replace(",", ""))


def test_every_psnr_and_macs_in_the_tables_comes_from_the_cards_or_the_benchmark(quality, generated):
    checked = {"card": 0, "published": 0, "measured": 0, "difference": 0}
    seen_settings = set()
    for section, caption, header, rows in _tables(generated):
        task = "denoise" if "denoising" in section else "sr" if "Super-resolution" in section else "deblur"
        blind = caption.startswith("**Blind")
        setting = None
        if task == "denoise" and not blind:
            setting = float(re.search(r"σ = (\d+)", caption).group(1))
        elif task == "sr":
            setting = int(re.search(r"×(\d+)", caption).group(1))
        seen_settings.add((task, "blind" if blind else setting))
        value_cols = header[2:]
        shown = {}
        for row in rows:
            label, macs, cells = row[0], row[1], row[2:]
            if "−" in label:  # a difference row: "RED-Net − DnCNN-S[, BSD68]"
                continue
            card_id = re.search(r"(?<!})`([\w.-]+)`", label)  # a card id, not a {cite:p}`key`
            where = label.rsplit(", ", 1)[1] if blind else None
            for col, cell in zip(value_cols, cells, strict=True):
                dataset = DATASETS[where] if blind else DATASETS[col]
                col_setting = float(col.removeprefix("σ=")) if blind else setting
                if card_id:
                    expected = _card_psnr(card_id.group(1), dataset, col_setting)
                    kind = "card"
                elif "(measured)" in label:
                    prefix = label.split(" {cite")[0].split(",")[0].split(" (")[0]
                    sr_setting = f"x{setting}" if task == "sr" else None
                    expected = _quality(quality, task, dataset, prefix, sr_setting)["psnr"]
                    kind = "measured"
                else:
                    method = label.split(" {cite")[0].split(" (")[0].split(",")[0]
                    expected = _anchor(method, task, col_setting, dataset)
                    kind = "published"
                assert (_num(cell) is None) == (expected is None), (caption, label, col, cell)
                if expected is not None:
                    assert _num(cell) == round(expected, 2), (caption, label, col, cell, expected)
                    checked[kind] += 1
                shown[(label.split(",")[0] if blind else label, col, where)] = _num(cell)
            # multiply-adds per pixel: the card's record, or the published network built from its description
            if card_id:
                card = next(c for c in CARDS if c["id"] == card_id.group(1))
                assert _num(macs) == round(weights.card_macs(card, setting if task == "sr" else None)), label
            elif label.startswith(("DnCNN-S", "DnCNN-B", "VDSR", "FSRCNN")):
                name = label.split(" ")[0]
                net = (models.dncnn() if name == "DnCNN-S" else models.dncnn(depth=20) if name == "DnCNN-B"
                       else models.plain_cnn(depth=20, residual=True) if name == "VDSR"
                       else models.fsrcnn(scale=setting))
                assert _num(macs) == round(models.macs_per_pixel(net)), label
            else:
                assert macs == "—", label
        # difference rows: the shown numbers subtracted, and the verdict by the book's rule
        for row in rows:
            label, cells = row[0], row[2:]
            if "−" not in label:
                continue
            left, right = (part.strip() for part in label.split(",")[0].split("−"))
            where = label.rsplit(", ", 1)[1] if blind else None
            ours = next(k for k in shown if k[0].startswith(left + " `"))[0]
            ref = next(k for k in shown if k[0].startswith(right))[0]
            for col, cell in zip(value_cols, cells, strict=True):
                a, b = shown.get((ours, col, where)), shown.get((ref, col, where))
                if a is None or b is None:
                    assert cell == "", (caption, label, col)
                    continue
                diff = round(a - b, 2)
                card = next(c for c in CARDS if f"`{c['id']}`" in ours)
                spread = claims.card_spread(card) or 0.0  # the card recipe's own seed spread, where measured
                verdict = ("tie" if abs(diff) < report.TIE_DB - 1e-9 or abs(diff) <= spread
                           else "ahead" if diff > 0 else "behind")
                assert cell == f"{diff:+.2f} {verdict}", (caption, label, col, cell)
                checked["difference"] += 1
    # every shipped setting has its table
    expected_settings = {("denoise", float(c["sigma"])) for c in CARDS if c["task"] == "denoise" and c.get("sigma")}
    expected_settings |= {("denoise", "blind") for c in CARDS if c.get("sigma_range")}
    expected_settings |= {("sr", s) for c in CARDS if c["task"] == "sr" for s in weights.card_scales(c)}
    expected_settings |= {("deblur", None) for c in CARDS if c["task"] == "deblur"}
    assert seen_settings == expected_settings
    assert all(n > 0 for n in checked.values()), checked


def test_deblurring_is_compared_with_wiener_and_richardson_lucy_on_whole_test_sets(quality, generated):
    table = generated.split("### Deblurring", 1)[1]
    card = next(c for c in CARDS if c["task"] == "deblur")
    for dataset in ("bsd68", "set12"):
        full = next(m for m in card["metrics"] if m["dataset"] == dataset and not m.get("limit"))
        for prefix in ("ours:", "Wiener", "Richardson–Lucy"):
            row = _quality(quality, "deblur", dataset, prefix) if prefix != "ours:" else next(
                r for r in quality["rows"] if r["task"] == "deblur" and r["dataset"] == dataset
                and r["method"].startswith("ours:"))
            assert row["images"] == full["protocol"]["images"] and not row["note"], (dataset, prefix)
        for method in ("Wiener", "Richardson–Lucy"):
            other = _quality(quality, "deblur", dataset, method)["psnr"]
            diff = round(round(full["psnr"], 2) - round(other, 2), 2)
            assert f"{report.signed_difference(diff)}" in table, (dataset, method)
    for key in ("wiener1949", "richardson1972", "lucy1974"):
        assert key in table, key


def test_no_subset_rows_in_the_comparison_tables(quality, generated):
    # BM3D measured on the first images only (quality.json notes) must not sit beside whole-set numbers
    for r in quality["rows"]:
        if r.get("note") and r["source"] == "measured":
            assert r["method"] not in generated, r["method"]
    assert "imgs" not in generated and "first image" not in generated


# ---------------------------------------------------------------------------------------------- the figure


def _fake_examples():
    rng = np.random.default_rng(0)
    crop = rng.random((make_figures.CROP, make_figures.CROP)).astype(np.float32)
    titles = ("blurred + noise\n27.31 dB\nSSIM 0.758", "denoise-unet-sigma50\n32.61 dB\nSSIM 0.851",
              "reference\nBSD68\nbutterfly_GT")
    return {task: {"panels": [(t, crop) for t in titles]} for task, *_ in make_figures.EXAMPLES}


def test_figure_text_is_readable_at_the_column_width_and_marks_ties_by_the_rule(quality, tmp_path):
    figure_cards = [c for c in CARDS if c["id"] in make_figures.FIGURE_CARDS]
    fig = make_figures.build_figure(figure_cards, quality, _fake_examples())
    path = tmp_path / "results.png"
    from deconvlab import plots

    with plots.style():
        fig.savefig(path, dpi=make_figures.FIGURE_DPI)
    width_px = struct.unpack(">II", path.read_bytes()[16:24])[0]
    scale = make_figures.COLUMN_PX / width_px  # the page shows the PNG at the column's width
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
             if t.get_visible() and t.get_text().strip()]
    assert len(texts) > 30
    smallest = min(t.get_fontsize() for t in texts)
    assert smallest * make_figures.FIGURE_DPI / 72 * scale >= make_figures.MIN_TEXT_PX, \
        f"{smallest} pt is {smallest * make_figures.FIGURE_DPI / 72 * scale:.1f} px at {make_figures.COLUMN_PX} px"
    # the committed figure is laid out the same way (it is no wider, so its text is no smaller)
    committed = struct.unpack(">II", make_figures.FIGURE_PATH.read_bytes()[16:24])[0]
    assert committed <= width_px + 8, "book/_static/results.png is wider than the layout allows: run `make figures`"
    # every difference is labelled by the rule, ties included; no star markers
    labels = {t.get_text() for t in texts}
    points = make_figures.difference_points(figure_cards, quality)
    for task, (_, items) in points.items():
        for _, diff in items:
            assert report.signed_difference(diff, make_figures.task_spread(figure_cards, task)) in labels
    assert any(report.difference_verdict(d) == "tie" for _, items in points.values() for _, d in items)
    # the figure shows the RED-Net denoisers: their verdicts use that recipe's own three-seed spread
    assert make_figures.task_spread(figure_cards, "denoise") == pytest.approx(claims.recipe_spread("red_net"))
    assert not [ln for ln in fig.findobj(lambda a: hasattr(a, "get_marker")) if ln.get_marker() == "*"]


def test_post_upsampling_sr_cards_get_chapter_5s_spread():
    # chapter 5's bar for post - pre: twice the Set5 x4 seed std of the x4 card's recipe (three seeds)
    runs = claims.load_results("card_seeds_sr_x4_post")
    post, pre = (weights.read_card(i) for i in ("sr-x4-post", "sr-x2-3-4"))
    assert claims.card_spread(post) == pytest.approx(2 * np.std(runs["set5_x4"], ddof=1), abs=1e-3)
    assert claims.card_spread(pre) is None  # the pre-upsampling recipe was trained once


def test_the_card_table_counts_the_cards_trained_on_each_gpu():
    def card(i, hardware):
        return {"id": f"c{i}", "task": "denoise", "profile": "paper", "hardware": hardware, "architecture": {
            "builder": "red_net", "kwargs": {}}, "params": 1, "wall_time_s": 60.0, "data": {"validation": "x"}}

    text = make_figures.render_table([card(0, "H200"), card(1, "H100"), card(2, "H200"), card(3, "A100")])
    assert "Cards: 4, trained 2 with the paper profile on H200, 1 with the paper profile on H100 and 1 with the " \
           "paper profile on A100;" in text
    assert "Cards: 1, trained 1 with the paper profile on H200;" in make_figures.render_table([card(0, "H200")])


def test_checkpoint_column_names_the_set_that_chose_it_as_the_book_writes_it():
    # deconvlab train's cards write "held-aside train400 ...", the fused trainer's "held-aside Train400 ..."
    assert {make_figures._chosen_on(c) for c in weights.list_cards()} == {"Train400 (held out)", "T91 (held out)"}
    assert make_figures._chosen_on({"data": {"validation": "held-aside train400 test_400"}}) == "Train400 (held out)"
    assert make_figures._chosen_on({"data": {"validation": "set5"}}) == "Set5 (test)"
