"""Rectified flow (Liu et al. 2023) from the shipped MNIST model (ddpm_course.flow): pair noise with samples
of the model's probability-flow ODE, fine-tune a velocity model from the course weights on the pairs
("reflow"), and ship it as the pretrained model ``mnist_reflow``.

Subcommands (each resumable: interrupt any time and run the same command again, or add --resume):
  pairs   --n pairs (ε, x_0 = ODE(ε)) from the shipped model, unconditional, DPM-Solver++(2M) with --steps
          Karras steps; written in chunks of 500 to OUT/pairs_*.pt, then merged into OUT/pairs.pt
  train   reflow: fine-tune the course U-Net, now outputting the velocity v = ε − x_0 of the straight path
          x_t = (1 − t) x_0 + t ε, on the pairs (ddpm_course.flow.reflow)
  export  ship a checkpoint as ddpm_course/weights/<name>.{safetensors,json} with its sampling recipe

    python benchmarks/reflow_mnist.py pairs --out runs/reflow_mnist --n 4000
    python benchmarks/reflow_mnist.py train --out runs/reflow_mnist
    python benchmarks/reflow_mnist.py export --checkpoint runs/reflow_mnist/last.pt --name mnist_reflow
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import ddpm_course as dc

CHUNK = 500


def cmd_pairs(args) -> None:
    device = dc.device()
    model, s = dc.load_pretrained("mnist", device=device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(args.seed)
    eps = torch.randn(args.n, 1, 28, 28, generator=g)                  # all noise first: chunks are independent
    for c, start in enumerate(range(0, args.n, CHUNK)):
        path = out / f"pairs_{c:03d}.pt"
        if path.exists():
            continue
        t0 = time.perf_counter()
        e = eps[start:start + CHUNK]
        with torch.no_grad():
            x0 = dc.sample(model, s, e.to(device), sampler="dpmpp_2m", steps=args.steps, spacing="karras").cpu()
        tmp = path.with_suffix(".tmp")
        torch.save({"eps": e, "x0": x0}, tmp)
        tmp.replace(path)
        print(f"chunk {c}: {len(e)} pairs in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    parts = [torch.load(out / f"pairs_{c:03d}.pt", weights_only=True) for c in range((args.n + CHUNK - 1) // CHUNK)]
    merged = {"eps": torch.cat([p["eps"] for p in parts]), "x0": torch.cat([p["x0"] for p in parts]),
              "sampler": "dpmpp_2m", "steps": args.steps, "spacing": "karras", "seed": args.seed,
              "teacher_sha256": dc.pretrained.manifest("mnist")["sha256"]}
    torch.save(merged, out / "pairs.pt")
    print(f"wrote {out / 'pairs.pt'}: {len(merged['eps'])} pairs", file=sys.stderr)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("pairs", help="noise and the ODE samples it leads to")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--n", type=int, default=4000)
    q.add_argument("--steps", type=int, default=20)
    q.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    try:
        {"pairs": cmd_pairs}[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        sys.exit(f"reflow_mnist: {err}")


if __name__ == "__main__":
    main()
