"""What a learner sees, checked in a real browser: JupyterLab runs a notebook, the course site renders.

Headless Chromium (Debian's ``chromium``) is driven by Playwright's Python package; Playwright's own
browser download is never used (``executable_path``). ``make test-browser`` installs both and runs
browser_tests/test_browser.py, which uses the functions here:

- ``jupyter_lab(root)``: a JupyterLab server on a free localhost port with a random token, in fast mode
  (``DDPM_COURSE_FAST=1``), stopped with its kernels on exit;
- ``run_notebook(page, lab, path)``: opens the notebook, runs *Run > Run All Cells* and waits for the
  last cell, then reports what rendered: executed cells, error outputs, figures (``<img>`` outputs
  outside widgets) and widgets (an ipywidgets slider);
- ``serve(folder)`` and ``check_site(page, url, ...)``: the built site over http on localhost.

A report's ``problems()`` lists every missing piece in words; the tests assert it is empty, and prove on
damaged copies (widget cell removed, figure output switched off, course map cut from the site) that the
same check then names what is missing.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("DDPM_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The machine may be slow and shared: every wait is generous, and can be raised from the environment.
SLOW = float(os.environ.get("DDPM_COURSE_BROWSER_SLOWDOWN", "1"))
START_TIMEOUT_S = 300 * SLOW     # JupyterLab answering, the page and the kernel ready
RUN_TIMEOUT_S = 1200 * SLOW      # Run All, fast mode
RENDER_TIMEOUT_S = 120 * SLOW    # outputs and widget views appearing after the last cell ran
STABLE_S = 30 * SLOW             # ... or the page unchanged for this long


# --- JupyterLab -------------------------------------------------------------------------------------------
@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.is_file() else "(no log)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str, token: str) -> bool:
    request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def jupyter_lab(root: Path, work: Path):
    """A JupyterLab server serving ``root``; its settings, runtime files and log live in ``work``."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "DDPM_COURSE_FAST": "1", "HF_HUB_OFFLINE": "1",
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces")}
    # The kernel must keep IPython's inline backend: with MPLBACKEND=Agg no figure would be displayed.
    env.pop("MPLBACKEND", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    _write_settings(work / "settings")
    log = work / "jupyterlab.log"
    with log.open("w") as out:
        # A session of its own: on exit the whole group (server and kernels) is stopped, nothing else.
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        lab = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(lab.url, token):
                if proc.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within {START_TIMEOUT_S:.0f} s:\n"
                                       f"{lab.log_tail()}")
                time.sleep(1)
            yield lab
        finally:
            _stop(proc)


# JupyterLab user settings for the test server: every cell stays in the page (no windowing, so all prompts
# and outputs can be read), no autosave (the notebooks are temporary copies anyway), no news pop-up.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _write_settings(folder: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = folder / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# --- running a notebook -----------------------------------------------------------------------------------
@dataclass
class NotebookReport:
    notebook: str
    code_cells: int                    # in the file
    executed: int = 0                  # code cells with an execution count after Run All
    errors: list[str] = field(default_factory=list)   # unexpected error outputs (cell number: text)
    figures: int = 0                   # <img> outputs outside widgets, loaded
    widgets: int = 0                   # ipywidgets sliders rendered in outputs
    widget_figures: int = 0            # <img> inside widget outputs (an explorer's figure)
    seconds: float = 0.0               # Run All until the last cell finished
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if self.executed < self.code_cells:
            found.append(f"only {self.executed} of {self.code_cells} code cells ran")
        found += [f"error output in {e}" for e in self.errors]
        if self.figures == 0:
            found.append("no figure: no <img> output outside a widget")
        if self.widgets == 0:
            found.append("no widget: no rendered ipywidgets slider (.jupyter-widgets .widget-slider)")
        return found

    def summary(self) -> str:
        return (f"{self.notebook}: {self.executed}/{self.code_cells} code cells ran in {self.seconds:.0f} s, "
                f"{self.figures} figure(s), {self.widgets} widget slider(s), {self.widget_figures} figure(s) "
                f"inside widgets, {len(self.errors)} error output(s)")


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front
_PROMPTS_JS = """panel => Array.from(document.querySelectorAll(panel + ' .jp-CodeCell'))
    .map(c => (c.querySelector('.jp-InputArea-prompt') || {textContent: ''}).textContent.trim())"""

