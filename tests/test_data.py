"""Tests of deconvlab.registry (through its deconvlab.data re-exports): the registry, local copies, real HTTP
downloads through pooch, the offline fallback; and deconvlab.data's patches."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import os
import socket
import threading
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pooch.core
import pytest
from PIL import Image

from deconvlab import data, paths, recipes, registry, tasks
from deconvlab.errors import (
    ArgumentError,
    DataError,
    DownloadError,
    HashMismatchError,
    UnknownDatasetError,
)

SHARED = Path("/work/shared/datasets")
needs_shared = pytest.mark.skipif(not (SHARED / "set12" / "MANIFEST.tsv").is_file(), reason="no local copy of the sets")
COUNTS = {"train400": 400, "bsd68": 68, "set12": 12, "cbsd68": 68, "set5": 5, "set14": 14, "t91": 91}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own download cache, no local copy and no pause between pooch's download attempts."""
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DECONVLAB_DATA", raising=False)
    monkeypatch.delenv("DECONVLAB_ROOT", raising=False)
    monkeypatch.setattr(pooch.core.time, "sleep", lambda seconds: None)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


def files_under(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ------------------------------------------------------------------------------------------- registry


def test_registry_lists_all_seven_sets_in_order():
    reg = data.registry()
    assert tuple(reg) == data.DATASET_NAMES
    assert {name: len(info.files) for name, info in reg.items()} == COUNTS
    assert {name: info.color for name, info in reg.items()} == {
        "train400": "gray", "bsd68": "gray", "set12": "gray", "cbsd68": "rgb", "set5": "rgb", "set14": "rgb",
        "t91": "rgb",
    }  # fmt: skip
    for info in reg.values():
        assert info.citation and info.terms
        for f in info.files:
            assert f.url.startswith("https://raw.githubusercontent.com/") and f.url.endswith("/" + f.file)
            assert len(f.sha256) == 64 and f.bytes > 0 and f.width > 0 and f.height > 0
    assert reg["set14"].file("bridge").mode == "L" and reg["set14"].file("man.bmp").mode == "RGB"
    assert reg["bsd68"].source == "cszn/DnCNN@e93b278:testsets/BSD68"
    # T91 (Yang et al. 2010) comes from another repository, pinned to a commit like the others
    assert reg["t91"].source == "jiny2001/dcscn-super-resolution@d382bc3:data/yang91"
    assert "Yang et al." in reg["t91"].citation


@needs_shared
def test_registry_equals_the_manifests():
    reg = data.registry()
    for name, count in COUNTS.items():
        header, rows = {}, []
        lines = (SHARED / name / "MANIFEST.tsv").read_text().splitlines()
        for line in lines:
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                header.setdefault(key.strip(), value.strip())
        rows = list(csv.DictReader([ln for ln in lines if ln and not ln.startswith("#")], delimiter="\t"))
        assert len(rows) == count
        registered = reg[name].files
        assert [f.file for f in registered] == [r["file"] for r in rows]
        for f, r in zip(registered, rows, strict=True):
            assert (f.sha256, f.bytes, f.width, f.height, f.mode) == (
                r["sha256"], int(r["bytes"]), int(r["width"]), int(r["height"]), r["mode"],
            )  # fmt: skip
            assert f.url == header["raw_url_pattern"].replace("<file>", f.file)
            assert header["snapshot_commit"] in f.url


def test_datasets_md_documents_every_set_and_the_fallback():
    text = (paths.data_dir() / "DATASETS.md").read_text()
    for name, info in data.registry().items():
        commit = info.files[0].url.split("/")[5]
        assert f"`{name}`" in text and commit in text, name
    for photo in (*data.FALLBACK_TRAIN, *data.FALLBACK_TEST):
        assert f"`{photo}`" in text, photo
    assert "not redistributed" in text


def test_fallback_split_is_disjoint_and_fixed():
    assert not set(data.FALLBACK_TRAIN) & set(data.FALLBACK_TEST)
    assert len(data.FALLBACK_TRAIN) == 11 and len(data.FALLBACK_TEST) == 6
    assert "cat" not in data.FALLBACK_TRAIN + data.FALLBACK_TEST  # same pixels as chelsea


def test_unknown_names_and_bad_arguments():
    with pytest.raises(UnknownDatasetError) as err:
        data.load_dataset("set15")
    assert "set14" in one_line(err)
    with pytest.raises(UnknownDatasetError):
        data.fetch_file("set5", "lena.bmp")
    with pytest.raises(UnknownDatasetError):
        data.fetch_dataset("fallback-test")
    with pytest.raises(ArgumentError):
        data.load_dataset("set5", mode="ycbcr")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ArgumentError):
            data.load_dataset("set5", limit=bad)


