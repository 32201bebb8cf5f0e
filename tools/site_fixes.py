"""A local Sphinx extension with fixes for the built site (listed in
_config.yml).

sphinx-thebe registers its inline configuration script once per read of the
sources; when Jupyter Book reads them twice the page carries two
``const THEBE_JS_URL = ...`` scripts and the browser reports
"Identifier 'THEBE_JS_URL' has already been declared" on every page. This
drops repeated identical script entries from each page's context.
"""

from __future__ import annotations

from typing import Any


def _dedupe_scripts(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for js in scripts:
        # the two copies differ only in filename None vs "" (inline scripts
        # both)
        key = (
            str(getattr(js, "filename", js) or ""),
            tuple(
                sorted(
                    (k, str(v))
                    for k, v in getattr(js, "attributes", {}).items()
                )
            ),
        )
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


def setup(app: Any) -> dict:
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
