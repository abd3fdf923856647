"""The shipped super-resolution cards in use: ``enhance --task sr --scale S`` loads the default card for S and
returns exactly S times an odd-sized input, and the post-upsampling cards tile exactly (whole-image result up to
float rounding) with the overlap read from their layers.

Numbers and the default rule are checked in tests/test_cards.py; these tests run the shipped weights on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deconvlab import cli, infer, io, weights

POST = {2: "sr-x2-post", 3: "sr-x3-post", 4: "sr-x4-post"}


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _png(path: Path, shape, seed) -> Path:
    Image.fromarray((_rand(shape, seed) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def post_models():
    return {}


def _post(cache, scale):
    if scale not in cache:
        cache[scale] = weights.load_pretrained(card=POST[scale])
    return cache[scale]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_post_upsampling_cards_tile_exactly_on_an_odd_image(scale, post_models):
    model = _post(post_models, scale)
    radius, stride = infer.tiling_geometry(model)
    overlap = infer.default_overlap(model)
    assert stride == 1 and overlap == 2 * radius  # no downsampling: any origin; reach in low-resolution pixels
    assert infer.model_scale(model) == scale
    tile = 2 * overlap + 7  # just above the least exact tile, off any grid
    lr = _rand((tile + overlap // 2 + 3, 41 if scale == 4 else tile + 9), seed=scale)  # odd sides, 2 x 1 or 2 x 2 tiles
    whole = infer.predict_image(model, lr)
    assert whole.shape == (scale * lr.shape[0], scale * lr.shape[1])
    tiled = infer.tile_predict(model, lr, tile=tile)
    assert len(infer._starts(lr.shape[0], tile, tile - overlap)) == 2
    # float rounding only (measured on CPU with TensorFlow: 1.4e-6, 1.5e-5, 1.9e-6 for x2, x3, x4)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    # the control: a quarter of that overlap (margin overlap // 4 < radius) is not exact (0.028, 0.008, 0.0009)
    rough = infer.tile_predict(model, lr, tile=tile, overlap=overlap // 4)
    assert np.abs(rough - whole).max() > 5e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_enhance_uses_the_default_card_and_returns_scale_times_an_odd_image(scale, tmp_path, capsys):
    default = weights.find_card("sr", scale=scale)
    gray, rgb = _png(tmp_path / "gray.png", (23, 17), 1), tmp_path / "rgb.png"
    Image.fromarray((_rand((13, 11, 3), 2) * 255).astype(np.uint8)).save(rgb)
    for src, shape in ((gray, (23 * scale, 17 * scale)), (rgb, (13 * scale, 11 * scale, 3))):
        out = tmp_path / f"out-{src.stem}.png"
        code = cli.main(["enhance", str(src), str(out), "--task", "sr", "--scale", str(scale)])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert f"with {default['id']}" in printed.out
        result = np.asarray(Image.open(out))
        assert result.shape == shape
        model = weights.load_pretrained(card=default)
        expected = infer.enhance(model, io.read_image(src), "sr", scale=scale)
        assert np.abs(result.astype(float) - np.rint(expected * 255)).max() <= 1


def test_enhance_tiles_the_x2_default_exactly_and_old_cards_stay_loadable(tmp_path, capsys):
    src = _png(tmp_path / "big.png", (131, 125), 3)  # larger than --tile 121 (> 2 x the overlap of 54): 2 x 2 tiles
    outputs = {}
    for name, extra in (("tiled", ["--tile", "121"]), ("whole", ["--tile", "0"]), ("old", ["--weights", "sr-x2-3-4"])):
        out = tmp_path / f"{name}.png"
        code = cli.main(["enhance", str(src), str(out), "--task", "sr", "--scale", "2", "--quiet", *extra])
        assert code == 0, capsys.readouterr().err
        outputs[name] = np.asarray(Image.open(out)).astype(int)
        assert outputs[name].shape == (262, 250)
    assert weights.find_card("sr", scale=2)["id"] == POST[2]
    assert np.abs(outputs["tiled"] - outputs["whole"]).max() <= 1  # 8-bit rounding of equal floats
    assert np.abs(outputs["old"] - outputs["whole"]).mean() > 0.1  # another network


@pytest.mark.skipif(not os.environ.get("DECONVLAB_DATA"), reason="needs Set5: set DECONVLAB_DATA")
def test_finish_card_measures_an_sr_card_at_its_scale(tmp_path, save_tiny_cards):
    from deconvlab import recipes

    folder = save_tiny_cards(tmp_path, seed=3)
    path = next(p for p in folder.glob("*.json") if weights.read_card(p)["task"] == "sr")
    card = recipes.finish_card(path, ["set5"], log=lambda _: None)
    (entry,) = card["metrics"]
    assert (entry["dataset"], entry["scale"], entry["limit"], entry["protocol"]["images"]) == ("set5", 2, None, 5)
    assert entry["protocol"]["upsample"] == "post" and entry["protocol"]["scale"] == 2
    assert {(a["method"], a["dataset"], a["scale"]) for a in card["anchors"]} == {("VDSR", "set5", 2),
                                                                                  ("FSRCNN", "set5", 2)}
    assert weights.read_card(path)["metrics"] == card["metrics"]  # written into the card
