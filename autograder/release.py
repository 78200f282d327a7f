"""
Student release: strip every `### BEGIN SOLUTION ... ### END SOLUTION` block.

Each marked block becomes a single `pass` at the indentation of its BEGIN
marker. Notebooks go through `nbgrader generate_assignment` (solutions and
hidden tests removed). Reference outputs (the fixtures) never go out.
"""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent

# Graded files: their solution blocks are stripped.
GRADED_FILES = ["two_stage_detector.py", "common.py"]
# Provided files that ship unchanged.
PROVIDED_FILES = ["a4_helper.py"]
ASSIGNMENT = "two_stage_detector"

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
    """
    if not notebooks:
        return []
    from . import nbgrader_course

    with tempfile.TemporaryDirectory(prefix="release-course-") as tmp:
        course = nbgrader_course.make_course(Path(tmp), notebooks, with_py_files=False)
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


def make_release(out_dir, root: Path = ROOT, notebooks: bool = True) -> List[Path]:
    """
    Write the student version of the kit to `out_dir`:

    - `two_stage_detector.py`, `common.py`: solution blocks replaced by `pass`;
    - `a4_helper.py`: unchanged;
    - `notebooks/*.ipynb`: through `nbgrader generate_assignment` (solutions
      and hidden tests removed); the notebooks' own helper modules unchanged.

    Returns the list of written files. Nothing from `autograder/` (checks,
    reference outputs) is part of the release.
    """
    out_dir = Path(out_dir)
    root = Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in GRADED_FILES:
        src = root / name
        text = strip_solutions(src.read_text(), filename=str(name))
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    for name in PROVIDED_FILES:
        if (root / name).exists():
            shutil.copy(root / name, out_dir / name)
            written.append(out_dir / name)
    nb_dir = root / "notebooks"
    if notebooks and nb_dir.is_dir():
        nbs = sorted(nb_dir.glob("*.ipynb"))
        for helper in sorted(nb_dir.glob("*.py")):
            text = helper.read_text()
            if count_solution_blocks(text):
                text = strip_solutions(text, filename=f"notebooks/{helper.name}")
            (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
            (out_dir / "notebooks" / helper.name).write_text(text)
            written.append(out_dir / "notebooks" / helper.name)
        written += release_notebooks(nbs, out_dir / "notebooks")
    return written
