"""Classifier-free guidance on the course's MNIST model: fidelity against diversity as the scale grows.

For each guidance scale s (dc.sample's ``guidance_scale``: ε̃ = ε_∅ + s (ε_c − ε_∅), Ho & Salimans 2021
eq. 6 with w = s − 1; s = 0 is the unconditional model, s = 1 the conditional one), draw n samples,
balanced over the ten digits, with one sampler and a fixed number of steps, from the *same* x_T and
labels at every scale, and measure

* accuracy on the requested digits: the fraction the shipped classifier (``dc.metrics.classify``)
  labels as the digit that was asked for (mean, and the worst digit): fidelity to the condition;
* FID and KID against the held-out real digits of all classes (``dc.metrics.fid/kid``, unconditional
  reference): distance of the whole sample set from the data distribution, diversity included;
* Inception Score with the shipped classifier (``dc.metrics.inception_score``, mean ± std over 10 chunks):
  confident *and* varied classes; it cannot see diversity within a class;
* within-class diversity: mean pairwise distance between the classifier features of samples requested
  as the same digit, divided by the same quantity for real test digits of that digit (1 = as varied as
  the data; averaged over digits);
* NFE per sample and wall time per sample (guidance evaluates both branches: 2 NFE per step, batched;
  s = 0 and s = 1 need one branch only).

Writes a Markdown table and a plot (accuracy and FID against s).

Run:  .venv/bin/python benchmarks/guidance_sweep.py [--n 500] [--steps 10] [--out PATH.md] [--cache DIR]
      (default: n = 500, 7 scales, DPM-Solver++(2M) with 10 Karras steps: 65,000 image-NFE, about
      30 minutes on 2 idle CPU cores, a minute or two on a GPU — estimated; --cache DIR keeps the samples
      of each finished scale, so an interrupted run resumes)
      --n 50 --scales 1,3 gives a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

import ddpm_course as dc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5)


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales must be comma-separated numbers, got {text!r}") from None
    if not scales or any(v < 0 for v in scales):
        raise argparse.ArgumentTypeError(f"--scales must be numbers >= 0, got {text!r}")
    return scales


def balanced_labels(n: int, num_classes: int = 10) -> torch.Tensor:
    """0, 1, …, 9, 0, 1, … : every digit requested n/10 times (n a multiple of 10)."""
    return torch.arange(n) % num_classes


def per_digit_accuracy(predicted: torch.Tensor, requested: torch.Tensor, num_classes: int = 10):
    """For each digit k: the fraction of samples requested as k that the classifier labels k."""
    hits = torch.bincount(requested[predicted == requested], minlength=num_classes)
    return hits.double() / torch.bincount(requested, minlength=num_classes).double()


def mean_pairwise_distance(f: torch.Tensor) -> float:
    """Mean ‖f_i − f_j‖ over pairs i ≠ j (a U-statistic: no bias from the number of samples)."""
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1)))


def within_class_diversity(feats: torch.Tensor, labels: torch.Tensor, ref_feats: torch.Tensor,
                           ref_labels: torch.Tensor) -> float:
    """Mean over digits of (pairwise feature distance among samples of digit k) / (same for real digits k)."""
    ratios = []
    for k in labels.unique().tolist():
        mine, real = feats[labels == k], ref_feats[ref_labels == k]
        if len(mine) >= 2 and len(real) >= 2:
            ratios.append(mean_pairwise_distance(mine) / mean_pairwise_distance(real))
    return sum(ratios) / len(ratios)


def generate(model, s, x_T, y, scale, sampler, steps, spacing, batch, device):
    """Samples on the CPU (not clipped), NFE per sample and seconds per sample."""
    out, nfe = [], 0
    with dc.metrics.Timer() as timer:
        for i in range(0, len(x_T), batch):
            xb, yb = x_T[i:i + batch].to(device), y[i:i + batch].to(device)
            x0, info = dc.sample(model, s, xb, sampler=sampler, steps=steps, spacing=spacing, y=yb,
                                 guidance_scale=scale, return_info=True)
            out.append(x0.cpu())
            nfe = info.nfe
    return torch.cat(out), nfe, timer.seconds / len(x_T)


def cached_generate(cache, key, *args):
    """``generate`` with an optional on-disk cache (one file per scale), so an interrupted sweep resumes."""
    path = Path(cache) / f"{key}.pt" if cache else None
    if path is not None and path.is_file():
        d = torch.load(path, weights_only=True)
        return d["x0"], d["nfe"], d["sec"]
    x0, nfe, sec = generate(*args)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"x0": x0, "nfe": nfe, "sec": sec}, tmp)
        tmp.replace(path)
    return x0, nfe, sec


def sweep(model, s, scales, n, sampler="dpmpp_2m", steps=10, spacing="karras", batch=250, seed=0,
          device=None, log=print, cache=None, tag=""):
    """One row (dict) per guidance scale, plus the real-vs-real floor at this n. ``cache``: a folder
    for the samples of each scale (``tag`` should identify the weights)."""
    device = device or dc.device()
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, 1, 28, 28, generator=g)               # the same noise and labels at every scale
    y = balanced_labels(n)
    ref_x, ref_y = dc.metrics.real_images("test")
    ref_feats = dc.metrics.features(ref_x)
    dc.sample(model, s, x_T[:8].to(device), sampler=sampler, steps=2, spacing=spacing, y=y[:8].to(device),
              guidance_scale=2.0)                              # warm-up, so the first timing is fair
    rows = []
    for scale in scales:
        key = f"{tag}_{sampler}_{spacing}_{steps}_n{n}_seed{seed}_s{scale:g}"
        x0, nfe, sec = cached_generate(cache, key, model, s, x_T, y, scale, sampler, steps, spacing, batch,
                                       device)
        x0 = x0.clamp(-1, 1)
        feats = dc.metrics.features(x0)
        per_digit = per_digit_accuracy(dc.metrics.classify(x0), y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                    # small-n FID warning: n is in the table
            fid = dc.metrics.fid(x0)
        kid = dc.metrics.kid(x0)
        inception = dc.metrics.inception_score(x0)
        row = {"scale": scale, "w": scale - 1, "accuracy": float(per_digit.mean()),
               "worst_digit": int(per_digit.argmin()), "worst_accuracy": float(per_digit.min()),
               "fid": fid, "kid": kid.mean, "kid_std": kid.std, "is": inception.mean, "is_std": inception.std,
               "diversity": within_class_diversity(feats, y, ref_feats, ref_y), "nfe": nfe, "sec": sec}
        rows.append(row)
        log(f"s = {scale:g}: accuracy {row['accuracy']:.3f}, FID {fid:.2f}, KID {1e3 * kid.mean:.2f}e-3, "
            f"diversity {row['diversity']:.3f}, NFE {nfe}, {sec * 1e3:.1f} ms/sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        floor = {"fid": dc.metrics.real_baseline(n), "kid": dc.metrics.real_baseline_kid(n).mean,
                 "is": dc.metrics.real_baseline_is(n).mean,
                 "accuracy": float((dc.metrics.classify(ref_x) == ref_y).double().mean())}
    return rows, floor


def plot(rows, floor, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = [r["scale"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(scales, [100 * r["accuracy"] for r in rows], "o-", color="C0",
            label="accuracy on requested digits")
    ax.set_xlabel("guidance scale s  (w = s − 1;  s = 0 unconditional, s = 1 conditional)")
    ax.set_ylabel("accuracy (%)", color="C0")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(scales, [r["fid"] for r in rows], "s--", color="C3", label="FID (vs all real test digits)")
    ax2.axhline(floor["fid"], color="C3", lw=0.8, ls=":", label="real-vs-real FID at this n")
    ax2.set_ylabel("FID (lower is better)", color="C3")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=8, loc="center right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(rows, floor, args, meta, seconds):
    lines = [
        "# Classifier-free guidance sweep (MNIST course model)",
        "",
        f"Generated by `python benchmarks/guidance_sweep.py {' '.join(meta['argv'])}`.",
        "",
        f"- model: `dc.load_pretrained(\"mnist\")` ({meta.get('steps', '?')} training steps, "
        f"sha256 {meta.get('sha256', '?')[:12]}…)",
        f"- sampler: `{args.sampler}`, {args.steps} steps, spacing `{args.spacing}`; n = {args.n} samples "
        f"per scale, {args.n // 10} per digit, the same x_T (seed {args.seed}) and labels at every scale",
        "- guidance: ε̃ = ε_∅ + s (ε_c − ε_∅) (`dc.sample(guidance_scale=s)`); Ho & Salimans (2021) eq. 6 "
        "writes (1 + w) ε_c − w ε_∅, so w = s − 1",
        "- accuracy: the shipped classifier's label equals the requested digit (mean over digits; the worst "
        "digit in brackets). FID/KID: classifier features against the 1,000 held-out real test digits "
        "(all classes). Diversity: mean pairwise feature distance within a requested digit, relative to "
        "real digits of that class (1 = as varied as the data).",
        f"- real-vs-real floor at n = {args.n}: FID {floor['fid']:.2f}, KID {1e3 * floor['kid']:.2f}e-3, "
        f"IS {floor['is']:.2f} (at most 10); "
        f"classifier accuracy on the real test digits {100 * floor['accuracy']:.1f} %",
        f"- device: {meta['device']}; sampling time {sum(r['sec'] for r in rows) * args.n / 60:.1f} min "
        f"over all scales (this call: {seconds / 60:.1f} min; scales found in --cache are not resampled)",
        "",
        "| s | w = s − 1 | accuracy % (worst digit) | FID | KID ×1e3 | IS | diversity | NFE | ms / sample |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scale']:g} | {r['w']:g} | {100 * r['accuracy']:.1f} ({r['worst_digit']}: "
                     f"{100 * r['worst_accuracy']:.0f}) | {r['fid']:.2f} | {1e3 * r['kid']:.2f} ± "
                     f"{1e3 * r['kid_std']:.2f} | {r['is']:.2f} ± {r['is_std']:.2f} | {r['diversity']:.3f} | "
                     f"{r['nfe']} | {1e3 * r['sec']:.1f} |")
    lines += ["", f"![accuracy and FID vs guidance scale]({Path(args.out).with_suffix('.png').name})", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=500, help="samples per scale (a multiple of 10; >= 500 for FID)")
    p.add_argument("--scales", type=parse_scales, default=DEFAULT_SCALES, help="comma-separated, e.g. 1,3,5")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--spacing", default="karras")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "guidance_sweep.md"))
    p.add_argument("--cache", default=None, help="folder for per-scale samples: an interrupted run resumes")
    args = p.parse_args(argv)
    if args.n < 20 or args.n % 10:
        p.error(f"--n must be a multiple of 10 and at least 20, got {args.n}")
    device = torch.device(args.device) if args.device else dc.device()
    model, s = dc.load_pretrained("mnist", device=device)
    meta = dc.pretrained.manifest("mnist")
    desc = f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                               f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
                               f"threads, {os.cpu_count()} cores)")
    t0 = time.perf_counter()
    rows, floor = sweep(model, s, args.scales, args.n, args.sampler, args.steps, args.spacing, args.batch,
                        args.seed, device, log=lambda m: print(m, flush=True), cache=args.cache,
                        tag=meta["sha256"][:12])
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, floor, f"Classifier-free guidance, {args.sampler} {args.steps} steps, n = {args.n} per scale",
         out.with_suffix(".png"))
    meta = {**meta, "device": desc, "argv": argv if argv is not None else sys.argv[1:]}
    out.write_text(markdown(rows, floor, args, meta, seconds))
    out.with_suffix(".json").write_text(json.dumps(
        {"model_sha256": meta["sha256"], "n": args.n, "sampler": args.sampler, "steps": args.steps,
         "spacing": args.spacing, "seed": args.seed, "floor": floor, "rows": rows, "seconds": seconds},
        indent=1, default=float) + "\n")
    print(f"wrote {out} and {out.with_suffix('.png')} ({seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
