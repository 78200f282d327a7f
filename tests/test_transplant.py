"""
Finding TODO blocks in students' files and transplanting them into the kit's
provided code (autograder/blocks.py, autograder/transplant.py), on files of
this kit, of the course's starter and of its errata starter.
"""
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from autograder import blocks, transplant
from autograder.check_base import BLOCKS
from autograder.release import strip_solutions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402
import course  # noqa: E402

TSD, COMMON = "two_stage_detector.py", "common.py"
STARTERS = Path(__file__).resolve().parent / "submissions" / "starters"


def reference(name):
    return (ROOT / name).read_text()


def prepare(text, name=TSD):
    return transplant.transplant_file(text, name, reference(name), BLOCKS[name])


def load(prepared_tsd: str, tmp_path: Path, tag: str):
    """Import a prepared two_stage_detector.py (next to the kit's common.py)."""
    path = tmp_path / f"prepared_{tag}.py"
    path.write_text(prepared_tsd)
    sys.path.insert(0, str(ROOT))
    try:
        spec = importlib.util.spec_from_file_location(f"prepared_{tag}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT))
    return module


@pytest.mark.parametrize("name", [TSD, COMMON])
def test_kit_files_transplant_to_themselves(name, tmp_path):
    """The reference (markers removed, as handed in) and the release come out unchanged."""
    as_handed_in = corpus.rewrite(reference(name), BLOCKS[name], {})
    text, info = prepare(as_handed_in, name)
    assert text == as_handed_in
    assert info["starter"] == "kit" and not info["carried"] and not info["notes"]
    assert all(b["status"] == "transplanted" for b in info["blocks"].values())
    released = strip_solutions(reference(name))
    text, info = prepare(released, name)
    assert text == released
    assert all(b["status"] == "not implemented" for b in info["blocks"].values())


@pytest.mark.parametrize("starter, name, differences", [
    ("course", TSD, 2), ("errata", TSD, 4), ("course", COMMON, 1)])
def test_course_starters_are_recognized(starter, name, differences):
    text = (STARTERS / starter / name).read_text()
    prepared, info = prepare(text, name)
    assert info["starter"] == starter
    assert len(info["differences"]) == differences, info["differences"]
    assert all(b["status"] == "not implemented" for b in info["blocks"].values())
    # Their provided code is replaced by the kit's: the prepared file is the release.
    assert prepared == strip_solutions(reference(name))


def test_course_student_blocks_run_in_the_kit_code(tmp_path):
    sub = course.build(next(c for c in course.CASES if c["name"] == "course_student"), tmp_path / "s")
    student = (sub / TSD).read_text()
    prepared, info = prepare(student)
    assert info["starter"] == "course"
    assert all(b["status"] == "transplanted" for b in info["blocks"].values()), info["blocks"]
    assert info["carried"] == ["def box_area", "RPN._match_each_image"]
    # The kit's provided lines, not the course's.
    assert "roi_feats = self._cat_per_image(" in prepared
    assert "roi_feats = self._cat_across_fpn_levels(roi_feats_per_fpn_level, dim=0)" not in prepared
    assert "deltas = deltas.clone()" in prepared
    # The heads written over the placeholder lines are part of their block.
    heads = info["blocks"]["rpn_pred_net_heads"]["lines"]
    lines = student.splitlines()
    assert any("self.pred_obj = nn.Conv2d(" in l for l in lines[heads[0] - 1:heads[1]])
    # Every prepared line of the student's maps back to the same text.
    for k, origin in enumerate(info["lines"]):
        if origin:
            assert prepared.splitlines()[k].strip() == lines[origin - 1].strip()
    module = load(prepared, tmp_path, "course")
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15]])
    assert torch.allclose(module.iou(boxes, boxes), torch.tensor([[1.0, 25 / 175], [25 / 175, 1.0]]))
    assert hasattr(module.RPN, "_match_each_image")


