"""Tests of ``python -m deconvlab``: bad inputs fail with one line and exit 2, odd-but-valid images work.

The weights are tiny untrained models saved with ``save_pretrained`` into a temporary folder, so the tests
do not depend on the shipped weights; ``--weights-dir`` points the CLI at them.
"""

from __future__ import annotations

import io as io_module
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile
from PIL import Image

from deconvlab import cli, console, errors, evaluate, infer, io, metrics, models, plots, tasks, weights


@pytest.fixture(scope="module")
def wdir(tmp_path_factory, save_tiny_cards) -> Path:
    """A weights folder with a gray and a colour denoiser (sigma 25), a post x2 and a pre x3 SR model."""
    return save_tiny_cards(tmp_path_factory.mktemp("weights"), seed=1, pre_x3=True)


@pytest.fixture
def gray_png(tmp_path) -> Path:
    path = tmp_path / "gray.png"
    Image.fromarray((np.random.default_rng(0).random((37, 53)) * 255).astype(np.uint8)).save(path)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, output: Path | None = None, match: str = "") -> str:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("deconvlab: error: ")
    assert "Traceback" not in err
    assert match.lower() in lines[0].lower(), lines[0]
    if output is not None:
        assert not output.exists()
    return lines[0]


def denoise_args(src, dst, wdir, *extra):
    return ("enhance", src, dst, "--task", "denoise", "--sigma", "25", "--weights-dir", wdir, *extra)


# ------------------------------------------------------------------------------------- bad inputs


def test_missing_input(capsys, tmp_path, wdir):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(tmp_path / "nope.png", out, wdir))
    assert_one_line_error(code, err, out, "no file at")


def test_directory_as_input(capsys, tmp_path, wdir):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(tmp_path, out, wdir))
    assert_one_line_error(code, err, out, "is a directory")


def test_text_file_as_input(capsys, tmp_path, wdir):
    src, out = tmp_path / "notes.png", tmp_path / "out.png"
    src.write_text("this is not an image\n" * 10)
    code, _, err = run(capsys, *denoise_args(src, out, wdir))
    assert_one_line_error(code, err, out, "not an image")


def test_truncated_png(capsys, gray_png, tmp_path, wdir):
    data = gray_png.read_bytes()
    gray_png.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, out, "truncated or corrupt")


def test_zero_size_file(capsys, tmp_path, wdir):
    src, out = tmp_path / "empty.png", tmp_path / "out.png"
    src.touch()
    code, _, err = run(capsys, *denoise_args(src, out, wdir))
    assert_one_line_error(code, err, out, "empty")


def test_nan_in_float_tiff(capsys, tmp_path, wdir):
    tifffile = pytest.importorskip("tifffile")
    src, out = tmp_path / "nan.tif", tmp_path / "out.png"
    arr = np.full((8, 8), 0.5, dtype=np.float32)
    arr[3, 4] = np.nan
    tifffile.imwrite(src, arr)
    code, _, err = run(capsys, *denoise_args(src, out, wdir))
    assert_one_line_error(code, err, out, "NaN")


def test_more_pixels_than_the_limit(capsys, gray_png, tmp_path, wdir, monkeypatch):
    monkeypatch.setenv("DECONVLAB_MAX_PIXELS", "1000")
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, out, "more than the limit")


def test_sr_output_larger_than_the_limit(capsys, gray_png, tmp_path, wdir, monkeypatch):
    monkeypatch.setenv("DECONVLAB_MAX_PIXELS", str(37 * 53 * 2))  # the input fits, its x2 result does not
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "sr", "--scale", "2", "--weights-dir", wdir)
    assert_one_line_error(code, err, out, "x2 result would have")


def test_unknown_task(capsys, gray_png, tmp_path):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "inpaint")
    assert_one_line_error(code, err, out, "invalid choice: 'inpaint'")


@pytest.mark.parametrize("sigma", ["0", "-5", "150", "nan"])
def test_sigma_out_of_range(capsys, gray_png, tmp_path, sigma):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "denoise", "--sigma", sigma)
    assert_one_line_error(code, err, out, "is outside (0, 100]")


def test_unsupported_scale(capsys, gray_png, tmp_path):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "sr", "--scale", "5")
    assert_one_line_error(code, err, out, "--scale 5 is not supported: use one of 2, 3, 4")


@pytest.mark.parametrize(("argv", "match"), [
    (("--task", "sr"), "--task sr needs --scale"),
    (("--task", "sr", "--scale", "2", "--sigma", "25"), "--sigma applies to --task denoise only"),
    (("--task", "denoise", "--sigma", "25", "--scale", "2"), "--scale applies to --task sr only"),
    (("--task", "sr", "--scale", "2.5"), "invalid int value"),
    (("--task", "denoise", "--sigma", "25", "--bogus"), "unrecognized arguments: --bogus"),
    (("--task", "denoise", "--sigma", "25", "--tile", "40", "--overlap", "32"), "--tile 40 must be larger"),
    (("--task", "denoise", "--sigma", "25", "--tile", "-8"), "pass sizes >= 0"),
])
def test_bad_option_combinations(capsys, gray_png, tmp_path, argv, match):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, *argv)
    assert_one_line_error(code, err, out, match)


def test_output_under_a_regular_file(capsys, gray_png, tmp_path, wdir):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker / "sub" / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, out, "is a file, not a folder")


def test_output_folder_missing(capsys, gray_png, tmp_path, wdir):
    out = tmp_path / "no" / "such" / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, out, "does not exist")


def test_output_is_a_directory_or_not_png(capsys, gray_png, tmp_path, wdir):
    code, _, err = run(capsys, *denoise_args(gray_png, tmp_path, wdir))
    assert_one_line_error(code, err, None, "is a directory")
    out = tmp_path / "out.jpg"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, out, "does not end in .png")


def test_existing_output_without_overwrite(capsys, gray_png, tmp_path, wdir):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, None, "exists: pass --overwrite")
    assert out.read_bytes() == b"precious"


def _copy_weights(wdir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "weights"
    shutil.copytree(wdir, copy)
    return copy


def test_weights_with_a_wrong_hash(capsys, gray_png, tmp_path, wdir):
    bad = _copy_weights(wdir, tmp_path)
    path = bad / "denoise-sigma25.weights.npz"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, bad))
    assert_one_line_error(code, err, out, "the card expects")


def test_corrupted_weights_file(capsys, gray_png, tmp_path, wdir):
    bad = _copy_weights(wdir, tmp_path)
    path = bad / "denoise-sigma25.weights.npz"
    path.write_bytes(path.read_bytes()[:200])  # cut off, and the card updated to match: only decoding can tell
    card = weights.read_card("denoise-sigma25", bad)
    card["weights_sha256"] = weights.sha256_file(path)
    weights.write_card(card, bad / "denoise-sigma25.json")
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, bad))
    assert_one_line_error(code, err, out, "is corrupt")


def test_missing_weights_file(capsys, gray_png, tmp_path, wdir):
    bad = _copy_weights(wdir, tmp_path)
    (bad / "denoise-sigma25.weights.npz").unlink()
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, bad))
    assert_one_line_error(code, err, out, "is missing")


@pytest.mark.parametrize(("argv", "match"), [
    (("--task", "denoise", "--sigma", "30"), "no shipped weights for denoise sigma=30; available: denoise-sigma25"),
    (("--task", "denoise", "--sigma", "25", "--weights", "nonexistent-card"), "no model card 'nonexistent-card'"),
    (("--task", "denoise", "--sigma", "25", "--weights", "sr-x2"), "is for --task sr, not denoise"),
    (("--task", "deblur"), "no shipped weights for deblur"),
    (("--task", "sr", "--scale", "4"), "no shipped weights for sr scale=4"),
])
def test_weights_that_do_not_fit(capsys, gray_png, tmp_path, wdir, argv, match):
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, *argv, "--weights-dir", wdir)
    assert_one_line_error(code, err, out, match)


