"""Colab: every generated notebook opens in Colab from its own path, and its set-up cell installs the
course from the repository without touching what Colab already has (torch, torchvision, ipywidgets 7.7).

The set-up cell is executed here with a stand-in ``google.colab`` module and a recording
``subprocess.run``, and its pip command line is parsed; the package is built into a wheel from a fresh
clone of the committed repository (what pip builds from the git URL) and imported from an install
target outside the repository. docs/results_colab.md records one real run of the cell in a throwaway
virtual environment.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from ddpm_course import authoring

ROOT = Path(__file__).resolve().parents[1]
SOURCES = authoring.read_sources(ROOT)
FOLDERS = (authoring.STUDENT_DIR, authoring.SOURCE_DIR)
GENERATED = [f"{folder}/{s.stem}.ipynb" for s in SOURCES for folder in FOLDERS]
REPO = authoring.REPO_URL.removeprefix("https://github.com/")
COLAB_LINK = re.compile(r"\[!\[(?P<alt>[^\]]*)\]\((?P<badge>[^)]+)\)\]"
                        r"\(https://colab\.research\.google\.com/github/(?P<repo>[^/]+/[^/]+)/blob/"
                        r"(?P<branch>[^/]+)/(?P<path>[^)\s]+)\)")

# What Colab has installed before the set-up cell runs (two snapshots of its runtime, 2024 and 2025;
# Colab's notebook front end pins ipywidgets at 7.7.1). The course must install nothing over them.
COLAB_RUNTIMES = {
    "2024": {"python": "3.10.12", "torch": "2.3.1+cu121", "torchvision": "0.18.1+cu121", "numpy": "1.26.4",
             "matplotlib": "3.7.1", "tqdm": "4.66.4", "ipywidgets": "7.7.1", "safetensors": "0.4.3"},
    "2025": {"python": "3.12.11", "torch": "2.8.0+cu126", "torchvision": "0.23.0+cu126", "numpy": "2.0.2",
             "matplotlib": "3.10.0", "tqdm": "4.67.1", "ipywidgets": "7.7.1", "safetensors": "0.6.2"},
}


FIND_SPEC = importlib.util.find_spec


def cells(rel: str) -> list[dict]:
    return json.loads((ROOT / rel).read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"])


# --- badges ----------------------------------------------------------------------------------------------
def test_every_source_has_both_generated_notebooks():
    assert len(SOURCES) >= 1
    missing = [rel for rel in GENERATED if not (ROOT / rel).is_file()]
    assert missing == [], f"run `make notebooks`: {missing}"


@pytest.mark.parametrize("rel", GENERATED)
def test_badge_opens_the_notebook_from_its_own_path(rel):
    first = cells(rel)[0]
    assert first["cell_type"] == "markdown", f"{rel}: the first cell must hold the Colab badge"
    links = list(COLAB_LINK.finditer(text(first)))
    assert len(links) == 1, f"{rel}: expected one Colab badge in the first cell, found {len(links)}"
    link = links[0]
    assert link["badge"] == authoring.COLAB_BADGE and link["alt"] == "Open In Colab"
    assert (link["repo"], link["branch"], link["path"]) == (REPO, authoring.BRANCH, rel)
    assert (ROOT / link["path"]).is_file()


@pytest.mark.parametrize("rel", [r for r in GENERATED if r.startswith(authoring.STUDENT_DIR)])
def test_student_version_links_to_its_solutions(rel):
    solution = f"{authoring.SOURCE_DIR}/{Path(rel).name}"
    assert f"](../{solution})" in text(cells(rel)[0])
    assert (ROOT / solution).is_file()


def test_readme_course_map_has_two_colab_badges_per_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index(authoring.MAP_START):readme.index(authoring.MAP_END)]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    assert len(body) == len(SOURCES)
    for source, row in zip(SOURCES, body, strict=True):
        # A '|' inside a cell (a title like q(x_t | x_0)) must be escaped, or the row falls apart.
        assert len(re.split(r"(?<!\\)\|", row)) == len(re.split(r"(?<!\\)\|", header)), row
        found = [(m["repo"], m["branch"], m["path"]) for m in COLAB_LINK.finditer(row)]
        assert found == [(REPO, authoring.BRANCH, f"{folder}/{source.stem}.ipynb") for folder in FOLDERS], row


# --- the set-up cell -------------------------------------------------------------------------------------
def run_setup_cell(source: str, monkeypatch, *, in_colab: bool, installed: bool) -> list:
    """Execute the cell as Colab would; returns the recorded subprocess.run calls."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        None if name == "ddpm_course" and not installed else FIND_SPEC(name, *a)))
    exec(compile(source, "<colab set-up cell>", "exec"), {})
    return calls


