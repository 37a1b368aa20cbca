"""Training ε_θ with DDPM's simple loss (Ho et al. 2020, Algorithm 1 / eq. 14).

    repeat: x_0 ~ data, t ~ Uniform{1…T}, ε ~ N(0, I);  step on ∇_θ ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖²

plus the engineering every real run needs: AdamW with a short linear warm-up, then a constant learning
rate (so a run can be stopped at any checkpoint) or a cosine decay to zero at the last step, optional
min-SNR-γ loss weighting (Hang et al. 2023), gradient clipping, an exponential moving average (EMA)
of the weights (the weights one samples with), label dropout to the null label for classifier-free
guidance (Ho & Salimans 2022), mixed precision, atomic checkpoints with resume, and DDP under torchrun.

Checkpoints hold only tensors and plain Python values, so they load with ``torch.load(weights_only=True)``:
a foreign pickle can never run code.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .diffusion import min_snr_weight, simple_loss
from .schedule import NoiseSchedule
from .unet import UNet, get_config

CHECKPOINT_FORMAT = "ddpm-course-checkpoint"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LR_SCHEDULES = ("constant", "cosine")
LOSS_WEIGHTINGS = ("simple", "min_snr")


class CheckpointError(ValueError):
    """A file that is not a readable ddpm-course checkpoint."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Plain values only: it is stored inside each checkpoint."""

    model: str | dict = "mnist"      # a name from unet.CONFIGS or a config dict
    data: str = "mnist_subset"       # a name from data.DATASETS
    steps: int = 4000
    batch_size: int = 128            # global batch (split over DDP ranks)
    lr: float = 5e-4
    warmup: int = 200                # linear warm-up steps, then lr_schedule
    lr_schedule: str = "constant"    # constant, or cosine: ½(1 + cos(π·progress)) down to 0 at `steps`
    loss_weighting: str = "simple"   # simple (eq. 14) or min_snr: w_t = min(SNR_t, γ)/SNR_t
    min_snr_gamma: float = 5.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.1       # probability that a label becomes the null label (CFG training)
    precision: str = "auto"          # auto: bf16/fp16 on CUDA, fp32 elsewhere
    seed: int = 0
    checkpoint_every: int = 500
    keep_every: int = 0              # > 0: also keep snap_<step>.pt (EMA weights) every this many steps
    sample_every: int = 0            # 0: a sample grid at every checkpoint; < 0: never
    schedule: str = "linear"         # linear (DDPM) or cosine
    T: int = 1000
    command: str = ""                # the command line that started the run (for the record)
    init_from: str = ""              # fine-tune from these weights (shipped name, .pt, .safetensors)
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "T"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if not 0.0 <= self.label_dropout <= 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1], got {self.label_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        for name in ("lr", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        from .data import DATASETS
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {tuple(DATASETS)}, got {self.data!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}")
        if not self.min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {self.min_snr_gamma!r}")
        if not isinstance(self.keep_every, int) or isinstance(self.keep_every, bool) or self.keep_every < 0:
            raise ValueError(f"keep_every must be an integer >= 0, got {self.keep_every!r}")
        if not isinstance(self.init_from, str):
            raise ValueError(f"init_from must be a string (a shipped model name or a weights file), "
                             f"got {self.init_from!r}")
        get_config(self.model)


def initial_weights(cfg: TrainConfig, model_cfg) -> dict:
    """The state dict a fine-tuning run (``init_from``) starts from, refused before any training step
    when its model config or noise schedule differs from the run's."""
    from .cli import check_weights, load_weights

    try:
        check_weights(cfg.init_from)
    except ValueError as e:
        raise ValueError(str(e).replace("--weights", "init_from")) from None
    model, s = load_weights(cfg.init_from, device=torch.device("cpu"))
    if model.config.to_dict() != model_cfg.to_dict():
        raise ValueError(f"init_from {cfg.init_from} is a {model.config.to_dict()} U-Net; the run's --config "
                         f"is {model_cfg.to_dict()}")
    want = make_schedule(cfg)
    if s.T != want.T or not torch.allclose(s.betas, want.betas):
        raise ValueError(f"init_from {cfg.init_from} was trained on another noise schedule than the run's "
                         f"({cfg.schedule}, T={cfg.T})")
    return model.state_dict()


def make_schedule(cfg: dict | TrainConfig) -> NoiseSchedule:
    cfg = cfg if isinstance(cfg, dict) else asdict(cfg)
    if cfg.get("schedule", "linear") == "cosine":
        return NoiseSchedule.cosine(T=cfg.get("T", 1000))
    return NoiseSchedule.linear(T=cfg.get("T", 1000))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of update number step + 1: linear warm-up over cfg.warmup steps, then constant
    or a cosine decay, lr · ½(1 + cos(π (step − warmup)/(steps − warmup))), reaching 0 at cfg.steps."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    if cfg.lr_schedule == "constant" or step < cfg.warmup:
        return cfg.lr * warm
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# --- EMA ---------------------------------------------------------------------------------------------
@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """θ_ema ← d θ_ema + (1 − d) θ with a warm-up d = min(decay, (1 + n)/(10 + n)), so early steps
    are not dominated by the random initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1 - d)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


# --- precision ---------------------------------------------------------------------------------------
def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def _autocast(precision: str, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


# --- checkpoints -------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write atomically: a temp file in the same folder, then os.replace (a crash leaves the old file).
    A failed write (a full disk, say) removes its temp file, keeps the previous checkpoint and says why."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        full = isinstance(err, OSError) and err.errno == errno.ENOSPC or "unexpected pos" in str(err)
        if full:
            kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written yet"
            raise OSError(errno.ENOSPC, f"no space left on device writing {path} ({kept}; free some space, "
                                        "then --resume)") from None
        raise


def remove_stale_temp_files(out: Path) -> list[Path]:
    """Temp files of saves that a crash or a kill interrupted (.NAME.tmp-PID): removed at the next start."""
    stale = sorted(out.glob(".*.tmp-*")) if out.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class RunLocked(RuntimeError):
    """Another trainer holds the run folder."""


@contextlib.contextmanager
def run_lock(out: Path):
    """One trainer per run folder: an exclusive, non-blocking lock on OUT/.lock, held while training. The
    operating system releases it when the process ends, so a crashed or killed run never leaves it behind."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    with open(path, "a+") as f:
        try:
            _lock(f)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunLocked(f"out: {out} is in use by another trainer ({holder}); wait for it to finish or "
                            "choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            _unlock(f)


if sys.platform == "win32":  # pragma: no cover - the course's CI is Linux
    import msvcrt

    def _lock(f):
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f):
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(f):
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(f):
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# Settings a resumed run may change: how long it runs and how often it writes; anything else would make the
# run a different experiment than its checkpoints say.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_every", "sample_every", "command")


def check_resume(ckpt: dict, cfg: TrainConfig, model_cfg, path: Path) -> None:
    """Refuse, before any weights load, to resume a checkpoint with another model or other settings."""
    needed = ("step", "wall_time", "model", "ema", "optimizer", "scaler", "rng")
    missing = [k for k in needed if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it lacks {', '.join(missing)} (a weights snapshot, "
                              "not a full checkpoint?)")
    old = ckpt["config"]
    if old.get("model_config") != model_cfg.to_dict():
        raise CheckpointError(f"{path} was trained with a different model config (--config "
                              f"{old.get('model')!r}, now {cfg.model!r}); start a new --out")
    changed = [f"{k}: {old[k]!r} -> {v!r}" for k, v in asdict(cfg).items()
               if k in old and k not in RESUMABLE_CHANGES and old[k] != v]
    if changed:
        raise CheckpointError(f"--resume with other training settings than {path} ({'; '.join(changed)}); "
                              "pass the run's own values, or start a new --out")


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with weights_only=True; a missing, truncated or foreign file raises
    CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable ddpm-course checkpoint (truncated, corrupt "
                              f"or holding objects that weights_only refuses): {first[:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a ddpm-course checkpoint (no "
                              f"format={CHECKPOINT_FORMAT!r} entry)")
    return ckpt


def model_from_checkpoint(ckpt: dict, ema: bool = True) -> UNet:
    """The U-Net stored in a checkpoint (EMA weights by default), in eval mode on the CPU."""
    key = "ema" if ema else "model"
    config = ckpt.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model_config"), dict) or key not in ckpt:
        raise CheckpointError(f"this checkpoint has no model config or no {key!r} weights: not a checkpoint "
                              "of ddpm-course train")
    model = UNet(config["model_config"])
    model.load_state_dict(ckpt[key])
    return model.eval()


def describe_machine(device: torch.device, world: int = 1) -> str:
    """Where a run trains, for the record: device, processes, threads, CPU count, torch version."""
    import platform

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    return (f"{dev} ({device.type}), {world} process(es) × {torch.get_num_threads()} thread(s), "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}")


# --- the loop ----------------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, data: tuple | None = None,
          device: torch.device | None = None, progress: bool = True, stop_after: int | None = None,
          return_models: bool = False):
    """Train (or continue) a run in folder ``out``; returns the path of the last checkpoint.

    data: optional ``(x in [-1, 1], labels)`` tensors; default ``data.load(cfg.data, "train")``.
    stop_after: stop (with a checkpoint) after this many steps of *this call* (used by tests).
    return_models: return ``(path, model, ema)`` instead of the path alone.
    Under torchrun (WORLD_SIZE > 1) each process trains on its share of the batch and DDP averages
    the gradients; rank 0 writes checkpoints and grids. The run folder is locked while training (run_lock):
    a second trainer on the same ``out`` is refused.
    """
    cfg.validate()
    out = Path(out)
    if _dist_info()[1] != 0:
        return _train(cfg, out, resume, data, device, progress, stop_after, return_models)
    with run_lock(out):
        for p in remove_stale_temp_files(out):
            print(f"removed {p.name}, left by an interrupted save", file=sys.stderr)
        return _train(cfg, out, resume, data, device, progress, stop_after, return_models)


def _train(cfg, out, resume, data, device, progress, stop_after, return_models):
    world, rank, local_rank = _dist_info()
    if device is None:
        from . import device as default_device
        device = default_device()
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    last = out / "last.pt"
    main = rank == 0
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if main else (lambda msg: None)

    model_cfg = get_config(cfg.model)
    torch.manual_seed(cfg.seed)                                    # the same initial weights on every rank
    model = UNet(model_cfg).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    precision = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    s = make_schedule(cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)  # data, t, ε and label dropout
    torch.manual_seed(cfg.seed + 7919 * rank)                      # dropout inside the model
    step, wall = 0, 0.0

    if not resume and last.exists():
        raise ValueError(f"out: {out} already holds a run (last.pt); pass --resume to continue it, or choose "
                         "a new --out")
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        check_resume(ckpt, cfg, model_cfg, last)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, wall = ckpt["step"], ckpt["wall_time"]
        if main:
            gen.set_state(ckpt["rng"]["data"])
            torch.set_rng_state(ckpt["rng"]["torch"])
        else:  # other ranks: a fresh, rank- and step-dependent stream
            gen.manual_seed(cfg.seed + 7919 * rank + 104729 * step)
            torch.manual_seed(cfg.seed + 7919 * rank + 104729 * step)
        log(f"resuming from step {step} ({last})")
    elif resume:
        log(f"--resume: no checkpoint in {out}, starting from step 0")
    if step == 0 and cfg.init_from:                                # fine-tuning: θ and θ_ema start alike
        init = initial_weights(cfg, model_cfg)
        model.load_state_dict(init)
        ema.load_state_dict(init)
        log(f"starting from the weights of {cfg.init_from}")
    if main:
        out.mkdir(parents=True, exist_ok=True)

    if data is None:
        from .data import load
        data = load(cfg.data, "train")
    x_all, y_all = data
    if tuple(x_all.shape[1:]) != (model_cfg.in_channels, model_cfg.image_size, model_cfg.image_size):
        raise ValueError(f"data shape {tuple(x_all.shape[1:])} does not fit the model config "
                         f"({model_cfg.in_channels}, {model_cfg.image_size}, {model_cfg.image_size})")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    per_rank = cfg.batch_size // world
    conditional = model_cfg.num_classes is not None

    machine = describe_machine(device, world)

    def header() -> dict:
        return {"format": CHECKPOINT_FORMAT, "version": 1, "step": step, "wall_time": wall,
                "machine": machine,
                "config": {**asdict(cfg), "model_config": model_cfg.to_dict(), "precision_used": precision}}

    def state() -> dict:
        return {**header(), "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                "rng": {"data": gen.get_state(), "torch": torch.get_rng_state()}}

    def snapshot() -> dict:
        """EMA weights only: enough for model_from_checkpoint and a learning-curve evaluation."""
        return {**header(), "images_seen": step * cfg.batch_size, "ema": ema.state_dict()}

    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), desc="train",
               dynamic_ncols=True)
    call_start, wall_start, done_here, smooth = time.perf_counter(), wall, 0, None
    rate_t0, rate_n = call_start, 0
    model.train()
    while step < cfg.steps and (stop_after is None or done_here < stop_after):
        idx = torch.randint(0, x_all.shape[0], (per_rank,), generator=gen)
        x0 = x_all[idx].to(device)                                            # (b, C, H, W)
        y = None
        if conditional:
            y = y_all[idx].clone()
            drop = torch.rand(per_rank, generator=gen) < cfg.label_dropout
            y[drop] = model.null_label                                        # CFG: learn p(x) too
            y = y.to(device)
        t = torch.randint(0, s.T, (per_rank,), generator=gen)                 # uniform t (eq. 14)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        for g in opt.param_groups:                                            # warm-up, then schedule
            g["lr"] = learning_rate(cfg, step)
        w = min_snr_weight(t, s, cfg.min_snr_gamma) if cfg.loss_weighting == "min_snr" else None
        with _autocast(precision, device):
            loss = simple_loss(net, x0, s, y=y, t=t, noise=noise, weight=w)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss.float()).backward()
        scaler.unscale_(opt)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        ema_update(ema, model, cfg.ema_decay, step)
        step, done_here, rate_n = step + 1, done_here + 1, rate_n + 1
        lv = loss.item()
        if not math.isfinite(lv):
            raise FloatingPointError(f"loss became {lv} at step {step}; lower --lr or use --precision fp32")
        smooth = lv if smooth is None else 0.98 * smooth + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{smooth:.4f}")
        wall = wall_start + time.perf_counter() - call_start
        if main and (step % 50 == 0 or step == cfg.steps):
            rate = rate_n * cfg.batch_size / (time.perf_counter() - rate_t0)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "loss": round(smooth, 5),
                                    "grad_norm": round(float(grad_norm), 4), "lr": opt.param_groups[0]["lr"],
                                    "images_seen": step * cfg.batch_size,
                                    "img_per_s": round(rate, 1), "wall_time": round(wall, 1)}) + "\n")
        at_end = step == cfg.steps or (stop_after is not None and done_here == stop_after)
        keep = cfg.keep_every > 0 and step % cfg.keep_every == 0                 # learning-curve snapshot
        if step % cfg.checkpoint_every == 0 or at_end or keep:
            if main:
                save_checkpoint(last, state())
                if keep:
                    save_checkpoint(out / f"snap_{step:06d}.pt", snapshot())
                every = cfg.sample_every or cfg.checkpoint_every
                if cfg.sample_every >= 0 and (step % every == 0 or at_end):
                    save_grid(ema, s, out / f"samples_{step:06d}.png", conditional, device)
            if world > 1:
                dist.barrier()
            rate_t0, rate_n = time.perf_counter(), 0  # the img/s figure excludes checkpoint and grid time
    bar.close()
    if world > 1:
        dist.barrier()
    log(f"finished at step {step}; checkpoint {last}")
    return (last, model, ema) if return_models else last


@torch.no_grad()
def save_grid(model: nn.Module, s: NoiseSchedule, path: Path, conditional: bool, device, n: int = 20,
              steps: int = 50) -> None:
    """A grid of n samples from the EMA model (DDIM, 50 steps; labels 0…9 twice when conditional)."""
    try:
        from .samplers import sample
    except ImportError as err:
        print(f"[train] no sample grid: samplers unavailable ({err})", file=sys.stderr)
        return
    from torchvision.utils import save_image
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(n, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(device)
    y = (torch.arange(n) % cfg.num_classes).to(device) if conditional else None
    x0 = sample(model, s, x_T, sampler="ddim", steps=min(steps, s.T), y=y)
    save_image((x0.clamp(-1, 1) + 1) / 2, path, nrow=10)
