"""Make the book's results figure and model-card table from the shipped model cards (``data/weights/*.json``).

Writes, from the cards and nothing else (no number is typed in by hand):

* ``book/_static/results.png``: for each task with a shipped card, a crop of one test image (degraded input,
  the shipped model's output, the reference; PSNR/SSIM of the crop in the titles) and the card's test-set PSNR
  beside the published anchors it records;
* ``book/_generated/model_cards.md``: ``deconvlab.weights.render_card_table`` of every card, plus the notes the
  table needs (image limits, where the anchors come from) — ``book/results.md`` includes it;
* the section of ``README.md`` between ``<!-- results:start -->`` and ``<!-- results:end -->``;
* with ``--screenshot PNG``: a small copy of a browser screenshot for the README (``book/_static/screenshot.png``).

Usage: ``python tools/make_figures.py`` (``make figures``). The example crops need the test images
(``DECONVLAB_DATA`` or a download); the table and the README section only need the cards
(``--table-only``). Missing shipped cards are an error unless ``--allow-partial`` (for development against
cards trained with ``python -m deconvlab train ... --out /tmp/w``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# The shipped cards the book promises (ids of data/weights/<id>.json).
SHIPPED = ("deblur", "denoise-sigma15", "denoise-sigma25", "denoise-sigma50", "sr-x2-3-4",
           "denoise-unet-sigma15", "denoise-unet-sigma25", "denoise-unet-sigma50", "denoise-unet-blind")
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
FIGURE_PATH = ROOT / "book" / "_static" / "results.png"


def load_cards(directory: Path, allow_partial: bool) -> list[dict[str, Any]]:
    """Every card in ``directory``; all of :data:`SHIPPED` must be there unless ``allow_partial``."""
    from deconvlab import weights

    cards = weights.list_cards(directory)
    missing = sorted(set(SHIPPED) - {str(c["id"]) for c in cards})
    if not cards or (missing and not allow_partial):
        raise SystemExit(f"make_figures: {directory} lacks the model cards {', '.join(missing) or SHIPPED}; "
                         "wait for the GPU training run (or pass --allow-partial while developing)")
    return cards


def _setting(entry: Mapping[str, Any], card: Mapping[str, Any]) -> str:
    if card["task"] == "denoise":
        sigma = entry.get("sigma", card.get("sigma"))
        return f"σ={sigma:g}" if sigma is not None else "blind"
    if card["task"] == "sr":
        scale = entry.get("scale", card.get("scale"))
        return f"×{scale}" if scale is not None else ""
    return "Gaussian PSF"


def _full_metrics(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card's full-test-set metrics (the CI subsets only if it has nothing else)."""
    metrics = list(card.get("metrics") or [])
    return [m for m in metrics if not m.get("limit")] or metrics


