"""Easy consistency tuning (ECT, Geng et al. 2024) of the shipped MNIST model (ddpm_course.consistency),
its export as the pretrained model ``mnist_consistency``, and the equal-NFE comparison of notebook 09.

Subcommands:
  train      resumable (interrupt it any time, then add --resume): the shipped ε-model becomes a
             v-output consistency model, 8 stages of 800 updates of batch 32, Δt/t = n(t)/2^a at stage a
             (stage 0 is plain denoising). About 1 h on one CPU core (log.jsonl records the wall time).
  stages     1-step FID of every finished stage (n = --n), to see the tuning converge
  export     ship a checkpoint's EMA weights as ddpm_course/weights/<name>.{safetensors,json} with the sampling
             recipe ``{"sampler": "consistency", "steps": 1, "spacing": "trailing", "prediction": "v"}``
  compare    FID/KID at NFE 1, 2 and 4 of the consistency model, the progressive-distillation students,
             DDIM and DPM-Solver++(2M) (trailing), and DPM-Solver++ at 10 NFE (the issue's goal), over
             --seeds, with the real-vs-real floor: benchmarks/results/few_step.{json,md} and
             docs/figures/09_few_step.png

The run the course ships, on one core of the 2-core CPU machine:

    python benchmarks/consistency_mnist.py train --out runs/ect_mnist
    python benchmarks/consistency_mnist.py stages --out runs/ect_mnist --n 500
    python benchmarks/consistency_mnist.py export --checkpoint runs/ect_mnist/last.pt --name mnist_consistency
    python benchmarks/consistency_mnist.py compare --n 1000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import ddpm_course as dc
from ddpm_course import consistency as cm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def cmd_train(args) -> None:
    device = dc.device()
    net, s = dc.load_pretrained(args.init, device=device)
    cfg = cm.TuneConfig(iters=args.iters, stage_iters=args.stage_iters, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, init=args.init, command=" ".join(["python", *sys.argv]))
    print(f"device {device}; {json.dumps(asdict(cfg))}", file=sys.stderr)
    t0 = time.perf_counter()
    cm.tune(cfg, args.out, net, s, resume=args.resume, device=device)
    print(f"done in {time.perf_counter() - t0:.0f} s (this call); checkpoints in {args.out}", file=sys.stderr)


@torch.no_grad()
def generate(model, s, x_T, batch=500, **recipe) -> torch.Tensor:
    gen = torch.Generator().manual_seed(10_000 + int(recipe.pop("noise_seed", 0)))
    out = [dc.sample(model, s, x.to(dc.device()), generator=gen, **recipe).cpu() for x in x_T.split(batch)]
    return torch.cat(out).clamp(-1, 1)


def cmd_stages(args) -> None:
    _, s = dc.load_pretrained("mnist", device="cpu")
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rows = []
    for path in sorted(Path(args.out).glob("stage_*.pt")):
        ckpt = cm.load_checkpoint(path)
        for ema in (True, False):
            net, pred = cm.load_tuned(path, ema=ema)
            for steps in (1, 2):
                x = generate(net, s, x_T, sampler="consistency", steps=steps, spacing="trailing", prediction=pred)
                rows.append({"stage": int(path.stem[6:]), "update": ckpt["step"], "ema": ema, "steps": steps,
                             "fid": round(dc.metrics.fid(x), 2)})
                print(rows[-1], file=sys.stderr)
    (Path(args.out) / "stages.json").write_text(json.dumps({"n": args.n, "rows": rows}, indent=2) + "\n")


def cmd_export(args) -> None:
    from ddpm_course.pretrained import export

    ckpt = cm.load_checkpoint(args.checkpoint)
    if ckpt.get("kind") != cm.KIND:
        sys.exit(f"consistency_mnist: {args.checkpoint} is not a consistency-tuning checkpoint")
    cfg = ckpt["config"]
    extra = {"sampling": {"sampler": "consistency", "steps": 1, "spacing": "trailing",
                          "prediction": cfg["prediction"]},
             "consistency": {k: cfg[k] for k in ("iters", "stage_iters", "lr", "q", "k", "b", "label_dropout",
                                                 "init")},
             "description": f"A consistency model tuned from the shipped {cfg['init']} model with ECT "
                            f"(Geng et al. 2024), {ckpt['step']} updates of batch {cfg['batch_size']} on one CPU "
                            "core; unconditional (call it without y); benchmarks/consistency_mnist.py."}
    if cfg["init"] in dc.pretrained.available():
        extra["consistency"]["init_sha256"] = dc.pretrained.manifest(cfg["init"])["sha256"]
    cfg.setdefault("data", "mnist_subset")
    cfg.setdefault("precision", "fp32")
    path = export(args.checkpoint, args.name, command=" ".join(["python", *sys.argv]), extra=extra)
    print(f"wrote {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run (or --resume) easy consistency tuning")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--init", default="mnist", help="shipped weights to start from")
    t.add_argument("--iters", type=int, default=6400)
    t.add_argument("--stage-iters", type=int, default=800)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    g = sub.add_parser("stages", help="1- and 2-step FID of every finished stage")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--n", type=int, default=500)
    x = sub.add_parser("export", help="ship a checkpoint as package weights")
    x.add_argument("--checkpoint", type=Path, required=True)
    x.add_argument("--name", required=True)
    args = p.parse_args(argv)
    try:
        {"train": cmd_train, "stages": cmd_stages, "export": cmd_export}[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        sys.exit(f"consistency_mnist: {err}")


if __name__ == "__main__":
    main()
