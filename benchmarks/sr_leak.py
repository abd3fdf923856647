"""How much a trained-on copy inflated the SR cards' held-aside score: T91's t65 (held aside) is t36 (trained on).

The post-upsampling SR cards choose their checkpoint on the last 8 T91 images. Until the fifteenth session t36, a
copy of the held-aside t65, was in their training set. This script scores each held-aside image, exactly as
training validates (``deconvlab.fused.held_aside_sr``: centre crops, MATLAB bicubic input, output clipped, ``scale``
pixels shaved), under the card trained with the copy (read from git at ``--old``) and the card trained without it
(the working tree's), and reports t65 against the mean of the other seven.

Usage: ``DECONVLAB_DATA=../shared/datasets python benchmarks/sr_leak.py --old f2efc14`` (CPU, TensorFlow, about a
minute); writes ``sr_leak.json`` and ``sr_leak.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from deconvlab import fused, paths, weights  # noqa: E402

HELD = 8


def old_cards(commit: str, folder: Path, ids: list[str]) -> None:
    """The cards and weights files of ``ids`` as committed at ``commit``, written into ``folder``."""
    for cid in ids:
        for suffix in (".json", ".weights.npz"):
            blob = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{commit}:data/weights/{cid}{suffix}"])
            (folder / f"{cid}{suffix}").write_bytes(blob)


def held_psnr(model, lr: np.ndarray, hr: np.ndarray, scale: int) -> list[float]:
    """PSNR of each held-aside image, as the fused trainer's validation computes it (float32 here)."""
    out = np.clip(np.asarray(model.predict(lr, batch_size=1, verbose=0), np.float32), 0, 1)
    inner = (slice(None), slice(scale, -scale), slice(scale, -scale))
    mse = np.mean(np.square(out[inner] - hr[inner]), axis=(1, 2, 3))
    return [float(v) for v in -10 * np.log10(mse)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="commit holding the cards trained with t36")
    parser.add_argument("--out", type=Path, default=paths.results_dir())
    args = parser.parse_args(argv)
    images, names = fused.sr_training_images(("t91",))
    held_names = names["t91"][-HELD:]
    ids = [f"sr-x{s}-post" for s in (2, 3, 4)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old_cards(args.old, Path(tmp), ids)
        for s, cid in zip((2, 3, 4), ids, strict=True):
            _, (lr, hr) = fused.held_aside_sr(images, s, count=HELD)
            for label, folder in (("with t36", tmp), ("without t36", None)):
                card = weights.read_card(Path(folder or paths.weights_dir()) / f"{cid}.json")
                model = weights.load_pretrained(card=card, directory=folder)
                scores = dict(zip(held_names, held_psnr(model, lr, hr, s), strict=True))
                others = [v for k, v in scores.items() if k != "t65"]
                rows.append({"card": cid, "scale": s, "trained": label, "commit": card["commit"],
                             "t65": round(scores["t65"], 4), "other_seven": round(float(np.mean(others)), 4),
                             "all_eight": round(float(np.mean(list(scores.values()))), 4),
                             "per_image": {k: round(v, 4) for k, v in scores.items()}})
                print(f"{cid} {label}: t65 {scores['t65']:.3f}, other seven {np.mean(others):.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sr_leak.json").write_text(json.dumps({"old_commit": args.old, "rows": rows}, indent=2) + "\n")
    lines = [f"Held-aside T91 PSNR (dB) as training validates it, CPU, {os.environ['KERAS_BACKEND']}, float32; "
             f"the cards trained with t36 from commit {args.old}, those without from the working tree.", "",
             "| card | trained | t65 (dB) | other seven (dB) | t65 - others | all eight |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['card']} | {r['trained']} | {r['t65']:.3f} | {r['other_seven']:.3f} | "
              f"{r['t65'] - r['other_seven']:+.3f} | {r['all_eight']:.3f} |" for r in rows]
    (args.out / "sr_leak.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
