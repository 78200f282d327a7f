"""
The notebook series: structure (nbgrader metadata, one self-check per graded
TODO, no committed outputs), the anchor explorer and self-check tools against
hand-computed values and torchvision, and check cells that catch broken code.
The notebooks are executed inside the student release, untouched and
completed, by tests/test_release.py.
"""
import math
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(NOTEBOOK_DIR))

import anchor_explorer  # noqa: E402
import common  # noqa: E402
import nbtools  # noqa: E402
import two_stage_detector  # noqa: E402
from kit import anchors as kit_anchors  # noqa: E402
from kit.data import GT_PADDING  # noqa: E402

CANONICAL_CHECKS = {
    # common.py
    "fpn_init", "fpn_forward", "fpn_location_coords", "nms",
    # two_stage_detector.py
    "rpn_pred_net_stem", "rpn_pred_net_heads", "rpn_pred_net_forward",
    "generate_fpn_anchors", "iou", "rcnn_get_deltas_from_anchors",
    "rcnn_apply_deltas_to_anchors", "rpn_forward_anchors", "rpn_forward_matching",
    "rpn_forward_loss", "rpn_predict_proposals", "faster_rcnn_cls_stem",
    "faster_rcnn_cls_head", "faster_rcnn_roi_align", "faster_rcnn_matching",
    "faster_rcnn_loss", "faster_rcnn_inference",
}
HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n.*?^### END HIDDEN TESTS\n?", re.M | re.S)
GRADE_CALL = re.compile(r'grade\("([a-z0-9_]+)"\)')


def read(path):
    return nbformat.read(str(path), as_version=4)


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def grade_cells(nb):
    return [c for c in nb.cells if nbgrader(c).get("grade")]


def strip_hidden(source):
    return HIDDEN.sub("", source)


# --------------------------------------------------------------- structure
def test_series_exists():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"], NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    for index, cell in enumerate(read(path).cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has outputs: strip them"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"


def test_every_graded_todo_has_one_check_cell():
    seen = {}
    grade_ids = set()
    for path in NOTEBOOKS:
        nb = read(path)
        nbformat.validate(nb)
        for cell in nb.cells:
            meta = nbgrader(cell)
            if meta:
                assert meta["grade_id"] not in grade_ids, f"duplicate grade_id {meta['grade_id']}"
                grade_ids.add(meta["grade_id"])
            if cell.cell_type == "markdown":
                assert meta.get("locked") is True, f"{path.name}: unlocked instructions cell"
            names = GRADE_CALL.findall(cell.source)
            if not names:
                continue
            assert meta.get("grade") is True and meta.get("solution") is False, path.name
            assert meta.get("locked") is True and meta.get("points", 0) > 0, path.name
            hidden = HIDDEN.search(cell.source)
            assert hidden and all(name in hidden.group(0) for name in names), (
                f"{path.name}: grade() outside the hidden-tests block"
            )
            assert "from autograder.notebook import grade" in hidden.group(0)
            public = strip_hidden(cell.source)
            assert "compare(" in public, f"{path.name}: check {names} has no public self-check"
            for name in names:
                assert name not in seen, f"check {name} in {seen.get(name)} and {path.name}"
                seen[name] = path.name
    assert set(seen) == CANONICAL_CHECKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_sets_up_colab_and_local(path):
    first = next(c for c in read(path).cells if c.cell_type == "code")
    source = first.source
    assert "google.colab" in source and "%autoreload 2" in source and "%load_ext autoreload" in source
    assert "sys.path.insert" in source
    # Colab keeps its own torch: only packages that are missing get installed.
    assert not re.search(r"pip install[^\n]*\btorch(vision)?\b", source)
    assert "find_spec" in source


