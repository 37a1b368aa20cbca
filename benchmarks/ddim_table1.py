"""DDIM's Table 1 at MNIST scale: FID for η ∈ {0, 0.2, 0.5, 1} × steps S ∈ {10, 20, 50, 100}.

Same model, cells, cache and metrics as benchmarks/quality_vs_nfe.py (the η = 0 and η = 1 cells are
shared with it). Spacing: ``leading`` = the DDIM paper's uniform skip t = 0, c, 2c, …; the paper used
*quadratic* spacing for CIFAR-10 (REFERENCES.md), so the teachable fact is the trend, not the numbers:
η = 0 best at few steps, the gap to η = 1 closing as S grows. The report says whether it holds here.

  python benchmarks/ddim_table1.py --list | (run) | --report      (options as in quality_vs_nfe.py)
"""

from __future__ import annotations

import json
import math
import sys

import quality_vs_nfe as Q
import torch

import ddpm_course as dc

ETAS = (0.0, 0.2, 0.5, 1.0)
STEPS = (10, 20, 50, 100)
PAPER = {0.0: (13.36, 6.84, 4.67, 4.16), 0.2: (14.04, 7.11, 4.77, 4.25), 0.5: (16.66, 8.35, 5.25, 4.46),
         1.0: (41.07, 18.36, 8.01, 5.78)}  # DDIM Table 1, CIFAR-10, 50k samples, quadratic spacing


def plan(n: int, seeds: list[int]) -> list[Q.Cell]:
    """Cheapest first: every η at S = 10, 20 (seed 0), then 50, 100, then extra seeds at S = 10, 20;
    last the conditional check (η = 0 and 1 at S = 10, 20 on the class-conditional branch)."""
    cell = lambda S, eta, seed: Q.Cell("ddim", S, eta, None, "leading", n, seed)
    first = [cell(S, eta, seeds[0]) for S in STEPS for eta in ETAS]
    extra = [cell(S, eta, s) for s in seeds[1:] for S in (10, 20) for eta in ETAS]
    return first + extra + cond_plan(n, seeds[0])


def cond_plan(n: int, seed: int) -> list[Q.Cell]:
    """The same η = 0 / η = 1 comparison on the class-conditional branch (labels 0…9 in turn, guidance 1),
    where the model's own error is far smaller (its FID is near the real-vs-real floor): if the
    unconditional reversal comes from model error, the paper's order should return here."""
    return [Q.Cell("ddim", S, eta, None, "leading", n, seed, kind="cond")
            for S in (10, 20) for eta in (0.0, 1.0)]


def cond_check(sha: str) -> list[str]:
    """Markdown lines: FID of η = 0 and η = 1 on the conditional branch, from the cached cells."""
    got = {(r["cell"]["eta"], r["cell"]["steps"]): r for r in Q.load_cells(sha)
           if r["cell"]["kind"] == "cond" and r["cell"]["sampler"] == "ddim"}
    rows = [S for S in (10, 20) if (0.0, S) in got and (1.0, S) in got]
    if not rows:
        return []
    out = ["## The same comparison on the class-conditional branch", "",
           "Labels 0…9 in turn, guidance 1 (the branch whose FID is near the floor), n = "
           f"{got[(0.0, rows[0])]['cell']['n']}, seed 0:", "",
           "| S | FID η = 0 | FID η = 1 | lower | accuracy η = 0 / η = 1 |", "|---|---|---|---|---|"]
    for S in rows:
        a, b = got[(0.0, S)], got[(1.0, S)]
        out.append(f"| {S} | {a['fid']:.3f} | {b['fid']:.3f} | η = {0 if a['fid'] < b['fid'] else 1} | "
                   f"{a['accuracy']:.1%} / {b['accuracy']:.1%} |")
    return out + [""]


def table(recs: list[dict]) -> dict:
    """{(eta, S): [fid per seed]} and the same for KID."""
    fid, kid = {}, {}
    for r in recs:
        c = r["cell"]
        if (c["sampler"], c["spacing"]) == ("ddim", "leading") and c["eta"] in ETAS and c["steps"] in STEPS:
            fid.setdefault((c["eta"], c["steps"], c["n"]), []).append(r["fid"])
            kid.setdefault((c["eta"], c["steps"], c["n"]), []).append(r["kid_mean"])
    return {"fid": fid, "kid": kid}


def trend(fid: dict, n: int) -> list[str]:
    """Plain statements: is η = 0 best at the fewest steps, and does the η = 1 − η = 0 gap close with S?"""
    m = {k[:2]: Q.mean_std(v)[0] for k, v in fid.items() if k[2] == n}
    out = []
    have = [S for S in STEPS if all((eta, S) in m for eta in ETAS)]
    if not have:
        return ["Not enough cells yet for a trend statement (need all four η at some S)."]
    S0 = have[0]
    best = min(ETAS, key=lambda eta: m[(eta, S0)])
    order = sorted(ETAS, key=lambda eta: m[(eta, S0)])
    ranked = ", ".join(f"η={e:g} ({m[(e, S0)]:.3f})" for e in order)
    out.append(f"At S = {S0}: η = {best:g} has the lowest FID; order best→worst: {ranked}. "
               "Paper: η = 0 best, FID rising with η.")
    gaps = [(S, m[(1.0, S)] - m[(0.0, S)]) for S in STEPS if (0.0, S) in m and (1.0, S) in m]
    if len(gaps) >= 2:
        closing = all(abs(b[1]) <= abs(a[1]) for a, b in zip(gaps, gaps[1:], strict=False))
        out.append("Gap FID(η=1) − FID(η=0) by S: " + ", ".join(f"S={S}: {g:+.3f}" for S, g in gaps)
                   + (" — shrinks monotonically with S, as in the paper." if closing else
                      " — does not shrink monotonically with S (paper: 27.7, 11.5, 3.3, 1.6)."))
    monotone = all(m[(e, S0)] <= m[(e2, S0)] for e, e2 in zip(ETAS, ETAS[1:], strict=False))
    out.append(f"FID non-decreasing in η at S = {S0}: {'yes' if monotone else 'no'}.")
    return out


