"""The claims ledger (book/claims.md) and chapter 3's verdicts come from the committed results and agree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from deconvlab import claims

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import make_claims  # noqa: E402


def test_ledger_is_up_to_date():
    assert (REPO / "book" / "claims.md").read_text() == make_claims.render(), (
        "book/claims.md is stale: run python tools/make_claims.py")


def test_ledger_is_in_the_table_of_contents():
    assert "file: book/claims" in (REPO / "_toc.yml").read_text()


def _chapter3_verdict_table() -> str:
    nb = json.loads((REPO / "notebooks" / "03_conv_deconv_fuse.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "dl.claims.verdict_rows" in "".join(cell["source"]):
            return "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in cell["outputs"])
    raise AssertionError("chapter 3 has no cell calling dl.claims.verdict_rows")


def test_chapter3_and_the_ledger_give_the_same_verdicts():
    rows = claims.verdict_rows(claims.load_results("ladder"), claims.load_results("overfit"))
    chapter, ledger = _chapter3_verdict_table(), (REPO / "book" / "claims.md").read_text()
    assert len(rows) >= 10
    for row in rows:
        assert f"| {row['claim']} | {row['experiment']} | {row['measured']} | {row['verdict']} |" in chapter, row
        assert f"| {row['claim']} | {row['experiment']} | {row['measured']} | **{row['verdict']}** |" in ledger, row


def test_verdicts_come_from_the_committed_json_by_the_rule():
    ladder = claims.load_results("ladder")
    assert ladder["params_within_5_percent_of_e"] is True
    assert all(len(r["seeds"]) >= 3 for r in ladder["rungs"].values())
    assert ladder["test_images"] == {"bsd68": 68, "set12": 12}
    for v in ladder["verdicts"]:
        margin = max(v["twice_pooled_std"], v["noise_spread"])
        expected = ("not distinguishable" if abs(v["difference_db"]) <= margin
                    else "supported" if v["difference_db"] > 0 else "contradicted")
        assert v["verdict"] == expected, v


def test_verdict_rows_follow_the_json(tmp_path, monkeypatch):
    ladder = claims.load_results("ladder")
    flipped = json.loads(json.dumps(ladder))
    flipped["all_pairs"]["b->e"].update(difference_db=-0.5, verdict="contradicted")
    row = next(r for r in claims.verdict_rows(flipped) if r["experiment"] == "1, ladder b → e")
    assert row["verdict"] == "contradicted" and row["measured"].startswith("-0.50 dB")
    monkeypatch.setattr(claims, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        claims.load_results("ladder")


def test_the_untested_claims_are_said_plainly():
    ledger = (REPO / "book" / "claims.md").read_text()
    assert "## Not tested" in ledger and "Detection" in ledger


def test_recipe_spread_prefers_the_shipped_recipes_own_seeds(tmp_path, monkeypatch):
    ladder = {"rungs": {"e": {"bsd68_std": 0.07}, "f": {"bsd68_std": 0.02}}}
    monkeypatch.setattr(claims, "results_dir", lambda: tmp_path)
    assert claims.recipe_spread("red_net", ladder) == pytest.approx(0.14)  # no seed runs: the ladder's rung
    (tmp_path / "card_seeds_red_net.json").write_text(json.dumps({"bsd68_std": 0.003}))
    assert claims.recipe_spread("red_net", ladder) == pytest.approx(0.006)
    assert claims.recipe_spread("unet", ladder) == pytest.approx(0.04)
    (tmp_path / "card_seeds_unet.json").write_text(json.dumps({"bsd68_std": 0.15}))  # the recipe it replaced
    assert claims.recipe_spread("unet", ladder) == pytest.approx(0.04)
    (tmp_path / "card_seeds_unet_lr5e-4.json").write_text(json.dumps({"bsd68_std": 0.15}))
    assert claims.recipe_spread("unet", ladder) == pytest.approx(0.30)
    assert claims.recipe_spread("dncnn", ladder) is None


@pytest.mark.parametrize("name", ["card_seeds_red_net", "card_seeds_unet_lr5e-4"])
def test_committed_card_seeds_start_from_the_shipped_card(name):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import card_seeds

    from deconvlab import weights

    committed = claims.load_results(name)
    assert claims.CARD_SEEDS[committed["builder"]] == name
    card = weights.read_card(committed["card"])
    assert committed["seeds"][0] == card["seed"] and committed["commits"][0] == card["commit"]
    assert committed["bsd68"][0] == round(card_seeds.full_bsd68(card)["psnr"], 4)
    assert len(set(committed["seeds"])) == len(committed["seeds"]) >= 3
    assert committed["bsd68_std"] == pytest.approx(float(np.std(committed["bsd68"], ddof=1)), abs=1e-4)


def test_the_replaced_unet_recipes_seeds_start_from_the_card_it_shipped():
    from deconvlab import weights

    # chapter 5 tells from these runs why the recipe changed; the first is the card that the 5e-4 one replaced
    committed = claims.load_results("card_seeds_unet")
    replaced = weights.read_card(committed["card"])["supersedes"]["replaced_card"]
    assert replaced["lr"] == 1e-3 and committed["commits"][0] == replaced["commit"]
    assert committed["bsd68"][0] == replaced["cpu_psnr"]["bsd68"]


def test_card_seeds_reports_a_seed_whose_last_validation_diverged(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import card_seeds

    from deconvlab import weights

    # deconvlab.fused writes a diverged validation as null: a seed that collapsed after its kept checkpoint
    seed = {k: v for k, v in weights.read_card("denoise-sigma25").items() if not k.startswith("_")}
    seed["seed"], seed["training"]["curve"][-1]["val_psnr"] = 1, None
    (tmp_path / "seed1.json").write_text(json.dumps(seed))
    assert card_seeds.main([str(tmp_path / "seed1.json"), "--card", "denoise-sigma25", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "card_seeds_red_net.json").read_text())["held_aside_last"][1] is None
    report = (tmp_path / "card_seeds_red_net.md").read_text().splitlines()
    assert "| diverged |" in next(line for line in report if line.startswith("| 1 |"))


@pytest.mark.parametrize("name", ["card_seeds_red_net", "card_seeds_unet", "card_seeds_unet_lr5e-4"])
def test_committed_card_seeds_reports_are_what_the_script_writes(name):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import card_seeds

    assert card_seeds.markdown(claims.load_results(name)) == (claims.results_dir() / f"{name}.md").read_text()
