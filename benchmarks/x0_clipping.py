"""x̂_0 clipping and dynamic thresholding at few steps, on the course model.

Every sampler predicts the clean image x̂_0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ at each step; with few steps and an
imperfect network it leaves the data range [−1, 1]. ``dc.sample(..., x0_clip=...)`` keeps it there:
"static" clips it (DDPM's reference code), "dynamic" is Imagen's thresholding (Saharia et al. 2022, §2.3:
per sample, s = the 99.5th percentile of |x̂_0|, at least 1, then x̂_0 ← clip(x̂_0, −s, s)/s). Both are
applied inside the ε̂ the sampler sees, so every sampler can use them.

Cells: DDIM η = 0 (leading) and DPM-Solver++(2M) (Karras) at 5 and 10 steps, unconditional, n = 1,000,
the same x_T per sample as benchmarks/quality_vs_nfe.py; the unclipped cells are that study's own (read
from its cache), the clipped ones are cached in benchmarks/results/cache/x0_clipping/ (resumable).
FID/KID against the held-out digits, and the fraction of final pixels outside [−1, 1] before the 8-bit
quantisation (more than one 8-bit level outside).

Run:  .venv/bin/python benchmarks/x0_clipping.py [--n 1000]     (≈ 10 CPU minutes for the 8 new cells)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import ddpm_course as dc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_vs_nfe as Q  # noqa: E402

STUDY_CACHE = Q.CACHE
OWN_CACHE = Q.RESULTS / "cache" / "x0_clipping"
SETTINGS = (("ddim", "leading"), ("dpmpp_2m", "karras"))
STEPS = (5, 10)
CLIPS = (None, "static", "dynamic")


def record(cell: Q.Cell, sha: str, desc: str, model, s, device) -> dict:
    """The cell's cached record (the study's for x0_clip=None), running it if needed."""
    Q.CACHE = STUDY_CACHE if cell.x0_clip is None else OWN_CACHE
    path = cell.path(sha)
    if path.is_file():
        return json.loads(path.read_text())
    return Q.run_cell(model, s, cell, sha, desc, device)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    device = torch.device(a.device) if a.device else dc.device()
    sha, desc = Q.model_info("mnist")
    model, s = Q.load_model("mnist", device)
    rows = []
    for sampler, spacing in SETTINGS:
        for steps in STEPS:
            for clip in CLIPS:
                cell = Q.Cell(sampler, steps, spacing=spacing, n=a.n, x0_clip=clip)
                r = record(cell, sha, desc, model, s, device)
                rows.append({"sampler": sampler, "spacing": spacing, "steps": steps, "x0_clip": clip,
                             "fid": r["fid"], "kid_mean": r["kid_mean"], "kid_std": r["kid_std"],
                             "clipped_far_fraction": r["clipped_far_fraction"],
                             "class_shares": r.get("class_shares")})
                print(f"{sampler} {steps} {clip}: FID {r['fid']:.2f}", flush=True)
    floor = Q.baselines({a.n})[a.n]
    out = {"command": "python benchmarks/x0_clipping.py", "model_sha256": sha, "model": desc, "n": a.n,
           "floor_fid": floor["fid"], "rows": rows, "torch": torch.__version__,
           "machine": f"{platform.machine()} {platform.system()}",
           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (Q.RESULTS / "x0_clipping.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# x̂_0 clipping and dynamic thresholding at few steps", "",
             f"`python benchmarks/x0_clipping.py` on {desc} (sha256 `{sha[:16]}…`), unconditional, "
             f"n = {a.n}; real-vs-real FID floor {sum(floor['fid']) / len(floor['fid']):.2f}. Clipped = "
             "final pixels more than one 8-bit level outside [−1, 1].", "",
             "| sampler | steps | x0_clip | FID | KID×10³ | clipped |", "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sampler']} [{r['spacing']}] | {r['steps']} | {r['x0_clip'] or 'none'} | "
                     f"{r['fid']:.2f} | {r['kid_mean'] * 1e3:.1f} ± {r['kid_std'] * 1e3:.1f} | "
                     f"{r['clipped_far_fraction']:.1%} |")
    (Q.RESULTS / "x0_clipping.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {Q.RESULTS / 'x0_clipping.md'}")


if __name__ == "__main__":
    main()
