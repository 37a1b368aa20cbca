"""Progressive distillation (ddpm_course.distill): the target equals two teacher DDIM steps (checked against
the package's DDIM sampler and a closed form with the exact Gaussian denoiser), a round brings the student
close to the two-step teacher on toy data, and the loop resumes bit-identically from its checkpoints."""

import json
import math

import pytest
import torch

import ddpm_course as dc
from ddpm_course import distill as D
from ddpm_course.samplers import EpsModel, ddim_sample
from ddpm_course.schedule import Grid
from ddpm_course.train import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint

S = dc.NoiseSchedule.linear(1000)
CPU = torch.device("cpu")


def _teacher_by_sampler(model, z, t, t_mid, ab_t, ab_mid, ab_next):
    """Two DDIM steps t → t' → t'' with the package's sampler (DDIM eq. 12, η = 0) on a hand-made grid."""
    ab = torch.tensor([ab_t, ab_mid, ab_next], dtype=torch.float64)
    grid = Grid(ts=torch.tensor([t, t_mid]), alpha_bars=ab, discrete=True)
    return ddim_sample(EpsModel(model, grid, z), z, grid)


def _gaussian_x0(mean, std, z, ab):
    """Exact E[x | z] for x ~ N(mean, std²), z = α x + σ ε:  mean + std² α/(α² std² + σ²) (z − α mean)."""
    a, s2 = math.sqrt(ab), std**2
    return mean + s2 * a / (ab * s2 + 1 - ab) * (z - a * mean)


# --- the target -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 4, 16])
def test_one_student_step_with_the_target_lands_on_the_two_step_teacher(steps):
    oracle = dc.toy.GaussianOracle(S, mean=0.5, std=0.7)
    lv = D.halving(S, steps)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(steps), dtype=torch.float64) * 1.3
    for i in range(steps):
        ab_t, ab_mid, ab_next = (float(v[i]) for v in (lv.ab_t, lv.ab_mid, lv.ab_next))
        z2 = _teacher_by_sampler(oracle, z, int(lv.t[i]), int(lv.t_mid[i]), ab_t, ab_mid, ab_next)
        x_tilde = D.distill_target(z, z2, ab_t, ab_next)
        if ab_next < 1:
            one_step = D.ddim_step(z, x_tilde, ab_t, ab_next)            # the student's single DDIM step
            torch.testing.assert_close(one_step, z2, rtol=0, atol=1e-9)
        else:                                                             # last step: z'' is the clean sample
            torch.testing.assert_close(x_tilde, z2, rtol=0, atol=1e-9)


