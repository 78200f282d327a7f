"""
Gradescope front end: build the zip, unpack it like Gradescope does and run
`run_autograder` on a hostile submission with the paths redirected into a
temporary folder.
"""
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from autograder.checks import CHECKS
from autograder.gradescope import build_zip

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402


def test_gradescope_zip_and_run(tmp_path):
    zip_path = build_zip(tmp_path / "autograder.zip")
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        zf.extractall(tmp_path / "autograder")
    assert {"setup.sh", "run_autograder", "source/autograder/sandbox.py", "source/kit/checking.py",
            "source/two_stage_detector.py", "source/requirements.txt"} <= names
    assert not any("fixtures/" in n or n.endswith(".pt") for n in names)
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111

    base = tmp_path / "autograder"
    results = base / "results"
    results.mkdir()
    # iou raises; nms tries to forge results.json in the results folder.
    forge = (f"import json\ntry:\n    with open({str(results / 'results.json')!r}, 'w') as f:\n"
             "        json.dump({'score': 1000, 'tests': []}, f)\nexcept OSError:\n    pass\n")
    nms = textwrap.dedent(corpus.DIFFERENT_BUT_CORRECT["blocks"]["nms"])
    case = {"blocks": {"iou": "raise RuntimeError('todo')\n", "nms": forge + nms}}
    corpus.build(case, ROOT, base / "submission" / "nested")
    env = dict(os.environ, AUTOGRADER_SOURCE_DIR=str(base / "source"), AUTOGRADER_PYTHON=sys.executable,
               AUTOGRADER_SUBMISSION_DIR=str(base / "submission"), AUTOGRADER_RESULTS_DIR=str(results),
               AUTOGRADER_JOBS="2", AUTOGRADER_TIMEOUT="30")
    proc = subprocess.run(["bash", str(base / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((results / "results.json").read_text())
    total = sum(c.points for c in CHECKS.values())
    want = total - CHECKS["iou"].points
    assert data["score"] == want, data  # the forged file never survives
    assert len(data["tests"]) == len(CHECKS)
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in ("passed", "failed") and test["visibility"] == "visible"
    iou = next(t for t in data["tests"] if t["name"].startswith("iou "))
    assert iou["score"] == 0 and iou["status"] == "failed" and "RuntimeError: todo" in iou["output"]
    assert "incomplete" not in data["output"]  # complete
    assert "sandbox: file isolation:" in data["output"]  # and says how it was confined


def test_zip_holds_every_module_the_grader_imports():
    """Every `autograder.*` and `kit.*` module imported anywhere in the package
    is in the zip (from manifest.py), so the unpacked grader never misses one."""
    import ast

    from autograder import manifest

    needed = set()
    for path in (ROOT / "autograder").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    needed.add(f"autograder/{node.module}.py")
                elif node.level == 1:
                    needed.update(f"autograder/{a.name}.py" for a in node.names)
                elif node.module and node.module.split(".")[0] == "kit":
                    needed.add(node.module.replace(".", "/") + ".py")
    needed = {n for n in needed if (ROOT / n).exists()}
    shipped = {f"autograder/{n}" for n in manifest.GRADESCOPE_PACKAGE} | set(manifest.GRADESCOPE_SOURCE)
    assert needed and needed <= shipped, sorted(needed - shipped)
    assert "kit/checking.py" in needed
