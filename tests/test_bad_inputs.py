"""The catalogue of bad inputs and faults a new user meets (issue 15), so each stays fixed: every one gets a
ValueError/TypeError (API) or a one-line error with exit status 1 (CLI) that names the argument and what is
allowed, before any long work starts; nothing is silently cast, clamped or flattened. Plus the faults of a
real run: a second trainer on a run folder, resuming with other settings, a full disk, a planted pickle, and
exercise checks facing a function that hangs or changes global state."""

from __future__ import annotations

import errno
import os
import pickle
import time

import pytest
import torch

import ddpm_course as dc
from ddpm_course import checks, cli, data, pretrained, train
from ddpm_course.schedule import NoiseSchedule
from ddpm_course.train import CheckpointError, RunLocked, TrainConfig
from ddpm_course.unet import UNet

S = NoiseSchedule.linear(1000)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return UNet("tiny").eval()


def zero_model(x, t, y=None):
    return torch.zeros_like(x)


def x_T(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1)).to(dtype)


# --- dc.sample --------------------------------------------------------------------------------------------
SAMPLE_CASES = {
    "x_T wrong image size": (dict(x_T=(2, 1, 14, 14)), ValueError, r"x_T must have shape \(B, 1, 28, 28\)"),
    "x_T wrong channels": (dict(x_T=(2, 3, 28, 28)), ValueError, r"x_T must have shape \(B, 1, 28, 28\)"),
    "x_T empty batch": (dict(x_T=(0, 1, 28, 28)), ValueError, "x_T must be a non-empty batch"),
    "x_T one image without batch": (dict(x_T=(28,)), ValueError, "x_T must be a non-empty batch"),
    "x_T integer": (dict(x_T_dtype=torch.int64), TypeError, "x_T must be a floating-point tensor"),
    "x_T on another device": (dict(x_T_device="meta"), ValueError, "x_T is on meta but the model is on cpu"),
    "guidance NaN": (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be a finite number"),
    "guidance negative": (dict(guidance_scale=-1.0), ValueError, "guidance_scale must be a finite number >="),
    "guidance string": (dict(guidance_scale="2"), ValueError, "guidance_scale must be a finite number"),
    "guidance without labels": (dict(guidance_scale=2.0, y=None), ValueError, "needs class labels y"),
    "generator an int": (dict(generator=0), TypeError, "generator must be a torch.Generator"),
    "generator a string": (dict(generator="seed"), TypeError, "generator must be a torch.Generator"),
    "unknown sampler": (dict(sampler="rk4"), ValueError, "sampler must be one of"),
    "unknown spacing": (dict(spacing="cubic"), ValueError, "spacing must be one of"),
    "zero steps": (dict(steps=0), ValueError, r"steps must be an integer in \[1, T=1000\]"),
    "too many steps": (dict(steps=1001), ValueError, r"steps must be an integer in \[1, T=1000\]"),
    "eta negative": (dict(eta=-0.5), ValueError, "eta must be a number >= 0"),
    "eta NaN": (dict(eta=float("nan")), ValueError, "eta must be a number >= 0"),
    "eta with heun": (dict(sampler="heun", eta=0.5), ValueError, "eta applies only to sampler='ddim'"),
    "variance with ddim": (dict(variance="fixed_large"), ValueError, "variance applies only to sampler="),
    "unknown variance": (dict(sampler="ddpm", variance="learned"), ValueError, "variance must be one of"),
    "unknown prediction": (dict(prediction="score"), ValueError, "prediction must be one of"),
    "labels float": (dict(y=torch.zeros(2)), ValueError, r"y must be an integer tensor of shape \(B,\)"),
    "labels wrong length": (dict(y=torch.zeros(3, dtype=torch.long)), ValueError, "y must be an integer"),
    "generator replays x_T": (dict(generator="same", sampler="ddim", eta=0.5), ValueError,
                              "its first draw equals x_T"),
}


@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_sample_refuses(tiny, case):
    kw, error, message = SAMPLE_CASES[case]
    kw = dict(kw)
    shape = kw.pop("x_T", (2, 1, 28, 28))
    xt = x_T(*shape, dtype=kw.pop("x_T_dtype", torch.float32)) if "x_T_device" not in kw else \
        torch.empty(shape, device=kw.pop("x_T_device"))
    if kw.get("generator") == "same":
        xt = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
        kw["generator"] = torch.Generator().manual_seed(5)
    kw.setdefault("y", torch.arange(2))
    kw.setdefault("steps", 2)
    calls = []
    hook = tiny.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(error, match=message):
            dc.sample(tiny, S, xt, **kw)
    finally:
        hook.remove()
    assert calls == [], "the model ran before the bad argument was refused"


def test_a_float64_model_output_keeps_the_sample_in_x_Ts_dtype():
    x = dc.sample(lambda x, t, y=None: torch.zeros_like(x, dtype=torch.float64), S, x_T(2, 4), steps=3)
    assert x.dtype == torch.float32                                   # the docstring's promise


def test_a_float64_x_T_with_a_float32_model_is_float64_throughout(tiny):
    x = dc.sample(lambda x, t, y=None: torch.zeros_like(x), S, x_T(2, 4, dtype=torch.float64), steps=3)
    assert x.dtype == torch.float64


@pytest.mark.parametrize(("output", "error", "message"), [
    (lambda x: torch.zeros_like(x, dtype=torch.long), TypeError, "model must return a floating-point tensor"),
    (lambda x: torch.zeros_like(x, dtype=torch.bool), TypeError, "model must return a floating-point tensor"),
    (lambda x: (x,), TypeError, "model must return a tensor, got tuple"),
    (lambda x: x[:, :2], ValueError, "model output must have the shape of its input x"),
])
def test_a_bad_model_output_is_named(output, error, message):
    with pytest.raises(error, match=message):
        dc.sample(lambda x, t, y=None: output(x), S, x_T(2, 4), steps=2)


# --- schedules --------------------------------------------------------------------------------------------
SCHEDULE_CASES = {
    "cosine s NaN": (lambda: NoiseSchedule.cosine(s=float("nan")), ValueError, "s must be finite"),
    "cosine s zero": (lambda: NoiseSchedule.cosine(s=0.0), ValueError, "s must be > 0"),
    "cosine s string": (lambda: NoiseSchedule.cosine(s="0.008"), TypeError, "s must be a number"),
    "cosine max_beta zero": (lambda: NoiseSchedule.cosine(max_beta=0.0), ValueError, "max_beta must lie"),
    "cosine max_beta 1.5": (lambda: NoiseSchedule.cosine(max_beta=1.5), ValueError, "max_beta must lie"),
    "cosine max_beta NaN": (lambda: NoiseSchedule.cosine(max_beta=float("nan")), ValueError,
                            "max_beta must be finite"),
    "linear beta_start string": (lambda: NoiseSchedule.linear(beta_start="1e-4"), TypeError,
                                 "beta_start must be a number"),
    "linear beta_start NaN": (lambda: NoiseSchedule.linear(beta_start=float("nan")), ValueError,
                              "beta_start must be finite"),
    "linear beta_end one": (lambda: NoiseSchedule.linear(beta_end=1.0), ValueError, "need 0 < beta_start"),
    "linear start above end": (lambda: NoiseSchedule.linear(beta_start=0.1, beta_end=0.01), ValueError,
                               "need 0 < beta_start <= beta_end"),
    "linear T zero": (lambda: NoiseSchedule.linear(T=0), ValueError, "T must be a positive integer"),
    "linear T float": (lambda: NoiseSchedule.linear(T=2.5), ValueError, "T must be a positive integer"),
    "betas 2-D": (lambda: NoiseSchedule(torch.full((10, 2), 0.01)), ValueError, "betas must be 1-D"),
    "betas a string": (lambda: NoiseSchedule("0.01"), TypeError, "betas must be a 1-D sequence of numbers"),
    "betas empty": (lambda: NoiseSchedule([]), ValueError, "at least one value"),
    "betas reach one": (lambda: NoiseSchedule([0.5, 1.0]), ValueError, "strictly between 0 and 1"),
    "betas NaN": (lambda: NoiseSchedule([0.1, float("nan")]), ValueError, "strictly between 0 and 1"),
    "karras rho NaN": (lambda: S.karras_sigmas(10, rho=float("nan")), ValueError, "rho must be finite"),
    "karras rho zero": (lambda: S.karras_sigmas(10, rho=0), ValueError, "rho must be > 0"),
    "karras steps zero": (lambda: S.karras_sigmas(0), ValueError, "steps must be an integer"),
    "timesteps bad spacing": (lambda: S.timesteps(10, "cubic"), ValueError, "spacing must be one of"),
}


@pytest.mark.parametrize("case", sorted(SCHEDULE_CASES))
def test_schedule_refuses(case):
    make, error, message = SCHEDULE_CASES[case]
    with pytest.raises(error, match=message):
        make()


# --- the forward process ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("x0", "noise", "t", "error", "message"), [
    (torch.zeros(2, 4, dtype=torch.long), torch.randn(2, 4), torch.tensor([1, 2]), TypeError,
     "x0 must be a floating-point tensor"),
    (torch.zeros(2, 4, dtype=torch.uint8), torch.randn(2, 4), torch.tensor([1, 2]), TypeError,
     "x0 must be a floating-point tensor"),
    (torch.zeros(2, 4, dtype=torch.bool), torch.randn(2, 4), torch.tensor([1, 2]), TypeError, "x0 must be"),
    (torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.long), torch.tensor([1, 2]), TypeError, "noise must"),
    (torch.zeros(2, 4), torch.randn(2, 5), torch.tensor([1, 2]), ValueError, "noise must have the shape"),
    (torch.zeros(2, 4), torch.randn(2, 4), torch.tensor([1.0, 2.0]), (TypeError, ValueError), "t"),
    (torch.zeros(2, 4), torch.randn(2, 4), torch.tensor([1, 1000]), (TypeError, ValueError), "t"),
])
def test_q_sample_refuses(x0, noise, t, error, message):
    with pytest.raises(error, match=message):
        dc.q_sample(x0, t, noise, S)


