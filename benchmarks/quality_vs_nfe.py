"""Quality versus NFE for every sampler on the shipped MNIST model, resumable, one cached cell at a time.

A *cell* is one (sampler, η, variance, spacing, steps, n, seed) setting of one model (its sha256): draw n
samples, score them with dc.metrics (FID, KID against the held-out real digits), time them. Each finished
cell is a small JSON file in benchmarks/results/cache/, so a rerun skips it and a later session continues;
an interrupted cell resumes from its last finished batch (benchmarks/results/cache/partial/).

Samplers (spacing in brackets, the usual one for each family):
  ddpm  σ̂ = β ("fixed_large", DDIM Table 1's last row) [leading]; the original 1000-step DDPM uses β̃.
        (DDPM with β̃ on a sub-grid *is* DDIM η = 1, so that row is the ddim η = 1 row.)
  ddim  η = 0 and η = 1 [leading, the DDIM paper's uniform skip];  euler, heun, dpmpp_2m [karras, ρ = 7];
  unipc, dpmpp_2m_sde, euler_ancestral [karras] at NFE 5–50 (one seed)
NFE ∈ {5, 10, 20, 50, 100} (Heun: steps = (NFE + 1)/2, NFE = 2·steps − 1), plus 1000-step DDPM.
Samples are quantised to 8-bit pixels (clip to [−1, 1], round) before scoring, as when saved as PNG; the
fraction of pixels the clip touched is recorded. Class-conditional models are sampled unconditionally
(null label) for FID; one extra cell samples class-conditionally (guidance 1) and records how often the
classifier sees the requested digit.

Cells run cheapest and most informative first (see ``plan``). Examples:
  python benchmarks/quality_vs_nfe.py --list                     # the plan, what is cached, the cost
  python benchmarks/quality_vs_nfe.py                            # run every missing cell, then --report
  python benchmarks/quality_vs_nfe.py --cells 'ddim*S10_*' 'cond*'   # only cells matching a pattern
  python benchmarks/quality_vs_nfe.py --n 50 --max-cells 2       # a quick end-to-end check
  python benchmarks/quality_vs_nfe.py --report                   # table + plot from the cached cells
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

import ddpm_course as dc
from ddpm_course import metrics, pretrained

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = RESULTS / "cache"
BATCH = 250                      # fixed: the noise of batch b comes from seed·10⁶ + b, so results do not
                                 # depend on how a run was interrupted
NFES = (5, 10, 20, 50, 100)
KID_SUBSETS = 100
FAR = 2 / 255                    # one 8-bit level: a background pixel at −1.001 is clipped but harmless;
                                 # clipped_far counts pixels more than one level outside [−1, 1]


@dataclass(frozen=True)
class Cell:
    sampler: str
    steps: int
    eta: float = 0.0
    variance: str | None = None  # ddpm only
    spacing: str = "leading"
    n: int = 1000
    seed: int = 0
    kind: str = "uncond"         # "uncond" (null label) or "cond" (labels 0..9 in turn, guidance 1)
    x0_clip: str | None = None   # dc.sample's x0_clip (benchmarks/x0_clipping.py); None in this study

    @property
    def label(self) -> str:
        """The sampler setting, without n and seed (one row of a table)."""
        return self._label + (f" x0_clip={self.x0_clip}" if self.x0_clip else "")

    @property
    def _label(self) -> str:
        if self.sampler == "ddim":
            return f"ddim η={self.eta:g}" + ("" if self.spacing == "leading" else f" [{self.spacing}]")
        if self.sampler == "ddpm":
            var = "σ̂=β" if self.variance == "fixed_large" else "β̃"
            return f"ddpm {var}" + ("" if self.spacing == "leading" else f" [{self.spacing}]")
        return self.sampler + ("" if self.spacing == "karras" else f" [{self.spacing}]")

    @property
    def name(self) -> str:
        """File-name-safe id, also what --cells patterns match, e.g. ddim_eta0_leading_S10_n1000_seed0."""
        var = f"_{self.variance}" if self.variance else ""
        pre = "cond_" if self.kind == "cond" else ""
        clip = f"_clip{self.x0_clip}" if self.x0_clip else ""
        return (f"{pre}{self.sampler}_eta{self.eta:g}{var}_{self.spacing}{clip}_S{self.steps}_n{self.n}"
                f"_seed{self.seed}")

    @property
    def nfe(self) -> int:
        return 2 * self.steps - 1 if self.sampler == "heun" else self.steps

    def path(self, sha: str) -> Path:
        return CACHE / f"{sha[:16]}_{self.name}.json"


def steps_for(sampler: str, nfe: int) -> int:
    return (nfe + 1) // 2 if sampler == "heun" else nfe


SETTINGS = [  # (sampler, eta, variance, spacing): the rows of the quality-vs-NFE table
    ("ddpm", 0.0, "fixed_large", "leading"),
    ("ddim", 0.0, None, "leading"),
    ("ddim", 1.0, None, "leading"),
    ("euler", 0.0, None, "karras"),
    ("heun", 0.0, None, "karras"),
    ("dpmpp_2m", 0.0, None, "karras"),
]
NEWER = ("unipc", "dpmpp_2m_sde", "euler_ancestral")   # issue 17: NFE 5–50, Karras, first seed only


def plan(n: int, seeds: list[int]) -> list[Cell]:
    """All cells of the study, in the order they run: cheap and informative first, DDPM-1000 last."""
    def row(nfes, seed):
        return [Cell(sm, steps_for(sm, k), eta, var, sp, n, seed)
                for k in nfes for sm, eta, var, sp in SETTINGS]

    first, extra = seeds[:1], seeds[1:]
    cells = [c for s in first for c in row((5, 10, 20), s)]
    cells += [Cell("dpmpp_2m", 20, spacing="karras", n=n, seed=s, kind="cond") for s in first]
    cells += [Cell("ddim", k, 0.0, None, "trailing", n, s) for s in first for k in (5, 10, 20)]
    cells += [c for s in first for c in row((50,), s)]
    cells += [Cell(sm, k, spacing="karras", n=n, seed=s) for s in first for k in (5, 10, 20, 50)
              for sm in NEWER]
    cells += [c for s in extra for c in row((5, 10, 20), s)]
    cells += [c for s in first for c in row((100,), s)]
    cells += [c for s in extra for c in row((50,), s)]
    cells += [Cell("ddpm", 1000, 0.0, "fixed_small", "leading", n, s) for s in first]
    return cells


def select(cells: list[Cell], patterns: list[str] | None) -> list[Cell]:
    if not patterns:
        return cells
    return [c for c in cells if any(fnmatch.fnmatch(c.name, p) for p in patterns)]


# --- the model --------------------------------------------------------------------------------------
def _is_checkpoint(weights: str) -> bool:
    return Path(weights).suffix in (".pt", ".pth")


def model_info(weights: str) -> tuple[str, str]:
    """(sha256 the cells are cached under, description) of ``weights``: a registry name, a training
    checkpoint file, or 'random:<config>' (an untrained U-Net, seed 0: only to check the pipeline)."""
    if weights.startswith("random:"):
        return f"random-{weights.split(':', 1)[1]}-seed0", f"untrained U-Net ({weights})"
    if _is_checkpoint(weights):
        from ddpm_course.train import load_checkpoint

        return pretrained.sha256(weights), f"checkpoint {weights} (step {load_checkpoint(weights)['step']})"
    meta = pretrained.manifest(weights)
    return meta["sha256"], f"dc.load_pretrained({weights!r}), {meta.get('steps', '?')} training steps"


def load_model(weights: str, device):
    """(model, schedule) for ``weights`` (see ``model_info``), in eval mode on ``device``."""
    from ddpm_course.train import load_checkpoint, make_schedule, model_from_checkpoint

    if weights.startswith("random:"):
        torch.manual_seed(0)
        return dc.UNet(weights.split(":", 1)[1]).to(device).eval(), make_schedule({})
    if _is_checkpoint(weights):
        ckpt = load_checkpoint(weights)
        return model_from_checkpoint(ckpt).to(device), make_schedule(ckpt["config"])
    return dc.load_pretrained(weights, device=device)


# --- one cell ----------------------------------------------------------------------------------------
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats → 8-bit pixels, as a PNG would store them (values outside are clipped)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def generate(model, s, cell: Cell, sha: str, device, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """n samples as uint8 (n, 1, 28, 28), resuming from the partial file of an interrupted run."""
    partial = CACHE / "partial" / f"{cell.path(sha).stem}.pt"
    done = {"images": torch.zeros(0, 1, 28, 28, dtype=torch.uint8), "seconds": 0.0, "cpu_seconds": 0.0,
            "clipped": 0, "clipped_far": 0, "nfe": 0}
    if partial.is_file():
        done = torch.load(partial, weights_only=True)
    n_batches = math.ceil(cell.n / BATCH)
    start = done["images"].shape[0] // BATCH
    bar = tqdm(total=n_batches, initial=start, desc=cell.name, disable=not progress)
    for b in range(start, n_batches):
        bs = min(BATCH, cell.n - b * BATCH)
        g = torch.Generator().manual_seed(cell.seed * 1_000_000 + b)
        x_T = torch.randn(bs, 1, 28, 28, generator=g).to(device)
        y = (torch.arange(b * BATCH, b * BATCH + bs) % 10).to(device) if cell.kind == "cond" else None
        cpu0 = time.process_time()
        with metrics.Timer() as t:
            x, info = dc.sample(model, s, x_T, sampler=cell.sampler, steps=cell.steps, eta=cell.eta,
                                spacing=cell.spacing, generator=g, y=y, variance=cell.variance,
                                x0_clip=cell.x0_clip, return_info=True)
        x = x.cpu()
        done = {"images": torch.cat([done["images"], to_uint8(x)]), "seconds": done["seconds"] + t.seconds,
                "cpu_seconds": done.get("cpu_seconds", 0.0) + time.process_time() - cpu0,
                "clipped": done["clipped"] + int((x.abs() > 1).sum()),
                "clipped_far": done.get("clipped_far", 0) + int((x.abs() > 1 + FAR).sum()), "nfe": info.nfe}
        if b < n_batches - 1:
            partial.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(partial, lambda p, d=done: torch.save(d, p))
        bar.update()
    bar.close()
    partial.unlink(missing_ok=True)
    return done["images"], done


def score(cell: Cell, images_u8: torch.Tensor, gen: dict) -> dict:
    x = images_u8.float() / 127.5 - 1
    k = metrics.kid(x, subsets=KID_SUBSETS, seed=cell.seed)
    out = {"fid": metrics.fid(x), "kid_mean": k.mean, "kid_std": k.std, "nfe": gen["nfe"],
           "seconds": round(gen["seconds"], 2), "seconds_per_sample": gen["seconds"] / cell.n,
           "cpu_seconds_per_sample": gen["cpu_seconds"] / cell.n,
           "clipped_fraction": gen["clipped"] / images_u8.numel(),
           "clipped_far_fraction": gen.get("clipped_far", 0) / images_u8.numel()}
    out["class_shares"] = metrics.class_shares(x).tolist()      # the digits the classifier reads
    inception = metrics.inception_score(x, splits=min(10, len(x)))   # 10 chunks; older cells have none
    out["inception_score"], out["inception_score_std"] = inception.mean, inception.std
    if cell.kind == "cond":
        y = torch.arange(cell.n) % 10
        pred = metrics.classify(x)
        out["accuracy"] = (pred == y).double().mean().item()
        out["accuracy_per_digit"] = [(pred[y == d] == d).double().mean().item() for d in range(10)]
    return out


def run_cell(model, s, cell: Cell, sha: str, desc: str, device, progress: bool = True) -> dict:
    """Sample, score and cache one cell; returns its record."""
    images, gen = generate(model, s, cell, sha, device, progress)
    record = {"cell": asdict(cell), "name": cell.name, "label": cell.label, "model_sha256": sha,
              "model": desc, **score(cell, images, gen), "batch": BATCH,
              "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
              "load_average": os.getloadavg()[0], "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    CACHE.mkdir(parents=True, exist_ok=True)
    _atomic_write(cell.path(sha), lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
    return record


def load_cells(sha: str) -> list[dict]:
    """Every cached cell of the model ``sha`` (other records in the cache, e.g. model_targets.py's guided
    accuracy, have no ``cell`` entry and are left out)."""
    recs = [json.loads(p.read_text()) for p in sorted(CACHE.glob(f"{sha[:16]}_*.json"))]
    return [r for r in recs if "cell" in r]


def run(cells: list[Cell], weights: str, device, max_cells: int | None = None) -> None:
    """Run every cell of ``cells`` that is not cached yet (at most ``max_cells``), printing each result."""
    sha, desc = model_info(weights)
    todo = [c for c in cells if not c.path(sha).is_file()]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells cached; running {len(todo[:max_cells])}")
    if not todo:
        return
    model, s = load_model(weights, device)
    for cell in todo[:max_cells]:
        r = run_cell(model, s, cell, sha, desc, device)
        extra = f", accuracy {r['accuracy']:.3f}" if "accuracy" in r else ""
        print(f"{cell.name}: FID {r['fid']:.3f}, KID {r['kid_mean']:.4f} ± {r['kid_std']:.4f}, "
              f"NFE {r['nfe']}, {r['seconds_per_sample'] * 1e3:.1f} ms/sample{extra}", flush=True)


# --- the report ----------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else float("nan")


def fmt(values: list[float], digits: int = 2, scale: float = 1.0) -> str:
    if not values:
        return "–"
    m, sd = mean_std([v * scale for v in values])
    return f"{m:.{digits}f}" if math.isnan(sd) else f"{m:.{digits}f} ± {sd:.{digits}f} ({len(values)})"


def baselines(ns: set[int], seeds: int = 3) -> dict[int, dict]:
    """Real-vs-real FID/KID floor for each sample size n (n train-split digits vs the test reference)."""
    out = {}
    for n in sorted(ns):
        fids = [metrics.real_baseline(n, seed=s) for s in range(seeds)]
        kids = [metrics.real_baseline_kid(n, seed=s).mean for s in range(seeds)]
        out[n] = {"fid": fids, "kid": kids}
    return out


def grouped(records: list[dict], key) -> dict:
    groups: dict = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return groups


def report(sha: str, desc: str) -> None:
    recs = [r for r in load_cells(sha) if r["cell"]["kind"] == "uncond"]
    cond = [r for r in load_cells(sha) if r["cell"]["kind"] == "cond"]
    if not recs and not cond:
        print(f"no cached cells for model {sha[:16]} in {CACHE}")
        return
    ns = {r["cell"]["n"] for r in recs + cond}
    floor = baselines(ns)
    rows = grouped(recs, lambda r: (r["label"], r["cell"]["n"]))
    nfes = sorted({r["nfe"] for r in recs})
    lines = [f"# Quality versus NFE — {desc}", "",
             f"Model sha256 `{sha[:16]}…`; FID/KID from `dc.metrics` (MNIST classifier features, reference: "
             "the 1,000 held-out test digits). Entries: mean ± std over seeds (number of seeds); one seed: "
             "the value alone. Samples quantised to 8 bits before scoring.", ""]
    for n in sorted(ns):
        fl = floor[n]
        lines += [f"**Real-vs-real floor at n = {n}** (n train-split digits vs the test reference, 3 draws): "
                  f"FID {fmt(fl['fid'], 3)}, KID×10³ {fmt(fl['kid'], 2, 1e3)}.", ""]
    tables = [("FID ↓", "fid", 2, 1.0), ("KID × 10³ ↓", "kid_mean", 2, 1e3),
              ("ms per sample, wall clock (this machine, shared: indicative)", "seconds_per_sample", 1, 1e3),
              ("ms per sample, CPU time of the process (less disturbed by other jobs)",
               "cpu_seconds_per_sample", 1, 1e3)]
    for title, field, digits, scale in tables:
        lines += [f"## {title}", "", "| sampler | n | " + " | ".join(f"NFE {k}" for k in nfes) + " |",
                  "|---|---|" + "---|" * len(nfes)]
        for (label, n), rs in sorted(rows.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])):
            by = grouped(rs, lambda r: r["nfe"])
            vals = [fmt([r[field] for r in by.get(k, []) if field in r], digits, scale) for k in nfes]
            lines.append(f"| {label} | {n} | " + " | ".join(vals) + " |")
        lines.append("")
    lines += ["NFE = network evaluations per sample (Heun: 2·steps − 1). Spacing: ddpm/ddim `leading`, "
              "euler/heun/dpmpp_2m `karras` unless shown in brackets.", ""]
    if cond:
        lines += ["## Class-conditional samples (guidance 1): does the classifier see the requested digit?",
                  "", "| sampler | NFE | n | accuracy | FID | per-digit accuracy 0–9 |",
                  "|---|---|---|---|---|---|"]
        for r in cond:
            per = " ".join(f"{a:.2f}" for a in r["accuracy_per_digit"])
            lines.append(f"| {r['label']} | {r['nfe']} | {r['cell']['n']} | {r['accuracy']:.3f} | "
                         f"{r['fid']:.2f} | {per} |")
        lines.append("")
    hw = sorted({f"{r['machine']}, {r['device']}, torch {r['torch']}, {r['threads']} threads"
                 for r in recs + cond})
    total = sum(r["seconds"] for r in recs + cond)
    lines += [f"Hardware: {'; '.join(hw)}. Sampling wall time of all cells: {total / 3600:.2f} h "
              "(shared machine: times are indicative; each cell's JSON records the load average).", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality_vs_nfe.md").write_text("\n".join(lines))
    summary = {"model_sha256": sha, "model": desc, "floor": floor, "cells": recs + cond}
    (RESULTS / "quality_vs_nfe.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(rows, floor, RESULTS / "quality_vs_nfe.png", desc)
    print(f"wrote {RESULTS / 'quality_vs_nfe.md'}, .json, .png")


def _order(label: str) -> int:
    names = [Cell(sm, 1, eta, var, sp).label for sm, eta, var, sp in SETTINGS]
    return names.index(label) if label in names else len(names)


def plot(rows: dict, floor: dict, out: Path, desc: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, n), rs in sorted(rows.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])):
        by = grouped(rs, lambda r: r["nfe"])
        ks = sorted(by)
        ms = [mean_std([r["fid"] for r in by[k]]) for k in ks]
        err = [0 if math.isnan(sd) else sd for _, sd in ms]
        ax.errorbar(ks, [m for m, _ in ms], yerr=err, marker="o", capsize=3, label=f"{label} (n={n})")
    for n, fl in floor.items():
        m = mean_std(fl["fid"])[0]
        ax.axhline(m, ls="--", color="gray", lw=1)
        ax.text(ax.get_xlim()[0], m, f" real vs real, n={n}", va="bottom", fontsize=8, color="gray")
    ax.set(xscale="log", yscale="log", xlabel="NFE (network evaluations per sample)",
           ylabel="FID (MNIST classifier features)", title=f"Quality vs NFE — {desc}"[:90])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# --- command line ----------------------------------------------------------------------------------------
def parse(argv, description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="mnist", help="registry name, checkpoint .pt, or random:<config>")
    p.add_argument("--n", type=int, default=1000, help="samples per cell (default 1000)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; extra seeds only for cheap cells")
    p.add_argument("--cells", nargs="*", help="run only cells whose name matches one of these glob patterns")
    p.add_argument("--max-cells", type=int, default=None, help="stop after this many new cells")
    p.add_argument("--list", action="store_true", help="print the plan and what is cached, run nothing")
    p.add_argument("--report", action="store_true", help="only write the table and plot from cached cells")
    p.add_argument("--no-report", action="store_true", help="do not write the report after running")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="default: dc.device()")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help=f"where the report and cache/ go (default {RESULTS.relative_to(HERE.parent)})")
    a = p.parse_args(argv)
    set_results(a.results)
    if a.n < 2:
        p.error("--n must be >= 2")
    a.seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    if not a.seeds:
        p.error("--seeds must name at least one seed")
    if a.threads:
        torch.set_num_threads(a.threads)
    return a


def set_results(folder: Path) -> None:
    global RESULTS, CACHE
    RESULTS, CACHE = Path(folder), Path(folder) / "cache"


def list_cells(cells: list[Cell], sha: str) -> None:
    total = 0
    for c in cells:
        cached = c.path(sha).is_file()
        total += 0 if cached else c.nfe * c.n
        print(f"{'cached ' if cached else 'todo   '} {c.name:55s} NFE {c.nfe:5d}")
    print(f"to do: {total:,} image-evaluations (≈ {total * 5e-3 / 3600:.1f} h at 5 ms each on 2 CPU cores)")


def main(argv=None) -> None:
    a = parse(argv, __doc__)
    cells = select(plan(a.n, a.seeds), a.cells)
    sha, desc = model_info(a.weights)
    if a.list:
        return list_cells(cells, sha)
    if not a.report:
        run(cells, a.weights, torch.device(a.device) if a.device else dc.device(), a.max_cells)
    if a.report or not a.no_report:
        report(sha, desc)


if __name__ == "__main__":
    sys.exit(main())
