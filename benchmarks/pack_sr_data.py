"""Write .gpudata-sr/: the SR training and test sets as packs (deconvlab.packed) plus the GPU host's wheels.

Usage: DECONVLAB_DATA=../shared/datasets python benchmarks/pack_sr_data.py [--out .gpudata-sr]
       [--sets t91:y,train400:stored,set5:stored[,set14:stored]] [--wheels .gpudata/whl]

The GPU host has no network and no data; what it needs travels with the working tree (64 MiB in all, the tracked
files included), so the images go as lossless 8-bit PNGs inside one .npz per set. On the host, point
DECONVLAB_DATA at the folder: deconvlab.packed.load_dataset (and so `python -m deconvlab.fused --task sr`) reads
the packs. The folder is git-ignored; it prints its size and what the call would carry in all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from deconvlab import packed  # noqa: E402

DEFAULT_SETS = "t91:y,train400:stored,set5:stored"  # set14:stored adds 4.9 MB (see NOTES)
TRAVEL_LIMIT = 64 * 2**20  # the device call's working-tree limit


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _tracked_bytes() -> int:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return sum((ROOT / n).stat().st_size for n in names.decode().split("\0") if n and (ROOT / n).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpudata-sr")
    parser.add_argument("--sets", default=DEFAULT_SETS, help="name:view pairs (view: stored or y)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".gpudata" / "whl",
                        help="folder of wheels the GPU host installs (keras, namex, optree, pooch, platformdirs)")
    args = parser.parse_args(argv)
    if not os.environ.get("DECONVLAB_DATA"):
        print("note: DECONVLAB_DATA is not set: the sets are downloaded (or read from the cache)", flush=True)
    pairs = [tuple(item.split(":")) for item in args.sets.split(",") if item]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, view in pairs:
        path = packed.pack_set(name, args.out, view)
        print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB", flush=True)
    if args.wheels.is_dir():
        shutil.copytree(args.wheels, args.out / "whl", dirs_exist_ok=True)
        print(f"whl/: {_size(args.out / 'whl') / 1e6:.2f} MB", flush=True)
    else:
        print(f"warning: no wheels at {args.wheels}: the GPU host needs keras and its pure-Python dependencies")
    total, tracked = _size(args.out), _tracked_bytes()
    print(f"{args.out}: {total / 1e6:.2f} MB; with the {tracked / 1e6:.1f} MB of tracked files a call carries "
          f"{(total + tracked) / 2**20:.1f} of {TRAVEL_LIMIT / 2**20:.0f} MiB")
    return 0 if total + tracked < TRAVEL_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
