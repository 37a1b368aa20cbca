"""`make lab` serves the course: JupyterLab starts and its contents API lists the first notebook."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ddpm-course-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_make_lab_opens_the_welcome_notebook():
    dry_run = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0, dry_run.stderr
    assert "jupyter lab" in dry_run.stdout and "notebooks/00_welcome.ipynb" in dry_run.stdout


def test_jupyterlab_serves_the_course(tmp_path):
    port = _free_port()
    # The command `make lab` runs, headless, on a free port with a known token.
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={ROOT}",
           "notebooks/00_welcome.ipynb"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}  # no server files left behind
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listing = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"{base}/api/contents/notebooks")
                listing = json.loads(body)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        log.flush()
        assert listing is not None, "no answer:\n" + (tmp_path / "lab.log").read_text()[-2000:]
        names = [item["path"] for item in listing["content"]]
        assert "notebooks/00_welcome.ipynb" in names
        status, body = _get(f"{base}/api/contents/notebooks/00_welcome.ipynb")
        notebook = json.loads(body)["content"]
        assert status == 200 and notebook["metadata"]["kernelspec"]["name"] == "python3"
        status, body = _get(f"{base}/lab/tree/notebooks/00_welcome.ipynb")
        assert status == 200 and b"JupyterLab" in body
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
