"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html``.

The build needs nothing but PyPI (``pip install ".[docs]"``): MathJax comes from the
``django-static-mathjax`` wheel and is copied next to the pages, so formulas typeset without
a CDN; the pictures are drawn at build time by ``docs/plots/*.py`` calling fastxent.
"""
import importlib.util
import os
import shutil
import socket
from pathlib import Path

import fastxent

project = "fastxent"
author = "the fastxent developers"
copyright = "2026, the fastxent developers"
release = version = fastxent.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "generated/*.rst~"]
templates_path = ["_templates"]

# --- API pages -------------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"          # the numpydoc Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
# Every documented callable: all parameters described and none unknown, a Returns section
# where something is returned, and an example (the -W build fails otherwise).
numpydoc_validation_checks = {"PR01", "PR02", "RT01", "EX01"}
# The estimator's methods follow scikit-learn's conventions; the class's example runs them.
numpydoc_validation_exclude = {r"\.__init__$", r"\.get_metadata_routing$",
                               r"\.CrossEntropyClassifier\.\w+$"}

# --- maths: a local MathJax 3 (SVG output: one self-contained script, no font files) ----
MATHJAX_SCRIPT = "mathjax/tex-svg.js"
mathjax_path = MATHJAX_SCRIPT
myst_enable_extensions = ["dollarmath"]
# Markdown links to a page's own headings ([text](#a-heading)); myst-parser 4 needs it said.
myst_heading_anchors = 3


def _mathjax_source() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the docs need MathJax from PyPI: pip install '.[docs]' "
                           "(django-static-mathjax)")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "static" / "mathjax" / "es5" / "tex-svg.js"


def _copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / MATHJAX_SCRIPT
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_mathjax_source(), target)


# --- pictures: drawn from fastxent at build time -----------------------------------------
plot_basedir = str(Path(__file__).parent / "plots")
plot_formats = [("png", 110)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = False
plot_rcparams = {"figure.autolayout": True, "font.size": 10}

# --- links to other projects' docs, only when their inventories can be reached ----------
def _online() -> bool:
    setting = os.environ.get("FASTXENT_DOCS_OFFLINE")
    if setting is not None:
        return setting == "0"
    try:
        socket.create_connection(("numpy.org", 443), timeout=2).close()
        return True
    except OSError:
        return False


intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "dask": ("https://docs.dask.org/en/stable", None),
} if _online() else {}

# --- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastxent {release}"
html_static_path = ["_static"]
html_css_files = ["fastxent.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": []}        # flat site: the top bar is the navigation
html_show_sourcelink = False


def setup(app):
    app.connect("build-finished", _copy_mathjax)