def test_the_fallback_sets_have_no_files_to_fetch():
    # they are valid names for load_dataset, so "unknown data set, use one of ..., fallback-train" would contradict
    for fetch in (lambda: data.fetch_dataset("fallback-test"), lambda: data.fetch_file("Fallback-Test", "camera"),
                  lambda: registry.fetch_all(["set5", "fallback-train"], progress=False)):
        with pytest.raises(UnknownDatasetError) as err:
            fetch()
        assert "built in memory from scikit-image, not from files: there is nothing to fetch" in one_line(err)
        assert "unknown" not in one_line(err)


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    assert data.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DECONVLAB_CACHE")
    assert data.cache_dir().name == "deconvlab"


# ------------------------------------------------------------------------------------------- local copy


@needs_shared
def test_local_copy_loads_float32_images(monkeypatch):
    monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))
    train = data.load_dataset("train400", limit=3)
    assert train.names == ["test_001", "test_002", "test_003"] and not train.is_fallback
    assert all(im.shape == (180, 180) and im.dtype == np.float32 for im in train.images)
    assert all(0.0 <= im.min() and im.max() <= 1.0 for im in train.images)
    assert train.color == "gray" and "cszn/DnCNN@e93b278" in train.note
    set14 = data.load_dataset("set14")
    shapes = dict(zip(set14.names, (im.shape for im in set14.images), strict=True))
    assert shapes["bridge"] == (512, 512) and shapes["baboon"] == (480, 500, 3) and len(shapes) == 14
    assert data.load_dataset("set5", mode="gray", limit=2).images[0].ndim == 2
    assert data.load_dataset("set12", mode="rgb", limit=1).images[0].shape == (256, 256, 3)
    assert data.fetch_file("set12", "01.png") == SHARED / "set12" / "01.png"


@needs_shared
def test_corrupted_local_copy_is_refused(tmp_path, monkeypatch):
    local = tmp_path / "local"
    (local / "set12").mkdir(parents=True)
    good = (SHARED / "set12" / "01.png").read_bytes()
    (local / "set12" / "01.png").write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    monkeypatch.setenv("DECONVLAB_DATA", str(local))
    with pytest.raises(HashMismatchError) as err:
        data.fetch_file("set12", "01.png")
    assert str(local / "set12" / "01.png") in one_line(err)
    with pytest.raises(DataError) as err:  # present folder, missing file
        data.fetch_file("set12", "02.png")
    assert "02.png" in one_line(err) and "unset DECONVLAB_DATA" in str(err.value)
    with pytest.raises(DataError) as err:  # missing folder
        data.load_dataset("bsd68")
    assert "no folder bsd68/" in one_line(err)


# ------------------------------------------------------------------------------------------- a real HTTP server


def png_bytes(seed: int, shape=(24, 32)) -> bytes:
    import io as _io

    buf = _io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``server.plan[path]`` lists misbehaviours for the next requests of that path."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.hits[self.path] += 1
        plan = self.server.plan.get(self.path)
        action = plan.pop(0) if plan else "ok"
        if action == "500":
            self.send_error(500)
        elif action == "truncate":
            body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])  # then the connection closes: a cut-off transfer
        else:
            super().do_GET()

    def do_HEAD(self):  # noqa: N802
        self.server.hits[f"HEAD {self.path}"] += 1
        super().do_HEAD()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.plan, httpd.hits = {}, defaultdict(int)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.root, httpd.url = root, f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def write_registry(tmp_path: Path, monkeypatch, rows: list[tuple[str, str, str, bytes]]) -> None:
    """A registry of (dataset, file, url, content) rows in a scratch repository root."""
    out = tmp_path / "repo" / "data"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "registry.tsv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["dataset", "file", "url", "sha256", "bytes", "width", "height", "mode"])
        for dataset, name, url, content in rows:
            mode = "RGB" if dataset in ("cbsd68", "set5", "set14") else "L"  # the colour of a set follows its modes
            writer.writerow([dataset, name, url, hashlib.sha256(content).hexdigest(), len(content), 32, 24, mode])
    monkeypatch.setenv("DECONVLAB_ROOT", str(tmp_path / "repo"))


