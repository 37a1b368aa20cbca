"""Notebook authoring: one source per notebook, two generated notebooks.

    solutions/NN_topic.py   jupytext "percent" source, the only file an author edits
      ├── solutions/NN_topic.ipynb   full notebook, solutions included
      └── notebooks/NN_topic.ipynb   student notebook: each solution span replaced by a stub

In a cell tagged ``exercise`` the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
``raise NotImplementedError("Exercise N.k: ...")`` in the student notebook, at the indentation of the
marker; the lines around the span stay. N is the notebook number and k counts the exercise cells.
Both notebooks get a Colab badge and a Colab set-up cell on top, have no outputs, carry deterministic
cell ids and are written byte for byte the same on every build. The README's course map (between its
course-map markers) is generated too: every notebook, its run times from docs/runtimes.json and a Colab
badge for each version. ``--check`` rebuilds in memory and
fails when a committed notebook differs, and scans the student notebooks for solution lines.
docs/authoring.md is the author's guide; the rules are enforced here.

    python -m ddpm_course.authoring [--check] [--root DIR]     (also: ddpm-course build-notebooks)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

# The one place the repository is named: badges, the Colab set-up cell and the README course map use it.
REPO_URL = "https://github.com/ddpm-course/ddpm-course"
BRANCH = "main"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"

# The tag allow-list. Anything else fails the build, so a typo cannot silently change a notebook.
TAGS = {
    "exercise": "code cell with solution spans; the student notebook gets a NotImplementedError stub",
    "solution-only": "cell left out of the student notebook (e.g. a discussion of the answer)",
    "parameters": "the one cell papermill may override (reads DDPM_COURSE_FAST via dc.fast_mode())",
    "raises-exception": "cell meant to raise; Jupyter, nbclient and nbval carry on after it",
}

# Leak check: a solution line counts when, with all whitespace removed, it has at least this many
# characters, contains a letter or digit and is not a comment. It leaks when it occurs inside any
# line of a student notebook (whitespace removed there too).
LEAK_MIN_CHARS = 8

SOURCE_DIR, STUDENT_DIR = "solutions", "notebooks"
SOURCE_NAME = re.compile(r"^(\d{2})_[a-z0-9_]+\.py$")
README = "README.md"
RUNTIMES = "docs/runtimes.json"  # measured run times per notebook, shown in the course map
RUNTIME_KINDS = {"cpu_fast": "CPU fast", "cpu_full": "CPU full", "gpu_full": "GPU full"}
RUNTIME_HOW = ("measured", "estimated")
MAP_START = "<!-- course-map:start (generated from solutions/*.py by `make notebooks`; do not edit) -->"
MAP_END = "<!-- course-map:end -->"

NBFORMAT, NBFORMAT_MINOR = 4, 5
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

_CELL_MARKER = re.compile(r"^\s*#\s*%%(?!%)")  # jupytext's percent-format cell marker
_LOOKS_LIKE_MARKER = re.compile(r"#+\s*(begin|end)\s+solution", re.IGNORECASE)
_JUPYTEXT_LAYOUT_KEYS = {"lines_to_next_cell", "lines_to_end_of_cell_marker", "title", "cell_marker"}


class AuthoringError(Exception):
    """A source breaks an authoring rule. The message starts with ``path:line:``."""


@dataclass
class Span:
    """Cell line indices of a ``### BEGIN SOLUTION`` marker and its ``### END SOLUTION``."""

    begin: int
    end: int
    indent: str


@dataclass
class Cell:
    kind: str  # "code" or "markdown"
    lines: list[str]  # source lines, without newlines, as jupytext reads them
    tags: list[str]
    line: int  # 1-based line of lines[0] in the source file
    index: int  # position among the source's cells
    spans: list[Span]


