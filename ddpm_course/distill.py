"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): a sampler of 2N DDIM steps is distilled
into a model that takes N steps, then N/2, … down to 1–4.

Notation of the paper (variance preserving): z_t = α_t x + σ_t ε with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t),
SNR = α_t²/σ_t² and λ_t = log SNR. Careful: samplers.py's σ is the σ-space level √((1 − ᾱ)/ᾱ) = σ_t/α_t.

One round. The student takes N steps t_0 > t_1 > … (then ᾱ = 1); the teacher takes 2N steps, the same
levels with a midpoint t' between each pair:

    z_t = α_t x + σ_t ε,  t = t_i with i uniform                                  (Alg. 2, lines 4–6)
    two teacher DDIM steps t → t' → t'', each  z_s = α_s x̂ + (σ_s/σ_t)(z_t − α_t x̂)   (lines 7–8; §2)
    x̃ = (z_t'' − (σ_t''/σ_t) z_t) / (α_t'' − (σ_t''/σ_t) α_t)                      (line 9)
        the clean prediction with which ONE student DDIM step from z_t lands exactly on z_t''
    L = w(λ_t) ‖x̃ − x̂_θ(z_t)‖²,  w = max(SNR, 1) ("truncated SNR") or SNR + 1       (line 11; §4)

then the student becomes the teacher and N halves (lines 2 and 14–15). Each student starts as a copy of
its teacher. The students predict v = α_t ε − σ_t x (§4): an ε-prediction gives x̂ = (z_t − σ_t ε̂)/α_t,
which multiplies every error by 1/α_t ≈ 157 at t = T on the course's schedule — harmless when a sampler
takes many small steps, fatal for a 1-step sampler. With v, x̂ = α_t z_t − σ_t v̂ and SNR + 1 weighting
is exactly the plain v-loss ‖ṽ − v̂‖².

The loop reuses train.py's checkpoint, EMA and precision helpers: Adam with a learning rate that decays
linearly to 0 within each round, gradient clipping, an EMA of the student (the next round's teacher and
the exported weights), mixed precision for the student (the teacher runs in float32: the target divides
by small numbers), atomic checkpoints with resume, and a checkpoint of every round's student.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .diffusion import PREDICTIONS, eps_to_x0, flow_to_x0, per_sample, v_to_x0
from .finetune import model_config
from .schedule import NoiseSchedule
from .train import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    _autocast,
    ema_update,
    load_checkpoint,
    resolve_precision,
    save_checkpoint,
)
from .unet import timestep_embedding

WEIGHTINGS = ("truncated_snr", "snr_plus_one")
KIND = "progressive-distillation"


# --- the pieces of Algorithm 2 ---------------------------------------------------------------------------
def predict_x0(output: torch.Tensor, z_t: torch.Tensor, ab_t, prediction: str) -> torch.Tensor:
    """The clean prediction x̂ from a model output in any parameterisation (Salimans & Ho §4):
    ε: x̂ = (z_t − σ_t ε̂)/α_t;  x0: x̂ itself;  v: x̂ = α_t z_t − σ_t v̂;  flow (u = ε − x):
    x̂ = (z_t − σ_t û)/(α_t + σ_t)."""
    ab = per_sample(ab_t, z_t)
    if prediction == "eps":
        return eps_to_x0(z_t, output, ab)
    if prediction == "x0":
        return output
    if prediction == "v":
        return v_to_x0(z_t, output, ab)
    if prediction == "flow":
        return flow_to_x0(z_t, output, ab)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def ddim_step(z_t: torch.Tensor, x0_hat: torch.Tensor, ab_t, ab_s) -> torch.Tensor:
    """One deterministic DDIM step from level ᾱ_t to ᾱ_s, written with the clean prediction
    (Salimans & Ho §2; DDIM eq. 12 with η = 0):  z_s = α_s x̂ + (σ_s/σ_t)(z_t − α_t x̂)."""
    a_t, a_s = per_sample(ab_t, z_t), per_sample(ab_s, z_t)
    return a_s.sqrt() * x0_hat + ((1 - a_s) / (1 - a_t)).sqrt() * (z_t - a_t.sqrt() * x0_hat)