def serve(server, tmp_path, monkeypatch, n: int = 2, dataset: str = "set12") -> list[bytes]:
    contents = [png_bytes(i) for i in range(n)]
    for i, content in enumerate(contents):
        (server.root / f"{i:02d}.png").write_bytes(content)
    rows = [(dataset, f"{i:02d}.png", f"{server.url}/{i:02d}.png", c) for i, c in enumerate(contents)]
    write_registry(tmp_path, monkeypatch, rows)
    return contents


def test_download_is_verified_cached_and_not_repeated(server, tmp_path, monkeypatch):
    contents = serve(server, tmp_path, monkeypatch)
    path = data.fetch_file("set12", "00.png")
    assert path == tmp_path / "cache" / "set12" / "00.png" and path.read_bytes() == contents[0]
    assert data.fetch_file("set12", "00") == path and server.hits["/00.png"] == 1
    ds = data.load_dataset("set12")
    assert ds.names == ["00", "01"] and ds.images[1].shape == (24, 32) and not ds.is_fallback
    assert server.hits["/00.png"] == 1 and server.hits["/01.png"] == 1


def test_download_of_a_set(server, tmp_path, monkeypatch, capsys):
    contents = serve(server, tmp_path, monkeypatch, n=6)
    got = data.fetch_dataset("set12")
    assert [p.read_bytes() for p in got] == contents
    assert data.fetch_dataset("set12", limit=2) == got[:2]
    out = capsys.readouterr().out  # announced once, and not again for files in the cache
    assert out.startswith("deconvlab: downloading 6 files of set12") and len(out.splitlines()) == 1, out


def test_http_404_is_a_download_error(server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch, n=3)
    (server.root / "01.png").unlink()
    with pytest.raises(DownloadError) as err:
        data.fetch_dataset("set12")
    assert "HTTP 404" in one_line(err) and "DECONVLAB_DATA" in str(err.value)
    assert not isinstance(err.value, data.NoNetworkError)
    assert server.hits["/01.png"] == registry._RETRIES + 1  # pooch retries every failed request
    assert files_under(tmp_path / "cache" / "set12") == ["00.png"]  # the files in order, up to the failure


def test_truncated_transfer_is_retried_then_fails_and_keeps_nothing(server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch)
    server.plan["/00.png"] = ["truncate"] * 3
    with pytest.raises(DownloadError) as err:
        data.fetch_file("set12", "00.png")
    assert "cut off or failed 3 times" in one_line(err)
    assert server.hits["/00.png"] == 3
    assert files_under(tmp_path / "cache") == []  # no partial file, no pooch temporary


def test_wrong_hash_download_is_deleted(server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch)
    (server.root / "00.png").write_bytes(png_bytes(99))  # the server now has another file under that name
    with pytest.raises(HashMismatchError) as err:
        data.fetch_file("set12", "00.png")
    assert "nothing was kept" in one_line(err)
    assert server.hits["/00.png"] == registry._RETRIES + 1 and files_under(tmp_path / "cache") == []


def test_server_error_then_success(server, tmp_path, monkeypatch):
    contents = serve(server, tmp_path, monkeypatch)
    server.plan["/01.png"] = ["500"]
    assert data.fetch_file("set12", "01.png").read_bytes() == contents[1]
    assert server.hits["/01.png"] == 2


def test_corrupted_cache_file_is_downloaded_again(server, tmp_path, monkeypatch):
    contents = serve(server, tmp_path, monkeypatch)
    cached = tmp_path / "cache" / "set12" / "00.png"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage from an interrupted earlier run")
    assert data.fetch_file("set12", "00.png").read_bytes() == contents[0]
    assert server.hits["/00.png"] == 1


