"""Learning curves: how good is the course model after how many training images, for each recipe tried?

Each *point* is one model: a kept snapshot of a training run (``ddpm-course train … --keep-every K`` writes
``OUT/snap_<step>.pt``) or a shipped registry name. For each point, two cells of the quality-vs-NFE study
(``quality_vs_nfe.py``: same seeds, same 8-bit quantisation, same batches), DPM-Solver++(2M) with
``--steps`` Karras steps:

* unconditional (null label): FID and KID against the held-out digits, each digit's share as the course
  classifier reads it, the fraction of pixels outside [−1, 1] before clipping, and a memorisation test
  (``dc.metrics.memorisation``: is each sample nearer to a training digit than to any held-out digit?);
* class-conditional (labels 0…9 in turn, guidance 1): FID, KID and how often the requested digit is drawn.

Points are cached one JSON file each under ``benchmarks/results/cache/learning_curve/`` (keyed by the
weights' sha256), so a rerun only evaluates new snapshots and an interrupted one continues. Examples:

  python benchmarks/learning_curve.py --runs runs/r2_minsnr runs/r2_simple --shipped mnist_early
  python benchmarks/learning_curve.py --report          # table + plot from the cached points only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import quality_vs_nfe as Q
import torch

import ddpm_course as dc
from ddpm_course import metrics, pretrained
from ddpm_course.train import load_checkpoint

RESULTS = Q.RESULTS
CACHE = RESULTS / "cache" / "learning_curve"


def point_id(weights: str) -> tuple[str, dict]:
    """(sha256, description) of a snapshot file or a registry name: run, step, images seen, recipe."""
    if Path(weights).suffix == ".pt":
        ck = load_checkpoint(weights)
        cfg = ck["config"]
        recipe = {k: cfg.get(k) for k in ("batch_size", "lr", "warmup", "lr_schedule", "loss_weighting",
                                            "min_snr_gamma", "label_dropout", "ema_decay", "steps", "seed",
                                            "init_from")}
        init = cfg.get("init_from") or ""                   # a fine-tune continues the curve of its start
        before = pretrained.manifest(init).get("images_seen", 0) if init in pretrained.available() else 0
        return pretrained.sha256(weights), {
            "run": Path(weights).parent.name, "step": ck["step"],
            "images_seen": before + ck.get("images_seen", ck["step"] * cfg["batch_size"]),
            "wall_time_s": ck.get("wall_time"), "recipe": recipe, "command": cfg.get("command", "")}
    meta = pretrained.manifest(weights)
    return meta["sha256"], {
        "run": f"shipped:{weights}", "step": meta.get("steps"),
        "images_seen": meta.get("steps", 0) * meta.get("batch_size", 0),
        "wall_time_s": meta.get("wall_time_s"),
        "recipe": {"batch_size": meta.get("batch_size"), "lr": meta.get("lr", 5e-4),
                   "lr_schedule": meta.get("lr_schedule", "constant"),
                   "loss_weighting": meta.get("loss_weighting", "simple"),
                   "label_dropout": meta.get("label_dropout", 0.1), "ema_decay": meta.get("ema_decay")},
        "command": meta.get("command", "")}


def evaluate(weights: str, n: int, steps: int, device, seed: int = 0) -> dict:
    """Score one point (both cells), cache and return its record."""
    sha, info = point_id(weights)
    path = CACHE / f"{sha[:16]}_dpmpp_2m_S{steps}_n{n}_seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    model, s = Q.load_model(weights, device)
    desc = f"{info['run']} step {info['step']}"
    rec = {"weights": str(weights), "model_sha256": sha, **info, "n": n, "steps": steps, "seed": seed}
    train_x, _ = metrics.real_images("train")
    held_x, _ = metrics.real_images("test")
    t0 = time.perf_counter()
    for kind in ("uncond", "cond"):
        cell = Q.Cell("dpmpp_2m", steps, spacing="karras", n=n, seed=seed, kind=kind)
        images, gen = Q.generate(model, s, cell, sha, device, progress=False)
        r = Q.score(cell, images, gen)
        x = images.float() / 127.5 - 1
        r["class_shares"] = metrics.class_shares(x).tolist()
        if kind == "uncond":
            r["memorisation"] = metrics.memorisation(x, train_x, held_x, seed=seed).__dict__
        rec[kind] = r
    rec["eval_seconds"] = round(time.perf_counter() - t0, 1)
    rec["description"] = desc
    CACHE.mkdir(parents=True, exist_ok=True)
    Q._atomic_write(path, lambda p: p.write_text(json.dumps(rec, indent=1) + "\n"))
    return rec


def set_results(folder: Path) -> None:
    global RESULTS, CACHE
    Q.set_results(folder)
    RESULTS, CACHE = Path(folder), Path(folder) / "cache" / "learning_curve"


def snapshots(run: Path) -> list[Path]:
    return sorted(run.glob("snap_*.pt"))


# --- report ------------------------------------------------------------------------------------------
def load_points() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(CACHE.glob("*.json"))]


def recipe_label(rec: dict) -> str:
    r = rec["recipe"]
    loss = "min-SNR-5" if r.get("loss_weighting") == "min_snr" else "simple loss"
    sched = "cosine" if r.get("lr_schedule") == "cosine" else "constant lr"
    tuned = f", fine-tuned from `{r['init_from']}` (images seen include its)" if r.get("init_from") else ""
    return (f"{rec['run']}: batch {r['batch_size']}, lr {r['lr']:g} {sched}, {loss}, "
            f"label dropout {r['label_dropout']:g}{tuned}")


COLUMNS = " ".join("""
Columns: images seen (training examples drawn); FID/KID×10³ unconditional (null label) and conditional
(balanced labels, guidance 1); the smallest and largest digit share of the unconditional samples (target
7–13 %); clipped = pixels outside [−1, 1] before clipping / more than one 8-bit level outside (a background
pixel at −1.001 counts in the first only); accuracy = conditional samples read as the requested digit;
train-closer = fraction of unconditional samples nearer to a training digit than to any held-out digit
(0.5 = no copying, 1 = copies); copies = fraction with d_train < d_held / 3.""".split())


def far(cell: dict) -> str:
    v = cell.get("clipped_far_fraction")
    return "–" if v is None else f"{v:.1%}"


def report(floor_seeds: int = 3) -> None:
    pts = load_points()
    if not pts:
        print(f"no evaluated points in {CACHE}")
        return
    ns = sorted({p["n"] for p in pts})
    floor = {n: [metrics.real_baseline(n, seed=s) for s in range(floor_seeds)] for n in ns}
    runs: dict[str, list[dict]] = {}
    for p in pts:
        runs.setdefault(recipe_label(p), []).append(p)
    lines = ["# Learning curves of the course model", "",
             "`python benchmarks/learning_curve.py --runs RUN… --shipped mnist_early` (DPM-Solver++(2M), "
             f"Karras, {pts[0]['steps']} steps; n samples per cell; FID/KID from `dc.metrics` against the "
             "1,000 held-out digits; samples quantised to 8 bits).", ""]
    for n, f in floor.items():
        lines.append(f"Real-vs-real FID floor at n = {n}: {sum(f) / len(f):.3f} (mean of {len(f)} draws).")
    lines += ["", COLUMNS, ""]
    for label, ps in runs.items():
        ps.sort(key=lambda p: p["images_seen"])
        lines += [f"## {label}", "", "| step | images seen | n | FID uncond | KID×10³ uncond | FID cond | "
                  "KID×10³ cond | digit share min–max | clipped | accuracy | train-closer | copies |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        for p in ps:
            u, c = p["uncond"], p["cond"]
            sh = u["class_shares"]
            lines.append(
                f"| {p['step']} | {p['images_seen']:,} | {p['n']} | {u['fid']:.2f} | "
                f"{u['kid_mean'] * 1e3:.2f} | "
                f"{c['fid']:.2f} | {c['kid_mean'] * 1e3:.2f} | {min(sh):.1%} ({sh.index(min(sh))})–"
                f"{max(sh):.1%} ({sh.index(max(sh))}) | {u['clipped_fraction']:.1%} / {far(u)} | "
                f"{c['accuracy']:.1%} | "
                f"{u['memorisation']['train_closer']:.2f} | {u['memorisation']['copies']:.1%} |")
        lines += ["", f"Command: `{ps[0]['command']}`", ""]
    shas = sorted({(p["run"], p["step"], p["model_sha256"]) for p in pts}, key=lambda r: (r[0], r[1] or 0))
    lines += ["Weights evaluated (run, step, sha256):", ""]
    lines += [f"- {r} step {s}: `{h}`" for r, s, h in shas]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning_curve.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "learning_curve.json").write_text(json.dumps({"floor": floor, "points": pts}, indent=1) + "\n")
    plot(runs, floor, RESULTS / "learning_curve.png")
    print(f"wrote {RESULTS / 'learning_curve.md'}, .json, .png")


def plot(runs: dict, floor: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for i, ps in enumerate(runs.values()):
        col = f"C{i}"
        xs = [p["images_seen"] / 1e3 for p in ps]
        short = ps[0]["run"]
        mk = "*" if short.startswith("shipped") else "o"
        axes[0].plot(xs, [p["uncond"]["fid"] for p in ps], marker=mk, color=col, label=f"{short} uncond")
        axes[0].plot(xs, [p["cond"]["fid"] for p in ps], marker=mk, ls="--", color=col, label=f"{short} cond")
        axes[1].plot(xs, [max(p["uncond"]["class_shares"]) for p in ps], marker=mk, color=col,
                     label=f"{short} max")
        axes[1].plot(xs, [min(p["uncond"]["class_shares"]) for p in ps], marker=mk, ls="--", color=col,
                     label=f"{short} min")
        axes[2].plot(xs, [p["uncond"].get("clipped_far_fraction", float("nan")) for p in ps], marker=mk,
                     color=col, label=f"{short} clipped > 1 level")
        axes[2].plot(xs, [p["uncond"]["memorisation"]["train_closer"] for p in ps], marker=mk, ls=":",
                     color=col, label=f"{short} train-closer")
    for f in floor.values():
        axes[0].axhline(sum(f) / len(f), color="gray", ls="--", lw=1)
    axes[0].set(yscale="log", xlabel="training images seen (thousands)", ylabel="FID (classifier features)",
                title="FID, DPM-Solver++(2M)")
    axes[1].axhspan(0.07, 0.13, color="green", alpha=0.1)
    axes[1].set(xlabel="training images seen (thousands)", ylabel="share of unconditional samples",
                title="smallest / largest digit share (target: green)")
    axes[2].axhline(0.5, color="gray", ls="--", lw=1)
    axes[2].set(xlabel="training images seen (thousands)", ylabel="fraction",
                title="clipped > 1 level; nearer a training digit")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="*", default=[], type=Path, help="run folders with snap_*.pt files")
    p.add_argument("--shipped", nargs="*", default=[], help="registry names to evaluate as points too")
    p.add_argument("--n", type=int, default=500, help="samples per cell (default 500)")
    p.add_argument("--steps", type=int, default=10, help="DPM-Solver++(2M) steps (default 10)")
    p.add_argument("--report", action="store_true", help="only write the table and plot")
    p.add_argument("--device", default=None)
    p.add_argument("--results", type=Path, default=RESULTS, help="where the report and cache/ go")
    a = p.parse_args(argv)
    set_results(a.results)
    if a.n < 2 or a.steps < 1:
        p.error("--n must be >= 2 and --steps >= 1")
    for r in a.runs:
        if not r.is_dir():
            p.error(f"--runs: {r} is not a folder")
    unknown = [w for w in a.shipped if w not in pretrained.available()]
    if unknown:
        p.error(f"--shipped: {unknown} not in {pretrained.available()}")
    device = torch.device(a.device) if a.device else dc.device()
    if not a.report:
        todo = [*a.shipped, *[str(f) for r in a.runs for f in snapshots(r)]]
        for w in todo:
            rec = evaluate(w, a.n, a.steps, device)
            u, c = rec["uncond"], rec["cond"]
            print(f"{rec['description']}: FID uncond {u['fid']:.2f} cond {c['fid']:.2f}, shares "
                  f"{min(u['class_shares']):.3f}–{max(u['class_shares']):.3f}, "
                  f"clipped {u['clipped_fraction']:.3f}, "
                  f"train-closer {u['memorisation']['train_closer']:.2f}", flush=True)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