def two_ddim_steps(x0_fn, z_t: torch.Tensor, ab_t, ab_mid, ab_next) -> torch.Tensor:
    """The teacher of Algorithm 2 (lines 7–8): two DDIM steps t → t' → t''. ``x0_fn(z, k)`` is the
    teacher's clean prediction at level k (0: ᾱ_t, 1: ᾱ_t'). Returns z_t''."""
    z_mid = ddim_step(z_t, x0_fn(z_t, 0), ab_t, ab_mid)
    return ddim_step(z_mid, x0_fn(z_mid, 1), ab_mid, ab_next)


def distill_target(z_t: torch.Tensor, z_next: torch.Tensor, ab_t, ab_next) -> torch.Tensor:
    """Algorithm 2, line 9: the x̃ with which one DDIM step of the student from z_t lands on the teacher's
    z_t'' = z_next. Solving z_t'' = α_t'' x̃ + (σ_t''/σ_t)(z_t − α_t x̃) for x̃:
        x̃ = (z_t'' − (σ_t''/σ_t) z_t) / (α_t'' − (σ_t''/σ_t) α_t)."""
    a_t, a_n = per_sample(ab_t, z_t), per_sample(ab_next, z_t)
    ratio = ((1 - a_n) / (1 - a_t)).sqrt()                       # σ_t'' / σ_t
    return (z_next - ratio * z_t) / (a_n.sqrt() - ratio * a_t.sqrt())


def loss_weight(ab: torch.Tensor, kind: str = "snr_plus_one") -> torch.Tensor:
    """w(λ_t) of the x-space loss w ‖x̃ − x̂‖² (Salimans & Ho §4), with SNR = ᾱ/(1 − ᾱ):
    "truncated_snr": max(SNR, 1) = the larger of the x-loss and the ε-loss;  "snr_plus_one": SNR + 1,
    which makes the loss ‖ṽ − v̂‖² exactly."""
    if not isinstance(ab, torch.Tensor):
        raise TypeError(f"ab must be a tensor of ᾱ values, got {type(ab).__name__}")
    snr = ab / (1 - ab)
    if kind == "truncated_snr":
        return torch.maximum(snr, torch.ones_like(snr))
    if kind == "snr_plus_one":
        return snr + 1
    raise ValueError(f"kind must be one of {WEIGHTINGS}, got {kind!r}")


@dataclass(frozen=True)
class Halving:
    """The levels of one round. The student's N model timesteps ``t`` and, per step, the teacher's midpoint
    ``t_mid``; ᾱ at t, t' and t'' (``ab_next[-1]`` = 1, the clean sample). Tensors of length N, on the CPU."""

    t: torch.Tensor
    t_mid: torch.Tensor
    ab_t: torch.Tensor
    ab_mid: torch.Tensor
    ab_next: torch.Tensor

    def __len__(self) -> int:
        return self.t.numel()


