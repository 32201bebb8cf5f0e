"""A local Sphinx extension: each page links to its counterpart in the other language.

The book is built twice from the same sources (issue 21, tools/i18n.py): the English site
in ``_build/html/`` and the Chinese one (``language = zh_CN``, messages from
``locale/zh_CN/LC_MESSAGES``) in ``_build/html/zh/``, so one folder serves both. Every page
of the English site gets a link "中文" to ``zh/<page>.html`` and every page of the Chinese
site a link "English" back to ``../<page>.html``; both are relative, so the links work from
any server root and from file://.

It also makes sphinx-exercise's titles ("Checked: ...") translatable: the
exercise directive builds them without a source, which Sphinx's gettext
skips (see _exercise_subtitles_translatable).
"""

from __future__ import annotations

from typing import Any

#: the sub-folder of the English site that holds the Chinese one
ZH_DIR = "zh"


def _is_chinese(language: str | None) -> bool:
    return bool(language) and language.lower().replace("-", "_").startswith("zh")


def counterpart(pagename: str, language: str | None) -> tuple[str, str, str]:
    """The (relative href, link text, hreflang) of ``pagename``'s page in the other language."""
    root = "../" * pagename.count("/")
    if _is_chinese(language):
        return f"{root}../{pagename}.html", "English", "en"
    return f"{root}{ZH_DIR}/{pagename}.html", "中文", "zh-CN"


def _add_link(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if doctree is None or "body" not in context:  # search page, genindex: no counterpart link
        return
    href, text, lang = counterpart(pagename, app.config.language)
    label = "Read this page in Chinese" if lang != "en" else "阅读本页的英文版"
    context["body"] = (
        f'<div class="mlkit-language-link"><a href="{href}" hreflang="{lang}" '
        f'lang="{lang}" title="{label}">{text}</a></div>\n' + context["body"])


def _exercise_subtitles_translatable() -> type:
    """A transform that lets Sphinx's gettext translate sphinx-exercise's titles.

    The exercise directive builds its subtitle (the title the author wrote,
    "Checked: ...") without a source, and Sphinx's i18n skips any text node
    without one. Giving the subtitle the directive's source, line and text
    before the Locale transform (priority 20) makes it one message of the
    page's catalogue, translated like any paragraph.
    """
    from sphinx.transforms import SphinxTransform

    class ExerciseSubtitles(SphinxTransform):
        default_priority = 15

        def apply(self, **kwargs: Any) -> None:
            try:
                from sphinx_exercise.nodes import exercise_subtitle
            except ImportError:
                return
            for node in self.document.findall(exercise_subtitle):
                parent = node.parent
                while parent is not None and not parent.source:
                    parent = parent.parent
                if parent is None or node.source:
                    continue
                node.source, node.line = parent.source, parent.line
                node.rawsource = node.astext()
                # sphinx-exercise's post-transform later replaces the title,
                # so the exercise node keeps the message for _extract_titles
                holder = node.parent.parent  # the exercise node itself
                if holder is not None:
                    holder[_TITLE_KEY] = [node.rawsource, parent.source,
                                          parent.line]

    class TranslatedSubtitlesInRegistry(SphinxTransform):
        """After the Locale transform: sphinx-exercise's registry keeps a
        copy of each exercise made before translation, from which it titles
        the solutions; give that copy the translated subtitle."""

        default_priority = 25

        def apply(self, **kwargs: Any) -> None:
            try:
                from sphinx_exercise.nodes import exercise_subtitle
            except ImportError:
                return
            registry = getattr(self.env, "sphinx_exercise_registry", {})
            for node in self.document.findall(exercise_subtitle):
                exercise = node.parent.parent
                if exercise is None:
                    continue
                entry = registry.get(exercise.get("label") or "")
                if not entry:
                    continue
                for copy in entry["node"].findall(exercise_subtitle):
                    copy.children = []
                    copy.extend(child.deepcopy() for child in node.children)

    return ExerciseSubtitles, TranslatedSubtitlesInRegistry


_TITLE_KEY = "mlkit_title_message"


def _extract_titles(app: Any, doctree: Any, docname: str) -> None:
    """For the gettext builder: add the exercise titles kept by the
    transform above to the page's catalogue (the resolved doctree the
    builder reads no longer has the subtitle nodes)."""
    if app.builder.name != "gettext":
        return
    from docutils import nodes
    from sphinx.builders.gettext import MsgOrigin
    from sphinx.util.i18n import docname_to_domain

    catalog = app.builder.catalogs[
        docname_to_domain(docname, app.config.gettext_compact)]
    for node in doctree.findall(nodes.Element):
        kept = node.get(_TITLE_KEY)
        if kept:
            catalog.add(kept[0], MsgOrigin(kept[1], kept[2] or -1))


def setup(app: Any) -> dict:
    app.connect("html-page-context", _add_link)
    app.connect("doctree-resolved", _extract_titles)
    for transform in _exercise_subtitles_translatable():
        app.add_transform(transform)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