@dataclass
class Source:
    path: Path  # relative to the root, e.g. solutions/00_welcome.py
    number: int
    cells: list[Cell]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def title(self) -> str:
        """The '# ' heading of the first cell, without a leading notebook number ("00 · ")."""
        return re.sub(r"^\d{2}\s*[·:.\-–—]\s*", "", self.cells[0].lines[0].lstrip("#").strip())

    def solution_lines(self) -> list[tuple[int, str]]:
        """(file line, text) of every line strictly inside a solution span."""
        return [(c.line + i, c.lines[i])
                for c in self.cells for sp in c.spans for i in range(sp.begin + 1, sp.end)]


# --- reading and validating a source ---------------------------------------------------------------
def read_source(path: Path, root: Path) -> Source:
    """Parse ``solutions/NN_topic.py`` with jupytext and enforce the authoring rules."""
    import jupytext

    rel = path.relative_to(root)
    match = SOURCE_NAME.match(path.name)
    if not match:
        raise AuthoringError(f"{rel}:1: a notebook source must be named NN_topic.py "
                             "(two digits, then a lower-case topic)")
    text = path.read_text(encoding="utf-8")
    markers = [i + 1 for i, line in enumerate(text.splitlines()) if _CELL_MARKER.match(line)]
    nb = jupytext.reads(text, fmt="py:percent")
    if not markers or len(markers) != len(nb.cells):
        raise AuthoringError(f"{rel}:1: every cell must start with a '# %%' line (found {len(markers)} "
                             f"markers, jupytext reads {len(nb.cells)} cells); code above the first marker "
                             "other than the jupytext header is not allowed")
    cells = [_read_cell(rel, i, c, markers[i]) for i, c in enumerate(nb.cells)]
    first = cells[0]
    if first.kind != "markdown" or not first.lines or not first.lines[0].startswith("# "):
        raise AuthoringError(f"{rel}:{markers[0]}: the first cell must be markdown whose first line is "
                             "'# Title'")
    n_parameters = [c for c in cells if "parameters" in c.tags]
    if len(n_parameters) > 1:
        raise AuthoringError(f"{rel}:{n_parameters[1].line - 1}: only one cell may be tagged 'parameters'")
    return Source(path=rel, number=int(match.group(1)), cells=cells)


def _read_cell(rel: Path, index: int, nb_cell, marker_line: int) -> Cell:
    where = f"{rel}:{marker_line}"
    unknown_keys = set(nb_cell.metadata) - _JUPYTEXT_LAYOUT_KEYS - {"tags"}
    if unknown_keys:
        raise AuthoringError(f"{where}: unsupported cell metadata {sorted(unknown_keys)}; only tags=[...] "
                             f"with tags from {sorted(TAGS)} are allowed")
    tags = nb_cell.metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AuthoringError(f"{where}: tags must be a list of strings, got {tags!r}")
    for tag in tags:
        if tag not in TAGS:
            raise AuthoringError(f"{where}: unknown cell tag {tag!r}; allowed tags: "
                                 f"{', '.join(sorted(TAGS))} (see docs/authoring.md)")
    if len(set(tags)) != len(tags):
        raise AuthoringError(f"{where}: repeated tag in {tags}")
    cell = Cell(kind=nb_cell.cell_type, lines=nb_cell.source.split("\n"), tags=list(tags),
                line=marker_line + 1, index=index, spans=[])
    if cell.kind not in ("code", "markdown"):
        raise AuthoringError(f"{where}: only code and markdown cells are supported, got {cell.kind!r}")
    cell.spans = _find_spans(rel, cell)
    if "exercise" in tags:
        if cell.kind != "code":
            raise AuthoringError(f"{where}: only code cells can be tagged 'exercise'")
        if not cell.spans:
            raise AuthoringError(f"{where}: cell tagged 'exercise' has no {BEGIN} ... {END} span")
        if "solution-only" in tags:
            raise AuthoringError(f"{where}: a cell cannot be both 'exercise' and 'solution-only'")
    elif cell.spans:
        raise AuthoringError(f"{rel}:{cell.line + cell.spans[0].begin}: {BEGIN} in a cell not tagged "
                             f"'exercise' (the cell starts at line {marker_line})")
    if "parameters" in tags and cell.kind != "code":
        raise AuthoringError(f"{where}: only a code cell can be tagged 'parameters'")
    return cell


