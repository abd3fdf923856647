"""The article's claims, judged from the committed controlled experiments. Taught in chapter 3.

The verdicts come from ``benchmarks/results/ladder.json`` (experiments 1 and 2: six rungs, three or more seeds
each, trained on the GPU host by ``benchmarks/ladder.py``) and ``overfit.json`` (experiment 3), never from a
cell that trains live: a quick-profile run in CI must not be able to change a verdict. Chapter 3 and the claims
ledger (``book/claims.md``, written by ``tools/make_claims.py``) both read these rows, so they cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

from .paths import results_dir

# (from, to, the article's claim that the comparison tests)
IMAGE_CLAIMS = (
    ("b", "e", "better images than a plain CNN of the same size (both with the global residual)"),
    ("a", "c", "the transposed convolutions themselves (stride 1) change the result"),
    ("c", "d", "skip fusion gives better images (no global residual)"),
    ("d", "e", "the global residual adds to skip fusion"),
    ("e", "f", "changing resolution (strided encoder, transposed-conv decoder) gives better images"),
)
GRADIENT_CLAIMS = (("a", "d"), ("b", "e"))
OVERFIT_CLAIMS = (("b", "e"), ("d", "e"))


def load_results(name: str) -> dict[str, Any]:
    """A committed result file, ``benchmarks/results/<name>.json``, as a dict."""
    path = results_dir() / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it is committed with the book (benchmarks/ladder.py collect "
                                "writes it from the GPU runs)")
    return json.loads(path.read_text())


def pm(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``mean ± std`` (sample std over seeds), or the mean alone with "(1 seed)"."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f} (1 seed)"


def ladder_rows(ladder: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per rung: network, parameters, MACs per pixel, seeds, BSD68 and Set12 PSNR (mean ± std)."""
    return [{"rung": rung, "network": r["name"], "params": f"{r['params']:,}",
             "MACs/px": f"{r['macs_per_pixel']:,.0f}", "seeds": len(r["seeds"]),
             "BSD68 (dB)": pm(r["bsd68_mean"], r["bsd68_std"]), "Set12 (dB)": pm(r["set12_mean"], r["set12_std"])}
            for rung, r in ladder["rungs"].items()]