@pytest.mark.parametrize("rel", GENERATED)
def test_setup_cell_is_the_first_code_cell(rel):
    code = [c for c in cells(rel) if c["cell_type"] == "code"]
    assert text(code[0]) == authoring.colab_setup_code(), f"{rel}: stale set-up cell; run `make notebooks`"
    assert text(cells(rel)[1]) == text(code[0])
    ast.parse(text(code[0]), rel, feature_version=(3, 10))  # runs on every Python the course supports


@pytest.mark.parametrize("rel", GENERATED)
def test_setup_cell_installs_from_git_and_keeps_colabs_torch(rel, monkeypatch):
    import torch
    import torchvision

    source = text(cells(rel)[1])
    assert run_setup_cell(source, monkeypatch, in_colab=False, installed=False) == [], \
        "must do nothing outside Colab"
    assert run_setup_cell(source, monkeypatch, in_colab=True, installed=True) == [], \
        "must do nothing when the course is installed already (running the cell twice)"

    ((cmd, kwargs),) = run_setup_cell(source, monkeypatch, in_colab=True, installed=False)
    assert kwargs == {"check": True}, "a failed install must stop the notebook"
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"], "pip of the kernel's own Python"
    options, (requirement,) = cmd[4:-1], cmd[-1:]
    # Exactly these options: nothing that would upgrade, reinstall or skip the checks of installed packages.
    assert options[0] == "--quiet" and options[1] == "--constraint" and len(options) == 3, options
    req = Requirement(requirement)
    assert (req.name, req.url, req.extras, req.marker) == (
        "ddpm-course", f"git+{authoring.REPO_URL}@{authoring.BRANCH}", set(), None)
    pins = Path(options[2]).read_text().split()
    assert pins == [f"torch=={torch.__version__}", f"torchvision=={torchvision.__version__}"]
    assert not any(arg.split("=")[0] in ("torch", "torchvision") for arg in cmd[4:]), \
        "torch/torchvision are never named as something to install"


# --- what the package asks of Colab ----------------------------------------------------------------------
def base_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in importlib.metadata.requires("ddpm-course") or []]
    return [r for r in reqs if r.marker is None]  # extras (dev, lab, site, ...) carry an 'extra' marker


@pytest.mark.parametrize("when", sorted(COLAB_RUNTIMES))
def test_colabs_preinstalled_packages_satisfy_the_course(when):
    """pip's default strategy leaves a satisfied requirement alone: nothing Colab has gets replaced."""
    colab = COLAB_RUNTIMES[when]
    python = SpecifierSet(importlib.metadata.metadata("ddpm-course")["Requires-Python"])
    assert python.contains(colab["python"]), f"Colab's Python {colab['python']} is outside {python}"
    reqs = base_requirements()
    assert {r.name for r in reqs} >= {"torch", "torchvision", "ipywidgets"}
    for r in reqs:
        assert r.name in colab, f"{r.name} is not on Colab: the set-up cell would have to install it"
        assert r.specifier.contains(colab[r.name], prereleases=True), \
            f"{r} would replace Colab's {r.name} {colab[r.name]}"


