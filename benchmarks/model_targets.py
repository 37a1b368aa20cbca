"""Does a course model meet the targets its lessons need? (issue 12; n = 1,000 unconditional samples)

Targets, each from a cell of the quality-vs-NFE study (``quality_vs_nfe.py``: same seeds, batches, 8-bit
quantisation and cache, so the study reuses these cells):

1. each digit's share of the unconditional DPM-Solver++(2M) 20-step samples within 7–13 %;
2. FID(DPM-Solver++(2M), 20 Karras steps) ≤ 1.5;
3. FID(DPM-Solver++(2M), 10 steps) ≤ 1.5 × FID(DDPM, 1000 steps) (DPM-Solver's own CIFAR-10 ratio is
   4.70 / 3.17 = 1.48); DDPM-1000 costs 1,000 NFE per sample, so ``--ddpm-n`` may compare both samplers
   on the first ``--ddpm-n`` samples only (the same x_T: batch b of a seed is always the same noise);
4. DDIM's Table 1 trend at S = 10: FID(η = 0) < FID(η = 1);
5. guided samples (s = 2, DPM-Solver++(2M) 10 steps, labels 0…9 in turn) are the requested digit ≥ 98 %.

  python benchmarks/model_targets.py                         # the shipped mnist weights
  python benchmarks/model_targets.py --weights runs/X/last.pt --ddpm-n 250
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import quality_vs_nfe as Q
import torch

import ddpm_course as dc
from ddpm_course import metrics

GUIDED_SCALE = 2.0


def cells(n: int, ddpm_n: int) -> dict[str, Q.Cell]:
    return {"dpm20": Q.Cell("dpmpp_2m", 20, spacing="karras", n=n),
            "dpm10": Q.Cell("dpmpp_2m", 10, spacing="karras", n=n),
            "dpm10_small": Q.Cell("dpmpp_2m", 10, spacing="karras", n=ddpm_n),
            "ddpm1000": Q.Cell("ddpm", 1000, 0.0, "fixed_small", "leading", n=ddpm_n),
            "ddim_eta0": Q.Cell("ddim", 10, 0.0, None, "leading", n=n),
            "ddim_eta1": Q.Cell("ddim", 10, 1.0, None, "leading", n=n)}


def guided_accuracy(model, s, n: int, sha: str, device, seed: int = 0) -> dict:
    """Accuracy on the requested digit at guidance s = 2 (cached beside the study's cells)."""
    path = Q.CACHE / f"{sha[:16]}_guided_s{GUIDED_SCALE:g}_dpmpp_2m_karras_S10_n{n}_seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    preds, ys = [], []
    for b in range(0, n, Q.BATCH):
        bs = min(Q.BATCH, n - b)
        g = torch.Generator().manual_seed(seed * 1_000_000 + b // Q.BATCH)
        x_T = torch.randn(bs, 1, 28, 28, generator=g).to(device)
        y = torch.arange(b, b + bs) % 10
        x = dc.sample(model, s, x_T, sampler="dpmpp_2m", steps=10, spacing="karras", y=y.to(device),
                      guidance_scale=GUIDED_SCALE).cpu()
        preds.append(metrics.classify(Q.to_uint8(x).float() / 127.5 - 1))
        ys.append(y)
    pred, y = torch.cat(preds), torch.cat(ys)
    rec = {"model_sha256": sha, "n": n, "guidance_scale": GUIDED_SCALE, "sampler": "dpmpp_2m", "steps": 10,
           "accuracy": (pred == y).double().mean().item(),
           "accuracy_per_digit": [(pred[y == d] == d).double().mean().item() for d in range(10)]}
    Q.CACHE.mkdir(parents=True, exist_ok=True)
    Q._atomic_write(path, lambda p: p.write_text(json.dumps(rec, indent=1) + "\n"))
    return rec


def verdicts(r: dict, guided: dict, ddpm_n: int) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, requirement, met) rows; met is None when a cell is missing."""
    rows = []
    sh = r["dpm20"].get("class_shares") if "dpm20" in r else None
    rows.append(("each digit's share (DPM-Solver++ 20 steps)",
                 "–" if sh is None else f"{min(sh):.1%} (digit {sh.index(min(sh))}) – {max(sh):.1%} "
                 f"(digit {sh.index(max(sh))})", "7–13 %",
                 None if sh is None else 0.07 <= min(sh) and max(sh) <= 0.13))
    f20 = r.get("dpm20", {}).get("fid")
    rows.append(("FID, DPM-Solver++(2M) 20 steps", "–" if f20 is None else f"{f20:.2f}", "≤ 1.5",
                 None if f20 is None else f20 <= 1.5))
    f1000, f10 = r.get("ddpm1000", {}).get("fid"), r.get("dpm10_small", {}).get("fid")
    rows.append((f"FID, DDPM 1000 steps (β̃), n = {ddpm_n}", "–" if f1000 is None else f"{f1000:.2f}",
                 "measured", None if f1000 is None else True))
    rows.append((f"FID, DPM-Solver++(2M) 10 steps, n = {ddpm_n}, same x_T",
                 "–" if f10 is None else f"{f10:.2f}"
                 + ("" if f1000 is None else f" = {f10 / f1000:.2f} × DDPM"),
                 "≤ 1.5 × DDPM-1000", None if f1000 is None or f10 is None else f10 <= 1.5 * f1000))
    e0, e1 = r.get("ddim_eta0", {}).get("fid"), r.get("ddim_eta1", {}).get("fid")
    rows.append(("DDIM S = 10: FID η = 0 vs η = 1",
                 "–" if e0 is None or e1 is None else f"{e0:.2f} vs {e1:.2f}",
                 "η = 0 lower", None if e0 is None or e1 is None else e0 < e1))
    acc = guided.get("accuracy")
    rows.append((f"guided (s = {GUIDED_SCALE:g}) samples read as the requested digit",
                 "–" if acc is None else f"{acc:.1%}", "≥ 98 %", None if acc is None else acc >= 0.98))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="mnist", help="registry name or training checkpoint .pt")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--ddpm-n", type=int, default=1000, help="samples for the DDPM-1000 comparison")
    p.add_argument("--skip", nargs="*", default=[], help="cells not to run now (e.g. ddpm1000)")
    p.add_argument("--results", type=Path, default=Q.RESULTS)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    if a.n < 2 or not 2 <= a.ddpm_n <= a.n:
        p.error("need --n >= 2 and 2 <= --ddpm-n <= --n")
    Q.set_results(a.results)
    device = torch.device(a.device) if a.device else dc.device()
    sha, desc = Q.model_info(a.weights)
    model, s = Q.load_model(a.weights, device)
    todo = cells(a.n, a.ddpm_n)
    unknown = set(a.skip) - set(todo)
    if unknown:
        p.error(f"--skip: {sorted(unknown)} not among {sorted(todo)}")
    recs = {}
    for key, cell in todo.items():
        path = cell.path(sha)
        if path.is_file():
            recs[key] = json.loads(path.read_text())
        elif key not in a.skip:
            recs[key] = Q.run_cell(model, s, cell, sha, desc, device)
        if key in recs:
            print(f"{key}: FID {recs[key]['fid']:.3f}", flush=True)
    guided = {} if "guided" in a.skip else guided_accuracy(model, s, a.n, sha, device)
    rows = verdicts(recs, guided, a.ddpm_n)
    mark = {True: "met", False: "**not met**", None: "not measured"}
    floor = metrics.real_baseline(1000)
    lines = [f"# Model targets — {desc}", "",
             f"Weights sha256 `{sha}`. `python benchmarks/model_targets.py --weights {a.weights} --n {a.n} "
             f"--ddpm-n {a.ddpm_n}`; unconditional samples (null label) unless stated, n = {a.n}, seed 0, "
             f"quantised to 8 bits, FID against the 1,000 held-out digits (real-vs-real floor at n = 1,000: "
             f"{floor:.2f}).", "", "| target | measured | requirement | verdict |", "|---|---|---|---|"]
    lines += [f"| {t} | {m} | {req} | {mark[ok]} |" for t, m, req, ok in rows]
    if "dpm20" in recs and "class_shares" in recs["dpm20"]:
        lines += ["", "Digit shares 0–9 (DPM-Solver++ 20 steps): "
                  + " ".join(f"{v:.1%}" for v in recs["dpm20"]["class_shares"])]
    if guided:
        lines += ["", "Guided accuracy per digit 0–9: "
                  + " ".join(f"{v:.1%}" for v in guided["accuracy_per_digit"])]
    out = Q.RESULTS / "model_targets.md"
    out.write_text("\n".join(lines) + "\n")
    (Q.RESULTS / "model_targets.json").write_text(json.dumps(
        {"model_sha256": sha, "model": desc, "floor_n1000": floor, "cells": recs, "guided": guided,
         "targets": [{"target": t, "measured": m, "requirement": req, "met": ok} for t, m, req, ok in rows]},
        indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
