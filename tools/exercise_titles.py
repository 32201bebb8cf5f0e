"""A local Sphinx extension: sphinx-exercise's titles are translated too.

The exercise directive builds the title its author wrote ("Checked: ...") as
a subtitle node without a source, and Sphinx's internationalisation skips
any text without one, so the Chinese pages (issue 21, tools/i18n.py) kept
the English titles. The transforms below give the subtitle its directive's
source before the Locale transform translates it, hand the translation to
the copy sphinx-exercise keeps for the solutions' titles, and, since
sphinx-exercise's post-transform replaces the title before the gettext
builder reads the page, add each title to the page's catalogue themselves.
"""

from __future__ import annotations

from typing import Any


def _transforms() -> tuple[type, type]:
    """The two read-time transforms (made here, so that the module imports
    without Sphinx): one before the Locale transform (priority 20), one
    after it."""
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
    app.connect("doctree-resolved", _extract_titles)
    for transform in _transforms():
        app.add_transform(transform)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
