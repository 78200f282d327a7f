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

import math

import pytest
import torch
import torchvision
from torch.nn import functional as F

from autograder import fixtures, oracles, transplant
from autograder.check_base import DEVICE_CASE, STRIDES
from autograder.checks import BLOCKS, CHECK_NAMES, CHECKS
from autograder.compare import matches
from autograder.release import MarkerError, make_release, strip_solutions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402
import course  # noqa: E402

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
    files = sorted(str(p.relative_to(released)) for p in released.rglob("*") if p.is_file())
    assert {"a4_helper.py", "common.py", "two_stage_detector.py"} <= set(files)
    # The rest is what autograder/manifest.py lists (tests/test_release.py); never the grader.
    assert not [f for f in files if f.endswith(".pt") or "fixtures" in f or f.startswith("autograder")]


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


@pytest.fixture(scope="module")
def reference_io(fixture_dir):
    return (torch.load(fixture_dir / "inputs.pt", weights_only=True),
            torch.load(fixture_dir / "expected.pt", weights_only=True))


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def conv_stack(x, params, relu_every=True):
    """Conv 3x3 (padding 1) + ReLU layers from a flat [w, b, w, b, ...] list."""
    for w, b in zip(params[0::2], params[1::2]):
        x = F.relu(F.conv2d(x, w, b, padding=1))
    return x


def test_every_check_has_oracle_cases(reference_io):
    inputs, expected = reference_io
    assert sorted(inputs) == sorted(CHECK_NAMES) and sorted(expected) == sorted(CHECK_NAMES)
    for name in CHECK_NAMES:
        assert list(inputs[name]) == list(expected[name]), name
        if DEVICE_CASE in expected[name]:  # the device case, last, ran on meta
            assert list(expected[name])[-1] == DEVICE_CASE
            assert '"device": "cpu"' not in json.dumps(expected[name][DEVICE_CASE]), name


def test_reference_box_ops_against_oracles(reference_io):
    inputs, expected = reference_io
    for case, inp in inputs["iou"].items():
        if case != DEVICE_CASE:
            close(expected["iou"][case], torchvision.ops.box_iou(inp["boxes1"], inp["boxes2"]))
    # Hand-computed: [0, 0, 10, 10] against [2, 2, 8, 8] and [10, 0, 20, 10].
    assert expected["iou"]["special"][0, 2].item() == pytest.approx(0.36)
    assert expected["iou"]["special"][0, 4].item() == 0.0
    for case, inp in inputs["nms"].items():
        keep = torchvision.ops.nms(inp["boxes"], inp["scores"], inp["iou_threshold"])
        assert torch.equal(expected["nms"][case]["keep"], keep), case
        assert not oracles.nms_problems(inp["boxes"], inp["scores"], inp["iou_threshold"], keep)
    for case, inp in inputs["rcnn_get_deltas_from_anchors"].items():
        if case == DEVICE_CASE:
            continue
        got, gt = expected["rcnn_get_deltas_from_anchors"][case], inp["gt"]
        ignore = (gt == -1).all(dim=1) | (gt == -1e8).all(dim=1)
        assert (got[ignore] == -1e8).all()
        close(got[~ignore], oracles.encode(gt[~ignore], inp["anchors"][~ignore]))
    for case, inp in inputs["rcnn_apply_deltas_to_anchors"].items():
        if case != DEVICE_CASE:
            close(expected["rcnn_apply_deltas_to_anchors"][case], oracles.decode(inp["deltas"], inp["anchors"]))
    for case, inp in inputs["generate_fpn_anchors"].items():
        if case != DEVICE_CASE:
            close(expected["generate_fpn_anchors"][case],
                  oracles.anchors(inp["locations"], inp["strides"], inp["stride_scale"], inp["aspect_ratios"]))
    # Hand-computed: the first p3 anchor, centre (4, 4), area 32 ** 2, ratio 0.5: 45.25 x 22.63.
    w = math.sqrt(32 ** 2 / 0.5)
    close(expected["generate_fpn_anchors"]["default"]["p3"][0],
          torch.tensor([4 - w / 2, 4 - 512 / w, 4 + w / 2, 4 + 512 / w]))


