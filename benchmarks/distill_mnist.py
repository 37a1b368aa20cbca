"""Progressive distillation of the shipped MNIST model (ddpm_course.distill) and its evaluation against the
teacher's DDIM and DPM-Solver++(2M) at equal NFE, with the course's FID/KID (dc.metrics).

Three subcommands: train (resumable: interrupt it any time, then add --resume), evaluate (--n samples per
sampler, default 2000) and export. Presets of train:

  "gpu" (the default; the paper-scale recipe, untested here): 256 teacher DDIM steps -> 128 -> 64 -> 32
      -> 16 -> 8 -> 4 -> 2 -> 1 (8 rounds, 6,000 updates in the first round, 3,000 in each later one,
      batch 128); estimated 15-30 min on one modern GPU.
  "cpu" (the run the course measured, docs/results_distill.md): a reduced run that a 2-core CPU finishes in
      hours, not days. The first teacher is DDIM with only 8 steps, so the students can at best approach
      DDIM-8's quality; 3 rounds 8 -> 4 -> 2 -> 1 with 800/400/400 updates of batch 32 (1,600 in all), on
      one CPU core a few seconds per update (log.jsonl records the wall time).
  "cpu-short": the mechanics only (one round, 8 -> 4 steps, 100 updates of batch 16).

The CPU run, as made for docs/results_distill.md:

    python benchmarks/distill_mnist.py train --out runs/distill_cpu --preset cpu --precision fp32
    python benchmarks/distill_mnist.py evaluate --out runs/distill_cpu --n 1000
        -> benchmarks/results/distill_mnist.md (+ .json) and docs/figures/07_mnist_students.png
    python benchmarks/distill_mnist.py export --out runs/distill_cpu --steps 4 --name mnist_distilled_4
        -> ddpm_course/weights/mnist_distilled_4.{safetensors,json}, loadable with dc.load_pretrained

The GPU run: the same with `train --out runs/distill_mnist` (preset "gpu") and `evaluate --n 2000`.

Evaluation samples unconditionally (the null label), from the same x_T for every sampler, clamps to
[-1, 1], and reports the real-vs-real FID floor for the same n. At NFE 1, 2 and 4 it measures the teacher
with DDIM (trailing) and DPM-Solver++(2M) (trailing and karras spacing) and the student of that many steps
if the run has one; it also measures the run's first teacher (DDIM with the run's teacher_steps, the
students' ceiling) and records the distillation recipe from the students' checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import ddpm_course as dc
from ddpm_course import distill

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "gpu": dict(teacher_steps=256, final_steps=1, iters=3000, first_round_iters=6000, batch_size=128, lr=2e-4,
                checkpoint_every=500),
    "cpu": dict(teacher_steps=8, final_steps=1, iters=400, first_round_iters=800, batch_size=32, lr=2e-4,
                checkpoint_every=50),
    "cpu-short": dict(teacher_steps=8, final_steps=4, iters=100, first_round_iters=0, batch_size=16, lr=2e-4,
                      checkpoint_every=25),
}
NFES = (1, 2, 4)


def load_teacher(name: str, device):
    """A registry name (dc.load_pretrained) or a training checkpoint of ddpm_course.train."""
    if Path(name).is_file():
        from ddpm_course.train import load_checkpoint, make_schedule, model_from_checkpoint

        ckpt = load_checkpoint(name)
        return model_from_checkpoint(ckpt).to(device), make_schedule(ckpt["config"])
    return dc.load_pretrained(name, device=device)


def cmd_train(args) -> None:
    device = dc.device()
    teacher, s = load_teacher(args.teacher, device)
    preset = dict(PRESETS[args.preset])
    for key in ("teacher_steps", "final_steps", "iters", "first_round_iters", "batch_size", "lr"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    cfg = distill.DistillConfig(**preset, precision=args.precision, seed=args.seed, teacher=args.teacher,
                                command=" ".join(["python", *sys.argv]))
    print(f"device {device}; rounds {cfg.rounds()} ({cfg.teacher_steps} teacher steps); "
          f"{json.dumps(asdict(cfg))}", file=sys.stderr)
    t0 = time.perf_counter()
    distill.distill(cfg, args.out, teacher, s, resume=args.resume, device=device)
    print(f"done in {time.perf_counter() - t0:.0f} s (this call); students in {args.out}", file=sys.stderr)


@torch.no_grad()
def _generate(model, s, x_T, batch, **kw) -> torch.Tensor:
    out = [dc.sample(model, s, x.to(dc.device()), **kw).cpu() for x in x_T.split(batch)]
    return torch.cat(out).clamp(-1, 1)


def cmd_evaluate(args) -> None:
    device = dc.device()
    teacher, s = load_teacher(args.teacher, device)
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
    rows, grids = [], {}

    def measure(label, nfe, model, **kw):
        t0 = time.perf_counter()
        x = _generate(model, s, x_T, args.batch, **kw)
        secs = time.perf_counter() - t0
        kid = dc.metrics.kid(x)
        rows.append({"sampler": label, "nfe": nfe, "fid": round(dc.metrics.fid(x), 2),
                     "kid": round(float(kid.mean), 4), "kid_std": round(float(kid.std), 4),
                     "seconds": round(secs, 1)})
        grids[(label, nfe)] = x[:10]
        print(rows[-1], file=sys.stderr)

    recipe = _recipe(args.out)
    if recipe and recipe["teacher_steps"] not in NFES:
        measure(f"teacher DDIM ({recipe['spacing']}), the first teacher", recipe["teacher_steps"], teacher,
                sampler="ddim", steps=recipe["teacher_steps"], spacing=recipe["spacing"])
    for nfe in NFES:
        measure("teacher DDIM (trailing)", nfe, teacher, sampler="ddim", steps=nfe, spacing="trailing")
        measure("teacher DPM-Solver++(2M) (trailing)", nfe, teacher, sampler="dpmpp_2m", steps=nfe,
                spacing="trailing")
        measure("teacher DPM-Solver++(2M) (karras)", nfe, teacher, sampler="dpmpp_2m", steps=nfe,
                spacing="karras")
        path = distill.student_path(args.out, nfe)
        if path.exists():
            student, steps, prediction = distill.load_student(path)
            measure("distilled student (DDIM, trailing)", nfe, student.to(device), sampler="ddim",
                    steps=steps, spacing="trailing", prediction=prediction)
    if args.ref_steps:
        measure("teacher DPM-Solver++(2M) (karras), reference", args.ref_steps, teacher, sampler="dpmpp_2m",
                steps=args.ref_steps, spacing="karras")
    floor = dc.metrics.real_baseline(args.n)
    teacher_sha = (dc.pretrained.manifest(args.teacher)["sha256"] if args.teacher in dc.pretrained.available()
                   else dc.pretrained.sha256(args.teacher))
    result = {"n": args.n, "seed": args.seed, "teacher": args.teacher, "teacher_sha256": teacher_sha,
              "out": str(args.out),
              "real_vs_real_fid": round(floor, 2), "distillation": recipe, "rows": rows,
              "command": " ".join(["python", *sys.argv])}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "distill_mnist.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Distilled MNIST student vs the teacher's samplers at equal NFE (n = {args.n})", "",
             f"Unconditional samples from the same x_T (seed {args.seed}); FID/KID with the course's MNIST "
             f"classifier (dc.metrics). Real-vs-real FID floor at this n: {floor:.2f}.", ""]
    if recipe:
        lines += [f"Distillation: first teacher DDIM with {recipe['teacher_steps']} steps, students "
                  f"{recipe['rounds']} steps, {recipe['updates_per_round']} updates of batch "
                  f"{recipe['batch_size']} ({recipe['precision']}), {recipe['wall_time_s'] / 3600:.1f} h of "
                  f"training; `{recipe['command']}`", ""]
    lines += ["| sampler | NFE | FID | KID ×1e3 | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fid']:.2f} | {1e3 * r['kid']:.2f} ± "
                     f"{1e3 * r['kid_std']:.2f} | {r['seconds']} |")
    lines += ["", f"Command: `{result['command']}`", ""]
    (res / "distill_mnist.md").write_text("\n".join(lines))
    _figure(grids, ROOT / "docs" / "figures" / "07_mnist_students.png")
    print("\n".join(lines))


def _recipe(out: Path) -> dict | None:
    """How the students of run ``out`` were distilled (from the last round's checkpoint), or None."""
    paths = sorted(Path(out).glob("student_*steps.pt"), key=lambda p: int(p.stem[8:-5]))  # student_0004steps
    if not paths:
        return None
    ckpt = distill.load_checkpoint(paths[0])                       # the fewest steps: the last round
    cfg = distill.DistillConfig(**{k: v for k, v in ckpt["config"].items()
                                   if k in distill.DistillConfig.__dataclass_fields__})
    rounds = cfg.rounds()
    return {"teacher": cfg.teacher, "teacher_steps": cfg.teacher_steps, "rounds": rounds,
            "updates_per_round": [cfg.iters_in_round(r) for r in range(len(rounds))],
            "batch_size": cfg.batch_size, "lr": cfg.lr, "precision": ckpt["config"].get("precision_used",
                                                                                          cfg.precision),
            "spacing": cfg.spacing, "wall_time_s": round(float(ckpt["wall_time"]), 1), "command": cfg.command}


def _figure(grids: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({lab for lab, nfe in grids if nfe in NFES}, key=lambda lab: ("student" not in lab, lab))
    fig, axes = plt.subplots(len(labels), len(NFES), figsize=(3.2 * len(NFES), 0.55 * len(labels) + 0.4),
                             squeeze=False)
    for i, lab in enumerate(labels):
        for j, nfe in enumerate(NFES):
            ax = axes[i, j]
            ax.set_axis_off()
            if (lab, nfe) in grids:
                ax.imshow(dc.viz.make_grid(grids[(lab, nfe)], nrow=10), cmap="gray", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"NFE = {nfe}", fontsize=9)
            if j == 0:
                ax.text(-0.02, 0.5, lab.replace(" (", "\n("), transform=ax.transAxes, ha="right", va="center",
                        fontsize=6)
    fig.subplots_adjust(left=0.22, right=0.99, top=0.93, bottom=0.01, hspace=0.15, wspace=0.03)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def cmd_export(args) -> None:
    path = distill.export_student(distill.student_path(args.out, args.steps), args.name,
                                  command=" ".join(["python", *sys.argv]))
    print(f"wrote {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run (or --resume) progressive distillation")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    t.add_argument("--teacher", default="mnist", help="registry name or training checkpoint")
    t.add_argument("--resume", action="store_true")
    for key, typ in (("teacher_steps", int), ("final_steps", int), ("iters", int), ("first_round_iters", int),
                     ("batch_size", int), ("lr", float)):
        t.add_argument("--" + key.replace("_", "-"), type=typ, default=None, help="overrides the preset")
    t.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="FID/KID of the students and the teacher's samplers at NFE 1, 2, 4")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--teacher", default="mnist")
    e.add_argument("--n", type=int, default=2000)
    e.add_argument("--batch", type=int, default=500)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--ref-steps", type=int, default=0,
                   help="also the teacher with this many DPM-Solver++ steps")
    x = sub.add_parser("export", help="ship one round's student as package weights")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--steps", type=int, required=True)
    x.add_argument("--name", required=True)
    args = p.parse_args(argv)
    try:
        {"train": cmd_train, "evaluate": cmd_evaluate, "export": cmd_export}[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        sys.exit(f"distill_mnist: {err}")


if __name__ == "__main__":
    main()
