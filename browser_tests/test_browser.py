"""A learner's view in a real browser (headless Chromium): run by `make test-browser`, not by `make test`.

1. JupyterLab opens notebooks/01_forward_process.ipynb, *Run All Cells* runs it in fast mode, and the page
   shows its figures and the forward-process explorer (an ipywidgets slider), which re-renders its figure
   when the slider moves.
   Its Solutions link opens the solution notebook.
2. The same check fails, naming the missing piece, on a copy with the widget cell removed and on a copy
   whose figures are removed (image output switched off) — proof that test 1 can fail.
3. The built site (_site/, `make site`) shows the course map on its home page, over http and from disk,
   and renders every notebook page with its equations typeset (MathJax served with the site) and its
   figures (the notebooks run at build time); the checks fail on a copy of the site whose course map is
   cut out, and on a notebook page without MathJax and without its figures.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
from pathlib import Path

import lab_check as lc
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_forward_process.ipynb"
SOLUTION = "solutions/01_forward_process.ipynb"
SITE = Path(os.environ.get("DDPM_COURSE_SITE_DIR", ROOT / "_site"))


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(lc.CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {lc.CHROMIUM}: `make test-browser` installs Debian's chromium "
                    "(apt-get install chromium), or set DDPM_COURSE_CHROMIUM", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=lc.CHROMIUM, args=lc.CHROMIUM_ARGS,
                              timeout=lc.START_TIMEOUT_S * 1000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, request, tmp_path_factory):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(lc.START_TIMEOUT_S * 1000)
    yield pg
    # A screenshot of every page as the test left it: the first thing to look at when a test fails.
    shot = tmp_path_factory.getbasetemp() / f"{request.node.name}.png"
    try:
        pg.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
    except Exception as err:  # a crashed page must not hide the test's own failure
        print(f"no screenshot: {err}")
    finally:
        context.close()


def without_widget(nb: dict) -> dict:
    """The notebook with every cell that displays an explorer widget removed."""
    damaged = copy.deepcopy(nb)
    damaged["cells"] = [c for c in nb["cells"] if ".widget()" not in "".join(c["source"])]
    assert len(damaged["cells"]) == len(nb["cells"]) - 1, "expected exactly one widget cell in notebook 01"
    return damaged


SWITCH_OFF_IMAGES = """\
# browser test: this copy's figures are removed - no output of any cell is an image
for _mime in ("image/png", "image/jpeg", "image/svg+xml"):
    get_ipython().display_formatter.formatters[_mime].enabled = False"""


def without_figures(nb: dict) -> dict:
    """The notebook with image output switched off in a first code cell: no cell shows a figure."""
    damaged = copy.deepcopy(nb)
    cell = {"cell_type": "code", "execution_count": None, "id": "no-images", "metadata": {}, "outputs": [],
            "source": SWITCH_OFF_IMAGES.splitlines(keepends=True)}
    damaged["cells"].insert(0, cell)
    return damaged


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab (fast mode) on a scratch copy of the notebook and two damaged copies; the repository's own
    notebooks are never opened, so nothing the browser does can change them."""
    root = tmp_path_factory.mktemp("lab-root")
    work = tmp_path_factory.mktemp("lab-work")
    (root / "notebooks").mkdir()
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("hooks"))
    nb = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))
    (root / NOTEBOOK).write_text(json.dumps(nb), encoding="utf-8")
    (root / "solutions").mkdir()                                   # the target of the Solutions link
    shutil.copy(ROOT / SOLUTION, root / SOLUTION)
    for name, damage in (("no_widget", without_widget), ("no_figures", without_figures)):
        (root / NOTEBOOK.replace(".ipynb", f"__{name}.ipynb")).write_text(json.dumps(damage(nb)))
    with lc.jupyter_lab(root, work) as server:
        yield server


def explain(report: lc.NotebookReport, lab: lc.Lab) -> str:
    return "\n".join([report.summary(), *[f"  - {p}" for p in report.problems()],
                      "JupyterLab log (end):", lab.log_tail(1500)])


# --- 1 and 2: the notebook in JupyterLab ------------------------------------------------------------------
def test_notebook_01_runs_with_figures_and_a_live_widget(page, lab):
    report = lc.run_notebook(page, lab, NOTEBOOK)
    print(report.summary())
    assert report.problems() == [], explain(report, lab)
    assert report.widget_figures >= 1, "the explorer shows no figure:\n" + explain(report, lab)

    before = lc.widget_figure_source(page)
    lc.move_first_slider(page, 700)
    deadline = time.monotonic() + lc.RENDER_TIMEOUT_S
    while lc.widget_figure_source(page) == before and time.monotonic() < deadline:
        time.sleep(1)
    after = lc.widget_figure_source(page)
    assert after != before, (f"the explorer's figure did not change within {lc.RENDER_TIMEOUT_S:.0f} s "
                             "after its slider moved to 700")


