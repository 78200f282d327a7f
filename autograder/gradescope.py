"""
Gradescope front end.

`python -m autograder gradescope OUT.zip` builds the autograder zip:

    setup.sh          installs Python and the requirements, builds the fixtures
    run_autograder    grades /autograder/submission -> /autograder/results/results.json
    source/...        the autograder package, the reference solution, requirements

Gradescope runs `run_autograder` as root next to the student's files. Here the
student's code runs in sandboxed children (confined by `confine.py`, under
another uid), the source folder (reference solution and outputs) is readable
by root only, and only this parent writes `results.json`, rewritten
atomically after every check (a killed run leaves a valid partial file); its
`output` states the isolation the checks ran with. Paths can be overridden for testing:
AUTOGRADER_SUBMISSION_DIR, AUTOGRADER_RESULTS_DIR, AUTOGRADER_SOURCE_DIR,
AUTOGRADER_PYTHON.
"""
import json
import os
import sys
import time
import zipfile
from pathlib import Path

from . import manifest
from .release import ROOT

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image setup: Python, the kit's requirements, the reference outputs.
set -euo pipefail
SOURCE_DIR=${AUTOGRADER_SOURCE_DIR:-/autograder/source}
VENV=${AUTOGRADER_VENV:-/autograder/venv}
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-venv python3-pip
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install -r "$SOURCE_DIR/requirements.txt"
cd "$SOURCE_DIR" && "$VENV/bin/python" -m autograder fixtures
# The reference solution and its outputs: root only (submissions run as another
# uid, confined to the virtualenv and their own files; see autograder/confine.py).
chmod -R go-rwx "$SOURCE_DIR"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade the submission, write results/results.json.
set -uo pipefail
SOURCE_DIR=${AUTOGRADER_SOURCE_DIR:-/autograder/source}
PYTHON=${AUTOGRADER_PYTHON:-/autograder/venv/bin/python}
cd "$SOURCE_DIR" && exec "$PYTHON" -m autograder.gradescope
"""

# What goes into source/ (see manifest.py): the package (no fixtures: setup.sh
# builds them in the image), the reference solution, what it and the grader
# import (a4_helper.py, kit/), requirements.
PACKAGE_FILES = list(manifest.GRADESCOPE_PACKAGE)
SOURCE_FILES = list(manifest.GRADESCOPE_SOURCE)

GRADESCOPE_REQUIREMENTS = """# Grader requirements (the kit's runtime ones; torch pinned as in the kit).
torch==2.14.1
torchvision==0.29.1
numpy
pillow
"""


def build_zip(out_zip, root: Path = ROOT) -> Path:
    """Write the Gradescope autograder zip."""
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    pkg = Path(__file__).resolve().parent
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            zf.writestr(info, text)
        for name in PACKAGE_FILES:
            zf.write(pkg / name, f"source/autograder/{name}")
        for name in SOURCE_FILES:
            zf.write(Path(root) / name, f"source/{name}")
        zf.writestr("source/requirements.txt", GRADESCOPE_REQUIREMENTS)
    return out_zip


def results_json(report_subs, elapsed: float) -> dict:
    """Gradescope's results.json from one graded submission."""
    tests = []
    sub = report_subs[0] if report_subs else {"checks": [], "score": 0.0}
    for c in sub["checks"]:
        tests.append({
            "name": f"{c['name']} ({c['file']})",
            "score": c["score"],
            "max_score": c["max_score"],
            "status": "passed" if c["status"] == "passed" else "failed",
            "output": c["feedback"],
            "visibility": "visible",
        })
    from .checks import CHECKS

    graded = {c["name"] for c in sub["checks"]}
    missing = [n for n in CHECKS if n not in graded]
    out = {
        "score": round(sum(t["score"] for t in tests), 3),
        "execution_time": round(elapsed, 1),
        "tests": tests,
        "stdout_visibility": "hidden",
    }
    from .transplant import describe

    lines = [f"grading incomplete: {len(missing)} check(s) not graded yet"] if missing else []
    lines += describe(sub)  # what was transplanted or stood in, when there is something to say
    if lines:
        out["output"] = "\n".join(lines)
    return out


def _write_atomic(path: Path, data: dict):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def main() -> int:
    from .grader import grade

    submission = Path(os.environ.get("AUTOGRADER_SUBMISSION_DIR", "/autograder/submission"))
    results_dir = Path(os.environ.get("AUTOGRADER_RESULTS_DIR", "/autograder/results"))
    results_dir.mkdir(parents=True, exist_ok=True)
    results = results_dir / "results.json"
    t0 = time.monotonic()
    _write_atomic(results, {"score": 0.0, "output": "grading started", "tests": []})

    def finished(report):
        """results.json, with the isolation the checks ran with (and any warning)."""
        data = results_json(report.as_list(), time.monotonic() - t0)
        isolation = report.isolation
        lines = [data.get("output", ""), f"sandbox: {isolation.get('summary', 'unknown')}",
                 isolation.get("warning", "")]
        data["output"] = "\n".join(line for line in lines if line)
        return data

    def on_check(report, key, result):
        _write_atomic(results, finished(report))

    try:
        report = grade([submission], jobs=int(os.environ.get("AUTOGRADER_JOBS", os.cpu_count() or 1)),
                       timeout=float(os.environ.get("AUTOGRADER_TIMEOUT", 60)), on_check=on_check)
    except Exception as error:  # noqa: BLE001 - Gradescope must get a results file
        _write_atomic(results, {"score": 0.0, "tests": [],
                                "output": f"The autograder failed: {type(error).__name__}: {error}"})
        print(f"autograder failed: {error}", file=sys.stderr)
        return 0
    _write_atomic(results, finished(report))
    if report.isolation.get("warning"):
        print(f"autograder: {report.isolation['warning']}", file=sys.stderr)
    print(json.dumps({"score": report.as_list()[0]["score"], "sandbox": report.isolation.get("summary")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