# --- training settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(lr=0.0), "lr must be a finite number > 0"),
    (dict(grad_clip=-1.0), "grad_clip must be a finite number > 0"),
    (dict(warmup=-1), "warmup must be an integer >= 0"),
    (dict(warmup=1.5), "warmup must be an integer >= 0"),
    (dict(data="imagenet"), "data must be one of"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(precision="fp8"), "precision must be one of"),
    (dict(label_dropout=1.5), r"label_dropout must lie in \[0, 1\]"),
    (dict(label_dropout=float("nan")), r"label_dropout must lie in \[0, 1\]"),
    (dict(ema_decay=1.0), r"ema_decay must lie in \[0, 1\)"),
    (dict(lr_schedule="step"), "lr_schedule must be one of"),
    (dict(loss_weighting="p2"), "loss_weighting must be one of"),
    (dict(min_snr_gamma=0.0), "min_snr_gamma must be > 0"),
    (dict(keep_every=-1), "keep_every must be an integer >= 0"),
    (dict(model="huge"), "huge"),
])
def test_train_config_refuses(change, message):
    with pytest.raises((ValueError, KeyError), match=message):
        TrainConfig(**{"model": "tiny", "steps": 2, **change}).validate()


# --- a run folder, resume and checkpoints ------------------------------------------------------------------
def tiny_run(tmp_path, steps=2, **kw):
    g = torch.Generator().manual_seed(0)
    xs = (torch.rand(8, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (8,), generator=g))
    cfg = TrainConfig(**{"model": "tiny", "steps": steps, "batch_size": 4, "checkpoint_every": 2,
                         "sample_every": -1, "precision": "fp32", **kw})
    return lambda resume=False, cfg=cfg: train.train(cfg, tmp_path / "run", resume=resume, data=xs,
                                                     device=torch.device("cpu"), progress=False)