def _find_spans(rel: Path, cell: Cell) -> list[Span]:
    """Locate the balanced, non-nested, non-empty, indented solution spans of a cell."""
    spans, open_at = [], None
    for i, line in enumerate(cell.lines):
        stripped, at = line.strip(), f"{rel}:{cell.line + i}"
        if stripped not in (BEGIN, END):
            if _LOOKS_LIKE_MARKER.search(stripped) and stripped.startswith("#"):
                raise AuthoringError(f"{at}: malformed solution marker {stripped!r}; write exactly "
                                     f"{BEGIN!r} or {END!r} alone on the line")
            continue
        if stripped == BEGIN:
            if open_at is not None:
                raise AuthoringError(f"{at}: nested {BEGIN} (the span opened at line "
                                     f"{cell.line + open_at} is not closed)")
            open_at = i
            continue
        if open_at is None:
            raise AuthoringError(f"{at}: {END} without a matching {BEGIN}")
        if i == open_at + 1:
            raise AuthoringError(f"{at}: empty solution span (opened at line {cell.line + open_at})")
        indent = cell.lines[open_at][: len(cell.lines[open_at]) - len(cell.lines[open_at].lstrip())]
        if not indent:
            raise AuthoringError(f"{rel}:{cell.line + open_at}: solution span at top level; put it inside a "
                                 "function body so the student notebook still runs (the stub raises "
                                 "NotImplementedError only when the function is called)")
        spans.append(Span(begin=open_at, end=i, indent=indent))
        open_at = None
    if open_at is not None:
        raise AuthoringError(f"{rel}:{cell.line + open_at}: {BEGIN} is never closed by {END} "
                             f"(the cell ends at line {cell.line + len(cell.lines) - 1})")
    return spans


def read_sources(root: Path) -> list[Source]:
    src_dir = root / SOURCE_DIR
    if not src_dir.is_dir():
        raise AuthoringError(f"{root}: no {SOURCE_DIR}/ folder; run from the repository root or pass --root")
    sources = [read_source(p, root) for p in sorted(src_dir.glob("*.py"))]
    seen: dict[int, Path] = {}
    for s in sources:
        if s.number in seen:
            raise AuthoringError(f"{s.path}:1: notebook number {s.number:02d} is also used by "
                                 f"{seen[s.number]}")
        seen[s.number] = s.path
    return sources


# --- building -------------------------------------------------------------------------------------
def student_lines(cell: Cell, label: str) -> list[str]:
    """The cell with every solution span replaced by a stub at the marker's indentation."""
    out, pos = [], 0
    for sp in cell.spans:
        out += cell.lines[pos:sp.begin]
        out.append(f'{sp.indent}raise NotImplementedError("{label}: write your solution here")')
        pos = sp.end + 1
    return out + cell.lines[pos:]


def _cell_id(stem: str, key) -> str:
    return hashlib.sha256(f"{stem}:{key}".encode()).hexdigest()[:12]


def _cell(kind: str, text: str, cell_id: str, tags=()) -> dict:
    cell = {"cell_type": kind, "id": cell_id, "metadata": {"tags": list(tags)} if tags else {},
            "source": text.strip("\n").splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def colab_url(relpath: str) -> str:
    return f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}/blob/{BRANCH}/{relpath}"


def colab_badge(relpath: str) -> str:
    return f"[![Open In Colab]({COLAB_BADGE})]({colab_url(relpath)})"


def colab_setup_code() -> str:
    """Installs the package in Colab, never touching Colab's torch/torchvision; a no-op elsewhere."""
    return f'''\
# Colab set-up. Elsewhere this cell does nothing: locally `make lab` has installed the course already.
# In Colab it installs the course package from its repository and keeps Colab's own torch and
# torchvision (a constraints file pins the versions already installed, so pip never replaces them).
import sys

if "google.colab" in sys.modules:
    import importlib.util
    import subprocess

    if importlib.util.find_spec("ddpm_course") is None:
        import torch
        import torchvision

        with open("/tmp/ddpm-course-constraints.txt", "w") as f:
            f.write(f"torch=={{torch.__version__}}\\ntorchvision=={{torchvision.__version__}}\\n")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                        "--constraint", "/tmp/ddpm-course-constraints.txt",
                        "ddpm-course @ git+{REPO_URL}@{BRANCH}"], check=True)'''


