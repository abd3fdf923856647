"""Tests of deconvlab.weights: float16 round trip, model cards, card lookup, hash and corruption checks."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from deconvlab import models, recipes, weights
from deconvlab.errors import ArgumentError, WeightsError

# Runs on every Keras backend: `make unit-jax` (part of `make test`) repeats these tests on JAX.
pytestmark = pytest.mark.backends


@pytest.fixture(scope="module")
def tiny() -> keras.Model:
    keras.utils.set_random_seed(0)
    return models.red_net(channels=1, depth=2, width=4)


@pytest.fixture
def saved(tiny, tmp_path) -> dict:
    return weights.save_pretrained(tiny, {"task": "denoise", "sigma": 25, "command": "pytest"}, tmp_path)


def _write(card: dict, folder) -> None:
    weights.write_card(card, folder / f"{card['id']}.json")


def test_round_trip_is_float16_faithful(tiny, saved, tmp_path):
    loaded = weights.load_pretrained("denoise", sigma=25, directory=tmp_path)
    for a, b in zip(tiny.get_weights(), loaded.get_weights(), strict=True):
        scale = max(float(np.abs(a).max()), 1e-12)
        assert float(np.abs(a - b).max()) / scale < 1e-3
        assert b.dtype == np.float32
    x = np.random.default_rng(0).random((1, 9, 11, 1), dtype=np.float32)
    before, after = keras.ops.convert_to_numpy(tiny(x)), keras.ops.convert_to_numpy(loaded(x))
    # float16 rounds each weight by <= 2**-11 relative; through the net the output moves by about as much
    assert float(np.abs(before - after).max()) / float(np.abs(before).max()) < 2e-3
    with np.load(tmp_path / saved["weights_file"], allow_pickle=False) as data:
        arrays = [data[k] for k in data.files if k.startswith("w")]
    assert {a.dtype for a in arrays} == {np.dtype(np.float16)}
    assert len(arrays) == len(tiny.get_weights())


def test_card_fields(tiny, saved, tmp_path):
    card = json.loads((tmp_path / "denoise-sigma25.json").read_text())
    assert card["id"] == "denoise-sigma25" and card["task"] == "denoise" and card["sigma"] == 25
    assert card["params"] == models.count_params(tiny)
    assert card["weights_sha256"] == weights.sha256_file(tmp_path / card["weights_file"])
    assert card["weights_dtype"] == "float16"
    assert card["channels"] == 1
    assert card["architecture"]["builder"] == "red_net"
    assert card["architecture"]["kwargs"]["depth"] == 2 and "name" not in card["architecture"]["kwargs"]
    assert card["command"] == "pytest" and card["backend"] == keras.backend.backend()
    assert "_path" not in card  # private keys stay out of the JSON
    assert weights.read_card("denoise-sigma25", tmp_path)["weights_sha256"] == card["weights_sha256"]
    assert weights.read_card(tmp_path / "denoise-sigma25.json")["id"] == card["id"]


def test_default_directory_follows_repo_root(saved, tmp_path, monkeypatch):
    weights_dir = tmp_path / "repo" / "data" / "weights"
    weights_dir.mkdir(parents=True)
    monkeypatch.setenv("DECONVLAB_ROOT", str(tmp_path / "repo"))
    assert weights.list_cards() == []
    for name in ("denoise-sigma25.json", saved["weights_file"]):
        (weights_dir / name).write_bytes((tmp_path / name).read_bytes())
    assert [c["id"] for c in weights.list_cards()] == ["denoise-sigma25"]
    assert weights.load_pretrained("denoise", sigma=25).count_params() > 0


def _fake_card(card_id: str, task: str, **fields) -> dict:
    return {"id": card_id, "task": task, "architecture": {"builder": "red_net", "kwargs": {}},
            "weights_file": f"{card_id}.weights.npz", "weights_sha256": "0" * 64, **fields}


def test_find_card_exact_range_channels_and_errors(tmp_path):
    for card in (
        _fake_card("d15", "denoise", sigma=15),
        _fake_card("d25", "denoise", sigma=25),
        _fake_card("d25rgb", "denoise", sigma=25, channels=3),
        _fake_card("blind", "denoise", sigma_range=[0, 55]),
        _fake_card("x2", "sr", scale=2),
        _fake_card("x34", "sr", scales=[3, 4]),
        _fake_card("blur", "deblur"),
    ):
        _write(card, tmp_path)
    find = weights.find_card
    assert find("denoise", sigma=25, directory=tmp_path)["id"] == "d25"
    assert find("denoise", sigma=25, channels=3, directory=tmp_path)["id"] == "d25rgb"
    assert find("denoise", sigma=15, channels=3, directory=tmp_path)["id"] == "d15"  # gray serves colour too
    assert find("denoise", sigma=37, directory=tmp_path)["id"] == "blind"
    assert find("denoise", directory=tmp_path)["id"] == "blind"
    assert find("sr", scale=4, directory=tmp_path)["id"] == "x34"
    assert find("sr", scale=2, directory=tmp_path)["id"] == "x2"
    assert find("deblur", directory=tmp_path)["id"] == "blur"
    with pytest.raises(ArgumentError, match=r"no shipped weights for denoise sigma=60; available: .*d15"):
        find("denoise", sigma=60, directory=tmp_path)
    with pytest.raises(ArgumentError, match="no shipped weights for sr scale=8"):
        find("sr", scale=8, directory=tmp_path)
    with pytest.raises(ArgumentError, match="unknown task"):
        find("inpaint", directory=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArgumentError, match="no model cards in"):
        find("deblur", directory=tmp_path / "empty")
    # a missing folder or a file was "no model cards in ...: git checkout data/weights", which cannot help
    with pytest.raises(ArgumentError, match="missing: pass a folder of model cards"):
        find("deblur", directory=tmp_path / "missing")
    with pytest.raises(ArgumentError, match="d25.json is a file: pass a folder of model cards"):
        find("deblur", directory=tmp_path / "d25.json")
    (tmp_path / "d25.history.json").write_text(json.dumps({"history": {"loss": [1.0]}}))  # not a card
    assert [c["id"] for c in weights.list_cards(tmp_path)] == sorted(
        ["d15", "d25", "d25rgb", "blind", "x2", "x34", "blur"])


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(task="sr", scale=2.5), "scale=2.5"),  # int(2.5) matched the x2 card
    (dict(task="denoise", sigma=True), "sigma=True"),  # True == 1 fell in the blind card's range
    (dict(task="denoise", sigma="25"), "sigma='25'"),  # a ValueError from formatting the message
    (dict(task="denoise", sigma=25, channels="x"), "channels='x'"),  # a ValueError from int()
    (dict(task="denoise", sigma=25, channels=2), "channels=2"),  # silently taken as no preference
    (dict(task="denoise", sigma=25, channels=0), "channels=0: use 1 (gray) or 3"),  # said "an integer >= 1"
    (dict(task="denoise", sigma=25, channels=3.0), "channels=3.0: use 1 (gray) or 3"),
])
def test_find_card_refuses_bad_sigma_scale_and_channels(tmp_path, kwargs, message):
    for card in (_fake_card("blind", "denoise", sigma_range=[0, 55]), _fake_card("d25", "denoise", sigma=25),
                 _fake_card("x2", "sr", scale=2)):
        _write(card, tmp_path)
    with pytest.raises(ArgumentError, match=re.escape(message)):
        weights.find_card(directory=tmp_path, **kwargs)


def test_wrong_hash_missing_and_corrupt_files(saved, tmp_path):
    path = tmp_path / saved["weights_file"]
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    with pytest.raises(WeightsError, match=r"has sha256 .* the card expects .*git checkout data/weights"):
        weights.load_pretrained("denoise", sigma=25, directory=tmp_path)
    # A corrupt file whose hash the card agrees with must still fail cleanly, not with a zip traceback.
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    card = weights.read_card("denoise-sigma25", tmp_path)
    card["weights_sha256"] = weights.sha256_file(path)
    _write(card, tmp_path)
    with pytest.raises(WeightsError, match="is corrupt"):
        weights.load_pretrained("denoise", sigma=25, directory=tmp_path)
    path.unlink()
    with pytest.raises(WeightsError, match="is missing"):
        weights.load_pretrained("denoise", sigma=25, directory=tmp_path)


def test_architecture_mismatch(saved, tmp_path):
    card = weights.read_card("denoise-sigma25", tmp_path)
    card["architecture"]["kwargs"]["width"] = 8
    with pytest.raises(WeightsError, match="does not match"):
        weights.load_pretrained(card=card, directory=tmp_path)
    card["architecture"]["kwargs"] = {"no_such_argument": 1}
    with pytest.raises(WeightsError, match="does not match this version"):
        weights.load_pretrained(card=card, directory=tmp_path)


def test_malformed_cards(tmp_path):
    (tmp_path / "broken.json").write_text("{ nope")
    with pytest.raises(WeightsError, match="not valid JSON"):
        weights.read_card("broken", tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps({"id": "broken", "task": "denoise"}))
    with pytest.raises(WeightsError, match="lacks architecture, weights_file, weights_sha256"):
        weights.read_card("broken", tmp_path)
    with pytest.raises(ArgumentError, match="no model card 'absent'"):
        weights.read_card("absent", tmp_path)


def test_a_file_that_is_not_a_card_is_told_what_to_pass(tmp_path, monkeypatch):
    # weights, an image or one's own .json passed as a card were told "git checkout data/weights"
    shipped = tmp_path / "repo" / "data" / "weights"
    shipped.mkdir(parents=True)
    monkeypatch.setenv("DECONVLAB_ROOT", str(tmp_path / "repo"))
    for path in (shipped / "d.weights.npz", tmp_path / "a.png", tmp_path / "mine.json", shipped / "d.json"):
        path.write_bytes(b"\x97 not JSON")
        advice = ("git checkout data/weights" if path.name == "d.json"  # a shipped card: git restores it
                  else "pass a card id or a card .json (--weights also takes a .keras file)")
        with pytest.raises(WeightsError, match=rf"^model card {re.escape(str(path))} is not valid JSON "
                                               rf"\(.*\); {re.escape(advice)}$"):
            recipes.resolve_weights(str(path), "denoise", sigma=25, scale=None, channels=1)


def test_fp16_falls_back_to_float32_for_out_of_range_arrays(tmp_path):
    model = models.red_net(channels=1, depth=2, width=4)
    values = model.get_weights()
    values[0] = values[0] + 1e5  # beyond float16's 65504
    model.set_weights(values)
    dtype = weights.save_weights_fp16(model, tmp_path / "w.npz")
    assert dtype == "float16+float32"
    fresh = models.red_net(channels=1, depth=2, width=4)
    weights.load_weights_fp16(fresh, tmp_path / "w.npz")
    assert np.array_equal(fresh.get_weights()[0], values[0])


def test_write_card_refuses_nan_and_leaves_no_temp_files(tmp_path):
    with pytest.raises(ArgumentError, match="JSON"):
        weights.write_card({"id": "x", "psnr": float("nan")}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []
    path = weights.write_card({"id": "x", "psnr": np.float32(30.5), "_private": 1}, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"id": "x", "psnr": 30.5}


def test_save_pretrained_needs_an_architecture(tmp_path):
    plain = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    with pytest.raises(ArgumentError, match="architecture"):
        weights.save_pretrained(plain, {"task": "denoise", "sigma": 25}, tmp_path)
    with pytest.raises(ArgumentError, match="task"):
        weights.save_pretrained(plain, {"task": "colourise"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_render_card_table_and_anchors():
    cards = [
        _fake_card("d25", "denoise", sigma=25, params=1234, hardware="H100", wall_time_s=300,
                   metrics=[{"dataset": "bsd68", "protocol": "p", "psnr": 29.123, "ssim": 0.8251}],
                   anchors=weights.anchors_for("denoise", 25, datasets=["bsd68"])),
        _fake_card("x2", "sr", scales=[2, 3], architecture={"builder": "red_net_sr", "kwargs": {"a": "b|c"}},
                   metrics=[{"dataset": "set5", "scale": k, "psnr": 30.0 + k, "ssim": 0.9} for k in (2, 3)],
                   anchors=[dict(a, scale=3) for a in weights.anchors_for("sr", scale=3, datasets=["set5"])]),
    ]
    table = weights.render_card_table(cards).splitlines()
    assert len(table) == 4 and table[0].startswith("| id | task | setting")
    assert "sigma=25" in table[2] and "bsd68: 29.12 dB / 0.8251" in table[2] and "5.0 min" in table[2]
    assert "DnCNN-S bsd68: 29.23" in table[2] and "1,234" in table[2]
    assert "x2,3" in table[3] and "b\\|c" in table[3]
    # A multi-scale card labels each metric and anchor with its scale.
    assert "set5 x2: 32.00 dB" in table[3] and "set5 x3: 33.00 dB" in table[3] and "VDSR set5 x3: 33.66" in table[3]
    assert weights.anchors_for("sr", scale=3, datasets=["set5"]) == [
        {"method": "VDSR", "dataset": "set5", "psnr": 33.66, "citation": "Kim et al., VDSR, CVPR 2016, Table 3"},
        {"method": "FSRCNN", "dataset": "set5", "psnr": 33.16,
         "citation": "Dong et al., FSRCNN, ECCV 2016, Table 3"},
    ]
    # LapSRN reports x2, x4 and x8; the book records its x4 numbers only (the scale its post card is compared at).
    lapsrn = [a for a in weights.ANCHORS if a["method"] == "LapSRN"]
    assert {(a["scale"], a["dataset"], a["psnr"]) for a in lapsrn} == {(4, "set5", 31.54), (4, "set14", 28.19)}
    assert [a["method"] for a in weights.anchors_for("sr", scale=4, datasets=["set5"])] == ["VDSR", "FSRCNN", "LapSRN"]


def test_default_card_ids():
    assert weights.default_card_id("denoise", sigma=25) == "denoise-sigma25"
    assert weights.default_card_id("denoise", sigma_range=(0, 55)) == "denoise-blind0-55"
    assert weights.default_card_id("sr", scale=3, channels=3) == "sr-x3-rgb"
    assert weights.default_card_id("deblur") == "deblur"


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w0000=np.array([{"code": "runs on load"}], dtype=object))
    with pytest.raises(WeightsError, match="is corrupt"):
        weights.load_weights_fp16(models.red_net(channels=1, depth=2, width=4), path)


# ------------------------------------------------------------------------------------- defaults and validation


def test_default_flag_decides_between_cards_of_one_setting(tmp_path):
    for card in (
        _fake_card("d25-red", "denoise", sigma=25, default=True),
        _fake_card("d25-unet", "denoise", sigma=25),
        _fake_card("a-blind", "denoise", sigma_range=[0, 55]),
        _fake_card("b-blind", "denoise", sigma_range=[0, 75], default=True),
        _fake_card("sr-all", "sr", scales=[2, 3, 4], default=[3, 4]),
        _fake_card("sr-2", "sr", scale=2, default=True),
        _fake_card("blur-a", "deblur"),
        _fake_card("blur-b", "deblur"),
    ):
        _write(card, tmp_path)
    find = weights.find_card
    assert find("denoise", sigma=25, directory=tmp_path)["id"] == "d25-red"  # not the first id in order
    assert find("denoise", sigma=37, directory=tmp_path)["id"] == "b-blind"
    assert find("denoise", directory=tmp_path)["id"] == "b-blind"
    assert find("sr", scale=2, directory=tmp_path)["id"] == "sr-2"
    assert find("sr", scale=3, directory=tmp_path)["id"] == "sr-all"
    with pytest.raises(ArgumentError, match=r"2 cards serve deblur \(blur-a, blur-b\) and none is marked"):
        find("deblur", directory=tmp_path)
    _write(_fake_card("d25-unet", "denoise", sigma=25, default=True), tmp_path)
    with pytest.raises(ArgumentError, match="several are marked"):
        find("denoise", sigma=25, directory=tmp_path)
    assert weights.is_default({"default": [2]}, 2) and not weights.is_default({"default": [2]}, 3)
    assert not weights.is_default({"default": "yes"}) and not weights.is_default({})


def test_shipped_cards_have_one_default_per_setting_and_their_costs():
    cards = weights.list_cards()
    assert cards, "data/weights has no cards"
    for card in cards:
        assert weights.card_macs_per_pixel(card) == card["macs_per_pixel"], card["id"]
    served = {}
    for card in cards:
        settings = [f"x{k}" for k in weights.card_scales(card)] or [weights.card_setting(card)]
        for setting in settings:
            scale = int(setting[1:]) if card["task"] == "sr" else None
            if weights.is_default(card, scale):
                served.setdefault((card["task"], setting, weights.card_channels(card)), []).append(card["id"])
    assert all(len(ids) == 1 for ids in served.values()), served
    assert weights.card_macs(weights.read_card("sr-x2-3-4"), scale=3) == 1_033_344


def test_non_card_json_is_skipped_with_a_warning(tmp_path):
    _write(_fake_card("d25", "denoise", sigma=25), tmp_path)
    (tmp_path / "notes.json").write_text(json.dumps({"comment": "not a card"}))
    (tmp_path / "broken.json").write_text("{ nope")
    with pytest.warns(UserWarning, match="skipping broken.json") as record:
        cards = weights.list_cards(tmp_path)
    assert [c["id"] for c in cards] == ["d25"]
    assert any("skipping notes.json" in str(w.message) for w in record)


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("sigma_range", {"sigma_range": [0]}),
        ("sigma", {"sigma": "25"}),
        ("channels", {"channels": "one"}),
        ("params", {"params": "1e6"}),
        ("scales", {"task": "sr", "scales": "2"}),
        ("scale", {"task": "sr", "scale": "x2"}),
        ("default", {"default": ["x2"]}),
        ("macs_per_pixel", {"macs_per_pixel": "1 M"}),
        ("cpu_s_per_mpx", {"cpu_s_per_mpx": "fast"}),
        ("metrics", {"metrics": [{"sigma": 25, "psnr": 29.0}]}),
        ("metrics", {"metrics": [{"dataset": "bsd68", "psnr": "29.0"}]}),
        ("anchors", {"anchors": [{"dataset": "bsd68", "psnr": 29.0}]}),
        ("architecture.kwargs", {"architecture": {"builder": "red_net", "kwargs": [1]}}),
        ("architecture.kwargs.channels", {"architecture": {"builder": "red_net", "kwargs": {"channels": "1"}}}),
        ("architecture.builder", {"architecture": {"builder": 5, "kwargs": {}}}),
        ("id", {"id": 7}),
    ],
)
def test_a_card_with_a_mistyped_field_is_skipped_and_the_others_still_work(tmp_path, field, fields):
    _write(_fake_card("d25", "denoise", sigma=25), tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({**_fake_card("bad", "denoise"), **fields}))
    with pytest.warns(UserWarning, match=rf"skipping bad\.json .*: {re.escape(field)} is ") as record:
        assert weights.find_card("denoise", sigma=25, directory=tmp_path)["id"] == "d25"
    assert len(record) == 1
    with pytest.warns(UserWarning, match="skipping bad.json"):
        assert [r["id"] for r in weights.model_rows(tmp_path)] == ["d25"]
    with pytest.warns(UserWarning, match="skipping bad.json"):
        assert "| d25 " in weights.model_table(tmp_path)
    with pytest.raises(WeightsError, match=rf"bad\.json: {re.escape(field)} is "):
        weights.read_card(tmp_path / "bad.json")


def test_a_card_defaulting_for_a_scale_it_does_not_serve_is_skipped(tmp_path):
    _write(_fake_card("sr3", "sr", scale=3, default=True), tmp_path)
    _write(_fake_card("sr2", "sr", scale=2, default=[3]), tmp_path)
    with pytest.warns(UserWarning, match=r"skipping sr2\.json .*default=\[3\]; use true or false, or a list of its scales \[2\]"):
        assert weights.find_card("sr", scale=3, directory=tmp_path)["id"] == "sr3"


def test_validate_card_accepts_a_real_card_and_its_cost(saved, tmp_path):
    card = weights.read_card("denoise-sigma25", tmp_path)
    assert weights.validate_card(card, tmp_path / card["weights_file"])["id"] == "denoise-sigma25"
    # red_net(depth=2, width=4): 3x3 layers 1->4, 4->4 (conv), 4->4 and 4->1 (transposed)
    assert saved["macs_per_pixel"] == 2 * 9 * 4 + 2 * 9 * 16 == weights.card_macs_per_pixel(card) == 360
    assert saved["params"] == card["params"] == (36 + 4) + 2 * (144 + 4) + (36 + 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"builder": "vgg"}, "unknown builder 'vgg'"),
        ({"kwargs": {"width": 100_000}}, r"width=100000 is not an integer in \[1, 1024\]"),
        ({"kwargs": {"width": 4.5}}, "width=4.5 is not an integer"),
        ({"kwargs": {"depth": True}}, "depth=True is not an integer"),
        ({"kwargs": {"global_residual": 1}}, "is not true/false"),
        ({"kwargs": {"fusion": "mul"}}, "does not match this version.*fusion"),
        ({"kwargs": {"no_such": 1}}, "takes no argument 'no_such'"),
        ({"kwargs": {"depth": 200, "width": 1024}}, "more than 50,000,000"),
        ({"kwargs": {"depth": 3, "width": 4}}, "says params=.*its architecture has"),
    ],
)
def test_validate_card_refuses_bad_architectures_before_building(saved, tmp_path, change, message):
    card = weights.read_card("denoise-sigma25", tmp_path)
    arch = card["architecture"]
    if "builder" in change:
        arch["builder"] = change["builder"]
    arch["kwargs"] = {**arch["kwargs"], **change.get("kwargs", {})}
    with pytest.raises(WeightsError, match=message):
        weights.validate_card(card, tmp_path / card["weights_file"])
    with pytest.raises(WeightsError, match=message):
        weights.load_pretrained(card=card, directory=tmp_path)


def test_validate_card_compares_npz_shapes_and_confines_the_weights_file(saved, tmp_path):
    card = weights.read_card("denoise-sigma25", tmp_path)
    other = tmp_path / "other.npz"
    weights.save_weights_fp16(models.red_net(channels=1, depth=2, width=5), other)
    card_wide = dict(card, params=None)
    with pytest.raises(WeightsError, match=r"holds 8 arrays \(.*\), the card's architecture 8"):
        weights.validate_card(card_wide, other)
    for outside in ("../elsewhere.weights.npz", "/etc/passwd", ""):
        with pytest.raises(WeightsError, match="outside its folder"):
            weights.validate_card(dict(card, weights_file=outside))
    bad_default = dict(card, default=[2])
    with pytest.raises(WeightsError, match="default="):
        weights.validate_card(bad_default)


def test_model_rows_for_the_models_command(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cards")
    _write(_fake_card("d25", "denoise", sigma=25, params=1234, macs_per_pixel=1_033_344, default=True,
                      metrics=[{"dataset": "bsd68", "sigma": 25, "psnr": 29.271},
                               {"dataset": "bsd68", "sigma": 25, "psnr": 30.0, "limit": 2}]), tmp_path)
    _write(_fake_card("sr", "sr", scales=[2, 4], default=[4], macs_per_pixel={"2": 267_664, "4": 67_108},
                      metrics=[{"dataset": "set5", "scale": 2, "psnr": 37.4881}]), tmp_path)
    _write(_fake_card("blind", "denoise", sigma_range=[0, 55], cpu_s_per_mpx=3.5, metrics=[
        {"dataset": "set12", "sigma": s, "psnr": p} for s, p in ((15, 32.5), (25, 30.2))] + [
        {"dataset": "bsd68", "sigma": s, "psnr": p} for s, p in ((15, 31.541), (25, 29.1115), (50, 26.18))]), tmp_path)
    _write(_fake_card("sr3", "sr", scales=[2, 3], macs_per_pixel={"2": 1_033_344, "3": 1_033_344},
                      metrics=[{"dataset": "set14", "scale": 3, "psnr": 29.75}]), tmp_path)
    _write(_fake_card("blur", "deblur", metrics=[{"dataset": "set12", "psnr": 30.38},
                                                 {"dataset": "bsd68", "psnr": 29.158}]), tmp_path)
    rows = {r["id"]: r for r in weights.model_rows(tmp_path)}
    assert rows["d25"] == {"id": "d25", "task": "denoise", "setting": "sigma=25", "default": "yes",
                           "builder": "red_net", "params": 1234, "macs_per_pixel": "1.033 M",
                           "test_psnr": "bsd68 sigma=25: 29.27", "cpu_s_per_mpx": None}
    assert rows["sr"]["default"] == "x4" and rows["sr"]["setting"] == "x2,4"
    assert rows["sr"]["macs_per_pixel"] == "x2: 0.268 M, x4: 0.067 M"
    assert rows["sr"]["test_psnr"] == "set5 x2: 37.49"
    # the task's test set (bsd68 / set5 / bsd68), a blind card at each level; another set only if that one is absent
    assert rows["blind"]["test_psnr"] == "bsd68 sigma=15: 31.54, sigma=25: 29.11, sigma=50: 26.18"
    assert rows["blind"]["setting"] == "sigma in [0, 55]" and rows["blind"]["cpu_s_per_mpx"] == 3.5
    assert rows["blur"]["test_psnr"] == "bsd68: 29.16"
    assert rows["blur"]["default"] == "yes"  # the only deblur card: enhance picks it
    assert rows["sr3"]["test_psnr"] == "set14 x3: 29.75" and rows["sr3"]["macs_per_pixel"] == "1.033 M"
    # a benchmarks/speed_cpu.py result fills in the cards its rows name; enhance's default tile (256) on the
    # largest image wins; a card of the same architecture shares the measurement (speed does not depend on weights)
    speed = tmp_path_factory.mktemp("results") / "speed_cpu.json"
    speed.write_text(json.dumps({"meta": {}, "rows": [
        {"method": "rednet", "card": "d25", "tile": 256, "megapixels": 0.26, "s_per_mpx": 9.0},
        {"method": "rednet", "card": "d25", "tile": 512, "megapixels": 8.29, "s_per_mpx": 7.0},
        {"method": "rednet", "card": "d25", "tile": 256, "megapixels": 8.29, "s_per_mpx": 8.0},
        {"method": "unet", "card": "sr", "tile": 512, "megapixels": 8.29, "s_per_mpx": 2.5},
        {"method": "unet", "card": "sr", "tile": 0, "megapixels": 0.26, "errors": ["timed out"]},
        {"method": "bm3d", "card": None, "tile": 0, "megapixels": 1.0, "s_per_mpx": 40.0}]}))
    rows = {r["id"]: r for r in weights.model_rows(tmp_path, speed_file=speed)}
    assert rows["d25"]["cpu_s_per_mpx"] == 8.0 and rows["sr"]["cpu_s_per_mpx"] == 2.5
    assert rows["blur"]["cpu_s_per_mpx"] in (8.0, 2.5)  # a fake card of d25's (and sr's) architecture
    _write(_fake_card("other", "deblur", architecture={"builder": "unet", "kwargs": {}}), tmp_path)
    rows = {r["id"]: r for r in weights.model_rows(tmp_path, speed_file=speed)}
    assert rows["other"]["cpu_s_per_mpx"] is None
    speed.write_text("{not json")
    assert {r["id"]: r["cpu_s_per_mpx"] for r in weights.model_rows(tmp_path, speed_file=speed)}["d25"] is None


def test_models_default_column_is_the_card_find_card_picks(tmp_path):
    # d50 and sr-all read "no", yet enhance picks them at sigma=50 and x3: unflagged, but alone there
    for card in (_fake_card("d25", "denoise", sigma=25), _fake_card("d50", "denoise", sigma=50),
                 _fake_card("d25-unet", "denoise", sigma=25, default=True),
                 _fake_card("sr-all", "sr", scales=[2, 3]), _fake_card("sr-2", "sr", scale=2, default=True),
                 _fake_card("blur-a", "deblur"), _fake_card("blur-b", "deblur")):
        _write(card, tmp_path)
    rows = {r["id"]: r["default"] for r in weights.model_rows(tmp_path)}
    assert rows == {"d25": "no", "d25-unet": "yes", "d50": "yes", "sr-all": "x3", "sr-2": "yes",
                    "blur-a": "no", "blur-b": "no"}  # two unflagged deblur cards: enhance refuses to choose


@pytest.mark.parametrize("colour", ["auto", "ycbcr"])
def test_a_colour_image_refuses_a_sigma_outside_the_blind_cards_range(tmp_path, colour):
    # the blind card was used at sigma 75 without a word, where a gray image and --colour rgb are refused
    _write(_fake_card("blind", "denoise", sigma_range=[0, 55]), tmp_path)
    with pytest.raises(ArgumentError, match=r"^no shipped weights for denoise sigma=75 on a colour image: "
                                            r"the blind model blind serves sigma in \[0, 55\]$"):
        recipes.denoise_colour("denoise", True, colour, 75, None, tmp_path)
    assert recipes.denoise_colour("denoise", True, colour, 55, None, tmp_path)[:2] == ("ycbcr", None)


def test_unet_and_post_sr_cards_round_trip_with_their_costs(tmp_path):
    keras.utils.set_random_seed(1)
    unet = models.build_model("unet", widths=[4, 8], depths=[1, 2])  # lists, as the CLI's --arch-kwargs JSON gives
    card = weights.save_pretrained(unet, {"task": "denoise", "sigma": 15, "default": True}, tmp_path)
    assert card["architecture"]["kwargs"]["widths"] == [4, 8] and card["default"] is True
    # 3x3 1->4, 2x2/2 4->8 (/4), two 3x3 8->8 (/4), 4x4/2 transposed 8->4, 3x3 4->4, tail 4->1
    assert card["macs_per_pixel"] == 36 + 128 / 4 + 2 * 576 / 4 + 16 * 8 * 4 / 4 + 144 + 36 == 664
    x = np.random.default_rng(0).random((1, 11, 13, 1), dtype=np.float32)
    loaded = weights.load_pretrained("denoise", sigma=15, directory=tmp_path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(unet(x)), atol=2e-3)
    sr = models.red_net_sr(3, upsample="post", depth=1, width=4, skip_every=0, up_init="bilinear")
    sr_card = weights.save_pretrained(sr, {"task": "sr", "scale": 3}, tmp_path)
    # conv 1->4 and transposed 4->4 at low resolution (/9), then a 6x6/3 transposed 4->1 (36 * 4 / 9)
    assert sr_card["macs_per_pixel"] == {"3": (36 + 144) / 9 + 36 * 4 / 9} == {"3": 36}
    assert weights.load_pretrained("sr", scale=3, directory=tmp_path).count_params() == sr_card["params"]


def test_fp16_storage_keeps_every_array_within_1e_3_of_its_peak():
    """The module's promise on the round trip: max|w16 - w| <= 1e-3 max|w|, float32 where fp16 cannot."""
    rng = np.random.default_rng(2)
    for peak, dtype in ((1e-7, np.float32), (1e-5, np.float32), (1e-3, np.float16), (1.0, np.float16)):
        w = (rng.uniform(-1, 1, (64,)) * peak).astype(np.float32)
        stored = weights._to_fp16_if_faithful(w)
        assert stored.dtype == dtype, peak  # below ~6e-5 float16 is subnormal: 6e-8 steps
        assert np.abs(stored.astype(np.float64) - w).max() <= 1e-3 * np.abs(w).max()


def test_card_macs_per_pixel_keeps_whole_counts_integer_and_rounds_fractions_to_one_decimal():
    """A 3x3 1->2 conv costs 18 MACs (an int); a 1x1 conv before x3 upsampling 1/9 = 0.111 -> 0.1."""
    whole = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    macs = weights.card_macs_per_pixel({"task": "denoise"}, whole)
    assert macs == 18 and isinstance(macs, int)
    upsampler = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 1),
                                  keras.layers.UpSampling2D(3)])
    assert weights.card_macs_per_pixel({"task": "sr", "scale": 3}, upsampler) == {"3": 0.1}


def test_card_macs_reads_the_asked_scale_else_the_first():
    """An SR card's cost per scale: the asked one, the first scale the card serves when none is asked."""
    card = {"task": "sr", "scales": [2, 3], "macs_per_pixel": {"2": 10, "3": 20}}
    assert weights.card_macs(card, scale=3) == 20.0 and weights.card_macs(card) == 10.0
    assert weights.card_macs({"task": "denoise", "macs_per_pixel": 7}) == 7.0