def test_changed_local_copy_is_refused(tmp_path, monkeypatch):
    contents = [png_bytes(i) for i in range(3)]
    local = tmp_path / "local" / "set12"
    local.mkdir(parents=True)
    for i, content in enumerate(contents):
        (local / f"{i:02d}.png").write_bytes(content)
    write_registry(tmp_path, monkeypatch, [("set12", f"{i:02d}.png", "http://unused/", c) for i, c in enumerate(contents)])
    monkeypatch.setenv("DECONVLAB_DATA", str(tmp_path / "local"))
    assert len(data.load_dataset("set12")) == 3
    (local / "01.png").write_bytes(png_bytes(42))  # a changed file is refused, however often the set was loaded
    with pytest.raises(HashMismatchError) as err:
        data.load_dataset("set12")
    assert "01.png" in one_line(err)


# ------------------------------------------------------------------------------------------- fetch everything


@pytest.fixture
def shared_server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving the shared copy of the sets, and the real registry pointed at it."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(SHARED)))
    httpd.plan, httpd.hits = {}, defaultdict(int)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    real = paths.data_dir() / "registry.tsv"
    out = tmp_path / "repo" / "data"
    out.mkdir(parents=True)
    with open(real, newline="") as src, open(out / "registry.tsv", "w", newline="") as dst:
        rows = csv.DictReader(src, delimiter="\t")
        writer = csv.DictWriter(dst, fieldnames=rows.fieldnames, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, url=f"{url}/{row['dataset']}/{row['file']}"))
    monkeypatch.setenv("DECONVLAB_ROOT", str(tmp_path / "repo"))
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@needs_shared
def test_fetch_all_downloads_every_set_in_parallel_once(shared_server, tmp_path, capsys, monkeypatch):
    # The first two files wait for each other: with one thread at a time the barrier would time out.
    both_started = threading.Barrier(2, timeout=20)
    threads, calls, lock, original = set(), [], threading.Lock(), registry._fetch

    def spy(info, f):
        with lock:
            threads.add(threading.current_thread().name)
            calls.append(f.file)
            first_two = len(calls) <= 2
        if first_two:
            both_started.wait()
        return original(info, f)

    monkeypatch.setattr(registry, "_fetch", spy)
    report = registry.fetch_all(workers=4, progress=True)
    assert len(threads) > 1 and all(name.startswith("deconvlab-fetch") for name in threads)
    cache = tmp_path / "cache"
    assert list(report.paths) == list(data.DATASET_NAMES)
    assert {name: len(p) for name, p in report.paths.items()} == COUNTS
    reg = data.registry()
    for name, got in report.paths.items():
        assert got == [cache / name / f.file for f in reg[name].files]  # registry order, in the cache
        for path, f in zip(got, reg[name].files, strict=True):
            assert path.read_bytes() == (SHARED / name / f.file).read_bytes()
    assert report.bytes == sum(info.total_bytes for info in reg.values()) and report.seconds > 0
    assert sorted(shared_server.hits) == sorted(f"/{f.dataset}/{f.file}" for info in reg.values() for f in info.files)
    err = capsys.readouterr().err
    assert "fetching" in err and "100%" in err  # the tqdm bar, on stderr
    summary = report.summary()
    assert f"{sum(COUNTS.values())} files of {len(COUNTS)} sets" in summary and f"in the cache {cache}" in summary

    requests = sum(shared_server.hits.values())
    again = registry.fetch_all(["set5", "SET12", "set5"], workers=3, progress=False)
    assert list(again.paths) == ["set5", "set12"] and again.paths["set5"] == report.paths["set5"]
    assert sum(shared_server.hits.values()) == requests  # all in the cache already: no request


@needs_shared
def test_fetch_all_stops_at_a_failure_and_keeps_the_verified_files(shared_server, tmp_path):
    first = data.registry()["set5"].files[0]
    shared_server.plan[f"/set5/{first.file}"] = ["500"] * (registry._RETRIES + 1)
    with pytest.raises(DownloadError) as err:
        registry.fetch_all(["set5"], workers=2, progress=False)
    assert "HTTP 500" in one_line(err) and first.file in str(err.value)
    kept = files_under(tmp_path / "cache" / "set5")
    assert first.file not in kept and all(not name.endswith(".tmp") for name in kept)
    with pytest.raises(ArgumentError):
        registry.fetch_all(workers=0)
    with pytest.raises(UnknownDatasetError):
        registry.fetch_all(["set99"])


