"""What sampling costs: time against NFE, throughput and peak memory against batch size.

Three measurements on the shipped course U-Net (``dc.load_pretrained("mnist")``, class-conditional, no
guidance), each written to benchmarks/results/cost_memory.{json,md} (notebook 06 draws them):

1. **Time against NFE.** DDIM (η = 0, trailing) at NFE ∈ {1, 2, 5, 10, 20, 50} on a batch of B images,
   best of ``--repeats``; a least-squares line t = t₀ + C·NFE gives C, the cost of one network call on the
   batch, and t₀, the fixed overhead. Sampling cost is O(NFE · C): the line is the article's O(T·C).
2. **Throughput against batch size.** Images per second at a fixed NFE for B ∈ {1, 4, 16, 64, 256}: small
   batches leave the hardware idle, large ones saturate it.
3. **Peak memory against batch size.** Each batch size runs in a fresh process that loads the model and
   takes one sampling step; the peak memory of that step (resident set on Linux, measured from a reset
   high-water mark, ``max_memory_allocated`` on CUDA) minus the same at B = 1 is the memory the batch
   needs. The slope per image is the activation memory of one forward pass; the weights (parameters ×
   4 bytes) are a constant beside it: memory is O(parameters + B × activations per image).

Run:  .venv/bin/python benchmarks/cost_memory.py [--device cpu] [--threads 1] [--batch 64] [--repeats 3]
      (about 5 CPU minutes at one thread; the figures in the course were measured on an otherwise idle
      machine, see "machine" in the JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import ddpm_course as dc

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NFES = (1, 2, 5, 10, 20, 50)
BATCHES = (1, 4, 16, 64, 256)
MEMORY_BATCHES = (1, 16, 64, 256, 1024)
THROUGHPUT_NFE = 5


def time_sampling(model, s, batch: int, nfe: int, device, repeats: int) -> float:
    """Best-of-``repeats`` wall time (s) of one DDIM run with ``nfe`` steps on ``batch`` images."""
    x_T = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    y = (torch.arange(batch) % 10).to(device)
    best = float("inf")
    for _ in range(repeats):
        with dc.metrics.Timer() as t:
            dc.sample(model, s, x_T, sampler="ddim", steps=nfe, spacing="trailing", y=y)
        best = min(best, t.seconds)
    return best


def fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least squares y = a + b·x: (a, b)."""
    X = torch.tensor([[1.0, float(v)] for v in x], dtype=torch.float64)
    sol = torch.linalg.lstsq(X, torch.tensor(y, dtype=torch.float64)[:, None]).solution
    return float(sol[0, 0]), float(sol[1, 0])


MEMORY_PROBE = """
import resource, sys, torch, ddpm_course as dc
from pathlib import Path
batch, device = int(sys.argv[1]), torch.device(sys.argv[2])
model, s = dc.load_pretrained("mnist", device=device)
x = torch.randn(batch, 1, 28, 28, device=device)
y = torch.arange(batch, device=device) % 10
status = Path("/proc/self/status")

def kib(field):
    return next(int(l.split()[1]) for l in status.read_text().splitlines() if l.startswith(field))

if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
elif status.exists():
    Path("/proc/self/clear_refs").write_text("5")   # Linux: reset the peak RSS to the current RSS
    base = kib("VmRSS:") * 1024
else:
    base = 0
dc.sample(model, s, x, sampler="ddim", steps=1, y=y)
if device.type == "cuda":
    print(torch.cuda.max_memory_allocated(device) - base)
elif status.exists():
    print(kib("VmHWM:") * 1024 - base)                # the sampling step's own peak
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)   # whole-process peak
"""