_OUTPUTS_JS = """selector => {
  const panel = document.querySelector(selector);
  const cells = Array.from(panel.querySelectorAll('.jp-CodeCell'));
  const errors = [];
  cells.forEach((cell, i) => {
    cell.querySelectorAll('.jp-OutputArea-output').forEach(out => {
      const text = out.innerText || '';
      if (text.includes('Traceback (most recent call last)')) errors.push([i, text.slice(-600)]);
    });
  });
  const imgs = Array.from(panel.querySelectorAll('.jp-OutputArea-output img'));
  // An image output is an <img> with its data in src (a data: or blob: URL); an off-screen one may not
  // be decoded yet, so its size proves nothing.
  const loaded = img => (img.getAttribute('src') || '').length > 50;
  return {
    errors,
    figures: imgs.filter(img => !img.closest('.jupyter-widgets') && loaded(img)).length,
    widget_figures: imgs.filter(img => img.closest('.jupyter-widgets') && loaded(img)).length,
    widgets: panel.querySelectorAll('.jp-OutputArea-output .jupyter-widgets.widget-slider, '
                                    + '.jp-OutputArea-output .jupyter-widgets .widget-slider').length,
  };
}"""


def open_notebook(page, lab: Lab, rel: str) -> None:
    # A workspace of its own, reset: no tab restored from an earlier page, so Run All can only mean this one.
    workspace = f"check-{secrets.token_hex(4)}"
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{rel}?reset&token={lab.token}",
              timeout=START_TIMEOUT_S * 1000)
    page.wait_for_selector(f"{_PANEL} .jp-CodeCell", timeout=START_TIMEOUT_S * 1000)
    tabs = page.eval_on_selector_all(".jp-NotebookPanel", "els => els.length")
    if tabs != 1:
        raise RuntimeError(f"expected one notebook tab for {rel}, JupyterLab shows {tabs}")
    # The kernel is ready when the status bar says "Python 3 (ipykernel) | Idle".
    deadline, status = time.monotonic() + START_TIMEOUT_S, ""
    while time.monotonic() < deadline:
        dialog = page.query_selector(".jp-Dialog .jp-mod-accept")
        if dialog:  # "Select Kernel": accept the notebook's own (python3)
            dialog.click()
        status = page.inner_text("#jp-main-statusbar") if page.query_selector("#jp-main-statusbar") else ""
        if "| Idle" in status:
            return
        time.sleep(1)
    raise TimeoutError(f"the kernel of {rel} was not idle within {START_TIMEOUT_S:.0f} s (status bar: "
                       f"{status!r})")


def run_all(page) -> None:
    page.click(".lm-MenuBar-item:has-text('Run')")
    # JupyterLab 4 names the menu's command runmenu:run-all; the notebook's own is notebook:run-all-cells.
    page.click(".lm-Menu-item[data-command='runmenu:run-all'], "
               ".lm-Menu-item[data-command='notebook:run-all-cells']")


def run_notebook(page, lab: Lab, rel: str) -> NotebookReport:
    """Open ``rel`` (relative to the lab's root), Run All, wait, and report what rendered."""
    cells = code_cells(lab.root / rel)
    expected_errors = {i for i, c in enumerate(cells) if "raises-exception" in c["metadata"].get("tags", [])}
    report = NotebookReport(notebook=rel, code_cells=len(cells))
    open_notebook(page, lab, rel)
    start = time.monotonic()
    run_all(page)
    deadline, prompts, started = start + RUN_TIMEOUT_S, [], False
    while time.monotonic() < deadline:
        prompts = page.evaluate(_PROMPTS_JS, _PANEL)
        started = started or any(p.strip("[]:").strip().isdigit() or "*" in p for p in prompts)
        if started and not any("*" in p for p in prompts):
            break  # nothing queued or running: done, or stopped at an error
        if not started and time.monotonic() - start > START_TIMEOUT_S:
            raise TimeoutError(f"{rel}: Run All started no cell within {START_TIMEOUT_S:.0f} s")
        time.sleep(2)
    else:
        raise TimeoutError(f"{rel}: Run All had not finished after {RUN_TIMEOUT_S:.0f} s; prompts {prompts}")
    report.seconds = time.monotonic() - start
    report.executed = sum(p.strip("[]:").strip().isdigit() for p in prompts)
    # Images and widget views render asynchronously after the kernel is done: wait until both are there,
    # or nothing has changed for STABLE_S (a notebook without them), or RENDER_TIMEOUT_S has passed.
    deadline, last, since = time.monotonic() + RENDER_TIMEOUT_S, None, time.monotonic()
    while True:
        seen = page.evaluate(_OUTPUTS_JS, _PANEL)
        counts = (seen["figures"], seen["widgets"], seen["widget_figures"], len(seen["errors"]))
        if counts != last:
            last, since = counts, time.monotonic()
        now = time.monotonic()
        if (seen["figures"] and seen["widgets"]) or now - since > STABLE_S or now > deadline:
            break
        time.sleep(2)
    report.errors = [f"code cell {i}: {text.strip()}"
                     for i, text in seen["errors"] if i not in expected_errors]
    report.figures, report.widgets = seen["figures"], seen["widgets"]
    report.widget_figures = seen["widget_figures"]
    return report


