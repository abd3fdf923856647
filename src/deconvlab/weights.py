"""Shipped weights and their model cards (``data/weights/<id>.json`` + ``<id>.weights.npz``).

Taught in chapter 4 (notebooks/04_code_example).

Format decision: weights only, as a ``.npz`` of float16 arrays in ``model.get_weights()`` order, with the
architecture rebuilt from code by ``deconvlab.models.build_model(builder, **kwargs)`` named in the card.

* Small: no optimizer state and half the bytes of float32; a full ``.keras`` file would carry the Adam
  moments (twice the weights) unless stripped, and its float16 variant would change the model's dtype policy.
* Safe: ``np.load(allow_pickle=False)`` runs no code, and the architecture comes from the package, so the
  file cannot smuggle in layers; a ``.keras`` file with safe_mode=True is safe too, but ties the shipped file
  to the Keras version's serialisation format.
* Faithful enough: float16 keeps 11 significant bits (relative rounding <= 2**-11 ~ 4.9e-4). An array that
  float16 cannot hold within 1e-3 of its largest magnitude (overflow past 65504, or a tail of tiny values)
  is stored in float32 instead, and the card says ``"weights_dtype": "float16+float32"``. The card's metrics
  are measured after reloading the stored weights, so they describe exactly what ships.

Every load verifies the file's sha256 against the card before reading a byte of it as weights.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import math
import os
import reprlib
import subprocess
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .checks import integer, number
from .errors import ArgumentError, DeconvlabError, WeightsError
from .io import write_atomic
from .paths import repo_root, results_dir, weights_dir
from .tasks import TASKS, card_id, check_task

REQUIRED_FIELDS = ("id", "task", "architecture", "weights_file", "weights_sha256")
FP16_TOLERANCE = 1e-3  # max |w16 - w| / max|w| for an array to be stored in float16
_PATHS_KEY = "__paths__"
HISTORY_SUFFIX = ".history.json"  # training histories kept next to their cards (not cards themselves)
WEIGHTS_SUFFIX = ".weights.npz"

# Published numbers the book compares its own models against (PSNR in dB on the named test set).
_SIGMAS, _SCALES = ("denoise", "sigma", (15, 25, 50)), ("sr", "scale", (2, 3, 4))
_DNCNN = "Zhang et al., Beyond a Gaussian Denoiser (DnCNN), IEEE TIP 2017, Table "
_VDSR, _FSRCNN = "Kim et al., VDSR, CVPR 2016, Table 3", "Dong et al., FSRCNN, ECCV 2016, Table 3"
ANCHORS: list[dict[str, Any]] = [
    {"method": method, "task": task, key: setting, "dataset": dataset, "psnr": psnr, "citation": citation}
    for method, dataset, citation, (task, key, settings), values in (
        ("BM3D", "bsd68", _DNCNN + "II", _SIGMAS, (31.07, 28.57, 25.62)),
        ("DnCNN-S", "bsd68", _DNCNN + "II", _SIGMAS, (31.73, 29.23, 26.23)),
        ("DnCNN-B", "bsd68", _DNCNN + "II", _SIGMAS, (31.61, 29.16, 26.23)),
        ("BM3D", "set12", _DNCNN + "III", _SIGMAS, (32.37, 29.97, 26.72)),
        ("DnCNN-S", "set12", _DNCNN + "III", _SIGMAS, (32.86, 30.44, 27.18)),
        ("VDSR", "set5", _VDSR, _SCALES, (37.53, 33.66, 31.35)),
        ("VDSR", "set14", _VDSR, _SCALES, (33.03, 29.77, 28.01)),
        ("FSRCNN", "set5", _FSRCNN, _SCALES, (37.00, 33.16, 30.71)),
        ("FSRCNN", "set14", _FSRCNN, _SCALES, (32.63, 29.43, 27.59)),
        # LapSRN upsamples inside the network with transposed convolutions, x2 per pyramid level:
        # x4 is its setting
        ("LapSRN", "set5", "Lai et al., LapSRN, CVPR 2017", ("sr", "scale", (4,)), (31.54,)),
        ("LapSRN", "set14", "Lai et al., LapSRN, CVPR 2017", ("sr", "scale", (4,)), (28.19,)),
    )
    for setting, psnr in zip(settings, values, strict=True)
]


def _directory(directory: str | os.PathLike | None) -> Path:
    return Path(directory) if directory is not None else weights_dir()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (pooch's, which the data registry uses too)."""
    from .registry import pooch_module

    return pooch_module().file_hash(str(path))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return _int(value) or (isinstance(value, float) and math.isfinite(value))


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(map(_int, value))


def _entries(*names: str) -> Callable[[Any], bool]:
    """A list of objects (metrics, anchors) with string ``names`` whose psnr, ssim, sigma, scale are numbers."""
    return lambda value: isinstance(value, list) and all(
        isinstance(e, dict) and all(isinstance(e.get(n), str) for n in names)
        and all(e.get(k) is None or _number(e[k]) for k in ("psnr", "ssim", "sigma", "scale")) for e in value)


