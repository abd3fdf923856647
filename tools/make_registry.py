"""Write data/registry.tsv from the MANIFEST.tsv files of a local copy of the benchmark sets.

Usage: python tools/make_registry.py [DATASETS_DIR] [--verify]

DATASETS_DIR holds one folder per set (train400, bsd68, set12, cbsd68, set5, set14, t91), each with a MANIFEST.tsv
whose ``# raw_url_pattern:`` header gives the pinned download URL of every file. ``--verify`` also hashes the
local files against their manifest rows. No image is copied: the registry only names, sizes and hashes them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

DATASETS = ("train400", "bsd68", "set12", "cbsd68", "set5", "set14", "t91")
COLUMNS = ("dataset", "file", "url", "sha256", "bytes", "width", "height", "mode")
REPO = Path(__file__).resolve().parents[1]


def read_manifest(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The ``# key: value`` header lines and the table rows of one MANIFEST.tsv."""
    header: dict[str, str] = {}
    table: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            header.setdefault(key.strip(), value.strip())
        elif line.strip():
            table.append(line)
    return header, list(csv.DictReader(table, delimiter="\t"))


def registry_rows(root: Path, verify: bool = False) -> list[dict[str, str]]:
    """Registry rows for every set under ``root``, in the book's order and the manifests' file order."""
    rows = []
    for name in DATASETS:
        header, files = read_manifest(root / name / "MANIFEST.tsv")
        pattern = header["raw_url_pattern"]
        if "<file>" not in pattern or header["snapshot_commit"] not in pattern:
            raise SystemExit(f"{name}: raw_url_pattern is not pinned to the snapshot commit: {pattern}")
        for row in files:
            if verify:
                data = (root / name / row["file"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != row["sha256"] or len(data) != int(row["bytes"]):
                    raise SystemExit(f"{name}/{row['file']} differs from its manifest row")
            rows.append({"dataset": name, "url": pattern.replace("<file>", row["file"]), **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="?", default="/work/shared/datasets", type=Path)
    parser.add_argument("--verify", action="store_true", help="hash the local files against the manifests")
    parser.add_argument("--out", default=REPO / "data" / "registry.tsv", type=Path)
    args = parser.parse_args(argv)
    rows = registry_rows(args.datasets, verify=args.verify)
    with open(args.out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows for {len(DATASETS)} sets to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