@pytest.mark.parametrize(("content", "match"), [
    (b"not a zip", "is not a .keras archive"),  # Keras itself would say "File not found" of it
    (None, "could not be loaded as a Keras model"),  # a zip without a model's config
])
def test_bad_keras_file(capsys, gray_png, tmp_path, content, match):
    fake = tmp_path / "model.keras"
    if content is None:
        with zipfile.ZipFile(fake, "w") as archive:
            archive.writestr("notes.txt", "no model here")
    else:
        fake.write_bytes(content)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "denoise", "--sigma", "25", "--weights", fake)
    assert_one_line_error(code, err, out, match)


def test_no_command_and_help(capsys):
    code, _, err = run(capsys)
    assert_one_line_error(code, err, None, "choose a command")
    for command in cli.COMMANDS:
        code, out, err = run(capsys, command, "--help")
        assert code == 0 and out.startswith(f"usage: deconvlab {command}") and err == ""


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    out = tmp_path / "out.png"
    proc = subprocess.run([sys.executable, "-m", "deconvlab", "enhance", str(tmp_path / "missing.png"), str(out),
                           "--task", "denoise", "--sigma", "25"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("deconvlab: error: no file")
    assert not out.exists()


def test_subprocess_weights_error_after_keras_start_is_one_line(gray_png, tmp_path, wdir):
    """Keras (TensorFlow) is imported on this path; its C++ start-up logging must not reach stderr."""
    bad = _copy_weights(wdir, tmp_path)
    (bad / "denoise-sigma25.weights.npz").write_bytes(b"garbage")
    out = tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "deconvlab", *map(str, denoise_args(gray_png, out, bad))],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "the card expects" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("argv, unbuffered", [(["models"], ""), (["models"], "1"), (["--version"], ""),
                                              (["--version"], "1"), (["--help"], "1"), (["enhance", "--help"], "1")])
def test_subprocess_output_into_a_closed_pipe_is_quiet(argv, unbuffered):
    """`deconvlab models | head -1`: a reader that stops early is no error; status 141 (128 + SIGPIPE) as coreutils.
    Buffered, the write fails only in the flush at exit; unbuffered, in print() (or argparse's write of --help)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as with `| true`
    try:
        proc = subprocess.run([sys.executable, "-m", "deconvlab", *argv], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": unbuffered})
    finally:
        os.close(write)
    assert proc.returncode == console.EX_BROKEN_PIPE, proc.stderr
    assert proc.stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("argv, unbuffered", [(["models"], ""), (["models"], "1"), (["--help"], ""),
                                              (["--help"], "1"), (["--version"], "")])
def test_subprocess_output_onto_a_full_disk_is_one_line(argv, unbuffered):
    """`deconvlab models > /dev/full`: one error line and status 2. Buffered, what run()'s flush could not write
    stays buffered, and the interpreter's own flush at exit used to fail again (a second message, status 120)."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "deconvlab", *argv], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": unbuffered})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["deconvlab: error: No space left on device; check the path, free space and "
                                        "permissions"], proc.stderr


def test_subprocess_interrupted_with_output_onto_a_full_disk_keeps_status_130():
    # a Ctrl-C after output that a full disk left buffered: the flush at exit used to fail and make the status 120
    code = ("import sys; from deconvlab import console; print('x' * 100)\n"
            "def stop():\n    raise KeyboardInterrupt\n"
            "sys.exit(console.run(stop))")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120, env={**os.environ, "PYTHONUNBUFFERED": ""})
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == ["deconvlab: error: interrupted; nothing was written"], proc.stderr