def test_errata_predict_proposals_runs_in_an_adapter(tmp_path):
    sub = course.build({"starter": "errata"}, tmp_path / "s")
    prepared, info = prepare((sub / TSD).read_text())
    assert info["starter"] == "errata"
    assert info["blocks"]["rpn_predict_proposals"]["adapter"] == "errata predict_proposals"
    module = load(prepared, tmp_path, "errata")
    anchors = {"p3": torch.tensor([[0.0, 0, 8, 8], [40, 40, 60, 60], [1, 1, 9, 9]])}
    logits = {"p3": torch.tensor([[3.0, 2.0, 1.0]])}
    deltas = {"p3": torch.zeros(1, 3, 4)}
    rpn = module.RPN(8, [8], 4, nms_thresh=0.5, pre_nms_topk=3, post_nms_topk=2)
    out = rpn.predict_proposals(anchors, logits, deltas, (64, 64))
    # Hand-computed: box 2 overlaps box 0 (IoU 49 / 79 > 0.5) and is suppressed.
    assert torch.equal(out["p3"][0], torch.tensor([[0.0, 0, 8, 8], [40, 40, 60, 60]]))


def test_failing_top_level_imports_are_stood_in(tmp_path):
    text = corpus.rewrite(reference(TSD), BLOCKS[TSD], {})
    text = ("import no_such_package_here\nfrom no_such_package_here.sub import thing as other\n"
            "import math as m2\nCONSTANT = no_such_package_here.VALUE\n") + text
    prepared, info = prepare(text)
    assert info["carried"] == ["import no_such_package_here",
                               "from no_such_package_here.sub import thing as other",
                               "import math as m2", "CONSTANT = no_such_package_here.VALUE"]
    module = load(prepared, tmp_path, "standin")
    assert [s["statement"] for s in module._KIT_STOOD_IN] == [
        "import no_such_package_here", "from no_such_package_here.sub import thing as other",
        "CONSTANT = no_such_package_here.VALUE"]
    assert module.m2.pi == pytest.approx(3.14159, abs=1e-5)  # what imports works
    with pytest.raises(ImportError, match=r"`other` is not available when grading: line 2 of your "
                                          r"two_stage_detector.py"):
        module.other(1)
    with pytest.raises(ImportError, match="no_such_package_here"):
        module.no_such_package_here.anything
    boxes = torch.tensor([[0.0, 0, 10, 10]])
    assert module.iou(boxes, boxes).item() == 1.0  # the rest of the file works


def test_block_that_does_not_compile_fails_alone(tmp_path):
    text = corpus.rewrite(reference(TSD), BLOCKS[TSD], {"iou": "iou = (boxes1 +\n"})
    prepared, info = prepare(text)
    assert info["blocks"]["iou"]["status"] == "syntax error"
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.strip() == "iou = (boxes1 +")
    module = load(prepared, tmp_path, "syntax")
    with pytest.raises(SyntaxError, match=rf"does not compile \(two_stage_detector.py, line {line}\)"):
        module.iou(torch.zeros(1, 4), torch.zeros(1, 4))
    anchors = torch.tensor([[0.0, 0, 10, 10]])
    assert torch.equal(module.rcnn_apply_deltas_to_anchors(torch.zeros(1, 4), anchors), anchors)


def test_markers_deleted_blocks_found_between_provided_lines(tmp_path):
    case = next(c for c in course.CASES if c["name"] == "course_markers_deleted")
    sub = course.build(case, tmp_path / "s")
    student = (sub / TSD).read_text()
    ref = reference(TSD)
    found, notes = blocks.find_blocks(student, blocks.kit_blocks(ref, BLOCKS[TSD]), blocks.provided_lines(ref))
    assert found["iou"].how == "anchors" and found["rpn_pred_net_heads"].how == "anchors"
    assert any("area1 = box_area(boxes1)" in l for l in found["iou"].lines)
    assert [l.strip() for l in found["rpn_pred_net_heads"].lines if blocks.is_code(l)] == [
        "self.pred_obj = nn.Conv2d(stem_channels[-1], num_anchors, kernel_size=1)  # Objectness conv",
        "self.pred_box = nn.Conv2d(stem_channels[-1], 4 * num_anchors, kernel_size=1)  # Box regression conv"]
    assert any("iou" in n for n in notes)