def test_target_closed_form_with_the_exact_gaussian_teacher():
    """With the linear teacher x̂(z) = E[x | z], x̃ = (a x̂(z_t') + b x̂(z_t)) / (a + b) where
    a = α'' − σ'' α'/σ' and b = σ''(α'/σ' − α/σ): a convex combination of the teacher's two predictions."""
    mean, std = 0.5, 0.7
    oracle = dc.toy.GaussianOracle(S, mean=mean, std=std)
    lv = D.halving(S, 8)
    z = torch.randn(32, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for i in range(8):
        ab = [float(v[i]) for v in (lv.ab_t, lv.ab_mid, lv.ab_next)]
        al, sg = [math.sqrt(v) for v in ab], [math.sqrt(1 - v) for v in ab]
        x1 = _gaussian_x0(mean, std, z, ab[0])
        z_mid = al[1] * x1 + sg[1] / sg[0] * (z - al[0] * x1)
        x2 = _gaussian_x0(mean, std, z_mid, ab[1])
        a = al[2] - sg[2] * al[1] / sg[1]
        b = sg[2] * (al[1] / sg[1] - al[0] / sg[0])
        assert a > 0 and b >= 0
        expected = (a * x2 + b * x1) / (a + b)
        z2 = _teacher_by_sampler(oracle, z, int(lv.t[i]), int(lv.t_mid[i]), *ab)
        torch.testing.assert_close(D.distill_target(z, z2, ab[0], ab[2]), expected, rtol=1e-8, atol=1e-8)


def test_two_ddim_steps_with_the_oracle_equals_the_sampler():
    oracle = dc.toy.MixtureOracle.eight_gaussians(S)
    lv = D.halving(S, 4)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    i = 1
    ts, abs_ = (lv.t[i].expand(50), lv.t_mid[i].expand(50)), (float(lv.ab_t[i]), float(lv.ab_mid[i]))

    def x0_fn(x, k):
        return D.predict_x0(oracle(x, ts[k]), x, abs_[k], "eps")

    got = D.two_ddim_steps(x0_fn, z, float(lv.ab_t[i]), float(lv.ab_mid[i]), float(lv.ab_next[i]))
    want = _teacher_by_sampler(oracle, z, int(lv.t[i]), int(lv.t_mid[i]), float(lv.ab_t[i]),
                               float(lv.ab_mid[i]), float(lv.ab_next[i]))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_target_is_the_constant_when_the_teacher_predicts_a_constant():
    c = torch.tensor([[0.3, -1.2]], dtype=torch.float64).expand(10, 2)
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for ab_t, ab_mid, ab_next in [(0.01, 0.2, 0.5), (4e-5, 0.3, 1.0), (0.9, 0.95, 0.99)]:
        z2 = D.two_ddim_steps(lambda x, k: c, z, ab_t, ab_mid, ab_next)
        torch.testing.assert_close(D.distill_target(z, z2, ab_t, ab_next), c, rtol=0, atol=1e-9)


def test_per_sample_levels_broadcast_like_scalars():
    z, z2 = (torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(k)) for k in (0, 1))
    ab_t, ab_n = torch.tensor([0.01, 0.3, 0.6], dtype=torch.float64), torch.tensor([0.2, 0.7, 1.0],
                                                                                    dtype=torch.float64)
    both = D.distill_target(z, z2, ab_t, ab_n)
    for j in range(3):
        torch.testing.assert_close(both[j:j + 1], D.distill_target(z[j:j + 1], z2[j:j + 1], float(ab_t[j]),
                                                                   float(ab_n[j])))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_predict_x0_inverts_each_parameterisation(prediction):
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g,
                                                                               dtype=torch.float64)
    ab = torch.tensor([1e-3, 0.2, 0.7, 0.99], dtype=torch.float64)
    a, s = ab.sqrt()[:, None], (1 - ab).sqrt()[:, None]
    z = a * x0 + s * eps
    out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]
    torch.testing.assert_close(D.predict_x0(out, z, ab, prediction), x0)
    with pytest.raises(ValueError, match="prediction must be one of"):
        D.predict_x0(out, z, ab, "score")