def peak_memory(batch: int, device: str, threads: int) -> int:
    """Peak memory (bytes) that one sampling step on ``batch`` images adds, in a fresh process: on Linux the
    resident-set high-water mark is reset after the model loads (``/proc/self/clear_refs``), on CUDA the
    allocator's peak; elsewhere the whole process's peak (``ru_maxrss``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(batch), device], capture_output=True,
                         text=True, env=env, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=str(dc.device()))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64, help="batch of the time-against-NFE line")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model, s = dc.load_pretrained("mnist", device=device)
    params = sum(p.numel() for p in model.parameters())
    time_sampling(model, s, 4, 2, device, 1)                                  # warm-up
    nfe_rows = []
    for nfe in NFES:
        sec = time_sampling(model, s, a.batch, nfe, device, a.repeats)
        nfe_rows.append({"nfe": nfe, "seconds": sec})
        print(f"NFE {nfe:3d}, batch {a.batch}: {sec:.3f} s", flush=True)
    t0, C = fit_line([r["nfe"] for r in nfe_rows], [r["seconds"] for r in nfe_rows])
    batch_rows = []
    for b in BATCHES:
        sec = time_sampling(model, s, b, THROUGHPUT_NFE, device, a.repeats)
        batch_rows.append({"batch": b, "seconds": sec, "images_per_s": b / sec})
        print(f"batch {b:4d}, NFE {THROUGHPUT_NFE}: {b / sec:8.1f} images/s", flush=True)
    mem_rows = [{"batch": b, "peak_bytes": peak_memory(b, a.device, a.threads)} for b in MEMORY_BATCHES]
    base = mem_rows[0]["peak_bytes"]
    for r in mem_rows:
        r["extra_bytes"] = r["peak_bytes"] - base
        print(f"batch {r['batch']:5d}: step peak {r['peak_bytes'] / 2**20:8.1f} MiB "
              f"(+{r['extra_bytes'] / 2**20:.1f})", flush=True)
    _, per_image = fit_line([r["batch"] for r in mem_rows], [r["extra_bytes"] for r in mem_rows])
    meta = dc.pretrained.manifest("mnist")
    args = " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": f"python benchmarks/cost_memory.py {args}".strip(),
           "model_sha256": meta["sha256"], "parameters": params, "parameter_bytes": 4 * params,
           "device": str(device), "threads": a.threads, "batch": a.batch, "nfe_rows": nfe_rows,
           "fit": {"t0_s": t0, "C_s_per_call": C, "C_ms_per_image_call": 1e3 * C / a.batch},
           "throughput_nfe": THROUGHPUT_NFE, "batch_rows": batch_rows, "memory_rows": mem_rows,
           "activation_bytes_per_image": per_image, "torch": torch.__version__,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
                      f"{os.getloadavg()[0]:.1f} at the end",
           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cost_memory.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# What sampling costs", "", f"`{out['command']}` on {out['device']} ({out['machine']}, "
             f"{a.threads} thread(s)); model `mnist` (sha256 `{meta['sha256'][:16]}…`), "
             f"{params / 1e6:.2f} M parameters ({4 * params / 2**20:.1f} MiB in fp32).", "",
             f"## Time against NFE (DDIM, batch {a.batch})", "", "| NFE | seconds |", "|---:|---:|"]
    lines += [f"| {r['nfe']} | {r['seconds']:.3f} |" for r in nfe_rows]
    lines += ["", f"Fit t = t₀ + C·NFE: t₀ = {t0 * 1e3:.1f} ms, C = {C * 1e3:.1f} ms per network call on the "
              f"batch ({1e3 * C / a.batch:.2f} ms per image and call).", "",
              f"## Throughput against batch size (NFE {THROUGHPUT_NFE})", "", "| batch | images/s |",
              "|---:|---:|"]
    lines += [f"| {r['batch']} | {r['images_per_s']:.1f} |" for r in batch_rows]
    lines += ["", "## Peak memory against batch size (one sampling step, fresh process)", "",
              "| batch | the step's peak (MiB) | above batch 1 (MiB) |", "|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['peak_bytes'] / 2**20:.1f} | {r['extra_bytes'] / 2**20:.1f} |"
              for r in mem_rows]
    lines += ["", f"Slope: {per_image / 2**10:.0f} KiB per image (activations of one forward pass), against "
              f"{4 * params / 2**20:.1f} MiB of weights.", ""]
    (RESULTS / "cost_memory.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'cost_memory.md'}")


if __name__ == "__main__":
    main()
