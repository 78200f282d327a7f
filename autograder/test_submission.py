"""
The autograder's checks as pytest tests, one per graded TODO, against one
submission (graded once, in the sandbox):

    python -m pytest autograder/test_submission.py --submission path/to/submission

Each test passes when its check gets full points; the points of every check
are recorded as test properties (`--junitxml` shows them) and summed at the end.
"""
import os

import pytest

from autograder.checks import CHECK_NAMES
from autograder.grader import grade


@pytest.fixture(scope="session")
def graded(request):
    path = request.config.getoption("--submission")
    if not path:
        pytest.fail("pass the submission to grade: --submission PATH")
    jobs = request.config.getoption("--grade-jobs") or os.cpu_count() or 1
    report = grade([path], jobs=jobs, timeout=request.config.getoption("--check-timeout"))
    request.config._autograder_report = report
    return {c["name"]: c for c in report.as_list()[0]["checks"]}


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_check(graded, name, record_property):
    result = graded[name]
    record_property("points", result["score"])
    record_property("max_points", result["max_score"])
    assert result["status"] == "passed", (
        f"{name}: {result['score']:g} / {result['max_score']:g}\n{result['feedback']}")
