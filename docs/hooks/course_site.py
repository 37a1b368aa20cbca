"""MkDocs hook for the course website (mkdocs.yml names it; `make site` runs it).

The notebooks live outside docs/, in notebooks/ and solutions/: this hook executes them in fast mode (each
once per content: the executed copies are cached in build/site-notebooks/ under the hash of the notebook)
and adds the executed copies to the site before mkdocs-jupyter renders them, so the pages show figures and
tables; it writes the navigation from what is in the repository (so a new notebook or
results page needs no edit here), puts the README's course map (run times and Colab badges, from
ddpm_course.authoring) on the home page, adds a gallery of the committed figures in docs/figures/, and
copies MathJax (the jupyter-server-mathjax package) into the site for the notebooks' equations.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

from ddpm_course import authoring

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MAP_PLACEHOLDER = "<!-- course-map -->"
GALLERY = "figures.md"
GUIDES = {"instructor_guide.md": "Instructor guide", "authoring.md": "Writing notebooks"}


def notebook_title(path: Path) -> str:
    """The first '# ' heading of a generated notebook (the source's title line)."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.startswith("# "):
            return text.splitlines()[0][2:].strip()
    return path.stem


def notebooks(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))


def figures() -> list[Path]:
    return sorted(p for p in (DOCS / "figures").glob("*") if p.suffix.lower() in (".png", ".jpg", ".svg"))


def page_title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("_", " ")


def navigation() -> list:
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "index.md")
    nav: list = [{"Home": "index.md"}]
    for section, folder in (("Course (student notebooks)", authoring.STUDENT_DIR),
                            ("Solutions", authoring.SOURCE_DIR)):
        nav.append({section: [{notebook_title(p): f"{folder}/{p.name}"} for p in notebooks(folder)]})
    nav += [{title: name} for name, title in GUIDES.items() if name in pages]
    results = [name for name in pages if name.startswith("results")]
    if results:
        nav.append({"Results": [{page_title(DOCS / name): name} for name in results]})
    if figures():
        nav.append({"Figures": GALLERY})
    others = [name for name in pages if name not in GUIDES and name not in results]
    if others:
        nav.append({"Notes": [{page_title(DOCS / name): name} for name in others]})
    return nav


def gallery() -> str:
    lines = ["# Figures", "", "The figures committed in `docs/figures/`, made by the notebooks and "
             "benchmarks at their full sizes.", ""]
    for p in figures():
        lines += [f"## {p.stem}", "", f"![{p.stem}](figures/{p.name})", ""]
    return "\n".join(lines)


def on_config(config):
    config["nav"] = navigation()
    return config


EXECUTED = ROOT / "build" / "site-notebooks"  # executed copies: FOLDER/NAME.ipynb, and .cache/SHA.ipynb
CELL_TIMEOUT_S = 900                           # a cell that runs longer has hung: the notebook is run again
NOTEBOOK_TIMEOUT_S = 900                       # fast mode runs each notebook in about a minute; far longer
                                               # means nbclient waits on an idle kernel (seen on 01): retry
ATTEMPTS = 3
PARALLEL = max(1, min(2, os.cpu_count() or 1))


def _nbconvert(src: Path, out: Path, log) -> subprocess.Popen:
    """Execute ``src`` in fast mode with a fresh kernel in its own folder (as a learner would run it),
    writing the executed notebook to ``out``. Cells tagged raises-exception may fail; others may not."""
    env = {**os.environ, "DDPM_COURSE_FAST": "1", "HF_HUB_OFFLINE": "1"}
    if PARALLEL > 1:                             # one thread per kernel: more only spin on a shared core
        env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("MPLBACKEND", None)                  # the kernel's inline backend must draw the figures
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "notebook", str(src),
           "--output-dir", str(out.parent), "--output", out.name,
           f"--ExecutePreprocessor.timeout={CELL_TIMEOUT_S}", "--ExecutePreprocessor.kernel_name=python3"]
    return subprocess.Popen(cmd, cwd=src.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)     # its own process group: a hung run is stopped whole


