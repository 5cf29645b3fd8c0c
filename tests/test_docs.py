"""The documentation: its examples run, and the site builds with warnings as errors.

The pages' ``>>>`` examples are doctests, like the docstrings' (test_docstrings.py). The
Sphinx build runs once per suite, offline, into a temporary directory, and the checks below
read what it wrote: formulas set up for the local MathJax, pictures drawn, every public name
documented. When a Chromium is installed, it renders the maths page and MathJax must have
typeset every formula.
"""
import doctest
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import fastxent
from fastxent import dask as fx_dask

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES_WITH_EXAMPLES = sorted(p.name for p in DOCS.glob("*.rst")
                             if re.search(r"^>>> ", p.read_text(), re.M))


def test_the_pages_have_examples():
    assert {"getting_started.rst", "maths.rst", "from_other_libraries.rst"} <= set(
        PAGES_WITH_EXAMPLES)


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_page_examples(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False,
                              optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    env = dict(os.environ, FASTXENT_DOCS_OFFLINE="1", MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                          "-b", "html", "-d", str(out / ".doctrees"), str(DOCS), str(out)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


@pytest.mark.main_run_only
def test_site_builds_without_warnings(site):
    for page in ("index", "getting_started", "maths", "pictures", "from_other_libraries",
                 "api", "performance", "numerics", "building_docs"):
        assert (site / f"{page}.html").is_file(), page


@pytest.mark.main_run_only
def test_formulas_use_the_local_mathjax(site):
    script = site / "_static" / "mathjax" / "tex-svg.js"
    assert script.stat().st_size > 1_000_000
    html = (site / "maths.html").read_text()
    assert 'src="_static/mathjax/tex-svg.js"' in html
    assert "cdn." not in html and "jsdelivr" not in html
    assert html.count('class="math') > 30          # \( \) and \[ \] spans for MathJax


@pytest.mark.main_run_only
def test_pictures_are_drawn(site):
    html = (site / "pictures.html").read_text()
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert len(images) == 4, images
    for src in images:
        assert (site / src).stat().st_size > 10_000, src


@pytest.mark.main_run_only
def test_every_public_name_has_a_page(site):
    generated = site / "generated"
    for name in fastxent.__all__:
        assert (generated / f"fastxent.{name}.html").is_file(), name
    for name in fx_dask.__all__:
        assert (generated / f"fastxent.dask.{name}.html").is_file(), name
    for name in ("CrossEntropyClassifier", "log_loss"):
        assert (generated / f"fastxent.sklearn.{name}.html").is_file(), name
    page = (generated / "fastxent.cross_entropy.html").read_text()
    assert "Examples" in page and "Raises" in page and 'class="math' in page


def _chromium():
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium to render the page")
@pytest.mark.main_run_only
def test_a_browser_typesets_every_formula(site):
    # No network is needed: the page and MathJax are local files.
    run = subprocess.run([_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", "--virtual-time-budget=10000",
                          "--dump-dom", (site / "maths.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    dom = run.stdout
    typeset = dom.count("<mjx-container")
    assert typeset > 30, run.stderr[-2000:]
    assert "\\(" not in re.sub(r"<script.*?</script>", "", dom, flags=re.S)