def test_a_broken_pipe_that_is_not_stdout_is_an_error(capsys, monkeypatch):
    def closed(*args, **kwargs):  # e.g. a socket: stdout (here captured) is still open
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(weights, "model_table", closed)
    code, out, err = run(capsys, "models")
    assert code == 2 and out == "" and err.startswith("deconvlab: error: Broken pipe"), err


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_subprocess_error_into_a_closed_stderr_keeps_its_status(unbuffered):
    """`deconvlab ... 2>&1 | true`: the error line has no reader and is lost, but the status is still 2, not the 1
    of a traceback or the 120 of a failed flush at exit."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "deconvlab", "--no-such-option"], stdout=subprocess.PIPE,
                              stderr=write, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": unbuffered})
    finally:
        os.close(write)
    assert proc.returncode == 2 and proc.stdout == ""


def test_a_warning_into_a_closed_stderr_does_not_end_the_command(monkeypatch):
    read, write = os.pipe()
    os.close(read)
    with open(write, "w") as closed:
        monkeypatch.setattr(sys, "stderr", closed)
        code = console.run(lambda: warnings.warn("nobody reads this", UserWarning, stacklevel=1) or 0)
    assert code == 0  # Python's own showwarning drops a warning it cannot write, too


# ------------------------------------------------------------------------------------- good inputs


def _expected_gray(wdir: Path, plane: np.ndarray) -> np.ndarray:
    model = weights.load_pretrained("denoise", sigma=25, directory=wdir)
    pred = keras.ops.convert_to_numpy(model(plane[None, :, :, None].astype(np.float32)))[0, :, :, 0]
    return np.rint(np.clip(pred, 0, 1) * 255)


def test_odd_size_gray_matches_the_model(capsys, gray_png, tmp_path, wdir):
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert code == 0, err
    assert "wrote" in stdout and "denoise-sigma25" in stdout
    result = np.asarray(Image.open(out))
    assert result.shape == (37, 53) and result.dtype == np.uint8
    expected = _expected_gray(wdir, io.read_image(gray_png))
    assert np.abs(result.astype(float) - expected).max() <= 1  # float16 weights vs. rounding at the 8-bit step


def test_one_pixel_image(capsys, tmp_path, wdir):
    src, out = tmp_path / "px.png", tmp_path / "out.png"
    Image.fromarray(np.array([[128]], dtype=np.uint8)).save(src)
    code, _, err = run(capsys, *denoise_args(src, out, wdir))
    assert code == 0, err
    assert np.asarray(Image.open(out)).shape == (1, 1)


def test_rgb_uses_the_colour_card_and_rgba_warns(capsys, tmp_path, wdir):
    rgba = (np.random.default_rng(2).random((9, 14, 4)) * 255).astype(np.uint8)
    src, out = tmp_path / "rgba.png", tmp_path / "out.png"
    Image.fromarray(rgba, mode="RGBA").save(src)
    code, stdout, err = run(capsys, *denoise_args(src, out, wdir))
    assert code == 0, err
    assert "denoise-sigma25-rgb" in stdout
    assert err.startswith("deconvlab: warning:") and "alpha" in err and len(err.strip().splitlines()) == 1
    assert np.asarray(Image.open(out)).shape == (9, 14, 3)


def test_colour_weights_with_colour_ycbcr_are_refused_in_one_line(capsys, tmp_path, wdir):
    src, out = tmp_path / "rgb.png", tmp_path / "out.png"
    Image.fromarray((np.random.default_rng(3).random((11, 13, 3)) * 255).astype(np.uint8)).save(src)
    code, _, err = run(capsys, *denoise_args(src, out, wdir, "--weights", "denoise-sigma25-rgb", "--colour", "ycbcr"))
    assert_one_line_error(code, err, out, match="--colour rgb")


def test_gray_model_runs_per_channel_on_rgb(capsys, tmp_path, wdir):
    rgb = (np.random.default_rng(3).random((11, 13, 3)) * 255).astype(np.uint8)
    src, out = tmp_path / "rgb.png", tmp_path / "out.png"
    Image.fromarray(rgb).save(src)
    code, stdout, err = run(capsys, *denoise_args(src, out, wdir, "--weights", "denoise-sigma25"))
    assert code == 0, err
    result = np.asarray(Image.open(out)).astype(float)
    for c in range(3):
        assert np.abs(result[..., c] - _expected_gray(wdir, rgb[..., c] / 255.0)).max() <= 1


def test_enhance_warns_when_sigma_is_not_the_weights_level(capsys, tmp_path, gray_png, wdir):
    code, _, err = run(capsys, "enhance", gray_png, tmp_path / "o.png", "--task", "denoise", "--sigma", "50",
                       "--weights-dir", wdir, "--weights", "denoise-sigma25")
    assert code == 0 and "warning: card denoise-sigma25 was trained for sigma=25, not 50" in err, err


def test_gray_stored_as_rgb_stays_rgb_with_equal_channels(capsys, tmp_path, wdir):
    plane = (np.random.default_rng(4).random((10, 12)) * 255).astype(np.uint8)
    src, out = tmp_path / "grayrgb.png", tmp_path / "out.png"
    Image.fromarray(np.repeat(plane[..., None], 3, axis=-1)).save(src)
    code, stdout, err = run(capsys, *denoise_args(src, out, wdir))
    assert code == 0, err
    assert "with denoise-sigma25 " in stdout  # the gray model, run once: no colour in the image
    result = np.asarray(Image.open(out))
    assert result.shape == (10, 12, 3)
    assert np.array_equal(result[..., 0], result[..., 1]) and np.array_equal(result[..., 0], result[..., 2])
    assert np.abs(result[..., 0].astype(float) - _expected_gray(wdir, plane / 255.0)).max() <= 1


def test_palette_image(capsys, tmp_path, wdir):
    src, out = tmp_path / "pal.png", tmp_path / "out.png"
    rgb = (np.random.default_rng(5).random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(src)
    code, _, err = run(capsys, *denoise_args(src, out, wdir))
    assert code == 0, err
    assert np.asarray(Image.open(out)).shape == (8, 8, 3)


def test_sixteen_bit_input_keeps_sixteen_bits(capsys, tmp_path, wdir):
    src, out, out8 = tmp_path / "deep.png", tmp_path / "out.png", tmp_path / "out8.png"
    deep = (np.random.default_rng(6).random((12, 9)) * 65535).astype(np.uint16)
    Image.fromarray(deep).save(src)
    assert io.source_bit_depth(src) == 16
    code, stdout, err = run(capsys, *denoise_args(src, out, wdir))
    assert code == 0, err
    assert "16-bit" in stdout
    written = np.asarray(Image.open(out))
    assert written.dtype.itemsize == 2 or Image.open(out).mode.startswith("I")
    expected = _expected_gray(wdir, deep / 65535.0) / 255.0 * 65535
    assert np.abs(written.astype(float) - expected).max() <= 65535 / 255  # same prediction, finer steps
    code, _, err = run(capsys, *denoise_args(src, out8, wdir, "--bit-depth", "8"))
    assert code == 0, err
    assert np.asarray(Image.open(out8)).dtype == np.uint8


def _icc(space: bytes) -> bytes:
    """A minimal ICC profile: a 128-byte header naming the data colour space, and no tags."""
    return struct.pack(">I", 132) + bytes(12) + space + b"XYZ " + bytes(12) + b"acsp" + bytes(88) + bytes(4)


def test_the_input_icc_profile_is_carried_into_the_output(capsys, tmp_path, wdir):
    """enhance keeps the pixels in the input's colour space but wrote no profile, so viewers took a Display P3 or
    Adobe RGB photo's output for sRGB and showed it with muted colours; a CMYK profile cannot go on RGB pixels."""
    rng = np.random.default_rng(8)
    rgb8 = (rng.random((10, 11, 3)) * 255).astype(np.uint8)
    rgb, gray, cmyk = _icc(b"RGB "), _icc(b"GRAY"), _icc(b"CMYK")
    Image.fromarray(rgb8).save(tmp_path / "p3.jpg", icc_profile=rgb, quality=95)
    tifffile.imwrite(tmp_path / "deep.tif", (rng.random((10, 11, 3)) * 65535).astype(np.uint16), iccprofile=rgb)
    Image.fromarray(rgb8[..., 0]).save(tmp_path / "gray.png", icc_profile=gray)
    Image.fromarray(rgb8).convert("CMYK").save(tmp_path / "cmyk.jpg", icc_profile=cmyk)
    for name, profile, mode in (("p3.jpg", rgb, "RGB"), ("deep.tif", rgb, "RGB"), ("gray.png", gray, "L"),
                                ("cmyk.jpg", None, "RGB")):
        out = tmp_path / f"{name}.out.png"
        code, _, err = run(capsys, *denoise_args(tmp_path / name, out, wdir))
        assert code == 0, err
        with Image.open(out) as im:
            assert im.info.get("icc_profile") == profile, name
            assert im.mode == mode or name == "deep.tif", name
    assert io.read_image(tmp_path / "deep.tif.out.png").shape == (10, 11, 3)  # the 16-bit PNG's chunk is valid
    with pytest.raises(errors.ArgumentError, match="colour space"):
        io.write_image(tmp_path / "bad.png", rgb8, icc_profile=cmyk)


def test_overwrite_replaces_output(capsys, gray_png, tmp_path, wdir):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir, "--overwrite"))
    assert code == 0, err
    assert np.asarray(Image.open(out)).shape == (37, 53)


def test_tiles_match_the_whole_image(capsys, tmp_path, wdir):
    src = tmp_path / "big.png"
    Image.fromarray((np.random.default_rng(7).random((50, 61)) * 255).astype(np.uint8)).save(src)
    whole, tiled, derived = tmp_path / "whole.png", tmp_path / "tiled.png", tmp_path / "derived.png"
    assert run(capsys, *denoise_args(src, whole, wdir, "--tile", "0"))[0] == 0
    # four 3x3 convolutions see 4 pixels each way; overlap // 4 = 4 makes the blend exact
    assert run(capsys, *denoise_args(src, tiled, wdir, "--tile", "36", "--overlap", "16"))[0] == 0
    # without --overlap it is derived from the model: 2 x radius 4 = 8, so tiles of 17 are the smallest allowed
    assert run(capsys, *denoise_args(src, derived, wdir, "--tile", "17"))[0] == 0
    a = np.asarray(Image.open(whole)).astype(int)
    for out in (tiled, derived):
        assert np.abs(a - np.asarray(Image.open(out)).astype(int)).max() <= 1


def test_default_overlap_comes_from_the_model(capsys, tmp_path, wdir, monkeypatch):
    src, out = tmp_path / "big.png", tmp_path / "out.png"
    Image.fromarray((np.random.default_rng(7).random((40, 40)) * 255).astype(np.uint8)).save(src)
    code, _, err = run(capsys, *denoise_args(src, out, wdir, "--tile", "16"))
    assert_one_line_error(code, err, out, "--tile 16 is too small for denoise-sigma25: its receptive field needs an "
                                          "overlap of 8 pixels, so pass --tile 17 or more")
    # an image that fits in one tile needs no overlap, so no tile is too small for it
    small = tmp_path / "small.png"
    Image.fromarray(np.full((12, 16), 90, np.uint8)).save(small)
    assert run(capsys, *denoise_args(small, out, wdir, "--tile", "16"))[0] == 0
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["overlap"])
        return np.zeros((40, 40), np.float32)

    monkeypatch.setattr(infer, "enhance", spy)
    for extra, overlap in (((), None), (("--overlap", "12"), 12)):
        assert run(capsys, *denoise_args(src, out, wdir, "--overwrite", *extra))[0] == 0
        assert seen.pop() == overlap  # None: tile_predict derives the exact overlap and margin