def metric_groups(cards: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per task: one group per (card, test set, setting) with the card's PSNR and the anchors that match it."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for card in cards:
        for entry in _full_metrics(card):
            anchors = [a for a in card.get("anchors") or [] if a["dataset"] == entry["dataset"]
                       and (entry.get("scale") is None or a.get("scale") in (None, entry["scale"]))]
            limit = entry.get("limit")
            label = f"{_setting(entry, card)}\n{entry['dataset'].upper()}" + (f"\n({limit} imgs)" if limit else "")
            groups.setdefault(card["task"], []).append(
                {"label": label, "ours": float(entry["psnr"]), "card": card["id"],
                 "anchors": {a["method"]: float(a["psnr"]) for a in anchors}})
    return groups


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
    what = {"denoise": f"noisy (σ={setting.get('sigma')})", "deblur": "blurred + noise",
            "sr": f"bicubic ×{setting.get('scale')}"}[card["task"]]
    restored = np.clip(dl.infer.predict_image(model, net_in), 0.0, 1.0)

    def score(img: np.ndarray) -> str:
        if card["task"] == "sr":  # the SR protocol: Y channel, `scale` pixels shaved
            p, s = dl.metrics.sr_metrics(clean, img, setting["scale"])
        else:
            p, s = dl.metrics.psnr(clean, img), dl.metrics.ssim(clean, img)
        return f"{p:.2f} dB / {s:.3f}"

    return {"task": card["task"], "card": card["id"],
            "panels": [(f"{what}\n{score(np.clip(degraded, 0, 1))}", degraded),
                       (f"{card['id']}\n{score(restored)}", restored),
                       (f"reference\n{dataset}/{filename}", clean)]}


def make_figure(cards: Sequence[Mapping[str, Any]], directory: Path, out: Path, examples: bool = True) -> Path:
    """The results figure: a row per task with example crops (optional) and the PSNR dot plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import deconvlab as dl

    groups = metric_groups(cards)
    rows = []
    for task, setting, dataset, filename in EXAMPLES:
        card = _find(cards, task, **setting)
        if card is None or task not in groups:
            continue
        rows.append((task, example(card, dataset, filename, setting, directory) if examples else None))
    if not rows:
        raise SystemExit("make_figures: no card has test metrics to plot")
    dl.plots.apply_style()
    ncols = 4 if examples else 1
    fig = plt.figure(figsize=(14 if examples else 6, 3.3 * len(rows)), layout="constrained")
    grid = fig.add_gridspec(len(rows), ncols, width_ratios=[1, 1, 1, 1.6] if examples else [1])
    markers = {"BM3D": "s", "DnCNN-S": "^", "DnCNN-B": "v", "VDSR": "D", "FSRCNN": "P"}
    for r, (task, ex) in enumerate(rows):
        if ex is not None:
            for c, (title, img) in enumerate(ex["panels"]):
                ax = fig.add_subplot(grid[r, c])
                dl.plots.show(ax, img, title)
                ax.title.set_fontsize(9)
        ax = fig.add_subplot(grid[r, ncols - 1])
        items = groups[task]
        xs = range(len(items))
        methods = sorted({m for g in items for m in g["anchors"]})
        for k, m in enumerate(methods):  # anchors side by side left of the group's centre, ours right of it
            dx = -0.25 + 0.25 * k / max(1, len(methods) - 1)
            pts = [(x + dx, g["anchors"][m]) for x, g in zip(xs, items, strict=True) if m in g["anchors"]]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none", marker=markers.get(m, "o"),
                    markersize=6, color="0.45", markerfacecolor="none", label=f"{m} (published)")
        ax.plot([x + 0.15 for x in xs], [g["ours"] for g in items], linestyle="none", marker="*", markersize=12,
                color="tab:red", label="this book (shipped card)")
        for x, g in zip(xs, items, strict=True):
            ax.annotate(f"{g['ours']:.2f}", (x + 0.15, g["ours"]), textcoords="offset points", xytext=(7, -3),
                        fontsize=8, color="tab:red")
        ax.set_xticks(list(xs), [g["label"] for g in items], fontsize=8)
        ax.set_xlim(-0.5, len(items) - 0.5)
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"{TASK_TITLES[task]}: test-set mean PSNR", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.25)  # room for the legend above the highest marker
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Shipped models: example crops (PSNR / SSIM of the crop) and test-set PSNR beside published anchors",
                 fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def render_table(cards: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown that ``book/results.md`` includes: the card table and its notes."""
    from deconvlab import weights

    lines = [
        "<!-- Generated by tools/make_figures.py from data/weights/*.json; do not edit by hand. -->",
        "",
        weights.render_card_table(cards),
        "",
    ]
    limited = list(dict.fromkeys(f"`{c['id']}` ({m['dataset']}: first {m['limit']} images)"
                                 for c in cards for m in c.get("metrics") or [] if m.get("limit")
                                 and not any(not x.get("limit") for x in c["metrics"])))
    if limited:
        lines += [f"Measured on part of a test set only, not comparable with the published numbers: "
                  f"{', '.join(limited)}.", ""]
    if any(m.get("limit") for c in cards for m in c.get("metrics") or []):
        lines += ["Each card also records its mean on the first image of one test set per setting; "
                  "`tests/test_cards.py` re-computes those on CPU with TensorFlow in CI (within 0.02 dB). "
                  "They are left out of the table above.", ""]
    fallback = [f"`{c['id']}`" for c in cards if (c.get("data") or {}).get("fallback")]
    if fallback:
        lines += [f"Trained or validated on the offline stand-in images, not the benchmark: {', '.join(fallback)}.",
                  ""]
    citations = sorted({a["citation"] for c in cards for a in c.get("anchors") or []})
    if citations:
        lines += ["Published numbers (\"published\" column) come from: " + "; ".join(citations) + ".", ""]
    profiles = sorted({f"{c.get('profile', '?')} profile on {c.get('hardware', '?')}" for c in cards})
    lines += [f"Cards: {len(cards)}; trained with the {', '.join(profiles)}; "
              "test PSNR/SSIM measured after reloading the shipped float16 weights.", ""]
    return "\n".join(lines)


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
    parser.add_argument("--figure", type=Path, default=FIGURE_PATH)
    parser.add_argument("--table", type=Path, default=TABLE_PATH)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to update ('-': none)")
    parser.add_argument("--table-only", action="store_true", help="only the table and the README section")
    parser.add_argument("--no-examples", action="store_true", help="figure without the example crops")
    parser.add_argument("--allow-partial", action="store_true", help="accept a folder without every shipped card")
    parser.add_argument("--screenshot", type=Path, help="browser screenshot to shrink into book/_static/")
    parser.add_argument("--pending", action="store_true",
                        help="no cards yet: write a 'results pending' table, figure and README section")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if args.pending:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(PENDING, encoding="utf-8")
        if str(args.readme) != "-":
            update_readme(args.readme, PENDING)
        print(f"wrote {args.table} and {pending_figure(args.figure)} (results pending)")
        return 0
    cards = load_cards(args.weights, args.allow_partial)
    table = render_table(cards)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(table, encoding="utf-8")
    print(f"wrote {args.table} ({len(cards)} cards)")
    if str(args.readme) != "-":
        print(f"{'updated' if update_readme(args.readme, table) else 'unchanged'}: {args.readme}")
    if not args.table_only:
        shown = [c for c in cards if c["id"] in FIGURE_CARDS] or cards
        print(f"wrote {make_figure(shown, args.weights, args.figure, examples=not args.no_examples)}")
    if args.screenshot:
        print(f"wrote {shrink_screenshot(args.screenshot, ROOT / 'book' / '_static' / 'screenshot.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