def halving(s: NoiseSchedule, steps: int, spacing: str = "trailing") -> Halving:
    """The student's ``steps``-step grid and the teacher's 2·steps-step grid, which must contain it: every
    other teacher level is a student level. "trailing" spacing nests for powers of two and starts at
    t = T − 1, where x_T ~ N(0, I) lives; a 1-step "leading" or "linspace" grid would start at t = 0."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= 2 * steps <= s.T:
        raise ValueError(f"steps must be an integer in [1, T/2 = {s.T // 2}] (the teacher takes twice as "
                         f"many), got {steps!r}")
    student, teacher = s.grid(steps, spacing), s.grid(2 * steps, spacing)
    if not student.discrete:
        raise ValueError(f"spacing must give integer timesteps (e.g. 'trailing'), got {spacing!r}")
    if not torch.equal(teacher.ts[0::2], student.ts):
        raise ValueError(f"spacing={spacing!r} does not nest for steps={steps}: the {steps}-step grid is not "
                         f"every other level of the {2 * steps}-step grid; use spacing='trailing'")
    ab = teacher.alpha_bars
    return Halving(t=student.ts, t_mid=teacher.ts[1::2], ab_t=ab[0:-1:2], ab_mid=ab[1::2], ab_next=ab[2::2])


def _call(model, z: torch.Tensor, t: torch.Tensor, y):
    return model(z, t) if y is None else model(z, t, y)


def distill_loss(student, teacher, x0: torch.Tensor, levels: Halving, *, y=None,
                 teacher_prediction: str = "eps", student_prediction: str = "v",
                 weighting: str = "snr_plus_one", generator=None, autocast=None) -> torch.Tensor:
    """The loss of one batch (Algorithm 2, lines 4–11): x0 (B, ...) data, y labels (B,) or None, given to
    teacher and student alike. ``autocast`` (a context manager) wraps the student's forward pass only."""
    B, dev = x0.shape[0], x0.device
    i = torch.randint(0, len(levels), (B,), generator=generator)                 # t = t_i, i uniform (line 4)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(dev)      # line 5
    ab_t, ab_mid, ab_next = levels.ab_t[i], levels.ab_mid[i], levels.ab_next[i]
    t, t_mid = levels.t[i].to(dev), levels.t_mid[i].to(dev)
    a = per_sample(ab_t, x0)
    z_t = a.sqrt() * x0 + (1 - a).sqrt() * eps                                    # line 6
    with torch.no_grad():
        ts, abs_ = (t, t_mid), (ab_t, ab_mid)

        def teacher_x0(z, k):
            return predict_x0(_call(teacher, z, ts[k], y).to(z.dtype), z, abs_[k], teacher_prediction)

        z_next = two_ddim_steps(teacher_x0, z_t, ab_t, ab_mid, ab_next)          # lines 7–8
        x_tilde = distill_target(z_t, z_next, ab_t, ab_next)                      # line 9
    with autocast if autocast is not None else torch.enable_grad():
        out = _call(student, z_t, t, y)
    x_hat = predict_x0(out.to(z_t.dtype), z_t, ab_t, student_prediction)
    w = loss_weight(ab_t, weighting).to(x_hat)                                    # line 11
    return (w * (x_tilde - x_hat).pow(2).flatten(1).mean(1)).mean()