def test_reference_fpn_and_coords_against_oracles(reference_io):
    inputs, expected = reference_io
    for case, inp in inputs["fpn_location_coords"].items():
        if case != DEVICE_CASE:
            close(expected["fpn_location_coords"][case], oracles.location_coords(inp["shapes"], inp["strides"]))
    # A 2 x 3 map of stride 8 flattens row by row: hand-computed.
    coords = expected["fpn_location_coords"]["nonsquare"]["p5"]
    assert coords.tolist() == [[16, 16], [48, 16], [80, 16], [16, 48], [48, 48], [80, 48]]
    for case, inp in inputs["fpn_forward"].items():
        if case != DEVICE_CASE:
            close(expected["fpn_forward"][case], oracles.fpn(inp["c_feats"], inp["weights"]))
    for case, inp in inputs["fpn_init"].items():
        c = inp["out_channels"]
        want = [["Conv2d", c_in, c, [1, 1], [1, 1], [0, 0], True] for c_in in (64, 160, 400)]
        want += [["Conv2d", c, c, [3, 3], [1, 1], [1, 1], True]] * 3
        assert expected["fpn_init"][case] == sorted(want, key=repr)


def test_reference_rpn_against_oracles(reference_io):
    inputs, expected = reference_io
    stem = inputs["rpn_pred_net_stem"]["output"]
    close(expected["rpn_pred_net_stem"]["output"], conv_stack(stem["x"], stem["params"]))
    cfg = stem["config"]
    assert expected["rpn_pred_net_stem"]["structure"] == [
        layer for c_in, c_out in zip([cfg["in_channels"]] + cfg["stem_channels"], cfg["stem_channels"])
        for layer in (["Conv2d", c_in, c_out, [3, 3], [1, 1], [1, 1], True], ["ReLU"])]
    heads = inputs["rpn_pred_net_heads"]["output"]
    close(expected["rpn_pred_net_heads"]["output"]["pred_obj"], F.conv2d(heads["x"], *heads["obj"]))
    close(expected["rpn_pred_net_heads"]["output"]["pred_box"], F.conv2d(heads["x"], *heads["box"]))
    for case, inp in inputs["rpn_pred_net_forward"].items():
        if case == DEVICE_CASE:
            continue
        st, a = inp["state"], inp["config"]["num_anchors"]
        params = [st[k] for k in st if k.startswith("stem_rpn")]
        for level, x in inp["feats"].items():
            h = conv_stack(x, params)
            b, _, hh, ww = h.shape
            obj = F.conv2d(h, st["pred_obj.weight"], st["pred_obj.bias"])  # (B, A, H, W)
            box = F.conv2d(h, st["pred_box.weight"], st["pred_box.bias"])  # (B, 4A, H, W)
            logits, deltas = expected["rpn_pred_net_forward"][case]
            close(logits[level], obj.permute(0, 2, 3, 1).reshape(b, -1))
            close(deltas[level], box.permute(0, 2, 3, 1).reshape(b, hh * ww * a, 4))
    for case, inp in inputs["rpn_forward_anchors"].items():
        if case == DEVICE_CASE:
            continue
        kw = inp["config"]["kw"]
        locs = oracles.location_coords({k: v.shape for k, v in inp["feats"].items()}, STRIDES)
        close(expected["rpn_forward_anchors"][case]["anchors_per_fpn_level"],
              oracles.anchors(locs, STRIDES, kw["anchor_stride_scale"], kw["anchor_aspect_ratios"]))
    for case, inp in inputs["rpn_forward_matching"].items():
        anchors = torch.cat(list(inp["parts"]["anchors_per_fpn_level"].values()))
        thresholds = inp["config"]["kw"]["anchor_iou_thresholds"]
        close(expected["rpn_forward_matching"][case], [oracles.match(anchors, g, thresholds) for g in inp["gt"]])
    for case, inp in inputs["rpn_forward_loss"].items():
        exp, cfg = expected["rpn_forward_loss"][case], inp["config"]
        logits, deltas, anchors, matched = oracles.flat_rpn_inputs(inp["parts"], cfg["batch"])
        total = cfg["kw"]["batch_size_per_image"] * cfg["batch"]
        # The reference sampled through (the deterministic) sample_rpn_training: a valid sample.
        assert not oracles.sample_problems(exp["sampled"], matched[:, 4], total, 0.5)
        want = oracles.rpn_losses(logits, deltas, anchors, matched, exp["sampled"], total)
        close({k: exp[k] for k in want}, want)
    class0 = inputs["rpn_forward_loss"]["class_0_objects"]
    matched = torch.stack(class0["parts"]["matched_gt_boxes"])
    assert (matched[..., 4] == 0).sum() >= 3  # class-0 objects matched to foreground anchors
    for case, inp in inputs["rpn_predict_proposals"].items():
        kw = inp["config"]["kw"]
        want = oracles.proposals(inp["anchors"], inp["logits"], inp["deltas"], tuple(inp["image_size"]),
                                 kw["pre_nms_topk"], kw["post_nms_topk"], kw["nms_thresh"])
        close(expected["rpn_predict_proposals"][case], want)
        # The accepted variant differs from it: clamping matters in these inputs.
        alt = oracles.proposals(inp["anchors"], inp["logits"], inp["deltas"], tuple(inp["image_size"]),
                                kw["pre_nms_topk"], kw["post_nms_topk"], kw["nms_thresh"], "size-1")
        assert not matches(expected["rpn_predict_proposals"][case], alt)


