"""Make the book's results figure and result tables from the shipped model cards and the committed benchmark.

Writes, from ``data/weights/*.json`` and ``benchmarks/results/quality.json`` and nothing else (no number is typed
in by hand):

* ``book/_static/results.png``: for each task with a shipped card, a crop of one test image (degraded input,
  the shipped model's output, the reference; PSNR/SSIM of the crop in the titles) and the difference of the card's
  test-set PSNR to a published reference network (DnCNN-S, DnCNN-B, VDSR; deblurring: Wiener and Richardson-Lucy),
  each marked by the book's rule (``deconvlab.report.difference_verdict``); every text is at least
  :data:`MIN_TEXT_PX` pixels high when the figure fills the book's column (:data:`COLUMN_PX`);
* ``book/_generated/results_tables.md``: one table per task setting (denoising at each sigma and blind,
  super-resolution at each scale, deblurring) with the published anchors, their citations, multiply-adds per
  pixel and the differences by the same rule;
* ``book/_generated/model_cards.md``: how each card was built and trained (one narrow row per card);
  ``book/results.md`` includes both;
* the section of ``README.md`` between ``<!-- results:start -->`` and ``<!-- results:end -->`` (the same tables
  with plain-text citations);
* with ``--screenshot PNG``: a small copy of a browser screenshot for the README (``book/_static/screenshot.png``).

Usage: ``python tools/make_figures.py`` (``make figures``). The example crops need the test images
(``DECONVLAB_DATA`` or a download); the tables and the README section only need the cards and the benchmark
(``--table-only``). Missing shipped cards are an error unless ``--allow-partial`` (for development against
cards trained with ``python -m deconvlab train ... --out /tmp/w``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# The shipped cards the book promises (ids of data/weights/<id>.json).
SHIPPED = ("deblur", "denoise-sigma15", "denoise-sigma25", "denoise-sigma50", "sr-x2-3-4",
           "denoise-unet-sigma15", "denoise-unet-sigma25", "denoise-unet-sigma50", "denoise-unet-blind",
           "sr-x2-post", "sr-x3-post", "sr-x4-post")
# The figure shows the RED-Net family, one model per setting (all nine would crowd the denoising panel);
# the table lists every card, and chapter 5 compares the U-Nets with RED-Net.
FIGURE_CARDS = ("deblur", "denoise-sigma15", "denoise-sigma25", "denoise-sigma50", "sr-x2-3-4")
# One example per task: (card selector, test set, file, sigma or scale). None of them is the "Lena" image.
EXAMPLES = (
    ("denoise", {"sigma": 25}, "bsd68", "test003"),
    ("sr", {"scale": 3}, "set5", "butterfly_GT"),
    ("deblur", {}, "set12", "02"),
)
CROP = 180  # side of the example crop: a multiple of every SR scale (2, 3, 4)
TASK_TITLES = {"denoise": "Gaussian denoising", "sr": "Super-resolution (Y channel)", "deblur": "Deblurring"}
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
TABLE_PATH = ROOT / "book" / "_generated" / "model_cards.md"
RESULTS_PATH = ROOT / "book" / "_generated" / "results_tables.md"
QUALITY_PATH = ROOT / "benchmarks" / "results" / "quality.json"
FIGURE_PATH = ROOT / "book" / "_static" / "results.png"
# The figure is shown at the width of the book's text column; at that width every text must be at least
# MIN_TEXT_PX pixels high (tests/test_make_figures.py checks the saved PNG).
COLUMN_PX = 640  # Chromium shows the figure 672 px wide in a 1280 px window (results page, 2026-12); a margin
MIN_TEXT_PX = 10
FIGURE_INCHES = 7.5  # figure width; crops and charts are laid out for it
DATASET_NAMES = {"bsd68": "BSD68", "set12": "Set12", "set5": "Set5", "set14": "Set14"}
# BibTeX keys (book/references.bib) of the methods whose published numbers the cards record.
CITE_KEYS = {"BM3D": "dabov2007bm3d", "DnCNN-S": "zhang2017dncnn", "DnCNN-B": "zhang2017dncnn",
             "VDSR": "kim2016vdsr", "FSRCNN": "dong2016fsrcnn", "LapSRN": "lai2017lapsrn", "Wiener": "wiener1949",
             "Richardson–Lucy": "richardson1972,lucy1974"}
# The published networks' architectures as the papers describe them, built with deconvlab.models to count their
# multiply-adds per output pixel (deconvlab.models.macs_per_pixel); FSRCNN is built for each scale.
PUBLISHED_NETWORKS = {"DnCNN-S": ("dncnn", {}), "DnCNN-B": ("dncnn", {"depth": 20}),
                      "VDSR": ("plain_cnn", {"depth": 20, "residual": True}), "FSRCNN": ("fsrcnn", {})}
# What the differences in a table are taken against: one published network of the same kind at every setting (at x4
# LapSRN scores higher than VDSR, but reports no x3).
REFERENCE = {"denoise": "DnCNN-S", "blind": "DnCNN-B", "sr": "VDSR"}
FAMILY = {"red_net": "RED-Net", "red_net_sr": "RED-Net", "unet": "U-Net"}


def load_cards(directory: Path, allow_partial: bool) -> list[dict[str, Any]]:
    """Every card in ``directory``; all of :data:`SHIPPED` must be there unless ``allow_partial``."""
    from deconvlab import weights

    cards = weights.list_cards(directory)
    missing = sorted(set(SHIPPED) - {str(c["id"]) for c in cards})
    if not cards or (missing and not allow_partial):
        raise SystemExit(f"make_figures: {directory} lacks the model cards {', '.join(missing) or SHIPPED}; "
                         "wait for the GPU training run (or pass --allow-partial while developing)")
    return cards


def _full_metrics(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card's full-test-set metrics (the CI subsets only if it has nothing else)."""
    metrics = list(card.get("metrics") or [])
    return [m for m in metrics if not m.get("limit")] or metrics