def test_a_second_trainer_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    with train.run_lock(out):
        with pytest.raises(RunLocked, match=f"out: {out} is in use by another trainer \\(pid {os.getpid()}"):
            tiny_run(tmp_path)()
    tiny_run(tmp_path)()                                   # released: the run goes ahead


def test_the_lock_of_a_crashed_trainer_does_not_stay(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("pid 999999 on elsewhere")   # the file of a run that died; no lock held
    with train.run_lock(out):
        assert str(os.getpid()) in (out / ".lock").read_text()


def test_a_fresh_start_on_a_used_folder_is_refused(tmp_path):
    tiny_run(tmp_path)()
    with pytest.raises(ValueError, match="already holds a run .*pass --resume"):
        tiny_run(tmp_path)()


def test_resume_with_another_model_is_refused_before_loading(tmp_path, monkeypatch):
    tiny_run(tmp_path)()

    def no_loading(*a, **k):
        raise AssertionError("weights were loaded before the config check")

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", no_loading)
    with pytest.raises(CheckpointError, match="different model config"):
        tiny_run(tmp_path, model="mnist")(resume=True)


@pytest.mark.parametrize(("change", "named"), [(dict(lr=1e-3), "lr: 0.0005 -> 0.001"),
                                                (dict(batch_size=8), "batch_size: 4 -> 8"),
                                                (dict(label_dropout=0.3), "label_dropout: 0.1 -> 0.3")])
def test_resume_names_the_training_settings_that_changed(tmp_path, change, named):
    tiny_run(tmp_path)()
    with pytest.raises(CheckpointError, match=named.replace("(", r"\(")):
        tiny_run(tmp_path, steps=4, **change)(resume=True)


def test_resume_may_extend_the_run(tmp_path):
    tiny_run(tmp_path)()
    last = tiny_run(tmp_path, steps=4)(resume=True)
    assert train.load_checkpoint(last)["step"] == 4


def test_resume_from_a_weights_snapshot_is_refused(tmp_path):
    run = tmp_path / "run"
    tiny_run(tmp_path, keep_every=2)()
    (run / "last.pt").write_bytes((run / "snap_000002.pt").read_bytes())
    with pytest.raises(CheckpointError, match="cannot be resumed: it lacks model, optimizer"):
        tiny_run(tmp_path, keep_every=2, steps=4)(resume=True)


def test_a_checkpoint_with_only_its_format_tag_is_one_clear_error(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"format": train.CHECKPOINT_FORMAT}, path)
    with pytest.raises(CheckpointError, match="no model config"):
        train.model_from_checkpoint(train.load_checkpoint(path))


