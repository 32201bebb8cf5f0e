"""A local Sphinx extension: repository links and launch buttons need a URL.

_config.yml asks for the repository and issue links and the Binder and Colab
launch buttons, and leaves ``repository: url:`` empty until the book has
an address. sphinx-book-theme needs that address to build any of them (Jupyter
Book refuses the ``html: use_*_button`` keys without it, and the launch buttons
fail on every notebook page), so while it is unset this turns them all off;
once it is set they appear. Jupyter Book fills in its own repository's address
when the ``url`` key is missing altogether; that counts as unset too.
"""

from __future__ import annotations

from typing import Any

REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button",
                      "use_edit_page_button", "use_source_button")
LAUNCH_SERVICES = ("binderhub_url", "jupyterhub_url", "colab_url",
                   "deepnote_url", "jupyterlite_url", "thebe")
JUPYTER_BOOK_DEFAULT = "https://github.com/executablebooks/jupyter-book"


def repository_url(options: dict) -> str:
    """The book's repository address from the theme options, '' when unset."""
    url = str(options.get("repository_url") or "").strip().rstrip("/")
    return "" if url == JUPYTER_BOOK_DEFAULT else url


def _without_address(app: Any, config: Any) -> None:
    options = config.html_theme_options
    if repository_url(options):
        return
    options["repository_url"] = ""
    for key in REPOSITORY_BUTTONS:
        options[key] = False
    launch = dict(options.get("launch_buttons") or {})
    for key in LAUNCH_SERVICES:
        launch.pop(key, None)
    options["launch_buttons"] = launch


def setup(app: Any) -> dict:
    # before sphinx-book-theme reads the options (at builder-inited)
    app.connect("config-inited", _without_address, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