def _header_cells(source: Source, student: bool) -> list[dict]:
    stem = source.stem
    own = f"{STUDENT_DIR if student else SOURCE_DIR}/{stem}.ipynb"
    if student:
        note = (f"*Student version: the exercises are blank. Solutions: "
                f"[{SOURCE_DIR}/{stem}.ipynb](../{SOURCE_DIR}/{stem}.ipynb).*")
    else:
        note = "*Solution version: every exercise is filled in.*"
    note += f" Generated from `{source.path.as_posix()}` by `make notebooks`; edit the source, not this file."
    return [_cell("markdown", f"{colab_badge(own)}\n\n{note}", _cell_id(stem, "badge")),
            _cell("code", colab_setup_code(), _cell_id(stem, "colab-setup"))]


_TIME_FIELD = re.compile(r"\{\{\s*time:([a-z_]+)\s*\}\}")
_STRAY_PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}|\b[A-Z]+_(?:FAST|FULL)\b")
_TIME_LITERAL = re.compile(r"\d[\d.,½]*\s*(?:s|sec|seconds?|min|minutes?|h|hours?)\b")
_TIME_HEADER = "**Time:**"


def fill_times(source: Source, runtimes: dict[str, dict], require_header: bool = True) -> list[Cell]:
    """The source's cells with every ``{{time:KIND}}`` replaced by its run time from docs/runtimes.json,
    written as in the README's course map (format_runtime), so header and map cannot disagree.

    Rules (an AuthoringError names the line): the first cell has a ``**Time:**`` paragraph holding a field
    for every kind (cpu_fast, cpu_full, gpu_full) and no hand-written time; every field names a known kind
    that docs/runtimes.json has for this notebook; no other placeholder is left anywhere. The header rule
    holds when ``require_header`` (a course with a docs/runtimes.json)."""
    times = runtimes.get(source.stem, {})
    if require_header:
        _check_time_header(source)
    cells = []
    for cell in source.cells:
        lines = [_TIME_FIELD.sub(lambda m, c=cell, i=i: _time_field(source, times, c, i, m), line)
                 for i, line in enumerate(cell.lines)]
        if cell.kind == "markdown":
            for i, line in enumerate(lines):
                stray = _STRAY_PLACEHOLDER.search(line)
                if stray:
                    raise AuthoringError(f"{source.path}:{cell.line + i}: unfilled placeholder "
                                         f"{stray.group(0)!r}; run times are written {{{{time:KIND}}}}")
        cells.append(Cell(cell.kind, lines, cell.tags, cell.line, cell.index, cell.spans))
    return cells


def _check_time_header(source: Source) -> None:
    first = source.cells[0]
    start = next((i for i, line in enumerate(first.lines) if line.startswith(_TIME_HEADER)), None)
    if start is None:
        raise AuthoringError(f"{source.path}:{first.line}: the first cell needs a '{_TIME_HEADER}' paragraph "
                             "with {{time:cpu_fast}}, {{time:cpu_full}} and {{time:gpu_full}}")
    end = next((i for i in range(start, len(first.lines)) if not first.lines[i].strip()), len(first.lines))
    paragraph = " ".join(first.lines[start:end])
    kinds = _TIME_FIELD.findall(paragraph)
    missing = [k for k in RUNTIME_KINDS if k not in kinds]
    if missing:
        raise AuthoringError(f"{source.path}:{first.line + start}: the '{_TIME_HEADER}' paragraph must quote "
                             f"every run time from {RUNTIMES}; missing " + ", ".join(f"{{{{time:{k}}}}}"
                                                                                        for k in missing))
    literal = _TIME_LITERAL.search(_TIME_FIELD.sub("", paragraph))
    if literal:
        raise AuthoringError(f"{source.path}:{first.line + start}: the '{_TIME_HEADER}' paragraph writes a "
                             f"run time by hand ({literal.group(0)!r}); use a {{{{time:KIND}}}} field so it "
                             f"comes from {RUNTIMES}")


