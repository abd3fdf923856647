"""The book builds with warnings as errors, its internal links resolve, and the rendered pages carry what readers need.

The build itself is the session fixture ``book_html`` (tests/conftest.py), shared with tests/test_browser.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import repository  # noqa: E402

CHINESE_HEADINGS = ("背景介绍", "核心概念与联系", "核心算法原理和具体操作步骤以及数学模型公式详细讲解",
                    "具体代码实例和详细解释说明", "未来发展趋势与挑战", "附录常见问题与解答")
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def _toc_pages() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"root:\s*(\S+)", text) + re.findall(r"file:\s*(\S+)", text)


def _notebook_pages() -> list[str]:
    return [p for p in _toc_pages() if p.startswith("notebooks/")]


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _content_pages(html: Path) -> list[Path]:
    skip = ("_static", "_sources", "_images", "_sphinx_design_static")
    return [p for p in sorted(html.rglob("*.html")) if not any(part in skip for part in p.relative_to(html).parts)]


# ---------------------------------------------------------------------------------------------- no build needed


def test_every_reference_has_a_doi_or_an_arxiv_id():
    text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    entries = re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", text, re.S)
    assert len(entries) == text.count("\n@") + text.startswith("@"), "an entry could not be parsed"
    missing = [key for key, body in entries
               if not re.search(r"\bdoi\s*=\s*\{10\.\d{4,}/\S+\}", body)
               and not re.search(r"\beprint\s*=\s*\{(\d{4}\.\d{4,5}|[a-z-]+/\d{7})(v\d+)?\}", body)]
    assert not missing, f"references.bib entries without a DOI or an arXiv id: {missing}"


def test_glossary_defines_the_terms_the_book_relies_on():
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    for term in ("Transposed convolution", "Adjoint", "PSF", "PSNR", "SSIM", "Modcrop", "Checkerboard artifact",
                 "Skip connection", "Vanishing gradient", "Overfitting", "Model card", "Profile", "Y channel"):
        assert re.search(rf"^{re.escape(term)}\s*$", text, re.M), f"glossary lacks {term!r}"


def test_landing_page_lists_the_chapters_with_their_original_headings():
    text = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    for heading in CHINESE_HEADINGS:
        assert heading in text, heading
    for needed in ("make book", "make test", "Colab", "KERAS_BACKEND", "How to cite", "_static/results.png"):
        assert needed in text, needed


# ---------------------------------------------------------------------------------------------- the built book


@pytest.mark.slow
def test_book_builds_and_has_every_page(book_html):
    assert (book_html / "index.html").exists()
    for page in _toc_pages():
        assert (book_html / f"{page}.html").exists(), page


@pytest.mark.slow
def test_internal_links_and_anchors_resolve(book_html):
    """Every relative href/src of every page points at a built file, and every #fragment at an id of its page."""
    ids: dict[Path, set[str]] = {}

    def ids_of(page: Path) -> set[str]:
        if page not in ids:
            soup = _soup(page)
            ids[page] = {t["id"] for t in soup.find_all(id=True)} | {t["name"] for t in soup.find_all("a", attrs={"name": True})}
        return ids[page]

    broken = []
    for page in _content_pages(book_html):
        soup = _soup(page)
        for tag, attr in (("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")):
            for el in soup.find_all(tag):
                url = el.get(attr)
                if not url:
                    continue
                parts = urlsplit(url)
                if parts.scheme or parts.netloc or url.startswith("//"):
                    continue  # external (http, https, mailto, data, javascript): not ours to check
                target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
                if target.is_dir():
                    target = target / "index.html"
                where = f"{page.relative_to(book_html)}: {tag} {attr}={url!r}"
                if not target.exists():
                    broken.append(f"{where} (no file {target})")
                elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids_of(target):
                    broken.append(f"{where} (no id {parts.fragment!r})")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])


@pytest.mark.slow
def test_chapter_pages_have_launch_download_and_repository_buttons(book_html):
    # While repository.url is the placeholder (tools/repository.py) the launch and repository buttons are hidden.
    published = not repository.is_placeholder(REPO_URL)
    for page in _notebook_pages():
        html = (book_html / f"{page}.html").read_text(encoding="utf-8")
        colab = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/main/{page}.ipynb"
        assert (colab in html) is published, f"{page}: Colab launch button {'missing' if published else 'shown'}"
        assert f"_sources/{page}.ipynb" in html, f"{page}: no download button for the .ipynb"
        assert (f'href="{REPO_URL}"' in html) is published, f"{page}: repository link {'missing' if published else 'shown'}"


@pytest.mark.slow
def test_no_code_toggle_above_a_chapter_title(book_html):
    # The Colab cell is removed from the HTML (tag remove-cell), so nothing precedes the title.
    for page in _notebook_pages():
        html = (book_html / f"{page}.html").read_text(encoding="utf-8")
        article = html[html.index('<article class="bd-article">'):]
        assert "Show code cell" not in article[:article.index("<h1")], f"{page}: a code toggle above the title"


@pytest.mark.slow
def test_bibliography_lists_the_anchors(book_html):
    # The bibliography style lowercases titles after the first word, so compare case-insensitively.
    page = (book_html / "book/bibliography.html").read_text().lower()
    for needle in ("beyond a gaussian denoiser", "symmetric skip connections", "checkerboard artifacts",
                   "laplacian pyramid networks"):
        assert needle in page, needle


@pytest.mark.slow
def test_figures_of_the_text_pages_have_alt_text(book_html):
    for page in _toc_pages():
        if page.startswith("notebooks/"):
            continue  # notebook outputs: each figure is described by the sentence before it
        text = _soup(book_html / f"{page}.html").get_text()
        assert not re.search(r":(alt|width|name|class):", text), f"{page}: a directive option was rendered as text"
        for img in _soup(book_html / f"{page}.html").find_all("img"):
            if "logo" in " ".join(img.get("class", [])):
                continue
            alt = (img.get("alt") or "").strip()
            assert len(alt.split()) >= 5 and not alt.endswith(".png"), f"{page}: image {img.get('src')} lacks alt text"


@pytest.mark.slow
def test_results_page_shows_the_generated_card_table(book_html):
    html = (book_html / "book/results.html").read_text(encoding="utf-8")
    generated = (ROOT / "book" / "_generated" / "model_cards.md").read_text(encoding="utf-8")
    if "--pending" in generated:
        assert "not in <code" in html or "pending" in html.lower()
    else:
        ids = re.findall(r"^\| `([\w.-]+)` \|", generated, re.M)
        assert ids, "book/_generated/model_cards.md lists no card"
        for card_id in ids:
            assert card_id in html, f"results page lacks card {card_id}"
        tables = (ROOT / "book" / "_generated" / "results_tables.md").read_text(encoding="utf-8")
        for value in re.findall(r"\| (\d+\.\d\d|[+-]\d+\.\d\d (?:tie|ahead|behind)) ", tables):
            assert value in html, f"results page lacks {value!r} of the generated result tables"
    assert "results.png" in html