# ----------------------------------------------------------- anchors of the kit
class TestFpnAnchors:
    def test_feature_map_shapes_round_up(self):
        # (W, H) = (70, 40): 40 / 32 -> 2 rows, 70 / 32 -> 3 columns, as a stride-2 layer rounds up.
        assert kit_anchors.feature_map_shapes((70, 40), {"p3": 8, "p5": 32}) == {
            "p3": (1, 1, 5, 9), "p5": (1, 1, 2, 3)}

    def test_hand_computed_anchor(self):
        ratios = [0.5, 1.0, 2.0]
        locations, anchors = kit_anchors.fpn_anchors((70, 40), {"p5": 32}, 2, ratios)
        assert set(locations) == set(anchors) == {"p5"}
        assert locations["p5"].shape == (6, 2) and anchors["p5"].shape == (6 * 3, 4)
        # Location 4 is row 1, column 1: centre (1.5 * 32, 1.5 * 32) = (48, 48).
        torch.testing.assert_close(locations["p5"][4], torch.tensor([48.0, 48.0]))
        # Its ratio-2 anchor (height / width = 2, area (2 * 32) ** 2): w = 64 / sqrt(2), h = 64 * sqrt(2).
        half_w, half_h = 32 / math.sqrt(2), 32 * math.sqrt(2)
        torch.testing.assert_close(anchors["p5"][4 * 3 + 2],
                                   torch.tensor([48 - half_w, 48 - half_h, 48 + half_w, 48 + half_h]))
        # Ratio 1 at location 0 (centre (16, 16)): a 64 px square.
        torch.testing.assert_close(anchors["p5"][1], torch.tensor([-16.0, -16, 48, 48]))

    def test_all_levels_of_the_backbone(self):
        locations, anchors = kit_anchors.fpn_anchors((224, 224), common.FPN_STRIDES, 8, [1.0])
        assert {k: len(v) for k, v in anchors.items()} == {"p3": 784, "p4": 196, "p5": 49}
        assert {k: len(v) for k, v in locations.items()} == {"p3": 784, "p4": 196, "p5": 49}

    @pytest.mark.parametrize("module, name, message", [
        (common, "get_fpn_location_coords",
         "needs get_fpn_location_coords (common.py): implement it first."),
        (two_stage_detector, "generate_fpn_anchors",
         "needs generate_fpn_anchors (two_stage_detector.py): implement it first."),
    ])
    @pytest.mark.parametrize("stub", ["None", "None per level"])
    def test_stub_names_the_todo(self, monkeypatch, module, name, message, stub):
        if stub == "None":
            monkeypatch.setattr(module, name, lambda *args, **kwargs: None)
        else:
            monkeypatch.setattr(module, name, lambda per_level, *args, **kwargs:
                                {level: None for level in per_level})
        with pytest.raises(NotImplementedError) as error:
            kit_anchors.fpn_anchors((64, 64), {"p5": 32}, 2, [1.0])
        assert str(error.value) == message


# ----------------------------------------------------------- anchor explorer
def gt_rows(*boxes):
    rows = torch.full((40, 5), GT_PADDING)
    rows[: len(boxes)] = torch.tensor(boxes, dtype=torch.float32)
    return rows