def test_the_check_fails_when_the_widget_is_removed(page, lab):
    report = lc.run_notebook(page, lab, NOTEBOOK.replace(".ipynb", "__no_widget.ipynb"))
    print(report.summary())
    assert report.executed == report.code_cells and not report.errors, explain(report, lab)
    assert report.figures > 0, explain(report, lab)
    assert [p for p in report.problems() if p.startswith("no widget")] == report.problems() != [], \
        explain(report, lab)


def test_the_check_fails_when_the_figures_are_removed(page, lab):
    report = lc.run_notebook(page, lab, NOTEBOOK.replace(".ipynb", "__no_figures.ipynb"))
    print(report.summary())
    assert report.executed == report.code_cells and not report.errors, explain(report, lab)
    assert report.widgets > 0, explain(report, lab)
    assert [p for p in report.problems() if p.startswith("no figure")] == report.problems() != [], \
        explain(report, lab)


def test_the_solutions_link_opens_the_solution_notebook(page, lab):
    """The student notebook's header links to ../solutions/…; served from the course root (make lab), a
    click opens the solution notebook in JupyterLab, whose header says it is the solution version."""
    lc.open_notebook(page, lab, NOTEBOOK)
    # JupyterLab rewrites a relative link's href (to its files URL) and opens it in the lab on a click.
    link = page.locator(f"{lc._PANEL} .jp-RenderedMarkdown a", has_text=SOLUTION).first
    link.wait_for(timeout=lc.START_TIMEOUT_S * 1000)
    link.click()
    page.wait_for_selector(".jp-NotebookPanel .jp-RenderedMarkdown:has-text('Solution version')",
                           timeout=lc.START_TIMEOUT_S * 1000)
    assert page.eval_on_selector_all(".jp-NotebookPanel", "els => els.length") == 2     # a second tab


# --- 3: the course site -----------------------------------------------------------------------------------
def stems() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `make site` first (`make test-browser` does)",
                    pytrace=False)
    return SITE


def test_site_home_page_shows_the_course_map(page, site):
    with lc.serve(site) as base:
        report = lc.check_site_index(page, base, stems())
        assert report.problems() == [], "\n".join(report.problems())
        assert report.colab_links >= 2 * len(stems())
        n_code = len(lc.code_cells(ROOT / NOTEBOOK))
        notebook_page = lc.check_site_notebook(page, base, NOTEBOOK.replace(".ipynb", ".html"), n_code)
        assert notebook_page.problems() == [], "\n".join(notebook_page.problems())
        if (site / "figures.html").is_file():
            gallery = lc.check_site_images(page, base, "figures.html")
            assert gallery.problems() == [], "\n".join(gallery.problems())
    # A workshop room without network: the same page straight from disk.
    offline = lc.check_site_index(page, site.resolve().as_uri(), stems())
    assert offline.problems() == [], "\n".join(offline.problems())


def test_every_site_notebook_page_shows_equations_and_figures(page, site):
    with lc.serve(site) as base:
        problems = []
        for folder in ("notebooks", "solutions"):
            for stem in stems():
                n_code = len(lc.code_cells(ROOT / folder / f"{stem}.ipynb"))
                problems += lc.check_site_notebook(page, base, f"{folder}/{stem}.html", n_code).problems()
    assert problems == [], "\n".join(problems)


def test_the_site_notebook_check_fails_without_mathjax_or_outputs(page, site, tmp_path):
    damaged = tmp_path / "site"
    shutil.copytree(site, damaged)
    html_path = damaged / NOTEBOOK.replace(".ipynb", ".html")
    html = html_path.read_text(encoding="utf-8")
    html, n_js = re.subn(r'<script[^>]*src="[^"]*MathJax\.js[^"]*"[^>]*>\s*</script>', "", html)
    assert n_js == 1, "the notebook page does not load MathJax once"
    html, n_img = re.subn(r"<img [^>]*src=\"data:image/png;base64,[^\"]*\"[^>]*>", "", html)
    assert n_img >= 1, "the notebook page has no embedded figure to cut"
    html_path.write_text(html, encoding="utf-8")
    n_code = len(lc.code_cells(ROOT / NOTEBOOK))
    with lc.serve(damaged) as base:
        problems = lc.check_site_notebook(page, base, NOTEBOOK.replace(".ipynb", ".html"), n_code).problems()
    assert any("no rendered equation" in p for p in problems), problems
    assert any("no figure in any cell output" in p for p in problems), problems


def test_the_site_check_fails_without_the_course_map(page, site, tmp_path):
    damaged = tmp_path / "site"
    shutil.copytree(site, damaged)
    index = damaged / "index.html"
    html, n = re.subn(r"<table>.*?</table>", "", index.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert n >= 1, "the home page has no <table> to cut"
    index.write_text(html, encoding="utf-8")
    with lc.serve(damaged) as base:
        problems = lc.check_site_index(page, base, stems()).problems()
    for stem in stems():
        assert f"course map: no link to notebooks/{stem}.html" in problems
        assert f"course map: no Colab badge for solutions/{stem}.ipynb" in problems
