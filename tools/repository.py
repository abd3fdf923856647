"""Write the repository URL of ``_config.yml`` everywhere it appears (``make repository``).

``repository.url`` in ``_config.yml`` is the one hand-edited place. This script writes it into the Colab cell of
every chapter source (``notebooks/NN_name.md``, then the paired ``.ipynb`` keeping outputs), ``CITATION.cff``, the
BibTeX entry in ``book/intro.md``, the launch links in ``book/workshop/index.md`` and ``README.md``, and the button
settings of ``_config.yml``. While the URL is the placeholder (an impossible GitHub account name, so it can never
point at somebody else's repository), launch and repository buttons are hidden and the Colab cell explains how to
run a notebook without the repository. ``tests/test_repository.py`` fails when any of these places disagrees.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# GitHub account names cannot contain "_": this URL cannot belong to anybody.
PLACEHOLDER = "https://github.com/your_account/deconvlab-book"
COLAB = "https://colab.research.google.com/github"
BLOCK = re.compile(r"(<!-- repository:start -->\n).*?(<!-- repository:end -->)", re.S)

COLAB_CELL_PUBLISHED = '''\
# Colab only: clone the book (code, data registry, weights) and install its package.
import sys

REPO_URL = "{url}"
if "google.colab" in sys.modules:
    import os
    import subprocess

    BOOK = "/content/deconvlab-book"
    if not os.path.exists(BOOK):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, BOOK], check=True)
        # The "book" extra brings what the chapters import (bm3d, TensorFlow, ...).
        extra = f"{{BOOK}}[book]"
        pip = [sys.executable, "-m", "pip", "install", "-q", "-e", extra]
        subprocess.run(pip, check=True)
    sys.path.insert(0, f"{{BOOK}}/src")
    os.chdir(f"{{BOOK}}/{folder}")'''

COLAB_CELL_PLACEHOLDER = '''\
# Colab only. The book has no public repository yet (_config.yml), so nothing is cloned.
import sys

REPO_URL = "{url}"
if "google.colab" in sys.modules:
    print("No repository yet: upload the book folder"
          " and run !pip install './deconvlab-book[book]'")'''


def repository_url() -> str:
    """``repository.url`` of ``_config.yml``, without a trailing slash."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return str(config["repository"]["url"]).rstrip("/")


def is_placeholder(url: str) -> bool:
    return url == PLACEHOLDER


def colab_cell(url: str, folder: str = "notebooks") -> str:
    """Source of the first (hidden) cell of every chapter; ``folder`` is ``student`` for the student edition."""
    template = COLAB_CELL_PLACEHOLDER if is_placeholder(url) else COLAB_CELL_PUBLISHED
    return template.format(url=url, folder=folder)


def colab_link(url: str, path: str) -> str:
    """Colab address of ``path`` (e.g. ``student/01_background.ipynb``) in the repository's main branch."""
    return f"{COLAB}/{url.split('github.com/', 1)[1]}/blob/main/{path}"


def chapter_names() -> list[str]:
    return [p.stem for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md"))]


def launch_block(url: str) -> str:
    """The generated Markdown between the ``repository`` markers of README.md and the workshop page."""
    if is_placeholder(url):
        return (
            "The book is not published yet (`repository.url` in `_config.yml` is a placeholder), so there are no\n"
            "Colab links: open `notebooks/` (the chapters) or `student/` (the student edition) from a local copy.\n"
        )
    lines = ["| chapter | with outputs | student edition |", "|---|---|---|"]
    for name in chapter_names():
        lines.append(f"| `{name}` | [Colab]({colab_link(url, f'notebooks/{name}.ipynb')}) "
                     f"| [Colab]({colab_link(url, f'student/{name}.ipynb')}) |")
    return "\n".join(lines) + "\n"


def _sub(path: Path, pattern: str, replacement: str, count: int = 0) -> None:
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(pattern, replacement, text, count=count, flags=re.M)
    if n == 0:
        raise SystemExit(f"{path.relative_to(ROOT)}: no match for {pattern!r}")
    path.write_text(new, encoding="utf-8")


def write_config_buttons(url: str) -> None:
    shown = "false" if is_placeholder(url) else "true"
    config = ROOT / "_config.yml"
    for key in ("use_repository_button", "use_issues_button"):
        _sub(config, rf"^(\s+{key}:).*$", rf"\1 {shown}")
    colab = '""' if is_placeholder(url) else f'"{COLAB.rsplit("/", 1)[0]}"'
    _sub(config, r"^(\s+colab_url:).*$", rf"\1 {colab}")


def write_colab_cells(url: str) -> list[Path]:
    """Replace the first code cell of every chapter source; return the sources that changed."""
    changed = []
    fence = re.compile(r"```\{code-cell\} ipython3\n(:tags: \[.*?\]\n)\n(.*?)\n```", re.S)
    for name in chapter_names():
        path = NOTEBOOKS / f"{name}.md"
        text = path.read_text(encoding="utf-8")
        match = fence.search(text)
        if not match or "google.colab" not in match.group(2):
            raise SystemExit(f"{path.relative_to(ROOT)}: the first code cell is not the Colab cell")
        new = text[: match.start(2)] + colab_cell(url) + text[match.end(2):]
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def write_text_files(url: str) -> None:
    _sub(ROOT / "CITATION.cff", r'^(repository-code|url): ".*"$', rf'\1: "{url}"')
    _sub(ROOT / "book" / "intro.md", r"^(  url\s+= )\{.*\},$", rf"\1{{{url}}},")
    for path in (ROOT / "README.md", ROOT / "book" / "workshop" / "index.md"):
        text = path.read_text(encoding="utf-8")
        new, n = BLOCK.subn(lambda m: m.group(1) + launch_block(url) + m.group(2), text)
        if n != 1:
            raise SystemExit(f"{path.relative_to(ROOT)}: needs one <!-- repository:start/end --> block")
        path.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    url = repository_url()
    write_config_buttons(url)
    write_text_files(url)
    changed = write_colab_cells(url)
    for path in changed:
        # Keep the executed outputs: update the paired notebook's sources only.
        subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", "--update", "-q", str(path)],
                       check=True)
    state = "placeholder: launch buttons hidden" if is_placeholder(url) else "published"
    print(f"repository {url} ({state}); Colab cells changed in {len(changed)} chapter(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
