"""Measure how long each notebook takes to run, and record it in docs/runtimes.json.

    python docs/tools/measure_runtimes.py [--mode fast|full] [--kind cpu_fast] [--figures DIR] [NN ...]

Each student notebook (notebooks/NN_*.ipynb, what a learner runs) is executed top to bottom by a fresh
kernel, as "Restart kernel and run all" would, with DDPM_COURSE_FAST=1 in fast mode; the wall-clock time
from kernel start to the last cell is written to docs/runtimes.json under notebooks[NN_topic][kind] with
"how": "measured", and the machine, date and load average go to the file's "measured_on". By default the
figure is the kernel's CPU time (``--clock cpu``): on a shared, loaded machine the wall-clock time mostly
measures waiting for a core, while the CPU time bounds what a machine of its own would take. The README
course map (`make notebooks`) and docs/instructor_guide.md read these figures. With ``--figures DIR`` the
notebooks' ``FIGURES`` parameter is set to DIR, so a full-mode run also saves the figures the course shows
in fast mode (``dc.course.save_figure``), from exactly the notebook's own code.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ROOT / "docs" / "runtimes.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# Appended to the notebook in memory: the kernel's own CPU time (user + system, its threads and child
# processes included), from its start to the end of the last cell.
CPU_PROBE = """import resource as _r
_u = [_r.getrusage(w) for w in (_r.RUSAGE_SELF, _r.RUSAGE_CHILDREN)]
print("KERNEL_CPU_SECONDS", sum(u.ru_utime + u.ru_stime for u in _u))"""


def set_figures(nb, folder: Path) -> None:
    """After the notebook's ``parameters`` cell, a cell that sets FIGURES = folder (papermill's way)."""
    at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if at is None:
        raise ValueError("the notebook has no cell tagged 'parameters' to set FIGURES after")
    import nbformat

    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"FIGURES = {str(folder)!r}"))


def run(path: Path, timeout: int, figures: Path | None = None) -> tuple[float, float, list[str]]:
    """(wall seconds, kernel CPU seconds, unexpected errors) of one top-to-bottom run by a fresh kernel."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if figures is not None:
        set_figures(nb, figures)
    nb.cells.append(nbformat.v4.new_code_cell(CPU_PROBE))
    start = time.monotonic()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as err:  # a failing cell: reported, not measured
        return time.monotonic() - start, float("nan"), [f"{type(err).__name__}: {str(err)[-300:]}"]
    wall = time.monotonic() - start
    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    cpu = float(probe.split("KERNEL_CPU_SECONDS")[1])
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"
              and "raises-exception" not in c.metadata.get("tags", [])]
    return wall, cpu, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    ap.add_argument("--mode", choices=("fast", "full"), default="fast")
    ap.add_argument("--kind", default=None, help="runtimes.json kind (default: cpu_<mode>)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="record the kernel's CPU time (default: what a machine of its own would take, "
                         "at most, when other jobs share the cores) or the wall-clock time")
    ap.add_argument("--figures", type=Path, default=None,
                    help="set the notebooks' FIGURES parameter: save their full-mode figures there")
    args = ap.parse_args()
    kind = args.kind or f"cpu_{args.mode}"
    figures = args.figures.resolve() if args.figures else None
    if args.mode == "fast":
        os.environ["DDPM_COURSE_FAST"] = "1"
    else:
        os.environ.pop("DDPM_COURSE_FAST", None)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend, as in JupyterLab
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.numbers:
        paths = [p for p in paths if p.name[:2] in {f"{int(n):02d}" for n in args.numbers}]
    load_before = os.getloadavg()
    failed = 0
    for path in paths:
        wall, cpu, errors = run(path, args.timeout, figures)
        print(f"{path.relative_to(ROOT)}: wall {wall:.0f} s, kernel CPU {cpu:.0f} s "
              f"{'OK' if not errors else errors}", flush=True)
        if errors:
            failed += 1
            continue
        seconds = cpu if args.clock == "cpu" else wall
        entry = {"seconds": max(1, round(seconds)), "how": "measured",
                 "note": f"kernel CPU time {cpu:.0f} s; wall-clock {wall:.0f} s on the shared machine"}
        record(path.stem, kind, entry, load_before, args.clock)  # after each notebook: nothing is lost
    return 1 if failed else 0


def record(stem: str, kind: str, entry: dict, load_before: tuple, clock: str) -> None:
    data = json.loads(RUNTIMES.read_text(encoding="utf-8")) if RUNTIMES.is_file() else {"notebooks": {}}
    data["notebooks"].setdefault(stem, {})[kind] = entry
    data.setdefault("measured_on", {})[kind] = {
        "date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after",
        "clock": clock,
        "note": "each student notebook run top to bottom by a fresh kernel, one after another, niced, while "
                "a training job and other work shared the cores. 'seconds' is the kernel's CPU time (user + "
                "system, all threads): on a machine of its own with at least as many cores, the wall-clock "
                "time is at most about this; the wall-clock time under the shared load is in each 'note'"}
    data["notebooks"] = dict(sorted(data["notebooks"].items()))
    RUNTIMES.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
