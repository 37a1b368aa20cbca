"""Train the MNIST feature classifier behind dc.metrics (FID/KID features, digit labels).

Data: the bundled subset's ``train`` split only (4,000 digits), with light random affine augmentation
(rotation ±10°, scale 0.9–1.1, shift ±2 px). The ``test`` split (1,000 digits) is never trained on: it is
the FID/KID reference set and gives the held-out accuracy written into the manifest.

Writes ddpm_course/weights/mnist_classifier.safetensors and mnist_classifier.json
({"file", "sha256", "config", "command", "metrics"}). Deterministic for a given seed and torch build.

Run:  .venv/bin/python benchmarks/train_classifier.py            (~2 CPU minutes, one thread)
      .venv/bin/python benchmarks/train_classifier.py --check    (tables for docs/results_eval.md)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ddpm_course.metrics import DigitClassifier, real_images
from ddpm_course.pretrained import WEIGHTS_DIR, sha256

NAME = "mnist_classifier"


def random_affine(x: torch.Tensor, g: torch.Generator, deg: float = 10, scale: float = 0.1,
                  shift_px: float = 2) -> torch.Tensor:
    """A random small rotation, zoom and shift per image, by bilinear resampling (background = −1)."""
    n = x.shape[0]
    u = lambda: 2 * torch.rand(n, generator=g) - 1                     # uniform in [-1, 1]
    a, s = u() * math.radians(deg), 1 + u() * scale
    shift = torch.stack([u(), u()], 1) * 2 * shift_px / x.shape[-1]    # in grid units of [-1, 1]
    theta = torch.stack([torch.stack([a.cos() / s, -a.sin() / s], 1),
                         torch.stack([a.sin() / s, a.cos() / s], 1)], 1)  # (n, 2, 2): inverse map
    theta = torch.cat([theta, shift[:, :, None]], 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.no_grad()
def evaluate(net: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return (torch.cat([net(b).argmax(1) for b in x.split(500)]) == y).double().mean().item()


def train(epochs: int, batch_size: int, lr: float, seed: int, config: dict) -> tuple[DigitClassifier, dict]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = real_images("train")
    x_test, y_test = real_images("test")
    net = DigitClassifier(**config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(x.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    bar = tqdm(total=steps, desc="classifier", mininterval=2)
    for epoch in range(epochs):
        net.train()
        for idx in torch.randperm(x.shape[0], generator=g).split(batch_size):
            loss = F.cross_entropy(net(random_affine(x[idx], g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    net.eval()
    with torch.no_grad():  # features(x) = penultimate(x) · scale with mean square 1 per coordinate on `train`
        ms = torch.cat([net.penultimate(b) for b in x.split(500)]).double().square().mean()
        net.feature_scale.fill_(float(ms.rsqrt()))
    metrics = {"test_accuracy": evaluate(net, x_test, y_test), "train_accuracy": evaluate(net, x, y),
               "n_train": x.shape[0], "n_test": x_test.shape[0], "feature_scale": float(net.feature_scale)}
    return net.eval(), metrics


def damaged(x: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Real digits made worse in known ways: FID must rank all of them above the real ones."""
    occluded = x.clone()
    occluded[:, :, 8:20, 8:20] = -1
    return {"Gaussian noise σ = 0.3 (clipped)": (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1),
            "3×3 box blur": F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1),
            "12×12 centre patch erased": occluded,
            "uniform noise": torch.rand(x.shape, generator=g) * 2 - 1}


def check() -> None:
    """Markdown tables for docs: held-out accuracy, the real-vs-real floor, FID/KID of damaged digits."""
    from ddpm_course import metrics

    x_test, y_test = real_images("test")
    print(f"held-out accuracy: {metrics.accuracy(x_test, y_test):.4f} on {len(y_test)} test digits\n")
    print("| n | FID real vs real (seeds 0, 1, 2) | KID×10³ real vs real (seeds 0, 1, 2) |\n|---|---|---|")
    for n in (200, 500, 1000, 2000):
        fids = [metrics.real_baseline(n, seed=s) for s in range(3)]
        kids = [metrics.real_baseline_kid(n, seed=s).mean * 1e3 for s in range(3)]
        print(f"| {n} | {', '.join(f'{v:.3f}' for v in fids)} | {', '.join(f'{v:.2f}' for v in kids)} |")
    x, _ = real_images("train")
    g = torch.Generator().manual_seed(0)
    x = x[torch.randperm(x.shape[0], generator=g)[:1000]]
    print("\n| 1,000 images | FID | KID×10³ (mean ± std) |\n|---|---|---|")
    for name, im in {"real train-split digits": x, **damaged(x, g)}.items():
        k = metrics.kid(im)
        print(f"| {name} | {metrics.fid(im):.3f} | {k.mean * 1e3:.2f} ± {k.std * 1e3:.2f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--feature-dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: reproducible, and fastest on a busy 2-core machine)")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--check", action="store_true",
                   help="train nothing: print the accuracy, real-vs-real floor and damaged-digit FIDs "
                        "of the shipped weights")
    args = sys.argv[1:] if argv is None else list(argv)
    a = p.parse_args(args)
    torch.set_num_threads(a.threads)
    if a.check:
        return check()
    model_cfg = {"width": a.width, "feature_dim": a.feature_dim}
    t0 = time.perf_counter()
    net, metrics = train(a.epochs, a.batch_size, a.lr, a.seed, model_cfg)
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{NAME}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    manifest = {
        "file": path.name,
        "sha256": sha256(path),
        "kind": "classifier",
        "config": {"model": model_cfg, "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr,
                   "seed": a.seed, "data": "ddpm_course/assets/mnist_subset.npz train split, random affine",
                   "input": "images in [-1, 1], shape (N, 1, 28, 28)"},
        "command": " ".join(["python benchmarks/train_classifier.py", *args]),
        "metrics": metrics,
        "hardware": f"{platform.machine()} CPU, torch {torch.__version__}, "
                    f"{torch.get_num_threads()} thread(s)",
    }
    (a.out / f"{NAME}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["metrics"]))


if __name__ == "__main__":
    main()
