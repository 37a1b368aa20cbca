"""The multistep solvers' last steps: extrapolate D over a jump, or fall back to first order?

Uniform-in-t grids end with one long step in λ = −log σ: leading and linspace jump from σ ≈ 0.18 to
σ_min ≈ 0.01 (h ≈ 2.9) right after a step of h ≈ 0.7. DPM-Solver++(2M), its SDE variant and UniPC
extrapolate the data prediction D linearly in λ from the last two points, with weight h/(2h_{i−1}) ≈ 2 on
the older one. The course's rule (``samplers.MAX_STEP_GROWTH = 2``): second order only while
h ≤ 2 h_{i−1}, else D̂ = D_i. The reference library's rule: always extrapolate (``max_growth=inf``; its
``lower_order_final`` only acts on the last steps when there are fewer than 15).

Part 1, the exact Gaussian oracle (data N(0.3, 0.5²), 20,000 points in float64): the std of the samples
(truth 0.50) and, for the ODE solvers, the RMS distance to the exact probability-flow endpoint of each x_T.
Part 2, the course model (shipped ``mnist``, unconditional, n = 1,000, one x_T per sample as in
quality_vs_nfe.py): FID and KID of DPM-Solver++(2M) and UniPC at 10 and 20 leading steps under both rules.
Cells are cached in benchmarks/results/cache/final_steps/ (resumable).

Run:  .venv/bin/python benchmarks/final_steps.py [--n 1000] [--part oracle|model|both]
      (oracle ≈ 1 CPU minute; model ≈ 15 CPU minutes for the 8 cells)
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

import ddpm_course as dc
from ddpm_course import samplers
from ddpm_course.toy import GaussianOracle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_vs_nfe as Q  # noqa: E402

Q.CACHE = Q.RESULTS / "cache" / "final_steps"      # its own cells: not rows of the quality-vs-NFE report

RULES = {"course (h ≤ 2 h_prev)": samplers.MAX_STEP_GROWTH, "diffusers (always)": math.inf}
ODE = ("dpmpp_2m", "unipc")
SOLVERS = (*ODE, "dpmpp_2m_sde")
SPACINGS = ("leading", "linspace", "trailing", "karras")
STEPS = (5, 10, 20, 50)
MODEL_STEPS = (10, 20)


def register_unguarded() -> dict[str, str]:
    """Variants with the reference library's rule, under their own names (this process only)."""
    names = {}
    for name in SOLVERS:
        variant = f"{name}_always2"
        samplers.SAMPLERS[variant] = functools.partial(samplers.SAMPLERS[name], max_growth=math.inf)
        if name in samplers.STOCHASTIC:
            samplers.STOCHASTIC = (*samplers.STOCHASTIC, variant)
        names[name] = variant
    return names


def part_oracle(variants: dict[str, str]) -> dict:
    s = dc.NoiseSchedule.linear()
    gauss = GaussianOracle(s, mean=0.3, std=0.5)
    x_T = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = []
    for sampler in SOLVERS:
        for spacing in SPACINGS:
            for steps in STEPS:
                grid = s.grid(steps, spacing)
                exact = gauss.ode_solution(x_T / math.sqrt(grid.alpha_bars[0]), float(grid.sigmas[0]), 0.0)
                row = {"sampler": sampler, "spacing": spacing, "steps": steps}
                for rule, name in (("course", sampler), ("diffusers", variants[sampler])):
                    x = dc.sample(gauss, s, x_T, sampler=name, steps=steps, spacing=spacing,
                                  generator=torch.Generator().manual_seed(5))
                    row[f"std_{rule}"] = x.std().item()
                    if sampler in ODE:
                        row[f"rms_{rule}"] = (x - exact).pow(2).mean().sqrt().item()
                rows.append(row)
    return {"data": "N(0.3, 0.5²), 20,000 points, float64", "rows": rows}


