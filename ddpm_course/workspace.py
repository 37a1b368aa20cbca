"""The learner's own copies of the student notebooks, in a folder git ignores (``my-work/``).

Opening and running a notebook changes its file (outputs, the kernel's ``language_info``, autosave), so a
learner who worked in ``notebooks/`` would see a dirty git tree and conflicts on the next ``git pull`` of the
course. ``make lab`` therefore opens copies: ``prepare()`` copies every student notebook that is not yet in
the work folder and never overwrites one. It records the hash of the course version each copy came from,
so that after a ``git pull`` it can say which course notebooks changed since the learner's copy was made.

    python -m ddpm_course.workspace [--root .] [--work my-work]

The copies sit one folder below the course root, like ``notebooks/``, so their links (``../solutions/…``)
and the notebooks' search for course files keep working.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

WORK = "my-work"
RECORD = ".course-versions.json"  # {notebook name: sha256 of the course version it was copied from}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(root: Path, work: str = WORK) -> dict[str, list[str]]:
    """Copy the missing student notebooks of ``root/notebooks`` into ``root/work``.

    Returns {"copied": [...], "kept": [...], "updated": [...]}: names copied now, names already there
    (left alone), and the kept ones whose course version changed since they were copied."""
    root = Path(root)
    source_dir, work_dir = root / "notebooks", root / work
    if not source_dir.is_dir():
        raise FileNotFoundError(f"root: {root} has no notebooks/ folder; pass the course's root folder")
    if work_dir.resolve() == source_dir.resolve():
        raise ValueError(f"work: must not be the course's notebooks/ folder, got {work!r}")
    work_dir.mkdir(parents=True, exist_ok=True)
    record_path = work_dir / RECORD
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    result: dict[str, list[str]] = {"copied": [], "kept": [], "updated": []}
    for nb in sorted(source_dir.glob("[0-9][0-9]_*.ipynb")):
        target, digest = work_dir / nb.name, _sha256(nb)
        if target.exists():
            result["kept"].append(nb.name)
            if record.get(nb.name, digest) != digest:
                result["updated"].append(nb.name)
            continue
        shutil.copyfile(nb, target)
        record[nb.name] = digest
        result["copied"].append(nb.name)
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return result


def report(result: dict[str, list[str]], work: str = WORK) -> str:
    lines = []
    if result["copied"]:
        n = len(result["copied"])
        lines.append(f"copied {n} notebook(s) into {work}/ (your copies; git ignores them)")
    if result["kept"]:
        lines.append(f"kept your {len(result['kept'])} notebook(s) in {work}/ as they are")
    for name in result["updated"]:
        stem = name.removesuffix(".ipynb")
        lines.append(f"the course updated {name} since you copied it: to take the new version, rename your "
                     f"copy (e.g. {work}/{stem}.mine.ipynb) and run `make lab` again")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm_course.workspace",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the course's root folder (default: .)")
    parser.add_argument("--work", default=WORK, help=f"the folder for your copies (default: {WORK})")
    args = parser.parse_args(argv)
    print(report(prepare(args.root, args.work), args.work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