def test_loss_weights():
    ab = torch.tensor([1e-4, 0.2, 0.5, 0.8, 0.999], dtype=torch.float64)
    snr = ab / (1 - ab)
    torch.testing.assert_close(D.loss_weight(ab, "snr_plus_one"), snr + 1)
    torch.testing.assert_close(D.loss_weight(ab, "truncated_snr"), torch.tensor([1.0, 1.0, 1.0, 4.0, 999.0],
                                                                                dtype=torch.float64))
    # SNR + 1 turns the x-loss into the v-loss: (1 + SNR) ‖x̃ − x̂‖² = ‖ṽ − v̂‖² since x = α z − σ v
    z, v1, v2 = (torch.randn(5, 2, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
                 for k in range(3))
    x1, x2 = D.predict_x0(v1, z, ab, "v"), D.predict_x0(v2, z, ab, "v")
    torch.testing.assert_close(D.loss_weight(ab) * (x1 - x2).pow(2).sum(1), (v1 - v2).pow(2).sum(1))
    with pytest.raises(ValueError, match="truncated_snr"):
        D.loss_weight(ab, "snr")
    with pytest.raises(TypeError, match="ab must be a tensor"):
        D.loss_weight(0.5)


# --- the grids ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 32, 128, 256, 500])
def test_halving_nests_the_student_grid_in_the_teachers(steps):
    lv = D.halving(S, steps)
    student, teacher = S.grid(steps, "trailing"), S.grid(2 * steps, "trailing")
    assert torch.equal(lv.t, student.ts) and torch.equal(lv.t_mid, teacher.ts[1::2])
    assert torch.equal(lv.ab_t, student.alpha_bars[:-1]) and torch.equal(lv.ab_next, student.alpha_bars[1:])
    assert float(lv.ab_next[-1]) == 1.0 and int(lv.t[0]) == S.T - 1
    assert bool((lv.ab_t < lv.ab_mid).all()) and bool((lv.ab_mid < lv.ab_next).all())
    assert len(lv) == steps


def test_halving_rejects_bad_arguments():
    with pytest.raises(ValueError, match="does not nest.*trailing"):
        D.halving(S, 4, "leading")
    with pytest.raises(ValueError, match="integer timesteps"):
        D.halving(S, 4, "karras")
    with pytest.raises(ValueError, match="spacing must be one of"):
        D.halving(S, 4, "cosine")
    for bad in (0, 501, 2.0, True):
        with pytest.raises(ValueError, match="steps must be an integer"):
            D.halving(S, bad)


def test_config_rounds_and_validation():
    assert D.DistillConfig(teacher_steps=256, final_steps=1).rounds() == [128, 64, 32, 16, 8, 4, 2, 1]
    assert D.DistillConfig(teacher_steps=16, final_steps=4).rounds() == [8, 4]
    cfg = D.DistillConfig(iters=10, first_round_iters=30)
    assert [cfg.iters_in_round(r) for r in range(3)] == [30, 10, 10]
    bad = [dict(teacher_steps=12, final_steps=4), dict(teacher_steps=4, final_steps=4), dict(iters=0),
           dict(student_prediction="score"), dict(weighting="snr"), dict(label_dropout=1.5),
           dict(ema_decay=1.0), dict(lr=0.0), dict(precision="fp8")]
    for kw in bad:
        with pytest.raises(ValueError, match=next(iter(kw))):
            D.DistillConfig(**kw).validate()


# --- the loss and the loop ------------------------------------------------------------------------------
class _Recorder(torch.nn.Module):
    """A ToyMLP that takes (and records) class labels, with a null label like the course's U-Net."""

    def __init__(self, null_label=8):
        super().__init__()
        self.mlp, self.null_label, self.seen = D.ToyMLP(hidden=16), null_label, []
        self.config = {"recorder": 16}

    def forward(self, x, t, y=None):
        self.seen.append(None if y is None else y.clone())
        return self.mlp(x, t)


def test_labels_reach_teacher_and_student_alike():
    oracle = dc.toy.MixtureOracle.eight_gaussians(S)
    calls = []

    def teacher(x, t, y=None):
        calls.append(None if y is None else y.clone())
        return oracle(x, t, y)

    x0, y = oracle.sample(12, generator=torch.Generator().manual_seed(0))
    student = _Recorder()
    D.distill_loss(student, teacher, x0, D.halving(S, 2), y=y, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 2 and all(torch.equal(c, y) for c in calls) and torch.equal(student.seen[0], y)


@pytest.mark.parametrize(("dropout", "allowed"), [(1.0, {8}), (0.0, set(range(8)))])
def test_distill_passes_data_labels_with_dropout_to_the_null_label(tmp_path, dropout, allowed):
    oracle = dc.toy.MixtureOracle.eight_gaussians(S)
    x, y = oracle.sample(64, generator=torch.Generator().manual_seed(0))
    student = _Recorder()
    cfg = D.DistillConfig(teacher_steps=2, final_steps=1, iters=2, batch_size=16, label_dropout=dropout)
    D.distill(cfg, tmp_path, oracle, S, (x, y), student=student, device=CPU, progress=False)
    seen = torch.cat([s for s in student.seen if s is not None])
    assert len(seen) == 32 and set(seen.tolist()) <= allowed


def test_a_round_brings_the_student_close_to_the_two_step_teacher(tmp_path):
    """One round, 1-step student, 2-step exact teacher on the eight-Gaussians mixture. Before: the fitted
    network's own 1-step DDIM collapses every sample towards the mean; after: it follows the teacher."""
    torch.manual_seed(0)
    oracle = dc.toy.MixtureOracle.eight_gaussians(S)
    g = torch.Generator().manual_seed(0)
    x_data = oracle.sample(4000, generator=g)[0]
    net = D.ToyMLP(hidden=64)
    D.fit_to_oracle(net, oracle, S, x_data, iters=200, batch_size=256, generator=g)
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    teacher = dc.sample(oracle, S, x_T, "ddim", steps=2, spacing="trailing")

    def error(model):
        x = dc.sample(model.eval(), S, x_T, "ddim", steps=1, spacing="trailing", prediction="v")
        return float((x - teacher).pow(2).sum(1).mean().sqrt())

    before = error(net)
    cfg = D.DistillConfig(teacher_steps=2, final_steps=1, iters=200, batch_size=256, lr=1e-3, ema_decay=0.0)
    D.distill(cfg, tmp_path, oracle, S, (x_data, None), student=net, device=CPU, progress=False)
    student, steps, prediction = D.load_student(D.student_path(tmp_path, 1), net=net)
    after = error(student)
    assert steps == 1 and prediction == "v"
    print(f"1-step error to the 2-step teacher: before {before:.3f}, after {after:.3f}")
    assert after < 0.4 * before, (before, after)


def _toy_run(out, stop_after=None, resume=False, **kw):
    torch.manual_seed(123)                          # the network's initial weights
    oracle = dc.toy.MixtureOracle.eight_gaussians(S)
    x = oracle.sample(256, generator=torch.Generator().manual_seed(0))[0]
    cfg = D.DistillConfig(teacher_steps=4, final_steps=1, iters=4, batch_size=16, checkpoint_every=2,
                          lr=1e-3, ema_decay=0.9, **kw)
    return D.distill(cfg, out, oracle, S, (x, None), student=D.ToyMLP(hidden=16), device=CPU, progress=False,
                     stop_after=stop_after, resume=resume)


@pytest.mark.parametrize("stop", [3, 4, 6])            # mid-round, at a round's end, in the last round
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, stop):
    _toy_run(tmp_path / "a")
    _toy_run(tmp_path / "b", stop_after=stop)
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ck["step"] == stop and ck["kind"] == D.KIND
    _toy_run(tmp_path / "b", resume=True)
    for steps in (2, 1):
        a, b = (load_checkpoint(D.student_path(tmp_path / r, steps)) for r in "ab")
        assert a["steps"] == b["steps"] == steps
        for key in ("ema", "model"):
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), (steps, key, name)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [(e["round"], e["steps"], e["update"]) for e in log] == [(1, 2, 4), (2, 1, 4)]


