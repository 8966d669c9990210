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
    # MathJax copied into the built site, so formulas render without network.
    "sphinx-mathjax-offline",
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


# Optax's type aliases are unions; autodoc would print them expanded into a
# few hundred characters. Show them by name (autodoc_type_aliases only works
# for string annotations, which would hide the real types from Optax).
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position
from sphinx.util.typing import stringify_annotation  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

_TYPE_ALIASES = {
    "optax.ScalarOrSchedule": optax.ScalarOrSchedule,
    "optax.Schedule": optax.Schedule,
    "jax.Array": jax.Array,
}


def _name_type_aliases(app, what, name, obj, options, signature,
                       return_annotation):
  del app, what, name, obj, options
  for alias, value in _TYPE_ALIASES.items():  # the longer alias first
    for mode in ("smart", "fully-qualified-except-typing"):
      expanded = stringify_annotation(value, mode)
      if signature:
        signature = signature.replace(expanded, alias)
      if return_annotation:
        return_annotation = return_annotation.replace(expanded, alias)
  return signature, return_annotation


def setup(app):
  app.connect("autodoc-process-signature", _name_type_aliases)
