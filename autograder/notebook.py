"""
Grading from a notebook cell (nbgrader autograder-test cells):

    ### BEGIN HIDDEN TESTS
    from autograder.notebook import grade
    grade("iou")
    ### END HIDDEN TESTS

`grade(name)` grades that check in a sandboxed child process against the
student's `two_stage_detector.py` / `common.py` (next to the notebook or in
its parent folder), prints feedback to stdout (never stderr: nbgrader gives 0
to a cell that writes to stderr) and returns the points earned, so the cell's
value gives nbgrader partial credit. The kernel's own state (monkeypatched
functions, stale imports) does not matter: the files are graded afresh. The
first grade of a kernel also prints the isolation the checks ran with
(`sandbox: ...`), and every grade prints a warning when there was none.
"""
import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

from .manifest import GRADED_FILES as GRADED

_STATED = []  # the sandbox line was printed in this kernel


def find_submission(start=None) -> Path:
    """The folder with the student's graded files: cwd, then its parent."""
    start = Path(start or os.getcwd()).resolve()
    for folder in (start, start.parent):
        if any((folder / f).exists() for f in GRADED):
            return folder
    raise FileNotFoundError(
        f"no two_stage_detector.py or common.py in {start} or {start.parent}; "
        "run the notebook from its own folder"
    )


def grade(name: str, submission=None, timeout: float = 120.0) -> float:
    """
    Grade check `name` (see `python -m autograder list`) and return the points
    earned (0 .. the check's points) as a float.
    """
    from .checks import CHECKS

    if name not in CHECKS:
        print(f"unknown check {name!r}; known checks: {', '.join(CHECKS)}")
        return 0.0
    out = sys.stdout
    with contextlib.redirect_stderr(io.StringIO()) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from .grader import grade as grade_many

            folder = find_submission(submission)
            report = grade_many([folder], jobs=1, timeout=timeout, checks=[name], keep_worker=True)
            result = report.as_list()[0]["checks"][0]
        except Exception as error:  # noqa: BLE001 - the cell must not error out
            print(f"{name}: could not grade ({type(error).__name__}: {error})", file=out)
            return 0.0
    print(f"{name}: {result['score']:g} / {result['max_score']:g} ({result['status']})", file=out)
    isolation = report.isolation
    if not _STATED or isolation.get("warning"):  # once per notebook, and every warning
        print(f"sandbox: {isolation.get('summary')}", file=out)
        if isolation.get("warning"):
            print(isolation["warning"], file=out)
        _STATED.append(True)
    if result["status"] != "passed":
        print(result["feedback"], file=out)
    return float(result["score"])