def _time_field(source: Source, times: dict, cell: Cell, i: int, match: re.Match) -> str:
    kind = match.group(1)
    if kind not in RUNTIME_KINDS:
        raise AuthoringError(f"{source.path}:{cell.line + i}: unknown run-time kind {kind!r} in "
                             f"{match.group(0)}; allowed: {', '.join(RUNTIME_KINDS)}")
    if kind not in times:
        raise AuthoringError(f"{source.path}:{cell.line + i}: {match.group(0)} has no entry in {RUNTIMES} "
                             f"for {source.stem}; measure it (docs/tools/measure_runtimes.py) or estimate it "
                             "there")
    return format_runtime(times[kind])


def build_notebook(source: Source, student: bool, runtimes: dict[str, dict] | None = None,
                   require_times: bool = False) -> dict:
    cells, k = _header_cells(source, student), 0
    for c in fill_times(source, runtimes or {}, require_times):
        lines = c.lines
        if "exercise" in c.tags:
            k += 1
            if student:
                lines = student_lines(c, f"Exercise {source.number}.{k}")
        if student and "solution-only" in c.tags:
            continue
        cells.append(_cell(c.kind, "\n".join(lines), _cell_id(source.stem, c.index), c.tags))
    return {"cells": cells,
            "metadata": {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}},
            "nbformat": NBFORMAT, "nbformat_minor": NBFORMAT_MINOR}


def dumps(nb: dict) -> bytes:
    """nbformat's own layout (indent 1, sorted keys, UTF-8) plus a trailing newline: byte-reproducible."""
    return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def read_runtimes(root: Path, sources: list[Source]) -> dict[str, dict]:
    """docs/runtimes.json's ``notebooks`` table, validated: {stem: {kind: {"seconds": s, "how": how}}}.

    A missing file gives no run times (the map then shows "—"). An unknown kind, a non-positive time or an
    unknown ``how`` is an error, so a typo cannot hide a figure; an entry for a notebook whose source is not
    (yet) there is left out of the result.
    """
    path = root / RUNTIMES
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))["notebooks"]
    except (ValueError, KeyError, TypeError) as err:
        raise AuthoringError(f"{RUNTIMES}:1: not a JSON object with a 'notebooks' table ({err!r})") from err
    if not isinstance(table, dict):
        raise AuthoringError(f"{RUNTIMES}:1: 'notebooks' must map notebook names (NN_topic) to run times")
    for stem, kinds in table.items():
        where = f"{RUNTIMES}:1: notebooks[{stem!r}]"
        if not isinstance(kinds, dict):
            raise AuthoringError(f"{where}: must map run-time kinds to {{'seconds', 'how'}}, got {kinds!r}")
        for kind, entry in kinds.items():
            if kind not in RUNTIME_KINDS:
                raise AuthoringError(f"{where}: unknown kind {kind!r}; allowed: {', '.join(RUNTIME_KINDS)}")
            seconds = entry.get("seconds") if isinstance(entry, dict) else None
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
                raise AuthoringError(f"{where}[{kind!r}]: 'seconds' must be a positive number, got {entry!r}")
            if entry.get("how") not in RUNTIME_HOW:
                raise AuthoringError(f"{where}[{kind!r}]: 'how' must be one of {RUNTIME_HOW}, got "
                                     f"{entry.get('how')!r}")
    stems = {s.stem for s in sources}
    return {stem: kinds for stem, kinds in table.items() if stem in stems}