def test_reference_faster_rcnn_against_oracles(reference_io):
    inputs, expected = reference_io
    for case, inp in inputs["faster_rcnn_cls_head"].items():
        cfg = inp["config"]
        if case.startswith("structure"):
            roi_h, roi_w = cfg["roi_size"]
            assert expected["faster_rcnn_cls_head"][case] == [
                ["Flatten", 1, -1],
                ["Linear", cfg["stem_channels"][-1] * roi_h * roi_w, cfg["num_classes"] + 1, True]]
        else:
            close(expected["faster_rcnn_cls_head"][case], F.linear(inp["x"].flatten(1), *inp["params"]))
    stem = inputs["faster_rcnn_cls_stem"]["output"]
    close(expected["faster_rcnn_cls_stem"]["output"], conv_stack(stem["x"], stem["params"]))
    assert expected["faster_rcnn_cls_stem"]["structure_other_config"][0][1] == 12  # backbone.out_channels
    for case, inp in inputs["faster_rcnn_roi_align"].items():
        o = inp["oracle"]
        want = oracles.roi_features(o["feats"], o["proposals"], STRIDES, inp["config"]["roi_size"])
        close(expected["faster_rcnn_roi_align"][case], [want[k] for k in ("p3", "p4", "p5")])
        # The accepted sampling_ratio=2 differs from torchvision's default (adaptive) here.
        alt = oracles.roi_features(o["feats"], o["proposals"], STRIDES, inp["config"]["roi_size"], sampling_ratio=2)
        assert not matches(expected["faster_rcnn_roi_align"][case], [alt[k] for k in ("p3", "p4", "p5")])
    for case, inp in inputs["faster_rcnn_matching"].items():
        props = inp["parts"]["proposals"]
        want = [oracles.match(torch.cat([props[k][i] for k in props]), g, (0.5, 0.5)) for i, g in enumerate(inp["gt"])]
        close(expected["faster_rcnn_matching"][case], want)
    assert (inputs["faster_rcnn_matching"]["config_b"]["gt"][1, :, 4] == -1).all()  # an image without GT
    for case, inp in inputs["faster_rcnn_loss"].items():
        exp, parts, cfg = expected["faster_rcnn_loss"][case], inp["parts"], inp["config"]
        matched = torch.cat(parts["matched"])
        total = cfg["batch_size_per_image"] * cfg["batch"]
        assert not oracles.sample_problems(exp["sampled"], matched[:, 4], total, 0.25)
        close(exp["loss_cls"], oracles.cls_loss(parts["pred_cls_logits"], matched, exp["sampled"]))
    matched = torch.cat(inputs["faster_rcnn_loss"]["class_0_objects"]["parts"]["matched"])
    assert (matched[:, 4] == 0).any()
    for case, inp in inputs["faster_rcnn_inference"].items():
        boxes = torch.cat([inp["proposals"][k][0] for k in ("p3", "p4", "p5")])
        want = oracles.detections(boxes, inp["logits"], inp["score_thresh"], inp["nms_thresh"])
        assert not CHECKS["faster_rcnn_inference"].problems(case, want, expected["faster_rcnn_inference"][case], inp)