def test_resume_refuses_another_run(tmp_path):
    _toy_run(tmp_path, stop_after=2)
    with pytest.raises(CheckpointError, match="other rounds"):
        oracle = dc.toy.MixtureOracle.eight_gaussians(S)
        cfg = D.DistillConfig(teacher_steps=8, final_steps=1, iters=4, batch_size=16)
        D.distill(cfg, tmp_path, oracle, S, (torch.zeros(4, 2), None), student=D.ToyMLP(hidden=16),
                  device=CPU, progress=False, resume=True)
    save_checkpoint(tmp_path / "train.pt", {"format": CHECKPOINT_FORMAT, "step": 1})
    with pytest.raises(CheckpointError, match="not a distillation checkpoint"):
        D.load_student(tmp_path / "train.pt")


def test_an_oracle_teacher_needs_a_student_network(tmp_path):
    oracle = dc.toy.GaussianOracle(S)
    with pytest.raises(TypeError, match="student="):
        D.distill(D.DistillConfig(teacher_steps=2, final_steps=1, iters=1), tmp_path, oracle, S,
                  (torch.zeros(4, 2), None), device=CPU, progress=False)


def test_unet_student_is_exported_and_sampled(tmp_path):
    """The default path of the MNIST run: a class-conditional U-Net teacher (ε), the student a copy of it
    (v), exported like the shipped weights with how to sample it."""
    torch.manual_seed(0)
    teacher = dc.UNet("tiny").eval()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.arange(8) % 10
    cfg = D.DistillConfig(teacher_steps=2, final_steps=1, iters=2, batch_size=2, checkpoint_every=1,
                          teacher="tiny (random)")
    D.distill(cfg, tmp_path / "run", teacher, S, (x, y), device=CPU, progress=False)
    path = D.export_student(D.student_path(tmp_path / "run", 1), "tiny_distilled", weights_dir=tmp_path / "w")
    meta = json.loads(path.read_text())
    assert meta["sampling"] == {"sampler": "ddim", "steps": 1, "spacing": "trailing", "prediction": "v"}
    assert meta["distillation"]["rounds"] == [1] and meta["schedule"] == {"schedule": "linear", "T": 1000}
    state = dc.pretrained.load_state_dict("tiny_distilled", tmp_path / "w")
    student, steps, prediction = D.load_student(D.student_path(tmp_path / "run", 1))
    assert all(torch.equal(state[k], v) for k, v in student.state_dict().items())
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out, info = dc.sample(student, S, x_T, "ddim", steps=steps, spacing="trailing", prediction=prediction,
                          y=torch.tensor([3, 10]), return_info=True)
    assert out.shape == x_T.shape and info.nfe == 1 and bool(torch.isfinite(out).all())


