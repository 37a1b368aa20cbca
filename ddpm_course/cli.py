"""The ``ddpm-course`` command: train, export, sample, demo, build-notebooks.

Every sub-command ends with a one-line error and exit status 1 on a bad file or value (argparse
itself exits with status 2 on an unknown flag), never with a traceback.
"""

from __future__ import annotations

import argparse
import functools
import math
import shlex
import sys
import time
from pathlib import Path

import torch


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag or value ends with one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default (argparse's own formatter, without "(default: None)")."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    from .samplers import SAMPLERS
    from .schedule import SPACINGS

    samplers, spacings = ", ".join(SAMPLERS), ", ".join(SPACINGS)
    p = _Parser(prog="ddpm-course", description="ddpm-course: train, sample and demo.", formatter_class=_Help)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_Help)

    t = sub.add_parser("train", help="train a U-Net with the simple loss (resumable; torchrun for DDP)")
    t.add_argument("--config", default="mnist", help="U-Net config: mnist, cifar10 or tiny")
    t.add_argument("--data", default=None,
                   help="mnist_subset (bundled, default for mnist/tiny), mnist, fashion_mnist, cifar10")
    t.add_argument("--steps", type=int, required=True, help="optimiser steps to train for")
    t.add_argument("--batch-size", type=int, default=128, help="images per optimiser step")
    t.add_argument("--out", required=True, help="run folder (checkpoints, grids, log.jsonl)")
    t.add_argument("--checkpoint-every", type=int, default=500, help="write OUT/last.pt every N steps")
    t.add_argument("--sample-every", type=int, default=0, help="0: at each checkpoint, -1: never")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (AdamW)")
    t.add_argument("--warmup", type=int, default=200, help="linear warm-up steps to the peak rate")
    t.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                   help="after the warm-up: constant, or cosine decay to 0 at --steps")
    t.add_argument("--loss-weighting", default="simple", choices=["simple", "min_snr"],
                   help="simple: DDPM eq. 14; min_snr: weight min(SNR, gamma)/SNR (Hang et al. 2023)")
    t.add_argument("--min-snr-gamma", type=float, default=5.0, help="gamma of --loss-weighting min_snr")
    t.add_argument("--keep-every", type=int, default=0,
                   help="also keep OUT/snap_STEP.pt (EMA weights) every K steps, for a learning curve")
    t.add_argument("--ema-decay", type=float, default=0.999, help="decay of the EMA weights one samples with")
    t.add_argument("--label-dropout", type=float, default=0.1,
                   help="fraction of labels replaced by the null label (classifier-free guidance)")
    t.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="auto: bf16 (fp16 without bf16 support) on CUDA, fp32 elsewhere")
    t.add_argument("--seed", type=int, default=0, help="seed of the data order, noise and initial weights")
    t.add_argument("--init-from", default="",
                   help="fine-tune: start from a shipped model's weights (or a .pt / .safetensors file) "
                        "instead of random ones")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    sm = sub.add_parser("sample", help="draw samples into an image grid")
    sm.add_argument("--weights", default="mnist",
                    help="a shipped diffusion model (ddpm-course sample --list) or a .pt checkpoint / "
                         ".safetensors file")
    sm.add_argument("--list", action="store_true", help="list the shipped diffusion models and exit")
    sm.add_argument("--sampler", default="ddim", help=f"one of {samplers}")
    sm.add_argument("--steps", type=int, default=50, help="sampling steps (>= 1)")
    sm.add_argument("--spacing", default="leading", help=f"time steps: one of {spacings}")
    sm.add_argument("--eta", type=float, default=0.0, help="DDIM's η (>= 0; ddim only)")
    sm.add_argument("--n", type=int, default=64, help="number of samples")
    sm.add_argument("--out", default="grid.png", help="the image grid (PNG)")
    sm.add_argument("--scale", type=int, default=3, help="draw each pixel as an S×S block")
    sm.add_argument("--seed", type=int, default=0, help="seed of x_T and the sampler's noise")
    sm.add_argument("--label", default=None,
                    help="a class index, 'all' (cycle through the classes) or 'none' (unconditional); "
                         "default 'all', or 'none' for a shipped model tuned without labels (its manifest "
                         "says \"unconditional\": true)")
    sm.add_argument("--guidance-scale", type=float, default=1.0,
                    help="classifier-free guidance scale s = 1 + w (1 = off)")
    sm.add_argument("--x0-clip", default="none", choices=["none", "static", "dynamic"],
                    help="keep the predicted x0 in [-1, 1]: clip (static) or Imagen's thresholding (dynamic)")

    d = sub.add_parser("demo",
                       help="offline: DDPM (1000) vs DDIM (50) vs DPM-Solver++ (10) on the shipped model")
    d.add_argument("--n", type=int, default=16, help="digits per sampler")
    d.add_argument("--out", default="ddpm_course_demo.png", help="the figure (PNG)")
    d.add_argument("--seed", type=int, default=0, help="seed of x_T, the same for every sampler")

    sub.add_parser("build-notebooks", help="build (or --check) the notebooks; see docs/authoring.md",
                   add_help=False)

    e = sub.add_parser("export", help="EMA weights of a checkpoint -> ddpm_course/weights/NAME.safetensors")
    e.add_argument("--checkpoint", required=True, help="a training checkpoint (.pt) of ddpm-course train")
    e.add_argument("--name", required=True, help="name of the exported weights (dc.load_pretrained(NAME))")
    e.add_argument("--weights-dir", default=None, help="default: the package's weights folder")
    e.add_argument("--sampler", default=None, help="sampling recipe to record, e.g. dpmpp_2m")
    e.add_argument("--sampling-steps", type=int, default=None, help="steps of that recipe")
    e.add_argument("--spacing", default=None, help="its spacing: leading, trailing, linspace or karras")
    return p


