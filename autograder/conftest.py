"""pytest front end: `python -m pytest autograder/test_submission.py --submission PATH`."""


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission", action="store", default=None,
                    help="submission to grade: folder or .zip with two_stage_detector.py / common.py")
    group.addoption("--check-timeout", action="store", type=float, default=60.0,
                    help="seconds per check")
    group.addoption("--grade-jobs", action="store", type=int, default=None,
                    help="checks run at once (default: CPU count)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report = getattr(config, "_autograder_report", None)
    if report is None:
        return
    for sub in report.as_list():
        terminalreporter.write_sep("=", f"points: {sub['score']:g} / {sub['max_score']:g} ({sub['submission']})")
        for c in sub["checks"]:
            terminalreporter.write_line(f"{c['name']:32} {c['score']:>5g} / {c['max_score']:<4g} {c['status']}")