# --- the loop --------------------------------------------------------------------------------------------
@dataclass
class DistillConfig:
    """Everything that defines a distillation run. Plain values only: it is stored in each checkpoint."""

    teacher_steps: int = 256          # DDIM steps of the first teacher; the first student takes half
    final_steps: int = 1              # steps of the last student; rounds halve teacher_steps down to it
    iters: int = 4000                 # updates per round
    first_round_iters: int = 0        # updates of the first round (0: iters); it also learns the new output
    batch_size: int = 128
    lr: float = 1e-4                  # Adam; decays linearly to 0 within each round
    grad_clip: float = 1.0
    ema_decay: float = 0.999          # 0: no EMA (the student itself becomes the next teacher)
    teacher_prediction: str = "eps"   # what the first teacher outputs (the shipped U-Net: ε)
    student_prediction: str = "v"     # what the students output
    weighting: str = "snr_plus_one"
    label_dropout: float = 0.5        # a label becomes the null label with this probability
    spacing: str = "trailing"
    precision: str = "auto"           # of the student; the teacher always runs in float32
    seed: int = 0
    checkpoint_every: int = 500
    data: str = "mnist_subset"        # a name from data.DATASETS (used when no data is passed)
    teacher: str = ""                 # where the first teacher came from, for the record
    command: str = ""                 # the command line that started the run, for the record

    def validate(self) -> None:
        for name in ("teacher_steps", "final_steps", "iters", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        ratio = self.teacher_steps // self.final_steps
        if self.teacher_steps % self.final_steps or ratio < 2 or ratio & (ratio - 1):
            raise ValueError(f"teacher_steps must be final_steps × 2^k with k >= 1, got teacher_steps="
                             f"{self.teacher_steps}, final_steps={self.final_steps}")
        if not isinstance(self.first_round_iters, int) or self.first_round_iters < 0:
            raise ValueError(f"first_round_iters must be an integer >= 0, got {self.first_round_iters!r}")
        for name in ("teacher_prediction", "student_prediction"):
            if getattr(self, name) not in PREDICTIONS:
                raise ValueError(f"{name} must be one of {PREDICTIONS}, got {getattr(self, name)!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if not 0.0 <= self.label_dropout <= 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1], got {self.label_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.lr > 0 or not self.grad_clip > 0:
            raise ValueError(f"need lr > 0 and grad_clip > 0, got lr={self.lr}, grad_clip={self.grad_clip}")
        resolve_precision(self.precision, torch.device("cpu"))

    def rounds(self) -> list[int]:
        """The students' step counts, one per round: teacher_steps/2, teacher_steps/4, …, final_steps."""
        out, n = [], self.teacher_steps // 2
        while n >= self.final_steps:
            out.append(n)
            n //= 2
        return out

    def iters_in_round(self, r: int) -> int:
        return self.first_round_iters if r == 0 and self.first_round_iters else self.iters


def student_path(out: str | Path, steps: int) -> Path:
    """Where ``distill`` saves the student of the round that ends with ``steps`` steps."""
    return Path(out) / f"student_{steps:04d}steps.pt"


def distill(cfg: DistillConfig, out: str | Path, teacher, s: NoiseSchedule, data: tuple | None = None, *,
            student: nn.Module | None = None, resume: bool = False, device: torch.device | None = None,
            progress: bool = True, stop_after: int | None = None) -> Path:
    """Run (or continue) progressive distillation in folder ``out``; returns the path of the last checkpoint.

    teacher: the first teacher, any model callable ``teacher(x, t[, y])`` whose output is
    ``cfg.teacher_prediction`` — the shipped U-Net, or an exact oracle from ``dc.toy``.
    student: the network the first student starts from; default a copy of the teacher (Alg. 2, line 2).
    data: ``(x, labels or None)``; default ``data.load(cfg.data, "train")``. Labels are passed to teacher and
    student alike when the student has an integer ``null_label`` (each becomes the null label with
    probability ``cfg.label_dropout``, so the student also learns the unconditional model).
    stop_after: stop (with a checkpoint) after this many updates of *this call* (used by tests).
    Each round's final EMA student is saved as ``student_path(out, steps)``.
    """
    cfg.validate()
    if device is None:
        from . import device as default_device
        device = default_device()
    if student is None:
        if not isinstance(teacher, nn.Module):
            raise TypeError("teacher is not an nn.Module (e.g. an exact oracle): pass the network the first "
                            "student starts from as student=")
        student = copy.deepcopy(teacher)
    rounds = cfg.rounds()
    for n in rounds:                                                    # fail now, not after hours
        halving(s, n, cfg.spacing)
    if isinstance(teacher, nn.Module):
        teacher = teacher.to(device).eval()                             # no dropout in the teacher
    out, log = Path(out), (lambda msg: print(msg, file=sys.stderr, flush=True))
    last = out / "last.pt"

    student = student.to(device).train().requires_grad_(True)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    teacher_net = copy.deepcopy(student).eval().requires_grad_(False)  # the teacher of rounds 2, 3, …
    precision = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    gen = torch.Generator().manual_seed(cfg.seed)                       # data, t, ε and labels
    torch.manual_seed(cfg.seed)                                         # dropout inside the student
    model_cfg = model_config(student)
    r, k, step, wall, opt = 0, 0, 0, 0.0, None

    def new_optimizer():
        return torch.optim.Adam(student.parameters(), lr=cfg.lr)

    if resume and last.exists():
        ckpt = load_checkpoint(last)
        if ckpt.get("kind") != KIND:
            raise CheckpointError(f"{last} is not a distillation checkpoint (kind={ckpt.get('kind')!r})")
        saved = ckpt["config"]
        if saved["rounds"] != rounds or saved.get("model_config") != model_cfg:
            raise CheckpointError(f"{last} was made with other rounds or another network (rounds "
                                  f"{saved['rounds']} vs {rounds}); start a new out folder")
        if not torch.equal(ckpt["betas"], s.betas):
            raise CheckpointError(f"{last} was made with another noise schedule")
        r, k, step, wall = ckpt["round"], ckpt["round_iter"], ckpt["step"], ckpt["wall_time"]
        student.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        if ckpt["teacher"] is not None:
            teacher_net.load_state_dict(ckpt["teacher"])
        opt = new_optimizer()
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        gen.set_state(ckpt["rng"]["data"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        log(f"resuming round {r + 1}/{len(rounds)} ({rounds[r]} steps) at update {k} ({last})")
    elif resume:
        log(f"--resume: no checkpoint in {out}, starting from the beginning")
    out.mkdir(parents=True, exist_ok=True)

    if data is None:
        from .data import load
        data = load(cfg.data, "train")
    x_all, y_all = data
    null = getattr(student, "null_label", None)
    conditional = isinstance(null, int) and not isinstance(null, bool) and y_all is not None

    def state() -> dict:
        config = {**asdict(cfg), "rounds": rounds, "model_config": model_cfg, "precision_used": precision,
                  "schedule": s.name, "T": s.T}
        return {"format": CHECKPOINT_FORMAT, "version": 1, "kind": KIND, "step": step, "round": r,
                "round_iter": k, "steps": rounds[r], "wall_time": wall, "config": config, "betas": s.betas,
                "model": student.state_dict(), "ema": ema.state_dict(),
                "teacher": teacher_net.state_dict() if r > 0 else None,
                "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                "rng": {"data": gen.get_state(), "torch": torch.get_rng_state()}}

    from tqdm.auto import tqdm
    total = sum(cfg.iters_in_round(j) for j in range(len(rounds)))
    done_before = sum(cfg.iters_in_round(j) for j in range(r)) + k
    bar = tqdm(total=total, initial=done_before, disable=not progress, desc="distill", dynamic_ncols=True)
    call_start, wall_start, done_here, smooth = time.perf_counter(), wall, 0, None
    while r < len(rounds) and (stop_after is None or done_here < stop_after):
        n_iters, levels = cfg.iters_in_round(r), halving(s, rounds[r], cfg.spacing)
        teacher_r = teacher if r == 0 else teacher_net
        teacher_pred = cfg.teacher_prediction if r == 0 else cfg.student_prediction
        if k == 0:                                                      # a new round (Alg. 2, line 2)
            if r > 0:
                teacher_net.load_state_dict(ema.state_dict())           # the last student is the teacher
                student.load_state_dict(teacher_net.state_dict())       # θ ← η
            ema.load_state_dict(student.state_dict())
            opt, smooth = new_optimizer(), None
        if isinstance(teacher_r, nn.Module):
            teacher_r.eval()
        while k < n_iters and (stop_after is None or done_here < stop_after):
            idx = torch.randint(0, x_all.shape[0], (cfg.batch_size,), generator=gen)
            x0 = x_all[idx].to(device)
            y = None
            if conditional:
                y = y_all[idx].clone().long()
                y[torch.rand(cfg.batch_size, generator=gen) < cfg.label_dropout] = null
                y = y.to(device)
            for g in opt.param_groups:                                  # linear decay to 0 within the round
                g["lr"] = cfg.lr * (1 - k / n_iters)
            loss = distill_loss(student, teacher_r, x0, levels, y=y, teacher_prediction=teacher_pred,
                                student_prediction=cfg.student_prediction, weighting=cfg.weighting,
                                generator=gen, autocast=_autocast(precision, device))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            ema_update(ema, student, cfg.ema_decay, k)
            k, step, done_here = k + 1, step + 1, done_here + 1
            lv = loss.item()
            if not math.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} in round {r + 1} at update {k}; lower the lr or "
                                         "use precision='fp32'")
            smooth = lv if smooth is None else 0.98 * smooth + 0.02 * lv
            bar.set_postfix(steps=rounds[r], loss=f"{smooth:.4f}", refresh=False)
            bar.update(1)                               # redraws at most every 0.1 s: no flood of messages
            wall = wall_start + time.perf_counter() - call_start
            if k % 50 == 0 or k == n_iters:
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps({"round": r + 1, "steps": rounds[r], "update": k,
                                        "loss": round(smooth, 6), "lr": opt.param_groups[0]["lr"],
                                        "wall_time": round(wall, 1)}) + "\n")
            if k % cfg.checkpoint_every == 0 or k == n_iters or done_here == stop_after:
                save_checkpoint(last, state())
        if k == n_iters:                                                # the round is done
            save_checkpoint(student_path(out, rounds[r]), state())
            log(f"round {r + 1}/{len(rounds)} done: a {rounds[r]}-step student"
                + (f", loss {smooth:.5f}" if smooth is not None else ""))
            r, k = r + 1, 0
    bar.close()
    return last


# --- using the students ----------------------------------------------------------------------------------
def load_student(path: str | Path, net: nn.Module | None = None) -> tuple[nn.Module, int, str]:
    """The EMA student saved in a distillation checkpoint: ``(model in eval mode on the CPU, steps,
    prediction)``. Sample it with ``dc.sample(model, s, x_T, sampler="ddim", steps=steps,
    spacing="trailing", prediction=prediction)``. ``net``: a network of the same architecture to load the
    weights into (default: a U-Net built from the stored config)."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != KIND:
        raise CheckpointError(f"{path} is not a distillation checkpoint (kind={ckpt.get('kind')!r})")
    if net is None:
        from .unet import UNet
        net = UNet(ckpt["config"]["model_config"])
    else:
        net = copy.deepcopy(net).cpu()
    net.load_state_dict(ckpt["ema"])
    return net.eval().requires_grad_(False), int(ckpt["steps"]), ckpt["config"]["student_prediction"]


def export_student(checkpoint: str | Path, name: str, weights_dir: str | Path | None = None,
                   command: str | None = None) -> Path:
    """Ship a distilled U-Net like the other weights (``pretrained.export``), adding to the manifest how to
    sample it: ``"sampling": {"sampler": "ddim", "steps": N, "spacing": ..., "prediction": ...}``."""
    from .pretrained import export

    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    if ckpt.get("kind") != KIND:
        raise CheckpointError(f"{checkpoint} is not a distillation checkpoint (kind={ckpt.get('kind')!r})")
    if cfg["schedule"] not in ("linear", "cosine"):
        raise ValueError(f"only the named schedules can be shipped (linear, cosine), got {cfg['schedule']!r}")
    path = export(checkpoint, name, weights_dir, command)
    meta = json.loads(path.read_text())
    meta["sampling"] = {"sampler": "ddim", "steps": int(ckpt["steps"]), "spacing": cfg["spacing"],
                        "prediction": cfg["student_prediction"]}
    keys = ("teacher", "teacher_steps", "rounds", "iters", "first_round_iters", "lr", "weighting",
            "label_dropout")
    meta["distillation"] = {k: cfg[k] for k in keys}
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


MEASURED = ("benchmarks/results/distill_mnist.json", "docs/figures/07_mnist_students.png")


def measured_results(start: str | Path | None = None) -> tuple[dict | None, Path | None]:
    """The course's measured MNIST distillation (``benchmarks/distill_mnist.py evaluate``), each file looked
    up from ``start`` (default: the current folder) upwards, as from notebooks/ in a checkout of the course:
    (the contents of ``benchmarks/results/distill_mnist.json``, the path of
    ``docs/figures/07_mnist_students.png``), None for a file that is not there (a pip install without the
    repository)."""
    here = Path(start) if start is not None else Path.cwd()
    found = [next((f / rel for f in (here, *here.parents) if (f / rel).is_file()), None) for rel in MEASURED]
    return (json.loads(found[0].read_text()) if found[0] is not None else None), found[1]


class Comparison(NamedTuple):
    """A distilled student against the best training-free sampler at the same NFE (FID: lower is better)."""

    nfe: int
    student_fid: float
    best_other_label: str
    best_other_fid: float
    delta: float                      # student_fid − best_other_fid: negative when the student is better

    @property
    def relative(self) -> float:
        """delta as a fraction of the best other sampler's FID (−0.2: the student's FID is 20 % lower)."""
        return self.delta / self.best_other_fid if self.best_other_fid > 0 else math.nan


def compare_rows(rows: list[dict]) -> list[Comparison]:
    """For each NFE with both a distilled student and a training-free sampler among ``rows`` (the records
    of ``benchmarks/distill_mnist.py evaluate``: dicts with ``sampler``, ``nfe``, ``fid``), the student's FID
    against the lowest FID of the other samplers at that NFE, sorted by NFE. A row is a student's when its
    ``sampler`` label contains "student" (the best one counts if there are several); rows without a finite
    FID are ignored."""
    by_nfe: dict[int, tuple[list[dict], list[dict]]] = {}
    for row in rows:
        if not math.isfinite(float(row["fid"])):
            continue
        students, others = by_nfe.setdefault(int(row["nfe"]), ([], []))
        (students if "student" in row["sampler"].lower() else others).append(row)
    out = []
    for nfe, (students, others) in sorted(by_nfe.items()):
        if students and others:
            st = min(students, key=lambda r: float(r["fid"]))
            best = min(others, key=lambda r: float(r["fid"]))
            out.append(Comparison(nfe, float(st["fid"]), best["sampler"], float(best["fid"]),
                                  float(st["fid"]) - float(best["fid"])))
    return out


# --- a small network for the 2-D toy data ----------------------------------------------------------------
class ToyMLP(nn.Module):
    """ε/x₀/v network for 2-D points: [x, sinusoidal embedding of t] → ``layers`` SiLU layers → 2 outputs.
    Unconditional; t may be an integer or a float tensor (B,)."""

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, emb_dim: int = 32):
        super().__init__()
        self.config = {"dim": dim, "hidden": hidden, "layers": layers, "emb_dim": emb_dim}
        sizes = [dim + emb_dim] + [hidden] * layers
        body = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            body += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*body, nn.Linear(hidden, dim))
        self.emb_dim = emb_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        emb = timestep_embedding(t, self.emb_dim).to(x)                 # (B, emb_dim)
        return self.net(torch.cat([x, emb], dim=1))                     # (B, dim)


def fit_to_oracle(net: nn.Module, oracle, s: NoiseSchedule, x_data: torch.Tensor, iters: int = 2000,
                  batch_size: int = 512, lr: float = 5e-3, prediction: str = "v", generator=None,
                  progress: bool = False) -> list[float]:
    """Train ``net`` to reproduce an exact oracle's prediction (converted to ``prediction``) at uniform t —
    a stand-in for "the trained diffusion model" on toy data: regression on E[ε | x_t] instead of the noisy
    ε of DDPM's loss, so it converges in seconds. Adam, learning rate decaying linearly to 0. Returns the
    losses."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    losses = []
    for k in tqdm(range(iters), disable=not progress, desc="fit"):
        x0 = x_data[torch.randint(0, x_data.shape[0], (batch_size,), generator=generator)]
        t = torch.randint(0, s.T, (batch_size,), generator=generator)
        ab = per_sample(s.alpha_bars[t], x0)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        with torch.no_grad():
            eps = oracle(x_t, t).to(x0)
            x0_hat = eps_to_x0(x_t, eps, ab)
            target = {"eps": eps, "x0": x0_hat, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0_hat,
                      "flow": eps - x0_hat}[prediction]
        for g in opt.param_groups:
            g["lr"] = lr * (1 - k / iters)
        loss = (net(x_t, t) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