def test_denoise_without_sigma_estimates_it_and_uses_the_blind_card(capsys, tmp_path, wdir):
    folder = tmp_path / "weights"
    shutil.copytree(wdir, folder)
    keras.utils.set_random_seed(3)
    weights.save_pretrained(models.red_net(channels=1, depth=2, width=4),
                            {"task": "denoise", "sigma_range": [0, 55], "blind": True}, folder)
    y, x = np.mgrid[0:64, 0:64] / 64
    clean = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)  # smooth: the wavelet estimate sees the noise only
    src, out = tmp_path / "noisy.png", tmp_path / "out.png"
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)
    Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)).save(src)
    argv = ("enhance", src, out, "--task", "denoise", "--weights-dir", folder)
    code, stdout, err = run(capsys, *argv)
    assert code == 0 and err == "", err
    first = stdout.splitlines()[0]
    match = re.fullmatch(r"estimated noise sigma (\d+\.\d) \(0-255 scale\); using the blind model denoise-blind0-55",
                         first)
    assert match, stdout
    assert abs(float(match.group(1)) - 25) < 3
    assert "with denoise-blind0-55" in stdout.splitlines()[1]
    assert np.asarray(Image.open(out)).shape == (64, 64)
    code, stdout, err = run(capsys, *argv, "--overwrite", "--quiet")
    assert code == 0 and stdout == "" and err == "", err
    # a folder without a blind card: one line that names the --sigma cards there are
    code, _, err = run(capsys, "enhance", src, tmp_path / "other.png", "--task", "denoise", "--weights-dir", wdir)
    assert_one_line_error(code, err, tmp_path / "other.png", "no shipped weights for denoise (no --sigma)")


def test_enhance_help_says_what_the_denoisers_were_trained_for(capsys):
    code, out, _ = run(capsys, "enhance", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "trained for white Gaussian noise" in text
    assert "real camera noise or JPEG artefacts they remove some of it but are not trained for it" in text
    assert "Without --sigma, --task denoise estimates the noise level" in text


def test_sr_post_upsampling_gray_and_colour(capsys, gray_png, tmp_path, wdir):
    out = tmp_path / "sr.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "sr", "--scale", "2", "--weights-dir", wdir)
    assert code == 0, err
    assert np.asarray(Image.open(out)).shape == (74, 106)
    rgb = np.random.default_rng(8).random((7, 9, 3)).astype(np.float32)
    model = weights.load_pretrained("sr", scale=2, directory=wdir)
    result = infer.enhance(model, rgb, "sr", scale=2, tile=None)
    assert result.shape == (14, 18, 3)
    # The Y channel comes from the model, exactly as for a gray image of that Y (where no channel was clipped).
    ycc = metrics.rgb_to_ycbcr(rgb)
    y_model = keras.ops.convert_to_numpy(model(ycc[None, :, :, :1]))[0, :, :, 0]
    inside = ((result > 0) & (result < 1)).all(axis=-1)
    assert inside.mean() > 0.5
    assert np.allclose(metrics.rgb_to_ycbcr(result)[..., 0][inside], y_model[inside], atol=1e-4)


def test_sr_pre_upsampling_gets_the_bicubic_image(capsys, gray_png, tmp_path, wdir):
    from deconvlab import degrade

    out = tmp_path / "sr3.png"
    code, _, err = run(capsys, "enhance", gray_png, out, "--task", "sr", "--scale", "3", "--weights-dir", wdir)
    assert code == 0, err
    result = np.asarray(Image.open(out)).astype(float)
    assert result.shape == (111, 159)
    model = weights.load_pretrained("sr", scale=3, directory=wdir)
    up = degrade.upscale(io.read_image(gray_png), 3)
    expected = np.rint(np.clip(keras.ops.convert_to_numpy(model(up[None, :, :, None]))[0, :, :, 0], 0, 1) * 255)
    assert np.abs(result - expected).max() <= 1


def test_ycbcr_round_trip_and_matlab_values():
    rgb = np.random.default_rng(9).random((5, 6, 3)).astype(np.float32)
    assert np.allclose(metrics.ycbcr_to_rgb(metrics.rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    white = metrics.rgb_to_ycbcr(np.ones((1, 1, 3)))[0, 0] * 255
    assert np.allclose(white, [235, 128, 128], atol=1e-3)  # MATLAB rgb2ycbcr of white


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' own model.save() on NumPy 2
def test_weights_as_card_json_and_keras_file(capsys, gray_png, tmp_path, wdir):
    out = tmp_path / "a.png"
    code, stdout, err = run(capsys, *denoise_args(gray_png, out, wdir, "--weights", wdir / "denoise-sigma25.json"))
    assert code == 0, err
    model = weights.load_pretrained("denoise", sigma=25, directory=wdir)
    model.save(tmp_path / "model.keras")
    out2 = tmp_path / "b.png"
    code, stdout, err = run(capsys, "enhance", gray_png, out2, "--task", "denoise", "--sigma", "25",
                            "--weights", tmp_path / "model.keras")
    assert code == 0, err
    assert "model.keras" in stdout
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(out2)))


def test_check_output_path_unit(tmp_path):
    assert io.check_output_path(tmp_path / "x.png") == tmp_path / "x.png"
    (tmp_path / "x.png").write_bytes(b"")
    assert io.check_output_path(tmp_path / "x.png", overwrite=True) == tmp_path / "x.png"
    assert tasks.check_sigma(25) == 25.0 and tasks.check_sigma(None) is None
    assert tasks.check_scale(4) == 4


# ------------------------------------------------------------------------------------- benchmark


def test_benchmark_prints_a_table(capsys, wdir):
    code, out, err = run(capsys, "benchmark", "--sizes", "16,24", "--repeat", "1", "--tile", "0",
                         "--weights-dir", wdir)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| 16x16") or line.startswith("| 24x24")]
    assert len(rows) == 2
    mpx = float(rows[1].split("|")[2])
    assert mpx == pytest.approx(24 * 24 / 1e6, abs=1e-3)
    code, _, err = run(capsys, "benchmark", "--sizes", "16,abc")
    assert_one_line_error(code, err, None, "--sizes")


def test_benchmark_of_a_card_warns_only_about_a_sigma_the_user_gave(capsys, tmp_path):
    # benchmark's own default (25) warned "card s50 was trained for sigma=50, not 25": speed has no sigma
    weights.save_pretrained(models.red_net(depth=2, width=4), {"id": "s50", "task": "denoise", "sigma": 50}, tmp_path)
    base = ("benchmark", "--sizes", "16", "--repeat", "1", "--weights-dir", tmp_path, "--weights", "s50")
    code, _, err = run(capsys, *base)
    assert code == 0 and err == "", err
    code, _, err = run(capsys, *base, "--sigma", "25")
    assert code == 0 and "was trained for sigma=50, not 25" in err


def test_benchmark_untrained_arch(capsys):
    code, out, err = run(capsys, "benchmark", "--sizes", "16", "--repeat", "1", "--arch", "dncnn",
                         "--profile", "quick")
    assert code == 0, err
    assert "dncnn (untrained" in out and "| 16x16 |" in out


def test_an_sr_only_arch_under_another_task_is_refused(capsys, tmp_path):
    # fsrcnn needs a scale: "cannot build fsrcnn: fsrcnn() missing 1 required positional argument: 'scale'"
    for argv in (("benchmark", "--sizes", "16", "--repeat", "1", "--arch", "fsrcnn", "--task", "denoise"),
                 ("train", "--task", "deblur", "--arch", "fsrcnn", "--out", tmp_path / "runs", "--steps", "1")):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, tmp_path / "runs", "--arch fsrcnn is a super-resolution architecture: "
                                                            "use --task sr")
    # with a scale of its own it builds: an fsrcnn of scale 1 is a denoiser
    from deconvlab import config, recipes

    kwargs = recipes.builder_kwargs("fsrcnn", "denoise", 1, None, "post", config.get_profile("quick"), {"scale": 1})
    assert kwargs["scale"] == 1 and models.build_model("fsrcnn", **kwargs).output_shape == (None, None, None, 1)
    with pytest.raises(errors.ArgumentError, match="super-resolution architecture"):  # scale 2 is still SR
        recipes.builder_kwargs("fsrcnn", "denoise", 1, None, "post", config.get_profile("quick"), {"scale": 2})


