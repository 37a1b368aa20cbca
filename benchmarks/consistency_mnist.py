r"""Easy consistency tuning (ECT, Geng et al. 2024) of the shipped MNIST model (ddpm_course.consistency),
its export as the pretrained model ``mnist_consistency``, and the equal-NFE comparison of notebook 09.

Subcommands:
  train      resumable (interrupt it any time, then add --resume): the shipped ε-model becomes a
             v-output consistency model, 8 stages of 800 updates of batch 32, Δt/t = n(t)/2^a at stage a
             (stage 0 is plain denoising). About 1 h on one CPU core (log.jsonl records the wall time).
  stages     1-step FID of every finished stage (n = --n), to see the tuning converge
  export     ship a checkpoint's EMA weights as ddpm_course/weights/<name>.{safetensors,json} with the
             sampling recipe {"sampler": "consistency", "steps": 1, "spacing": "trailing",
             "prediction": "v"}
  compare    FID/KID at NFE 1, 2 and 4 of the consistency model, the progressive-distillation students,
             DDIM and DPM-Solver++(2M) (trailing), and DPM-Solver++ at 10 NFE (the issue's goal), over
             --seeds, with the real-vs-real floor: benchmarks/results/few_step.{json,md} and
             docs/figures/09_few_step.png

The run the course ships, on one core of the 2-core CPU machine:

    python benchmarks/consistency_mnist.py train --out runs/ect_mnist
    python benchmarks/consistency_mnist.py stages --out runs/ect_mnist --n 500
    python benchmarks/consistency_mnist.py export --name mnist_consistency \
        --checkpoint runs/ect_mnist/stage_04.pt
    python benchmarks/consistency_mnist.py compare --n 1000 --seeds 0 1 2 --cache runs/few_step_cache

The run took 63 min; the one-step FID was best after stage 4 (benchmarks/results/consistency_tuning.md) and
rose over stages 5-7, so stage 4's EMA is what ships. To resume an interrupted run, repeat its train command
with --resume. compare fills its cache cell by cell (--only LABEL ... and --no-report let several processes
share the work, e.g. one per seed); a last call with every seed reads the cache and writes the report.
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
from ddpm_course.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"
SELECTION_SEED = 100   # the noise of `stages`, which picks the checkpoint to ship: not one of compare's seeds


def cmd_train(args) -> None:
    device = dc.device()
    net, s = dc.load_pretrained(args.init, device=device)
    cfg = cm.TuneConfig(iters=args.iters, stage_iters=args.stage_iters, batch_size=args.batch_size,
                        lr=args.lr,
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
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(SELECTION_SEED))
    rows = []
    for path in sorted(Path(args.out).glob("stage_*.pt")):
        ckpt = load_checkpoint(path)
        for ema in (True, False):
            net, pred = cm.load_tuned(path, ema=ema)
            for steps in (1, 2):
                x = generate(net, s, x_T, sampler="consistency", steps=steps, spacing="trailing",
                             prediction=pred)
                rows.append({"stage": int(path.stem[6:]), "update": ckpt["step"], "ema": ema, "steps": steps,
                             "fid": round(dc.metrics.fid(x), 2)})
                print(rows[-1], file=sys.stderr)
    log = [json.loads(line) for line in (Path(args.out) / "log.jsonl").read_text().splitlines()]
    ckpt = load_checkpoint(Path(args.out) / "last.pt")
    result = {"n": args.n, "noise_seed": SELECTION_SEED, "stage_iters": ckpt["config"]["stage_iters"],
              "iters": ckpt["config"]["iters"],
              "batch_size": ckpt["config"]["batch_size"], "wall_time_s": round(float(ckpt["wall_time"]), 1),
              "train_command": ckpt["config"]["command"], "stages": rows,
              "log": [{k: r[k] for k in ("update", "stage", "loss")} for r in log],
              "floor_fid": round(dc.metrics.real_baseline(args.n), 3),
              "command": " ".join(["python", *sys.argv])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "consistency_tuning.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# ECT of the course model: FID after each stage (n = {args.n}, "
             f"floor {result['floor_fid']:.2f})",
             "", f"Run: `{result['train_command']}` ({result['wall_time_s'] / 60:.0f} min). Unconditional, "
             "trailing grid, samples clipped to [−1, 1].", "",
             "| stage | update | weights | FID 1 NFE | FID 2 NFE |", "|---|---|---|---|---|"]
    for st in sorted({r["stage"] for r in rows}):
        for ema in (True, False):
            f = {r["steps"]: r["fid"] for r in rows if r["stage"] == st and r["ema"] == ema}
            upd = next(r["update"] for r in rows if r["stage"] == st)
            lines.append(f"| {st} | {upd} | {'EMA' if ema else 'raw'} | {f[1]:.2f} | {f[2]:.2f} |")
    lines += ["", f"Command: `{result['command']}`", ""]
    (RESULTS / "consistency_tuning.md").write_text("\n".join(lines))
    print("\n".join(lines))


def cmd_export(args) -> None:
    from ddpm_course import finetune

    ckpt = finetune.checkpoint(args.checkpoint, cm.KIND)
    cfg = ckpt["config"]
    record = {k: cfg[k] for k in ("iters", "stage_iters", "lr", "q", "k", "b", "label_dropout", "init")}
    stage = (ckpt["step"] - 1) // cfg["stage_iters"]
    record["snapshot"] = (f"update {ckpt['step']} of the run's {cfg['iters']} (the end of stage {stage}): "
                          "the stage with the best one-step FID in benchmarks/results/consistency_tuning.md")
    extra = {"sampling": {"sampler": "consistency", "steps": 1, "spacing": "trailing",
                          "prediction": cfg["prediction"]},
             "description": f"A consistency model tuned from the shipped {cfg['init']} model with ECT "
                            f"(Geng et al. 2024), {ckpt['step']} updates of batch {cfg['batch_size']} on one "
                            "CPU core; unconditional (call it without y); benchmarks/consistency_mnist.py."}
    path = finetune.export(args.checkpoint, args.name, "consistency", record, extra,
                           weights_dir=args.weights_dir, command=" ".join(["python", *sys.argv]))
    print(f"wrote {path}")


# --- the equal-NFE comparison -------------------------------------------------------------------------
FEW = (1, 2, 4)
GOAL_NFE = 10                      # the goal: the 2-NFE consistency model against DPM-Solver++ at 10


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Clip to [−1, 1] and round to 8-bit levels, as a PNG would store the sample."""
    return (((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1).to(torch.float32)


def contenders(s) -> list[tuple[str, int, object, dict, str]]:
    """(label, NFE, model, sampling keywords, weights sha256) of every sampler in the comparison that is
    available here."""
    def shipped(name):
        return (*dc.load_pretrained(name, device=dc.device())[:1], dc.pretrained.manifest(name)["sha256"])

    base, base_sha = shipped("mnist")
    out = []
    for name in ("mnist_consistency", "mnist_reflow"):
        if name in dc.pretrained.available():
            model, sha = shipped(name)
            recipe = dict(dc.pretrained.manifest(name)["sampling"])
            label = "consistency model (ECT)" if name == "mnist_consistency" else "rectified flow (reflow)"
            for nfe in FEW:
                out.append((label, nfe, model, {**recipe, "steps": nfe}, sha))
    for nfe, name in {1: "mnist_distilled_1", 4: "mnist_distilled_4"}.items():
        model, sha = shipped(name)
        recipe = dict(dc.pretrained.manifest(name)["sampling"])
        out.append(("progressive distillation", nfe, model, recipe, sha))
    two = ROOT / "runs" / "distill_v2" / "student_0002steps.pt"             # the 2-step student (not shipped)
    if two.exists():
        from ddpm_course import distill

        model, steps, pred = distill.load_student(two)
        out.append(("progressive distillation", 2, model.to(dc.device()),
                    {"sampler": "ddim", "steps": steps, "spacing": "trailing", "prediction": pred},
                    dc.pretrained.sha256(two)))
    for nfe in FEW:
        out.append(("DDIM (trailing)", nfe, base, {"sampler": "ddim", "steps": nfe, "spacing": "trailing"},
                    base_sha))
    for nfe in (*FEW, GOAL_NFE):
        out.append(("DPM-Solver++(2M) (trailing)", nfe, base,
                    {"sampler": "dpmpp_2m", "steps": nfe, "spacing": "trailing"}, base_sha))
    out.append(("DPM-Solver++(2M) (karras)", GOAL_NFE, base,
                {"sampler": "dpmpp_2m", "steps": GOAL_NFE, "spacing": "karras"}, base_sha))
    return out


def _cell(args, s, label, nfe, model, recipe, sha, seed, x_T) -> dict:
    """One (sampler, NFE, seed) measurement, read from ``args.cache`` when already made there with the same
    weights (so a run can be interrupted, and seeds can run in parallel processes with one cache folder)."""
    slug = "".join(c if c.isalnum() else "_" for c in f"{label}_{nfe}_{seed}_{args.n}_{sha[:12]}")
    path = args.cache / f"{slug}.pt" if args.cache else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    t0 = time.perf_counter()
    x = to_uint8(generate(model, s, x_T, batch=args.batch, noise_seed=seed, **recipe))
    kid = dc.metrics.kid(x)
    row = {"sampler": label, "nfe": nfe, "seed": seed, "fid": round(dc.metrics.fid(x), 3),
           "kid": round(float(kid.mean), 5), "recipe": recipe, "seconds": round(time.perf_counter() - t0, 1),
           "first": x[:8].clone()}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(row, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    return row


def cmd_compare(args) -> None:
    _, s = dc.load_pretrained("mnist", device="cpu")
    runs = contenders(s)
    rows = []
    for seed in args.seeds:
        x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        for label, nfe, model, recipe, sha in runs:
            if args.only and label not in args.only:
                continue
            row = _cell(args, s, label, nfe, model, recipe, sha, seed, x_T)
            first = row.pop("first")
            rows.append(row)
            print({k: v for k, v in row.items() if k != "recipe"}, file=sys.stderr, flush=True)
            if seed == args.seeds[0]:
                _GRIDS[(label, nfe)] = first
    if args.no_report:
        return
    floor = [dc.metrics.real_baseline(args.n, seed=k) for k in range(3)]
    weights = {name: dc.pretrained.manifest(name)["sha256"] for name in
               ("mnist", "mnist_consistency", "mnist_reflow", "mnist_distilled_1", "mnist_distilled_4")
               if name in dc.pretrained.available()}
    result = {"n": args.n, "seeds": list(args.seeds), "weights_sha256": weights,
              "real_vs_real_fid": [round(v, 3) for v in floor], "rows": rows,
              "command": " ".join(["python", *sys.argv])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "few_step.json").write_text(json.dumps(result, indent=2) + "\n")
    table = summarise(result)
    (RESULTS / "few_step.md").write_text(table)
    figure(result, FIGURES / "09_few_step.png")
    print(table)


def summarise(result: dict) -> str:
    """The markdown table of few_step.json: FID and KID mean ± std over seeds per sampler and NFE."""
    import statistics as st

    groups: dict[tuple[str, int], list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault((r["sampler"], r["nfe"]), []).append(r)
    floor = result["real_vs_real_fid"]
    lines = [f"# Few-step generation at equal NFE (n = {result['n']}, seeds {result['seeds']})", "",
             "Unconditional MNIST samples from the same x_T per seed, quantised to 8 bits; FID/KID with the "
             f"course's MNIST classifier (dc.metrics). Real-vs-real FID floor at this n: "
             f"{st.mean(floor):.2f} ± {st.pstdev(floor):.2f} (3 draws). Weights: "
             + ", ".join(f"{k} `{v[:12]}…`" for k, v in result["weights_sha256"].items()) + ".", "",
             "| sampler | NFE | FID ↓ | KID ×10³ ↓ |", "|---|---|---|---|"]
    order = sorted(groups.items(), key=lambda kv: (kv[0][1], st.mean(r["fid"] for r in kv[1])))
    for (label, nfe), rs in order:
        f, k = [r["fid"] for r in rs], [1e3 * r["kid"] for r in rs]
        sd = (lambda v: f" ± {st.stdev(v):.2f}" if len(v) > 1 else "")
        lines.append(f"| {label} | {nfe} | {st.mean(f):.2f}{sd(f)} | {st.mean(k):.2f}{sd(k)} |")
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


_GRIDS: dict = {}


def figure(result: dict, path: Path) -> None:
    """Bar chart of mean FID (± std over seeds) per sampler at NFE 1, 2, 4 and the 10-NFE solver line."""
    import statistics as st

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, int], list[float]] = {}
    for r in result["rows"]:
        groups.setdefault((r["sampler"], r["nfe"]), []).append(r["fid"])
    labels = [lab for lab in dict.fromkeys(r["sampler"] for r in result["rows"])
              if any((lab, n) in groups for n in FEW)]
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        xs = [j + i * width for j, n in enumerate(FEW) if (lab, n) in groups]
        ms = [st.mean(groups[(lab, n)]) for n in FEW if (lab, n) in groups]
        sds = [st.pstdev(groups[(lab, n)]) for n in FEW if (lab, n) in groups]
        ax.bar(xs, ms, width, yerr=sds, label=lab, capsize=2)
    for lab, style in (("DPM-Solver++(2M) (karras)", "--"), ("DPM-Solver++(2M) (trailing)", ":")):
        if (lab, GOAL_NFE) in groups:
            ax.axhline(st.mean(groups[(lab, GOAL_NFE)]), color="k", ls=style, lw=1,
                       label=f"{lab} at {GOAL_NFE} NFE")
    ax.axhline(st.mean(result["real_vs_real_fid"]), color="gray", lw=1, label="real-vs-real floor")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(FEW))], [f"NFE {n}" for n in FEW])
    ax.set_yscale("log")
    ax.set_ylabel("FID (log scale) ↓")
    ax.set_title(f"Few-step MNIST generation at equal NFE (n = {result['n']}, {len(result['seeds'])} seeds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    if _GRIDS:
        _sample_figure(path.with_name("09_few_step_samples.png"))


def _sample_figure(path: Path) -> None:
    import matplotlib.pyplot as plt

    keys = sorted(_GRIDS, key=lambda k: (k[0], k[1]))
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 0.48 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        ax.imshow(dc.viz.make_grid(_GRIDS[key], nrow=8), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.text(-0.02, 0.5, f"{key[0]}, NFE {key[1]}", transform=ax.transAxes, ha="right", va="center",
                fontsize=6)
    fig.subplots_adjust(left=0.42, right=0.99, top=0.99, bottom=0.01, hspace=0.05)
    fig.savefig(path, dpi=110)


def cmd_tau(args) -> None:
    """The intermediate level τ_1 of 2-step consistency sampling (Algorithm 1): FID against τ_1 on the
    selection noise, then the best τ_1 on compare's seeds (consistency.multistep in σ-space; dc.sample's
    trailing grid puts τ_1 at σ(t = 499) ≈ 3.42)."""
    net, s = dc.load_pretrained(args.name, device="cpu")
    pred = dc.pretrained.manifest(args.name)["sampling"]["prediction"]
    s_max = float(s.sigmas[-1])

    def f(x, sigma):
        return cm.consistency_fn(net, x, sigma, s, prediction=pred)

    def fid_at(tau1, seed):
        x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(10_000 + seed)
        with torch.no_grad():
            x = torch.cat([cm.multistep(f, xb * (1 + s_max**2) ** 0.5, [s_max, tau1], generator=g)
                           for xb in x_T.split(500)])
        return round(dc.metrics.fid(to_uint8(x)), 3)

    sweep = {tau: fid_at(tau, SELECTION_SEED) for tau in args.taus}
    best = min(sweep, key=sweep.get)
    seeds = {seed: fid_at(best, seed) for seed in args.seeds}
    out = {"name": args.name, "sha256": dc.pretrained.manifest(args.name)["sha256"], "n": args.n,
           "selection_seed": SELECTION_SEED, "sweep_fid": sweep, "best_tau1": best, "fid_at_best": seeds,
           "command": " ".join(["python", *sys.argv])}
    (RESULTS / "consistency_tau.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


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
    x.add_argument("--weights-dir", type=Path, default=None, help="default: the package's weights folder")
    c = sub.add_parser("compare", help="FID/KID at NFE 1, 2, 4 against the students and the solvers")
    c.add_argument("--n", type=int, default=1000)
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--batch", type=int, default=500)
    c.add_argument("--cache", type=Path, default=None, help="keep each measurement here (resumable)")
    c.add_argument("--only", nargs="+", default=None, help="measure only these sampler labels")
    c.add_argument("--no-report", action="store_true",
                   help="only fill the cache (e.g. one process per seed), write no results")
    u = sub.add_parser("tau", help="the intermediate level of 2-step consistency sampling")
    u.add_argument("--name", default="mnist_consistency")
    u.add_argument("--n", type=int, default=1000)
    u.add_argument("--taus", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 2.5, 3.42, 6.0])
    u.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    try:
        commands = {"train": cmd_train, "stages": cmd_stages, "export": cmd_export, "compare": cmd_compare,
                    "tau": cmd_tau}
        commands[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        sys.exit(f"consistency_mnist: {err}")


if __name__ == "__main__":
    main()
