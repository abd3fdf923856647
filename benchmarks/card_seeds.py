"""The seed spread of a shipped card's own recipe: the card (seed 0) and its recorded command run with other seeds.

A card is one training run, so the verdicts that set it against a published number needed a spread from elsewhere:
chapter 3's ladder rung with the same design at a smaller size and a shorter schedule. Here the `denoise-sigma25`
card's command (RED-Net) and the ``denoise-unet-sigma15`` card's (U-Net) were run again with ``--seed 1`` and
``--seed 2`` (``benchmarks/gpu_fused.sh``, two jobs sharing one H200 as the cards' own runs did), and
:func:`deconvlab.recipes.finish_card` measured each seed's float16 file on all of BSD68 on the CPU, as for the card.
This script collects the three runs of a recipe into ``card_seeds_<builder>.json`` and ``.md``;
:func:`deconvlab.claims.recipe_spread` reads the JSON named in :data:`deconvlab.claims.CARD_SEEDS`. The U-Net's
first recipe (peak learning rate 1e-3, ``card_seeds_unet``) had a collapsed seed; the same three seeds at 5e-4
(``--name card_seeds_unet_lr5e-4``) replaced it, and its cards with them (chapter 5).

The x4 post-upsampling SR card's recipe (patch 24, scale augmentation) was itself trained with three seeds, of which
the shipped card's predecessor was the best on held-aside images; ``--sr-log`` collects their GPU Set5 x4 scores
from that run's committed log (``results/logs/sr_x4_patch24.log``) into ``card_seeds_sr_x4_post.json``.

Usage: ``python benchmarks/card_seeds.py SEED_CARD.json [SEED_CARD.json ...] [--card denoise-sigma25]``, or
``python benchmarks/card_seeds.py --sr-log benchmarks/results/logs/sr_x4_patch24.log``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from deconvlab import paths, weights  # noqa: E402
from deconvlab.io import write_atomic  # noqa: E402


def full_bsd68(card: dict) -> dict:
    """The card's metrics entry for all of BSD68 (a card may also hold quick checks on a few images)."""
    return next(m for m in card["metrics"] if m["dataset"] == "bsd68" and m.get("limit") is None)


def collect(shipped: dict, seed_cards: list[dict]) -> dict:
    runs = [shipped, *seed_cards]
    bsd68 = [round(full_bsd68(r)["psnr"], 4) for r in runs]
    return {
        "card": shipped["id"], "builder": shipped["architecture"]["builder"], "sigma": shipped["sigma"],
        "seeds": [r["seed"] for r in runs], "commits": [r["commit"] for r in runs],
        "commands": [r["command"] for r in runs], "hardware": [r["hardware"] for r in runs],
        "steps": [r["training"]["steps"] for r in runs], "train_s": [r["training"]["train_seconds"] for r in runs],
        "held_aside_psnr": [r["training"]["best_val_psnr"] for r in runs],
        # the checkpoint is the best held-aside step; the last one shows a run that collapsed after it
        "held_aside_last": [r["training"]["curve"][-1]["val_psnr"] for r in runs],
        "curves": [[[c["step"], c["val_psnr"], c["train_loss"]] for c in r["training"]["curve"]] for r in runs],
        "bsd68": bsd68, "bsd68_mean": round(float(np.mean(bsd68)), 4),
        "bsd68_std": round(float(np.std(bsd68, ddof=1)), 4),
        "measured_on": sorted({full_bsd68(r)["protocol"]["device"] for r in runs}),
        "rule": "twice bsd68_std is the spread of this builder's recipe in the book's verdicts "
                "(deconvlab.claims.recipe_spread), fixed before the runs (benchmarks/results/NOTES.md)",
    }


def _last_step(psnr: float | None) -> str:
    """A run's last held-aside PSNR; None where that validation diverged (``deconvlab.fused`` records it as null)."""
    return "diverged" if psnr is None else f"{psnr:.4f}"