def test_an_arch_that_keeps_the_size_is_refused_for_sr(capsys, tmp_path):
    # was "red_net does not take scale: use channels, depth, ...", in the builder's terms rather than the task's
    for argv in (("benchmark", "--sizes", "16", "--repeat", "1", "--arch", "red_net", "--task", "sr", "--scale", "2"),
                 ("train", "--task", "sr", "--scale", "3", "--arch", "unet", "--out", tmp_path / "runs", "--steps", "1")):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, tmp_path / "runs", "returns images of its input's size (it takes no scale): "
                                                            "use --task denoise or deblur, or one of fsrcnn, red_net_sr")


# ------------------------------------------------------------------------------------- models


def test_models_lists_every_card(capsys, tmp_path, wdir):
    code, out, err = run(capsys, "models", "--weights-dir", wdir)
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "id", "task", "setting", "default", "arch", "params", "MACs/px", "test PSNR (dB)", "CPU s/Mpx"]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in lines[2:] if line.startswith("| "))}
    assert set(rows) == {c["id"] for c in weights.list_cards(wdir)}
    card = weights.read_card("denoise-sigma25", wdir)
    # the only gray sigma-25 card there: enhance --sigma 25 --weights-dir picks it, so it is that setting's default
    assert rows["denoise-sigma25"][1:6] == ["denoise", "sigma=25", "yes", "red_net", f"{card['params']:,}"]
    assert rows["denoise-sigma25"][-1] == "-"  # no speed recorded: nothing is measured
    assert rows["sr-x2"][2] == "x2"
    # the shipped cards: every one listed, the blind U-Net at the three levels of its card
    code, out, err = run(capsys, "models")
    assert code == 0 and err == "", err
    shipped = [c["id"] for c in weights.list_cards()]
    for card_id in shipped:
        assert f"| {card_id} " in out
    if "denoise-unet-blind" in shipped:
        blind = next(line for line in out.splitlines() if line.startswith("| denoise-unet-blind "))
        assert "sigma in [0, 55]" in blind and re.search(r"bsd68 sigma=15: [\d.]+, sigma=25: [\d.]+, sigma=50", blind)
    # the shipped folder named is the same table, measured speeds included (they were all '-')
    assert run(capsys, "models", "--weights-dir", weights.weights_dir())[1] == out
    assert re.search(r"\| [\d.]+ +\|$", blind)  # a measured CPU s/Mpx, not '-'
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "models", "--weights-dir", empty)
    assert_one_line_error(code, err, None, f"no model cards in {empty}")


def test_a_mistyped_card_is_skipped_by_models_and_enhance(capsys, gray_png, tmp_path, wdir):
    folder = _copy_weights(wdir, tmp_path)
    card = json.loads((folder / "denoise-sigma25.json").read_text())
    (folder / "broken.json").write_text(json.dumps(dict(card, id="broken", sigma_range=[0], params="1e6")))
    code, out, err = run(capsys, "models", "--weights-dir", folder)
    assert code == 0 and "| denoise-sigma25 " in out and "| broken " not in out, err
    assert err.startswith("deconvlab: warning: skipping broken.json") and "params is '1e6'" in err, err
    code, out, err = run(capsys, *denoise_args(gray_png, tmp_path / "out.png", folder))
    assert code == 0 and "with denoise-sigma25" in out and "skipping broken.json" in err, err


# ------------------------------------------------------------------------------------- evaluate and train


def test_evaluate_argument_errors(capsys, tmp_path, wdir):
    code, _, err = run(capsys, "evaluate")
    assert_one_line_error(code, err, None, "pass --card ID")
    code, _, err = run(capsys, "evaluate", "--card", "absent", "--weights-dir", wdir)
    assert_one_line_error(code, err, None, "no model card 'absent'")
    code, _, err = run(capsys, "evaluate", "--task", "denoise", "--sigma", "25", "--limit", "0")
    assert_one_line_error(code, err, None, "--limit 0")


def test_evaluate_small_tiles_on_a_strided_model_keep_the_overlap_below_the_tile(capsys, tmp_path):
    # evaluate's own overlap (32, or half a smaller tile) put on the U-Net's stride grid filled the tile: --tile 3
    # (and 33) failed with "overlap (2) must be smaller than tile (2, ...)", an overlap this command has no option for
    unet = models.unet(widths=(4, 8), depths=(1, 1))
    weights.save_pretrained(unet, {"id": "u", "task": "denoise", "sigma": 25}, tmp_path)
    code, _, err = run(capsys, "evaluate", "--card", "u", "--weights-dir", tmp_path, "--dataset", "fallback-test",
                       "--limit", "1", "--tile", "33")
    assert code == 0 and "error" not in err, err
    # the other tiles on a small image: at --tile 3 a whole test photo is tens of thousands of tiles
    image = np.random.default_rng(0).random((40, 36), dtype=np.float32)
    for tile, overlap in ((3, 0), (30, 16), (33, 16), (34, 32)):  # stride 2: tiles of 2, 30, 32 and 34
        assert evaluate._tile_overlap(unet, tile, 32) == overlap
        result = evaluate.evaluate(unet, (["crop"], [image]), "denoise", sigma=25, tile=tile)
        assert result.protocol["overlap"] == overlap and np.isfinite(result.mean_psnr)
    assert evaluate._tile_overlap(unet, 64, 31) == 32  # what tile_predict uses, as the protocol records it


def test_evaluate_warns_once_when_sigma_is_not_the_cards(capsys, tmp_path, wdir):
    # --card denoise-sigma25 --sigma 50 measured at 50 without a word that the card was trained for 25
    shutil.copytree(wdir, tmp_path, dirs_exist_ok=True)
    weights.save_pretrained(models.red_net(depth=2, width=4), {"id": "b", "task": "denoise", "sigma_range": [0, 55]},
                            tmp_path)
    base = ("evaluate", "--weights-dir", tmp_path, "--dataset", "fallback-test", "--limit", "1", "--card")
    code, _, err = run(capsys, *base, "denoise-sigma25", "--sigma", "50")
    assert code == 0 and err.strip() == "deconvlab: warning: card denoise-sigma25 was trained for sigma=25, not 50"
    for card, sigma in (("denoise-sigma25", "25"), ("b", "50")):
        code, _, err = run(capsys, *base, card, "--sigma", sigma)
        assert code == 0 and err == "", err
    code, _, err = run(capsys, *base, "b", "--sigma", "70")  # outside a blind card's range
    assert code == 0 and err.strip() == "deconvlab: warning: card b was trained for sigma in [0, 55], not 70"