class TestExploreAnchors:
    def test_hand_computed_counts(self):
        # p5 on a 64 x 64 image: 2 x 2 locations, stride_scale 2, ratio 1:
        # anchors [-16,-16,48,48], [16,-16,80,48], [-16,16,48,80], [16,16,80,80].
        # GT [16,16,80,80]: IoUs 1024/7168, 2048/6144, 2048/6144, 1.
        gt = gt_rows([16, 16, 80, 80, 2])
        result = anchor_explorer.explore_anchors(gt, "p5", 2, [1.0], image_size=(64, 64))
        torch.testing.assert_close(
            result["anchors"],
            torch.tensor([[-16, -16, 48, 48], [16, -16, 80, 48], [-16, 16, 48, 80], [16, 16, 80, 80]]).float(),
        )
        torch.testing.assert_close(result["best_iou"], torch.tensor([1 / 7, 1 / 3, 1 / 3, 1.0]))
        assert result["labels"].tolist() == [-1, 0, 0, 1]
        assert result["counts"] == {"foreground": 1, "neutral": 2, "background": 1}
        result = anchor_explorer.explore_anchors(gt, "p5", 2, [1.0], iou_thresholds=(0.4, 0.6),
                                                 image_size=(64, 64))
        assert result["counts"] == {"foreground": 1, "neutral": 0, "background": 3}

    def test_location_snaps_to_nearest(self):
        result = anchor_explorer.explore_anchors(gt_rows([0, 0, 50, 50, 0]), "p5", 8, center=(70, 70))
        # p5 centres are 16 + 32 k: (70, 70) is nearest to (80, 80), row 2, column 2.
        assert result["location"] == 2 * 7 + 2 and result["center"] == (80.0, 80.0)
        torch.testing.assert_close(
            result["location_anchors"][1], torch.tensor([80.0 - 128, 80 - 128, 80 + 128, 80 + 128])
        )

    @pytest.mark.parametrize("level, stride_scale, thresholds", [("p3", 4, (0.3, 0.6)),
                                                                   ("p4", 8, (0.3, 0.6)),
                                                                   ("p5", 3, (0.2, 0.5))])
    def test_counts_against_torchvision(self, level, stride_scale, thresholds):
        gt = gt_rows([30, 40, 150, 200, 0], [120, 20, 210, 90, 1], [10, 170, 60, 220, 2])
        result = anchor_explorer.explore_anchors(gt, level, stride_scale, [0.5, 1.0, 2.0],
                                                 iou_thresholds=thresholds)
        # Independent anchors: loops over locations and ratios.
        stride = {"p3": 8, "p4": 16, "p5": 32}[level]
        boxes = []
        for i in range(224 // stride):
            for j in range(224 // stride):
                xc, yc = (j + 0.5) * stride, (i + 0.5) * stride
                for ratio in (0.5, 1.0, 2.0):
                    w = (stride_scale * stride) / math.sqrt(ratio)
                    h = (stride_scale * stride) * math.sqrt(ratio)
                    boxes.append([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
        boxes = torch.tensor(boxes)
        torch.testing.assert_close(result["anchors"], boxes, rtol=1e-5, atol=1e-4)
        best = torchvision.ops.box_iou(boxes, gt[:3, :4]).max(dim=1).values
        low, high = thresholds
        expected = {
            "foreground": int((best >= high).sum()),
            "neutral": int(((best > low) & (best < high)).sum()),
            "background": int((best <= low).sum()),
        }
        assert result["counts"] == expected
        assert sum(expected.values()) == len(boxes)

    def test_no_gt_means_all_background(self):
        result = anchor_explorer.explore_anchors(torch.full((40, 5), GT_PADDING), "p4", 8)
        assert result["counts"] == {"foreground": 0, "neutral": 0, "background": 588}

    def test_padding_rows_are_never_matched(self):
        gt = gt_rows([16, 16, 80, 80, 2])
        result = anchor_explorer.explore_anchors(gt, "p5", 2, [1.0], image_size=(64, 64))
        matched = two_stage_detector.rcnn_match_anchors_to_gt(result["anchors"], gt, (0.3, 0.6))
        assert set(matched[:, 4].tolist()) == {2.0, two_stage_detector.BACKGROUND, two_stage_detector.NEUTRAL}
        assert result["labels"].tolist() == [anchor_explorer.LABEL_BACKGROUND, anchor_explorer.LABEL_NEUTRAL,
                                             anchor_explorer.LABEL_NEUTRAL, anchor_explorer.LABEL_FOREGROUND]

    def test_levels_and_strides_come_from_common(self):
        for level, stride in common.FPN_STRIDES.items():
            result = anchor_explorer.explore_anchors(gt_rows([0, 0, 10, 10, 0]), level, 2, [1.0])
            assert result["stride"] == stride and result["grid"] == (math.ceil(224 / stride),) * 2
        with pytest.raises(ValueError, match=re.escape(f"level must be one of {list(common.FPN_STRIDES)}")):
            anchor_explorer.explore_anchors(gt_rows([0, 0, 10, 10, 0]), "p6")

    @pytest.mark.parametrize("kwargs, message", [
        ({"level": "p6"}, "level must be one of"),
        ({"stride_scale": 0}, "stride_scale must be a positive"),
        ({"aspect_ratios": []}, "at least one positive aspect ratio"),
        ({"iou_thresholds": (0.7, 0.3)}, "low <= high"),
    ])
    def test_bad_settings_say_what_to_do(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            anchor_explorer.explore_anchors(gt_rows([0, 0, 10, 10, 0]), **kwargs)

    def test_unimplemented_student_code_is_reported(self, monkeypatch):
        monkeypatch.setattr(two_stage_detector, "generate_fpn_anchors",
                            lambda locations, *args: {level: None for level in locations})
        with pytest.raises(NotImplementedError, match="generate_fpn_anchors") as error:
            anchor_explorer.explore_anchors(gt_rows([0, 0, 10, 10, 0]))
        assert str(error.value) == ("The explorer needs generate_fpn_anchors (two_stage_detector.py): "
                                    "implement it first.")
        monkeypatch.setattr(common, "get_fpn_location_coords",
                            lambda shapes, *args, **kwargs: {level: None for level in shapes})
        with pytest.raises(NotImplementedError) as error:
            anchor_explorer.explore_anchors(gt_rows([0, 0, 10, 10, 0]))
        assert str(error.value) == "The explorer needs get_fpn_location_coords (common.py): implement it first."

    def test_bad_gt_shape(self):
        with pytest.raises(ValueError, match=r"\(M, 5\)"):
            anchor_explorer.explore_anchors(torch.zeros(2, 4))

    def test_format_counts(self):
        result = anchor_explorer.explore_anchors(gt_rows([16, 16, 80, 80, 2]), "p5", 2, [1.0],
                                                 image_size=(64, 64))
        text = anchor_explorer.format_counts(result)
        assert "level p5, stride 32, stride_scale 2 (1:1 anchor 64 px)" in text
        assert "2x2 locations x 1 ratios = 4 anchors" in text
        assert "foreground 1 (IoU >= 0.60) | neutral 2 | background 1 (<= 0.30)" in text


class TestExplorerFigures:
    @pytest.fixture(autouse=True)
    def agg(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        yield
        plt.close("all")

    def test_draw_explorer_draws_gt_foreground_and_location(self):
        from matplotlib.patches import Rectangle

        gt = gt_rows([16, 16, 80, 80, 2])
        result = anchor_explorer.explore_anchors(gt, "p5", 2, [1.0], image_size=(64, 64))
        fig = anchor_explorer.draw_explorer(torch.rand(3, 64, 64), gt, result, ["a", "b", "c"])
        rects = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
        # 1 GT box + 1 foreground anchor + the A = 1 anchor of the chosen location.
        assert len(rects) == 3
        assert "fg 1 / neutral 2 / bg 1" in fig.axes[0].get_title()
        assert [t.get_text() for t in fig.axes[0].texts] == ["c"]

    def test_overview_has_one_panel_per_level_and_scale(self):
        gt = gt_rows([30, 40, 150, 200, 0])
        fig, results = anchor_explorer.explorer_overview(torch.rand(3, 224, 224), gt, stride_scales=(2, 8))
        assert len(fig.axes) == 6
        assert [(r["level"], r["stride_scale"]) for r in results] == [
            ("p3", 2), ("p4", 2), ("p5", 2), ("p3", 8), ("p4", 8), ("p5", 8)]

    def test_widget_sliders_recompute(self):
        gt = gt_rows([30, 40, 150, 200, 0], [120, 20, 210, 90, 1])
        explorer = anchor_explorer.AnchorExplorer(torch.rand(3, 224, 224), gt, level="p4", stride_scale=8)
        assert explorer.result["counts"]["foreground"] > 0
        before = dict(explorer.result["counts"])
        explorer.controls["stride_scale"].value = 2
        assert explorer.result["stride_scale"] == 2 and explorer.result["counts"] != before
        assert explorer.result["counts"]["foreground"] == 0  # 32 px anchors fit none of these boxes
        explorer.controls["level"].value = "p3"
        assert len(explorer.result["labels"]) == 28 * 28 * 3
        explorer.controls["iou_thresholds"].value = (0.0, 0.05)
        assert explorer.result["counts"]["background"] + explorer.result["counts"]["neutral"] + \
            explorer.result["counts"]["foreground"] == 2352
        explorer.controls["aspect_ratios"].value = (1.0,)
        assert len(explorer.result["labels"]) == 784
        # Broken student code: a message in the output, the explorer keeps going.
        original_iou = two_stage_detector.iou
        try:
            two_stage_detector.iou = lambda a, b: None
            explorer.controls["stride_scale"].value = 4
        finally:
            two_stage_detector.iou = original_iou
        assert explorer.result["stride_scale"] == 2
        explorer.controls["stride_scale"].value = 5
        assert explorer.result["stride_scale"] == 5
        bundle = explorer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert "level p3, stride 8" in bundle["text/plain"]


# ------------------------------------------------------------------ nbtools
class TestCompare:
    def test_ok_and_mismatch(self, capsys):
        nbtools.compare("same", [1.0, 2.0], torch.tensor([1.0, 2.0 + 1e-7], dtype=torch.float64), "hint A")
        out = capsys.readouterr().out
        assert "relative error: 5.00e-08" in out and out.rstrip().endswith("OK") and "hint A" not in out
        nbtools.compare("differ", torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 3.0]]), "hint B")
        out = capsys.readouterr().out
        assert "relative error: 5.00e-01" in out and "MISMATCH" in out
        assert "if they differ, look at: hint B" in out

    def test_missing_and_wrong_shape(self, capsys):
        nbtools.compare("none: a list", [1, 2], None, "implement it")
        out = capsys.readouterr().out
        assert out.strip() == "NOT DONE  none: a list: got None for none - finish the TODO"
        nbtools.compare("shape", torch.zeros(2, 3), torch.zeros(3, 2), "transpose?")
        out = capsys.readouterr().out
        assert "relative error: inf" in out and "MISMATCH" in out
        assert "got: shape (3, 2), expected (2, 3)" in out

    def test_dtype_is_part_of_the_rule(self, capsys):
        nbtools.compare("dtype", torch.zeros(2), torch.zeros(2, dtype=torch.float64), "float32")
        out = capsys.readouterr().out
        assert "MISMATCH" in out and "dtype torch.float64, expected torch.float32" in out
        nbtools.compare("list", [0, 0], torch.zeros(2, dtype=torch.float64), "no dtype")
        assert capsys.readouterr().out.rstrip().endswith("OK")

    def test_self_check_of_a_stub_says_not_done_once(self, capsys, monkeypatch):
        from kit import todos

        monkeypatch.setattr(todos, "state", lambda name: "stub" if name == "iou" else "started")
        with nbtools.self_check("iou"):
            print("hidden output of the stub")
            nbtools.compare("iou", [1.0], None, "h")
            raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'float'")
        with nbtools.self_check("rpn_forward_matching"):
            pass
        with nbtools.needs("rpn_forward_matching", what="the figure"):
            raise RuntimeError("stack expects a non-empty TensorList")
        assert capsys.readouterr().out.splitlines() == [
            "NOT DONE  iou (two_stage_detector.py): still the stub - implement the TODO",
            "NEEDS  iou (two_stage_detector.py) first (for RPN.forward: matching (two_stage_detector.py))",
            "SKIPPED  the figure: needs iou (two_stage_detector.py) first",
        ]

    def test_dict_compares_per_key(self, capsys):
        nbtools.compare("d", {"p3": [1, 2], "p4": [3]}, {"p3": [1, 2], "p4": [4]}, "h")
        out = capsys.readouterr().out
        assert "d [p3]" in out and "d [p4]" in out
        assert out.count(" OK") == 1 and out.count("MISMATCH") == 1

    def test_capture_stops_and_restores(self):
        original = two_stage_detector.iou
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        with nbtools.capture(two_stage_detector, "iou", stop=True) as calls:
            two_stage_detector.iou(boxes, boxes)
            raise AssertionError("capture(stop=True) must end the block at the first call")
        assert two_stage_detector.iou is original
        assert calls[0]["result"].item() == 1.0
        with nbtools.capture(two_stage_detector, "iou", run=False) as calls:
            assert two_stage_detector.iou(boxes, boxes) is None
        assert len(calls) == 1 and two_stage_detector.iou is original


# ------------------------------------------- check cells catch broken code
def run_check_cell(notebook, check, monkeypatch, capsys, **broken):
    """Execute the public part of one graded cell in-process (after the
    configuration cell and the graded cells before it, which it may build on),
    with functions of two_stage_detector / common replaced by `broken` ones;
    return what the graded cell printed."""
    import common

    monkeypatch.setenv(nbtools.FAST_ENV, "1")
    nb = read(NOTEBOOK_DIR / notebook)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for name, function in broken.items():
        module = two_stage_detector if hasattr(two_stage_detector, name) and name != "nms" else common
        monkeypatch.setattr(module, name, function)
    namespace = {"KIT_ROOT": ROOT, "NOTEBOOK_DIR": NOTEBOOK_DIR}
    exec(code_cells[1].source, namespace)  # the configuration cell
    for cell in grade_cells(nb):
        capsys.readouterr()
        exec(strip_hidden(cell.source), namespace)
        if f'grade("{check}")' in cell.source:
            return capsys.readouterr().out
    raise AssertionError(f"no check cell {check} in {notebook}")


def iou_without_clamp(boxes1, boxes2):
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    wh = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:]) - torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    inter = wh[..., 0] * wh[..., 1]  # negative overlaps multiply to positive "intersections"
    return inter / (area1[:, None] + area2[None] - inter)


def anchors_with_swapped_sides(locations, strides, stride_scale, aspect_ratios=(0.5, 1.0, 2.0)):
    return {
        level: torch.stack([
            torch.cat([loc - loc.new_tensor([h / 2, w / 2]), loc + loc.new_tensor([h / 2, w / 2])], dim=1)
            for r in aspect_ratios
            for w, h in [((stride_scale * strides[level]) / math.sqrt(r), (stride_scale * strides[level]) * math.sqrt(r))]
        ], dim=1).view(-1, 4)
        for level, loc in locations.items()
    }


def nms_with_ge(boxes, scores, iou_threshold=0.5):
    order = scores.argsort(descending=True)
    keep = []
    while len(order):
        keep.append(order[0])
        ious = torchvision.ops.box_iou(boxes[order[:1]], boxes[order[1:]])[0]
        order = order[1:][ious < iou_threshold]  # also drops boxes AT the threshold
    return torch.stack(keep)


@pytest.mark.parametrize("notebook, check, broken", [
    ("03_iou_matching_deltas.ipynb", "iou", {"iou": iou_without_clamp}),
    ("03_iou_matching_deltas.ipynb", "rcnn_get_deltas_from_anchors",
     {"rcnn_get_deltas_from_anchors": lambda a, g: torch.zeros(len(a), 4)}),
    ("02_anchors.ipynb", "generate_fpn_anchors", {"generate_fpn_anchors": anchors_with_swapped_sides}),
    ("04_rpn.ipynb", "nms", {"nms": lambda b, s, t=0.5: torchvision.ops.nms(b, s, t)[:-1]}),
    ("05_faster_rcnn.ipynb", "faster_rcnn_inference",
     {"class_spec_nms": lambda boxes, scores, classes, iou_threshold=0.5: scores.argsort(descending=True)}),
])
def test_check_cells_catch_broken_code(notebook, check, broken, monkeypatch, capsys):
    out = run_check_cell(notebook, check, monkeypatch, capsys, **broken)
    assert "MISMATCH" in out and "if they differ, look at:" in out, out


def test_check_cell_says_not_done_for_none(monkeypatch, capsys):
    out = run_check_cell("03_iou_matching_deltas.ipynb", "iou", monkeypatch, capsys,
                         iou=lambda b1, b2: None)
    assert out.strip() == "NOT DONE  iou (two_stage_detector.py): got None for iou - finish the TODO", out


def test_check_cell_bug_is_one_error_line(monkeypatch, capsys):
    def broken(boxes1, boxes2):
        raise IndexError("too many indices for tensor of dimension 1")

    out = run_check_cell("03_iou_matching_deltas.ipynb", "iou", monkeypatch, capsys, iou=broken)
    assert out.strip().startswith("ERROR  iou (two_stage_detector.py): IndexError: too many indices"), out
    assert "Traceback" not in out


def test_check_cell_passes_on_reference(monkeypatch, capsys):
    out = run_check_cell("03_iou_matching_deltas.ipynb", "iou", monkeypatch, capsys)
    assert "MISMATCH" not in out and out.rstrip().endswith("OK")
