"""Notebook 00 covers what it promises: the map, exercises and checks, device, fast mode, a figure."""

from pathlib import Path

from ddpm_course import authoring

ROOT = Path(__file__).resolve().parents[1]


def _welcome():
    (source,) = [s for s in authoring.read_sources(ROOT) if s.number == 0]
    return source


def _text(cells):
    return "\n".join("\n".join(c.lines) for c in cells)


def test_welcome_covers_the_course_map_and_how_exercises_work():
    source = _welcome()
    assert source.cells[0].kind == "markdown"
    markdown = _text(c for c in source.cells if c.kind == "markdown")
    for n in range(9):
        assert f"\n| {n:02d} | " in markdown, f"course map row {n:02d} missing"
    for phrase in ("NotImplementedError", "CheckFailed", "solutions/NN_topic.ipynb", "DDPM_COURSE_FAST=1",
                   "dc.device()", "Summary"):
        assert phrase in markdown


def test_welcome_has_a_parameters_cell_a_device_check_an_exercise_with_its_check_and_figures():
    source = _welcome()
    (parameters,) = [c for c in source.cells if "parameters" in c.tags]
    assert "dc.fast_mode()" in _text([parameters])
    code = _text(c for c in source.cells if c.kind == "code")
    assert "dc.device()" in code and "plt.show()" in code
    exercises = [c for c in source.cells if "exercise" in c.tags]
    assert len(exercises) == 1
    after = source.cells[exercises[0].index + 1]
    assert "dc.checks.snr(snr)" in _text([after])


def test_the_welcome_table_counts_every_exercise():
    """Notebook 00 says how many exercises the course has; it must be the number of exercise cells."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stated = int(re.search(r"(\d+) exercises in all", (root / "solutions" / "00_welcome.py").read_text())[1])
    notebooks = (root / "solutions").glob("[0-9][0-9]_*.py")
    cells = sum(p.read_text().count('tags=["exercise"]') for p in notebooks)
    assert stated == cells