def execute_notebooks(sources: list[Path]) -> dict[Path, Path]:
    """{source: executed copy}, running the ones not cached yet, PARALLEL at a time."""
    cache = EXECUTED / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    done, todo = {}, []
    for src in sources:
        cached = cache / f"{hashlib.sha256(src.read_bytes()).hexdigest()}.ipynb"
        done[src] = cached
        if not cached.is_file():
            todo.append((src, cached, 1))
    running: list = []
    while todo or running:
        while todo and len(running) < PARALLEL:
            src, cached, attempt = todo.pop(0)
            tmp, log = cached.with_name(f"tmp-{cached.name}"), cached.with_suffix(".log")
            print(f"course_site: executing {src.relative_to(ROOT)} (fast mode, attempt {attempt})",
                  file=sys.stderr)
            with open(log, "w") as f:
                running.append((src, cached, attempt, tmp, _nbconvert(src, tmp, f), time.monotonic()))
        time.sleep(0.5)
        for job in list(running):
            src, cached, attempt, tmp, proc, start = job
            if proc.poll() is None and time.monotonic() - start > NOTEBOOK_TIMEOUT_S:
                os.killpg(proc.pid, signal.SIGKILL)      # nbconvert and its kernel: a failed attempt
                proc.wait()
                print(f"course_site: {src.relative_to(ROOT)} still running after {NOTEBOOK_TIMEOUT_S} s: "
                      "stopped", file=sys.stderr)
            if proc.poll() is None:
                continue
            running.remove(job)
            err = cached.with_suffix(".log").read_text(errors="replace")
            if proc.returncode == 0 and tmp.is_file():
                os.replace(tmp, cached)
                print(f"course_site: {src.relative_to(ROOT)} ran in {time.monotonic() - start:.0f} s",
                      file=sys.stderr)
            elif attempt < ATTEMPTS:
                todo.append((src, cached, attempt + 1))
            else:
                raise RuntimeError(f"{src.relative_to(ROOT)} failed to execute for the site:\n{err[-3000:]}")
    return done


@event_priority(100)  # before mkdocs-jupyter, which turns every *.ipynb File into a page
def on_files(files, config):
    folders = (authoring.STUDENT_DIR, authoring.SOURCE_DIR)
    executed = execute_notebooks([p for folder in folders for p in notebooks(folder)])
    for folder in folders:
        for p in notebooks(folder):
            target = EXECUTED / folder / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(executed[p], target)
            files.append(File(f"{folder}/{p.name}", src_dir=str(EXECUTED), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    if figures():
        files.append(File.generated(config, GALLERY, content=gallery()))
    return files


# A docs page linking to a repository file outside docs/ (../benchmarks/..., ../data/README.md): on the
# site that link goes to the file on GitHub instead of nowhere.
OUTSIDE_LINK = re.compile(r"\]\(\.\./(?!notebooks/|solutions/)([^)#\s]+)")


def on_page_markdown(markdown, page, config, files):
    if not page.file.src_uri.endswith(".md"):
        return markdown
    if "/" not in page.file.src_uri:  # pages at the top of docs/: ../ is the repository root
        blob = f"{authoring.REPO_URL}/blob/{authoring.BRANCH}"
        markdown = OUTSIDE_LINK.sub(lambda m: f"]({blob}/{m[1]})", markdown)
    if page.file.src_uri != "index.md" or MAP_PLACEHOLDER not in markdown:
        return markdown
    sources = authoring.read_sources(ROOT)
    table = authoring.course_map(sources, authoring.read_runtimes(ROOT, sources))
    # The map's links are relative to the repository root; the site's root is docs/.
    return markdown.replace(MAP_PLACEHOLDER, table.replace(f"]({authoring.RUNTIMES})", "](runtimes.json)"))


MATHJAX_DIR = "assets/mathjax"  # mkdocs.yml's custom_mathjax_url points here


def on_post_build(config):
    import jupyter_server_mathjax

    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():
        raise FileNotFoundError(f"no MathJax.js in {static}: reinstall jupyter-server-mathjax (make site)")
    target = Path(config["site_dir"]) / MATHJAX_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(static, target)
