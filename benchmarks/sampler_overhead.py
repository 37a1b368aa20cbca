"""How much time do the samplers add on top of the network?

Part 1, near-free model (ε = 0.9 x, one elementwise kernel), batch 64 of 1×28×28: seconds per model
evaluation of ``dc.sample`` against the equivalent diffusers scheduler loop (DDIMScheduler,
DDPMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler for dpmpp_2m
and dpmpp_2m_sde, EulerAncestralDiscreteScheduler, UniPCMultistepScheduler), best of
``--repeats`` runs each, one intra-op thread (this part measures Python and small-kernel overhead).

Part 2, the course's compact U-Net (``ddpm_course.unet.UNet("mnist")``, untrained weights, eval mode):
total sampling time against the time spent inside the network during the same run (every call timed
with a synchronising wrapper), and against NFE × the median of separate single calls.
Target: overhead no larger than diffusers', sampling time within 5 % of NFE × model time.

Run:  .venv/bin/python benchmarks/sampler_overhead.py [--device cpu] [--out PATH.md]   (~3 CPU minutes)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ddpm_course as dc  # noqa: E402

DIFFUSERS_CONFIG = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def diffusers_loop(sampler, model, x, steps, generator):
    """The standard diffusers sampling loop for the scheduler that implements `sampler`."""
    import diffusers

    if sampler == "ddim":
        sched = diffusers.DDIMScheduler(**DIFFUSERS_CONFIG, clip_sample=False, set_alpha_to_one=True,
                                        steps_offset=0)
    elif sampler == "ddpm":
        sched = diffusers.DDPMScheduler(**DIFFUSERS_CONFIG, clip_sample=False, variance_type="fixed_small")
    elif sampler == "euler":
        sched = diffusers.EulerDiscreteScheduler(**DIFFUSERS_CONFIG, timestep_spacing="leading")
    elif sampler == "heun":
        sched = diffusers.HeunDiscreteScheduler(**DIFFUSERS_CONFIG, timestep_spacing="leading")
    elif sampler == "euler_ancestral":
        sched = diffusers.EulerAncestralDiscreteScheduler(**DIFFUSERS_CONFIG, timestep_spacing="trailing")
    elif sampler == "unipc":
        sched = diffusers.UniPCMultistepScheduler(**DIFFUSERS_CONFIG, solver_order=2, solver_type="bh2",
                                                  final_sigmas_type="zero", timestep_spacing="trailing")
    else:
        algorithm = "sde-dpmsolver++" if sampler == "dpmpp_2m_sde" else "dpmsolver++"
        sched = diffusers.DPMSolverMultistepScheduler(**DIFFUSERS_CONFIG, algorithm_type=algorithm,
                                                      solver_order=2, final_sigmas_type="zero",
                                                      timestep_spacing="trailing")
    sched.set_timesteps(steps, device=x.device)
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        eps = model(inp, t.expand(len(x)))
        kw = {"generator": generator} if sampler in dc.samplers.STOCHASTIC else {}
        x = sched.step(eps, t, x, **kw).prev_sample
    return x, len(sched.timesteps)


SAMPLERS = ("ddim", "ddpm", "euler", "heun", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde", "unipc")
TRAILING = ("dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde", "unipc")     # as the diffusers loops space them


def ours(sampler, model, s, x, steps, generator):
    spacing = "trailing" if sampler in TRAILING else "leading"
    return dc.sample(model, s, x, sampler=sampler, steps=steps, spacing=spacing, generator=generator)


def best_time(fn, device, repeats):
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


class TimedModel:
    """Calls the network and adds the (synchronised) time spent inside it."""

    def __init__(self, net, device):
        self.net, self.device, self.seconds, self.calls = net, device, 0.0, 0
        self.null_label = getattr(net, "null_label", None)

    def __call__(self, *args):
        sync(self.device)
        t0 = time.perf_counter()
        out = self.net(*args)
        sync(self.device)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def part1(device, steps, repeats, lines):
    torch.set_num_threads(1)
    s = dc.NoiseSchedule.linear()
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    model = lambda x, t: 0.9 * x
    lines += [f"## Near-free model (ε = 0.9·x), batch 64 × 1×28×28, {steps} steps, best of {repeats}, "
              "1 thread", "",
              "| sampler | NFE | dc.sample total (ms) | per NFE (µs) | diffusers total (ms) | per NFE (µs) "
              "| ratio |",
              "|---|---|---|---|---|---|---|"]
    for sampler in SAMPLERS:
        gen = lambda: torch.Generator().manual_seed(1)          # not x_T's seed
        nfe = dc.sample(model, s, x, sampler=sampler, steps=steps, return_info=True,
                        spacing="trailing" if sampler in TRAILING else "leading", generator=gen())[1].nfe
        ours(sampler, model, s, x, steps, gen())                       # warm-up
        diffusers_loop(sampler, model, x, steps, gen())
        t_ours = best_time(lambda: ours(sampler, model, s, x, steps, gen()), device, repeats)  # noqa: B023
        n_theirs = diffusers_loop(sampler, model, x, steps, gen())[1]
        t_theirs = best_time(lambda: diffusers_loop(sampler, model, x, steps, gen()), device,  # noqa: B023
                             repeats)
        lines.append(f"| {sampler} | {nfe} | {t_ours * 1e3:.1f} | {t_ours / nfe * 1e6:.0f} | "
                     f"{t_theirs * 1e3:.1f} | {t_theirs / n_theirs * 1e6:.0f} | "
                     f"{t_ours / nfe / (t_theirs / n_theirs):.2f} |")
        print(lines[-1], flush=True)
    lines.append("")


def part2(device, steps, batch, threads, lines):
    torch.set_num_threads(threads)
    try:
        from ddpm_course.unet import UNet, count_parameters

        net = UNet("mnist").to(device).eval()
        what = f"ddpm_course.unet.UNet('mnist'), {count_parameters(net) / 1e6:.2f} M parameters, untrained"
        y = torch.arange(batch, device=device) % 10
    except Exception as err:                                           # U-Net not available: a stand-in
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3, padding=1), torch.nn.SiLU(),
                                  torch.nn.Conv2d(64, 1, 3, padding=1)).to(device).eval()
        net = (lambda f: lambda x, t: f(x))(net)
        what, y = f"small conv stand-in (U-Net unavailable: {err!r:.80})", None
    s = dc.NoiseSchedule.linear()
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    call = (lambda: net(x, torch.full((batch,), 500, device=device), y)) if y is not None else \
        (lambda: net(x, torch.full((batch,), 500, device=device)))
    with torch.no_grad():
        call()
        single = []
        for _ in range(5):
            sync(device)
            t0 = time.perf_counter()
            call()
            sync(device)
            single.append(time.perf_counter() - t0)
    t_call = statistics.median(single)
    lines += [f"## Compact U-Net: {what}", "",
              f"batch {batch} × 1×28×28, {steps} steps, {threads} thread(s); one model call (median of 5): "
              f"{t_call * 1e3:.0f} ms", "",
              "| sampler | NFE | total (s) | time in model (s) | total / time in model "
              "| total / (NFE × median call) |",
              "|---|---|---|---|---|---|"]
    for sampler, kw in (*((name, {}) for name in SAMPLERS), ("ddim", {"guidance_scale": 3.0})):
        if "guidance_scale" in kw and y is None:
            continue
        timed = TimedModel(net, device)
        sync(device)
        t0 = time.perf_counter()
        _, info = dc.sample(timed, s, x, sampler=sampler, steps=steps, y=y, return_info=True,
                            generator=torch.Generator().manual_seed(1), **kw)
        sync(device)
        total = time.perf_counter() - t0
        name = sampler + (f", guidance {kw['guidance_scale']} (batch 2B)" if kw else "")
        # with guidance each call carries 2B samples: only the in-run model time is comparable
        ratio = f"{total / (info.nfe * t_call):.3f}" if not kw else "n/a (2B batch)"
        lines.append(f"| {name} | {info.nfe} | {total:.2f} | {timed.seconds:.2f} "
                     f"| {total / timed.seconds:.3f} | {ratio} |")
        print(lines[-1], flush=True)
    lines += ["", "\"time in model\" is measured inside the same run (each call synchronised and timed), so "
              "\"total / time in model\" is the sampler's own cost and is immune to machine load; the last "
              "column compares with separately timed calls and also moves with any change in load between "
              "the two measurements (on a busy shared CPU by tens of per cent either way).", ""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=str(dc.device()))
    p.add_argument("--steps", type=int, default=50, help="steps for the near-free comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--unet-steps", type=int, default=4)
    p.add_argument("--unet-batch", type=int, default=4)
    p.add_argument("--unet-threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "sampler_overhead.md"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    import diffusers

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# Sampler overhead", "",
             f"Command: `python benchmarks/sampler_overhead.py {' '.join(argv or sys.argv[1:])}`  ",
             f"Device: {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"load average {load:.1f} at start); torch {torch.__version__}, "
             f"diffusers {diffusers.__version__}, Python {platform.python_version()}.", ""]
    part1(device, args.steps, args.repeats, lines)
    part2(device, args.unet_steps, args.unet_batch, args.unet_threads, lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
