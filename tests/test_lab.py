"""`make lab` serves the course: it copies the student notebooks into my-work/ (never overwriting a copy), and
JupyterLab, started at the course root, lists them and reaches solutions/ and docs/."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ddpm_course import workspace

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
    out = dry_run.stdout
    assert "ddpm_course.workspace --root . --work my-work" in out
    assert "jupyter lab" in out and f'--ServerApp.root_dir="{ROOT}"' in out
    assert "--LabApp.default_url=/lab/tree/my-work/00_welcome.ipynb" in out
    assert "'.[dev" not in out                                      # no developer tools for learners


def make_course(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    for name in ("00_welcome.ipynb", "01_forward_process.ipynb"):
        (tmp_path / "notebooks" / name).write_text('{"cells": []}')
    return tmp_path


def test_workspace_copies_once_and_never_overwrites(tmp_path):
    root = make_course(tmp_path)
    assert workspace.prepare(root)["copied"] == ["00_welcome.ipynb", "01_forward_process.ipynb"]
    mine = root / "my-work" / "00_welcome.ipynb"
    mine.write_text('{"cells": ["my answer"]}')
    again = workspace.prepare(root)
    assert again == {"copied": [], "kept": ["00_welcome.ipynb", "01_forward_process.ipynb"], "updated": []}
    assert "my answer" in mine.read_text()


def test_workspace_reports_a_course_update_and_copies_new_notebooks(tmp_path):
    root = make_course(tmp_path)
    workspace.prepare(root)
    (root / "notebooks" / "01_forward_process.ipynb").write_text('{"cells": ["new course text"]}')
    (root / "notebooks" / "02_noise_prediction.ipynb").write_text('{"cells": []}')
    result = workspace.prepare(root)
    assert result["copied"] == ["02_noise_prediction.ipynb"]
    assert result["updated"] == ["01_forward_process.ipynb"]
    text = workspace.report(result)
    assert "the course updated 01_forward_process.ipynb" in text and "01_forward_process.mine.ipynb" in text
    assert "new course text" not in (root / "my-work" / "01_forward_process.ipynb").read_text()


def test_workspace_refuses_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="root: .* has no notebooks/ folder"):
        workspace.prepare(tmp_path)
    with pytest.raises(ValueError, match="work: must not be the course's notebooks/ folder"):
        workspace.prepare(make_course(tmp_path), work="notebooks")


def test_git_ignores_the_work_folder():
    assert "/my-work/" in (ROOT / ".gitignore").read_text().splitlines()


def test_jupyterlab_serves_the_course(tmp_path):
    port = _free_port()
    # The command `make lab` runs, headless, on a free port with a known token.
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={ROOT}",
           "--LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb"]
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
        for rel in ("solutions/00_welcome.ipynb", "docs/results.md"):        # the Solutions links' targets
            status, _ = _get(f"{base}/api/contents/{rel}?content=0")
            assert status == 200, rel
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
