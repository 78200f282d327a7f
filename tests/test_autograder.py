"""
Autograder: release, reference outputs, and grading of the reference, the
untouched release and a corpus of broken / hostile submissions (through the
CLI, in one batch), plus the pytest front end.
"""
import ast
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder

from autograder import fixtures
from autograder.checks import BLOCKS, CHECK_NAMES, CHECKS
from autograder.release import MarkerError, make_release, strip_solutions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402

from autograder.sandbox import can_drop_privileges  # noqa: E402

IS_ROOT = can_drop_privileges()  # children run under their own uid
PY = sys.executable


# ------------------------------------------------------------------ release
def signatures(tree):
    """{qualified name: argument list} of every class and function."""
    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[prefix + child.name] = ast.dump(child.args) + "".join(ast.dump(d) for d in child.decorator_list)
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                out[prefix + child.name] = "".join(ast.dump(b) for b in child.bases)
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    make_release(out, notebooks=False)
    return out


@pytest.mark.parametrize("name", ["two_stage_detector.py", "common.py"])
def test_release_keeps_api_and_todos(released, name):
    ref_text = (ROOT / name).read_text()
    rel_text = (released / name).read_text()
    assert "BEGIN SOLUTION" not in rel_text and "END SOLUTION" not in rel_text
    # Same definitions and signatures as the reference, by AST.
    assert signatures(ast.parse(rel_text)) == signatures(ast.parse(ref_text))
    # Every TODO comment and every line outside the solution blocks survives.
    todos = [line.strip() for line in ref_text.splitlines() if "TODO" in line]
    assert todos and all(t in rel_text for t in todos)
    # One `pass` per block, at the BEGIN marker's indentation.
    begins = re.findall(r"^( *)### BEGIN SOLUTION$", ref_text, flags=re.M)
    assert len(begins) == len(BLOCKS[name])
    ref_lines, rel_lines = ref_text.splitlines(), rel_text.splitlines()
    for indent in set(begins):
        assert rel_lines.count(indent + "pass") - ref_lines.count(indent + "pass") == begins.count(indent)
    # The released file imports and runs up to the TODOs (no syntax errors).
    compile(rel_text, name, "exec")


def test_release_has_no_reference_outputs(released):
    names = sorted(p.name for p in released.rglob("*") if p.is_file())
    assert names == ["a4_helper.py", "common.py", "two_stage_detector.py"]


@pytest.mark.parametrize("text, line, what", [
    ("a\n### BEGIN SOLUTION\nb\n### BEGIN SOLUTION\n", 4, "nested"),
    ("a\n### END SOLUTION\n", 2, "without a matching"),
    ("x\n    ### BEGIN SOLUTION\n    y = 1\n", 2, "never closed"),
])
def test_release_marker_errors_name_file_and_line(text, line, what):
    with pytest.raises(MarkerError, match=rf"student\.py:{line}: .*{what}"):
        strip_solutions(text, "student.py")


def test_strip_solutions_hand_example():
    text = "def f(x):\n    y = None\n    ### BEGIN SOLUTION\n    y = x + 1\n    ### END SOLUTION\n    return y\n"
    assert strip_solutions(text) == "def f(x):\n    y = None\n    pass\n    return y\n"


def test_one_check_per_solution_block():
    for name, checks in BLOCKS.items():
        text = (ROOT / name).read_text()
        assert text.count("### BEGIN SOLUTION") == len(checks), name
    assert sorted(CHECK_NAMES) == sorted(BLOCKS["common.py"] + BLOCKS["two_stage_detector.py"])
    assert corpus.BLOCK_ORDER == BLOCKS


def test_notebook_grade_cells_match_checks():
    """Every grade("name") cell of the notebooks is worth the check's points."""
    nbformat = pytest.importorskip("nbformat")
    seen = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, 4).cells:
            for name in re.findall(r"""grade\(["'](\w+)["']\)""", cell.source):
                meta = cell.metadata.get("nbgrader", {})
                assert name in CHECKS, f"{path.name}: unknown check {name!r}"
                assert meta.get("grade") and float(meta["points"]) == CHECKS[name].points, (path.name, name)
                assert "### BEGIN HIDDEN TESTS" in cell.source
                seen[name] = path.name
    if seen:  # once the notebooks grade, they grade every TODO
        assert sorted(seen) == sorted(CHECK_NAMES)


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fixture_dir():
    return fixtures.ensure()


