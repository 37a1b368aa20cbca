"""One real run of the Colab set-up cell, in a throwaway virtual environment that looks like Colab.

Not part of CI (it installs PyTorch into a new environment: minutes, and hundreds of MB). What it does:

1. a clean venv (no system site-packages) with what Colab has before the cell runs: a CPU build of torch,
   a torchvision, ipywidgets 7.7.1, numpy, matplotlib, tqdm, safetensors, ipykernel, nbclient;
2. a bare clone of this repository's committed branch stands in for the GitHub URL (no clone on the path:
   pip clones it and builds the package, as in Colab);
3. notebooks/01_forward_process.ipynb is executed by a kernel of that venv, in fast mode, with a first cell
   that makes ``google.colab`` importable-looking (``sys.modules``), and the set-up cell's GitHub URL
   replaced by the bare clone's file:// URL - nothing else changed;
4. ``pip freeze`` before and after: the cell may add ddpm-course and nothing else, change nothing.

    python docs/tools/colab_setup_check.py --torch-wheel /path/to/torch-X+cpu.whl --torchvision torchvision==Y
Prints a JSON summary (docs/results_colab.md records one).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ddpm_course import authoring  # noqa: E402

NOTEBOOK = "notebooks/01_forward_process.ipynb"
FAKE_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'


def sh(cmd: list[str], **kw) -> str:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def freeze(py: Path) -> dict[str, str]:
    lines = sh([str(py), "-m", "pip", "freeze", "--all"]).splitlines()
    pairs = [line.split("==", 1) if "==" in line else line.split(" @ ", 1) for line in lines]
    return {name.lower(): version for name, version in pairs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-wheel", required=True, help="a torch wheel (or requirement) to preinstall")
    ap.add_argument("--torchvision", required=True, help="torchvision wheel or requirement matching it")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="colab-check-"))
    venv, bare = work / "venv", work / "ddpm-course.git"
    py = venv / "bin" / "python"
    t0 = time.monotonic()

    sh([sys.executable, "-m", "venv", str(venv)])
    sh([str(py), "-m", "pip", "install", "--quiet", args.torch_wheel])
    sh([str(py), "-m", "pip", "install", "--quiet", "--no-deps", args.torchvision])
    sh([str(py), "-m", "pip", "install", "--quiet", "ipywidgets==7.7.1", "numpy", "matplotlib", "tqdm",
        "safetensors", "ipykernel", "nbclient", "nbformat", "pillow"])
    sh(["git", "clone", "--quiet", "--bare", "--branch", authoring.BRANCH, str(ROOT), str(bare)])
    before = freeze(py)
    t_env = time.monotonic() - t0

    nb = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))
    setup = "".join(nb["cells"][1]["source"])
    assert setup == authoring.colab_setup_code(), "the notebook's set-up cell is stale"
    git_url = f"git+{authoring.REPO_URL}@{authoring.BRANCH}"
    assert setup.count(git_url) == 1
    nb["cells"][1]["source"] = setup.replace(git_url, f"git+{bare.as_uri()}@{authoring.BRANCH}")
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "id": "fake-colab", "metadata": {},
                           "outputs": [], "source": FAKE_COLAB})
    run_nb = work / "01_colab.ipynb"
    run_nb.write_text(json.dumps(nb), encoding="utf-8")
    runner = (
        "import json, os, sys, time, nbformat\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "os.environ['DDPM_COURSE_FAST'] = '1'\n"
        "os.environ.pop('MPLBACKEND', None)\n"
        "t = time.monotonic()\n"
        "client = NotebookClient(nb, timeout=3600, kernel_name='python3',\n"
        "                        resources={'metadata': {'path': sys.argv[2]}})\n"
        "client.execute()\n"
        "outs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]\n"
        "print(json.dumps({'seconds': round(time.monotonic() - t, 1),\n"
        "  'images': sum('image/png' in o.get('data', {}) for o in outs),\n"
        "  'widgets': sum('application/vnd.jupyter.widget-view+json' in o.get('data', {}) for o in outs),\n"
        "  'errors': [o.get('ename') for o in outs if o.output_type == 'error']}))\n")
    sh([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"])
    result = json.loads(sh([str(py), "-c", runner, str(run_nb), str(work)], cwd=work).splitlines()[-1])
    after = freeze(py)
    added = {k: v for k, v in after.items() if k not in before}
    changed = {k: (before[k], after[k]) for k in before if k in after and before[k] != after[k]}
    removed = sorted(k for k in before if k not in after)
    summary = {"python": platform.python_version(), "torch": before.get("torch"),
               "torchvision": before.get("torchvision"), "ipywidgets": before.get("ipywidgets"),
               "environment_seconds": round(t_env), "notebook": NOTEBOOK, "notebook_run": result,
               "added_by_setup_cell": added, "changed_by_setup_cell": changed,
               "removed_by_setup_cell": removed}
    print(json.dumps(summary, indent=1))
    ok = (set(added) == {"ddpm-course"} and not changed and not removed and not result["errors"]
          and result["images"] > 0 and result["widgets"] > 0)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