def test_tabs_and_windows_line_endings(tmp_path):
    """A block indented with a tab (8 columns here, 4 in the provided code around
    it) in a file with Windows line endings."""
    iou = textwrap.dedent(corpus.CORRECT_IOU).strip("\n")
    text = corpus.rewrite(reference(TSD), BLOCKS[TSD], {})
    start = text.index("    area1 = (boxes1[:, 2]")
    end = text.index("    ##########################################################################\n"
                     "    #                             END OF YOUR CODE", start)
    text = text[:start] + "".join("\t" + l + "\n" for l in iou.splitlines()) + text[end:]
    prepared, info = prepare(text.replace("\n", "\r\n"))
    assert info["blocks"]["iou"]["status"] == "transplanted"
    module = load(prepared, tmp_path, "tabs")
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 5, 10]])
    assert torch.allclose(module.iou(boxes, boxes)[0, 1], torch.tensor(0.5))


def test_carried_code_keeps_its_place(tmp_path):
    """A subclass of a provided class follows that class; a module docstring and
    `from __future__` stay first."""
    text = corpus.rewrite(reference(TSD), BLOCKS[TSD], {})
    text = '"""My detector."""\nfrom __future__ import annotations\n' + text.replace(
        "class FasterRCNN(nn.Module):", "class MyRPN(RPN):\n    pass\n\n\nclass FasterRCNN(nn.Module):")
    prepared, info = prepare(text)
    assert info["carried"] == ["class MyRPN"]
    assert prepared.index("class MyRPN(RPN)") > prepared.index("class RPN(nn.Module)")
    assert prepared.startswith("from __future__ import annotations\n")
    module = load(prepared, tmp_path, "place")
    assert issubclass(module.MyRPN, module.RPN)


def test_scopes_of_a_file_that_does_not_parse():
    lines = ["def f(x):", "    y = (x +", "    return y", "", "class A:", "    def g(self):", "        pass"]
    assert blocks.enclosing_functions(lines) == [None, "f", "f", "f", None, "A", "A.g"]
    signature = ["def h(", "    a,", "):", "    return a"]
    assert blocks.enclosing_functions(signature) == [None, "h", "h", "h"]


@pytest.mark.parametrize("code, empty", [
    ("pass", True), ("deltas = None\npass", True), ("a, b = None, None", True),
    ("x = (\n    None,\n    None,\n)\n# comment", True), ("x = 0", False), ("return None", False),
    ("x = (", False)])
def test_placeholders_are_empty(code, empty):
    assert blocks.is_empty(code.splitlines()) is empty


def test_report_lines_and_unfinished_todo():
    info = {TSD: {"starter": "course", "differences": ["a", "b"], "carried": ["def helper"], "notes": [],
                  "blocks": {"iou": {"status": "not implemented", "lines": [10, 12]},
                             "nms": {"status": "transplanted", "lines": [1, 2]}}}}
    sub = {"transplant": info, "stood_in": [{"file": TSD, "line": "3", "statement": "import joblib",
                                             "error": "ModuleNotFoundError: No module named 'joblib'"}]}
    line, = transplant.describe(sub)
    assert "the course's original starter" in line and "1 not implemented" in line
    assert "differs from the kit's in 2 place(s)" in line and "carried over: def helper" in line
    assert "stood in: line 3 `import joblib`" in line
    result = {"name": "iou", "file": TSD, "todo": "iou", "status": "failed", "feedback": "got str 'None'"}
    out = transplant.annotate_result(result, info)
    assert out["feedback"] == ("not implemented yet: the TODO block of iou (two_stage_detector.py, "
                               "lines 10-12) still holds the released `pass`")
    assert transplant.describe({"transplant": {TSD: {"starter": "kit", "blocks": {}, "carried": [],
                                                     "notes": [], "differences": []}}}) == []


def test_a_file_that_cannot_be_transplanted_is_graded_as_it_is(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(transplant, "transplant_file", broken)
    texts, infos = transplant.transplant_files({TSD: b"x = 1\n"}, ROOT, BLOCKS)
    assert texts[TSD] == "x = 1\n" and infos[TSD]["whole_file"]
    assert "graded as it is" in infos[TSD]["notes"][0]
