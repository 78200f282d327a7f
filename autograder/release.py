"""
Student release: a self-contained course folder built from `manifest.py`.

Every `### BEGIN SOLUTION ... ### END SOLUTION` block of the graded files
becomes a single `pass` at the indentation of its BEGIN marker. Notebooks go
through `nbgrader generate_assignment` (solutions and hidden tests removed).
Reference outputs (the fixtures) and the autograder never go out.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

from . import manifest
from .manifest import ASSIGNMENT, GRADED_FILES

ROOT = Path(__file__).resolve().parent.parent

_BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*### END SOLUTION\s*$")


class MarkerError(ValueError):
    """Unbalanced or nested solution markers; the message names file and line."""


def strip_solutions(text: str, filename: str = "<string>") -> str:
    """
    Replace every `### BEGIN SOLUTION ... ### END SOLUTION` block of `text`
    (markers included) by `pass` at the indentation of the BEGIN marker.

    Raises:
        MarkerError: on a nested BEGIN, an END without BEGIN, or a BEGIN that
            is never closed, with `filename:line`.
    """
    out: List[str] = []
    open_line = None
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        begin = _BEGIN.match(line)
        if begin:
            if open_line is not None:
                raise MarkerError(
                    f"{filename}:{lineno}: nested '### BEGIN SOLUTION' (the block "
                    f"opened at line {open_line} is not closed yet); close it "
                    "with '### END SOLUTION' first."
                )
            open_line = lineno
            out.append(f"{begin.group(1)}pass\n")
            continue
        if _END.match(line):
            if open_line is None:
                raise MarkerError(
                    f"{filename}:{lineno}: '### END SOLUTION' without a matching "
                    "'### BEGIN SOLUTION' above it."
                )
            open_line = None
            continue
        if open_line is None:
            out.append(line)
    if open_line is not None:
        raise MarkerError(
            f"{filename}:{open_line}: '### BEGIN SOLUTION' is never closed; add "
            "'### END SOLUTION' at the end of the block."
        )
    return "".join(out)


def count_solution_blocks(text: str) -> int:
    return sum(1 for line in text.splitlines() if _BEGIN.match(line))


def release_notebooks(notebooks: List[Path], out_dir: Path) -> List[Path]:
    """
    Run `nbgrader generate_assignment` on `notebooks` in a throw-away course
    directory and copy the student versions to `out_dir`.

    Args:
        notebooks: nbgrader source notebooks.
        out_dir: folder for the student notebooks.

    Returns:
        The written notebooks.
    """
    if not notebooks:
        return []
    with tempfile.TemporaryDirectory(prefix="release-course-") as tmp:
        course = Path(tmp)
        src = course / "source" / ASSIGNMENT
        src.mkdir(parents=True)
        for nb in notebooks:
            shutil.copy(nb, src / Path(nb).name)
        cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT,
               "--force", "--no-db", "--CourseDirectory.root=" + str(course)]
        proc = subprocess.run(cmd, cwd=course, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                "nbgrader generate_assignment failed:\n" + proc.stdout + proc.stderr
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for nb in sorted((course / "release" / ASSIGNMENT).glob("*.ipynb")):
            shutil.copy(nb, out_dir / nb.name)
            written.append(out_dir / nb.name)
        return written


def stub_fingerprints(texts) -> dict:
    """
    Fingerprints of the stubs of every TODO (see `kit.todos.fingerprint`),
    from the released graded files.

    Args:
        texts: {file name: released text}.

    Returns:
        {"file::qualified name": fingerprint} for every function with a TODO.
    """
    sys.path.insert(0, str(ROOT))
    try:
        from kit import todos
    finally:
        sys.path.remove(str(ROOT))
    out = {}
    for todo in todos.TODOS.values():
        key = f"{todo.file}::{todo.function}"
        out[key] = todos.fingerprint(texts[todo.file], todo.function)
    return out


def copy_provided(out_dir: Path, root: Path = ROOT, entries=manifest.RELEASE_PROVIDED) -> List[Path]:
    """Copy the provided files named in `entries` (see `manifest.expand`) to `out_dir`."""
    written = []
    for rel in manifest.expand(Path(root), entries):
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(root) / rel, dest)
        written.append(dest)
    return written


def write_graded_stubs(out_dir: Path, root: Path = ROOT) -> List[Path]:
    """The graded files without their solutions, and `kit/stubs.json`."""
    texts = {name: strip_solutions((Path(root) / name).read_text(), filename=str(name))
             for name in GRADED_FILES}
    written = []
    for name, text in texts.items():
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    stubs = out_dir / manifest.STUBS_FILE
    stubs.parent.mkdir(parents=True, exist_ok=True)
    stubs.write_text(json.dumps(stub_fingerprints(texts), indent=1, sort_keys=True) + "\n")
    written.append(stubs)
    return written


def make_release(out_dir, root: Path = ROOT, notebooks: bool = True) -> List[Path]:
    """
    Write the student release to `out_dir`, as `manifest.py` lists it:

    - `two_stage_detector.py`, `common.py`: solution blocks replaced by `pass`;
    - the provided files (`a4_helper.py`, `kit/`, `data/make_shapes.py`, the
      photographs' annotations, the notebooks' helper modules), unchanged;
    - `kit/stubs.json`: fingerprints of the stubs (the self-checks say
      "NOT DONE" while a TODO's function is still its stub);
    - `README.md`, `requirements.txt`, `.gitignore` from `student/`;
    - `notebooks/*.ipynb`: through `nbgrader generate_assignment` (solutions
      and hidden tests removed).

    Args:
        out_dir: the release folder (created if needed).
        root: the kit's folder.
        notebooks: False skips the notebooks (and nbgrader).

    Returns:
        The list of written files. Nothing from `autograder/` (checks,
        reference outputs) is part of the release.
    """
    out_dir = Path(out_dir)
    root = Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_graded_stubs(out_dir, root)
    written += copy_provided(out_dir, root)
    for src, name in manifest.RELEASE_STUDENT_FILES.items():
        shutil.copyfile(root / src, out_dir / name)
        written.append(out_dir / name)
    if notebooks:
        nbs = sorted(root.glob(manifest.NOTEBOOKS))
        written += release_notebooks(nbs, out_dir / "notebooks")
    return written
