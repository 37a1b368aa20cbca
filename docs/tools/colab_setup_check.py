"""One real run of the Colab set-up cell, in a throwaway virtual environment that looks like Colab.

Not part of CI (it installs PyTorch into a new environment: minutes, and hundreds of MB). What it does:

1. a clean venv (no system site-packages) with what Colab has before the cell runs: a CPU build of torch,
   a torchvision, ipywidgets 7.7.1, numpy, matplotlib, tqdm, safetensors, ipykernel, nbclient;
2. a bare clone of this repository's committed branch, served over http on localhost, stands in for the
   GitHub URL (no clone on the path: pip clones it and builds the package, as in Colab);
3. notebooks/01_forward_process.ipynb is executed by a kernel of that venv, in fast mode, with a first cell
   that makes ``google.colab`` importable-looking (``sys.modules``), and the set-up cell's GitHub URL
   replaced by the local http URL - nothing else changed;
4. ``pip freeze`` before and after: the cell may add ddpm-course and nothing else, change nothing.

    python docs/tools/colab_setup_check.py --torch-wheel /path/to/torch.whl --torchvision /path/to/tv.whl
    python docs/tools/colab_setup_check.py --link-torch-from .venv/lib/python3.11/site-packages
The second form makes an existing torch/torchvision install (with its CUDA libraries and dependencies)
visible to the new venv through a .pth file, as preinstalled packages are on Colab, instead of
installing several GB again; pip sees them as installed like any others. torch and torchvision must
be builds that match each other (a CPU torch with a CUDA torchvision fails to import torchvision.ops).
Prints a JSON summary (docs/results_colab.md records one).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ddpm_course import authoring  # noqa: E402

NOTEBOOK = "notebooks/01_forward_process.ipynb"
FAKE_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'


# What torch and torchvision need at run time (their dists are linked with them by --link-torch-from).
TORCH_STACK = ("torch", "torchgen", "functorch", "torchvision", "torchvision.libs", "nvidia", "cuda",
               "triton", "sympy", "mpmath", "networkx", "filelock", "fsspec", "typing_extensions", "jinja2",
               "markupsafe")


def sh(cmd: list[str], **kw) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)[:200]}")
    return done.stdout


def link_torch(site: Path, venv_site: Path, folder: Path) -> None:
    """Symlink the torch stack of ``site`` into ``folder`` and put ``folder`` on the venv's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in sorted(site.iterdir()):
        stem = entry.name.split("-")[0].removesuffix(".py").lower().replace("-", "_")
        if stem in TORCH_STACK or any(stem.startswith(f"{n}_") for n in ("nvidia", "cuda")):
            (folder / entry.name).symlink_to(entry)
    (venv_site / "colab_preinstalled.pth").write_text(f"{folder}\n")


def freeze(py: Path) -> dict[str, str]:
    lines = sh([str(py), "-m", "pip", "freeze", "--all"]).splitlines()
    pairs = [line.split("==", 1) if "==" in line else line.split(" @ ", 1) for line in lines]
    return {name.lower(): version for name, version in pairs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-wheel", help="a torch wheel (or requirement) to preinstall")
    ap.add_argument("--torchvision", help="torchvision wheel or requirement matching it")
    ap.add_argument("--link-torch-from", type=Path, help="a site-packages folder whose torch stack to link")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    ap.add_argument("--ignore-pip-config", action="store_true",
                    help="run the notebook with PIP_CONFIG_FILE=/dev/null (no machine-wide pip settings)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="colab-check-"))
    venv, bare = work / "venv", work / "ddpm-course.git"
    py = venv / "bin" / "python"
    t0 = time.monotonic()

    sh([sys.executable, "-m", "venv", str(venv)])
    if args.link_torch_from:
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        venv_site = Path(sh([str(py), "-c", purelib]).strip())
        # Inside the venv: pip counts a package as installed only when it lies under sys.prefix.
        link_torch(args.link_torch_from.resolve(), venv_site, venv / "colab-preinstalled")
    else:
        sh([str(py), "-m", "pip", "install", "--quiet", args.torch_wheel])
        sh([str(py), "-m", "pip", "install", "--quiet", "--no-deps", args.torchvision])
    sh([str(py), "-m", "pip", "install", "--quiet", "ipywidgets==7.7.1", "numpy", "matplotlib", "tqdm",
        "safetensors", "ipykernel", "nbclient", "nbformat", "pillow"])
    sh(["git", "clone", "--quiet", "--bare", "--branch", authoring.BRANCH, str(ROOT), str(bare)])
    sh(["git", "update-server-info"], cwd=bare)  # served over git's "dumb" HTTP, like a remote repository
    before = freeze(py)
    t_env = time.monotonic() - t0

    nb = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))
    setup = "".join(nb["cells"][1]["source"])
    assert setup == authoring.colab_setup_code(), "the notebook's set-up cell is stale"
    git_url = f"git+{authoring.REPO_URL}@{authoring.BRANCH}"
    assert setup.count(git_url) == 1
    # A file:// URL is no valid PEP 508 direct reference (no host), so the bare clone is served on localhost.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(work))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local_url = f"git+http://127.0.0.1:{server.server_address[1]}/{bare.name}@{authoring.BRANCH}"
    nb["cells"][1]["source"] = setup.replace(git_url, local_url)
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
    try:
        # Colab has no machine-wide pip configuration; this machine's may cap versions (a constraints file).
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull} if args.ignore_pip_config else None
        out = sh([str(py), "-c", runner, str(run_nb), str(work)], cwd=work, env=env)
        result = json.loads(out.splitlines()[-1])
    finally:
        server.shutdown()
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
