"""Move the four lr-5e-4 U-Net cards from this folder into data/weights, each recording the card it replaces (the
chain convention of the SR cards: trained_as / why / replaced_card, nested; chapter 5 reads it back).

Run once, when all four cards are here (README): ``python benchmarks/results/cards-lr5e-4/ship_cards.py``.
"""
import json
import shutil
from pathlib import Path

from deconvlab.weights import write_card

ROOT = Path(__file__).resolve().parents[3]
STAGED, SHIPPED = ROOT / "benchmarks/results/cards-lr5e-4", ROOT / "data/weights"
WHY = ("the U-Net recipe moved to peak learning rate 5e-4 by a rule fixed before the runs (three seeds at sigma 15, "
       "benchmarks/results/card_seeds_unet_lr5e-4.md; benchmarks/results/NOTES.md, 2026-12-05): the card's own "
       "command with --lr 5e-4 replaces it whatever it scores")


def cpu_psnr(card):
    full = [m for m in card["metrics"] if m.get("limit") is None]
    if card.get("sigma") is not None:
        return {m["dataset"]: m["psnr"] for m in full}
    return {f"{m['dataset']}@sigma{m['sigma']:g}": m["psnr"] for m in full}


NAMES = ("sigma15", "sigma25", "sigma50", "blind")
missing = [f"{STAGED / f'denoise-unet-{n}'}{suffix}" for n in NAMES
           for suffix in (".json", ".weights.npz", ".history.json")
           if not (STAGED / f"denoise-unet-{n}{suffix}").exists()]
if missing:  # the four ship together or not at all
    raise SystemExit(f"nothing moved: missing {', '.join(missing)}")

for name in NAMES:
    cid = f"denoise-unet-{name}"
    new = json.loads((STAGED / f"{cid}.json").read_text())
    old = json.loads((SHIPPED / f"{cid}.json").read_text())
    assert new["id"] == cid and new["architecture"] == old["architecture"], cid
    record = {"commit": old["commit"], "weights_sha256": old["weights_sha256"],
              "lr": old["training"]["lr"], "best_val_psnr": old["training"]["best_val_psnr"],
              "cpu_psnr": cpu_psnr(old), "steps": old["training"]["steps"],
              "gpu_shared_by": old["gpu_shared_by"]}
    if "supersedes" in old:
        record["supersedes"] = old["supersedes"]
    trained_as = new["command"].split("--id ")[1].split()[0]  # the sigma-15 card ran as a seed of the recipe check
    new["default"] = old["default"]
    new["supersedes"] = {"trained_as": trained_as, "why": WHY, "replaced_card": record}
    for suffix in (".weights.npz", ".history.json"):
        shutil.copyfile(STAGED / f"{cid}{suffix}", SHIPPED / f"{cid}{suffix}")
    write_card(new, SHIPPED / f"{cid}.json")
    print(cid, "replaced", old["commit"], "->", new["commit"], cpu_psnr(old), "->", cpu_psnr(new))