#: The type of each card field that finding, listing, tabulating and loading cards read (``a.b``: field b of
#: object a); absent or null passes for all but the required fields. A card that breaks one is refused by
#: read_card, so list_cards skips it rather than every lookup in its folder failing on it.
FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (lambda v: isinstance(v, str), "a string") for name in ("id", "weights_file", "weights_sha256",
                                                                       "architecture.builder")},
    "architecture.kwargs": (lambda v: isinstance(v, dict), "an object"),
    "architecture.kwargs.channels": (_int, "an integer"),
    "channels": (_int, "an integer"), "params": (_int, "an integer"), "scale": (_int, "an integer"),
    "scales": (_ints, "a list of integers"), "sigma": (_number, "a number"),
    "sigma_range": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(_number, v)), "two numbers [low, high]"),
    "default": (lambda v: isinstance(v, bool) or _ints(v), "true, false or a list of scales"),
    "macs_per_pixel": (lambda v: _number(v) or (isinstance(v, dict) and all(map(_number, v.values()))),
                       "a number or an object of numbers"),
    "cpu_s_per_mpx": (_number, "a number"), "wall_time_s": (_number, "a number"),
    "metrics": (_entries("dataset"), "a list of objects with a dataset name and numbers"),
    "anchors": (_entries("method", "dataset"), "a list of objects with method and dataset names and numbers"),
}


def _validate_card(card: Any, source: str) -> dict[str, Any]:
    if not isinstance(card, dict):
        raise WeightsError(f"model card {source} is not a JSON object; git checkout data/weights")
    missing = [f for f in REQUIRED_FIELDS if f not in card]
    arch = card.get("architecture")
    if not isinstance(arch, dict) or "builder" not in arch:
        missing.append("architecture.builder")
    if missing:
        raise WeightsError(f"model card {source} lacks {', '.join(missing)}; "
                           "git checkout data/weights or re-run training")
    if card["task"] not in TASKS:
        raise WeightsError(f"model card {source} has unknown task {card['task']!r}; expected one of {TASKS}")
    for field, (valid, expected) in FIELD_TYPES.items():
        value = card
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if (value is not None or field in REQUIRED_FIELDS) and not valid(value):
            raise WeightsError(f"model card {source}: {field} is {reprlib.repr(value)}, not {expected}; "
                               "git checkout data/weights or re-run training")
    flag, scales = card.get("default"), card_scales(card)
    if isinstance(flag, list) and not (scales and set(flag) <= set(scales)):  # find_card would pick it anyway
        raise WeightsError(f"model card {source}: default={flag!r}; use true or false"
                           + (f", or a list of its scales {scales}" if scales else ""))
    return card