def test_reference_outputs_against_oracles(fixture_dir):
    inputs = torch.load(fixture_dir / "inputs.pt", weights_only=True)
    expected = torch.load(fixture_dir / "expected.pt", weights_only=True)
    for case, inp in inputs["iou"].items():
        torch.testing.assert_close(expected["iou"][case], torchvision.ops.box_iou(inp["boxes1"], inp["boxes2"]))
    for case, inp in inputs["nms"].items():
        keep = torchvision.ops.nms(inp["boxes"], inp["scores"], inp["iou_threshold"])
        assert torch.equal(expected["nms"][case]["keep"], keep)
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    inp = inputs["rcnn_get_deltas_from_anchors"]["foreground"]
    torch.testing.assert_close(expected["rcnn_get_deltas_from_anchors"]["foreground"],
                               coder.encode_single(inp["gt"], inp["anchors"]))
    # 2 x 3 map of stride 8 flattens row by row: hand-computed.
    coords = expected["fpn_location_coords"]["nonsquare"]["p5"]
    assert coords.tolist() == [[16, 16], [48, 16], [80, 16], [16, 48], [48, 48], [80, 48]]


@pytest.mark.skipif(os.geteuid() != 0, reason="file modes protect the fixtures only when grading as root")
def test_reference_outputs_readable_by_root_only(fixture_dir):
    for path in [fixture_dir, *fixture_dir.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


# ------------------------------------------------------------- the corpus
TIMEOUT = 15


@pytest.fixture(scope="module")
def batch(tmp_path_factory, fixture_dir):
    """Grade everything in one CLI batch run: reference, release, corpus."""
    tmp = tmp_path_factory.mktemp("batch")
    subs = tmp / "submissions"
    cases = [c for c in corpus.CASES if IS_ROOT or not c.get("root_only")]
    for case in cases + [corpus.DIFFERENT_BUT_CORRECT]:
        corpus.build(case, ROOT, subs / case["name"])
    corpus.build({}, ROOT, subs / "reference")
    make_release(subs / "release", notebooks=False)
    # A zip with the files in a sub-folder, next to junk.
    with zipfile.ZipFile(subs / "zipped.zip", "w") as zf:
        for f in ("two_stage_detector.py", "common.py"):
            zf.write(subs / "reference" / f, f"my_work/A4/{f}")
        zf.writestr("__MACOSX/my_work/A4/._common.py", "junk")
    # Only two_stage_detector.py handed in.
    (subs / "missing_common").mkdir()
    shutil.copy(subs / "reference" / "two_stage_detector.py", subs / "missing_common")
    out = {k: tmp / f"report.{k}" for k in ("json", "csv", "jsonl")}
    t0 = time.time()
    proc = subprocess.run(
        [PY, "-m", "autograder", "grade", str(subs), "--jobs", "2", "--timeout", str(TIMEOUT),
         "--json", str(out["json"]), "--csv", str(out["csv"]), "--jsonl", str(out["jsonl"])],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = {s["submission"]: s for s in json.loads(out["json"].read_text())}
    return dict(report=report, stdout=proc.stdout, out=out, elapsed=elapsed, cases=cases)


def case_named(name):
    return next(c for c in corpus.CASES if c["name"] == name)


def scores(sub):
    return {c["name"]: c["score"] for c in sub["checks"]}


def test_reference_gets_full_marks(batch):
    sub = batch["report"]["reference"]
    assert sub["complete"] and sub["score"] == sub["max_score"] == sum(c.points for c in CHECKS.values())
    assert all(c["status"] == "passed" for c in sub["checks"])


def test_release_gets_zero_on_every_check_with_feedback(batch):
    sub = batch["report"]["release"]
    assert sub["complete"] and len(sub["checks"]) == len(CHECK_NAMES)
    for c in sub["checks"]:
        assert c["score"] == 0 and c["status"] in ("failed", "error"), c
        assert c["feedback"] and "case" in c["feedback"], c


def test_correct_but_different_solution_gets_full_marks(batch):
    sub = batch["report"]["different_but_correct"]
    bad = {c["name"]: c["feedback"] for c in sub["checks"] if c["status"] != "passed"}
    assert not bad


@pytest.mark.parametrize("case", [c["name"] for c in corpus.CASES])
def test_corpus_case_scores(batch, case):
    if case not in batch["report"]:
        pytest.skip("this case needs the grader to run as root")
    spec = next(c for c in corpus.CASES if c["name"] == case)
    sub = batch["report"][case]
    assert sub["complete"]
    got = scores(sub)
    want = {n: CHECKS[n].points * spec["expect"].get(n, 1.0) for n in CHECK_NAMES}
    diff = {n: (got[n], want[n], next(c["feedback"] for c in sub["checks"] if c["name"] == n)[:400])
            for n in CHECK_NAMES if abs(got[n] - want[n]) > 0.01}
    assert not diff, diff


def test_feedback_names_the_likely_mistake(batch):
    def feedback(case, check):
        return next(c["feedback"] for c in batch["report"][case]["checks"] if c["name"] == check)

    assert "aspect ratio inverted" in feedback("aspect_ratio_inverted", "generate_fpn_anchors")
    assert "-1e8" in feedback("deltas_background_not_ignored", "rcnn_get_deltas_from_anchors")
    assert "clamp" in feedback("proposals_not_clamped", "rpn_predict_proposals")
    assert "spatial_scale" in feedback("roi_align_wrong_scale", "faster_rcnn_roi_align")
    assert "off by one" in feedback("background_not_shifted", "faster_rcnn_inference")
    assert "dtype torch.float64, expected torch.float32" in feedback("wrong_dtype_coords", "fpn_location_coords")
    assert "NaN" in feedback("nan_output", "generate_fpn_anchors")
    assert "shape (17, 30), expected (30, 17)" in feedback("wrong_shape_iou", "iou")
    assert "did not finish within" in feedback("infinite_loop_iou", "iou")
    assert "sys.exit(1)" in feedback("sys_exit_deltas", "rcnn_get_deltas_from_anchors")
    assert "MemoryError" in feedback("memory_bomb", "rcnn_apply_deltas_to_anchors")
    assert "signal 11" in feedback("segfault", "generate_fpn_anchors")
    assert "SyntaxError" in feedback("syntax_error_tsd", "iou")
    assert "std" in feedback("stem_without_init", "rpn_pred_net_stem")
    printed = feedback("print_flood", "iou")
    assert "your code printed" in printed and len(printed) < 5000


def test_zip_and_missing_files(batch):
    assert batch["report"]["zipped.zip"]["score"] == batch["report"]["reference"]["score"]
    sub = batch["report"]["missing_common"]
    for c in sub["checks"]:
        if c["file"] == "common.py":
            assert c["score"] == 0 and "missing" in c["feedback"]
        else:
            assert c["status"] == "passed", c


def test_cli_outputs(batch):
    rows = list(csv.DictReader(batch["out"]["csv"].open()))
    assert {r["submission"] for r in rows} == set(batch["report"])
    ref = next(r for r in rows if r["submission"] == "reference")
    assert float(ref["score"]) == float(ref["max_score"]) and float(ref["iou"]) == CHECKS["iou"].points
    lines = [json.loads(l) for l in batch["out"]["jsonl"].read_text().splitlines()]
    assert len(lines) == len(batch["report"]) * len(CHECK_NAMES)
    assert "== reference: 42 / 42" in batch["stdout"]
    print(f"graded {len(batch['report'])} submissions in {batch['elapsed']:.0f} s (2 jobs, shared CPU)")


# ------------------------------------------------------------------ killed
def test_killed_grader_leaves_valid_partial_report(tmp_path, fixture_dir):
    corpus.build({}, ROOT, tmp_path / "a")
    corpus.build(case_named("infinite_loop_iou"), ROOT, tmp_path / "b")  # slow
    jsonl, js = tmp_path / "r.jsonl", tmp_path / "r.json"
    proc = subprocess.Popen([PY, "-m", "autograder", "grade", str(tmp_path / "a"), str(tmp_path / "b"),
                             "--jobs", "1", "--timeout", "20", "--jsonl", str(jsonl), "--json", str(js)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert 3 <= len(lines) < 2 * len(CHECK_NAMES)
    partial = json.loads(js.read_text())
    assert partial[0]["checks"] and not partial[-1]["complete"]


# ------------------------------------------------------------ pytest front
def test_pytest_front_end(tmp_path, fixture_dir):
    corpus.build(case_named("exception_iou"), ROOT, tmp_path / "sub")
    proc = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "autograder/test_submission.py",
                           "--submission", str(tmp_path / "sub"), f"--junitxml={tmp_path / 'j.xml'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 failed, 20 passed" in proc.stdout
    total = sum(c.points for c in CHECKS.values())
    assert f"points: {total - CHECKS['iou'].points:g} / {total:g}" in proc.stdout
    assert 'name="points"' in (tmp_path / "j.xml").read_text()