def _is_blind(card: Mapping[str, Any]) -> bool:
    return card["task"] == "denoise" and card.get("sigma") is None


def _entry_setting(entry: Mapping[str, Any], card: Mapping[str, Any]) -> float | int | None:
    """The sigma (denoising) or scale (super-resolution) a metric or anchor of a card was measured at."""
    if card["task"] == "denoise":
        sigma = entry.get("sigma", card.get("sigma"))
        return None if sigma is None else float(sigma)
    if card["task"] == "sr":
        scale = entry.get("scale", card.get("scale"))
        return None if scale is None else int(scale)
    return None


# ---------------------------------------------------------------------------------------------- the numbers


def load_quality(path: Path = QUALITY_PATH) -> dict[str, Any]:
    """The committed ``benchmarks/quality.py`` result (``meta`` and one row per task, data set, setting, method)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"make_figures: cannot read {path} ({exc}); git checkout benchmarks/results") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise SystemExit(f"make_figures: {path} is not a benchmarks/quality.py result (no 'rows')")
    return data


def collect(cards: Sequence[Mapping[str, Any]]) -> tuple[dict, dict]:
    """(ours, anchors) from the cards.

    ours: ``{(card id, dataset, setting): psnr}`` over full test sets; anchors: ``{(task, setting, method, dataset):
    (psnr, citation)}`` over every card's recorded anchors (two cards that disagree on one are an error).
    """
    ours, anchors = {}, {}
    for card in cards:
        for m in _full_metrics(card):
            if not m.get("limit"):
                ours[(card["id"], m["dataset"], _entry_setting(m, card))] = float(m["psnr"])
        for a in card.get("anchors") or []:
            key = (card["task"], _entry_setting(a, card), a["method"], a["dataset"])
            value = (float(a["psnr"]), str(a["citation"]))
            if anchors.setdefault(key, value) != value:
                raise SystemExit(f"make_figures: the cards disagree on the published {key}: {anchors[key]} vs {value}")
    return ours, anchors


def published_macs(method: str, scale: int | None = None) -> float | None:
    """Multiply-adds per output pixel of a published network (:data:`PUBLISHED_NETWORKS`), None for the others."""
    if method not in PUBLISHED_NETWORKS:
        return None
    from deconvlab import models

    builder, kwargs = PUBLISHED_NETWORKS[method]
    if builder == "fsrcnn":
        kwargs = {**kwargs, "scale": scale}
    return models.macs_per_pixel(models.build_model(builder, **kwargs))


def shown(psnr: float) -> float:
    """A PSNR as the tables show it (0.01 dB); differences are taken between shown numbers."""
    return round(float(psnr), 2)


def difference(ours: float, other: float) -> float:
    return round(shown(ours) - shown(other), 2)


# ---------------------------------------------------------------------------------------------- the tables


def _macs_text(macs: float | None) -> str:
    return "—" if macs is None else f"{macs:,.0f}"


def _psnr_text(value: float | None) -> str:
    return "—" if value is None else f"{shown(value):.2f}"


def _is_post_resnet(card: Mapping[str, Any]) -> bool:
    """A post-upsampling super-resolver with a residual-block body (not RED-Net's encoder-decoder)."""
    kw = card["architecture"].get("kwargs") or {}
    return card["architecture"]["builder"] == "red_net_sr" and kw.get("body") == "resblocks"


def _family(card: Mapping[str, Any]) -> str:
    if _is_post_resnet(card):
        return "post-upsampling ResNet"
    name = FAMILY.get(card["architecture"]["builder"], card["architecture"]["builder"])
    return f"blind {name}" if _is_blind(card) else name


def _ours_label(card: Mapping[str, Any]) -> str:
    return f"{_family(card)} `{card['id']}`"


def _anchor_label(method: str, cite: bool) -> str:
    if cite and method in CITE_KEYS:
        return f"{method} {{cite:p}}`{CITE_KEYS[method]}`"
    return f"{method} (published)"


def _citations(anchors: Mapping, task: str, settings: Sequence[Any], methods: Sequence[str]) -> str:
    found = sorted({cit for (t, s, m, _), (_, cit) in anchors.items() if t == task and s in settings and m in methods})
    return "Published numbers: " + "; ".join(found) + "." if found else ""


def _by_psnr(anchors: Mapping, task: str, setting: Any) -> list[str]:
    """The published methods of a setting, best first on the first test set (of :data:`DATASET_NAMES`) they share."""
    methods = {m for (t, s, m, _) in anchors if t == task and s == setting}
    first = next(d for d in DATASET_NAMES if any((task, setting, m, d) in anchors for m in methods))
    return sorted(methods, key=lambda m: (-(anchors.get((task, setting, m, first)) or (float("-inf"),))[0],
                                          m != REFERENCE.get(task), m))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    from deconvlab import report

    return report.grid_table(header, rows, align)


def denoise_table(cards, ours, anchors, sigma: float, cite: bool) -> tuple[str, list[str]]:
    """Denoising at one sigma: the per-sigma cards, the published anchors, differences to DnCNN-S."""
    from deconvlab import claims, report

    shipped = [c for c in cards if c["task"] == "denoise" and not _is_blind(c) and float(c["sigma"]) == sigma]
    methods = _by_psnr(anchors, "denoise", sigma)
    datasets = [d for d in DATASET_NAMES if any(k[1] == d and k[2] == sigma for k in ours if k[0] in
                                                 {c["id"] for c in shipped}) or any(
        (t, s, d2) == ("denoise", sigma, d) for (t, s, _, d2) in anchors)]
    rows = [[_ours_label(c), _macs_text(weights_macs(c)), *(_psnr_text(ours.get((c["id"], d, sigma))) for d in datasets)]
            for c in shipped]
    rows += [[_anchor_label(m, cite), _macs_text(published_macs(m)),
              *(_psnr_text((anchors.get(("denoise", sigma, m, d)) or (None,))[0]) for d in datasets)] for m in methods]
    ref = REFERENCE["denoise"]
    for c in shipped:
        cells = []
        for d in datasets:
            a, o = anchors.get(("denoise", sigma, ref, d)), ours.get((c["id"], d, sigma))
            cells.append(report.signed_difference(difference(o, a[0]), claims.card_spread(c))
                         if a and o is not None else "")
        rows.append([f"{_family(c)} − {ref}", "", *cells])
    return _table(["model", "MACs / px", *(DATASET_NAMES[d] for d in datasets)], rows), [
        _citations(anchors, "denoise", [sigma], methods)]


def blind_table(cards, ours, anchors, cite: bool) -> tuple[str, list[str]]:
    """Blind denoising on BSD68 (and Set12) at the sigmas the blind cards were measured at, against DnCNN-B."""
    from deconvlab import claims, report

    blind = [c for c in cards if _is_blind(c)]
    ref = REFERENCE["blind"]
    sigmas = sorted({s for c in blind for (i, _, s) in ours if i == c["id"]})
    rows = []
    for c in blind:
        for d in DATASET_NAMES:
            values = [ours.get((c["id"], d, s)) for s in sigmas]
            if any(v is not None for v in values):
                rows.append([f"{_ours_label(c)}, {DATASET_NAMES[d]}", _macs_text(weights_macs(c)),
                             *map(_psnr_text, values)])
    ref_sets = [d for d in DATASET_NAMES if any(anchors.get(("denoise", s, ref, d)) for s in sigmas)]
    for d in ref_sets:
        rows.append([f"{_anchor_label(ref, cite)}, {DATASET_NAMES[d]}", _macs_text(published_macs(ref)),
                     *(_psnr_text((anchors.get(("denoise", s, ref, d)) or (None,))[0]) for s in sigmas)])
        for c in blind:
            cells = []
            for s in sigmas:
                a, o = anchors.get(("denoise", s, ref, d)), ours.get((c["id"], d, s))
                cells.append(report.signed_difference(difference(o, a[0]), claims.card_spread(c))
                             if a and o is not None else "")
            rows.append([f"{_family(c)} − {ref}, {DATASET_NAMES[d]}", "", *cells])
    return _table(["model, test set", "MACs / px", *(f"σ={s:g}" for s in sigmas)], rows), [
        _citations(anchors, "denoise", sigmas, [ref])]


def sr_table(cards, ours, anchors, quality, scale: int, cite: bool) -> tuple[str, list[str]]:
    """Super-resolution at one scale: the SR cards, bicubic (measured), the published anchors, differences to VDSR."""
    from deconvlab import claims, report, weights

    shipped = [c for c in cards if c["task"] == "sr" and scale in weights.card_scales(c)]
    methods = _by_psnr(anchors, "sr", scale)
    datasets = [d for d in DATASET_NAMES if any(k[1] == d and k[2] == scale for k in ours)
                or any((t, s, d2) == ("sr", scale, d) for (t, s, _, d2) in anchors)]
    bicubic = {r["dataset"]: r["psnr"] for r in quality["rows"] if r["task"] == "sr"
               and r["setting"] == f"x{scale}" and r["method"] == "bicubic" and r["source"] == "measured"}
    rows = [[_ours_label(c), _macs_text(weights_macs(c, scale)), *(_psnr_text(ours.get((c["id"], d, scale)))
                                                                   for d in datasets)] for c in shipped]
    rows += [[_anchor_label(m, cite), _macs_text(published_macs(m, scale)),
              *(_psnr_text((anchors.get(("sr", scale, m, d)) or (None,))[0]) for d in datasets)] for m in methods]
    if bicubic:
        rows.append(["bicubic (measured)", "—", *(_psnr_text(bicubic.get(d)) for d in datasets)])
    ref = REFERENCE["sr"]
    for c in shipped:
        cells = []
        for d in datasets:
            a, o = anchors.get(("sr", scale, ref, d)), ours.get((c["id"], d, scale))
            cells.append(report.signed_difference(difference(o, a[0]), claims.card_spread(c)) if a and o is not None else "")
        rows.append([f"{_family(c)} − {ref}", "", *cells])
    # a post-upsampling card against the pre-upsampling one of its scale: the default rule's comparison
    pre = next((c for c in shipped if (c["architecture"].get("kwargs") or {}).get("upsample") == "pre"), None)
    for c in (c for c in shipped if pre is not None and _is_post_resnet(c)):
        cells = []
        for d in datasets:
            o, p = ours.get((c["id"], d, scale)), ours.get((pre["id"], d, scale))
            cells.append(report.signed_difference(difference(o, p), claims.card_spread(c))
                         if o is not None and p is not None else "")
        rows.append([f"{_family(c)} − {_family(pre)}", "", *cells])
    default = next((c for c in shipped if weights.is_default(c, scale)), None)
    notes = [f"Default for ×{scale} (`enhance --task sr --scale {scale}`): `{default['id']}`; a post-upsampling card "
             "is the default unless it is *behind* the pre-upsampling one on Set5 or Set14."
             if default is not None and pre is not None and len(shipped) > 1 else ""]
    return _table(["model", "MACs / px", *(DATASET_NAMES[d] for d in datasets)], rows), [
        _citations(anchors, "sr", [scale], methods), *notes]


def _deblur_rows(quality: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """{method: {dataset: row}} of the deblurring rows measured on whole test sets."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in quality["rows"]:
        if r["task"] == "deblur" and not r.get("note"):
            out.setdefault(r["method"], {})[r["dataset"]] = r
    return out


def classical_deblurrers(quality: Mapping[str, Any]) -> list[str]:
    """The classical deblurring methods of the benchmark (Wiener, Richardson-Lucy), in its order."""
    return [m for m in _deblur_rows(quality) if m.startswith(("Wiener", "Richardson-Lucy"))]


def _method_name(method: str) -> str:
    """'Richardson-Lucy (40 it., tuned)' -> 'Richardson–Lucy'."""
    return method.split(" (")[0].replace("Richardson-Lucy", "Richardson–Lucy")


def _measured_label(method: str, cite: bool) -> str:
    """'Wiener (balance 0.003, tuned)' -> 'Wiener, balance 0.003, tuned (measured)' with its citation."""
    name, _, detail = method.partition(" (")
    name = _method_name(name)
    key = CITE_KEYS.get(name) if cite else None
    return f"{name}{f' {{cite:p}}`{key}`' if key else ''}{', ' + detail.rstrip(')') if detail else ''} (measured)"


def deblur_table(cards, ours, quality, cite: bool) -> tuple[str, list[str]]:
    """Deblurring: the card against Wiener and Richardson-Lucy measured on the same whole test sets."""
    from deconvlab import report

    shipped = [c for c in cards if c["task"] == "deblur"]
    measured = _deblur_rows(quality)
    classical = classical_deblurrers(quality)
    datasets = [d for d in DATASET_NAMES if any(d in rows for rows in measured.values())]
    rows = [[_ours_label(c), _macs_text(weights_macs(c)), *(_psnr_text(ours.get((c["id"], d, None))) for d in datasets)]
            for c in shipped]
    for method in [*classical, *(m for m in measured if m.endswith("input"))]:
        rows.append([_measured_label(method, cite), "—",
                     *(_psnr_text(measured[method].get(d, {}).get("psnr")) for d in datasets)])
    for c in shipped:
        for method in classical:
            cells = []
            for d in datasets:
                o, r = ours.get((c["id"], d, None)), measured[method].get(d)
                cells.append(report.signed_difference(difference(o, r["psnr"])) if r and o is not None else "")
            rows.append([f"{_family(c)} − {_method_name(method)}", "", *cells])
    setting = next(iter(next(iter(measured.values())).values()))["setting"] if measured else ""
    meta = quality.get("meta") or {}
    tuning = meta.get("deblur_tuning") or {}
    notes = [f"Degradation: {setting} (PSF sigma, noise sigma in gray levels). Classical methods measured by "
             f"`benchmarks/quality.py` ({meta.get('date', '?')}, {meta.get('device', '?')}) on every image of each "
             f"test set; the Wiener balance and the Richardson–Lucy iterations were tuned on the first "
             f"{tuning.get('train_images', '?')} Train400 images, none of them a test image"
             # test_020 is the 20th: data/DATASETS.md records its overlap with Set12 04
             + (" (Train400's test_020 shares a 106x180 region with Set12's 04: `data/DATASETS.md`)."
                if tuning.get("train_images", 0) >= 20 else ".")]
    return _table(["model", "MACs / px", *(DATASET_NAMES[d] for d in datasets)], rows), notes


def weights_macs(card: Mapping[str, Any], scale: int | None = None) -> float | None:
    from deconvlab import weights

    return weights.card_macs(card, scale)


def _section(caption: str, table: tuple[str, list[str]]) -> list[str]:
    text, notes = table
    return [caption, "", text, "", *(n + "\n" for n in notes if n)]


RULE_TEXT = ("PSNR in dB on the whole test set (no subsets); MACs / px: multiply-adds per output pixel, counted "
             "by `deconvlab.models.macs_per_pixel` from each network's layers (published networks: built as their "
             "papers describe them). A difference is the shipped model's PSNR minus the reference's, both as "
             "shown. By the book's rule (`deconvlab.report.difference_verdict`) it counts, *ahead* or *behind*, "
             "only when it is at least {tie} dB and larger than the spread measured for it, else it is a *tie*. Each "
             "shipped model is one training run. A denoiser's spread is twice the BSD68 seed std of its recipe: "
             "RED-Net {red} dB, from the sigma-25 card's command run with three seeds; U-Net {unet} dB, from the "
             "sigma-15 card's command (peak learning rate 5e-4) run with three seeds "
             "(`benchmarks/card_seeds.py`); each applies to all cards of its network, the blind U-Net included. "
             "A post-upsampling SR card's is twice the Set5 ×4 seed std of the ×4 "
             "card's recipe, trained with three seeds ({sr} dB, `benchmarks/card_seeds.py`), applied at every scale "
             "and on both test sets. The other cards have no measured spread.")


def render_results(cards: Sequence[Mapping[str, Any]], quality: Mapping[str, Any], cite: bool = True,
                   heading: str = "###") -> str:
    """The per-task result tables (Markdown; MyST citations when ``cite``)."""
    from deconvlab import claims, report, weights

    ours, anchors = collect(cards)
    lines = ["<!-- Generated by tools/make_figures.py from data/weights/*.json and benchmarks/results/quality.json; "
             "do not edit by hand. -->", "", RULE_TEXT.format(tie=f"{report.TIE_DB:g}", **{
                 name: "not measured" if (v := claims.recipe_spread(b))
                 is None else f"{v:.3f}" for name, b in (("red", "red_net"), ("unet", "unet"))},
                 sr=next((f"{v:.3f}" for c in cards if _is_post_resnet(c) and (v := claims.card_spread(c))
                          is not None), "not measured")), ""]
    sigmas = sorted({float(c["sigma"]) for c in cards if c["task"] == "denoise" and not _is_blind(c)})
    if sigmas or any(_is_blind(c) for c in cards):
        lines += [f"{heading} Gaussian denoising", ""]
        for sigma in sigmas:
            lines += _section(f"**σ = {sigma:g}**", denoise_table(cards, ours, anchors, sigma, cite))
        if any(_is_blind(c) for c in cards):
            lo, hi = next(c for c in cards if _is_blind(c))["sigma_range"]
            lines += _section(f"**Blind** (one model for every σ in [{lo:g}, {hi:g}]; BSD68 and Set12 at σ = "
                              + ", ".join(f"{s:g}" for s in sorted({k[2] for k in ours if k[2] is not None
                                                                    and any(c['id'] == k[0] and _is_blind(c)
                                                                            for c in cards)})) + ")",
                              blind_table(cards, ours, anchors, cite))
    scales = sorted({s for c in cards if c["task"] == "sr" for s in weights.card_scales(c)})
    if scales:
        lines += [f"{heading} Super-resolution (Y channel)", ""]
        for scale in scales:
            lines += _section(f"**×{scale}**", sr_table(cards, ours, anchors, quality, scale, cite))
    if any(c["task"] == "deblur" for c in cards):
        lines += [f"{heading} Deblurring: learned against Wiener and Richardson–Lucy", ""]
        lines += _section("**Gaussian blur and noise**", deblur_table(cards, ours, quality, cite))
    return "\n".join(lines).rstrip() + "\n"


def _network_text(card: Mapping[str, Any]) -> str:
    kw = card["architecture"].get("kwargs") or {}
    builder = card["architecture"]["builder"]
    if builder == "red_net_sr" and kw.get("body") == "resblocks":
        up = {"transposed": "transposed conv", "subpixel": "sub-pixel"}.get(kw.get("up"), kw.get("up"))
        skip = f", {kw['skip']} skip" if kw.get("skip") else ""
        return f"ResNet, {int(kw.get('depth', 0))} blocks at low res., {up} ×{kw.get('scale')}{skip}"
    if builder in ("red_net", "red_net_sr"):
        pre = ", bicubic in" if kw.get("upsample") == "pre" else ""
        return f"RED-Net, {2 * int(kw.get('depth', 0))} layers{pre}"
    if builder == "unet":
        return f"U-Net, {len(kw.get('widths', []))} scales"
    return builder


def _chosen_on(card: Mapping[str, Any]) -> str:
    validation = str((card.get("data") or {}).get("validation", ""))
    if validation.startswith("held-aside"):  # "held-aside Train400 test_393, ..." or "held-aside T91 t59, ..."
        name = validation.split()[1]  # "train400" in deconvlab train's cards, "Train400" in the fused trainer's
        return f"{name[:1].upper()}{name[1:]} (held out)"
    return f"{DATASET_NAMES.get(validation, validation)} (test)" if validation else "—"


def render_table(cards: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown of the card table ``book/results.md`` includes: how each card was built and trained."""
    from deconvlab import weights

    rows = []
    for c in cards:
        wall = c.get("wall_time_s")
        scales = weights.card_scales(c)
        rows.append([f"`{c['id']}`", _network_text(c),
                     f"{c['params']:,}" if isinstance(c.get("params"), int) else "—",
                     _macs_text(weights.card_macs(c, (scales or [None])[0])),
                     f"{wall / 60:.1f} min" if isinstance(wall, (int, float)) else "—", _chosen_on(c)])
    lines = [
        "<!-- Generated by tools/make_figures.py from data/weights/*.json; do not edit by hand. -->",
        "",
        _table(["card", "network", "params", "MACs / px", "training", "checkpoint from"], rows,
               align="llrrrl"),
        "",
    ]
    fallback = [f"`{c['id']}`" for c in cards if (c.get("data") or {}).get("fallback")]
    if fallback:
        lines += [f"Trained or validated on the offline stand-in images, not the benchmark: {', '.join(fallback)}.",
                  ""]
    where = collections.Counter(f"the {c.get('profile', '?')} profile on {c.get('hardware', '?')}" for c in cards)
    groups = [f"{n} with {w}" for w, n in sorted(where.items(), key=lambda item: -item[1])]
    trained = " and ".join([", ".join(groups[:-1]), groups[-1]] if len(groups) > 1 else groups)
    lines += [f"Cards: {len(cards)}, trained {trained}; test PSNR/SSIM measured after "
              "reloading the shipped float16 weights. Each card also records its mean on the first image of one "
              "test set per setting, which `tests/test_cards.py` re-computes on CPU in CI; those are in no table.",
              ""]
    return "\n".join(lines)


def _find(cards: Sequence[Mapping[str, Any]], task: str, **setting: Any) -> Mapping[str, Any] | None:
    from deconvlab import weights

    for card in cards:
        if card["task"] != task:
            continue
        if "sigma" in setting and card.get("sigma") != setting["sigma"]:
            continue
        if "scale" in setting and setting["scale"] not in weights.card_scales(card):
            continue
        return card
    return None


def example(card: Mapping[str, Any], dataset: str, filename: str, setting: Mapping[str, Any],
            directory: Path) -> dict[str, Any]:
    """Degrade a centre crop of one test image as the card's protocol does and restore it with the card's model."""
    import numpy as np

    import deconvlab as dl

    ds = dl.data.load_dataset(dataset, fallback=False)
    clean = dict(zip(ds.names, ds.images, strict=True))[filename]
    if clean.ndim == 3 and card["task"] == "sr":
        clean = dl.metrics.rgb_to_y(clean)  # the SR protocol works on Y
    elif clean.ndim == 3:
        clean = clean.mean(axis=-1)
    top, left = (clean.shape[0] - CROP) // 2, (clean.shape[1] - CROP) // 2
    clean = np.ascontiguousarray(clean[top:top + CROP, left:left + CROP], dtype=np.float32)
    model = dl.weights.load_pretrained(card=card, directory=directory)
    sigma = setting.get("sigma") if card["task"] == "denoise" else dl.degrade.DEBLUR_NOISE_SIGMA
    _, degraded, low = dl.tasks.evaluation_pair(card["task"], clean, 0, sigma=sigma, scale=setting.get("scale"))
    net_in = low if card.get("upsample") == "post" else degraded
    what = {"denoise": f"noisy σ={setting.get('sigma')}", "deblur": "blurred + noise",
            "sr": f"bicubic ×{setting.get('scale')}"}[card["task"]]
    restored = np.clip(dl.infer.predict_image(model, net_in), 0.0, 1.0)

    def score(img: np.ndarray) -> str:
        if card["task"] == "sr":  # the SR protocol: Y channel, `scale` pixels shaved
            p, s = dl.metrics.sr_metrics(clean, img, setting["scale"])
        else:
            p, s = dl.metrics.psnr(clean, img), dl.metrics.ssim(clean, img)
        return f"{p:.2f} dB\nSSIM {s:.3f}"

    # three short lines per title, so that the titles of three narrow panels do not run into each other
    return {"task": card["task"], "card": card["id"],
            "panels": [(f"{what}\n{score(np.clip(degraded, 0, 1))}", degraded),
                       (f"{card['id']}\n{score(restored)}", restored),
                       (f"reference\n{DATASET_NAMES.get(dataset, dataset)}\n{filename}", clean)]}


# ---------------------------------------------------------------------------------------------- the figure


def difference_points(cards: Sequence[Mapping[str, Any]], quality: Mapping[str, Any]
                      ) -> dict[str, tuple[str, list[tuple[str, float]]]]:
    """Per task: (what the differences are taken against, [(label, shipped minus reference as shown)])."""
    from deconvlab import weights

    ours, anchors = collect(cards)
    out: dict[str, tuple[str, list[tuple[str, float]]]] = {}
    for card in cards:
        task = card["task"]
        if task == "deblur":
            measured = _deblur_rows(quality)
            for method in classical_deblurrers(quality):
                short = _method_name(method).replace("Richardson–Lucy", "R–L")
                for d in DATASET_NAMES:
                    o, r = ours.get((card["id"], d, None)), measured[method].get(d)
                    if o is not None and r:
                        out.setdefault(task, ("Wiener, Richardson–Lucy (R–L)", []))[1].append(
                            (f"{DATASET_NAMES[d]} vs {short}", difference(o, r["psnr"])))
            continue
        ref = REFERENCE[task]
        settings = ([float(card["sigma"])] if task == "denoise" else weights.card_scales(card))
        for s in settings:
            for d in DATASET_NAMES:
                a, o = anchors.get((task, s, ref, d)), ours.get((card["id"], d, s))
                if a and o is not None:
                    label = f"σ={s:g} {DATASET_NAMES[d]}" if task == "denoise" else f"×{s} {DATASET_NAMES[d]}"
                    out.setdefault(task, (ref, []))[1].append((label, difference(o, a[0])))
    return out


def task_spread(cards: Sequence[Mapping[str, Any]], task: str) -> float | None:
    """The spread the figure's verdicts use for a task: the largest ``claims.card_spread`` of its cards."""
    from deconvlab import claims

    spreads = [v for c in cards if c["task"] == task and (v := claims.card_spread(c)) is not None]
    return max(spreads) if spreads else None


FIGURE_DPI = 150


def build_figure(cards: Sequence[Mapping[str, Any]], quality: Mapping[str, Any],
                 examples: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """The results figure (a matplotlib Figure): a row per task with its example crops (when given: task ->
    :func:`example`) and the chart of differences, each labelled by ``deconvlab.report.signed_difference``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import deconvlab as dl

    points = difference_points(cards, quality)
    tasks = [t for t, *_ in EXAMPLES if t in points]
    if not tasks:
        raise SystemExit("make_figures: no card has test metrics to plot")
    crops = examples is not None
    ncols = 4 if crops else 1
    heights = [max(2.1, 0.28 * len(points[t][1]) + 0.9) for t in tasks]
    with dl.plots.style():
        fig = plt.figure(figsize=(FIGURE_INCHES, sum(heights) + 0.4), layout="constrained")
        grid = fig.add_gridspec(len(tasks), ncols, width_ratios=[1, 1, 1, 2.0] if crops else [1],
                                height_ratios=heights)
        colours = {"ahead": "tab:blue", "behind": "tab:orange", "tie": "0.35"}
        for r, task in enumerate(tasks):
            if crops and task in examples:
                for c, (title, img) in enumerate(examples[task]["panels"]):
                    ax = fig.add_subplot(grid[r, c])
                    dl.plots.show(ax, img, title)
                    ax.title.set_fontsize(9)
            ax = fig.add_subplot(grid[r, ncols - 1])
            ref, items = points[task]
            ys = list(range(len(items)))[::-1]
            diffs = [d for _, d in items]
            spread = task_spread(cards, task)
            verdicts = [dl.report.difference_verdict(d, spread) for d in diffs]
            ax.axvspan(-dl.report.TIE_DB, dl.report.TIE_DB, color="0.85", lw=0, label="tie band")
            ax.axvline(0, color="0.3", lw=0.8)
            for y, d, v in zip(ys, diffs, verdicts, strict=True):
                ax.plot([d], [y], marker="o", markersize=7, linestyle="none", color=colours[v],
                        markerfacecolor="white" if v == "tie" else colours[v])
            ax.set_yticks(ys, [label for label, _ in items], fontsize=9)
            lo, hi = min(0.0, *diffs), max(0.0, *diffs)
            pad = max(0.1, 0.15 * (hi - lo))
            ax.set_xlim(min(lo - pad, -2 * dl.report.TIE_DB), max(hi + pad, 2 * dl.report.TIE_DB))
            ax.set_ylim(-0.7, len(items) - 0.3)
            ax.tick_params(axis="x", labelsize=9)
            ax.grid(axis="y", alpha=0)
            right = ax.twinx()
            right.set_ylim(ax.get_ylim())
            right.set_yticks(ys, [dl.report.signed_difference(d, spread) for d in diffs], fontsize=9)
            right.tick_params(axis="y", length=0)
            right.grid(False)
            for spine in right.spines.values():
                spine.set_visible(False)
            family = next((_family(c) for c in cards if c["task"] == task), "shipped")
            ax.set_title(f"{TASK_TITLES[task]}: {family} − {ref}", fontsize=10)
            ax.set_xlabel("difference in test-set PSNR (dB)", fontsize=9)
        fig.suptitle("Shipped models: example crops (PSNR / SSIM of the crop) and the test-set difference to the "
                     f"reference\n(gray band: ties, under {dl.report.TIE_DB:g} dB; ahead blue, behind orange)",
                     fontsize=10)
    plt.close(fig)  # kept out of pyplot: the caller saves it
    return fig


def make_figure(cards: Sequence[Mapping[str, Any]], quality: Mapping[str, Any], out: Path,
                examples: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Save :func:`build_figure` as ``out`` (PNG, :data:`FIGURE_DPI`)."""
    import deconvlab as dl

    fig = build_figure(cards, quality, examples)
    out.parent.mkdir(parents=True, exist_ok=True)
    with dl.plots.style():
        fig.savefig(out, dpi=FIGURE_DPI)
    return out


def figure_examples(cards: Sequence[Mapping[str, Any]], directory: Path) -> dict[str, dict[str, Any]]:
    """The example crops of :data:`EXAMPLES` restored by the shipped cards (needs the test images)."""
    found = {}
    for task, setting, dataset, filename in EXAMPLES:
        card = _find(cards, task, **setting)
        if card is not None:
            found[task] = example(card, dataset, filename, setting, directory)
    return found


PENDING = """<!-- Generated by tools/make_figures.py --pending; do not edit by hand. -->

```{warning}
The shipped model cards are not in `data/weights/` yet, so there are no results to show. Once they land, run
`make figures` to draw the results figure and fill in this table from them.
```
"""


def pending_figure(out: Path) -> Path:
    """A figure that says the results are pending (no numbers), so the book builds before the cards land."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8, 1.5))
    fig.text(0.5, 0.5, "Results pending: the shipped model cards are not in data/weights yet.\n"
             "Run `make figures` when they land.", ha="center", va="center", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def readme_section(cards: Sequence[Mapping[str, Any]], quality: Mapping[str, Any]) -> str:
    """What ``README.md`` gets between its markers: the result tables (plain-text citations) and the card table."""
    return render_results(cards, quality, cite=False) + "\n" + render_table(cards)


def update_readme(readme: Path, table: str) -> bool:
    """Replace the README's generated section; return True when the file changed."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise SystemExit(f"make_figures: {readme} has no {README_START} ... {README_END} section")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    if table == PENDING:  # GitHub does not render MyST admonitions
        table = ("<!-- Generated by tools/make_figures.py --pending; do not edit by hand. -->\n\n"
                 "*Results pending: the shipped model cards are not in `data/weights/` yet; `make figures` fills "
                 "this section in when they land.*\n")
    body = table.replace("<!-- Generated by tools/make_figures.py from data/weights/*.json; do not edit by hand. -->",
                         "<!-- Generated by tools/make_figures.py (make figures); do not edit by hand. -->")
    new = f"{head}{README_START}\n{body.rstrip()}\n{README_END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
        return True
    return False


def shrink_screenshot(src: Path, dest: Path, width: int = 900) -> Path:
    """A small RGB PNG of a browser screenshot (top of the page, ``width`` pixels wide) for the README."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        height = min(img.height, int(img.width * 0.62))
        img = img.crop((0, 0, img.width, height))
        img = img.resize((width, int(height * width / img.width)), Image.LANCZOS)
        img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT)  # a page of text: a palette is plenty
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest, optimize=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "data" / "weights", help="folder of model cards")
    parser.add_argument("--quality", type=Path, default=QUALITY_PATH, help="benchmarks/quality.py result (JSON)")
    parser.add_argument("--figure", type=Path, default=FIGURE_PATH)
    parser.add_argument("--table", type=Path, default=TABLE_PATH, help="the card table")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the per-task result tables")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to update ('-': none)")
    parser.add_argument("--table-only", action="store_true", help="only the tables and the README section")
    parser.add_argument("--no-examples", action="store_true", help="figure without the example crops")
    parser.add_argument("--allow-partial", action="store_true", help="accept a folder without every shipped card")
    parser.add_argument("--screenshot", type=Path, help="browser screenshot to shrink into book/_static/")
    parser.add_argument("--pending", action="store_true",
                        help="no cards yet: write a 'results pending' table, figure and README section")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if args.pending:
        for path, text in ((args.table, PENDING), (args.results, PENDING.split("\n", 1)[0] + "\n")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if str(args.readme) != "-":
            update_readme(args.readme, PENDING)
        print(f"wrote {args.table}, {args.results} and {pending_figure(args.figure)} (results pending)")
        return 0
    cards = load_cards(args.weights, args.allow_partial)
    quality = load_quality(args.quality)
    for path, text in ((args.table, render_table(cards)), (args.results, render_results(cards, quality))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if str(args.readme) != "-":
        section = readme_section(cards, quality)
        print(f"{'updated' if update_readme(args.readme, section) else 'unchanged'}: {args.readme}")
    if not args.table_only:
        figure_cards = [c for c in cards if c["id"] in FIGURE_CARDS] or cards
        crops = None if args.no_examples else figure_examples(figure_cards, args.weights)
        print(f"wrote {make_figure(figure_cards, quality, args.figure, crops)}")
    if args.screenshot:
        print(f"wrote {shrink_screenshot(args.screenshot, ROOT / 'book' / '_static' / 'screenshot.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