def part_model(variants: dict[str, str], n: int, device) -> list[dict]:
    sha, desc = Q.model_info("mnist")
    model, s = Q.load_model("mnist", device)
    out = []
    for sampler in ODE:
        for steps in MODEL_STEPS:
            for rule, name in (("course", sampler), ("diffusers", variants[sampler])):
                cell = Q.Cell(name, steps, spacing="leading", n=n)
                rec = json.loads(cell.path(sha).read_text()) if cell.path(sha).is_file() else \
                    Q.run_cell(model, s, cell, sha, desc, device)
                out.append({"sampler": sampler, "rule": rule, "steps": steps, "n": n, "fid": rec["fid"],
                            "kid_mean": rec["kid_mean"], "kid_std": rec["kid_std"],
                            "clipped_far_fraction": rec["clipped_far_fraction"], "model_sha256": sha})
                print(f"{sampler} {rule} S{steps}: FID {rec['fid']:.2f}", flush=True)
    return out


def write_report(oracle: dict | None, model: list[dict] | None, n: int) -> None:
    path = Q.RESULTS / "final_steps.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    oracle = oracle or old.get("oracle")
    model = model or old.get("model")
    (Q.RESULTS / "final_steps.json").write_text(json.dumps(
        {"command": "python benchmarks/final_steps.py", "max_step_growth": samplers.MAX_STEP_GROWTH,
         "oracle": oracle, "model": model, "torch": torch.__version__,
         "machine": f"{platform.machine()} {platform.system()}",
         "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    lines = ["# The multistep solvers' last steps", "",
             "`python benchmarks/final_steps.py` — second order only while h ≤ 2 h_{i−1} (the course's "
             "rule, `samplers.MAX_STEP_GROWTH`) against always extrapolating (diffusers' rule).", ""]
    if oracle:
        lines += [f"## Exact Gaussian oracle ({oracle['data']}): final std (truth 0.500) and RMS error to "
                  "the exact ODE endpoint", "",
                  "| sampler | spacing | steps | std, course | std, diffusers | RMS, course "
                  "| RMS, diffusers |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in oracle["rows"]:
            rms = [f"{r[k]:.4f}" if k in r else "–" for k in ("rms_course", "rms_diffusers")]
            lines.append(f"| {r['sampler']} | {r['spacing']} | {r['steps']} | {r['std_course']:.3f} | "
                         f"{r['std_diffusers']:.3f} | {rms[0]} | {rms[1]} |")
        lines.append("")
    if model:
        sha = model[0]["model_sha256"]
        floor = Q.baselines({model[0]["n"]})[model[0]["n"]]
        lines += [f"## Course model (`mnist`, sha256 `{sha[:16]}…`), unconditional, leading spacing, "
                  f"n = {model[0]['n']}", "",
                  f"Real-vs-real floor at this n: FID {sum(floor['fid']) / len(floor['fid']):.2f}.", "",
                  "| sampler | steps | FID, course | FID, diffusers | KID×10³, course | KID×10³, diffusers |",
                  "|---|---:|---:|---:|---:|---:|"]
        by = {(r["sampler"], r["steps"], r["rule"]): r for r in model}
        for sampler in ODE:
            for steps in MODEL_STEPS:
                a, b = by.get((sampler, steps, "course")), by.get((sampler, steps, "diffusers"))
                if a and b:
                    lines.append(f"| {sampler} | {steps} | {a['fid']:.2f} | {b['fid']:.2f} | "
                                 f"{a['kid_mean'] * 1e3:.2f} | {b['kid_mean'] * 1e3:.2f} |")
        lines.append("")
    (Q.RESULTS / "final_steps.md").write_text("\n".join(lines))
    print(f"wrote {Q.RESULTS / 'final_steps.md'}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("oracle", "model", "both"), default="both")
    p.add_argument("--n", type=int, default=1000, help="samples per model cell")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    variants = register_unguarded()
    oracle = part_oracle(variants) if a.part in ("oracle", "both") else None
    device = torch.device(a.device) if a.device else dc.device()
    model = part_model(variants, a.n, device) if a.part in ("model", "both") else None
    write_report(oracle, model, a.n)


if __name__ == "__main__":
    main()
