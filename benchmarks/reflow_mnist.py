"""Rectified flow (Liu et al. 2023) from the shipped MNIST model (ddpm_course.flow): pair noise with samples
of the model's probability-flow ODE, fine-tune a velocity model from the course weights on the pairs
("reflow"), and ship it as the pretrained model ``mnist_reflow``.

Subcommands (each resumable: interrupt any time and run the same command again, or add --resume):
  pairs   --n pairs (ε, x_0 = ODE(ε)) from the shipped model, unconditional, DPM-Solver++(2M) with --steps
          Karras steps; written in chunks of 500 to OUT/pairs_*.pt, then merged into OUT/pairs.pt
  train   reflow: fine-tune the course U-Net, now outputting the velocity v = ε − x_0 of the straight path
          x_t = (1 − t) x_0 + t ε, on the pairs (ddpm_course.flow.reflow)
  export  ship a checkpoint as ddpm_course/weights/<name>.{safetensors,json} with its sampling recipe

    python benchmarks/reflow_mnist.py pairs --out runs/reflow_mnist --n 6000          # 22 min on one core
    python benchmarks/reflow_mnist.py train --out runs/reflow_mnist --iters 4000      # 30 min
    python benchmarks/reflow_mnist.py export --checkpoint runs/reflow_mnist/train/last.pt --name mnist_reflow
    python benchmarks/reflow_mnist.py straightness                 # -> benchmarks/results/reflow_mnist.json

(The shipped run made 4,000 pairs first and extended them to 6,000 with the same command and --n 6000: the
noise is drawn for all pairs up front, so the first 4,000 are the same either way.)
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
    eps = torch.randn(args.n, 1, 28, 28, generator=g)       # all noise first: the chunks are independent
    for c, start in enumerate(range(0, args.n, CHUNK)):
        path = out / f"pairs_{c:03d}.pt"
        if path.exists():
            continue
        t0 = time.perf_counter()
        e = eps[start:start + CHUNK]
        with torch.no_grad():
            x0 = dc.sample(model, s, e.to(device), sampler="dpmpp_2m", steps=args.steps,
                           spacing="karras").cpu()
        tmp = path.with_suffix(".tmp")
        torch.save({"eps": e, "x0": x0}, tmp)
        tmp.replace(path)
        print(f"chunk {c}: {len(e)} pairs in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    chunks = range((args.n + CHUNK - 1) // CHUNK)
    parts = [torch.load(out / f"pairs_{c:03d}.pt", weights_only=True) for c in chunks]
    merged = {"eps": torch.cat([p["eps"] for p in parts]), "x0": torch.cat([p["x0"] for p in parts]),
              "sampler": "dpmpp_2m", "steps": args.steps, "spacing": "karras", "seed": args.seed,
              "teacher_sha256": dc.pretrained.manifest("mnist")["sha256"]}
    torch.save(merged, out / "pairs.pt")
    print(f"wrote {out / 'pairs.pt'}: {len(merged['eps'])} pairs", file=sys.stderr)


def cmd_train(args) -> None:
    from ddpm_course import flow

    device = dc.device()
    pairs_path = Path(args.out) / "pairs.pt"
    if not pairs_path.is_file():
        sys.exit(f"reflow_mnist: {pairs_path} does not exist; run the pairs subcommand first")
    pairs = torch.load(pairs_path, weights_only=True)
    net, s = dc.load_pretrained(args.init, device=device)
    cfg = flow.ReflowConfig(iters=args.iters, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            pairs=f"{pairs_path} ({len(pairs['eps'])} pairs, {pairs['sampler']} "
                                  f"{pairs['steps']} {pairs['spacing']} steps)",
                            init=args.init, command=" ".join(["python", *sys.argv]))
    t0 = time.perf_counter()
    flow.reflow(cfg, Path(args.out) / "train", net, s, (pairs["eps"], pairs["x0"]), resume=args.resume,
                device=device)
    print(f"done in {time.perf_counter() - t0:.0f} s (this call)", file=sys.stderr)


def cmd_export(args) -> None:
    from ddpm_course import finetune, flow

    ckpt = finetune.checkpoint(args.checkpoint, flow.KIND)
    cfg = ckpt["config"]
    extra = {"sampling": {"sampler": "ddim", "steps": 1, "spacing": "trailing", "prediction": "flow"},
             "data": f"noise paired with the ODE samples of {cfg['init']}: {cfg['pairs']}",
             "description": f"A rectified flow (reflow, Liu et al. 2023) fine-tuned from the shipped "
                            f"{cfg['init']} model on noise/ODE-sample pairs, {ckpt['step']} updates of batch "
                            f"{cfg['batch_size']} on one CPU core; it outputs the velocity ε − x_0 "
                            "(prediction='flow'); unconditional (call it without y); DDIM on it is Euler in "
                            "flow time; benchmarks/reflow_mnist.py."}
    record = {k: cfg[k] for k in ("iters", "lr", "pairs", "init")}
    path = finetune.export(args.checkpoint, args.name, "reflow", record, extra, weights_dir=args.weights_dir,
                           command=" ".join(["python", *sys.argv]))
    print(f"wrote {path}")


def path_straightness(model, s, x_T, steps, prediction) -> float:
    """Straightness S of the DDIM path (= Euler in flow time) of ``model`` from x_T over ``steps`` trailing
    levels, with the states mapped to flow coordinates (ddpm_course.flow)."""
    from ddpm_course import flow

    grid = s.grid(steps, "trailing")
    with torch.no_grad():
        x0, info = dc.sample(model, s, x_T, sampler="ddim", steps=steps, spacing="trailing",
                             prediction=prediction, return_info=True)
    states = [flow.vp_to_flow(xt, grid.alpha_bars[k])[0] for k, (xt, _) in enumerate(info.trajectory)]
    taus = torch.cat([flow.tau_of_sigma(grid.sigmas[:-1]), torch.zeros(1, dtype=torch.float64)])
    return flow.straightness([*states, x0.cpu()], taus)


def cmd_straightness(args) -> None:
    """S of the course model's ODE paths and of the reflow model's, from the same noise."""
    import json

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
    rows = {}
    for name in ("mnist", args.name):
        model, s = dc.load_pretrained(name, device="cpu")
        pred = dc.pretrained.manifest(name).get("sampling", {}).get("prediction", "eps")
        rows[name] = round(path_straightness(model, s, x_T, args.steps, pred), 2)
        print(name, rows[name], file=sys.stderr)
    meta = dc.pretrained.manifest(args.name)
    out = {"n": args.n, "steps": args.steps, "seed": args.seed, "straightness": rows,
           "chord_note": "S in flow coordinates (x_tau = z / (sqrt(ab) + sqrt(1 - ab))), summed over the 784 "
                         "pixels, averaged over the images",
           "weights_sha256": {k: dc.pretrained.manifest(k)["sha256"] for k in rows},
           "reflow": meta.get("reflow"), "reflow_updates": meta["steps"],
           "reflow_wall_time_s": meta["wall_time_s"],
           "command": " ".join(["python", *sys.argv])}
    (results / "reflow_mnist.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("pairs", help="noise and the ODE samples it leads to")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--n", type=int, default=6000)
    q.add_argument("--steps", type=int, default=20)
    q.add_argument("--seed", type=int, default=1234)
    r = sub.add_parser("train", help="reflow: fine-tune a velocity model on the pairs")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--init", default="mnist")
    r.add_argument("--iters", type=int, default=4000)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--lr", type=float, default=2e-4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--resume", action="store_true")
    x = sub.add_parser("export", help="ship a reflow checkpoint as package weights")
    x.add_argument("--checkpoint", type=Path, required=True)
    x.add_argument("--name", required=True)
    x.add_argument("--weights-dir", type=Path, default=None, help="default: the package's weights folder")
    g = sub.add_parser("straightness", help="straightness of the course model's and the reflow model's paths")
    g.add_argument("--name", default="mnist_reflow")
    g.add_argument("--n", type=int, default=256)
    g.add_argument("--steps", type=int, default=40)
    g.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        commands = {"pairs": cmd_pairs, "train": cmd_train, "export": cmd_export,
                    "straightness": cmd_straightness}
        commands[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        sys.exit(f"reflow_mnist: {err}")


if __name__ == "__main__":
    main()