def format_seconds(seconds: float) -> str:
    """45 s, 12 min, 1.5 h: the precision a timetable needs."""
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def format_runtime(entry: dict | None) -> str:
    """One run-time cell: "45 s" when measured, "≈ 45 s" when estimated, "—" when unknown."""
    if not entry:
        return "—"
    return ("≈ " if entry["how"] == "estimated" else "") + format_seconds(entry["seconds"])


def table_cell(text: str) -> str:
    """Markdown table cells split at every unescaped '|', even inside a link's text."""
    return text.replace("|", r"\|")


def course_map(sources: list[Source], runtimes: dict[str, dict] | None = None) -> str:
    """The README's table: every notebook, its run times and a Colab badge for each version."""
    runtimes = runtimes or {}
    head = " · ".join(RUNTIME_KINDS.values())
    rows = [f"| # | notebook | run time: {head} | student version | solution version |",
            "|---|---|---|---|---|"]
    for s in sources:
        student = f"{STUDENT_DIR}/{s.stem}.ipynb"
        solution = f"{SOURCE_DIR}/{s.stem}.ipynb"
        times = " · ".join(format_runtime(runtimes.get(s.stem, {}).get(k)) for k in RUNTIME_KINDS)
        rows.append(f"| {s.number:02d} | [{table_cell(s.title)}]({student}) | {times} "
                    f"| {colab_badge(student)} | {colab_badge(solution)} [ipynb]({solution}) |")
    note = ("Run times: *fast* = `DDPM_COURSE_FAST=1`, *full* = the notebook's real sizes; ≈ marks an "
            "estimate, — a time not measured yet. How and where each was measured: "
            f"[{RUNTIMES}]({RUNTIMES}).")
    return "\n".join([MAP_START, *rows, "", note, MAP_END])


def _readme_with_map(text: str, sources: list[Source], runtimes: dict[str, dict] | None = None) -> str | None:
    start, end = text.find(MAP_START), text.find(MAP_END)
    if start < 0 or end < start:
        return None
    return text[:start] + course_map(sources, runtimes) + text[end + len(MAP_END):]


def build_all(root: Path) -> dict[Path, bytes]:
    """Every generated file (relative path -> bytes); README.md when it holds the course-map markers."""
    sources = read_sources(root)
    files = {}
    runtimes, require = read_runtimes(root, sources), (root / RUNTIMES).is_file()
    for s in sources:
        for folder, student in ((SOURCE_DIR, False), (STUDENT_DIR, True)):
            nb = build_notebook(s, student=student, runtimes=runtimes, require_times=require)
            files[Path(folder, f"{s.stem}.ipynb")] = dumps(nb)
    readme = root / README
    if readme.is_file():
        new = _readme_with_map(readme.read_text(encoding="utf-8"), sources, runtimes)
        if new is not None:
            files[Path(README)] = new.encode("utf-8")
    return files


def write_all(root: Path) -> list[Path]:
    """Build and write; returns the files whose content changed."""
    changed = []
    for rel, data in build_all(root).items():
        path = root / rel
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(rel)
    return changed


# --- checking -------------------------------------------------------------------------------------
def _leak_key(line: str) -> str:
    return "".join(line.split())


def significant(line: str) -> bool:
    """Whether a solution line is specific enough for the leak check (see LEAK_MIN_CHARS)."""
    key = _leak_key(line)
    return len(key) >= LEAK_MIN_CHARS and not key.startswith("#") and any(ch.isalnum() for ch in key)


def find_leaks(sources: list[Source], student_notebooks: dict[Path, dict]) -> list[str]:
    """Every (solution line, student notebook line) pair where the first occurs inside the second."""
    secrets = [(s.path, n, text, _leak_key(text)) for s in sources for n, text in s.solution_lines()
               if significant(text)]
    problems = []
    for nb_path, nb in sorted(student_notebooks.items()):
        for ci, cell in enumerate(nb.get("cells", [])):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            keys = [_leak_key(line) for line in source.splitlines()]
            for src_path, n, text, key in secrets:
                if any(key in k for k in keys):
                    problems.append(f"{nb_path.as_posix()}: cell {ci} (id {cell.get('id', '?')}) contains "
                                    f"the solution line {src_path.as_posix()}:{n}: {text.strip()!r}")
    return problems


