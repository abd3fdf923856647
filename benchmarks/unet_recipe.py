"""The sigma-25 U-Net's recipe, one factor at a time: patch size, a fourth scale, weight averaging (issue 15).

The GPU half ran on one H200 (`benchmarks/gpu_fused.sh`, four `python -m deconvlab.fused` jobs sharing it, the same
wall-clock budget each; command and outcome in ``results/NOTES.md``). A control with the card's recipe of that time (peak lr 1e-3) and
three variants, each changing one factor. This script reads the cards the run wrote (``--cards``: the folder
of the run's archive), applies the rule fixed before the run (a variant is adopted when its held-aside PSNR beats
the control's by more than twice the seed std of the ladder's U-Net rung) and
writes ``unet_recipe_sigma25.json`` and ``.md`` into ``--out`` (curves included, for chapter 5's figure).

Usage: ``python benchmarks/unet_recipe.py --cards <folder with s25-*.json>`` (a second, no model is run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from deconvlab import claims

HERE = Path(__file__).parent
RUNS = {
    "s25-control": "control: the first recipe (lr 1e-3, patch 96, batch 64, 3 scales 48/96/192)",
    "s25-patch128": "A: patch 128, batch 36 (same pixels per step)",
    "s25-4scales": "B: a fourth scale (48/96/128/160, depths 2/2/2/1)",
    "s25-ema": "C: weight averaging (EMA 0.999)",
}


def row(card: dict) -> dict:
    t = card["training"]
    return {"id": card["id"], "what": RUNS[card["id"]], "params": card["params"],
            "macs_per_pixel": card["macs_per_pixel"], "steps": t["steps"], "batch": t["batch"], "patch": t["patch"],
            "train_seconds": t["train_seconds"], "best_val_psnr": t["best_val_psnr"],
            # the curve's val_psnr is None where a step diverged (deconvlab.fused): take the step best_val_psnr names
            "best_step": next(c["step"] for c in t["curve"] if c["val_psnr"] == t["best_val_psnr"]),
            "set12_gpu": card.get("gpu_metrics", {}).get("set12@25"),
            "curve": [[c["step"], c["val_psnr"]] for c in t["curve"]], "ema": t.get("ema")}


def collect(folder: Path) -> dict:
    rows = [row(json.loads((folder / f"{card_id}.json").read_text())) for card_id in RUNS]
    # the rule fixed before this run: the ladder's U-Net rung (the recipe's own seeds were measured later)
    spread = claims.rung_spread("unet")
    control = rows[0]["best_val_psnr"]
    for r in rows[1:]:
        diff = round(r["best_val_psnr"] - control, 4)
        r.update(difference_db=diff, adopted=diff > spread)
    return {"task": "denoise sigma 25, U-Net", "rule": f"a variant is adopted when its held-aside Train400 PSNR "
            f"beats the control's by more than {spread:.3f} dB (twice the seed std of the ladder's U-Net rung, fixed before the run)",
            "spread_db": round(spread, 4), "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "runs": rows}


def markdown(result: dict) -> str:
    lines = ["# The sigma-25 U-Net's recipe, one factor at a time", "",
             "Four jobs shared one H200 with the same wall-clock budget (455 s each); seed 0; the checkpoint of "
             "each is chosen on held-aside Train400 test_393..400 (sigma 25), never on a test set.",
             f"Rule, fixed before the run: {result['rule']}.", "",
             "| run | params | MACs/px | steps | held-aside PSNR (dB) | - control | adopted | Set12 (GPU, bf16) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        diff = "" if "difference_db" not in r else f"{r['difference_db']:+.3f}"
        adopted = "" if "adopted" not in r else ("yes" if r["adopted"] else "no")
        lines.append(f"| {r['what']} | {r['params']:,} | {r['macs_per_pixel']:,.0f} | {r['steps']:,} | "
                     f"{r['best_val_psnr']:.3f} | {diff} | {adopted} | {r['set12_gpu']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=Path, required=True, help="folder holding the run's s25-*.json cards")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = collect(args.cards)
    (args.out / "unet_recipe_sigma25.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "unet_recipe_sigma25.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
