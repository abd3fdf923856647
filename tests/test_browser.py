"""The rendered book in a real browser: headless Chromium loads the pages, every figure loads, the Colab button is there.

Screenshots of the landing page and one chapter go to ``_build/screenshots/`` (``tools/make_figures.py --screenshot``
shrinks one for the README). Without Chromium the tests skip, except in CI (``CI=true``), where they fail: install it
with ``apt-get install chromium`` (``.ci/run`` does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import repository  # noqa: E402

SCREENSHOTS = ROOT / "_build" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-extensions", "--mute-audio"]
PROBE_ID = "deconvlab-probe"
# Runs inside the page: make every image eager, wait until each has loaded or failed, then write what it saw.
PROBE = """
<script>
(function () {
  function report() {
    var imgs = Array.prototype.slice.call(document.images);
    var out = {
      images: imgs.map(function (i) { return {src: i.getAttribute('src'), complete: i.complete,
                                               width: i.naturalWidth, alt: i.getAttribute('alt')}; }),
      colab: Array.prototype.slice.call(document.querySelectorAll('a[href*="colab.research.google.com"]'))
               .map(function (a) { return a.href; }),
      launch: document.querySelectorAll('.dropdown-launch-buttons').length,
      title: document.title
    };
    var pre = document.createElement('pre');
    pre.id = '__PROBE_ID__';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.images, function (i) { i.loading = 'eager'; });
  });
  window.addEventListener('load', function () {
    var pending = Array.prototype.slice.call(document.images).filter(function (i) { return !i.complete; })
      .map(function (i) { return new Promise(function (r) { i.addEventListener('load', r); i.addEventListener('error', r); }); });
    Promise.all(pending).then(report);
  });
})();
</script>
""".replace("__PROBE_ID__", PROBE_ID)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    message = "Chromium is not installed (apt-get install chromium); the browser checks cannot run"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " — CI=true requires it")
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


def _run(browser: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([browser, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
    return proc


def probe(browser: str, page: Path, script: str = PROBE, *flags: str):
    """Open a copy of ``page`` (same folder, so relative links work) with a probe script; return its report."""
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>", 1), encoding="utf-8")
    try:
        proc = _run(browser, *flags, "--virtual-time-budget=20000", "--dump-dom", copy.as_uri())
    finally:
        copy.unlink(missing_ok=True)
    pre = BeautifulSoup(proc.stdout, "html.parser").find(id=PROBE_ID)
    assert pre is not None, f"{page.name}: the page did not finish loading in the browser"
    return json.loads(pre.get_text())


def screenshot(browser: str, page: Path, name: str, height: int = 1400) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / name
    out.unlink(missing_ok=True)
    _run(browser, f"--window-size=1280,{height}", "--virtual-time-budget=20000", f"--screenshot={out}",
         page.as_uri())
    return out


def _not_blank(png: Path) -> float:
    from PIL import Image, ImageStat

    with Image.open(png) as img:
        return max(ImageStat.Stat(img.convert("L")).stddev)


def _chapter_pages(html: Path) -> list[Path]:
    return sorted((html / "notebooks").glob("[0-9][0-9]_*.html"))


def _screenshot_chapter(html: Path) -> Path:
    pages = _chapter_pages(html)
    preferred = [p for p in pages if p.stem.startswith("03_")] or [p for p in pages if not p.stem.startswith("00_")]
    return (preferred or pages)[0]


@pytest.mark.slow
def test_screenshots_of_the_landing_page_and_a_chapter(book_html, chromium):
    for page, name in ((book_html / "book" / "intro.html", "landing.png"),
                       (_screenshot_chapter(book_html), "chapter.png")):
        png = screenshot(chromium, page, name)
        assert png.is_file() and png.stat().st_size > 10_000, f"{name}: no screenshot of {page.name}"
        assert _not_blank(png) > 10, f"{name}: the screenshot of {page.name} is blank"


@pytest.mark.slow
def test_landing_and_results_pages_show_their_figures(book_html, chromium):
    for page in (book_html / "book" / "intro.html", book_html / "book" / "results.html"):
        report = probe(chromium, page)
        images = [i for i in report["images"] if "results.png" in (i["src"] or "")]
        assert images, f"{page.name}: the results figure is missing"
        for img in report["images"]:
            assert img["complete"] and img["width"] > 0, f"{page.name}: image {img['src']} did not load"


@pytest.mark.slow
def test_every_chapter_loads_its_figures_and_has_a_colab_button(book_html, chromium):
    pages = _chapter_pages(book_html)
    assert pages, "no chapter pages were built"
    for page in pages:
        report = probe(chromium, page)
        broken = [i["src"] for i in report["images"] if not (i["complete"] and i["width"] > 0)]
        assert not broken, f"{page.name}: images that did not load: {broken}"
        expected = f"blob/main/notebooks/{page.stem}.ipynb"
        if repository.is_placeholder(repository.repository_url()):
            # Not published yet: no launch button may point at a repository that does not exist.
            assert not report["colab"] and report["launch"] == 0, f"{page.name}: launch buttons while unpublished"
        else:
            assert any(expected in href for href in report["colab"]), f"{page.name}: no Colab button"
            assert report["launch"] >= 1, f"{page.name}: no launch-buttons menu"


# Runs inside a chapter page: is any part of an answer visible before, and all of it after, its toggle is clicked?
SOLUTIONS_PROBE = """
<script>
window.addEventListener('load', function () { setTimeout(function () {
  function shown(el) { return el.checkVisibility({visibilityProperty: true, opacityProperty: true}); }
  var parts = '.cell_input, .cell_output, p:not(.admonition-title), img, table';
  var out = Array.prototype.slice.call(document.querySelectorAll('.solution')).map(function (s) {
    var content = Array.prototype.slice.call(s.querySelectorAll(parts));
    var before = content.filter(shown).length;
    var button = s.querySelector('.toggle-button');
    if (button) { button.click(); }
    return {id: s.id, parts: content.length, before: before, button: !!button};
  });
  // Poll instead of one fixed delay: on a loaded 2-core CI machine the toggle's transition
  // outlasted 1.5 s. A click that did not register (still marked hidden) is repeated.
  var waited = 0;
  (function poll() {
    var done = true;
    out.forEach(function (o) {
      var s = document.getElementById(o.id);
      o.after = Array.prototype.slice.call(s.querySelectorAll(parts)).filter(shown).length;
      if (o.after < o.parts) {
        done = false;
        var button = s.querySelector('.toggle-button');
        if (button && s.classList.contains('toggle-hidden') && waited % 2000 === 1000) {
          button.click();
        }
      }
    });
    if (!done && waited < 15000) { waited += 250; setTimeout(poll, 250); return; }
    var pre = document.createElement('pre');
    pre.id = '__PROBE_ID__';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  })();
}, 300); });
</script>
""".replace("__PROBE_ID__", PROBE_ID)


@pytest.mark.slow
def test_answers_stay_hidden_until_their_toggle_is_opened(book_html, chromium):
    for page in _chapter_pages(book_html):
        if page.stem.startswith("00_"):
            continue
        answers = probe(chromium, page, SOLUTIONS_PROBE)
        if any(a["after"] != a["parts"] for a in answers):
            # Headless Chromium failed CI twice on 06_faq (0/6 shown after 15 s of re-clicks), yet 30 probes
            # under full CPU load never did: the page gets one fresh load before the test fails.
            answers = probe(chromium, page, SOLUTIONS_PROBE)
        assert len(answers) >= 4, f"{page.name}: {len(answers)} answers rendered"
        for a in answers:
            assert a["button"] and a["parts"] >= 2, f"{page.name} {a['id']}: an answer without toggle or content"
            assert a["before"] == 0, f"{page.name} {a['id']}: {a['before']} parts of the answer visible unopened"
            assert a["after"] == a["parts"], f"{page.name} {a['id']}: opening the toggle showed {a['after']}/{a['parts']}"


# Runs inside a page opened with the network blocked: how many formulas did MathJax typeset?
MATH_PROBE = """
<script>
window.addEventListener('load', function () {
  function report(state) {
    var maths = Array.prototype.slice.call(document.querySelectorAll('.math'));
    var pre = document.createElement('pre');
    pre.id = '__PROBE_ID__';
    pre.textContent = JSON.stringify({state: state, formulas: maths.length,
      typeset: maths.filter(function (m) { return m.querySelector('mjx-container'); }).length});
    document.body.appendChild(pre);
  }
  if (!window.MathJax || !MathJax.startup) { report('no MathJax'); return; }
  MathJax.startup.promise.then(function () { report('done'); }, function () { report('failed'); });
});
</script>
""".replace("__PROBE_ID__", PROBE_ID)
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"  # every host name fails to resolve: no CDN can answer


@pytest.mark.slow
def test_formulas_render_with_the_network_blocked(book_html, chromium):
    pages = [p for p in _chapter_pages(book_html) if 'class="math' in p.read_text(encoding="utf-8")]
    assert len(pages) >= 3, "expected formulas in at least three chapters"
    for page in pages:
        report = probe(chromium, page, MATH_PROBE, OFFLINE)
        assert report["state"] == "done", f"{page.name}: MathJax {report['state']} offline"
        assert report["formulas"] > 0 and report["typeset"] == report["formulas"], \
            f"{page.name}: {report['typeset']} of {report['formulas']} formulas rendered offline"


# A page inside an iframe of a given width (its own viewport, so the theme's narrow-screen layout applies; headless
# Chromium windows cannot be narrower than 500 px): which tables, code blocks and images stick out of the article?
OVERFLOW_FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="__PAGE__" style="width:__WIDTH__px;height:1200px;border:0"></iframe>
<script>
document.getElementById('f').addEventListener('load', function () { setTimeout(function () {
  var doc = document.getElementById('f').contentDocument, out = [];
  var article = doc.querySelector('article');
  var right = article.getBoundingClientRect().right;
  doc.querySelectorAll('article table, article pre, article img').forEach(function (el) {
    for (var p = el.parentElement; p && p !== article; p = p.parentElement) {
      var x = doc.defaultView.getComputedStyle(p).overflowX;
      if (x === 'auto' || x === 'scroll') { return; }
    }
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right + 1) {
      out.push(el.tagName + ' sticks out by ' + Math.round(r.right - right) + ' px: '
               + (el.getAttribute('src') || el.textContent || '').slice(0, 50));
    }
  });
  var pre = document.createElement('pre');
  pre.id = '__PROBE_ID__';
  pre.textContent = JSON.stringify({width: doc.defaultView.innerWidth, overflow: out});
  document.body.appendChild(pre);
}, 500); });
</script></body></html>
""".replace("__PROBE_ID__", PROBE_ID)


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 400])
def test_nothing_is_wider_than_the_page_unless_it_scrolls(book_html, chromium, width):
    pages = _chapter_pages(book_html) + sorted((book_html / "book").rglob("*.html"))
    problems = []
    for page in pages:
        frame = page.with_name(f".frame-{page.name}")
        frame.write_text(OVERFLOW_FRAME.replace("__PAGE__", page.name).replace("__WIDTH__", str(width)),
                         encoding="utf-8")
        try:
            proc = _run(chromium, "--allow-file-access-from-files", "--virtual-time-budget=20000",
                        "--dump-dom", frame.as_uri())
        finally:
            frame.unlink(missing_ok=True)
        pre = BeautifulSoup(proc.stdout, "html.parser").find(id=PROBE_ID)
        assert pre is not None, f"{page.name}: the page did not load in a {width} px frame"
        report = json.loads(pre.get_text())
        assert report["width"] == width
        problems += [f"{page.relative_to(book_html)}: {line}" for line in report["overflow"]]
    assert not problems, f"at {width} px:\n" + "\n".join(problems[:20])
