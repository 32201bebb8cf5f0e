"""Browser test of the Chinese site (issue 21): _build/html/zh/, built by
`make book`.

Opens every Chinese page in headless Chromium (screenshots:
_build/screenshots/zh__*.png) and checks that
- the pages of the catalogues listed in locale/zh_CN/final.txt have no
  English paragraph left (code, outputs, formulas, citations and inline code
  are not prose and stay as they are);
- each page links to its counterpart in the other language, both ways, and
  the link lands on the same page;
- the Chinese search finds a glossary term (jieba splits the text into words).
Runs through `make browser` (MLKIT_BROWSER_TEST=1, see conftest.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("MLKIT_SITE", ROOT / "_build" / "html"))
ZH = SITE / "zh"
SHOTS = SITE.parent / "screenshots"
FINAL_LIST = ROOT / "locale" / "zh_CN" / "final.txt"
# a word every translated chapter uses, and the pages the Chinese search must
# find it in
SEARCH_WORD, SEARCH_PAGES = "元学习", ("01_background", "02_core_concepts")


def _final_pages() -> list[str]:
    lines = FINAL_LIST.read_text(encoding="utf-8").splitlines()
    return [
        line.strip().removesuffix(".po") + ".html"
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


def zh_pages() -> list[str]:
    if not (ZH / "index.html").is_file():
        return []
    skip = {"_static", "_sources", "_images"}
    return sorted(
        str(p.relative_to(ZH))
        for p in ZH.rglob("*.html")
        if not skip & set(p.relative_to(ZH).parts)
        and p.name not in ("genindex.html", "search.html")
    )


@pytest.fixture(scope="module")
def server(serve_folder):
    if not (ZH / "index.html").is_file():
        pytest.fail(
            f"{ZH}/index.html is missing: build both sites first "
            "(make book, or "
            "make book-zh after make build-strict)"
        )
    return serve_folder(SITE)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.problems = []
    pg.on(
        "pageerror", lambda exc: pg.problems.append(f"uncaught error: {exc}")
    )
    pg.on(
        "console",
        lambda msg: msg.type == "error"
        and pg.problems.append(f"console error: {msg.text}"),
    )
    pg.route(
        re.compile(r"^https?://(?!127\.0\.0\.1[:/]).*"),
        lambda route: route.abort(),
    )
    yield pg
    context.close()


# The prose elements of the article; what is not prose (code, outputs,
# formulas, citation links, the language link, the bibliography's entries) is
# removed before reading them.
ENGLISH_PARAGRAPHS_JS = (
    r"""() => {
  const article = document.querySelector('article.bd-article') || """
    r"""document.querySelector('main');
  const clone = article.cloneNode(true);
  clone.querySelectorAll('pre, code, .cell_output, .output, .highlight, """
    r""".math, mjx-container, '
      + '.mlkit-language-link, a[href*="bibliography"], div.citation, """
    r""".bibtex, '
      + 'dl.citation, script, style, .headerlink, .toggle-details, button')
      .forEach(e => e.remove());
  const out = [];
  clone.querySelectorAll('p, li, dd, td, th, figcaption, caption, """
    r"""h1, h2, h3, h4, .admonition-title')
      .forEach(e => {
    if (e.querySelector('p, li, dd')) return;  // judged by its own paragraphs
    const text = e.textContent.replace(/\s+/g, ' ').trim();
    const cjk = /[\u3400-\u9fff]/.test(text);
    // identifiers (file and checkpoint names, flags: a '_', '-', '.' or '/'
    // inside) are not English prose, so their parts are not counted as words
    const prose = text.replace(/\S*\w[_\-./]\w\S*/g, ' ');
    const words = (prose.match(/[A-Za-z]{2,}/g) || []).length;
    if (!cjk && words >= 4) out.push(text.slice(0, 120));
  });
  return out;
}"""
)


def _shot(rel: str) -> str:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return str(
        SHOTS
        / ("zh__" + rel.replace("/", "__").removesuffix(".html") + ".png")
    )


def test_chinese_site_exists():
    pages = zh_pages()
    assert "chapters/preface.html" in pages or "index.html" in pages, pages
    assert all(p in pages for p in _final_pages()), (_final_pages(), pages)


@pytest.mark.parametrize("rel", zh_pages() or ["index.html"])
def test_chinese_page(server, page, rel):
    page.goto(f"{server}/zh/{rel}", wait_until="load")
    page.wait_for_load_state("networkidle")
    page.evaluate("""async () => { if (window.MathJax && MathJax.startup
        && MathJax.startup.promise) { await MathJax.startup.promise; } }""")
    page.screenshot(path=_shot(rel), full_page=True)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.problems == [], "\n".join(page.problems)
    if rel in _final_pages():
        english = page.evaluate(ENGLISH_PARAGRAPHS_JS)
        assert (
            english == []
        ), f"zh/{rel}: English paragraphs left:\n" + "\n".join(english)


@pytest.mark.parametrize("rel", zh_pages() or ["index.html"])
def test_language_links_both_ways(server, page, rel):
    # a redirect to the root document, which is checked itself
    if rel == "index.html":
        pytest.skip("index.html only redirects")
    page.goto(f"{server}/{rel}", wait_until="load")
    page.locator(".mlkit-language-link a").click()
    page.wait_for_load_state("load")
    assert page.url == f"{server}/zh/{rel}", page.url
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.locator(".mlkit-language-link a").click()
    page.wait_for_load_state("load")
    assert page.url == f"{server}/{rel}", page.url
    assert page.evaluate("document.documentElement.lang") == "en"


def test_chinese_search_finds_a_glossary_term(server, page):
    page.goto(f"{server}/zh/search.html?q={SEARCH_WORD}", wait_until="load")
    hits = page.locator("#search-results ul.search li a")
    hits.first.wait_for(timeout=20_000)
    hrefs = [hits.nth(i).get_attribute("href") for i in range(hits.count())]
    page.screenshot(path=_shot("search"), full_page=True)
    for name in SEARCH_PAGES:
        assert any(
            name in h for h in hrefs
        ), f"{SEARCH_WORD!r} not found in {name}: {hrefs}"
    assert page.problems == [], "\n".join(page.problems)