@pytest.mark.skipif(os.geteuid() != 0, reason="file modes protect the fixtures only when grading as root")
def test_reference_outputs_readable_by_root_only(fixture_dir):
    for path in [fixture_dir, *fixture_dir.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


# ------------------------------------------------------------- the corpus
TIMEOUT = 20
# Both corpora: files of this kit with blocks changed (corpus.py) and files
# written against the course's starters (course.py).
ALL_CASES = corpus.CASES + course.CASES


def build_case(case, out_dir):
    if case in course.CASES:
        return course.build(case, out_dir)
    return corpus.build(case, ROOT, out_dir)


@pytest.fixture(scope="module")
def batch(tmp_path_factory, fixture_dir):
    """Grade everything in one CLI batch run: reference, release, both corpora."""
    tmp = tmp_path_factory.mktemp("batch")
    subs = tmp / "submissions"
    cases = [c for c in ALL_CASES if IS_ROOT or not c.get("root_only")]
    for case in cases:
        build_case(case, subs / case["name"])
    corpus.build(corpus.DIFFERENT_BUT_CORRECT, ROOT, subs / "different_but_correct")
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
        cwd=ROOT, capture_output=True, text=True, timeout=2400)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = {s["submission"]: s for s in json.loads(out["json"].read_text())}
    return dict(report=report, stdout=proc.stdout, out=out, elapsed=elapsed, cases=cases)


def case_named(name):
    return next(c for c in ALL_CASES if c["name"] == name)


def scores(sub):
    return {c["name"]: c["score"] for c in sub["checks"]}


def feedback_of(sub, check):
    return next(c["feedback"] for c in sub["checks"] if c["name"] == check)


def test_reference_gets_full_marks(batch):
    sub = batch["report"]["reference"]
    assert sub["complete"] and sub["score"] == sub["max_score"] == sum(c.points for c in CHECKS.values())
    assert all(c["status"] == "passed" for c in sub["checks"])
    assert transplant.describe(sub) == []  # nothing to say about a plain submission of this kit


def test_release_says_every_todo_is_not_implemented(batch):
    sub = batch["report"]["release"]
    assert sub["complete"] and len(sub["checks"]) == len(CHECK_NAMES)
    for c in sub["checks"]:
        assert c["score"] == 0 and c["status"] in ("failed", "error"), c
        assert c["feedback"].startswith("not implemented yet: the TODO block of ") and "\n" not in c["feedback"], c


def test_correct_but_different_solution_gets_full_marks(batch):
    sub = batch["report"]["different_but_correct"]
    bad = {c["name"]: c["feedback"] for c in sub["checks"] if c["status"] != "passed"}
    assert not bad


