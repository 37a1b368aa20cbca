"""Measure how long each notebook takes to run, and record it in docs/runtimes.json.

    python docs/tools/measure_runtimes.py [--mode fast|full] [--kind cpu_fast] [NN ...]

Each student notebook (notebooks/NN_*.ipynb, what a learner runs) is executed top to bottom by a fresh
kernel, as "Restart kernel and run all" would, with DDPM_COURSE_FAST=1 in fast mode; the wall-clock time
from kernel start to the last cell is written to docs/runtimes.json under notebooks[NN_topic][kind] with
"how": "measured", and the machine, date and load average go to the file's "measured_on". The README
course map (`make notebooks`) and docs/instructor_guide.md read these figures.
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


def run(path: Path, timeout: int) -> tuple[float, list[str]]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.monotonic() - start
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"
              and "raises-exception" not in c.metadata.get("tags", [])]
    return seconds, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    ap.add_argument("--mode", choices=("fast", "full"), default="fast")
    ap.add_argument("--kind", default=None, help="runtimes.json kind (default: cpu_<mode>)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = ap.parse_args()
    kind = args.kind or f"cpu_{args.mode}"
    if args.mode == "fast":
        os.environ["DDPM_COURSE_FAST"] = "1"
    else:
        os.environ.pop("DDPM_COURSE_FAST", None)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend, as in JupyterLab
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.numbers:
        paths = [p for p in paths if p.name[:2] in {f"{int(n):02d}" for n in args.numbers}]
    data = json.loads(RUNTIMES.read_text(encoding="utf-8")) if RUNTIMES.is_file() else {"notebooks": {}}
    load_before = os.getloadavg()
    failed = 0
    for path in paths:
        seconds, errors = run(path, args.timeout)
        print(f"{path.relative_to(ROOT)}: {seconds:.0f} s {'OK' if not errors else errors}", flush=True)
        if errors:
            failed += 1
            continue
        data["notebooks"].setdefault(path.stem, {})[kind] = {"seconds": round(seconds), "how": "measured"}
    data.setdefault("measured_on", {})[kind] = {
        "date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after",
        "note": "each student notebook run by a fresh kernel, one after another, niced, while other jobs "
                "shared the cores: upper bounds for a quiet laptop"}
    data["notebooks"] = dict(sorted(data["notebooks"].items()))
    RUNTIMES.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