@needs_shared
def test_fetch_all_verifies_a_local_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))
    report = registry.fetch_all(["set12", "set5"], progress=False)
    assert report.paths["set12"][0] == SHARED / "set12" / data.registry()["set12"].files[0].file
    assert report.source == f"the local copy DECONVLAB_DATA={SHARED}" and not (tmp_path / "cache").exists()


@needs_shared
def test_fetch_command_prints_the_time(shared_server, capsys):
    from deconvlab import cli

    code = cli.main(["fetch", "set5", "set12", "--workers", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("17 files of 2 sets (set5, set12)") and "verified by sha256 in " in out
    assert err == ""  # no terminal here, so no progress bar
    code = cli.main(["fetch", "--workers", "0"])
    assert code == 2 and capsys.readouterr().err.strip() == "deconvlab: error: --workers 0: pass an integer >= 1 and <= 256"


# ------------------------------------------------------------------------------------------- offline fallback


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Registry URLs that point at a closed port on this machine: the request fails at once, like no network."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    rows = [
        (name, f"{i:02d}.png", f"http://127.0.0.1:{port}/{name}/{i:02d}.png", png_bytes(i))
        for name in ("train400", "bsd68", "cbsd68")
        for i in range(2)
    ]
    write_registry(tmp_path, monkeypatch, rows)


def test_offline_fallback_warns_once_and_says_so(offline, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test = data.load_dataset("bsd68")
    assert len(caught) == 1
    assert capsys.readouterr().out == ""  # no "downloading" line for a download that never started
    message = str(caught[0].message)
    assert "\n" not in message and message.startswith("no network and no DECONVLAB_DATA")
    assert "instead of bsd68" in message and "not comparable with published numbers" in message
    assert test.is_fallback and test.name == "fallback-test" and "bsd68" in test.note
    assert test.names == list(data.FALLBACK_TEST) and test.color == "gray"
    assert all(im.ndim == 2 and im.dtype == np.float32 for im in test.images)  # gray set: gray stand-in


def test_offline_fallback_colour_training_limit_and_opt_out(offline, monkeypatch):
    with pytest.warns(UserWarning, match="instead of cbsd68"):
        colour = data.load_dataset("cbsd68", limit=2)
    assert colour.names == list(data.FALLBACK_TEST[:2]) and all(im.shape[-1] == 3 for im in colour.images)
    with pytest.warns(UserWarning, match="instead of train400"):
        train = data.load_dataset("train400", mode="rgb")
    assert train.names == list(data.FALLBACK_TRAIN) and train.color == "rgb"
    with pytest.raises(data.NoNetworkError) as err:
        data.load_dataset("bsd68", fallback=False)
    assert "cannot reach 127.0.0.1" in one_line(err)
    monkeypatch.setenv("DECONVLAB_DATA", "/nonexistent")  # a local copy was promised: no silent stand-in
    with pytest.raises(DataError):
        data.load_dataset("bsd68")


def test_offline_a_corrupt_cached_file_is_named(offline):
    # the refusal said only "cannot reach ...": nothing told that the cached copy had failed its sha256 check
    cached = data.cache_dir() / "bsd68" / "01.png"
    cached.parent.mkdir(parents=True)
    (data.cache_dir() / "bsd68" / "00.png").write_bytes(png_bytes(0))
    cached.write_bytes(png_bytes(1) + b"x")
    with pytest.raises(data.NoNetworkError) as err:
        data.fetch_dataset("bsd68")
    assert one_line(err).startswith(f"the cached {cached} does not match its sha256 in data/registry.tsv")
    assert "cannot reach 127.0.0.1" in one_line(err) and "to download bsd68/01.png again" in one_line(err)


def unwritable_cache(tmp_path, monkeypatch) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "a-file" / "cache"))  # no folder under a file, even for root


def test_offline_with_an_unwritable_cache_still_falls_back(offline, tmp_path, monkeypatch):
    """Offline nothing can be downloaded into any cache: the stand-in, not a cache folder to fix first."""
    unwritable_cache(tmp_path, monkeypatch)
    with pytest.warns(UserWarning, match="instead of bsd68"):
        test = data.load_dataset("bsd68")
    assert test.is_fallback and test.names == list(data.FALLBACK_TEST)
    with pytest.raises(data.NoNetworkError) as err:
        data.load_dataset("bsd68", fallback=False)
    message = one_line(err)
    assert "cannot reach 127.0.0.1" in message and "set DECONVLAB_CACHE to a writable folder" in message