def _find(verdicts: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    return next((v for v in verdicts if all(v.get(k) == x for k, x in keys.items())), None)


#: The ladder rung (chapter 3) that trains each denoiser family's recipe at a smaller size.
RECIPE_RUNG = {"red_net": "e", "unet": "f"}
#: Recipes whose shipped card was trained again with other seeds (``benchmarks/card_seeds.py``): the result file.
CARD_SEEDS = {"red_net": "card_seeds_red_net", "unet": "card_seeds_unet_lr5e-4"}


def recipe_spread(builder: str, ladder: dict[str, Any] | None = None) -> float | None:
    """The measured spread of a denoiser trained once: twice the BSD68 seed std of its shipped recipe where that was
    trained with several seeds (:data:`CARD_SEEDS`), else of the ladder rung with its design at a smaller size and
    a shorter schedule (:data:`RECIPE_RUNG`); None when neither was measured. Taught in chapter 4."""
    name = CARD_SEEDS.get(builder)
    if name is not None and (results_dir() / f"{name}.json").exists():
        return 2 * load_results(name)["bsd68_std"]
    return rung_spread(builder, ladder)


def rung_spread(builder: str, ladder: dict[str, Any] | None = None) -> float | None:
    """Twice the BSD68 seed std of the ladder rung with a denoiser's design (:data:`RECIPE_RUNG`); None for a
    builder no rung trains or without ``ladder.json``."""
    rung = RECIPE_RUNG.get(builder)
    if rung is None:
        return None
    if ladder is None:
        try:
            ladder = load_results("ladder")
        except FileNotFoundError:
            return None
    std = ladder["rungs"].get(rung, {}).get("bsd68_std")
    return None if std is None else 2 * std


def card_spread(card: dict[str, Any]) -> float | None:
    """A shipped card's measured spread, for :func:`deconvlab.report.difference_verdict`: a denoiser's
    :func:`recipe_spread`; a post-upsampling SR card's, twice the Set5 x4 seed std of the x4 card's recipe
    (``card_seeds_sr_x4_post.json``, applied at every scale); None where no recipe was trained with several seeds."""
    arch = card["architecture"]
    if card["task"] == "denoise":
        return recipe_spread(arch["builder"])
    if card["task"] != "sr" or (arch.get("kwargs") or {}).get("body") != "resblocks":
        return None
    try:
        return 2 * load_results("card_seeds_sr_x4_post")["set5_x4_std"]
    except FileNotFoundError:
        return None


def bm3d_row(ladder: dict[str, Any], card_id: str = "denoise-sigma25") -> dict[str, Any]:
    """The shipped card's full-BSD68 PSNR against BM3D's published number.

    The card was trained once; :func:`recipe_spread` of its builder (twice the seed std of its recipe, trained with
    three seeds) serves as its spread in :func:`deconvlab.report.difference_verdict`.
    """
    from .report import difference_verdict
    from .weights import read_card

    card = read_card(card_id)
    ours = next(m["psnr"] for m in card["metrics"] if m["dataset"] == "bsd68" and m.get("limit") is None)
    bm3d = next(a["psnr"] for a in card["anchors"] if a["dataset"] == "bsd68" and a["method"] == "BM3D")
    gain, spread = round(ours - bm3d, 2), recipe_spread(card["architecture"]["builder"], ladder)
    return {"claim": "better images than a classical method (BM3D, published)",
            "experiment": f"1, shipped card {card_id}, all of BSD68",
            "measured": f"{gain:+.2f} dB (spread {spread:.3f})", "verdict": difference_verdict(gain, spread)}


def verdict_rows(ladder: dict[str, Any], overfit: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The claims with their experiment, the measured difference and the verdict by the stated rules."""
    rows = [bm3d_row(ladder)]
    pairs = ladder["all_pairs"]
    for a, b, claim in IMAGE_CLAIMS:
        v = pairs.get(f"{a}->{b}")
        if v is not None:
            rows.append({"claim": claim, "experiment": f"1, ladder {a} → {b}",
                         "measured": (f"{v['difference_db']:+.2f} dB BSD68 (2 × pooled std "
                                      f"{v['twice_pooled_std']:.2f}, noise spread {v['noise_spread']:.2f})"),
                         "verdict": v["verdict"]})
    for a, b in GRADIENT_CLAIMS:
        v = _find(ladder.get("gradient_verdicts", []), when="final", **{"from": a, "to": b})
        if v is not None:
            rows.append({"claim": "fewer vanishing gradients (trained networks, middle layers)",
                         "experiment": f"2, ladder {a} → {b}",
                         "measured": f"middle ratio {v['middle_ratio_from']:.2g} → {v['middle_ratio_to']:.2g}",
                         "verdict": v["verdict"]})
    if overfit:
        sizes = sorted({v["train_images"] for v in overfit["verdicts"]})
        for a, b in OVERFIT_CLAIMS:
            for n in (sizes[0], sizes[-1]) if sizes else ():
                v = _find(overfit["verdicts"], train_images=n, **{"from": a, "to": b})
                if v is not None:
                    rows.append({"claim": "less overfitting (smaller train - test gap)",
                                 "experiment": f"3, {n} training images, {a} → {b}",
                                 "measured": (f"gap {v['difference_db']:+.2f} dB (2 × pooled std "
                                              f"{v['twice_pooled_std']:.2f})"),
                                 "verdict": v["verdict"]})
    return rows


def resolution_rows(resolution: dict[str, Any]) -> list[dict[str, Any]]:
    """The article's "high-resolution training" claim (``resolution.json``): overfitting and gradients by patch size.

    Rung (e) of the ladder trained at several patch sizes with the same pixels per step; chapter 5 shows it.
    """
    gap, grad = resolution["gap_verdict"], resolution["gradient_verdict"]
    sizes = f"patch {gap['from_patch']} → {gap['to_patch']}"
    rows = [{"claim": "training at high resolution brings overfitting", "experiment": f"ladder rung e, {sizes}",
             "measured": f"gap {gap['difference_db']:+.3f} dB (2 × pooled std {gap['twice_pooled_std']:.3f})",
             "verdict": gap["verdict"]}]
    measured = (f"middle ratio {-grad['difference_log10']:+.2f} log10" if grad.get("difference_log10") is not None
                else grad["reason"])
    rows.append({"claim": "training at high resolution brings vanishing gradients",
                 "experiment": f"ladder rung e, {sizes}", "measured": measured, "verdict": grad["verdict"]})
    return rows
