"""
Gradescope for real: the autograder zip unpacked into an `/autograder`-like
folder, `setup.sh` run there as Gradescope runs it (a fresh virtualenv from
the zip's own requirements, the system's `python3`; see the
`gradescope_install` fixture in conftest.py), then `run_autograder` on the
reference, on the untouched release and on a hostile upload, each checked
through `results.json`.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import confine
from autograder.checks import CHECKS
from autograder.release import make_release

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402

TOTAL = sum(c.points for c in CHECKS.values())


def run_autograder(install, build):
    """Put a fresh upload in submission/, run run_autograder, read results.json."""
    root = install["root"]
    submission, results = root / "submission", root / "results"
    for folder in (submission, results):
        shutil.rmtree(folder, ignore_errors=True)
    submission.mkdir()
    build(submission)
    results.mkdir()
    env = dict(install["env"], AUTOGRADER_SUBMISSION_DIR=str(submission), AUTOGRADER_RESULTS_DIR=str(results),
               AUTOGRADER_PYTHON=str(install["python"]), AUTOGRADER_JOBS="2", AUTOGRADER_TIMEOUT="30")
    proc = subprocess.run(["bash", str(root / "run_autograder")], env=env, cwd=root, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((results / "results.json").read_text()), proc


def results_by_check(data):
    return {t["name"].split(" ")[0]: t for t in data["tests"]}


def assert_confined(data):
    """results.json says how the checks were confined: as strongly as here."""
    line = next(l for l in data["output"].splitlines() if l.startswith("sandbox: "))
    if confine.landlock_abi():
        assert "file isolation: Landlock ABI" in line, data["output"]
    assert "WARNING" not in data["output"]
    if os.geteuid() == 0:
        assert "own uid" in line, line


def test_setup_builds_a_root_only_source(gradescope_install):
    source = gradescope_install["root"] / "source"
    assert (source / "autograder" / "fixtures" / "expected.pt").exists()
    base = subprocess.run([str(gradescope_install["python"]), "-c", "import sys; print(sys.base_prefix)"],
                          capture_output=True, text=True).stdout.strip()
    assert not base.startswith(str(ROOT)), base  # a fresh virtualenv, not the kit's
    if os.geteuid() == 0:
        for path in [source, *source.rglob("*")]:
            assert path.stat().st_mode & 0o077 == 0, path


def test_reference_gets_full_marks(gradescope_install):
    data, _ = run_autograder(gradescope_install, lambda sub: corpus.build({}, ROOT, sub))
    assert data["score"] == TOTAL and len(data["tests"]) == len(CHECKS), data
    assert all(t["status"] == "passed" for t in data["tests"])
    assert_confined(data)


def test_untouched_release_gets_zero(gradescope_install, tmp_path):
    make_release(tmp_path / "release", notebooks=False)

    def build(sub):
        for name in ("two_stage_detector.py", "common.py"):
            shutil.copy(tmp_path / "release" / name, sub / name)

    data, _ = run_autograder(gradescope_install, build)
    assert data["score"] == 0 and len(data["tests"]) == len(CHECKS), data
    assert all(t["status"] == "failed" and t["output"] for t in data["tests"])
    assert_confined(data)


def test_hostile_upload(gradescope_install):
    """common.py links to the reference in source/; iou reads the reference
    and the fixtures from source/ and forges results.json: none of it works."""
    root = gradescope_install["root"]
    steal = f"""
        import json, os
        stolen = None
        for what, path in (("reference", {str(root / 'source' / 'two_stage_detector.py')!r}),
                           ("fixtures", {str(root / 'source' / 'autograder' / 'fixtures' / 'expected.pt')!r})):
            try:
                stolen = open(path, "rb").read()
                print(f"LEAK {{what}}")
            except OSError as error:
                print(f"blocked {{what}}: {{type(error).__name__}}")
        try:
            with open({str(root / 'results' / 'results.json')!r}, "w") as f:
                json.dump({{"score": 1000, "tests": []}}, f)
            print("LEAK results.json")
        except OSError as error:
            print(f"blocked results.json: {{type(error).__name__}}")
        iou = None
        """

    def build(sub):
        corpus.build({"blocks": {"iou": steal}}, ROOT, sub)
        (sub / "common.py").unlink()
        os.symlink(root / "source" / "common.py", sub / "common.py")

    data, proc = run_autograder(gradescope_install, build)
    by = results_by_check(data)
    common = sum(c.points for c in CHECKS.values() if c.file == "common.py")
    assert data["score"] == TOTAL - common - CHECKS["iou"].points, data
    for name, check in CHECKS.items():
        if check.file == "common.py":
            assert by[name]["score"] == 0 and "symbolic link" in by[name]["output"], by[name]
    out = by["iou"]["output"]
    for what in ("reference", "fixtures", "results.json"):
        assert f"blocked {what}:" in out, out
    assert "LEAK" not in json.dumps(data)
    assert_confined(data)
