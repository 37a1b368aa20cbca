import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddpm_course import cli, samplers
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
    assert (w, h) == (3 * (3 * 30 + 2), 3 * (2 * 30 + 2))  # 3 x 2 tiles of 28 px, 2 px padding, scale 3


def test_sample_guidance_counts_two_nfe_per_step(tiny_checkpoint, tmp_path, capsys):
    rc = cli.main(["sample", "--weights", str(tiny_checkpoint), "--sampler", "dpmpp_2m", "--steps", "2",
                   "--n", "2", "--guidance-scale", "3", "--out", str(tmp_path / "g.png")])
    assert rc == 0 and "NFE 4" in capsys.readouterr().out


def test_sample_with_the_shipped_weights(tmp_path, capsys):
    out = tmp_path / "mnist.png"
    assert cli.main(["sample", "--weights", "mnist", "--steps", "2", "--n", "10", "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * (10 * 30 + 2), 3 * (30 + 2))            # --scale 3 (default)


@pytest.mark.parametrize("argv, message", [
    (["sample", "--weights", "no/such/file.pt"], "no/such/file.pt does not exist"),
    (["sample", "--weights", "imagenet"], "--weights must be a shipped diffusion model (mnist, "),
    (["sample", "--weights", "mnist_classifier"], "mnist_classifier is a classifier, not a diffusion model"),
    (["sample", "--spacing", "cubic"], "--spacing must be one of leading, trailing, linspace, karras"),
    (["sample", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["sample", "--eta", "0.5", "--sampler", "heun"], "--eta applies only to --sampler ddim"),
    (["sample", "--scale", "0"], "--scale must be >= 1"),
    (["sample", "--label", "12", "--steps", "2", "--n", "2"], "--label must be 'all', 'none' or an integer"),
    (["sample", "--sampler", "rk4", "--steps", "2", "--n", "2"], "sampler"),
    (["sample", "--n", "0"], "--n must be >= 1"),
])
def test_bad_values_end_with_one_line(argv, message, tmp_path, capsys):
    rc = cli.main([*argv, "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--sampler", "rk4"], ["--steps", "0"], ["--weights", "nope"],
                                  ["--label", "x"], ["--out", "grid.jpg"]])
def test_bad_values_are_refused_before_the_model_loads(argv, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "load_weights", no_loading)
    assert cli.main(["sample", *argv]) == 1
    assert "error: --" in capsys.readouterr().err


def test_list_shows_only_diffusion_models_with_their_recipe(capsys):
    assert cli.main(["sample", "--list"]) == 0
    out = capsys.readouterr().out
    assert "mnist " in out and "mnist_early" in out and "mnist_classifier" not in out
    assert "--sampler dpmpp_2m --steps 20" in out


def test_every_option_is_described_with_its_default():
    parser = cli._parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        if name == "build-notebooks":
            continue
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no description"
        text = sub.format_help()
        for action in sub._actions:
            if action.default not in (None, False) and not action.required and action.dest != "help":
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_a_distilled_student_samples_with_its_own_parameterisation(tmp_path, monkeypatch):
    seen = {}
    real = cli._draw

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "_draw", spy)
    assert cli.main(["sample", "--weights", "mnist_distilled_1", "--steps", "1", "--spacing", "trailing",
                     "--n", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert seen["prediction"] == "v"


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
    assert "U-Net calls on a batch of 2, about" in text and "one call takes" in text


def test_sample_x0_clip_reaches_the_sampler(tiny_checkpoint, tmp_path, monkeypatch):
    seen = []
    real = samplers.EpsModel.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("x0_clip"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(samplers.EpsModel, "__init__", spy)
    for how in ("none", "static", "dynamic"):
        assert cli.main(["sample", "--weights", str(tiny_checkpoint), "--steps", "2", "--n", "2",
                         "--x0-clip", how, "--out", str(tmp_path / "g.png")]) == 0
    assert seen == [None, "static", "dynamic"]


@pytest.mark.parametrize(("name", "sampler", "prediction"), [("mnist_consistency", "consistency", "v"),
                                                             ("mnist_reflow", "ddim", "flow")])
def test_an_unconditional_few_step_model_samples_without_labels_and_refuses_one(
        name, sampler, prediction, tmp_path, monkeypatch, capsys):
    seen = {}
    real = cli._draw

    def spy(*args, **kwargs):
        seen.update(kwargs, y=args[6])
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "_draw", spy)
    out = tmp_path / "s.png"
    assert cli.main(["sample", "--weights", name, "--sampler", sampler, "--steps", "2",
                     "--spacing", "trailing", "--n", "2", "--out", str(out)]) == 0
    assert seen["prediction"] == prediction and seen["y"] is None and out.exists()
    assert cli.main(["sample", "--weights", name, "--label", "3", "--out", str(out)]) == 1
    assert "was tuned without labels (unconditional); use --label none" in capsys.readouterr().err
