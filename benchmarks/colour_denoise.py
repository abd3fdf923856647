"""Colour denoising with the gray U-Net cards: per RGB channel or per Y/Cb/Cr channel, beside CBM3D, on CBSD68.

The protocol is chapter 1's, in colour: AWGN of std sigma/255 on every channel of the [0, 1] RGB image (image ``i``
with seed ``i``, not clipped), output clipped to [0, 1], PSNR over all three channels on the 255 scale. Methods,
all on the same noisy images:

* ``blind RGB``: the blind card (``denoise-unet-blind``) on R, G and B in turn (what ``enhance`` does today);
* ``blind YCbCr``: the same card on Y, Cb and Cr (MATLAB ``rgb2ycbcr``), then back to RGB: one factor changed,
  the colour space. Each YCbCr channel is a weighted sum of the RGB channels, so it carries about 0.55-0.57 of the
  RGB noise and its three noises are correlated: a blind model has to find that level by itself;
* ``sigma RGB``: the card for the true sigma on R, G and B (what a user who knows sigma gets);
* ``CBM3D``: ``bm3d.bm3d_rgb`` with the true sigma (opponent colour space, the colour BM3D of Dabov et al. 2007).

CBM3D takes about 8 s per image on 2 cores: the whole set at three levels takes about 40 minutes there;
``--images N`` measures the first N images only. ``--methods`` measures only the named methods and copies the others
from the existing ``colour_denoise.json`` (same images): CBM3D does not depend on the cards, so a card swap needs only
the U-Net rows again. Usage: ``python benchmarks/colour_denoise.py``; writes ``colour_denoise.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIGMAS = (15, 25, 50)
METHODS = ("blind RGB", "blind YCbCr", "sigma RGB", "CBM3D")


def run_of(result: dict, method: str) -> dict:
    """The meta of the run that measured ``method``: this one, or the one it was copied from."""
    return result["meta"].get("copied", {}).get(method, result["meta"])


def markdown(result: dict) -> str:
    """The report beside ``colour_denoise.json``; each method's seconds are those of the run that measured it."""
    meta, rows = result["meta"], result["psnr"]
    lines = [f"# Colour denoising on {meta['images']} ({meta['date']})", "",
             f"PSNR (dB, RGB, 255 scale), AWGN seed i on image i; {meta['cores']} CPU cores, Keras "
             f"{meta['keras']} on {meta['backend']}; command `{meta['command'].strip()}`.", "",
             "| method | " + " | ".join(f"sigma {s}" for s in SIGMAS) + " | seconds (all images, all sigma) |",
             "|---|" + "---:|" * (len(SIGMAS) + 1)]
    lines += [f"| {m} | " + " | ".join(f"{rows[m][str(s)]:.2f}" for s in SIGMAS)
              + f" | {run_of(result, m)['seconds_per_method'][m]:.0f} |" for m in METHODS]
    lines += [f"\n{m}: copied from the run of {c['date']} (`{c['command'].strip()}`), its seconds too."
              for m, c in meta.get("copied", {}).items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=68)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="measure these; copy the others from the existing results (same images)")
    args = parser.parse_args(argv)
    args.methods = list(dict.fromkeys(args.methods))  # a method named twice is measured once
    kept = [m for m in METHODS if m not in args.methods]
    previous = None
    if kept:
        try:
            previous = json.loads((args.out / "colour_denoise.json").read_text())
        except (OSError, ValueError) as error:
            print(f"cannot copy {', '.join(kept)} from {args.out / 'colour_denoise.json'}: {error}", file=sys.stderr)
            return 1
        untimed = [m for m in kept if m not in run_of(previous, m).get("seconds_per_method", {})
                   or m not in previous.get("per_image", {})]
        if untimed:  # found now, not after the measurement
            print(f"cannot copy {', '.join(untimed)}: the committed run records no values or time for it",
                  file=sys.stderr)
            return 1

    import keras

    from deconvlab import classical, data, degrade, infer, metrics, weights
    from deconvlab.io import write_atomic

    start = time.perf_counter()
    cbsd68 = data.load_dataset("cbsd68", mode="rgb", limit=args.images)
    if cbsd68.is_fallback:
        print("CBSD68 is not available (set DECONVLAB_DATA): nothing measured", file=sys.stderr)
        return 1
    if previous is not None and previous["meta"]["names"] != cbsd68.names:
        print("the existing results cover other images: measure every method", file=sys.stderr)
        return 1
    blind = weights.load_pretrained(card=weights.read_card("denoise-unet-blind"))

    psnr = {m: {s: [] for s in SIGMAS} for m in METHODS}
    seconds = {m: 0.0 for m in METHODS}
    for s in SIGMAS:
        known = weights.load_pretrained(card=weights.read_card(f"denoise-unet-sigma{s}"))
        run = {"blind RGB": lambda x: infer.enhance(blind, x, "denoise"),
               "blind YCbCr": lambda x: infer.enhance(blind, x, "denoise", colour="ycbcr"),
               "sigma RGB": lambda x, m=known: infer.enhance(m, x, "denoise"),
               "CBM3D": lambda x, s=s: classical.bm3d_denoise(x, s)}
        for i, clean in enumerate(cbsd68.images):
            noisy = degrade.add_gaussian_noise(clean, s, seed=i)
            for method in args.methods:
                t0 = time.perf_counter()
                out = run[method](noisy).clip(0.0, 1.0)
                seconds[method] += time.perf_counter() - t0
                psnr[method][s].append(metrics.psnr(clean, out))
            print(f"sigma {s} image {i + 1}/{len(cbsd68.images)}: " + ", ".join(
                f"{m} {psnr[m][s][-1]:.2f}" for m in args.methods), flush=True)
    for m in kept:
        psnr[m] = {s: previous["per_image"][m][str(s)] for s in SIGMAS}
    rows = {m: {str(s): round(statistics.mean(v), 3) for s, v in by_sigma.items()} for m, by_sigma in psnr.items()}
    better = {str(s): rows["blind YCbCr"][str(s)] - rows["blind RGB"][str(s)] for s in SIGMAS}
    meta = {"date": dt.date.today().isoformat(), "images": (f"CBSD68, first {len(cbsd68.images)} of 68" if len(cbsd68.images) < 68
                                             else "CBSD68, all 68"),
            "names": cbsd68.names, "keras": keras.__version__, "backend": keras.backend.backend(),
            "cores": os.cpu_count(), "wall_s": round(time.perf_counter() - start, 1),
            "seconds_per_method": {m: round(seconds[m], 1) for m in args.methods},  # this run's only
            "command": shlex.join(["python", "benchmarks/colour_denoise.py",
                                    *(argv if argv is not None else sys.argv[1:])])}
    if kept:  # where the copied rows were measured
        # with the source run's own timings: speed ratios are compared within one run
        meta["copied"] = {m: previous["meta"].get("copied", {}).get(m, {
            "date": previous["meta"]["date"], "command": previous["meta"]["command"],
            "seconds_per_method": previous["meta"]["seconds_per_method"]}) for m in kept}
    result = {"meta": meta, "psnr": rows, "per_image": {m: {str(s): [round(x, 4) for x in v] for s, v in b.items()}
                                                        for m, b in psnr.items()},
              "ycbcr_minus_rgb_blind": {s: round(d, 3) for s, d in better.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    # the JSON is also the next --methods run's input: a failed write must keep the old one whole
    write_atomic(args.out / "colour_denoise.json", json.dumps(result, indent=1).encode())
    write_atomic(args.out / "colour_denoise.md", markdown(result).encode())
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