def test_an_unwritable_cache_is_an_error_when_the_server_answers(server, tmp_path, monkeypatch):
    serve(server, tmp_path, monkeypatch)
    unwritable_cache(tmp_path, monkeypatch)
    with pytest.raises(DataError) as err:
        data.load_dataset("set12")
    assert one_line(err).startswith("cannot write ") and not isinstance(err.value, data.NoNetworkError)
    assert server.hits["/00.png"] == 0 and server.hits["HEAD /00.png"] == 1  # asked once, not downloaded


def test_fallback_images_ship_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for split, photos in (("fallback-train", data.FALLBACK_TRAIN), ("fallback-test", data.FALLBACK_TEST)):
        ds = data.load_dataset(split)
        assert ds.names == list(photos) and ds.is_fallback and len(ds) == len(photos)
        for im in ds.images:
            assert im.dtype == np.float32 and min(im.shape[:2]) >= 172 and 0 <= im.min() and im.max() <= 1
    assert data.load_dataset("fallback-test").images[1].shape == (512, 512)  # camera, native gray


# ------------------------------------------------------------------------------------------- PatchDataset


def add_noise(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return batch + rng.normal(0.0, 0.1, batch.shape).astype(np.float32)


IMAGES = [np.random.default_rng(7).random((40, 50), dtype=np.float32), np.random.default_rng(8).random((30, 30, 3))]


def test_patches_shapes_and_channels():
    ds = data.PatchDataset(IMAGES, add_noise, patch_size=16, batch_size=5, steps_per_epoch=3, channels=1)
    x, y = ds[0]
    assert len(ds) == 3 and x.shape == y.shape == (5, 16, 16, 1) and x.dtype == y.dtype == np.float32
    assert np.abs(x - y).std() > 0.05  # the noise is there, the target is clean
    colour = data.PatchDataset(IMAGES, None, patch_size=16, batch_size=4, steps_per_epoch=1, channels=3)
    x, y = colour[0]
    assert y.shape == (4, 16, 16, 3) and np.array_equal(x, y)
    with pytest.raises(IndexError):
        ds[3]
    # its own maximum, the one train.train holds drawn epochs to: not only refused once it reaches training
    with pytest.raises(ArgumentError, match=r"steps_per_epoch=1000000000000: pass an integer >= 1 and <= 1,000,000"):
        data.PatchDataset(IMAGES, None, patch_size=16, batch_size=4, steps_per_epoch=10**12)


def test_patches_are_reproducible_and_fresh():
    make = functools.partial(data.PatchDataset, IMAGES, add_noise, 12, 6, 4)
    a, b, other_seed = make(seed=3), make(seed=3), make(seed=4)
    for i in range(2):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    assert not np.array_equal(a[0][1], a[1][1])  # another batch: other patches
    assert not np.array_equal(a[0][1], other_seed[0][1])
    noise0 = a[0][0] - a[0][1]
    np.testing.assert_array_equal(noise0, a[0][0] - a[0][1])  # the same batch twice: the same noise
    assert not np.allclose(noise0, a[1][0] - a[1][1])
    first = a[0][1]
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(first, a[0][1])  # a new epoch draws anew


def test_augmentation_covers_the_eight_symmetries():
    img = np.arange(64, dtype=np.float32).reshape(8, 8) / 64  # the patch is the whole image: only flips vary
    variants = [data._dihedral(img[..., None], k) for k in range(8)]
    assert len({v.tobytes() for v in variants}) == 8
    ds = data.PatchDataset([img], None, patch_size=8, batch_size=64, steps_per_epoch=1)
    seen = set()
    for patch in ds[0][1]:
        match = [k for k, v in enumerate(variants) if np.array_equal(patch, v)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))
    plain = data.PatchDataset([img], None, patch_size=8, batch_size=8, steps_per_epoch=1, augment=False)
    assert all(np.array_equal(p, variants[0]) for p in plain[0][1])


def test_super_resolution_patches_are_multiples_of_scale():
    def downscale(batch, rng):
        n, h, w, c = batch.shape
        return batch.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))

    ds = data.PatchDataset(IMAGES, downscale, patch_size=17, batch_size=3, steps_per_epoch=1, scale=2)
    x, y = ds[0]
    assert ds.patch_size == 16 and y.shape == (3, 16, 16, 1) and x.shape == (3, 8, 8, 1)