def test_evaluate_refuses_a_missing_test_set_before_keras_starts(capsys, tmp_path, wdir, monkeypatch):
    # the refusal came after Keras' start-up (about 13 s), which reading the card and the set does not need
    def no_keras(*args, **kwargs):
        raise AssertionError("Keras started")

    monkeypatch.setattr(console, "start_keras", no_keras)
    monkeypatch.setenv("DECONVLAB_DATA", str(tmp_path))
    code, _, err = run(capsys, "evaluate", "--card", "denoise-sigma25", "--weights-dir", wdir)
    assert_one_line_error(code, err, None, f"DECONVLAB_DATA={tmp_path} has no folder bsd68/")


def test_train_argument_errors(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (("--task", "denoise", "--out", tmp_path), "needs --sigma"),
        (("--task", "denoise", "--sigma-range", "30", "10", "--out", tmp_path), "--sigma-range 30 10"),
        (("--task", "denoise", "--sigma", "25", "--arch-kwargs", "{bad", "--out", tmp_path), "not JSON"),
        (("--task", "denoise", "--sigma", "25", "--out", blocker), "is a file"),
        (("--task", "sr", "--scale", "2"), "the following arguments are required: --out"),
    ]
    for argv, match in cases:
        code, _, err = run(capsys, "train", *argv)
        assert_one_line_error(code, err, None, match)


def test_train_refuses_arch_kwargs_a_card_may_not_hold_before_loading_data(capsys, tmp_path, monkeypatch):
    from deconvlab import recipes, train
    from deconvlab.errors import DataError

    def no_data(*args, **kwargs):
        raise DataError("training data asked for")

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(recipes, "_patch_data", no_data)
    monkeypatch.setattr(train, "train", no_training)
    out = tmp_path / "runs"
    argv = ("train", "--task", "denoise", "--sigma", "25", "--profile", "quick", "--out", out,
            "--eval-datasets", "fallback-test", "--arch-kwargs")  # no test set to fetch before the data
    for kwargs, match in (('{"depth": 2, "width": 4, "kernel_size": 17}', "kernel_size=17 is not an integer in [1, 15]"),
                          ('{"depth": 2, "width": 1025}', "width=1025 is not an integer in [1, 1024]"),
                          ('{"depth": 2.5, "width": 4}', "depth=2.5 is not an integer"),
                          ('{"depth": 2, "width": 4}', "training data asked for")):  # within the limits: it goes on
        code, _, err = run(capsys, *argv, kwargs)
        assert_one_line_error(code, err, out, match)
    monkeypatch.setattr(weights, "MAX_CARD_PARAMS", 372)  # the quick profile's red_net(depth=2, width=4): 373
    code, _, err = run(capsys, *argv, '{"depth": 2, "width": 4}')
    assert_one_line_error(code, err, out, "describe 373 parameters, more than a model card may hold (372)")


def test_train_refuses_an_unknown_set_before_training(capsys, tmp_path, monkeypatch):
    from deconvlab import recipes
    from deconvlab.errors import DataError

    def no_training(*args, **kwargs):
        raise DataError("train_card started")

    monkeypatch.setattr(recipes, "train_card", no_training)
    out = tmp_path / "runs"
    argv = ("train", "--task", "denoise", "--sigma", "25", "--profile", "quick", "--out", out)
    for extra, match in ((("--eval-datasets", "set12,bsd86"), "--eval-datasets: unknown data set 'bsd86'"),
                         (("--train-dataset", "train4000"), "--train-dataset: unknown data set 'train4000'"),
                         (("--val-dataset", "t19"), "--val-dataset: unknown data set 't19'")):
        code, _, err = run(capsys, *argv, *extra)
        assert_one_line_error(code, err, out, match)
    # the fallback sets and any spelling of a registered one go on to train_card
    code, _, err = run(capsys, *argv, "--train-dataset", "Fallback-Train", "--eval-datasets", " Set12 ,fallback-test")
    assert_one_line_error(code, err, out, "train_card started")


def test_train_offline_fails_before_training_when_the_card_needs_a_real_test_set(capsys, tmp_path, monkeypatch):
    from deconvlab import recipes, registry, train
    from deconvlab.errors import DataError

    local = os.environ.get("DECONVLAB_DATA")

    def offline(info, f):
        raise registry.NoNetworkError(f"cannot reach the server to download {f.dataset}/{f.file}")

    def no_data(*args, **kwargs):
        raise DataError("training data asked for")

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.delenv("DECONVLAB_DATA", raising=False)
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_download", offline)
    monkeypatch.setattr(recipes, "_patch_data", no_data)  # offline, training itself would use the fallback photos
    monkeypatch.setattr(train, "train", no_training)
    out = tmp_path / "runs"
    argv = ("train", "--task", "denoise", "--sigma", "25", "--profile", "quick", "--out", out,
            "--arch-kwargs", '{"depth": 2, "width": 4}')
    code, _, err = run(capsys, *argv)  # the card's default test set, BSD68, has no stand-in
    assert_one_line_error(code, err, out, "cannot reach the server to download bsd68/test001.png")
    code, _, err = run(capsys, *argv, "--eval-datasets", "fallback-test,set12", "--eval-limit", "2")
    assert_one_line_error(code, err, out, "download set12/01.png")
    # a card measured on the fallback set needs no network, one measured on a local copy reads it: both go on
    code, _, err = run(capsys, *argv, "--eval-datasets", "fallback-test")
    assert_one_line_error(code, err, out, "training data asked for")
    if local and (Path(local) / "bsd68").is_dir():
        monkeypatch.setenv("DECONVLAB_DATA", local)
        code, _, err = run(capsys, *argv, "--eval-limit", "1")
        assert_one_line_error(code, err, out, "training data asked for")


def _evaluate_module_ready() -> bool:
    try:
        from deconvlab import degrade, evaluate, train  # noqa: F401
    except ImportError:
        return False
    return True


needs_training_stack = pytest.mark.skipif(not _evaluate_module_ready(),
                                          reason="deconvlab.train/evaluate/degrade not written yet")


@needs_training_stack
@pytest.mark.slow
def test_train_then_evaluate_against_the_card(capsys, tmp_path):
    out_dir = tmp_path / "trained"
    argv = ["train", "--task", "denoise", "--sigma", "25", "--profile", "quick", "--out", out_dir,
            "--epochs", "1", "--steps", "2", "--patch-size", "24", "--train-dataset", "fallback-train",
            "--train-limit", "2", "--eval-datasets", "fallback-test", "--eval-limit", "1", "--quiet",
            "--arch-kwargs", '{"depth": 2, "width": 4}']
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    card = json.loads((out_dir / "denoise-sigma25.json").read_text())
    assert card["command"].startswith("python -m deconvlab train --task denoise --sigma 25")
    assert card["architecture"]["kwargs"]["depth"] == 2
    assert len(card["history"]["loss"]) == 1
    # the checkpoint was chosen on the last training image, held aside, not on the test set it reports
    assert card["data"]["validation"].startswith("held-aside fallback-train ") and card["data"]["train"] == (
        "fallback-train (first 2) without its last image (1 image)")
    assert card["metrics"][0]["dataset"] == "fallback-test" and card["metrics"][0]["limit"] == 1
    history_file = out_dir / "denoise-sigma25.history.json"
    fig = plots.plot_history(weights.load_history(history_file))  # the JSON train() wrote plots
    assert [ax.get_title() for ax in fig.axes] == ["loss", "psnr"]
    assert [c["id"] for c in weights.list_cards(out_dir)] == ["denoise-sigma25"]  # the history is no card

    check = ["evaluate", "--card", "denoise-sigma25", "--weights-dir", out_dir, "--dataset", "fallback-test",
             "--limit", "1"]
    code, out, err = run(capsys, *check)
    assert code == 0, err
    assert "matches the card" in out
    # the card holds the PSNR to 4 decimals: unrounded, --tolerance 0 failed "by -0.000 dB" on the same weights
    code, out, err = run(capsys, *check, "--tolerance", "0")
    assert code == 0 and "matches the card" in out, err
    code, out, err = run(capsys, *check, "--seed", "7")  # other noise: the card has no number to compare
    assert code == 0 and "nothing to compare" in out
    code, _, err = run(capsys, *check, "--scale", "2")
    assert_one_line_error(code, err, None, "drop --sigma / --scale")
    card["metrics"][0]["psnr"] += 1.0
    weights.write_card(card, out_dir / "denoise-sigma25.json")
    code, out, err = run(capsys, *check, "--csv", tmp_path / "measured.csv")
    assert code == 1 and (tmp_path / "measured.csv").is_file()  # the measurement is written, then the verdict
    assert len(err.strip().splitlines()) == 1 and "differs from the card" in err and "--tile" not in err
    code, out, err = run(capsys, *check, "--tile", "16")  # a mismatch under --tile was blamed on the weights alone
    assert code == 1 and "compare without --tile" in err, err


