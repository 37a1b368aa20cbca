"""MkDocs hook for the course website (mkdocs.yml names it; `make site` runs it).

The notebooks live outside docs/, in notebooks/ and solutions/: this hook adds them to the site before
mkdocs-jupyter renders them, writes the navigation from what is in the repository (so a new notebook or
results page needs no edit here), puts the README's course map (run times and Colab badges, from
ddpm_course.authoring) on the home page, adds a gallery of the committed figures in docs/figures/, and
copies MathJax (the jupyter-server-mathjax package) into the site for the notebooks' equations.
"""

from __future__ import annotations

import json
import re
import shutil
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


@event_priority(100)  # before mkdocs-jupyter, which turns every *.ipynb File into a page
def on_files(files, config):
    for folder in (authoring.STUDENT_DIR, authoring.SOURCE_DIR):
        for p in notebooks(folder):
            files.append(File(f"{folder}/{p.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
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