def test_registry_does_not_import_keras():
    import subprocess
    import sys

    code = "import sys, deconvlab.registry as r; r.registry(); print('keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_first_data_load_in_a_kernel_without_ipywidgets_prints_no_tqdm_warning():
    # A Jupyter kernel without ipywidgets: tqdm.auto (imported by pooch) would warn in 170 columns.
    import subprocess
    import sys

    code = """
import sys, types, warnings
sys.modules["ipywidgets"] = None
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")  # what tqdm takes for a kernel
sys.modules["IPython"] = types.SimpleNamespace(get_ipython=object)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import deconvlab.registry as r
    r.cache_dir()
    import tqdm.auto
assert not [w for w in caught if "IProgress" in str(w.message)], [str(w.message) for w in caught]
"""
    env = {**os.environ, "DECONVLAB_CACHE": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-500:]


def test_patch_dataset_rejects_bad_input():
    with pytest.raises(ArgumentError):
        data.PatchDataset(IMAGES, add_noise, patch_size=0, batch_size=2, steps_per_epoch=1)
    with pytest.raises(ArgumentError):
        data.PatchDataset(IMAGES, add_noise, patch_size=8, batch_size=2, steps_per_epoch=1, channels=2)
    with pytest.raises(ArgumentError) as err:
        data.PatchDataset(IMAGES, add_noise, patch_size=64, batch_size=2, steps_per_epoch=1)
    assert "at least 64x64" in one_line(err)
    with pytest.warns(UserWarning, match="1 image"):
        data.PatchDataset(IMAGES, add_noise, patch_size=35, batch_size=2, steps_per_epoch=1)
    cropped = data.PatchDataset(IMAGES, lambda b, rng: b[:, 1:], patch_size=8, batch_size=2, steps_per_epoch=1)
    with pytest.raises(ArgumentError) as err:
        cropped[0]
    assert "degrade returned shape (2, 7, 8, 1)" in one_line(err)


def test_patch_dataset_trains_a_keras_model():
    import keras

    ds = data.PatchDataset(IMAGES, add_noise, patch_size=8, batch_size=4, steps_per_epoch=2, workers=1)
    assert ds.workers == 1 and ds.num_batches == 2
    inputs = keras.Input(shape=(None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    # Keras calls on_epoch_end after each epoch (the TensorFlow trainer once more before the first one).
    assert ds.epoch >= 2


def test_patch_dataset_passes_worker_options():
    ds = data.PatchDataset(IMAGES, add_noise, 8, 2, 1, workers=2, use_multiprocessing=False, max_queue_size=3)
    assert (ds.workers, ds.use_multiprocessing, ds.max_queue_size) == (2, False, 3)


def test_copy_of_shared_sets_is_not_in_the_repo():
    repo_data = paths.data_dir()
    assert not [p for p in repo_data.rglob("*") if p.suffix.lower() in {".png", ".bmp"}]


@needs_shared
def test_packed_sets_load_the_same_pixels_as_the_files(tmp_path, monkeypatch):
    from deconvlab import packed

    monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))
    stored = packed.pack_set("set5", tmp_path, "stored")
    y_pack = packed.pack_set("t91", tmp_path, "y")
    files = data.load_dataset("set5")
    t91 = data.load_dataset("t91", limit=3)
    monkeypatch.setenv("DECONVLAB_DATA", str(tmp_path))
    from_pack = packed.load_dataset("set5")
    assert from_pack.names == files.names and "pack" in from_pack.note
    for a, b in zip(from_pack.images, files.images, strict=True):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    y = packed.load_dataset("t91", view="y", limit=3)
    for a, rgb in zip(y.images, t91.images, strict=True):
        # 8-bit luma: within half a level of MATLAB's rgb2ycbcr, and on the 8-bit grid
        assert np.abs(a - _matlab_y(rgb)).max() <= 0.5 / 255 + 1e-6
        assert np.allclose(a * 255, np.round(a * 255), atol=1e-4)
    assert y_pack.stat().st_size < 3.5e6  # T91's luma travels in a few MB
    # a pack that no longer matches the registry's files is refused
    with np.load(stored) as pack:
        fields = dict(pack)
    fields["file_sha256"] = fields["file_sha256"][::-1]
    np.savez(stored, **fields)
    with pytest.raises(DataError, match="other files"):
        packed.load_dataset("set5")