def report(sha: str, desc: str) -> None:
    recs = [r for r in Q.load_cells(sha) if r["cell"]["kind"] == "uncond"]
    t = table(recs)
    if not t["fid"]:
        print(f"no DDIM Table 1 cells cached for model {sha[:16]} in {Q.CACHE}")
        return
    ns = sorted({k[2] for k in t["fid"]})
    floor = Q.baselines(set(ns))
    lines = [f"# DDIM Table 1 at MNIST scale — {desc}", "",
             f"Model sha256 `{sha[:16]}…`; sampler `ddim`, spacing `leading` (uniform skip); FID/KID from "
             "`dc.metrics` against the 1,000 held-out test digits; mean ± std over seeds (number of seeds).",
             ""]
    for n in ns:
        fl = floor[n]
        lines += [f"## n = {n}", "",
                  f"Real-vs-real floor: FID {Q.fmt(fl['fid'], 3)}, KID×10³ {Q.fmt(fl['kid'], 2, 1e3)}.", "",
                  "| η | " + " | ".join(f"S = {S}" for S in STEPS)
                  + " | paper (CIFAR-10), S = 10 / 20 / 50 / 100 |",
                  "|---|" + "---|" * len(STEPS) + "---|"]
        for eta in ETAS:
            vals = [Q.fmt(t["fid"].get((eta, S, n), []), 3) for S in STEPS]
            lines.append(f"| {eta:g} | " + " | ".join(vals) + " | " + " / ".join(map(str, PAPER[eta])) + " |")
        lines += ["", "KID × 10³:", "", "| η | " + " | ".join(f"S = {S}" for S in STEPS) + " |",
                  "|---|" + "---|" * len(STEPS)]
        for eta in ETAS:
            vals = [Q.fmt(t["kid"].get((eta, S, n), []), 2, 1e3) for S in STEPS]
            lines.append(f"| {eta:g} | " + " | ".join(vals) + " |")
        lines += ["", "**Trend (computed from the cells above):**", ""]
        lines += [f"- {s}" for s in trend(t["fid"], n)]
        lines.append("")
    lines += cond_check(sha)
    Q.RESULTS.mkdir(parents=True, exist_ok=True)
    (Q.RESULTS / "ddim_table1.md").write_text("\n".join(lines))
    summary = {"model_sha256": sha, "model": desc, "floor": floor,
               "fid": {f"eta={k[0]:g},S={k[1]},n={k[2]}": v for k, v in t["fid"].items()},
               "kid": {f"eta={k[0]:g},S={k[1]},n={k[2]}": v for k, v in t["kid"].items()},
               "trend": trend(t["fid"], 1000),
               "cond": {f"eta={r['cell']['eta']:g},S={r['cell']['steps']},n={r['cell']['n']}":
                        {"fid": r["fid"], "accuracy": r["accuracy"]}
                        for r in Q.load_cells(sha)
                        if r["cell"]["kind"] == "cond" and r["cell"]["sampler"] == "ddim"}}
    (Q.RESULTS / "ddim_table1.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(t["fid"], floor, desc)
    print(f"wrote {Q.RESULTS / 'ddim_table1.md'}, .json, .png")


def plot(fid: dict, floor: dict, desc: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for eta in ETAS:
        for n in sorted({k[2] for k in fid}):
            pts = [(S, *Q.mean_std(fid[(eta, S, n)])) for S in STEPS if (eta, S, n) in fid]
            if pts:
                axes[0].errorbar([p[0] for p in pts], [p[1] for p in pts],
                                 yerr=[0 if math.isnan(p[2]) else p[2] for p in pts],
                                 marker="o", capsize=3, label=f"η = {eta:g} (n={n})")
        axes[1].plot(STEPS, PAPER[eta], marker="o", label=f"η = {eta:g}")
    for n, fl in floor.items():
        axes[0].axhline(Q.mean_std(fl["fid"])[0], ls="--", color="gray", lw=1, label=f"real vs real (n={n})")
    axes[0].set(xscale="log", yscale="log", xlabel="steps S", ylabel="FID (MNIST classifier features)",
                title="this course's model (MNIST)")
    axes[1].set(xscale="log", yscale="log", xlabel="steps S", ylabel="FID (Inception)",
                title="DDIM paper, Table 1 (CIFAR-10)")
    for ax in axes:
        ax.set_xticks(STEPS, [str(S) for S in STEPS])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"DDIM η × steps — {desc}"[:110], fontsize=10)
    fig.tight_layout()
    fig.savefig(Q.RESULTS / "ddim_table1.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    a = Q.parse(argv, __doc__)
    cells = Q.select(plan(a.n, a.seeds), a.cells)
    sha, desc = Q.model_info(a.weights)
    if a.list:
        return Q.list_cells(cells, sha)
    if not a.report:
        Q.run(cells, a.weights, torch.device(a.device) if a.device else dc.device(), a.max_cells)
    if a.report or not a.no_report:
        report(sha, desc)


if __name__ == "__main__":
    sys.exit(main())