def cmd_train(a) -> int:
    from .train import TrainConfig, train

    data = a.data or ("cifar10" if a.config == "cifar10" else "mnist_subset")
    cfg = TrainConfig(model=a.config, data=data, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                      warmup=a.warmup, lr_schedule=a.lr_schedule, loss_weighting=a.loss_weighting,
                      min_snr_gamma=a.min_snr_gamma, keep_every=a.keep_every, ema_decay=a.ema_decay,
                      label_dropout=a.label_dropout,
                      precision=a.precision, seed=a.seed, checkpoint_every=a.checkpoint_every,
                      sample_every=a.sample_every, init_from=a.init_from,
                      command=shlex.join(["ddpm-course", *a.argv]))
    last = train(cfg, a.out, resume=a.resume, progress=not a.no_progress)
    print(last)
    return 0


def cmd_export(a) -> int:
    from .pretrained import export
    from .samplers import SAMPLERS
    from .schedule import SPACINGS

    extra = None
    if a.sampler is not None:
        if a.sampler not in SAMPLERS:
            raise ValueError(f"--sampler must be one of {sorted(SAMPLERS)}, got {a.sampler!r}")
        if a.sampling_steps is None or a.sampling_steps < 1:
            raise ValueError("--sampler needs --sampling-steps N with N >= 1")
        if a.spacing is not None and a.spacing not in SPACINGS:
            raise ValueError(f"--spacing must be one of {SPACINGS}, got {a.spacing!r}")
        extra = {"sampling": {"sampler": a.sampler, "steps": a.sampling_steps,
                              **({"spacing": a.spacing} if a.spacing else {})}}
    elif a.sampling_steps is not None or a.spacing is not None:
        raise ValueError("--sampling-steps and --spacing describe a recipe: give --sampler too")
    path = export(a.checkpoint, a.name, a.weights_dir, command=shlex.join(["ddpm-course", *a.argv]),
                  extra=extra)
    print(path)
    return 0


def load_weights(weights: str, device=None):
    """(model, schedule) from a shipped name, a training checkpoint (.pt) or a .safetensors file with
    its .json manifest next to it."""
    from . import device as default_device
    from . import pretrained
    from .train import load_checkpoint, make_schedule, model_from_checkpoint

    check_weights(weights)
    device = device or default_device()
    path = Path(weights)
    if weights in pretrained.available("unet"):
        return pretrained.load_pretrained(weights, device=device)
    if path.suffix == ".safetensors":
        model, s = pretrained.load_pretrained(path.stem, device=device, weights_dir=path.parent)
        return model, s
    ckpt = load_checkpoint(path)                      # check_weights: otherwise an existing checkpoint file
    return model_from_checkpoint(ckpt).to(device), make_schedule(ckpt["config"])


def _summary(meta: dict) -> str:
    """One line about shipped weights: the first sentence of the description, and how to sample them."""
    text = meta.get("description", "").split(". ")[0].split(": ")[0]
    if "distillation" in meta:
        text = f"progressive-distillation student of {meta['distillation'].get('teacher', '?')}"
    recipe = meta.get("sampling")
    if recipe:
        how = " ".join(f"--{k} {v}" for k, v in recipe.items() if k in ("sampler", "steps", "spacing"))
        text += f" (sample with {how})"
    return text


