"""Interactive explorers for the notebooks (ipywidgets 7.7 — Colab — and 8).

Each explorer separates the *computation* from the *widgets*: ``explorer.render(**values)`` is a plain
function returning a matplotlib Figure (unit-tested without a kernel), and ``explorer.widget()`` wires
sliders and dropdowns to it through one ``observe(..., names="value")`` callback — the part of the
ipywidgets API that is identical in 7.7 and 8.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch


class Explorer:
    """A figure that re-renders when any control changes.

    ``controls`` maps a parameter name of ``render_fn`` to an ipywidgets control (built lazily by
    ``widget()``) or to a plain value (fixed). ``render_fn(**values)`` must return a Figure.
    """

    def __init__(self, render_fn: Callable, controls: dict[str, Callable], defaults: dict):
        self._render_fn = render_fn
        self._control_factories = controls
        self.defaults = dict(defaults)
        self.values = dict(defaults)
        self.n_renders = 0
        self.last_figure = None
        self._out = None
        self._controls: dict = {}

    def render(self, **values):
        """Draw the figure for these control values (missing ones take the current values)."""
        self.values.update(values)
        fig = self._render_fn(**self.values)
        self.n_renders += 1
        self.last_figure = fig
        return fig

    def on_change(self, change=None) -> None:
        """The widget callback: read every control, re-render into the output area."""
        from IPython.display import display

        self.values.update({name: w.value for name, w in self._controls.items()})
        fig = self.render()
        if self._out is not None:
            self._out.clear_output(wait=True)
            with self._out:
                display(fig)
        plt.close(fig)

    def widget(self):
        """Build the controls and the output area; returns an ipywidgets VBox to display."""
        import ipywidgets as W

        self._controls = {name: make(self.defaults[name]) for name, make in self._control_factories.items()}
        self._out = W.Output()
        for w in self._controls.values():
            w.observe(self.on_change, names="value")
        self.on_change()
        return W.VBox([W.HBox(list(self._controls.values())), self._out])


def _slider(description: str, lo: int, hi: int, step: int = 1):
    def make(value):
        import ipywidgets as W

        return W.IntSlider(value=value, min=lo, max=hi, step=step, description=description,
                           continuous_update=False)

    return make


def _float_slider(description: str, lo: float, hi: float, step: float):
    def make(value):
        import ipywidgets as W

        return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                             continuous_update=False)

    return make


def _dropdown(description: str, options):
    def make(value):
        import ipywidgets as W

        return W.Dropdown(options=list(options), value=value, description=description)

    return make


# --- notebook 01: the forward process ---------------------------------------------------------------
def forward_explorer(x0: torch.Tensor, schedules: dict, noise: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> Explorer:
    """Slide t and watch q(x_t | x_0) destroy the images; compare schedules (DDPM eq. 4)."""
    from .diffusion import q_sample
    from .viz import make_grid

    if not schedules:
        raise ValueError("schedules must name at least one NoiseSchedule, e.g. {'linear': s}")
    noise = torch.randn(x0.shape, generator=generator) if noise is None else noise
    T = next(iter(schedules.values())).T

    def render(t: int, schedule: str):
        if schedule not in schedules:
            raise ValueError(f"schedule must be one of {list(schedules)}, got {schedule!r}")
        s = schedules[schedule]
        if not 0 <= t < s.T:
            raise ValueError(f"t must lie in [0, {s.T - 1}], got {t}")
        x_t = q_sample(x0, torch.full((x0.shape[0],), t, dtype=torch.long), noise, s)
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
        a.imshow(make_grid(x_t), cmap="gray", vmin=0, vmax=1)
        a.set_axis_off()
        ab = float(s.alpha_bars[t])
        a.set_title(f"x_t at t = {t + 1}:  √ᾱ = {ab ** 0.5:.3f}, √(1−ᾱ) = {(1 - ab) ** 0.5:.3f}", fontsize=9)
        for name, other in schedules.items():
            lw = 2 if name == schedule else 1
            b.plot(range(1, other.T + 1), other.alpha_bars.numpy(), label=name, lw=lw)
        b.axvline(t + 1, color="k", ls="--", lw=1)
        b.set_xlabel("t")
        b.set_ylabel("ᾱ_t")
        b.legend()
        b.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    first = next(iter(schedules))
    return Explorer(render, {"t": _slider("t − 1", 0, T - 1, max(1, T // 100)),
                             "schedule": _dropdown("schedule", schedules)},
                    {"t": T // 4, "schedule": first})


# --- notebooks 04, 05, 08: samplers, η, steps, guidance ---------------------------------------------
def noise_seed(seed: int) -> int:
    """The explorer's own seed for the sampler's fresh noise z, derived from ``seed`` by a hash so that it
    never equals a small seed a notebook used for x_T (were z = x_T, DDIM with 0 < η < 1 adds the same noise
    twice and draws garbage)."""
    return int.from_bytes(hashlib.sha256(f"sampler_explorer:{seed}".encode()).digest()[:7], "big")


def sampler_explorer(model, s, x_T: torch.Tensor, samplers=None, steps=(5, 10, 20, 50),
                     y: torch.Tensor | None = None, seed: int = 0, guidance_scales=(1.0,),
                     cache_size: int = 32) -> Explorer:
    """Pick a sampler, a number of steps, η and (for conditional models) a guidance scale; see the
    samples from the same x_T, with the NFE and wall time it cost. Results are cached. The samplers' fresh
    noise comes from ``torch.Generator().manual_seed(noise_seed(seed))``, independent of x_T."""
    from .samplers import SAMPLERS, sample
    from .viz import make_grid

    if samplers is None:                                      # default: every sampler, DDIM first
        samplers = ("ddim", *(name for name in SAMPLERS if name != "ddim"))
    samplers = tuple(samplers)
    unknown = [name for name in samplers if name not in SAMPLERS]
    if unknown or not samplers:
        raise ValueError(f"samplers must be names from {tuple(SAMPLERS)}, got {samplers!r}")
    cache: OrderedDict = OrderedDict()

    def generate(sampler, n_steps, eta, guidance_scale):
        key = (sampler, n_steps, round(eta, 4), round(guidance_scale, 4))
        if key not in cache:
            g = torch.Generator().manual_seed(noise_seed(seed))
            t0 = time.perf_counter()
            x0, info = sample(model, s, x_T, sampler=sampler, steps=n_steps, eta=eta, generator=g, y=y,
                              guidance_scale=guidance_scale, return_info=True)
            cache[key] = (x0, info.nfe, time.perf_counter() - t0)
            if len(cache) > cache_size:
                cache.popitem(last=False)
        return cache[key]

    def render(sampler: str, steps: int, eta: float, guidance_scale: float):
        x0, nfe, seconds = generate(sampler, steps, eta if sampler == "ddim" else 0.0, guidance_scale)
        fig, ax = plt.subplots(figsize=(4, 4.3))
        ax.imshow(make_grid(x0.clamp(-1, 1)), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        extra = f", η = {eta:g}" if sampler == "ddim" else ""
        extra += f", guidance s = {guidance_scale:g}" if guidance_scale != 1.0 else ""
        ax.set_title(f"{sampler}, {steps} steps{extra}\nNFE = {nfe}, {seconds:.1f} s", fontsize=9)
        fig.tight_layout()
        return fig

    controls = {"sampler": _dropdown("sampler", samplers), "steps": _dropdown("steps", steps),
                "eta": _float_slider("η (ddim)", 0.0, 1.0, 0.1)}
    if len(guidance_scales) > 1 or guidance_scales[0] != 1.0:
        controls["guidance_scale"] = _dropdown("guidance", guidance_scales)
    return Explorer(render, controls, {"sampler": samplers[0], "steps": steps[len(steps) // 2], "eta": 0.0,
                                       "guidance_scale": guidance_scales[0]})
