"""Add small-subset metrics to the model cards, measured where the weights were made (GPU host, JAX).

CI cannot evaluate every card on full test sets in its time budget, so each card also carries the mean PSNR/SSIM on
the first ``--limit`` images of its first test set (per noise level or scale), computed here through the same
code path as ``python -m deconvlab evaluate --card``; ``tests/test_cards.py`` re-computes them on CPU with
TensorFlow and requires agreement within 0.02 dB. Usage: ``python benchmarks/card_subsets.py --limit 1``.
"""

from __future__ import annotations

import argparse
import sys

from deconvlab import recipes, weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1)
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--ids", nargs="*", default=None, help="only these cards (default: all)")
    args = parser.parse_args(argv)
    cards = [c for c in weights.list_cards(args.weights_dir) if args.ids is None or c["id"] in args.ids]
    firsts = [next(m["dataset"] for m in c.get("metrics") or [] if m.get("limit") is None) for c in cards]
    for first in firsts:  # before any card is rewritten
        if recipes.card_limit(first, args.limit) is None:  # a card entry records such a limit as none
            parser.error(f"--limit {args.limit} takes all of {first}: the card's whole-set numbers are that subset")
    for card, first in zip(cards, firsts, strict=True):
        model = weights.load_pretrained(card=card, directory=args.weights_dir)
        full = [m for m in card.get("metrics") or [] if m.get("limit") is None]
        kept = [m for m in card["metrics"] if m.get("limit") != args.limit]
        for entry in (m for m in full if m["dataset"] == first):
            result = recipes.run_evaluation(model, card["task"], first, channels=weights.card_channels(card),
                                            sigma=entry.get("sigma"), scale=entry.get("scale"), seed=0,
                                            limit=args.limit)
            protocol = {k: v for k, v in result.protocol.items() if k != "date"}
            sub = {"dataset": first, "protocol": protocol, "psnr": round(result.mean_psnr, 4),
                   "ssim": round(result.mean_ssim, 5), "limit": args.limit}
            for key in ("sigma", "scale"):
                if entry.get(key) is not None:
                    sub[key] = entry[key]
            kept.append(sub)
            print(f"{card['id']} {first} {entry.get('sigma') or entry.get('scale') or ''} "
                  f"limit {args.limit}: {sub['psnr']:.4f} dB", flush=True)
        card["metrics"] = kept
        weights.write_card(card, card["_path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