def check_weights(weights: str) -> None:
    """Refuse, before anything loads, weights that are neither a shipped diffusion model nor a file."""
    from . import pretrained

    if weights in pretrained.available("unet") or Path(weights).is_file():
        return
    models = ", ".join(pretrained.available("unet"))
    if weights in pretrained.available():
        kind = pretrained.manifest(weights).get("kind")
        raise ValueError(f"--weights {weights} is a {kind}, not a diffusion model; those are: {models}")
    if Path(weights).suffix in (".pt", ".pth", ".ckpt", ".safetensors"):
        raise ValueError(f"--weights: {weights} does not exist")
    raise ValueError(f"--weights must be a shipped diffusion model ({models}) or an existing checkpoint "
                     f"(.pt) / .safetensors file, got {weights!r}")


MAX_SAMPLES = 10_000


def _check_out(out: str) -> None:
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out must be a .png file, got the folder {out!r}")
    if path.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png file, got {out!r}")
    if not path.parent.is_dir():
        raise ValueError(f"--out: the folder {str(path.parent)!r} does not exist")


def check_sample_args(a) -> None:
    """Every value of `ddpm-course sample`, checked before the model loads."""
    from .samplers import SAMPLERS
    from .schedule import SPACINGS

    if a.sampler not in SAMPLERS:
        raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {a.sampler!r}")
    if a.spacing not in SPACINGS:
        raise ValueError(f"--spacing must be one of {', '.join(SPACINGS)}, got {a.spacing!r}")
    for flag, value in (("--steps", a.steps), ("--n", a.n), ("--scale", a.scale)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if not a.eta >= 0:
        raise ValueError(f"--eta must be >= 0, got {a.eta}")
    if a.eta != 0 and a.sampler != "ddim":
        raise ValueError(f"--eta applies only to --sampler ddim, got --eta {a.eta} with --sampler "
                         f"{a.sampler}")
    if not a.guidance_scale >= 0:
        raise ValueError(f"--guidance-scale must be >= 0, got {a.guidance_scale}")
    if a.label not in (None, "all", "none") and not a.label.isdigit():
        raise ValueError(f"--label must be 'all', 'none' or an integer class index, got {a.label!r}")
    if a.n > MAX_SAMPLES:
        raise ValueError(f"--n must be <= {MAX_SAMPLES:,} (one grid image), got {a.n:,}")
    _check_out(a.out)
    check_weights(a.weights)


def _labels(label: str, n: int, model) -> torch.Tensor | None:
    if label == "none":
        return None
    classes = getattr(model, "num_classes", None)
    if classes is None:
        raise ValueError(f"--label {label} needs a class-conditional model; this one is unconditional")
    if label == "all":
        return torch.arange(n) % classes
    if not label.isdigit() or not 0 <= int(label) < classes:
        raise ValueError(f"--label must be 'all', 'none' or an integer in [0, {classes - 1}], got {label!r}")
    return torch.full((n,), int(label))


def _draw(model, s, sampler, steps, n, seed, y, guidance_scale=1.0, spacing="leading", eta=0.0,
          progress=False, prediction="eps", x0_clip=None):
    """One batch of samples with its wall time and NFE (same x_T for the same seed)."""
    from .samplers import sample

    cfg = model.config
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(dev)
    start = time.perf_counter()
    x0, info = sample(model, s, x_T, sampler=sampler, steps=steps, eta=eta, spacing=spacing,
                      generator=g, progress=progress, y=None if y is None else y.to(dev),
                      guidance_scale=guidance_scale, prediction=prediction, x0_clip=x0_clip,
                      return_info=True)
    return x0.clamp(-1, 1).cpu(), time.perf_counter() - start, info.nfe


def cmd_sample(a) -> int:
    from torchvision.utils import save_image

    from . import pretrained

    if a.list:
        for name in pretrained.available("unet"):
            print(f"{name:20s} {_summary(pretrained.manifest(name))}".rstrip())
        return 0
    check_sample_args(a)
    shipped = pretrained.manifest(a.weights) if a.weights in pretrained.available("unet") else {}
    if shipped.get("unconditional") and a.label not in (None, "none"):
        raise ValueError(f"--label {a.label}: {a.weights} was tuned without labels (unconditional); use "
                         "--label none")
    label = a.label or ("none" if shipped.get("unconditional") else "all")
    model, s = load_weights(a.weights)
    y = _labels(label, a.n, model)
    prediction = shipped.get("sampling", {}).get("prediction", "eps")       # distilled students predict v
    x0, secs, nfe = _draw(model, s, a.sampler, a.steps, a.n, a.seed, y, a.guidance_scale, a.spacing, a.eta,
                          progress=True, prediction=prediction,
                          x0_clip=None if a.x0_clip == "none" else a.x0_clip)
    nrow = 10 if label == "all" and a.n >= 10 else max(1, math.ceil(math.sqrt(a.n)))
    big = torch.nn.functional.interpolate(x0, scale_factor=a.scale, mode="nearest")     # pixels as blocks
    save_image((big + 1) / 2, a.out, nrow=nrow, padding=2 * a.scale)
    print(f"{a.n} samples, {a.sampler} {a.steps} steps, NFE {nfe}, {secs:.1f} s -> {a.out}")
    return 0


DEMO = [("DDPM", "ddpm", 1000), ("DDIM", "ddim", 50), ("DPM-Solver++(2M)", "dpmpp_2m", 10)]


def cmd_demo(a) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .pretrained import load_pretrained
    from .viz import make_grid

    if not 1 <= a.n <= 1000:
        raise ValueError(f"--n must lie in [1, 1000] (digits per sampler), got {a.n}")
    _check_out(a.out)
    model, s = load_pretrained("mnist")
    y = torch.arange(a.n) % model.num_classes
    calls = sum(steps for _, _, steps in DEMO)
    per_call = _time_one_call(model, a.n, y)
    plan = ", ".join(f"{title} ({steps} steps)" for title, _, steps in DEMO)
    print(f"ddpm-course demo: {a.n} digits (labels 0-9 in turn) from the shipped MNIST model, the same x_T "
          f"for {plan}: {calls} U-Net calls on a batch of {a.n}, about {_duration(calls * per_call)} on "
          f"{next(model.parameters()).device} (one call takes {per_call:.2f} s here; fewer digits: --n)")
    rows = []
    fig, axes = plt.subplots(1, len(DEMO), figsize=(4 * len(DEMO), 5.0))
    for ax, (title, sampler, steps) in zip(axes, DEMO, strict=True):
        x0, secs, nfe = _draw(model, s, sampler, steps, a.n, a.seed, y, progress=True)
        rows.append((title, steps, nfe, secs))
        ax.imshow(make_grid(x0, nrow=math.ceil(math.sqrt(a.n))), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{title}\n{steps} steps, NFE {nfe}, {secs:.1f} s")
        ax.axis("off")
    table = [f"{'sampler':<18}{'steps':>6}{'NFE':>6}{'wall time':>11}"]
    table += [f"{t:<18}{st:>6}{nfe:>6}{secs:>10.1f}s" for t, st, nfe, secs in rows]
    fig.text(0.5, 0.02, "\n".join(table), ha="center", va="bottom", family="monospace", fontsize=9)
    fig.subplots_adjust(bottom=0.25, top=0.88)
    fig.suptitle("Same model, same noise: fewer steps with better solvers")
    fig.savefig(a.out, dpi=110)
    plt.close(fig)
    print("\n".join(table))
    print(f"figure -> {a.out}")
    return 0


def _time_one_call(model, n: int, y: torch.Tensor) -> float:
    """Seconds per U-Net call on a batch of n, measured (the second of two calls: the first warms up)."""
    cfg, dev = model.config, next(model.parameters()).device
    x = torch.zeros(n, cfg.in_channels, cfg.image_size, cfg.image_size, device=dev)
    t, y = torch.full((n,), 500, device=dev), y.to(dev)
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            model(x, t, y)
            if dev.type == "cuda":
                torch.cuda.synchronize()
    return time.perf_counter() - start


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def cmd_build_notebooks(a) -> int:
    from .authoring import main as authoring_main

    return authoring_main(a.rest)


COMMANDS = {"train": cmd_train, "export": cmd_export, "sample": cmd_sample, "demo": cmd_demo,
            "build-notebooks": cmd_build_notebooks}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a, rest = _parser().parse_known_args(argv)
    if rest and a.cmd != "build-notebooks":
        _parser().parse_args(argv)  # exits with argparse's one-line "unrecognized arguments" error
    a.argv, a.rest = argv, rest
    try:
        return COMMANDS[a.cmd](a)
    except KeyboardInterrupt:
        print("ddpm-course: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, FileNotFoundError) as err:
        print(f"ddpm-course {a.cmd}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