def read_card(card_id: str | os.PathLike, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """A model card by id (``<directory>/<id>.json``) or by the path of its JSON file.

    The returned dict has ``_path`` (the card's file) added, which :func:`write_card` leaves out.
    """
    text = str(card_id)
    path = Path(text)
    if not (text.endswith(".json") or path.is_file()):
        path = _directory(directory) / f"{text}.json"
    if not path.is_file():
        raise ArgumentError(f"no model card {text!r} (looked for {path}); {_available_text(directory)}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # git restores a shipped card; any other file (weights, an image, a stray .json) was never a card
        advice = ("git checkout data/weights" if path.suffix == ".json" and _is_shipped_folder(path.parent)
                  else "pass a card id or a card .json (--weights also takes a .keras file)")
        raise WeightsError(f"model card {path} is not valid JSON ({exc}); {advice}") from None
    card = _validate_card(card, str(path))
    card["_path"] = str(path)
    return card


def _json_ready(value: Any) -> Any:
    """NumPy scalars/arrays and paths as plain JSON values (NaN is refused rather than written as NaN)."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()  # (nested) Python lists, or a Python scalar
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def write_card(card: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a model card as indented JSON, atomically (keys starting with ``_`` are not written)."""
    path = Path(path)
    try:
        text = json.dumps(_json_ready(card), indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"model card is not JSON-serialisable ({exc}); "
                            "pass numbers, strings, lists") from None
    write_atomic(path, (text + "\n").encode("utf-8"))
    return path


def list_cards(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every model card (``*.json`` but not ``*.history.json``) in the weights folder, sorted by id.

    A ``.json`` that is not a valid card is skipped with a warning.

    Taught in chapter 4 (notebooks/04_code_example).
    """
    folder = _directory(directory)
    if not folder.is_dir():
        return []
    cards = []
    for path in sorted(p for p in folder.glob("*.json") if not p.name.endswith(HISTORY_SUFFIX)):
        try:
            cards.append(read_card(path))
        except WeightsError as exc:
            # one stray or broken .json must not make every other card unusable
            warnings.warn(f"skipping {path.name} in {folder}: not a model card ({exc})", UserWarning,
                          stacklevel=2)
    return sorted(cards, key=lambda c: str(c["id"]))


def card_setting(card: Mapping[str, Any]) -> str:
    """The card's task parameter as text: 'sigma=25', 'sigma in [0, 55]', 'x2', 'x2,3,4' or ''."""
    if card.get("sigma") is not None:
        return f"sigma={card['sigma']:g}"
    if card.get("sigma_range") is not None:
        lo, hi = card["sigma_range"]
        return f"sigma in [{lo:g}, {hi:g}]"
    scales = card_scales(card)
    return "x" + ",".join(str(s) for s in scales) if scales else ""


def card_scales(card: Mapping[str, Any]) -> list[int]:
    """The scale factors a card serves (``scale`` or ``scales``)."""
    scales = card.get("scales")
    if scales is None:
        scales = [] if card.get("scale") is None else [card["scale"]]
    return [int(s) for s in scales]


def card_channels(card: Mapping[str, Any]) -> int:
    """Image channels the card's model takes (1: gray or the Y channel, 3: RGB)."""
    if card.get("channels") is not None:
        return int(card["channels"])
    return int((card["architecture"].get("kwargs") or {}).get("channels", 1))


def _available_text(directory: str | os.PathLike | None, cards: list[dict[str, Any]] | None = None) -> str:
    """What the folder offers; ``cards``: the caller's own listing of it (which has warned about bad files)."""
    try:
        cards = list_cards(directory) if cards is None else cards
    except DeconvlabError:
        cards = []
    folder = _directory(directory)
    if not cards and not folder.is_dir():  # list_cards finds no cards there; "git checkout" would not help
        return f"{folder} is {'a file' if folder.exists() else 'missing'}: pass a folder of model cards"
    if not cards:
        return (f"no model cards in {folder}: git checkout data/weights, or train one with "
                "`python -m deconvlab train`")
    items = [f"{c['id']} ({c['task']} {card_setting(c)}, {card_channels(c)} ch)".replace(" ,", ",")
             for c in cards]
    return "available: " + "; ".join(items)


def find_card(
    task: str,
    sigma: float | None = None,
    scale: int | None = None,
    channels: int | None = None,
    directory: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The card for a task and its exact sigma or scale (a blind card's ``sigma_range`` also matches).

    Exact sigma beats a range; with ``channels`` given, a card with that many channels beats a gray one.
    When several cards remain, the one marked ``"default": true`` (for SR: true, or a list of the scales it
    is the default for) is chosen; none or several defaults raise :class:`ArgumentError` naming them, as does
    no match (listing the cards that exist). Taught in chapter 4 (notebooks/04_code_example).
    """
    check_task(task)
    # _rank compares int(scale) and float(sigma): scale=2.5 would get the x2 card, sigma=True the blind one
    sigma = None if sigma is None else number("sigma", sigma)
    scale = None if scale is None else integer("scale", scale, 1)
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int | np.integer)
                                 or channels not in (1, 3)):
        raise ArgumentError(f"channels={channels!r}: use 1 (gray) or 3 (colour), or None for no preference")
    want = 1 if channels is None else int(channels)  # with no preference, the gray (per-channel) model
    listed = list_cards(directory)
    tied, defaults = _best_cards(listed, task, sigma, scale, want)
    asked = {"denoise": f" sigma={sigma:g}" if sigma is not None else " (no --sigma)",
             "sr": f" scale={scale}" if scale is not None else " (no --scale)", "deblur": ""}[task]
    if not tied:
        raise ArgumentError(f"no shipped weights for {task}{asked}; {_available_text(directory, listed)}")
    if len(tied) == 1:
        return tied[0]
    if len(defaults) == 1:
        return defaults[0]
    ids = ", ".join(str(c["id"]) for c in (defaults or tied))
    problem = "several are marked" if defaults else "none is marked"
    raise ArgumentError(f"{len(tied)} cards serve {task}{asked} ({ids}) and {problem} \"default\": true; "
                        "pass one by id (--weights ID) or mark exactly one default in its card")


def _best_cards(cards: list[dict[str, Any]], task: str, sigma: float | None, scale: int | None,
                want: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the cards that serve the request equally best, those of them marked default): :func:`find_card` picks
    the only one of the first, else the only one of the second."""
    candidates = [((rank, 0 if card_channels(card) == want else 1), card) for card in cards
                  if (rank := _rank(card, task, sigma, scale)) is not None]
    best = min((key for key, _ in candidates), default=None)
    tied = [card for key, card in candidates if key == best]
    return tied, [card for card in tied if is_default(card, scale)]


def is_default(card: Mapping[str, Any], scale: int | None = None) -> bool:
    """Whether a card is the default for its setting (SR: for ``scale``; ``"default": [2, 3]`` names them)."""
    flag = card.get("default", False)
    if isinstance(flag, list):
        return bool(flag) if scale is None else int(scale) in [int(k) for k in flag]
    return flag is True


def _rank(card: Mapping[str, Any], task: str, sigma: float | None, scale: int | None) -> int | None:
    """How well a card serves the request; lower is better, None: not at all.

    0: the task with its exact sigma or a scale the card serves; for denoising also 1: inside a blind card's
    range, 2: a blind card for an unspecified sigma.
    """
    if card["task"] != task:
        return None
    if task == "sr":
        return 0 if scale is not None and int(scale) in card_scales(card) else None
    if task != "denoise":
        return 0
    blind = card.get("sigma_range") is not None
    if sigma is None:
        return 2 if blind else None
    if card.get("sigma") is not None and math.isclose(float(card["sigma"]), float(sigma), abs_tol=1e-6):
        return 0
    if not blind:
        return None
    lo, hi = (float(v) for v in card["sigma_range"])
    return 1 if lo <= float(sigma) <= hi else None


def weights_path(card: Mapping[str, Any], directory: str | os.PathLike | None = None) -> Path:
    """The weights file a card names, relative to the card's folder; WeightsError if it points outside it."""
    folder = Path(card["_path"]).parent if card.get("_path") else _directory(directory)
    name = card["weights_file"]
    path = folder / str(name)
    if not isinstance(name, str) or not name or Path(name).is_absolute() \
            or not path.resolve().is_relative_to(folder.resolve()):
        raise WeightsError(f"model card {card.get('id', '?')} names weights_file {name!r} outside its folder "
                           f"{folder}; a card may only name a file next to it")
    return path


#: Limits of builder arguments a card may ask for (inclusive): a forged card cannot build a giant model.
ARG_LIMITS: dict[str, tuple[int, int]] = {
    "channels": (1, 4), "depth": (1, 200), "width": (1, 1024), "kernel_size": (1, 15), "skip_every": (0, 200),
    "scale": (1, 8), "d": (1, 1024), "s": (1, 1024), "m": (0, 100), "widths": (1, 1024), "depths": (1, 64),
    "down_kernel": (2, 8), "up_kernel": (2, 16),
}
MAX_CARD_PARAMS = 50_000_000  # 100 MB of float16: far above any shipped card, far below running out of memory


def _builder_parameters(builder: str) -> dict[str, Any]:
    """name -> default of every argument the builder takes (red_net_sr also takes red_net's)."""
    from . import models

    params = {}
    for fn in [models.BUILDERS[builder]] + ([models.red_net] if builder == "red_net_sr" else []):
        for name, p in inspect.signature(fn).parameters.items():
            if p.kind is not inspect.Parameter.VAR_KEYWORD:
                # a required argument (fsrcnn's scale) is an integer
                params.setdefault(name, None if p.default is inspect.Parameter.empty else p.default)
    return params


def _check_argument(source: str, name: str, value: Any, default: Any,
                    advice: str = "git checkout data/weights or re-run training") -> None:
    lo, hi = ARG_LIMITS.get(name, (0, 10_000))
    if value is None and default is None:  # an optional argument left out, e.g. red_net_sr's scale for "pre"
        return
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "is not true/false"
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list)) and 0 < len(value) <= 16 and all(
            _int(v) and lo <= v <= hi for v in value)
        what = f"is not a list of 1 to 16 integers in [{lo}, {hi}]"
    elif isinstance(default, str):
        ok, what = isinstance(value, str) and len(value) <= 64, "is not a short string"
    elif isinstance(default, int) or default is None:
        ok, what = _int(value) and lo <= value <= hi, f"is not an integer in [{lo}, {hi}]"
    elif isinstance(default, float):
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        what = "is not a finite number"
    else:
        return
    if not ok:
        raise WeightsError(f"model card {source}: architecture argument {name}={value!r} {what}; {advice}")


def check_builder_arguments(source: str, builder: str, kwargs: Mapping[str, Any], advice: str) -> None:
    """Refuse, as :func:`validate_card` does for card ``source``, a builder argument of the wrong type or outside
    :data:`ARG_LIMITS` (:class:`WeightsError` ending in ``advice``); arguments the builder does not take pass."""
    from . import models

    models.get_builder(builder)  # an unknown name: the ArgumentError build_model would give
    known = _builder_parameters(builder)
    for name, value in _builder_kwargs({"kwargs": kwargs}).items():
        if name in known:
            _check_argument(source, name, value, known[name], advice)


def _builder_kwargs(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's arguments minus the Keras model ``name`` (cosmetic; build_model would misread it)."""
    return {k: v for k, v in dict(arch.get("kwargs") or {}).items() if k != "name"}


def _corrupt(path: str | os.PathLike, exc: Exception) -> WeightsError:
    return WeightsError(f"weights file {path} is corrupt ({type(exc).__name__}: {exc}); "
                        "re-download / git checkout data/weights")


def _probe_model(arch: Mapping[str, Any]) -> Any:
    """The architecture built without allocating a single weight: for its shapes and cost, not for running.

    Keras defers variable initialisation inside a ``StatelessScope(initialize_variables=False)``; the deferred
    variables are taken off Keras' to-initialise list afterwards, so nothing is ever allocated for them.
    """
    import keras
    from keras.src.backend.common import global_state  # the deferred-variable list has no public accessor

    from . import models

    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            return models.build_model(arch["builder"], **_builder_kwargs(arch))
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def _npz_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of the weight arrays of a .npz, read from the array headers only (no data is decompressed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            shapes = {}
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key == _PATHS_KEY:
                    continue
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ValueError(f"array {key} has .npy format {version}, not 1.0 or 2.0")
                    shapes[key] = tuple(int(d) for d in read_header(fh)[0])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _corrupt(path, exc) from None
    return [shapes[k] for k in sorted(shapes)]


def validate_card(card: Mapping[str, Any], npz_path: str | os.PathLike | None = None,
                  directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check a card before anything is built or loaded; return it, or raise one-line :class:`WeightsError`.

    Checks: the required fields and task; ``weights_file`` inside the card's folder; a known builder; every
    architecture argument known to it, of the right type and inside :data:`ARG_LIMITS`; ``default``
    true/false (SR: or a list of the card's scales); then the architecture is built without allocating
    weights and must have at most :data:`MAX_CARD_PARAMS` parameters, as many as ``params`` says, and
    exactly the array shapes of ``npz_path`` (read from the .npz headers).
    """
    from . import models

    card = _validate_card(dict(card), str(card.get("id", "?")) if isinstance(card, Mapping) else "?")
    source = str(card["id"])
    weights_path(card, directory)  # refuses a weights_file outside the card's folder
    arch = card["architecture"]
    builder = arch["builder"]
    if builder not in models.BUILDERS:
        raise WeightsError(f"model card {source} names unknown builder {builder!r}; "
                           f"this deconvlab has {', '.join(models.BUILDERS)}")
    known = _builder_parameters(builder)
    for name, value in _builder_kwargs(arch).items():
        if name not in known:
            raise WeightsError(f"model card {source}: {builder} takes no argument {name!r}; "
                               "the card does not match this version of deconvlab")
        _check_argument(source, name, value, known[name])
    try:
        model = _probe_model(arch)
    except (ArgumentError, TypeError, ValueError) as exc:
        raise WeightsError(f"model card {source} does not match this version of deconvlab ({exc}); "
                           "git checkout data/weights or re-run training") from None
    shapes = [tuple(int(d) for d in v.shape) for v in model.weights]
    total = sum(map(math.prod, shapes))
    if total > MAX_CARD_PARAMS:
        raise WeightsError(f"model card {source} describes a model of {total:,} parameters, more than "
                           f"{MAX_CARD_PARAMS:,}; refusing to build it")
    trainable = models.count_params(model)
    if card.get("params") is not None and card["params"] != trainable:
        raise WeightsError(f"model card {source} says params={card['params']!r}, its architecture has "
                           f"{trainable:,}; the card does not match its architecture")
    if npz_path is not None:
        stored = _npz_shapes(Path(npz_path))
        if stored != shapes:
            raise WeightsError(f"weights file {npz_path} holds {len(stored)} arrays "
                               f"({sum(map(math.prod, stored)):,} values), the card's architecture "
                               f"{len(shapes)} ({total:,}); the card does not match its weights")
    return card


def verify_weights(card: Mapping[str, Any], directory: str | os.PathLike | None = None) -> Path:
    """The card's weights file after checking it exists and its sha256 matches; else :class:`WeightsError`."""
    path = weights_path(card, directory)
    if not path.is_file():
        raise WeightsError(f"weights file {path} for card {card['id']} is missing; git checkout data/weights "
                           "(or git lfs pull) to restore it")
    actual = sha256_file(path)
    if actual != card["weights_sha256"]:
        raise WeightsError(f"weights file {path} has sha256 {actual[:16]}..., the card expects "
                           f"{str(card['weights_sha256'])[:16]}...; re-download / git checkout data/weights")
    return path


def save_weights_fp16(model: Any, path: str | os.PathLike) -> str:
    """Save ``model.get_weights()`` as float16 arrays in a ``.npz`` (float32 where float16 is not faithful).

    Returns the dtype summary for the card: ``"float16"``, or ``"float16+float32"`` if some array stayed
    float32.
    """
    stored = [_to_fp16_if_faithful(np.asarray(w)) for w in model.get_weights()]
    arrays = {f"w{i:04d}": w for i, w in enumerate(stored)}
    # The variable paths are for humans reading the file; loading matches by order and shape.
    arrays[_PATHS_KEY] = np.array([str(v.path) for v in model.weights], dtype=np.str_)
    write_atomic(Path(path), lambda fh: np.savez_compressed(fh, **arrays))
    dtypes = {str(w.dtype) for w in stored}
    return "+".join(sorted(dtypes, key=lambda d: d != "float16")) if dtypes else "float16"


def _to_fp16_if_faithful(w: np.ndarray) -> np.ndarray:
    if not np.issubdtype(w.dtype, np.floating):
        return w  # integer state (e.g. a seed generator) is stored as is
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    if peak == 0.0:
        return w.astype(np.float16)
    with np.errstate(over="ignore"):
        w16 = w.astype(np.float16)
    err = float(np.max(np.abs(w16.astype(np.float64) - w.astype(np.float64)))) / peak
    return w16 if np.all(np.isfinite(w16)) and err <= FP16_TOLERANCE else w.astype(np.float32)


def load_weights_fp16(model: Any, path: str | os.PathLike) -> Any:
    """Load a ``.npz`` written by :func:`save_weights_fp16` into ``model`` (cast to its variables' dtypes)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = [data[k] for k in sorted(data.files) if k != _PATHS_KEY]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, exc) from None
    variables = model.weights
    if len(stored) != len(variables):
        raise WeightsError(f"weights file {path} holds {len(stored)} arrays but the model has "
                           f"{len(variables)} variables; the card's architecture does not match its weights: "
                           "re-run training or git checkout data/weights")
    for var, arr in zip(variables, stored, strict=True):
        if tuple(arr.shape) != tuple(var.shape):
            raise WeightsError(f"weights file {path}: array of shape {arr.shape} for variable {var.path} "
                               f"of shape {tuple(var.shape)}; the card's architecture does not match its "
                               "weights")
    model.set_weights([arr.astype(np.dtype(var.dtype)) for var, arr in zip(variables, stored, strict=True)])
    return model


def load_keras_file(path: str | os.PathLike) -> Any:
    """A whole-model ``.keras`` file, loaded with ``safe_mode=True`` (no arbitrary code), uncompiled."""
    import keras

    from . import layers, models  # noqa: F401  (registers the custom layers for safe deserialisation)

    path = Path(path)
    if not path.is_file():
        raise ArgumentError(f"--weights {path}: no such .keras file; "
                            "pass a card id, a card .json or a .keras file")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of an existing file that is no archive
        raise ArgumentError(f"--weights {path} is not a .keras archive (a zip file): pass a .keras file saved by "
                            "model.save() or a card id")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a bad archive; all mean "not a usable model file"
        reason = " ".join(str(exc).split())[:200]
        raise ArgumentError(f"--weights {path} could not be loaded as a Keras model ({type(exc).__name__}: "
                            f"{reason}); pass a .keras file saved by model.save() or a card id") from None


def load_pretrained(
    task: str | None = None,
    sigma: float | None = None,
    scale: int | None = None,
    card: Mapping[str, Any] | str | os.PathLike | None = None,
    directory: str | os.PathLike | None = None,
    channels: int | None = None,
) -> Any:
    """A ready keras.Model for a task (sigma / scale) or a given card, its weights verified by sha256.

    Taught in chapter 4 (notebooks/04_code_example).
    """
    from . import models

    if card is None:
        if task is None:
            raise ArgumentError("load_pretrained needs a task ('denoise', 'sr', 'deblur') or a card")
        card = find_card(task, sigma=sigma, scale=scale, channels=channels, directory=directory)
    elif not isinstance(card, Mapping):
        card = read_card(card, directory)
    card = _validate_card(dict(card), str(card.get("id", "?")))
    path = verify_weights(card, directory)
    card = validate_card(card, path, directory)  # architecture and shapes, before a weight is allocated
    arch = card["architecture"]
    return load_weights_fp16(models.build_model(arch["builder"], **_builder_kwargs(arch)), path)


def card_macs_per_pixel(card: Mapping[str, Any], model: Any = None) -> int | float | dict[str, int | float]:
    """Multiply-adds per output pixel of a card's architecture (:func:`deconvlab.models.macs_per_pixel`).

    A number for denoising and deblurring; for super-resolution ``{"2": ..., "3": ...}`` per scale the card
    serves (a pre-upsampling model costs the same at every scale: it runs on the bicubic-upscaled image).
    Computed from the architecture without allocating its weights, or from ``model`` when given.
    """
    from . import models

    macs = models.macs_per_pixel(model if model is not None else _probe_model(card["architecture"]))
    # whole numbers stay integers in the JSON; a x3 model's count per output pixel can be fractional
    macs = int(macs) if float(macs).is_integer() else round(macs, 1)
    return {str(k): macs for k in card_scales(card)} if card.get("task") == "sr" else macs


def card_macs(card: Mapping[str, Any], scale: int | None = None) -> float | None:
    """The ``macs_per_pixel`` a card records (for SR at ``scale``, else its first scale), or None if none."""
    value = card.get("macs_per_pixel")
    if isinstance(value, Mapping):
        first = next(iter(card_scales(card)), "")
        value = value.get(str(scale if scale is not None else first))
    return None if value is None else float(value)


#: The test set of each task's PSNR in ``python -m deconvlab models`` (denoisers at their sigma, blind ones at
#: 15/25/50; SR at every scale the card serves).
MODEL_ROW_DATASETS = {"denoise": "bsd68", "sr": "set5", "deblur": "bsd68"}


def model_rows(directory: str | os.PathLike | None = None,
               speed_file: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per card for ``python -m deconvlab models``: what it does, if it loads by default, its cost.

    Keys: id, task, setting, default ("yes", "no" or the SR scales it is the default for), builder, params,
    macs_per_pixel (SR: text per scale unless all are equal), test_psnr (full test set of
    :data:`MODEL_ROW_DATASETS`, or the card's first full set when it has no number on that one: "dataset
    setting: dB, setting: dB"), and cpu_s_per_mpx: the card's field, else what ``speed_file`` (default, for
    the shipped cards only: ``benchmarks/results/speed_cpu.json``) measured for the card's id or for another
    card of the same architecture, else None.
    """
    if speed_file is None and _is_shipped_folder(directory):
        speed_file = results_dir() / "speed_cpu.json"
    speeds = _benchmark_speeds(speed_file) if speed_file is not None else {}
    cards = list_cards(directory)
    # the speed of a network does not depend on its weights: a card shares a measurement of its architecture
    by_arch = {json.dumps(c["architecture"], sort_keys=True): speeds[str(c["id"])]
               for c in cards if str(c["id"]) in speeds}
    rows = []
    for card in cards:
        scales = card_scales(card) if card["task"] == "sr" else [None]
        picked = []  # the scales where find_card picks this card at its own setting and channels
        for k in scales:
            tied, defaults = _best_cards(cards, card["task"], card.get("sigma"), k, card_channels(card))
            choice = tied if len(tied) == 1 else defaults if len(defaults) == 1 else []
            if choice and choice[0] is card:
                picked.append(k)
        default = "no" if not picked else "yes" if picked == scales else "x" + ",".join(map(str, picked))
        macs = card.get("macs_per_pixel")
        values = list(macs.values()) if isinstance(macs, Mapping) else [] if macs is None else [macs]
        if len({float(v) for v in values}) > 1:  # an SR card whose cost differs by scale
            macs_text = ", ".join(f"x{k}: {float(v) / 1e6:.3f} M" for k, v in macs.items())
        else:
            macs_text = f"{float(values[0]) / 1e6:.3f} M" if values else ""
        arch_key = json.dumps(card["architecture"], sort_keys=True)
        rows.append({
            "id": str(card["id"]), "task": card["task"], "setting": card_setting(card), "default": default,
            "builder": card["architecture"]["builder"], "params": card.get("params"),
            "macs_per_pixel": macs_text, "test_psnr": _row_psnr(card),
            "cpu_s_per_mpx": card.get("cpu_s_per_mpx", speeds.get(str(card["id"]), by_arch.get(arch_key))),
        })
    return rows


def _is_shipped_folder(directory: str | os.PathLike | None) -> bool:
    """Whether ``directory`` is data/weights: ``models --weights-dir data/weights`` lists the shipped cards too."""
    try:
        return directory is None or os.path.samefile(directory, weights_dir())
    except OSError:  # a folder that does not exist
        return False


def model_table(directory: str | os.PathLike | None = None) -> str:
    """:func:`model_rows` as an aligned Markdown table with a legend (``python -m deconvlab models``)."""
    rows = model_rows(directory)
    if not rows:
        raise ArgumentError(_available_text(directory, []))  # "no model cards in ..."; model_rows warned
    header = ("id", "task", "setting", "default", "arch", "params", "MACs/px", "test PSNR (dB)", "CPU s/Mpx")
    cells = [[r["id"], r["task"], r["setting"], r["default"], r["builder"],
              "" if r["params"] is None else f"{r['params']:,}", r["macs_per_pixel"], r["test_psnr"],
              "" if r["cpu_s_per_mpx"] is None else f"{r['cpu_s_per_mpx']:.1f}"] for r in rows]
    cells = [[c or "-" for c in row] for row in cells]
    widths = [max(map(len, column)) for column in zip(header, *cells, strict=True)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in (header, ["-" * w for w in widths], *cells)]
    sets = ", ".join(f"{task}: {name}" for task, name in MODEL_ROW_DATASETS.items())
    lines += ["", f"PSNR: mean over the full test set ({sets}); MACs: multiply-adds per output pixel; "
              "CPU s/Mpx: from the card or benchmarks/results/speed_cpu.json (first enhance call on its "
              "largest image, default tile; '-': not measured); default: the card enhance picks for its "
              "setting."]
    return "\n".join(lines)


def _row_psnr(card: Mapping[str, Any]) -> str:
    """'bsd68 sigma=15: 31.62, sigma=25: 29.18', 'set5 x2: 37.49, x3: 33.64', 'bsd68: 29.15' or ''."""
    full = [m for m in card.get("metrics") or [] if not m.get("limit") and m.get("psnr") is not None]
    wanted = MODEL_ROW_DATASETS.get(str(card.get("task")))
    dataset = wanted if any(m["dataset"] == wanted for m in full) else (full[0]["dataset"] if full else None)
    parts = []
    for m in (m for m in full if m["dataset"] == dataset):
        setting = (f"sigma={m['sigma']:g}: " if m.get("sigma") is not None
                   else f"x{int(m['scale'])}: " if m.get("scale") is not None else "")
        parts.append(f"{setting}{m['psnr']:.2f}")
    if not parts:
        return ""
    return f"{dataset} {', '.join(parts)}" if ":" in parts[0] else f"{dataset}: {', '.join(parts)}"


def _benchmark_speeds(path: str | os.PathLike) -> dict[str, float]:
    """{card id: CPU seconds per megapixel} from a ``benchmarks/speed_cpu.py`` result, {} if unreadable.

    For each card it measured: the (first-call) number on its largest image, at ``enhance``'s default tile
    where measured. Rows name their card (``card``) and its speed (``s_per_mpx``).
    """
    from .config import DEFAULT_TILE

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        best: dict[str, tuple[tuple[bool, float], float]] = {}
        for row in data["rows"]:
            card_id, value = row.get("card"), row.get("s_per_mpx")
            if not card_id or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            key = (row.get("tile") in (None, DEFAULT_TILE), float(row.get("megapixels") or 0))
            if card_id not in best or key > best[card_id][0]:
                best[str(card_id)] = (key, float(value))
        return {card_id: value for card_id, (_, value) in best.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The repository's HEAD commit (with ``-dirty`` if tracked files changed), or 'unknown' without git.

    ``$DECONVLAB_COMMIT`` wins: a copy of the tree without ``.git`` (the GPU host gets one) still records
    its commit.
    """
    if os.environ.get("DECONVLAB_COMMIT"):
        return os.environ["DECONVLAB_COMMIT"]
    cwd = str(root or repo_root())

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        # --no-optional-locks: reading the status must not rewrite the index of a repo someone else is using.
        status = git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if status.strip() else "")


default_card_id = card_id  # the name chapters and tests use


def save_pretrained(model: Any, card_fields: Mapping[str, Any],
                    out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``<id>.weights.npz`` and ``<id>.json`` into ``out_dir``; return the card.

    ``card_fields`` must give ``task``; ``architecture`` ({builder, kwargs}) defaults to
    ``deconvlab.models.model_spec(model)`` and ``id`` to :func:`default_card_id`. The card gains
    weights_file, weights_sha256, weights_dtype, params (trainable), macs_per_pixel (per scale for SR),
    channels, backend, keras version, hardware, precision, commit and created (UTC). ``"default": true`` is
    the caller's decision (see :func:`find_card`).
    """
    import keras

    from . import models
    from .config import device_name, keras_backend

    fields = dict(card_fields)
    if fields.get("task") not in TASKS:
        raise ArgumentError(f"card_fields needs task in {TASKS}, got {fields.get('task')!r}")
    arch = fields.get("architecture") or models.model_spec(model)
    if not isinstance(arch, Mapping) or "builder" not in arch:
        raise ArgumentError("the model was not built by deconvlab.models and card_fields has no "
                            "architecture={'builder': name, 'kwargs': {...}}: pass it so the card can "
                            "rebuild the model")
    arch = {"builder": arch["builder"], "kwargs": _builder_kwargs(arch)}
    try:  # refuse before writing anything rather than leave weights without a card
        json.dumps(_json_ready(arch), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"the architecture kwargs are not JSON-serialisable ({exc})") from None
    channels = int(model.inputs[0].shape[-1]) if getattr(model, "inputs", None) else 1
    card_id = str(fields.get("id") or default_card_id(
        fields["task"], fields.get("sigma"), fields.get("scale"), fields.get("sigma_range"), channels))
    folder = _directory(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {folder} ({exc}); "
                           "pass a writable out_dir") from None
    weights_file = f"{card_id}{WEIGHTS_SUFFIX}"
    dtype = save_weights_fp16(model, folder / weights_file)
    try:
        macs = card_macs_per_pixel(fields, model)
    except ArgumentError:  # a model whose layers cannot be traced: its card records no macs_per_pixel
        macs = None
    card: dict[str, Any] = {
        "id": card_id,
        "task": fields["task"],
        "channels": channels,
        "architecture": arch,
        "params": int(models.count_params(model)),
        "weights_file": weights_file,
        "weights_sha256": sha256_file(folder / weights_file),
        "weights_dtype": dtype,
        **({} if macs is None else {"macs_per_pixel": macs}),
        "backend": keras_backend(),
        "keras": keras.__version__,
        "hardware": device_name(),
        "precision": keras.config.dtype_policy().name,
        "commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    }
    # Caller's fields win except for the ones computed from the file itself.
    computed = {"weights_file", "weights_sha256", "weights_dtype", "params", "id", "architecture"}
    card.update((key, value) for key, value in fields.items() if key not in computed)
    card["_path"] = str(write_card(card, folder / f"{card_id}.json"))
    return card


def load_history(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON history :func:`train` writes: ``{"format", "meta", "history": {metric: [per epoch]}}``.

    Taught in chapter 3.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArgumentError(f"history file {path} does not exist: "
                            "pass the history_path given to train()") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArgumentError(f"history file {path} is not readable JSON ({exc}): "
                            "re-run train() to rewrite it") from None
    if not isinstance(data, dict) or not isinstance(data.get("history"), dict):
        raise ArgumentError(f"{path} is not a deconvlab training history (no 'history' table): "
                            "pass the file train() wrote")
    data.setdefault("meta", {})
    return data


def save_history(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write a history as :func:`load_history` reads it, atomically: a reader (a plot in another cell, a resumed
    run) never sees half a file. Non-finite values must already be None (JSON has no NaN)."""
    write_atomic(Path(path), (json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8"))


def anchors_for(task: str, sigma: float | None = None, scale: int | None = None,
                datasets: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Published PSNRs (method, dataset, psnr, citation) for a task setting, from :data:`ANCHORS`."""
    wanted = None if datasets is None else {d.lower() for d in datasets}
    key, value = {"denoise": ("sigma", sigma), "sr": ("scale", scale)}.get(task, (None, None))
    return [{k: a[k] for k in ("method", "dataset", "psnr", "citation")} for a in ANCHORS
            if a["task"] == task and (wanted is None or a["dataset"] in wanted)
            and (key is None or a[key] == value)]


def _where(entry: Mapping[str, Any], card: Mapping[str, Any]) -> str:
    """'set5'; for an entry of a multi-scale card 'set5 x3', of a blind card 'bsd68 sigma=25'."""
    scale = entry.get("scale")
    if scale is not None:
        return f"{entry['dataset']} x{int(scale)}"
    if card.get("sigma_range") is not None and entry.get("sigma") is not None:
        return f"{entry['dataset']} sigma={entry['sigma']:g}"
    return str(entry["dataset"])


def render_card_table(cards: Iterable[Mapping[str, Any]]) -> str:
    """A Markdown table of model cards (setting, architecture, size, test PSNR/SSIM, anchors, cost).

    Test metrics are on the full test sets; a card's small CI subsets (entries with a ``limit``) appear
    only when it has nothing else. Taught in chapter 4 (notebooks/04_code_example).
    """
    rows = ["| id | task | setting | architecture | params | MACs / px | test PSNR / SSIM | published "
            "| trained on | time |\n|---|---|---|---|---:|---:|---|---|---|---:|"]
    for card in cards:
        arch = card.get("architecture", {})
        kwargs = arch.get("kwargs") or {}
        arch_text = arch.get("builder", "?") + (
            "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else "")
        metrics = list(card.get("metrics") or [])
        metrics = [m for m in metrics if not m.get("limit")] or metrics
        metrics_text = "<br>".join(f"{_where(m, card)}: {m['psnr']:.2f} dB"
                                   + (f" / {m['ssim']:.4f}" if m.get("ssim") is not None else "")
                                   for m in metrics)
        anchors = "<br>".join(f"{a['method']} {_where(a, card)}: {a['psnr']:.2f}"
                             for a in card.get("anchors") or [])
        wall = card.get("wall_time_s")
        params = card.get("params")
        macs = card_macs(card)
        cells = [str(card.get("id", "")), str(card.get("task", "")), card_setting(card), f"`{arch_text}`",
                 f"{params:,}" if isinstance(params, int) else "", f"{macs:,.0f}" if macs else "",
                 metrics_text or "n/a", anchors, str(card.get("hardware", "")),
                 f"{wall / 60:.1f} min" if isinstance(wall, (int, float)) else ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)
