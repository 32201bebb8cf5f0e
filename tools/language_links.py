"""A local Sphinx extension: each page links to its counterpart in the other
language.

The book is built twice from the same sources (issue 21, tools/i18n.py): the
English site in ``_build/html/`` and the Chinese one (``language = zh_CN``,
messages from ``locale/zh_CN/LC_MESSAGES``) in ``_build/html/zh/``, so one
folder serves both. Every page of the English site gets a link "中文" to
``zh/<page>.html`` and every page of the Chinese site a link "English" back to
``../<page>.html``; both are relative, so the links work from any server root
and from file://.
"""

from __future__ import annotations

from typing import Any

#: the sub-folder of the English site that holds the Chinese one
ZH_DIR = "zh"


def _is_chinese(language: str | None) -> bool:
    return bool(language) and (
        language.lower().replace("-", "_").startswith("zh")
    )


def counterpart(pagename: str, language: str | None) -> tuple[str, str, str]:
    """The (relative href, link text, hreflang) of ``pagename``'s page in the
    other language."""
    root = "../" * pagename.count("/")
    if _is_chinese(language):
        return f"{root}../{pagename}.html", "English", "en"
    return f"{root}{ZH_DIR}/{pagename}.html", "中文", "zh-CN"


def _add_link(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    # search page, genindex: no counterpart link
    if doctree is None or "body" not in context:
        return
    href, text, lang = counterpart(pagename, app.config.language)
    label = "Read this page in Chinese" if lang != "en" else "阅读本页的英文版"
    context["body"] = (
        f'<div class="mlkit-language-link"><a href="{href}" hreflang="{lang}" '
        f'lang="{lang}" title="{label}">{text}</a></div>\n' + context["body"]
    )


def setup(app: Any) -> dict:
    app.connect("html-page-context", _add_link)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
