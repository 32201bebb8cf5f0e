"""The Chinese edition of the book (issue 21): one set of notebooks, two
languages.

Sphinx's own internationalisation, driven through Jupyter Book's configuration:

``python tools/i18n.py gettext``
    extracts every message of the book (the notebooks' Markdown cells included)
    with Sphinx's gettext builder into ``_build/gettext/**/*.pot`` (one
    template per page: ``gettext_compact: false`` in _config.yml), then updates
    the catalogues ``locale/zh_CN/LC_MESSAGES/**/*.po`` from them, as
    ``sphinx-intl update`` does (Babel's catalogue update, which sphinx-intl
    wraps): a new message arrives untranslated, a message whose English changed
    arrives *fuzzy* with its old translation, so later edits of a chapter are
    marked for re-translation. Messages no longer in the book are dropped.
``python tools/i18n.py html``
    builds the Chinese site (``language = zh_CN``) into ``_build/html/zh/``,
    beside the English site in ``_build/html/``: one folder serves both, and
    tools/language_links.py links each page to its counterpart. Sphinx compiles
    the .po files into .mo files itself.
``python tools/i18n.py status``
    prints, per catalogue, how many messages are translated, untranslated and
    fuzzy.

Each build keeps its own doctree folder: the gettext, English and Chinese
builds cannot share one (Sphinx refuses an environment pickled by another
builder or language).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
POT_DIR = BUILD / "gettext"
LOCALE = ROOT / "locale"
LANGUAGE = "zh_CN"
PO_DIR = LOCALE / LANGUAGE / "LC_MESSAGES"
ZH_HTML = BUILD / "html" / "zh"
#: the Chinese site's title (the English one is _config.yml's title)
ZH_TITLE = "打开黑盒：元学习及其解释"


def _build(
    builder: str,
    outdir: Path,
    doctrees: Path,
    overrides: dict,
    strict: bool = False,
) -> int:
    from jupyter_book.sphinx import build_sphinx

    overrides = {"latex_individualpages": False, **overrides}
    result = build_sphinx(
        str(ROOT),
        str(outdir),
        use_external_toc=True,
        noconfig=True,
        path_config=str(ROOT / "_config.yml"),
        confoverrides=overrides,
        doctreedir=str(doctrees),
        builder=builder,
        warningiserror=strict,
        keep_going=strict,
        quiet=True,
    )
    if isinstance(result, Exception):
        raise result
    return int(result or 0)


def extract() -> int:
    """Write the message templates (.pot) of every page into _build/gettext."""
    return _build("gettext", POT_DIR, BUILD / ".doctrees-gettext", {})


def update_catalogues(
    pot_dir: Path = POT_DIR, po_dir: Path = PO_DIR
) -> list[str]:
    """Create or update one .po per .pot (as ``sphinx-intl update``); returns
    what changed."""
    from babel.messages.pofile import read_po, write_po

    changed = []
    for pot in sorted(pot_dir.rglob("*.pot")):
        rel = pot.relative_to(pot_dir).with_suffix(".po")
        po = po_dir / rel
        with pot.open("rb") as f:
            template = read_po(f)
        if po.is_file():
            with po.open("rb") as f:
                catalog = read_po(f, locale=LANGUAGE)
            before = {(m.id, m.string, m.fuzzy) for m in catalog if m.id}
            catalog.update(template, update_header_comment=False)
            after = {(m.id, m.string, m.fuzzy) for m in catalog if m.id}
            if before == after and not catalog.obsolete:
                continue
        else:
            catalog = template
            catalog.locale = LANGUAGE
            catalog.fuzzy = False
        po.parent.mkdir(parents=True, exist_ok=True)
        with po.open("wb") as f:
            write_po(
                f,
                catalog,
                width=79,
                ignore_obsolete=True,
                include_previous=True,
            )
        changed.append(str(rel))
    return changed


def status(po_dir: Path = PO_DIR) -> list[tuple[str, int, int, int]]:
    """(catalogue, translated, untranslated, fuzzy) for every .po file."""
    from babel.messages.pofile import read_po

    rows = []
    for po in sorted(po_dir.rglob("*.po")):
        with po.open("rb") as f:
            catalog = read_po(f)
        msgs = [m for m in catalog if m.id]
        fuzzy = sum(1 for m in msgs if m.fuzzy)
        empty = sum(1 for m in msgs if not m.string)
        rows.append(
            (
                str(po.relative_to(po_dir)),
                len(msgs) - fuzzy - empty,
                empty,
                fuzzy,
            )
        )
    return rows


GLOSSARY = ROOT / "chapters" / "glossary.md"
SEARCH_DICT = BUILD / "zh_search_words.txt"


def glossary_terms(path: Path = GLOSSARY) -> list[tuple[str, str, list[str]]]:
    """(English term, Chinese term, alternatives) of every
    ``English · 中文（alt）`` entry.

    An entry without a Chinese part (Omniglot) is left out.
    """
    import re

    terms = []
    in_glossary = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```{glossary}"):
            in_glossary = True
            continue
        if line.startswith("```"):
            in_glossary = False
            continue
        if (
            not in_glossary
            or not line
            or line[0].isspace()
            or " · " not in line
        ):
            continue
        english, chinese = line.split(" · ", 1)
        alternatives = re.findall(r"（([^）]*)）", chinese)
        main = re.sub(r"（[^）]*）", "", chinese).strip()
        terms.append((english.strip(), main, alternatives))
    return terms


def write_search_words(path: Path = SEARCH_DICT) -> Path:
    """A jieba user dictionary of the glossary's Chinese terms.

    Sphinx's Chinese search splits the text into words with jieba
    (``html_search_options = {"dict": ...}`` adds words to its dictionary);
    without it 元学习 would be indexed only as 学习, and a search for a book term
    would find nothing.
    """
    import re

    words = []
    for _, main, alternatives in glossary_terms():
        for term in [main, *alternatives]:
            for word in re.split(r"[、，/]", term):
                word = word.strip()
                if (
                    word
                    and " " not in word
                    and re.search(r"[\u4e00-\u9fff]", word)
                ):
                    words.append(word)
    path.parent.mkdir(parents=True, exist_ok=True)
    # jieba's format: word, frequency (high, so that the whole term wins over
    # its parts)
    path.write_text(
        "".join(f"{w} 100000\n" for w in dict.fromkeys(words)),
        encoding="utf-8",
    )
    return path


def build_html(strict: bool = False) -> int:
    """Build the Chinese site into _build/html/zh (language zh_CN)."""
    words = write_search_words()
    return _build(
        "html",
        ZH_HTML,
        BUILD / ".doctrees-zh",
        {
            "language": LANGUAGE,
            "html_search_options": {"dict": str(words)},
            "html_title": ZH_TITLE,
            # myst-nb's toggles of hidden cells have no Chinese translation of
            # their own
            "nb_code_prompt_show": "显示代码单元",
            "nb_code_prompt_hide": "隐藏代码单元",
            # sphinx-togglebutton's hint on folded solutions
            "togglebutton_hint": "点击显示",
            "togglebutton_hint_hide": "点击隐藏",
        },
        strict=strict,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=["gettext", "update", "html", "status"],
        help="gettext: extract and update the catalogues; update: only "
        "update them from _build/gettext; html: build the Chinese "
        "site; status: count translated messages per catalogue",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="html: fail on any Sphinx warning (as make build-strict)",
    )
    args = parser.parse_args(argv)
    if args.command in ("gettext", "update"):
        if args.command == "gettext":
            rc = extract()
            if rc:
                return rc
        for rel in update_catalogues():
            print(f"updated {PO_DIR.relative_to(ROOT) / rel}")
        return 0
    if args.command == "html":
        rc = build_html(strict=args.strict)
        print(f"Chinese site: {ZH_HTML.relative_to(ROOT)}/index.html")
        return rc
    total = [0, 0, 0]
    for name, done, empty, fuzzy in status():
        print(
            f"{name:45s} {done:5d} translated {empty:5d} untranslated "
            f"{fuzzy:5d} fuzzy"
        )
        total = [total[0] + done, total[1] + empty, total[2] + fuzzy]
    print(
        f"{'all':45s} {total[0]:5d} translated {total[1]:5d} untranslated "
        f"{total[2]:5d} fuzzy"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