def _first_difference(rel: Path, old: bytes, new: bytes) -> str:
    if rel.suffix != ".ipynb":
        old_lines, new_lines = old.decode("utf-8", "replace").splitlines(), new.decode("utf-8").splitlines()
        return _first_line_difference(old_lines, new_lines)
    try:
        old_cells = json.loads(old)["cells"]
    except (ValueError, KeyError, TypeError) as err:
        return f"the committed file is not a readable notebook ({err!r})"
    new_cells = json.loads(new)["cells"]
    for i, (a, b) in enumerate(zip(old_cells, new_cells, strict=False)):
        if a != b:
            fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            detail = ""
            if "source" in fields:
                detail = "; " + _first_line_difference("".join(a.get("source", "")).splitlines(),
                                                       "".join(b["source"]).splitlines())
            return f"first difference in cell {i} (id {b.get('id')}): {', '.join(fields)} differ{detail}"
    if len(old_cells) != len(new_cells):
        return f"committed has {len(old_cells)} cells, source builds {len(new_cells)}"
    return "notebook metadata or formatting differ"


def _first_line_difference(old: list[str], new: list[str]) -> str:
    for i, (a, b) in enumerate(zip_longest(old, new)):
        if a != b:
            return f"line {i + 1}: committed {a!r}, source builds {b!r}"
    return "only line endings differ"


def check_all(root: Path) -> list[str]:
    """Problems with the committed files: stale, missing or orphaned notebooks, and solution leaks."""
    sources = read_sources(root)
    expected = build_all(root)
    problems = []
    for rel, data in expected.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel.as_posix()}: missing; run `make notebooks` and commit it")
        elif path.read_bytes() != data:
            what = _first_difference(rel, path.read_bytes(), data)
            problems.append(f"{rel.as_posix()}: differs from what the sources build ({what}); edit "
                            f"{SOURCE_DIR}/*.py, not generated files, then run `make notebooks`")
    for folder in (SOURCE_DIR, STUDENT_DIR):
        for path in sorted((root / folder).glob("*.ipynb")):
            if path.relative_to(root) not in expected:
                problems.append(f"{path.relative_to(root).as_posix()}: no source "
                                f"{SOURCE_DIR}/{path.stem}.py; delete the notebook or add its source")
    student: dict[Path, dict] = {}
    for path in sorted((root / STUDENT_DIR).glob("*.ipynb")):  # what is committed
        try:
            student[path.relative_to(root)] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            problems.append(f"{path.relative_to(root).as_posix()}: not valid JSON ({err})")
    for rel, data in expected.items():  # what the sources build, when that is not what is committed
        if rel.parts[0] == STUDENT_DIR and not ((root / rel).is_file() and (root / rel).read_bytes() == data):
            student[Path(f"{rel.as_posix()} (as built from its source)")] = json.loads(data)
    return problems + find_leaks(sources, student)


# --- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``build-notebooks [--check] [--root DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="ddpm-course build-notebooks",
        description="Build solutions/NN_topic.ipynb and notebooks/NN_topic.ipynb from solutions/NN_topic.py "
                    "(see docs/authoring.md).")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail when a committed file is stale or leaks a solution line")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="repository root (default: the current folder)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.check:
            problems = check_all(root)
            for p in problems:
                print(f"error: {p}", file=sys.stderr)
            if problems:
                print(f"build-notebooks --check: {len(problems)} problem(s)", file=sys.stderr)
                return 1
            n = len(read_sources(root))
            print(f"build-notebooks --check: {n} source(s); generated files up to date; no solution leaks")
            return 0
        changed = write_all(root)
        for rel in changed:
            print(f"wrote {rel.as_posix()}")
        print(f"build-notebooks: {len(changed)} file(s) changed")
        return 0
    except AuthoringError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        print(f"error: build-notebooks needs {err.name}; install the authoring tools with "
              "pip install -e '.[dev]' (make test and make lab do this)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
