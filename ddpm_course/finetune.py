"""The update loop shared by the few-step fine-tunings of a course U-Net: easy consistency tuning
(consistency.py) and reflow (flow.py). Each brings its own loss of one batch; the loop brings the rest, as
train.py does for the diffusion loss: Adam at a constant learning rate, gradient clipping, an EMA of the
weights (what is exported and sampled), atomic checkpoints every ``checkpoint_every`` updates with
bit-identical resume, named snapshots at milestones (the end of each ECT stage), and a ``log.jsonl``.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .schedule import NoiseSchedule
from .train import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    describe_machine,
    ema_update,
    load_checkpoint,
    save_checkpoint,
)

RESUMABLE = ("iters", "checkpoint_every", "command")   # what a resumed run may change
# the fields every fine-tuning config has (a dataclass): checked by ``check_config``
COMMON = ("iters", "batch_size", "lr", "grad_clip", "ema_decay", "seed", "checkpoint_every")


def check_config(cfg) -> None:
    """The common fields: positive integers, lr and grad_clip > 0, ema_decay in [0, 1)."""
    for name in ("iters", "batch_size", "checkpoint_every"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name in ("lr", "grad_clip"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {cfg.ema_decay}")


def model_config(net: nn.Module):
    """A network's config as plain values (what checkpoints store to refuse resuming another network)."""
    cfg = getattr(net, "config", None)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else cfg


def run(cfg, kind: str, out: str | Path, net: nn.Module, s: NoiseSchedule, data: tuple[torch.Tensor, ...],
        batch_loss: Callable, *, snapshot: Callable[[int], Path | None] | None = None, resume: bool = False,
        device: torch.device | None = None, progress: bool = True, stop_after: int | None = None,
        desc: str = "fine-tuning") -> Path:
    """Run (or continue) ``cfg.iters`` updates of ``net`` in folder ``out``; returns ``out/last.pt``.

    data: tensors with the same first dimension, indexed together (images and labels; noise and samples).
    batch_loss(net, batch, step, generator) -> (loss, log entries): the loss of one batch at update ``step``.
    snapshot(step) -> a path to save a copy of the checkpoint to after update ``step``, or None.
    stop_after: stop (with a checkpoint) after this many updates of this call (used by tests)."""
    if device is None:
        from . import device as default_device
        device = default_device()
    out, log = Path(out), (lambda msg: print(msg, file=sys.stderr, flush=True))
    last = out / "last.pt"
    if not data or any(d.shape[0] != data[0].shape[0] for d in data):
        raise ValueError("data must be tensors with the same first dimension (one row per example)")
    net = net.to(device).train().requires_grad_(True)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)                                          # dropout inside the network
    model_cfg, step, wall = model_config(net), 0, 0.0
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        if ckpt.get("kind") != kind:
            raise CheckpointError(f"{last} is not a {kind} checkpoint (kind={ckpt.get('kind')!r})")
        saved = ckpt["config"]
        changed = [k for k, v in asdict(cfg).items() if k not in RESUMABLE and saved.get(k) != v]
        if changed or saved.get("model_config") != model_cfg:
            raise CheckpointError(f"--resume with other settings than {last} "
                                  f"({', '.join(changed) or 'network'}); pass the run's own values, or "
                                  "start a new out folder")
        if not torch.equal(ckpt["betas"], s.betas):
            raise CheckpointError(f"{last} was made with another noise schedule")
        net.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"]["data"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        step, wall = ckpt["step"], ckpt["wall_time"]
        log(f"resuming at update {step} of {cfg.iters} ({last})")
    elif resume:
        log(f"--resume: no checkpoint in {out}, starting from the beginning")
    out.mkdir(parents=True, exist_ok=True)

    def state() -> dict:
        config = {**asdict(cfg), "model_config": model_cfg, "schedule": s.name, "T": s.T,
                  "precision": "fp32", "precision_used": "fp32"}
        return {"format": CHECKPOINT_FORMAT, "version": 1, "kind": kind, "step": step, "wall_time": wall,
                "machine": describe_machine(device), "config": config, "betas": s.betas,
                "model": net.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "rng": {"data": gen.get_state(), "torch": torch.get_rng_state()}}

    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.iters, initial=step, disable=not progress, desc=desc, dynamic_ncols=True)
    call_start, wall_start, done_here, smooth = time.perf_counter(), wall, 0, None
    while step < cfg.iters and (stop_after is None or done_here < stop_after):
        idx = torch.randint(0, data[0].shape[0], (cfg.batch_size,), generator=gen)
        batch = tuple(d[idx].to(device) for d in data)
        loss, info = batch_loss(net, batch, step, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, net, cfg.ema_decay, step)
        step, done_here = step + 1, done_here + 1
        lv = loss.item()
        if not math.isfinite(lv):
            raise FloatingPointError(f"loss became {lv} at update {step}; lower the lr")
        smooth = lv if smooth is None else 0.98 * smooth + 0.02 * lv
        bar.set_postfix(loss=f"{smooth:.4f}", **info, refresh=False)
        bar.update(1)
        wall = wall_start + time.perf_counter() - call_start
        if step % 50 == 0 or step == cfg.iters:
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps({"update": step, **info, "loss": round(smooth, 6),
                                    "wall_time": round(wall, 1)}) + "\n")
        if step % cfg.checkpoint_every == 0 or step == cfg.iters or done_here == stop_after:
            save_checkpoint(last, state())
        copy_to = snapshot(step) if snapshot is not None else None
        if copy_to is not None:
            save_checkpoint(copy_to, state())
    bar.close()
    return last


def checkpoint(path: str | Path, kind: str) -> dict:
    """A ``run`` checkpoint, refused with CheckpointError when it is not of ``kind``."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"{path} is not a {kind} checkpoint (kind={ckpt.get('kind')!r})")
    return ckpt


def load(path: str | Path, kind: str, ema: bool = True) -> tuple[nn.Module, dict]:
    """The network in a ``run`` checkpoint of ``kind``: (U-Net in eval mode on the CPU, the run's config)."""
    from .unet import UNet

    ckpt = checkpoint(path, kind)
    net = UNet(ckpt["config"]["model_config"])
    net.load_state_dict(ckpt["ema" if ema else "model"])
    return net.eval().requires_grad_(False), ckpt["config"]


def export(path: str | Path, name: str, section: str, record: dict, extra: dict, *,
           weights_dir: str | Path | None = None, command: str | None = None) -> Path:
    """Ship a fine-tuned model's EMA weights (pretrained.export) as an unconditional model: the manifest gets
    ``extra`` (its sampling recipe, a description, …), ``"unconditional": true`` (tuned with the null label
    only: call it without y) and ``manifest[section]`` = ``record`` (the run's settings) plus the sha256 of
    the shipped weights it started from, ``record["init"]``."""
    from . import pretrained

    record = dict(record)
    if record.get("init") in pretrained.available():
        record["init_sha256"] = pretrained.manifest(record["init"])["sha256"]
    return pretrained.export(path, name, weights_dir=weights_dir, command=command,
                             extra={**extra, section: record, "unconditional": True})
