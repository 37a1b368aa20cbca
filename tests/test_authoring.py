"""The notebook pipeline: stubs, leaks, reproducibility, rule violations with file:line, --check."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ddpm_course import authoring
from ddpm_course.authoring import AuthoringError, build_all, check_all, main, write_all

ROOT = Path(__file__).resolve().parents[1]
NAME = "solutions/07_demo.py"

DEMO = '''\
# %% [markdown]
# # 07 · Demo notebook
#
# Some text.

# %% tags=["parameters"]
FAST = False


# %% tags=["exercise"]
def f(x):
    """Doc."""
    y = x + 1
    ### BEGIN SOLUTION
    z = secret_computation(y) * 3
    return z * 2
    ### END SOLUTION


# %% tags=["exercise"]
class A:
    def g(self):
        ### BEGIN SOLUTION
        return "a long secret answer"
        ### END SOLUTION

    def h(self):
        ### BEGIN SOLUTION
        return "another secret answer"
        ### END SOLUTION
        # after the span


# %% [markdown] tags=["solution-only"]
# Why the answer is what it is.

# %% tags=["raises-exception"]
raise ValueError("shown on purpose")
'''


def make_root(tmp_path: Path, text: str = DEMO, name: str = NAME) -> Path:
    (tmp_path / "solutions").mkdir(exist_ok=True)
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def built(root: Path, rel: str) -> dict:
    return json.loads(build_all(root)[Path(rel)])


def code(nb: dict) -> list[list[str]]:
    return ["".join(c["source"]).split("\n") for c in nb["cells"] if c["cell_type"] == "code"]


# --- what the build produces -------------------------------------------------------------------------
def test_student_stubs_keep_indentation_context_and_numbering(tmp_path):
    root = make_root(tmp_path)
    student = code(built(root, "notebooks/07_demo.ipynb"))
    assert student[2] == ['def f(x):', '    """Doc."""', '    y = x + 1',
                          '    raise NotImplementedError("Exercise 7.1: write your solution here")']
    assert student[3] == ['class A:', '    def g(self):',
                          '        raise NotImplementedError("Exercise 7.2: write your solution here")', '',
                          '    def h(self):',
                          '        raise NotImplementedError("Exercise 7.2: write your solution here")',
                          '        # after the span']
    text = (build_all(root)[Path("notebooks/07_demo.ipynb")]).decode()
    for secret in ("secret_computation", "a long secret answer", "another secret answer", "BEGIN SOLUTION",
                   "Why the answer"):
        assert secret not in text


def test_solution_notebook_keeps_everything(tmp_path):
    root = make_root(tmp_path)
    nb = built(root, "solutions/07_demo.ipynb")
    text = json.dumps(nb)
    for kept in ("secret_computation", "another secret answer", "### BEGIN SOLUTION", "Why the answer"):
        assert kept in text
    tags = [c["metadata"].get("tags") for c in nb["cells"]]
    assert tags[2:] == [None, ["parameters"], ["exercise"], ["exercise"], ["solution-only"],
                        ["raises-exception"]]


def test_student_notebook_executes_stub_only_when_called(tmp_path):
    student = code(built(make_root(tmp_path), "notebooks/07_demo.ipynb"))
    namespace: dict = {}
    exec("\n".join(student[2]), namespace)  # defining the function is fine
    with pytest.raises(NotImplementedError, match=r"Exercise 7\.1"):
        namespace["f"](1)


def test_badge_and_colab_setup_point_to_own_path(tmp_path):
    root = make_root(tmp_path)
    for rel in ("notebooks/07_demo.ipynb", "solutions/07_demo.ipynb"):
        nb = built(root, rel)
        badge, setup = nb["cells"][0], nb["cells"][1]
        assert badge["cell_type"] == "markdown" and setup["cell_type"] == "code"
        assert authoring.colab_url(rel) in "".join(badge["source"])
        assert f"/blob/{authoring.BRANCH}/{rel})" in "".join(badge["source"])
        assert f"git+{authoring.REPO_URL}@{authoring.BRANCH}" in "".join(setup["source"])


def test_repository_url_is_written_once():
    assert (ROOT / "ddpm_course/authoring.py").read_text().count("github.com/ddpm-course/ddpm-course") == 1


def test_colab_setup_keeps_installed_torch(tmp_path, monkeypatch):
    import torch
    import torchvision

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    exec(authoring.colab_setup_code(), {})
    assert calls == [], "outside Colab the set-up cell must do nothing"

    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ddpm_course" else real_find_spec(name, *a))
    exec(authoring.colab_setup_code(), {})
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert cmd[-1] == f"ddpm-course @ git+{authoring.REPO_URL}@{authoring.BRANCH}"
    constraints = Path(cmd[cmd.index("--constraint") + 1]).read_text().split()
    assert constraints == [f"torch=={torch.__version__}", f"torchvision=={torchvision.__version__}"]


def test_notebooks_are_valid_with_deterministic_unique_ids(tmp_path):
    files = build_all(make_root(tmp_path))
    ids = {}
    for rel in ("notebooks/07_demo.ipynb", "solutions/07_demo.ipynb"):
        nb = nbformat.reads(files[Path(rel)].decode(), as_version=4)
        nbformat.validate(nb)
        assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
        assert nb.metadata.kernelspec.name == "python3"
        assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in nb.cells)
        ids[rel] = [c.id for c in nb.cells]
        assert len(set(ids[rel])) == len(ids[rel])
        assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids[rel])
    # the student notebook drops the solution-only cell; every other cell keeps its id
    assert ids["notebooks/07_demo.ipynb"] == [i for i in ids["solutions/07_demo.ipynb"]
                                              if i != ids["solutions/07_demo.ipynb"][6]]


def test_build_is_byte_reproducible(tmp_path):
    root = make_root(tmp_path)
    first = build_all(root)
    assert write_all(root) == list(first)
    snapshot = {rel: (root / rel).read_bytes() for rel in first}
    assert write_all(root) == []  # nothing changes on a second build
    assert {rel: (root / rel).read_bytes() for rel in first} == snapshot == build_all(root)
    assert all(data.endswith(b"}\n") for data in snapshot.values())
    assert build_all(ROOT) == build_all(ROOT)


# --- rule violations fail with file and line ------------------------------------------------------------
BAD = {
    "unknown tag": ('# %% tags=["exercize"]\nx = 1\n', 4, "unknown cell tag 'exercize'"),
    "unclosed span": ('# %% tags=["exercise"]\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n', 6,
                      "never closed"),
    "end without begin": ('# %% tags=["exercise"]\ndef f():\n    return 1\n    ### END SOLUTION\n', 7,
                          "without a matching"),
    "nested span": ('# %% tags=["exercise"]\ndef f():\n    ### BEGIN SOLUTION\n    x = 1\n'
                    '    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n', 8, "nested"),
    "span outside exercise": ('# %%\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n',
                              6, "not tagged 'exercise'"),
    "exercise without span": ('# %% tags=["exercise"]\ndef f():\n    return 1\n', 4, "has no"),
    "top-level span": ('# %% tags=["exercise"]\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n', 5,
                       "top level"),
    "malformed marker": ('# %% tags=["exercise"]\ndef f():\n    ## BEGIN SOLUTION\n    return 1\n', 6,
                         "malformed solution marker"),
    "empty span": ('# %% tags=["exercise"]\ndef f():\n    ### BEGIN SOLUTION\n    ### END SOLUTION\n', 7,
                   "empty solution span"),
    "markdown exercise": ('# %% [markdown] tags=["exercise"]\n# text\n', 4, "only code cells"),
    "unsupported metadata": ('# %% hide_input=true\nx = 1\n', 4, "unsupported cell metadata"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_rule_violation_names_file_and_line(tmp_path, capsys, case):
    body, line, message = BAD[case]
    root = make_root(tmp_path, "# %% [markdown]\n# # 07 · Bad\n\n" + body)
    with pytest.raises(AuthoringError, match=re.escape(f"{NAME}:{line}: ") + ".*" + re.escape(message)):
        build_all(root)
    assert main(["--root", str(root)]) == 1
    assert f"{NAME}:{line}: " in capsys.readouterr().err
    assert not (root / "notebooks/07_demo.ipynb").exists()


@pytest.mark.parametrize(("name", "text", "message"), [
    ("solutions/7_demo.py", DEMO, "must be named NN_topic.py"),
    (NAME, "x = 1\n# %% [markdown]\n# # Title\n", "every cell must start with a '# %%' line"),
    (NAME, "# %%\nx = 1\n", "the first cell must be markdown"),
])
def test_source_shape_errors(tmp_path, name, text, message):
    with pytest.raises(AuthoringError, match=re.escape(f"{name}:") + r"\d+: .*" + re.escape(message)):
        build_all(make_root(tmp_path, text, name))


def test_marker_line_numbers_point_at_the_markers():
    for source in authoring.read_sources(ROOT):
        lines = (ROOT / source.path).read_text().splitlines()
        for cell in source.cells:
            for sp in cell.spans:
                assert lines[cell.line + sp.begin - 1].strip() == authoring.BEGIN
                assert lines[cell.line + sp.end - 1].strip() == authoring.END


# --- the committed notebooks, --check and the leak check ----------------------------------------------------
def copy_repo(tmp_path: Path) -> Path:
    for folder in ("solutions", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / authoring.RUNTIMES, tmp_path / authoring.RUNTIMES)
    return tmp_path


def test_committed_notebooks_are_up_to_date_and_leak_free(capsys):
    assert check_all(ROOT) == []
    assert main(["--check", "--root", str(ROOT)]) == 0
    assert "no solution leaks" in capsys.readouterr().out


def test_no_solution_line_in_any_student_notebook():
    sources = authoring.read_sources(ROOT)
    students = {p: (ROOT / p).read_text() for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    assert len(students) == len(sources) >= 1
    for source in sources:
        spans = [c for c in source.cells if c.spans]
        assert spans, f"{source.path}: no exercise"
        secret = [text for _, text in source.solution_lines() if authoring.significant(text)]
        for cell in spans:  # every span must give the leak check something to look for
            for sp in cell.spans:
                assert any(authoring.significant(t) for t in cell.lines[sp.begin + 1:sp.end]), \
                    f"{source.path}:{cell.line + sp.begin}: span has no line the leak check can recognise"
        for path, text in students.items():
            nb = json.loads(text)
            student_lines = ["".join(line.split())
                             for c in nb["cells"] for line in "".join(c["source"]).split("\n")]
            for line in secret:
                key = "".join(line.split())
                assert not any(key in s for s in student_lines), f"{path} holds {source.path}: {line.strip()}"


def test_significant_lines():
    for trivial in ("", "    pass", "return x", ")", "    # compute it with eq. 4 of the paper", "]]]]]]]]]"):
        assert not authoring.significant(trivial)
    for real in ("return alpha_bars / (1 - alpha_bars)", "    eps = x - x0 * c", "ab = s.alpha_bars[t]"):
        assert authoring.significant(real)


def test_check_detects_an_edited_generated_notebook(tmp_path, capsys):
    root = copy_repo(tmp_path)
    path = root / "notebooks/00_welcome.ipynb"
    nb = json.loads(path.read_text())
    index = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and i > 1)
    nb["cells"][index]["source"][0] = "import os  # an edit made by hand\n"
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert ("notebooks/00_welcome.ipynb: differs from what the sources build "
            f"(first difference in cell {index}") in err
    assert "an edit made by hand" in err
    assert main(["--root", str(root)]) == 0  # a rebuild repairs it
    assert main(["--check", "--root", str(root)]) == 0


def test_check_detects_missing_and_orphaned_notebooks(tmp_path):
    root = copy_repo(tmp_path)
    (root / "solutions/00_welcome.ipynb").unlink()
    shutil.copy(root / "notebooks/00_welcome.ipynb", root / "notebooks/99_orphan.ipynb")
    problems = "\n".join(check_all(root))
    assert "solutions/00_welcome.ipynb: missing" in problems
    assert "notebooks/99_orphan.ipynb: no source solutions/99_orphan.py" in problems


def test_leak_check_catches_an_injected_solution_line(tmp_path, capsys):
    root = copy_repo(tmp_path)
    source = authoring.read_sources(root)[0]
    line_no, secret = next((n, t) for n, t in source.solution_lines() if authoring.significant(t))
    path = root / "notebooks/00_welcome.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][-1]["source"].append("\n" + secret.strip() + "  # pasted\n")
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    last = nb["cells"][-1]
    assert (f"notebooks/00_welcome.ipynb: cell {len(nb['cells']) - 1} (id {last['id']}) contains the "
            f"solution line {source.path.as_posix()}:{line_no}: {secret.strip()!r}") in err


def test_leak_check_catches_a_source_that_repeats_its_solution(tmp_path):
    root = make_root(tmp_path, DEMO + '\n# %%\nprint("z = secret_computation(y) * 3")\n')
    write_all(root)
    problems = check_all(root)
    assert len(problems) == 1 and "contains the solution line solutions/07_demo.py:15" in problems[0]


def test_readme_course_map_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for source in authoring.read_sources(ROOT):
        assert authoring.colab_badge(f"notebooks/{source.stem}.ipynb") in readme
        assert f"[{authoring.table_cell(source.title)}](notebooks/{source.stem}.ipynb)" in readme


# --- run times in the headers come from docs/runtimes.json -------------------------------------------------
TIMED = DEMO.replace("# Some text.", "# **Time:** fast {{time:cpu_fast}}, full {{time:cpu_full}}, GPU "
                     "{{time:gpu_full}}.\n#\n# Some text.")
RUNTIMES = {"notebooks": {"07_demo": {"cpu_fast": {"seconds": 40, "how": "measured"},
                                      "cpu_full": {"seconds": 600, "how": "estimated"},
                                      "gpu_full": {"seconds": 30, "how": "estimated"}}}}


def timed_root(tmp_path: Path, text: str = TIMED, runtimes: dict = RUNTIMES) -> Path:
    root = make_root(tmp_path, text)
    (root / "docs").mkdir(exist_ok=True)
    (root / authoring.RUNTIMES).write_text(json.dumps(runtimes), encoding="utf-8")
    return root


def test_header_times_are_filled_from_runtimes_json(tmp_path):
    for rel in ("notebooks/07_demo.ipynb", "solutions/07_demo.ipynb"):
        header = "".join(built(timed_root(tmp_path), rel)["cells"][2]["source"])
        assert "**Time:** fast 40 s, full ≈ 10 min, GPU ≈ 30 s." in header and "{{" not in header


@pytest.mark.parametrize(("text", "message"), [
    (DEMO, "needs a '**Time:**' paragraph"),
    (TIMED.replace("{{time:gpu_full}}", "soon"), "missing {{time:gpu_full}}"),
    (TIMED.replace("GPU {{time:gpu_full}}", "GPU {{time:gpu_full}} or ≈ 2 min"), "writes a run time by hand"),
    (TIMED.replace("# Some text.", "# Takes RUNTIME_FAST."), "unfilled placeholder 'RUNTIME_FAST'"),
    (TIMED.replace("# Some text.", "# {{time:cpu_slow}}"), "unknown run-time kind 'cpu_slow'"),
])
def test_header_time_rules(tmp_path, text, message):
    with pytest.raises(AuthoringError, match=re.escape(f"{NAME}:") + r"\d+: .*" + re.escape(message)):
        build_all(timed_root(tmp_path, text))


def test_a_time_field_without_an_entry_is_an_error(tmp_path):
    runtimes = {"notebooks": {"07_demo": {"cpu_fast": {"seconds": 40, "how": "measured"}}}}
    with pytest.raises(AuthoringError, match=r"\{\{time:cpu_full\}\} has no entry in docs/runtimes.json"):
        build_all(timed_root(tmp_path, runtimes=runtimes))


def test_committed_headers_quote_the_readme_map():
    readme = (ROOT / "README.md").read_text()
    runtimes = authoring.read_runtimes(ROOT, authoring.read_sources(ROOT))
    for source in authoring.read_sources(ROOT):
        nb = json.loads((ROOT / "notebooks" / f"{source.stem}.ipynb").read_text())
        header = "".join(nb["cells"][2]["source"])
        row = next(line for line in readme.splitlines() if f"(notebooks/{source.stem}.ipynb)" in line)
        for kind in authoring.RUNTIME_KINDS:
            shown = authoring.format_runtime(runtimes[source.stem][kind])
            assert shown in header and shown in row, (source.stem, kind, shown)
        assert not re.search(r"[A-Z]+_(FAST|FULL)|\{\{", header), source.stem


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "ddpm_course.authoring", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no solution leaks" in result.stdout


def test_missing_solutions_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "no solutions/ folder; run from the repository root or pass --root" in capsys.readouterr().err


def test_pytest_collects_every_notebook_cell_and_never_a_source():
    """What `make test` runs: nbval items for each code cell of every notebook, no solutions/*.py module."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--nbval-lax",
           "notebooks", "solutions"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    items = [line for line in result.stdout.splitlines() if "::" in line]
    expected = []
    for folder in ("notebooks", "solutions"):
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text())["cells"]
            expected += [f"{folder}/{path.name}::Cell {i}"
                         for i, c in enumerate(c for c in cells if c["cell_type"] == "code")]
    assert sorted(items) == sorted(expected)