@pytest.mark.parametrize("case", [c["name"] for c in ALL_CASES])
def test_corpus_case(batch, case):
    """Each case: its expected score on every check, the hint that names its
    mistake, what the report says was stood in."""
    if case not in batch["report"]:
        pytest.skip("this case needs the grader to run as root")
    spec = case_named(case)
    sub = batch["report"][case]
    assert sub["complete"]
    got = scores(sub)
    want = {n: CHECKS[n].points * spec["expect"].get(n, 1.0) for n in CHECK_NAMES}
    diff = {n: (got[n], want[n], feedback_of(sub, n)[:400]) for n in CHECK_NAMES if abs(got[n] - want[n]) > 0.01}
    assert not diff, diff
    for check, text in spec.get("hints", {}).items():
        assert text in feedback_of(sub, check), (check, feedback_of(sub, check))
    stood_in = [s["statement"] for s in sub.get("stood_in", [])]
    assert set(spec.get("stood_in", [])) <= set(stood_in), stood_in
    summary = " ".join(transplant.describe(sub))
    for text in spec.get("report", []):
        assert text in summary, summary


def test_feedback_names_the_likely_mistake(batch):
    def feedback(case, check):
        return feedback_of(batch["report"][case], check)

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
    assert "std" in feedback("stem_without_init", "rpn_pred_net_stem")
    printed = feedback("print_flood", "iou")
    assert "your code printed" in printed and len(printed) < 5000
    # The student's own line, with its line number in the student's file.
    text = (batch["out"]["json"].parent / "submissions" / "exception_iou" / "two_stage_detector.py").read_text()
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "not done yet" in l)
    assert f"two_stage_detector.py, line {line}, in iou: raise ValueError('not done yet')" in \
        feedback("exception_iou", "iou")
    # Accepted variants are named in the feedback of a passing check.
    assert "accepted: proposals clamped to [0, width - 1]" in feedback("course_clamp_size_minus_1",
                                                                       "rpn_predict_proposals")
    assert "accepted: upsampling by bilinear" in feedback("course_bilinear_fpn", "fpn_forward")
    assert "accepted: your own sampling" in feedback("course_own_sampler", "rpn_forward_loss")
    assert "accepted: another order of exactly tied scores" in feedback("course_nms_ties_unstable", "nms")
    assert "accepted: sampling_ratio=2" in feedback("course_roi_align_sampling_ratio", "faster_rcnn_roi_align")


def test_report_says_what_was_transplanted(batch):
    sub = batch["report"]["course_student"]
    tsd, common = sub["transplant"]["two_stage_detector.py"], sub["transplant"]["common.py"]
    assert tsd["starter"] == common["starter"] == "course"
    assert any("level-major" in d for d in tsd["differences"])
    assert any("pretrained" in d for d in common["differences"])
    assert tsd["carried"] == ["def box_area", "RPN._match_each_image"]
    errata = batch["report"]["errata_student"]["transplant"]["two_stage_detector.py"]
    assert errata["starter"] == "errata"
    assert errata["blocks"]["rpn_predict_proposals"]["adapter"] == "errata predict_proposals"
    assert "the course's errata starter" in batch["stdout"]
    assert "stood in: line 4 `from one_stage_detector import FCOSPredictionNetwork, FCOS`" in batch["stdout"]
    rows = {r["submission"]: r for r in csv.DictReader(batch["out"]["csv"].open())}
    assert "carried over: def box_area" in rows["course_student"]["transplant"]
    assert rows["reference"]["transplant"] == ""


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


def test_gradescope_output_says_what_was_transplanted(batch):
    from autograder.gradescope import results_json

    out = results_json([batch["report"]["course_unused_imports"]], 1.0)
    assert "the course's original starter" in out["output"] and "stood in: line 2 `import eecs598`" in out["output"]
    assert "output" not in results_json([batch["report"]["reference"]], 1.0)


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