@needs_shared
def test_packed_sets_check_the_name_and_limit_as_the_registry_does(tmp_path, monkeypatch):
    from deconvlab import packed

    monkeypatch.setenv("DECONVLAB_DATA", str(SHARED))
    packed.pack_set(" Set5", tmp_path, "y")
    assert [p.name for p in tmp_path.iterdir()] == ["set5.y.npz"]  # named by the registry's key
    monkeypatch.setenv("DECONVLAB_DATA", str(tmp_path))
    two = packed.load_dataset("SET5", view="y", limit=2)
    assert two.name == "set5" and two.names == ["baby_GT", "bird_GT"] and "pack" in two.note
    for bad in (0, -1, 2.5, True):  # no pack of 0 images, nor one with names but no images
        with pytest.raises(ArgumentError, match="limit"):
            packed.load_dataset("set5", view="y", limit=bad)
    for call in (lambda: packed.load_dataset("set55", view="y"), lambda: packed.pack_set("nope", tmp_path)):
        with pytest.raises(UnknownDatasetError, match="unknown data set"):
            call()
    with pytest.raises(UnknownDatasetError, match="not from files"):
        packed.load_dataset("fallback-test", view="y")


def _matlab_y(rgb):
    from deconvlab.metrics import rgb_to_y

    return rgb_to_y(rgb)


def _shared_pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(SHARED / path))


@needs_shared
def test_the_overlaps_that_datasets_md_states():
    """data/DATASETS.md: Train400's test_020 holds 106 columns of Set12's starfish, pixel for pixel; each BSD68 image is
    the rounded BT.601 luma of its CBSD68 counterpart up to +-1 on fewer than 1 % of its pixels."""
    def read(path):
        return _shared_pixels(path).astype(np.int16)

    train, starfish = read("train400/test_020.png"), read("set12/04.png")
    assert np.array_equal(train[:, 74:], starfish[72:252, :106])
    assert train[:, 74:].std() > 10  # textured, not a flat patch that any two photos could share
    with open(SHARED / "bsd68" / "BSD68_TO_CBSD68.tsv", newline="") as fh:
        pairs = [r for r in csv.reader(fh, delimiter="\t") if r and not r[0].startswith("#")][1:]
    assert len(pairs) == 68
    for gray_name, colour_name, *_ in pairs:
        rgb = read(f"cbsd68/{colour_name}").astype(np.float64)
        luma = np.round(rgb @ [0.2989, 0.5870, 0.1140])
        diff = np.abs(read(f"bsd68/{gray_name}") - luma)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, gray_name


@needs_shared
def test_the_crops_and_the_distinct_sets_that_datasets_md_states():
    """data/DATASETS.md: Set5's butterfly is a crop of Set14's monarch, Set14's face one of Set5's head; no T91 image is
    pixel-identical to a Set5 or Set14 image, and within T91 only t36 and t65 are."""
    read = _shared_pixels
    assert np.array_equal(read("set14/monarch.bmp")[144:400, 271:527], read("set5/butterfly_GT.bmp"))
    assert np.array_equal(read("set5/head_GT.bmp")[2:278, 2:278], read("set14/face.bmp"))

    def pixel_hashes(name):
        files = defaultdict(list)
        for path in sorted((SHARED / name).glob("*.bmp")):
            files[tasks.pixel_hash(read(str(path.relative_to(SHARED))))].append(path.name)
        return files

    t91 = pixel_hashes("t91")
    assert [names for names in t91.values() if len(names) > 1] == [["t36.bmp", "t65.bmp"]]
    assert not t91.keys() & (pixel_hashes("set5").keys() | pixel_hashes("set14").keys())


def test_the_test_sets_are_the_registry_sets_that_no_model_trains_on():
    # tasks.TEST_SETS is what `train --val-dataset` refuses: a set added to the registry must be placed on one side
    assert set(data.registry()) - {"train400", "t91"} == set(tasks.TEST_SETS)


def test_card_data_digests_read_a_set_name_as_load_dataset_does():
    digest = recipes.dataset_digest([" Train400"])
    assert list(digest) == ["train400"] and digest == recipes.dataset_digest(["train400"])