# --- the package as pip builds it from the git URL ---------------------------------------------------------
@pytest.mark.slow
def test_wheel_from_a_clean_clone_works_without_the_repository(tmp_path):
    """Clone the committed repository, build the wheel as pip does from the git URL, install it into a
    folder outside the repository and use it from there: the shipped weights and data must be inside."""
    clone, dist, target = tmp_path / "clone", tmp_path / "dist", tmp_path / "site-packages"
    git = subprocess.run(["git", "clone", "--quiet", "--depth", "1", ROOT.as_uri(), str(clone)],
                         capture_output=True, text=True, timeout=300)
    assert git.returncode == 0, git.stderr
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                                  "--wheel-dir", str(dist), str(clone)],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("ddpm_course-*.whl")

    tracked = subprocess.run(["git", "ls-files", "ddpm_course"], cwd=clone, capture_output=True, text=True,
                             check=True).stdout.split()
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert set(tracked) <= names, f"package files missing from the wheel: {sorted(set(tracked) - names)}"
    assert any(n.startswith("ddpm_course/weights/") and n.endswith(".safetensors") for n in names)
    requires = [Requirement(line.split(":", 1)[1]) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    torch_req = next(r for r in requires if r.name == "torch" and r.marker is None)
    assert all(s.operator not in ("==", "===", "<", "<=", "~=") for s in torch_req.specifier), \
        f"{torch_req}: the course must accept Colab's torch, whatever its version"

    install = subprocess.run(pip + ["install", "--no-deps", "--no-index", "--quiet", "--target", str(target),
                                    str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    script = (
        "import ddpm_course as dc, sys\n"
        f"assert dc.__file__.startswith({str(target)!r}), dc.__file__\n"
        "model, s = dc.load_pretrained('mnist')\n"
        "x, y = dc.data.load_mnist_subset('train')\n"
        "print('ok', type(model).__name__, s.T, tuple(x.shape))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1", "HOME": str(tmp_path),
           "DDPM_COURSE_FAST": "1"}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok "), run.stdout


# --- run times: docs/runtimes.json, the README course map and the instructor guide --------------------------
def runtimes() -> dict:
    return authoring.read_runtimes(ROOT, SOURCES)


def test_course_map_shows_the_recorded_run_times():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = runtimes()
    assert table, "docs/runtimes.json records no notebook"
    for s in SOURCES:
        times = " · ".join(authoring.format_runtime(table.get(s.stem, {}).get(k))
                           for k in authoring.RUNTIME_KINDS)
        row = next(line for line in readme.splitlines() if line.startswith(f"| {s.number:02d} |"))
        assert f"| {times} |" in row, f"README course map is stale for {s.stem} (run `make notebooks`): {row}"


def test_fast_mode_times_are_measured():
    fast = {stem: kinds["cpu_fast"] for stem, kinds in runtimes().items() if "cpu_fast" in kinds}
    assert fast, "no measured fast-mode time in docs/runtimes.json"
    assert all(entry["how"] == "measured" for entry in fast.values()), fast


@pytest.mark.parametrize(("seconds", "how", "shown"), [
    (9.4, "measured", "9 s"), (89, "measured", "89 s"), (90, "measured", "2 min"),
    (5399, "estimated", "≈ 90 min"), (5400, "measured", "1.5 h"), (300, "estimated", "≈ 5 min")])
def test_format_runtime(seconds, how, shown):
    assert authoring.format_runtime({"seconds": seconds, "how": how}) == shown
    assert authoring.format_runtime(None) == "—"


@pytest.mark.parametrize(("entry", "message"), [
    ({"cpu_slow": {"seconds": 3, "how": "measured"}}, "unknown kind 'cpu_slow'"),
    ({"cpu_fast": {"seconds": 0, "how": "measured"}}, "'seconds' must be a positive number"),
    ({"cpu_fast": {"seconds": "45", "how": "measured"}}, "'seconds' must be a positive number"),
    ({"cpu_fast": {"seconds": 45, "how": "guessed"}}, "'how' must be one of"),
    ([45], "must map run-time kinds"),
])
def test_runtimes_file_errors_name_the_entry(tmp_path, entry, message):
    (tmp_path / "docs").mkdir()
    (tmp_path / authoring.RUNTIMES).write_text(json.dumps({"notebooks": {"01_forward_process": entry}}))
    with pytest.raises(authoring.AuthoringError, match=re.escape("notebooks['01_forward_process']") + ".*"
                       + re.escape(message)):
        authoring.read_runtimes(tmp_path, SOURCES)


def guide_rows() -> list[list[str]]:
    guide = (ROOT / "docs/instructor_guide.md").read_text(encoding="utf-8")
    assert "RT:" not in guide, "docs/instructor_guide.md still has a run-time placeholder"
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in guide.splitlines() if line.startswith("| ")]


def test_instructor_guide_times_match_runtimes():
    table, by_number = runtimes(), {f"{s.number:02d}": s.stem for s in SOURCES}
    checked = 0
    for cells in guide_rows():
        if len(cells) == 6 and cells[0] in by_number:  # run-time table: # | notebook | exercises | 3 times
            stem = by_number[cells[0]]
            expected = [authoring.format_runtime(table.get(stem, {}).get(k)) for k in authoring.RUNTIME_KINDS]
            assert cells[3:] == expected, f"instructor guide, notebook {cells[0]}: {cells[3:]} != {expected}"
            checked += 1
        elif len(cells) == 4 and cells[1][:2] in by_number and cells[1][2:3] == " ":  # an agenda row
            stem = by_number[cells[1][:2]]
            expected = authoring.format_runtime(table.get(stem, {}).get("cpu_fast"))
            assert cells[2] == expected, f"instructor guide agenda '{cells[1]}': {cells[2]!r} != {expected!r}"
            checked += 1
    assert checked >= len(SOURCES), "the instructor guide's run-time table lists fewer notebooks than exist"


def test_results_page_times_match_runtimes():
    results = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    block = results.split("<!-- runtimes-table", 1)[1].split("<!-- runtimes-table:end -->", 1)[0]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip().strip("|").split("|")]
                                          for line in block.splitlines() if line.startswith("| "))}
    table = runtimes()
    for s in SOURCES:
        assert f"{s.number:02d}" in rows, f"docs/results.md run-time table lacks notebook {s.number:02d}"
        expected = [authoring.format_runtime(table.get(s.stem, {}).get(k)) for k in authoring.RUNTIME_KINDS]
        got = rows[f"{s.number:02d}"][2:]
        assert got == expected, f"docs/results.md, notebook {s.number:02d}: {got} != {expected}"