def markdown(result: dict) -> str:
    """The report beside ``card_seeds_<name>.json``. ``title`` and ``about``, where the JSON has them, replace the
    default heading and first paragraph (e.g. once a newer recipe's card replaced the one these seeds started from);
    runs collected before ``held_aside_last`` was recorded have no last-step column."""
    last = result.get("held_aside_last")
    rows = [f"| {s} | {c} | {n:,} | {v:.4f} |" + ("" if last is None else f" {_last_step(last[i])} |") + f" {b:.4f} |"
            for i, (s, c, n, v, b) in enumerate(zip(result["seeds"], result["commits"], result["steps"],
                                                    result["held_aside_psnr"], result["bsd68"], strict=True))]
    header = ("| seed | commit | steps | held-aside PSNR | BSD68 |\n|---|---|---:|---:|---:|" if last is None else
              "| seed | commit | steps | held-aside PSNR (best step, kept) | held-aside PSNR (last step) | BSD68 |\n"
              "|---|---|---:|---:|---:|---:|")
    about = result.get("about", "the shipped card (seed 0) and its recorded command run again with other seeds "
                                "(two jobs sharing one H200, as the card's own run did)")
    return "\n".join([
        "# " + result.get("title", f"The seed spread of the `{result['card']}` recipe"), "",
        f"`benchmarks/card_seeds.py`: {about}; BSD68 at sigma "
        f"{result['sigma']:g} on {', '.join(result['measured_on'])} from each float16 file.", "",
        header, *rows, "",
        f"Mean {result['bsd68_mean']:.4f} dB, sample std {result['bsd68_std']:.4f} dB: the recipe's spread "
        f"(twice the std) is {2 * result['bsd68_std']:.4f} dB.", ""])


def collect_sr_log(log: Path) -> dict:
    """The RESULT lines of a run of several seeds of one SR recipe (``deconvlab.fused``), as a seed-spread record."""
    runs = [json.loads(line[len("RESULT "):]) for line in log.read_text().splitlines() if line.startswith("RESULT ")]
    set5 = [r["set5@x4"] for r in runs]
    return {
        "recipe": "sr-x4-post: patch 24, scale augmentation 0.9/0.8/0.7/0.6, 3 jobs sharing one H200, 420 s each",
        "log": str(log.relative_to(ROOT)), "ids": [r["id"] for r in runs], "steps": [r["steps"] for r in runs],
        "held_aside_psnr": [r["val"] for r in runs], "set5_x4": set5,
        "set5_x4_mean": round(float(np.mean(set5)), 4), "set5_x4_std": round(float(np.std(set5, ddof=1)), 4),
        "measured_on": "the GPU after training (bf16), by the runs themselves",
        "rule": "twice set5_x4_std is the spread of the post-upsampling SR recipe in the book's verdicts",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed_cards", nargs="*", type=Path, help="cards of the recipe run with other seeds, measured")
    parser.add_argument("--card", default="denoise-sigma25", help="the shipped card (seed 0): an id or a path")
    parser.add_argument("--sr-log", type=Path, help="a log of several seeds of the x4 SR recipe (RESULT lines)")
    parser.add_argument("--out", type=Path, default=paths.results_dir())
    parser.add_argument("--name", help="output file stem (default card_seeds_<builder>)")
    args = parser.parse_args(argv)
    if args.sr_log:
        result = collect_sr_log(args.sr_log.resolve())
        (args.out / "card_seeds_sr_x4_post.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"Set5 x4 {result['set5_x4']}: std {result['set5_x4_std']:.4f} dB")
        return 0
    if not args.seed_cards:
        parser.error("pass the seed runs' cards, or --sr-log")
    result = collect(weights.read_card(args.card), [json.loads(p.read_text()) for p in args.seed_cards])
    name = args.name or f"card_seeds_{result['builder']}"
    if (args.out / f"{name}.json").exists():  # a report's own words outlive a re-collection
        earlier = json.loads((args.out / f"{name}.json").read_text())
        result |= {k: earlier[k] for k in ("title", "about") if k in earlier}
    # the JSON is read back by the next collection (its title and about): a failed write keeps the old one whole
    write_atomic(args.out / f"{name}.json", (json.dumps(result, indent=1) + "\n").encode())
    write_atomic(args.out / f"{name}.md", markdown(result).encode())
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