# --- reading the evaluation ------------------------------------------------------------------------------
def test_compare_rows_picks_the_best_training_free_sampler_at_each_nfe():
    rows = [
        {"sampler": "teacher DDIM (trailing)", "nfe": 1, "fid": 90.0},
        {"sampler": "teacher DPM-Solver++(2M) (karras)", "nfe": 1, "fid": 80.0},
        {"sampler": "distilled student (DDIM, trailing)", "nfe": 1, "fid": 60.0},
        {"sampler": "teacher DDIM (trailing)", "nfe": 2, "fid": 40.0},
        {"sampler": "teacher DPM-Solver++(2M) (trailing)", "nfe": 2, "fid": 30.0},
        {"sampler": "distilled student (DDIM, trailing)", "nfe": 2, "fid": 36.0},
        {"sampler": "teacher DDIM (trailing)", "nfe": 4, "fid": 20.0},           # no student at NFE 4
        {"sampler": "teacher DDIM (trailing), first teacher", "nfe": 8, "fid": 5.0},
        {"sampler": "distilled student (DDIM, trailing)", "nfe": 16, "fid": 9.0},  # no other sampler
        {"sampler": "teacher DPM-Solver++(2M) (karras)", "nfe": 2, "fid": float("nan")},
    ]
    out = D.compare_rows(rows)
    assert [c.nfe for c in out] == [1, 2]
    one, two = out
    assert one == D.Comparison(1, 60.0, "teacher DPM-Solver++(2M) (karras)", 80.0, -20.0)
    assert one.relative == pytest.approx(-0.25)
    assert two.best_other_label == "teacher DPM-Solver++(2M) (trailing)"
    assert two.delta == pytest.approx(6.0) and two.relative == pytest.approx(0.2)


def test_compare_rows_on_nothing_to_compare():
    assert D.compare_rows([]) == []
    assert D.compare_rows([{"sampler": "teacher DDIM (trailing)", "nfe": 1, "fid": 9.0}]) == []


def test_measured_results_are_found_from_a_subfolder_or_reported_absent(tmp_path):
    nb = tmp_path / "course" / "notebooks"
    nb.mkdir(parents=True)
    assert D.measured_results(nb) == (None, None)                 # a pip install: neither file
    results = tmp_path / "course" / "benchmarks" / "results"
    results.mkdir(parents=True)
    record = {"n": 1000, "seed": 0, "real_vs_real_fid": 1.0, "rows": [], "command": "python ..."}
    (results / "distill_mnist.json").write_text(json.dumps(record))
    assert D.measured_results(nb) == (record, None)
    figure = tmp_path / "course" / "docs" / "figures" / "07_mnist_students.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    assert D.measured_results(nb) == (record, figure)
