"""The figures of a training run that notebook 02 and docs/results_training.md show, from its run folder:

* ``02_training_loss.png``: the smoothed training loss and the learning rate against the step (log.jsonl);
* ``02_ema_vs_raw.png``: the raw and the EMA weights of the final checkpoint (last.pt): their held-out
  simple loss (eq. 14, unweighted, 256 held-out digits, one t per digit spread over [0, T−1], fixed ε) and
  DDIM samples (50 steps, labels 0…9, the same x_T for both);
* ``training_samples_<step>.png``: a copy of the trainer's last sample grid.

  python benchmarks/training_figures.py --run runs/r2_minsnr --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

import ddpm_course as dc
from ddpm_course.train import load_checkpoint, make_schedule, model_from_checkpoint


def loss_figure(run: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    cfg = load_checkpoint(run / "last.pt")["config"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot([r["step"] for r in log], [r["loss"] for r in log], label="training loss (smoothed)")
    min_snr = cfg.get("loss_weighting") == "min_snr"
    weighting = "min-SNR-γ weighted loss" if min_snr else "simple loss (eq. 14)"
    ax.set(xlabel="step", ylabel=weighting, yscale="log",
           title=f"documented run: {cfg['steps']} steps × batch {cfg['batch_size']}")
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in log], [r["lr"] for r in log], color="C1", ls="--", label="learning rate")
    ax2.set_ylabel("learning rate", color="C1")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


@torch.no_grad()
def ema_figure(run: Path, out: Path, n_eval: int = 256) -> dict:
    import matplotlib.pyplot as plt

    from ddpm_course.viz import make_grid

    ckpt = load_checkpoint(run / "last.pt")
    s = make_schedule(ckpt["config"])
    x, y = dc.metrics.real_images("test")
    x, y = x[:n_eval], y[:n_eval]
    t = torch.linspace(0, s.T - 1, n_eval).round().long()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    x_T = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10)
    rows, losses = [], {}
    for name, ema in (("raw", False), ("EMA", True)):
        m = model_from_checkpoint(ckpt, ema=ema)
        losses[name] = float(dc.diffusion.simple_loss(m, x, s, y=y, t=t, noise=noise))
        rows.append(dc.sample(m, s, x_T, sampler="ddim", steps=50, y=labels).clamp(-1, 1))
    fig, ax = plt.subplots(figsize=(7, 1.9))
    ax.imshow(make_grid(torch.cat(rows), nrow=10), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"step {ckpt['step']}: raw (top, held-out loss {losses['raw']:.4f}); "
                 f"EMA (bottom, {losses['EMA']:.4f}); DDIM 50 steps", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="run folder with last.pt and log.jsonl")
    p.add_argument("--out", type=Path, required=True, help="folder for the figures")
    a = p.parse_args(argv)
    for need in ("last.pt", "log.jsonl"):
        if not (a.run / need).is_file():
            p.error(f"--run: {a.run / need} does not exist")
    import matplotlib

    matplotlib.use("Agg")
    a.out.mkdir(parents=True, exist_ok=True)
    loss_figure(a.run, a.out / "02_training_loss.png")
    losses = ema_figure(a.run, a.out / "02_ema_vs_raw.png")
    grids = sorted(a.run.glob("samples_*.png"))
    if grids:
        shutil.copy(grids[-1], a.out / f"training_{grids[-1].name}")
    print(f"held-out simple loss: raw {losses['raw']:.4f}, EMA {losses['EMA']:.4f}; figures in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