def widget_figure_source(page) -> str | None:
    """The src of the first image inside a widget (changes when the explorer re-renders)."""
    return page.evaluate("""panel => {
        const img = document.querySelector(panel + ' .jupyter-widgets img');
        return img ? img.src : null; }""", _PANEL)


def move_first_slider(page, value: int) -> None:
    """Type a value into the first slider's readout (ipywidgets 8: an editable readout) and press Enter."""
    readout = page.locator(f"{_PANEL} .widget-slider .widget-readout").first
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


# --- the course site --------------------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output for failures
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """``python -m http.server`` for ``folder`` on a free localhost port, in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class SiteReport:
    page: str
    title: str = ""
    notebook_links: list[str] = field(default_factory=list)   # course-map links to rendered notebooks
    colab_links: int = 0
    missing: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return list(self.missing)


def check_site_index(page, base: str, stems: list[str]) -> SiteReport:
    """The home page shows the course map: per notebook a link to its page and two Colab badges."""
    report = SiteReport(page=f"{base}/index.html")
    page.goto(report.page, timeout=START_TIMEOUT_S * 1000)
    report.title = page.inner_text("article h1") if page.query_selector("article h1") else ""
    if "ddpm-course" not in report.title:
        report.missing.append(f"no 'ddpm-course' heading on the home page (found {report.title!r})")
    hrefs = page.eval_on_selector_all("article table a", "els => els.map(a => a.getAttribute('href'))")
    report.notebook_links = sorted({h for h in hrefs if h.startswith("notebooks/") and h.endswith(".html")})
    report.colab_links = sum("colab.research.google.com" in h for h in hrefs)
    for stem in stems:
        if f"notebooks/{stem}.html" not in report.notebook_links:
            report.missing.append(f"course map: no link to notebooks/{stem}.html")
        for folder in ("notebooks", "solutions"):
            if not any(h.endswith(f"/{folder}/{stem}.ipynb") and "colab" in h for h in hrefs):
                report.missing.append(f"course map: no Colab badge for {folder}/{stem}.ipynb")
    return report


_TYPESET = ", ".join(f".jp-RenderedMarkdown {s}" for s in (".MathJax_CHTML", ".MathJax", "mjx-container"))


def check_site_notebook(page, base: str, rel_html: str, n_code_cells: int) -> SiteReport:
    """A notebook page renders its code cells (mkdocs-jupyter's nbconvert HTML), its equations (MathJax
    typesets them: no raw $$ left, at least one typeset formula) and its outputs (at least one figure that
    loads, from the execution at site build time)."""
    report = SiteReport(page=f"{base}/{rel_html}")
    page.goto(report.page, timeout=START_TIMEOUT_S * 1000)
    page.wait_for_load_state("load")
    # mkdocs-jupyter wraps each cell in a second div of the same classes; the inner one carries the cell id.
    shown = page.eval_on_selector_all(".jp-CodeCell[id^='cell-id=']", "els => els.length")
    if shown != n_code_cells:
        report.missing.append(f"{rel_html}: {shown} code cells rendered, the notebook has {n_code_cells}")
    deadline, typeset = time.monotonic() + RENDER_TIMEOUT_S, 0
    while time.monotonic() < deadline:   # MathJax typesets after the page has loaded
        typeset = page.eval_on_selector_all(_TYPESET, "els => els.length")
        if typeset:
            break
        time.sleep(0.5)
    if not typeset:
        report.missing.append(f"{rel_html}: no rendered equation (MathJax typeset nothing)")
    raw = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedMarkdown')]"
                        ".filter(el => el.innerText.includes('$$')).length")
    if raw:
        report.missing.append(f"{rel_html}: {raw} markdown cell(s) still show raw $$ LaTeX")
    figures = page.eval_on_selector_all(".jp-OutputArea-output img",
                                        "els => els.filter(i => i.complete && i.naturalWidth > 0).length")
    if not figures:
        report.missing.append(f"{rel_html}: no figure in any cell output")
    return report


def check_site_images(page, base: str, rel_html: str) -> SiteReport:
    """Every <img> of a page that is served by the site itself loads."""
    report = SiteReport(page=f"{base}/{rel_html}")
    page.goto(report.page, timeout=START_TIMEOUT_S * 1000)
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "article img", "els => els.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    local = [(src, ok) for src, ok in images if not src.startswith(("http:", "https:"))]
    if not local:
        report.missing.append(f"{rel_html}: no image")
    report.missing += [f"{rel_html}: image {src} did not load" for src, ok in local if not ok]
    return report
