import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddpm_course import cli
from ddpm_course.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("DDPM_COURSE_DEVICE", "cpu")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(16, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (16,), generator=g))
    cfg = TrainConfig(model="tiny", steps=2, batch_size=4, checkpoint_every=2, sample_every=-1,
                      precision="fp32")
    return train(cfg, tmp / "run", data=data, device=torch.device("cpu"), progress=False)


def test_sample_from_a_checkpoint(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = cli.main(["sample", "--weights", str(tiny_checkpoint), "--sampler", "ddim", "--steps", "3",
                   "--n", "6", "--label", "4", "--out", str(out)])
    assert rc == 0 and "NFE 3" in capsys.readouterr().out
    w, h = Image.open(out).size
    assert (w, h) == (3 * 30 + 2, 2 * 30 + 2)  # 3 x 2 tiles of 28 px with 2 px padding


def test_sample_guidance_counts_two_nfe_per_step(tiny_checkpoint, tmp_path, capsys):
    rc = cli.main(["sample", "--weights", str(tiny_checkpoint), "--sampler", "dpmpp_2m", "--steps", "2",
                   "--n", "2", "--guidance-scale", "3", "--out", str(tmp_path / "g.png")])
    assert rc == 0 and "NFE 4" in capsys.readouterr().out


def test_sample_with_the_shipped_weights(tmp_path, capsys):
    out = tmp_path / "mnist.png"
    assert cli.main(["sample", "--weights", "mnist", "--steps", "2", "--n", "10", "--out", str(out)]) == 0
    assert Image.open(out).size == (10 * 30 + 2, 30 + 2)


@pytest.mark.parametrize("argv, message", [
    (["sample", "--weights", "no/such/file.pt"], "no/such/file.pt does not exist"),
    (["sample", "--weights", "imagenet"], "--weights must be a shipped name"),
    (["sample", "--label", "12", "--steps", "2", "--n", "2"], "--label must be 'all', 'none' or an integer"),
    (["sample", "--sampler", "rk4", "--steps", "2", "--n", "2"], "sampler"),
    (["sample", "--n", "0"], "--n must be >= 1"),
])
def test_bad_values_end_with_one_line(argv, message, tmp_path, capsys):
    rc = cli.main([*argv, "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_bad_checkpoint_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 10)
    assert cli.main(["sample", "--weights", str(bad), "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pt is not a readable ddpm-course checkpoint" in err


def test_unknown_flag_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "ddpm_course.cli", "sample", "--colour", "red"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ddpm-course: error: unrecognized arguments: --colour red (see ddpm-course --help)"]


def test_build_notebooks_passes_its_arguments_on(monkeypatch):
    seen = []
    import ddpm_course.authoring as authoring

    monkeypatch.setattr(authoring, "main", lambda argv=None: seen.append(argv) or 7)
    assert cli.main(["build-notebooks", "--check", "--root", "/somewhere"]) == 7
    assert seen == [["--check", "--root", "/somewhere"]]


@pytest.mark.slow
def test_demo_writes_its_figure_and_table(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "--n", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for row in ("DDPM", "DDIM", "DPM-Solver++(2M)"):
        assert row in text
    assert "1000  1000" in text and "  50    50" in text and "  10    10" in text
    assert Image.open(out).size[0] > 600