@needs_training_stack
def test_a_limit_that_takes_the_whole_set_counts_as_none_on_the_card(tmp_path, save_tiny_cards):
    from deconvlab import recipes
    from deconvlab.registry import FALLBACK_TEST

    card = {"metrics": [{"dataset": "set12", "sigma": 25.0, "limit": None, "psnr": 30.0},
                        {"dataset": "set12", "sigma": 25.0, "limit": 1, "psnr": 25.0},
                        {"dataset": "set5", "scale": 2, "limit": 100, "psnr": 37.0}]}
    for limit in (None, 12, 13):  # Set12 has 12 images: the same measurement as no limit
        assert recipes.card_metric(card, "set12", 25.0, None, limit)["psnr"] == 30.0
    assert recipes.card_metric(card, "Set12", 25.0, None, 1)["psnr"] == 25.0
    assert recipes.card_metric(card, "set12", 25.0, None, 11) is None
    for limit in (None, 5, 6):  # an entry written with a limit above Set5's 5 images is a whole-set one
        assert recipes.card_metric(card, "set5", None, 2, limit)["psnr"] == 37.0
    assert recipes.card_metric(card, "set5", None, 2, 4) is None
    # and a card measured with such a limit records none
    folder = save_tiny_cards(tmp_path, seed=3)
    trained = next(c for c in weights.list_cards(folder) if c["task"] == "denoise" and weights.card_channels(c) == 1)
    recipe = recipes.CardRecipe(task="denoise", out_dir=folder, sigma=25, eval_datasets=["fallback-test"],
                                eval_limit=len(FALLBACK_TEST))
    recipes.measure_card(trained, recipe, log=lambda _: None)
    (entry,) = trained["metrics"]
    assert entry["limit"] is None and entry["protocol"]["images"] == len(FALLBACK_TEST)


def _spoil_the_last_epoch(monkeypatch, snapshots: list) -> None:
    """Make ``deconvlab train`` keep each epoch's weights in ``snapshots`` and start its last epoch from
    scrambled weights, so that an earlier epoch is the best on validation."""
    from deconvlab import train

    class Spoil(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.params["epochs"] - 1:
                rng = np.random.default_rng(0)
                self.model.set_weights([w + rng.standard_normal(w.shape).astype(w.dtype)
                                        for w in self.model.get_weights()])

        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    original = train.train

    def spied(*args, callbacks=(), **kwargs):
        return original(*args, callbacks=[*callbacks, Spoil()], **kwargs)

    monkeypatch.setattr(train, "train", spied)


@needs_training_stack
@pytest.mark.slow
def test_train_keeps_the_epoch_best_on_validation(capsys, tmp_path, monkeypatch):
    snapshots: list = []
    _spoil_the_last_epoch(monkeypatch, snapshots)
    out_dir = tmp_path / "trained"
    code, _, err = run(capsys, "train", "--task", "denoise", "--sigma", "25", "--profile", "quick",
                       "--out", out_dir, "--epochs", "2", "--steps", "2", "--patch-size", "24",
                       "--train-dataset", "fallback-train", "--train-limit", "2", "--eval-datasets",
                       "fallback-test", "--eval-limit", "1", "--quiet",
                       "--arch-kwargs", '{"depth": 2, "width": 4}')
    assert code == 0, err
    card = weights.read_card("denoise-sigma25", out_dir)
    val_psnr = card["history"]["val_psnr"]
    assert len(snapshots) == len(card["history"]["loss"]) == card["epochs_run"] == 2  # every epoch recorded
    assert val_psnr[1] is None or val_psnr[0] > val_psnr[1]
    kept = weights.load_pretrained(card=card, directory=out_dir).get_weights()
    for saved, best in zip(kept, snapshots[0], strict=True):  # float16 on disk
        np.testing.assert_allclose(saved, best, rtol=2e-3, atol=1e-4)
    assert card["kept_epoch"] == 1
    # the checkpoint was a temporary file: --out holds the card, its weights and its history only
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "denoise-sigma25.history.json", "denoise-sigma25.json", "denoise-sigma25.weights.npz"]
    history = weights.load_history(out_dir / "denoise-sigma25.history.json")
    assert history["meta"]["checkpoint"] == card["weights_file"]


@needs_training_stack
def test_train_validates_on_fixed_pairs(tmp_path):
    from deconvlab import config, recipes, train
    from deconvlab.degrade import noise_degradation

    profile = config.get_profile("quick")
    recipe = recipes.CardRecipe(task="denoise", out_dir=tmp_path, sigma=25, steps=20, patch_size=24,
                                train_dataset="fallback-train", train_limit=3)
    _, val_data, _, val_set = recipes._patch_data(recipe, profile, post=False)
    assert isinstance(val_data, tuple), "validation data that changes every epoch makes val_psnr noise"
    n = 2 * profile.batch_size  # as many as the 20 // 10 batches drawn per epoch before
    x, y = train.make_validation_pairs(val_set.images, noise_degradation(25), 24, n, seed=1)
    np.testing.assert_array_equal(val_data[0], x)
    np.testing.assert_array_equal(val_data[1], y)
    # a multi-scale SR model is validated at each of its scales, on the same crops
    sr = recipes.CardRecipe(task="sr", out_dir=tmp_path, scales=[2, 3, 4], steps=30, patch_size=24,
                            train_dataset="fallback-train", train_limit=3)
    (lr, hr), share = recipes._patch_data(sr, profile, post=False)[1], profile.batch_size
    assert lr.shape == hr.shape == (3 * share, 24, 24, 1)
    assert np.array_equal(hr[:share], hr[share:2 * share])
    assert not np.array_equal(lr[:share], lr[share:2 * share])


