"""One repository setting: `repository.url` in _config.yml, written everywhere else by `make repository`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import repository  # noqa: E402

URL = repository.repository_url()


def test_citation_and_bibtex_name_the_configured_repository():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["repository-code"] == URL and citation["url"] == URL, "run `make repository`"
    bibtex = re.search(r"^  url\s+= \{(.*)\},$", (ROOT / "book" / "intro.md").read_text(encoding="utf-8"), re.M)
    assert bibtex and bibtex.group(1) == URL, "book/intro.md: run `make repository`"


def test_readme_and_workshop_carry_the_generated_launch_block():
    for path in (ROOT / "README.md", ROOT / "book" / "workshop" / "index.md"):
        block = repository.BLOCK.search(path.read_text(encoding="utf-8"))
        assert block, f"{path.name}: no <!-- repository:start/end --> block"
        assert block.group(0) == f"{block.group(1)}{repository.launch_block(URL)}{block.group(2)}", \
            f"{path.relative_to(ROOT)}: run `make repository`"


def test_no_other_github_repository_of_the_book_is_named_anywhere():
    # The URL lives in _config.yml; every other mention of a deconvlab-book repository must be that one.
    files = [ROOT / "README.md", ROOT / "CITATION.cff", *sorted((ROOT / "book").rglob("*.md")),
             *sorted((ROOT / "notebooks").glob("*.md"))]
    for path in files:
        for found in re.findall(r"https://github\.com/[\w.-]+/deconvlab-book", path.read_text(encoding="utf-8")):
            assert found == URL, f"{path.relative_to(ROOT)} names {found}, _config.yml says {URL}"


def test_buttons_follow_the_url():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    published = not repository.is_placeholder(URL)
    assert config["html"]["use_repository_button"] is published
    assert config["html"]["use_issues_button"] is published
    assert bool(config["launch_buttons"]["colab_url"]) is published


def test_placeholder_cannot_be_a_real_account_and_the_colab_cell_says_so():
    account = repository.PLACEHOLDER.split("github.com/")[1].split("/")[0]
    assert not re.fullmatch(r"[A-Za-z0-9](?:-?[A-Za-z0-9])*", account), "GitHub would accept this account name"
    cell = repository.colab_cell(repository.PLACEHOLDER)
    assert "No repository yet" in cell and "git" not in cell.replace("github", "")
    assert "git\", \"clone" in repository.colab_cell("https://github.com/someone/deconvlab-book")
    assert all(len(line) <= 88 for url in (repository.PLACEHOLDER, "https://github.com/someone/deconvlab-book")
               for line in repository.colab_cell(url).splitlines())


def test_published_launch_block_links_chapters_and_student_editions():
    block = repository.launch_block("https://github.com/someone/deconvlab-book")
    for name in repository.chapter_names():
        for folder in ("notebooks", "student"):
            link = f"https://colab.research.google.com/github/someone/deconvlab-book/blob/main/{folder}/{name}.ipynb"
            assert link in block