def test_a_full_disk_says_so_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    train.save_checkpoint(path, {"format": train.CHECKPOINT_FORMAT, "step": 1})
    real_save = torch.save

    def full(obj, f, *a, **k):
        real_save(obj, f, *a, **k)                            # a partial file exists when the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    kept = f"no space left on device writing {path} \\(the previous last.pt is kept"
    with pytest.raises(OSError, match=kept):
        train.save_checkpoint(path, {"format": train.CHECKPOINT_FORMAT, "step": 2})
    assert train.load_checkpoint(path)["step"] == 1
    assert list(tmp_path.glob(".*.tmp-*")) == []


def test_temp_files_of_killed_saves_are_removed_at_the_next_start(tmp_path, capsys):
    run = tmp_path / "run"
    tiny_run(tmp_path)()
    stale = run / ".last.pt.tmp-12345"
    stale.write_bytes(b"x" * 1000)
    tiny_run(tmp_path, steps=4)(resume=True)
    assert not stale.exists() and "removed .last.pt.tmp-12345" in capsys.readouterr().err


# --- exported weights, data files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x y"])
def test_export_refuses_a_name_that_is_not_a_plain_file_name(tmp_path, name):
    with pytest.raises(ValueError, match="name must be a plain file name"):
        pretrained.export(tmp_path / "missing.pt", name, tmp_path / "weights")
    assert not (tmp_path / "weights").exists()


