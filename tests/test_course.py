"""ddpm_course.course: the course's environment (device, fast mode, the course's own files), and the rule
that a notebook defines none of the helpers the package has."""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ddpm_course as dc  # noqa: E402
from ddpm_course import course  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_device_and_fast_mode_are_the_packages(monkeypatch):
    assert dc.device is course.device and dc.fast_mode is course.fast_mode
    monkeypatch.setenv("DDPM_COURSE_FAST", "yes")
    assert dc.fast_mode() is True
    monkeypatch.setenv("DDPM_COURSE_FAST", "maybe")
    with pytest.raises(ValueError, match="DDPM_COURSE_FAST must be one of"):
        dc.fast_mode()


@pytest.mark.parametrize("start", ["notebooks", "solutions", "docs/figures", "."])
def test_course_file_is_found_from_anywhere_in_the_course(start):
    found = course.course_file("docs", "figures", "demo.png", start=ROOT / start)
    assert found == ROOT / "docs" / "figures" / "demo.png"
    assert course.course_file("benchmarks/results/quality_vs_nfe.json", start=ROOT / start).is_file()


def test_course_file_outside_a_course_is_none(tmp_path):
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "docs" / "figures" / "demo.png").write_bytes(b"png")       # no pyproject.toml: not a course
    assert course.course_file("docs", "figures", "demo.png", start=tmp_path) is None
    assert course.course_file("docs", "figures", "nope.png", start=ROOT) is None


def test_show_figure_says_when_a_figure_is_absent(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert course.show_figure("demo.png") is None
    assert "docs/figures/demo.png is not available here" in capsys.readouterr().out


def test_load_result_reads_committed_json_or_says_it_is_absent(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT / "notebooks")
    assert course.load_result("quality_vs_nfe.json")["cells"]
    monkeypatch.chdir(tmp_path)
    assert course.load_result("quality_vs_nfe.json") is None
    assert "benchmarks/results/quality_vs_nfe.json is not available here" in capsys.readouterr().out


def test_save_figure_only_with_a_folder(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert course.save_figure(fig, "x.png", None) is None
    path = course.save_figure(fig, "x.png", tmp_path / "figs")
    assert path == tmp_path / "figs" / "x.png" and path.stat().st_size > 0
    plt.close(fig)


def test_mixture_spread_is_the_component_std_for_exact_samples():
    oracle = dc.toy.MixtureOracle.eight_gaussians(dc.NoiseSchedule.linear(), std=0.1)
    x, _ = oracle.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert oracle.spread(x) == pytest.approx(0.1, rel=0.03)
    assert oracle.spread(oracle.means[torch.arange(16) % 8]) == 0.0


HELPERS = ("course_file", "course_figure", "find_repo_file", "show_doc_figure", "show_figure", "save_figure",
           "spread", "device", "fast_mode", "load_result", "seed_stats", "verdict")


def test_no_notebook_defines_a_helper_the_package_has():
    for src in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py")):
        defined = re.findall(r"^def (\w+)\(", src.read_text(encoding="utf-8"), flags=re.MULTILINE)
        assert not set(defined) & set(HELPERS), (src.name, set(defined) & set(HELPERS))
