"""Sphinx configuration: MyST markdown pages, API from the docstrings.

Built offline (no intersphinx, no remote inventories):
    python -m sphinx -W -b html docs docs/_build/html
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

import nagd_optax  # pylint: disable=g-import-not-at-top,wrong-import-position

project = "nagd_optax"
author = "nagd_optax developers"
copyright = "2026, nagd_optax developers"  # pylint: disable=redefined-builtin
release = nagd_optax.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "scripts"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "sphinx_book_theme"
html_title = "nagd_optax"
html_static_path = ["_static"]
html_theme_options = {"show_toc_level": 2}