class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_cifar_batch_never_runs_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    for name in data.CIFAR_FILES["train"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": Planted(marker), b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"is not a CIFAR-10 batch: it holds (builtins|io)\.open"):
        data.load("cifar10", "train", root=tmp_path, download=False)
    assert not marker.exists()


def test_a_garbled_cifar_batch_is_one_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in data.CIFAR_FILES["train"]:
        (folder / name).write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="not a readable CIFAR-10 batch"):
        data.load("cifar10", "train", root=tmp_path, download=False)


# --- the command line -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["sample", "--out", "grid.xyz"], "--out must be a .png file, got 'grid.xyz'"),
    (["sample", "--out", "."], "--out must be a .png file, got the folder '.'"),
    (["sample", "--out", "no/such/folder/g.png"], "--out: the folder 'no/such/folder' does not exist"),
    (["sample", "--n", "20000"], "--n must be <= 10,000"),
    (["sample", "--guidance-scale", "nan"], "--guidance-scale must be >= 0"),
    (["sample", "--eta", "-1"], "--eta must be >= 0"),
    (["demo", "--n", "0"], r"--n must lie in \[1, 1000\]"),
    (["demo", "--out", "demo.jpg"], "--out must be a .png file"),
    (["train", "--steps", "2", "--out", "x", "--lr", "nan"], "lr must be a finite number > 0"),
    (["train", "--steps", "2", "--out", "x", "--data", "imagenet"], "data must be one of"),
    (["export", "--checkpoint", "x.pt", "--name", "../evil"], "name must be a plain file name"),
])
def test_cli_refuses_in_one_line_before_any_work(argv, message, monkeypatch, capsys):
    def no_work(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(cli, "load_weights", no_work)
    monkeypatch.setattr(pretrained, "load_pretrained", no_work)
    monkeypatch.setattr(train, "_train", no_work)
    start = time.monotonic()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.replace("\\", "") in err.replace("\\", ""), err
    assert time.monotonic() - start < 5


# --- exercise checks --------------------------------------------------------------------------------------
def test_a_check_stops_a_function_that_hangs(monkeypatch):
    monkeypatch.setattr(checks.framework, "TIME_LIMIT_S", 0.2)   # compare reads it there

    def snr(ab):
        time.sleep(5)
        return ab / (1 - ab)

    start = time.monotonic()
    with pytest.raises(checks.CheckFailed, match="still running after 0.2 s"):
        checks.snr(snr)
    assert time.monotonic() - start < 3


def test_a_check_catches_a_function_that_changes_the_schedule():
    def q_sample(x0, t, noise, s):
        s.alpha_bars.mul_(1.0)                               # a no-op write: not a change
        ab = s.alpha_bars[t].to(x0).view(-1, *[1] * (x0.dim() - 1))
        s.betas[0] = 0.5                                      # a real change
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    with pytest.raises(checks.CheckFailed, match=r"changed its argument 4 \(the NoiseSchedule's tensors\)"):
        checks.q_sample(q_sample)
    assert float(S.betas[0]) == pytest.approx(1e-4)           # the course's schedules were never touched


def test_a_check_catches_and_undoes_a_change_of_the_default_dtype():
    def snr(ab):
        torch.set_default_dtype(torch.float64)
        return ab / (1 - ab)

    try:
        with pytest.raises(checks.CheckFailed, match="changed torch's default dtype"):
            checks.snr(snr)
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(torch.float32)
