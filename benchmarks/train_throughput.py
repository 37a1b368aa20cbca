"""Training throughput (images/s) of the course U-Net against denoising-diffusion-pytorch's Unet.

Both networks get the same batch, the same ε-loss and the same AdamW step; the reference Unet is sized
to about the same parameter count (its `dim` is chosen from a few candidates). One run times both,
alternating between them so that background load hits them alike, and writes a Markdown table.

    python benchmarks/train_throughput.py --config mnist --batch-size 64 --steps 10
        --out benchmarks/results/train_throughput.md

Needs the `bench` extra: pip install -e ".[bench]" (denoising-diffusion-pytorch==2.3.4).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ddpm_course.train import _autocast, resolve_precision
from ddpm_course.unet import UNet, count_parameters


class RefUnet(nn.Module):
    """denoising-diffusion-pytorch's Unet behind the course signature model(x, t, y) (y ignored:
    the reference is unconditional)."""

    def __init__(self, dim: int, channels: int, mults=(1, 2, 2)):
        super().__init__()
        from denoising_diffusion_pytorch import Unet

        self.net = Unet(dim=dim, dim_mults=mults, channels=channels)

    def forward(self, x, t, y=None):
        return self.net(x, t.float())


def matched_reference(target: int, channels: int, mults) -> tuple[RefUnet, int]:
    best = min(range(8, 97, 4), key=lambda d: abs(count_parameters(RefUnet(d, channels, mults)) - target))
    return RefUnet(best, channels, mults), best


def step_fn(model, opt, x0, t, noise, y, ab, precision, device):
    def step():
        a = ab[t].float().to(device)[:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise                 # DDPM eq. 4
        with _autocast(precision, device):
            loss = torch.mean((noise - model(x_t, t, y).float()) ** 2)  # DDPM eq. 14
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="mnist", choices=["mnist", "cifar10", "tiny"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (after 2 warm-up steps)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--out", default=None, help="Markdown file for the results table")
    a = p.parse_args(argv)

    from ddpm_course import device as default_device

    dev = default_device()
    precision = resolve_precision(a.precision, dev)
    torch.manual_seed(0)
    ours = UNet(a.config).to(dev).train()
    cfg = ours.config
    ref, dim = matched_reference(count_parameters(ours), cfg.in_channels, cfg.channel_mults)
    ref = ref.to(dev).train()
    models = {"ddpm_course UNet": ours, f"denoising-diffusion-pytorch Unet (dim={dim})": ref}

    B, C, H = a.batch_size, cfg.in_channels, cfg.image_size
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(B, C, H, H, generator=g) * 2 - 1).to(dev)
    noise = torch.randn(B, C, H, H, generator=g).to(dev)
    t = torch.randint(0, 1000, (B,), generator=g).to(dev)
    y = torch.randint(0, 10, (B,), generator=g).to(dev)
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    steps = {name: step_fn(m, torch.optim.AdamW(m.parameters(), 1e-4), x0, t, noise, y, ab, precision, dev)
             for name, m in models.items()}
    for step in steps.values():          # warm-up: allocator, kernels, autotuning
        step()
        step()
    times = {name: [] for name in models}
    for _ in range(a.steps):             # interleaved, so background load affects both alike
        for name, step in steps.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)

    import denoising_diffusion_pytorch as ddp_pkg

    ver = getattr(ddp_pkg, "__version__", None)
    if ver is None:
        from importlib.metadata import version
        ver = version("denoising-diffusion-pytorch")
    head = (f"config `{a.config}` ({C}×{H}×{H}), batch {B}, {precision}, device {dev} "
            f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads), denoising-diffusion-pytorch {ver}, "
            f"{a.steps} timed steps each, interleaved")
    lines = ["| model | parameters | images/s (median) | images/s (best step) |", "|---|---:|---:|---:|"]
    for name, m in models.items():
        med, best = statistics.median(times[name]), min(times[name])
        lines.append(f"| {name} | {count_parameters(m) / 1e6:.2f} M | {B / med:.1f} | {B / best:.1f} |")
    text = "\n".join([head, "", *lines])
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(f"# Training throughput\n\n`python benchmarks/train_throughput.py "
                               f"{' '.join(argv if argv is not None else __import__('sys').argv[1:])}`\n\n"
                               f"{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