@needs_training_stack
def test_train_sr_learns_the_range_of_y_that_it_is_tested_on(tmp_path):
    from deconvlab import config, data, recipes

    recipe = recipes.CardRecipe(task="sr", out_dir=tmp_path, scale=2, steps=10, patch_size=24,
                                train_dataset="fallback-train", train_limit=6)
    _, (_, hr), train_set, val_set = recipes._patch_data(recipe, config.get_profile("quick"), post=False)
    stored = data.load_dataset("fallback-train", limit=6)  # four gray pictures, then two colour ones
    # the SR protocol compares MATLAB Y (colour) and the fused trainer maps gray images to [16, 235]/255
    expected = [metrics.rgb_to_y(img) if img.ndim == 3 else (16 + 219 * img) / 255 for img in stored.images]
    for got, want in zip(train_set.images + val_set.images, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert 16 / 255 - 1e-6 <= hr.min() and hr.max() <= 235 / 255 + 1e-6
    assert train_set.name == ("fallback-train (first 6) Y (MATLAB rgb2ycbcr), gray images mapped to "
                              "[16, 235]/255 without its last image (5 images)")


@needs_training_stack
@pytest.mark.parametrize(("epochs", "ran", "fired"), [(1, 1, False), (3, 1, True)])
def test_train_time_limit_fires_only_when_it_leaves_epochs_out(epochs, ran, fired):
    from deconvlab import recipes

    deadline = recipes.deadline_callback(0.0)  # every epoch ends past it
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=epochs, verbose=0, callbacks=[deadline])
    assert len(history.history["loss"]) == ran and deadline.fired is fired  # the card's stopped_by_time_limit


# ------------------------------------------------------------------------------------- interrupts and OS errors


def test_keyboard_interrupt_is_one_line(capsys, gray_png, tmp_path, wdir, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "read_image", interrupted)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert code == 130  # 128 + SIGINT, what shells expect from an interrupted program
    assert err.strip() == "deconvlab: error: interrupted; nothing was written" and not out.exists()


def test_disk_full_is_one_line(capsys, gray_png, tmp_path, wdir, monkeypatch):
    def disk_full(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_image", disk_full)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, *denoise_args(gray_png, out, wdir))
    assert_one_line_error(code, err, out, "No space left on device")


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes, not necessarily UTF-8, on Linux")
def test_a_file_name_that_is_not_utf8_is_printed_under_a_strict_utf8_stdout(gray_png, tmp_path, wdir, monkeypatch):
    """In a UTF-8 locale (en_US.UTF-8) Python's stdout is strict; printing "wrote out\udce9.png" raised
    UnicodeEncodeError after the file was written, reported as a bug with status 70."""
    src, out = tmp_path / os.fsdecode(b"caf\xe9.png"), tmp_path / os.fsdecode(b"out\xe9.png")
    shutil.copy(gray_png, src)
    stdout = io_module.TextIOWrapper(io_module.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    code = cli.main([str(a) for a in denoise_args(src, out, wdir)])
    stdout.flush()
    assert code == 0 and out.exists()
    assert os.fsencode(out) in stdout.buffer.getvalue()  # the name's own bytes, as ls prints them
    assert stdout.errors == "strict"  # put back after the command


def test_a_unicode_file_name_is_printed_under_a_latin1_stdout(gray_png, tmp_path, wdir, monkeypatch):
    """A Latin-1 locale's stdout (or a Windows code page into a pipe) cannot encode "日本.png": the same failure
    after the write, status 70, for a valid name."""
    out = tmp_path / "日本.png"
    stdout = io_module.TextIOWrapper(io_module.BytesIO(), encoding="latin-1", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    code = cli.main([str(a) for a in denoise_args(gray_png, out, wdir)])
    stdout.flush()
    assert code == 0 and out.exists()
    assert b"\\u65e5\\u672c.png" in stdout.buffer.getvalue() and stdout.errors == "strict"


def test_debug_shows_the_traceback(gray_png, tmp_path, monkeypatch):
    from deconvlab.errors import ImageFileError

    monkeypatch.setenv("DECONVLAB_DEBUG", "1")
    with pytest.raises(ImageFileError):
        cli.main(["enhance", str(tmp_path / "missing.png"), str(tmp_path / "o.png"), "--task", "denoise",
                  "--sigma", "25"])


def test_colour_photo_is_denoised_by_the_blind_model_on_y_cb_cr(capsys, monkeypatch, tmp_path, wdir):
    folder = tmp_path / "weights"
    shutil.copytree(wdir, folder)
    weights.save_pretrained(models.red_net(channels=1, depth=2, width=4),
                            {"task": "denoise", "sigma_range": [0, 55], "blind": True}, folder)
    rgb, gray = tmp_path / "rgb.png", tmp_path / "gray.png"
    pixels = (np.random.default_rng(0).random((24, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(rgb)
    Image.fromarray(pixels[..., 0]).save(gray)
    seen = []

    def spy(model, image, task, **kwargs):
        seen.append((model.name, kwargs["colour"]))
        return np.zeros(image.shape, np.float32)

    monkeypatch.setattr(infer, "enhance", spy)

    def enhance(src, *extra):
        code, stdout, err = run(capsys, "enhance", src, tmp_path / "out.png", "--task", "denoise", "--overwrite",
                                "--weights-dir", folder, *extra)
        assert code == 0, err
        return seen.pop(), stdout

    blind = weights.find_card("denoise", sigma=None, directory=folder)
    (name, colour), out = enhance(rgb)
    assert colour == "ycbcr" and blind["id"] in out
    assert enhance(gray)[0][1] == "rgb"  # a gray image has no colour to convert
    # --sigma with a colour card for that level: the colour model sees the three channels together
    assert enhance(rgb, "--sigma", "25")[0][1] == "rgb"
    for card in weights.list_cards(folder):  # without one, the blind model on Y/Cb/Cr wins over the gray sigma card
        if card["task"] == "denoise" and weights.card_channels(card) == 3:
            for path in folder.glob(f"{card['id']}.*"):
                path.unlink()
    (name, colour), out = enhance(rgb, "--sigma", "25")
    assert colour == "ycbcr" and out.startswith("--sigma 25 on a colour image: using the blind model on Y, Cb and Cr")
    (name, colour), out = enhance(rgb, "--sigma", "25", "--colour", "rgb")
    assert colour == "rgb" and "denoise-sigma25" in out


def test_auto_colour_with_a_blind_colour_card_in_the_folder(capsys, tmp_path, wdir):
    # --colour auto picks Y/Cb/Cr for a colour photo; a blind colour card beside the gray one was preferred for the
    # photo's three channels and then refused ("colour='ycbcr' runs a gray model")
    folder = tmp_path / "weights"
    shutil.copytree(wdir, folder)
    blind = {"task": "denoise", "sigma_range": [0, 55], "blind": True}
    gray = weights.save_pretrained(models.red_net(channels=1, depth=2, width=4), {**blind, "id": "blind-y"}, folder)
    weights.save_pretrained(models.red_net(channels=3, depth=2, width=4), {**blind, "id": "blind-rgb"}, folder)
    src, out = tmp_path / "rgb.png", tmp_path / "out.png"
    Image.fromarray((np.random.default_rng(4).random((12, 14, 3)) * 255).astype(np.uint8)).save(src)
    args = ["enhance", src, out, "--task", "denoise", "--weights-dir", folder, "--overwrite"]
    code, stdout, err = run(capsys, *args)
    assert code == 0 and "using the blind model blind-y" in stdout, err
    for path in folder.glob(f"{gray['id']}.*"):  # only the colour one left: it sees R, G and B together
        path.unlink()
    code, stdout, err = run(capsys, *args)
    assert code == 0 and "using the blind model blind-rgb" in stdout, err
    code, stdout, err = run(capsys, *args, "--sigma", "15")  # the blind colour card serves 15 too
    assert code == 0 and "with blind-rgb" in stdout and "Y, Cb and Cr" not in stdout, err
    code, _, err = run(capsys, *args, "--colour", "ycbcr")  # asked for by name, it cannot be honoured
    assert_one_line_error(code, err, match="--colour rgb")
