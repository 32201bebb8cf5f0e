"""Browser test of the built book: serve _build/html on 127.0.0.1 and drive
headless Chromium.

Checks, on every page: it loads with no console error, no uncaught script
error and no request leaving 127.0.0.1 (the site must work offline); every
image has loaded (naturalWidth > 0); every math element was typeset by the
vendored MathJax. On pages with slider explorers, moving each static slider
changes its image. Each page built from a notebook offers that notebook for
download. The search page finds a word from chapter 3. Screenshots go to
_build/screenshots/.

Run with `make browser` (needs `make book` first, and /usr/bin/chromium:
`apt-get install -y chromium chromium-driver`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("MLKIT_SITE", ROOT / "_build" / "html"))
SHOTS = SITE.parent / "screenshots"
SEARCH_WORD = os.environ.get("MLKIT_SEARCH_WORD", "MAML")
SEARCH_PAGE = "03_maml"  # the chapter the word must be found in


def site_pages() -> list[str]:
    """Every HTML page of the site, relative to its root (assets and sources
    left out)."""
    if not (SITE / "index.html").is_file():
        return []
    skip = {"_static", "_sources", "_images"}
    return sorted(
        str(p.relative_to(SITE))
        for p in SITE.rglob("*.html")
        if not skip & set(p.relative_to(SITE).parts)
    )


@pytest.fixture(scope="module")
def server(serve_folder):
    if not (SITE / "index.html").is_file():
        pytest.fail(
            f"{SITE}/index.html is missing: build the book first (make book)"
        )
    return serve_folder(SITE)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.problems = []  # console errors, page errors, failed or outside requests

    def on_console(msg):
        if msg.type == "error":
            pg.problems.append(
                f"console error: {msg.text} ({msg.location.get('url', '')})"
            )

    def on_request(req):
        host = urlparse(req.url).hostname
        if (
            req.url.startswith(("data:", "blob:", "about:"))
            or host == "127.0.0.1"
        ):
            return
        pg.problems.append(f"request leaves the site: {req.url}")

    pg.on("console", on_console)
    pg.on(
        "pageerror", lambda exc: pg.problems.append(f"uncaught error: {exc}")
    )
    pg.on(
        "requestfailed",
        lambda req: pg.problems.append(
            f"request failed: {req.url} {req.failure}"
        ),
    )
    pg.on("request", on_request)
    # Nothing outside 127.0.0.1 is reachable here; abort such requests at once
    # (they are reported by on_request) instead of waiting for a network
    # timeout.
    pg.route(
        re.compile(r"^https?://(?!127\.0\.0\.1[:/]).*"),
        lambda route: route.abort(),
    )
    yield pg
    context.close()


def _shot_name(rel: str, suffix: str = "") -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / (
        rel.replace("/", "__").removesuffix(".html") + suffix + ".png"
    )


def _settle(pg) -> None:
    """Wait until images are decoded and MathJax has typeset the page."""
    pg.evaluate(
        """async () => {
        for (const img of document.images) { img.loading = 'eager'; }
        await Promise.all(Array.from(document.images).map(img => """
        """img.complete ? null :
            new Promise(r => { img.addEventListener('load', r); """
        """img.addEventListener('error', r); })));
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            await MathJax.startup.promise;
        }
    }"""
    )


def test_site_has_pages():
    pages = site_pages()
    assert "index.html" in pages
    assert any(SEARCH_PAGE in p for p in pages), pages


@pytest.mark.parametrize("rel", site_pages() or ["index.html"])
def test_page_loads_clean(server, page, rel):
    page.goto(f"{server}/{rel}", wait_until="load")
    if rel != "search.html":  # the search page is checked on its own below
        page.wait_for_load_state("networkidle")
    _settle(page)
    broken = page.evaluate("""() => Array.from(document.images)
        .filter(i => !(i.complete && i.naturalWidth > 0))
        .map(i => i.currentSrc.slice(0, 120) || i.outerHTML.slice(0, 120))""")
    untypeset = page.evaluate(
        """() => Array.from(document.querySelectorAll('span.math, div.math'))
        .filter(e => !e.querySelector('mjx-container'))"""
        """.map(e => e.textContent.slice(0, 80))"""
    )
    page.screenshot(path=str(_shot_name(rel)), full_page=True)
    assert page.problems == [], f"{rel}: " + "\n".join(page.problems)
    assert broken == [], f"{rel}: images that did not load: {broken}"
    assert untypeset == [], f"{rel}: math MathJax did not typeset: {untypeset}"


def _explorer_pages() -> list[str]:
    return [
        p
        for p in site_pages()
        if 'class="mlkit-explorer"' in (SITE / p).read_text(encoding="utf-8")
    ]


@pytest.mark.parametrize(
    "rel",
    _explorer_pages()
    or [
        pytest.param(
            "none",
            marks=pytest.mark.skip(
                reason="no page of the site holds a slider explorer yet"
            ),
        )
    ],
)
def test_static_sliders_change_their_figure(server, page, rel):
    page.goto(f"{server}/{rel}", wait_until="load")
    _settle(page)
    explorers = page.locator("div.mlkit-explorer")
    assert explorers.count() > 0
    for e in range(explorers.count()):
        box = explorers.nth(e)
        box.scroll_into_view_if_needed()
        img = box.locator("img.mlkit-frame")
        sliders = box.locator("input.mlkit-slider")
        outputs = box.locator("output.mlkit-value")
        assert sliders.count() > 0
        for s in range(sliders.count()):
            slider = sliders.nth(s)
            start = int(slider.input_value())
            top = int(slider.get_attribute("max"))
            assert (
                top >= 1
            ), f"{rel} explorer {e} slider {s} has a single value"
            seen, labels = {img.get_attribute("src")}, {
                outputs.nth(s).text_content()
            }
            # Real key presses (not a scripted value change): what a reader's
            # keyboard does.
            slider.focus()
            page.keyboard.press("Home")
            for _ in range(top + 1):
                seen.add(img.get_attribute("src"))
                labels.add(outputs.nth(s).text_content())
                page.keyboard.press("ArrowRight")
            assert int(slider.input_value()) == top
            assert (
                len(labels) == top + 1
            ), f"{rel} explorer {e} slider {s}: labels {labels}"
            assert (
                len(seen) > 1
            ), f"{rel} explorer {e} slider {s}: the figure never changed"
            assert (
                page.evaluate(
                    "src => new Promise(r => { const i = new Image(); "
                    "i.onload = () => r(i.naturalWidth); "
                    "i.onerror = () => r(0); "
                    "i.src = src; })",
                    img.get_attribute("src"),
                )
                > 0
            )
            box.screenshot(
                path=str(_shot_name(rel, f"__explorer{e}_slider{s}_max"))
            )
            # Back to the start by mouse: click the track's left end.
            bb = slider.bounding_box()
            page.mouse.click(bb["x"] + 2, bb["y"] + bb["height"] / 2)
            assert int(slider.input_value()) == 0
            page.keyboard.press("Home")
            for _ in range(start):
                page.keyboard.press("ArrowRight")
        assert page.problems == [], "\n".join(page.problems)


def test_search_finds_a_word_from_chapter_3(server, page):
    page.goto(f"{server}/search.html?q={SEARCH_WORD}", wait_until="load")
    hits = page.locator("#search-results ul.search li a")
    hits.first.wait_for(timeout=20_000)
    hrefs = [hits.nth(i).get_attribute("href") for i in range(hits.count())]
    page.screenshot(path=str(_shot_name("search")), full_page=True)
    assert any(
        SEARCH_PAGE in h for h in hrefs
    ), f"{SEARCH_WORD!r} not found in {SEARCH_PAGE}: {hrefs}"
    assert page.problems == [], "\n".join(page.problems)


def _notebook_pages() -> list[str]:
    return [
        p
        for p in site_pages()
        if (SITE / "_sources" / p).with_suffix(".ipynb").is_file()
    ]


# The pages built from a notebook, or one skipped placeholder before the
# site has any.
NOTEBOOK_PAGES = _notebook_pages() or [
    pytest.param(
        "none",
        marks=pytest.mark.skip(
            reason="no page of the site is built from a notebook yet"
        ),
    )
]


@pytest.mark.parametrize("rel", NOTEBOOK_PAGES)
def test_notebook_download_button(server, page, rel):
    page.goto(f"{server}/{rel}", wait_until="load")
    link = page.locator(
        f'a[href$="_sources/{Path(rel).with_suffix(".ipynb").as_posix()}"]'
    )
    assert link.count() >= 1, f"{rel}: no download link to its notebook"
    resp = page.request.get(
        f"{server}/_sources/{Path(rel).with_suffix('.ipynb').as_posix()}"
    )
    assert resp.status == 200
    nb = resp.json()
    assert (
        nb["nbformat"] == 4 and nb["cells"]
    ), f"{rel}: the downloaded notebook is empty"


@pytest.mark.parametrize("rel", NOTEBOOK_PAGES)
def test_code_boxes_hold_79_characters_without_scrolling(server, page, rel):
    """At a 1280-pixel window every code and text output box holds the 79
    characters the chapters are written to (tests/test_chapter_width.py)
    without a scroll bar.
    """
    page.goto(f"{server}/{rel}", wait_until="load")
    found = page.evaluate(
        """() => {
        const boxes = Array.from(document.querySelectorAll(
            'div.cell_input pre, div.cell_output pre'));
        if (!boxes.length) return {boxes: 0};
        const pre = boxes[0], cs = getComputedStyle(pre);
        const span = document.createElement('span');
        span.textContent = 'x'.repeat(100);
        pre.appendChild(span);
        const charWidth = span.getBoundingClientRect().width / 100;
        span.remove();
        const inner = pre.clientWidth - parseFloat(cs.paddingLeft)
            - parseFloat(cs.paddingRight);
        const scrolling = boxes.filter(b => b.scrollWidth > b.clientWidth + 1)
            .map(b => b.textContent.split('\\n')"""
        """.sort((a, b) => b.length - a.length)[0]);
        return {boxes: boxes.length, chars: inner / charWidth, scrolling};
    }"""
    )
    if found["boxes"] == 0:
        pytest.skip(f"{rel} has no code box")
    assert (
        found["chars"] >= 79
    ), f"{rel}: a code box holds {found['chars']:.1f} characters"
    assert not found[
        "scrolling"
    ], f"{rel}: boxes scroll sideways: {found['scrolling'][:3]}"


@pytest.mark.parametrize("rel", site_pages() or ["index.html"])
def test_nothing_scrolls_sideways(server, page, rel):
    """At a 1280-pixel window no table, code block or display formula of a page
    is wider than the text column: a reader never scrolls one sideways."""
    if 'http-equiv="Refresh"' in (SITE / rel).read_text()[:500]:
        pytest.skip(f"{rel} only redirects to another page")
    page.goto(f"{server}/{rel}", wait_until="load")
    _settle(page)
    wide = page.evaluate("""() => Array.from(document.querySelectorAll(
            'main table, main pre, main div.math, '
            + 'main .pst-scrollable-table-container'))
        .filter(b => b.scrollWidth > b.clientWidth + 1)
        .map(b => b.tagName + ': '
             + b.textContent.replace(/\\s+/g, ' ').trim().slice(0, 70))""")
    assert not wide, f"{rel}: scrolls sideways: {wide[:3]}"
