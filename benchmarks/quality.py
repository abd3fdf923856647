"""Result tables under the published protocols: shipped models beside classical methods run live and cited anchors.

Writes ``quality.csv`` (one row per task, data set, setting and method) and ``quality.md`` (the tables of the
book and the README) into ``--out``. Shipped models are evaluated from their stored weights with
``deconvlab.evaluate`` (float32 inference, outputs clipped, noise seed 0 + image index); classical methods
run on the same degraded images; published numbers come from the model cards' anchors, with citations.
Usage: ``DECONVLAB_DATA=... python benchmarks/quality.py [--tasks denoise sr deblur] [--bm3d-limit N]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from deconvlab import classical, config, data, weights
from deconvlab.evaluate import evaluate
from deconvlab.tasks import protocol_psf

DENOISE_SETS = ("bsd68", "set12")
SR_SETS = ("set5", "set14")
SIGMAS = (15, 25, 50)
SCALES = (2, 3, 4)
#: Train400 images used to tune the Wiener balance and the Richardson-Lucy iterations (none is a test image).
TUNE_IMAGES = 24
#: The issue's goals (dB) for the shipped models.
GOALS = {
    ("denoise", "bsd68", "sigma 15"): 31.80, ("denoise", "bsd68", "sigma 25"): 29.30,
    ("denoise", "bsd68", "sigma 50"): 26.35, ("denoise", "set12", "sigma 25"): 30.50,
    ("sr", "set5", "x2"): 37.53, ("sr", "set5", "x3"): 33.66, ("sr", "set5", "x4"): 31.35,
    ("sr", "set14", "x2"): 33.03, ("sr", "set14", "x3"): 29.77, ("sr", "set14", "x4"): 28.01,
}


def _row(task, dataset, setting, method, result=None, *, psnr=None, ssim=None, images=None, source="measured",
         seconds=None, note=""):
    if result is not None:
        psnr, ssim = result.mean_psnr, result.mean_ssim
        images, seconds = len(result.rows), float(np.mean([r["seconds"] for r in result.rows]))
    return {"task": task, "dataset": dataset, "setting": setting, "method": method, "images": images,
            "psnr": None if psnr is None else round(float(psnr), 3),
            "ssim": None if ssim is None else round(float(ssim), 4),
            "seconds_per_image": None if seconds is None else round(float(seconds), 3),
            "source": source, "note": note}


def _ours(card: dict, task: str, name: str, setting: str, ds, live: bool, **kw) -> tuple[dict, dict | None]:
    """Our model's row: evaluated here with ``live``, else the card's full-set numbers (made with the weights)."""
    if live:
        res = evaluate(weights.load_pretrained(card=card), ds, task, **kw)
        return _row(task, name, setting, f"ours: {card['id']}", res), _row(
            task, name, setting, _INPUT_LABEL[task], psnr=res.mean_input_psnr, ssim=res.mean_input_ssim,
            images=len(res.rows))
    key = "sigma" if task == "denoise" else "scale"
    for m in card.get("metrics") or []:
        if m["dataset"] == name and m.get("limit") is None and (key not in kw or m.get(key) == kw[key]):
            where = f"model card ({m['protocol'].get('backend')}, {m['protocol'].get('device')})"
            return _row(task, name, setting, f"ours: {card['id']}", psnr=m["psnr"], ssim=m["ssim"],
                        images=m["protocol"].get("images"), source=where), None
    raise SystemExit(f"card {card['id']} has no full-set metrics for {name} {kw}: run with --live-models")


_INPUT_LABEL = {"denoise": "noisy input", "sr": "bicubic", "deblur": "blurred input"}


def _anchor_rows(card, task, setting_of) -> list[dict]:
    rows = []
    for a in card.get("anchors") or []:
        rows.append(_row(task, a["dataset"], setting_of(a), a["method"], psnr=a.get("psnr"), ssim=a.get("ssim"),
                         source="published", note=a.get("citation", "")))
    return rows


def denoise_rows(bm3d_limit: int | None, live: bool, log) -> list[dict]:
    rows = []
    for sigma in SIGMAS:
        card = weights.read_card(f"denoise-sigma{sigma}")
        setting = f"sigma {sigma}"
        for name in DENOISE_SETS:
            ds = data.load_dataset(name, mode="gray")
            ours, _ = _ours(card, "denoise", name, setting, ds, live, sigma=sigma)
            rows.append(ours)
            log(rows[-1])
            first = None
            for label, fn in (("NLM (skimage)", classical.nlm_denoise), ("TV (Chambolle)", classical.tv_denoise),
                              ("wavelet (BayesShrink)", classical.wavelet_denoise)):
                res = evaluate(lambda x, f=fn, s=sigma: f(x, s), ds, "denoise", sigma=sigma)
                first = first or res
                rows.append(_row("denoise", name, setting, label, res))
                log(rows[-1])
            rows.append(_row("denoise", name, setting, "noisy input", psnr=first.mean_input_psnr,
                             ssim=first.mean_input_ssim, images=len(first.rows)))
            subset = data.load_dataset(name, mode="gray", limit=bm3d_limit) if bm3d_limit else ds
            res = evaluate(lambda x, s=sigma: classical.bm3d_denoise(x, s), subset, "denoise", sigma=sigma)
            rows.append(_row("denoise", name, setting, "BM3D (bm3d package)", res,
                             note="" if len(subset.images) == len(ds.images)
                             else f"first {len(subset.images)} of {len(ds.images)} images"))
            log(rows[-1])
        rows += _anchor_rows(card, "denoise", lambda a, s=setting: s)
    return rows


def sr_rows(live: bool, log) -> list[dict]:
    rows = []
    card = weights.read_card("sr-x2-3-4")
    for scale in SCALES:
        for name in SR_SETS:
            ds = data.load_dataset(name)
            ours, _ = _ours(card, "sr", name, f"x{scale}", ds, live, scale=scale)
            # The bicubic baseline is the pre-upsampled input itself: identity on the model's input.
            res = evaluate(lambda x: x, ds, "sr", scale=scale, upsample="pre")
            rows += [ours, _row("sr", name, f"x{scale}", "bicubic", res)]
            log(rows[-2])
    rows += _anchor_rows(card, "sr", lambda a: f"x{a['scale']}")
    return rows


def deblur_rows(live: bool, log) -> tuple[list[dict], dict]:
    rows = []
    psf = protocol_psf()
    tune = data.load_dataset("train400", mode="gray", limit=TUNE_IMAGES).images
    balance, wiener_scores = classical.tune_wiener_balance(tune, psf, return_scores=True)
    iterations, rl_scores = classical.tune_rl_iterations(tune, psf, return_scores=True)
    tuning = {"train_images": TUNE_IMAGES, "wiener_balance": balance, "rl_iterations": iterations,
              "wiener_scores": wiener_scores, "rl_scores": rl_scores}
    log(tuning)
    card = weights.read_card("deblur")
    setting = "Gaussian 1.6, noise 2"
    for name in DENOISE_SETS:
        ds = data.load_dataset(name, mode="gray")
        ours, _ = _ours(card, "deblur", name, setting, ds, live)
        res = evaluate(lambda x: classical.wiener_deconv(x, psf, balance), ds, "deblur")
        rows += [ours, _row("deblur", name, setting, "blurred input", psnr=res.mean_input_psnr,
                            ssim=res.mean_input_ssim, images=len(res.rows))]
        rows.append(_row("deblur", name, setting, f"Wiener (balance {balance:g}, tuned)", res))
        log(rows[-1])
        rows.append(_row("deblur", name, setting, f"Richardson-Lucy ({iterations} it., tuned)",
                         evaluate(lambda x: classical.richardson_lucy_deconv(x, psf, iterations), ds, "deblur")))
        log(rows[-1])
    return rows, tuning


def _fmt(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], meta: dict) -> str:
    out = [f"# Result tables ({meta['date']})", "",
           f"Command: `{meta['command']}` · ours: float32 inference of the shipped weights (where: source "
           f"column) · classical methods on {meta['device']} on the same degraded images · "
           "published numbers as cited. PSNR in dB on the 255 scale (SR: Y channel, `scale` pixels shaved).", ""]
    tasks = {"denoise": "Gray denoising (AWGN, DnCNN protocol)", "sr": "Super-resolution (bicubic, Y channel)",
             "deblur": "Deblurring (Gaussian PSF sigma 1.6 on 25x25, symmetric boundary, AWGN sigma 2)"}
    for task, title in tasks.items():
        sub = [r for r in rows if r["task"] == task]
        if not sub:
            continue
        out += [f"## {title}", "", "| data set | setting | method | PSNR | SSIM | images | goal | source |",
                "|---|---|---|---:|---:|---:|---:|---|"]
        for r in sub:
            goal = GOALS.get((task, r["dataset"], r["setting"])) if r["method"].startswith("ours") else None
            src = r["source"] + (f": {r['note']}" if r["note"] else "")
            cells = [r["dataset"], r["setting"], r["method"], _fmt(r["psnr"], 2), _fmt(r["ssim"], 4),
                     str(r["images"] or ""), _fmt(goal, 2), src]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["denoise", "sr", "deblur"])
    parser.add_argument("--bm3d-limit", type=int, help="run BM3D on the first N images only (it is slow)")
    parser.add_argument("--live-models", action="store_true",
                        help="evaluate the shipped models here (slow on a CPU) instead of quoting their cards")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def log(item):
        print(f"[{time.perf_counter() - start:7.1f} s] {item}", flush=True)

    rows, extra = [], {}
    if "denoise" in args.tasks:
        rows += denoise_rows(args.bm3d_limit, args.live_models, log)
    if "sr" in args.tasks:
        rows += sr_rows(args.live_models, log)
    if "deblur" in args.tasks:
        deblur, extra["deblur_tuning"] = deblur_rows(args.live_models, log)
        rows += deblur
    meta = {"date": dt.date.today().isoformat(), "device": config.device_name(), "backend": config.keras_backend(),
            "python": platform.python_version(),
            "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seconds": round(time.perf_counter() - start, 1), **extra}
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "quality.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "quality.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    (args.out / "quality.md").write_text(markdown(rows, meta) + "\n")
    log(f"wrote {args.out}/quality.csv, quality.json, quality.md")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
