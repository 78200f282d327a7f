"""
Corpus of broken and hostile submissions for the autograder tests.

Each case starts from the reference solution (markers removed, as a student
hands it in) and changes a few TODO blocks (`blocks`: check name -> code that
replaces that TODO's block, written at indentation 0) or whole files
(`prepend`: file -> code put at the top). `expect` gives the expected score
of every check that does not get full marks; all other checks must get full
marks. `expect` values are fractions of the check's points. `hints`: check
-> text its feedback must contain; `stood_in`: statements the report must
list as stood in; `report`: text the report's summary lines must contain.
Built by `build()` into a folder per case.
"""
import re
import textwrap
from pathlib import Path

BLOCK_ORDER = {
    "common.py": ["fpn_init", "fpn_forward", "fpn_location_coords", "nms"],
    "two_stage_detector.py": [
        "rpn_pred_net_stem", "rpn_pred_net_heads", "rpn_pred_net_forward",
        "generate_fpn_anchors", "iou", "rcnn_get_deltas_from_anchors",
        "rcnn_apply_deltas_to_anchors", "rpn_forward_anchors", "rpn_forward_matching",
        "rpn_forward_loss", "rpn_predict_proposals", "faster_rcnn_cls_stem",
        "faster_rcnn_cls_head", "faster_rcnn_roi_align", "faster_rcnn_matching",
        "faster_rcnn_loss", "faster_rcnn_inference",
    ],
}
FILE_OF = {name: f for f, names in BLOCK_ORDER.items() for name in names}
TSD = BLOCK_ORDER["two_stage_detector.py"]
COMMON = BLOCK_ORDER["common.py"]

CORRECT_IOU = """
area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
wh = (rb - lt).clamp(min=0)
inter = wh[..., 0] * wh[..., 1]
iou = inter / (area1[:, None] + area2[None, :] - inter)
"""

CASES = [
    # ------------------------------------------------------------ crashes
    dict(name="syntax_error_tsd", about="a TODO block of two_stage_detector.py does not compile: only its check fails",
         blocks={"iou": "iou = (boxes1 +\n"},
         hints={"iou": "does not compile"},
         expect={"iou": 0}),
    dict(name="syntax_error_common", about="a TODO block of common.py does not compile: only its check fails",
         blocks={"nms": "keep = [[\n"},
         expect={"nms": 0}),
    dict(name="syntax_error_outside_blocks", about="a syntax error outside the TODO blocks: the blocks are "
                                                   "still graded, the report says what was not carried over",
         prepend={"common.py": "def broken(:\n    pass\n"},
         report=["syntax error outside its TODO blocks"],
         expect={}),
    dict(name="import_error", about="imports a module that does not exist, unused: stood in",
         prepend={"two_stage_detector.py": "import no_such_module_for_grading\n"},
         stood_in=["import no_such_module_for_grading"],
         expect={}),
    dict(name="exception_iou", about="iou raises; matching still uses the reference iou",
         blocks={"iou": "raise ValueError('not done yet')\n"},
         expect={"iou": 0}),
    dict(name="infinite_loop_iou", about="iou never returns",
         blocks={"iou": "while True:\n    pass\n"},
         expect={"iou": 0}),
    dict(name="os_exit_nms", about="nms calls os._exit(0)",
         blocks={"nms": "import os\nos._exit(0)\n"},
         expect={"nms": 0}),
    dict(name="sys_exit_deltas", about="rcnn_get_deltas_from_anchors calls sys.exit(1)",
         blocks={"rcnn_get_deltas_from_anchors": "import sys\nsys.exit(1)\n"},
         expect={"rcnn_get_deltas_from_anchors": 0}),
    dict(name="memory_bomb", about="allocates 64 GB inside rcnn_apply_deltas_to_anchors",
         blocks={"rcnn_apply_deltas_to_anchors": "hog = bytearray(64 * 2**30)\noutput_boxes = None\n"},
         expect={"rcnn_apply_deltas_to_anchors": 0}),
    dict(name="segfault", about="dereferences a null pointer in generate_fpn_anchors",
         blocks={"generate_fpn_anchors": "import ctypes\nctypes.string_at(0)\n"},
         expect={"generate_fpn_anchors": 0}),
    # ------------------------------------------------------- wrong outputs
    dict(name="nan_output", about="anchors full of NaN",
         blocks={"generate_fpn_anchors": "anchor_boxes.append(torch.full((len(locations), 4), float('nan')))\n"},
         expect={"generate_fpn_anchors": 0}),
    dict(name="wrong_shape_iou", about="iou transposed (N, M)",
         blocks={"iou": CORRECT_IOU + "iou = iou.t()\n"},
         expect={"iou": 0}),
    dict(name="wrong_dtype_coords", about="location coordinates in float64",
         blocks={"fpn_location_coords": """
             height, width = feat_shape[-2:]
             ys = (torch.arange(height, dtype=torch.float64) + 0.5) * level_stride
             xs = (torch.arange(width, dtype=torch.float64) + 0.5) * level_stride
             gy, gx = torch.meshgrid(ys, xs, indexing="ij")
             location_coords[level_name] = torch.stack([gx.flatten(), gy.flatten()], dim=1)
             """},
         expect={"fpn_location_coords": 0}),
    dict(name="aspect_ratio_inverted", about="anchor width and height swapped",
         blocks={"generate_fpn_anchors": """
             area = (stride_scale * level_stride) ** 2
             height = math.sqrt(area / aspect_ratio)
             width = area / height
             half = locations.new_tensor([width / 2, height / 2])
             anchor_boxes.append(torch.cat([locations - half, locations + half], dim=1))
             """},
         expect={"generate_fpn_anchors": 0}),
    dict(name="deltas_background_not_ignored", about="background rows not set to -1e8 (one case of two)",
         blocks={"rcnn_get_deltas_from_anchors": """
             anchor_wh = anchors[:, 2:] - anchors[:, :2]
             anchor_ctr = anchors[:, :2] + 0.5 * anchor_wh
             gt_wh = gt_boxes[:, 2:4] - gt_boxes[:, :2]
             gt_ctr = gt_boxes[:, :2] + 0.5 * gt_wh
             deltas = torch.cat([(gt_ctr - anchor_ctr) / anchor_wh,
                                 torch.log(gt_wh.clamp(min=1e-6) / anchor_wh)], dim=1)
             """},
         expect={"rcnn_get_deltas_from_anchors": 1 / 3}),
    dict(name="proposals_not_clamped", about="predict_proposals forgets to clamp to the image",
         blocks={"rpn_predict_proposals": """
             proposals = rcnn_apply_deltas_to_anchors(level_boxreg_deltas[_batch_idx], level_anchors)
             obj_logits = level_obj_logits[_batch_idx]
             topk = min(self.pre_nms_topk, obj_logits.numel())
             topk_logits, topk_idx = obj_logits.topk(topk)
             topk_proposals = proposals[topk_idx]
             keep = torchvision.ops.nms(topk_proposals, topk_logits, self.nms_thresh)
             level_proposals_per_image.append(topk_proposals[keep[: self.post_nms_topk]])
             """},
         expect={"rpn_predict_proposals": 0}),
    dict(name="roi_align_wrong_scale", about="spatial_scale = stride instead of 1 / stride",
         blocks={"faster_rcnn_roi_align": """
             roi_feats = torchvision.ops.roi_align(level_feats, level_props, output_size=self.roi_size,
                                                   spatial_scale=float(level_stride), aligned=True)
             """},
         expect={"faster_rcnn_roi_align": 0}),
    dict(name="background_not_shifted", about="inference keeps the +1 class shift",
         blocks={"faster_rcnn_inference": """
             pred_scores, pred_classes = pred_cls_logits.softmax(dim=1).max(dim=1)
             keep = (pred_scores > test_score_thresh) & (pred_classes > 0)
             pred_boxes, pred_scores, pred_classes = pred_boxes[keep], pred_scores[keep], pred_classes[keep]
             """},
         expect={"faster_rcnn_inference": 0}),
    dict(name="rpn_matching_wrong_thresholds", about="isolation: wrong matching, losses still right",
         blocks={"rpn_forward_matching": """
             for gt_boxes_per_image in gt_boxes:
                 matched_gt_boxes.append(rcnn_match_anchors_to_gt(anchor_boxes, gt_boxes_per_image, (0.1, 0.2)))
             """},
         expect={"rpn_forward_matching": 0}),
    dict(name="rpn_anchors_wrong_scale", about="isolation: anchors of stride_scale 2 (right only in config b), "
                                                  "matching and losses still right",
         blocks={"rpn_forward_anchors": """
             pred_obj_logits, pred_boxreg_deltas = self.pred_net(feats_per_fpn_level)
             shapes = {k: v.shape for k, v in feats_per_fpn_level.items()}
             locations = get_fpn_location_coords(shapes, strides_per_fpn_level)
             anchors_per_fpn_level = generate_fpn_anchors(locations, strides_per_fpn_level, 2, self.anchor_aspect_ratios)
             """},
         expect={"rpn_forward_anchors": 1 / 3}),
    dict(name="rpn_anchors_raise", about="isolation: the anchors block of RPN.forward raises",
         blocks={"rpn_forward_anchors": "anchors_per_fpn_level = generate_fpn_anchors(feats_per_fpn_level)\n"},
         expect={"rpn_forward_anchors": 0}),
    dict(name="rpn_matching_raises", about="isolation: the matching block of RPN.forward raises",
         blocks={"rpn_forward_matching": "matched_gt_boxes = rcnn_match_anchors_to_gt(anchor_boxes)\n"},
         expect={"rpn_forward_matching": 0}),
    dict(name="roi_align_raises", about="isolation: the RoI-Align block of FasterRCNN.forward raises",
         blocks={"faster_rcnn_roi_align": "roi_feats = torchvision.ops.roi_align(level_feats)\n"},
         expect={"faster_rcnn_roi_align": 0}),
    dict(name="cls_stem_raises", about="isolation: the classifier stem raises, the head after it is right",
         blocks={"faster_rcnn_cls_stem": "cls_pred.append(nn.Conv2d(backbone.out_channels))\n"},
         expect={"faster_rcnn_cls_stem": 0}),
    dict(name="cls_head_raises", about="the classifier head raises: its own error reaches its feedback, the "
                                       "stem before it is still graded",
         blocks={"faster_rcnn_cls_head": "cls_pred += [nn.Flatten(), nn.Linear(roi_size)]\n"},
         hints={"faster_rcnn_cls_head": "TypeError"},
         expect={"faster_rcnn_cls_head": 0}),
    dict(name="frcnn_matching_raises", about="isolation: the matching loop of FasterRCNN.forward raises, the "
                                             "loss after it is right",
         blocks={"faster_rcnn_matching": "matched_gt_boxes.append(rcnn_match_anchors_to_gt(proposals_per_image))\n"},
         expect={"faster_rcnn_matching": 0}),
    dict(name="rpn_stem_raises", about="isolation: the stem block raises, the heads after it are right",
         blocks={"rpn_pred_net_stem": "stem_rpn = [nn.Conv2d(in_channels)]\n"},
         expect={"rpn_pred_net_stem": 0}),
    dict(name="stem_without_init", about="RPN stem keeps PyTorch's default init (one case of four)",
         blocks={"rpn_pred_net_stem": """
             prev_channels = in_channels
             for out_channels in stem_channels:
                 stem_rpn += [nn.Conv2d(prev_channels, out_channels, 3, padding=1), nn.ReLU()]
                 prev_channels = out_channels
             """},
         expect={"rpn_pred_net_stem": 3 / 4}),
    # ------------------------------------------------------------- hostile
    dict(name="read_fixtures", about="iou tries to read the reference outputs from disk",
         blocks={"iou": """
             import sys, pathlib
             fixtures = pathlib.Path(sys.modules["autograder.fixtures"].FIXTURE_DIR)
             iou = torch.load(fixtures / "expected.pt", weights_only=False)["iou"]
             """},
         expect={"iou": 0}, root_only=True),
    dict(name="call_reference_in_memory", about="iou calls the reference solution loaded in the grader",
         blocks={"iou": """
             import sys
             ref = [m for n, m in sys.modules.items()
                    if n.endswith("two_stage_detector") and n != "two_stage_detector" and hasattr(m, "iou")]
             iou = ref[0].iou(boxes1, boxes2)
             """},
         expect={"iou": 0}),
    dict(name="steal_other_inputs", about="looks for other checks' inputs (reference intermediates) in memory",
         blocks={"fpn_location_coords": """
             import sys
             frame, found = sys._getframe(), None
             while frame is not None and found is None:
                 for value in list(frame.f_locals.values()):
                     if isinstance(value, dict) and "generate_fpn_anchors" in value:
                         found = value["generate_fpn_anchors"]["default"]["locations"]
                 frame = frame.f_back
             location_coords[level_name] = found[level_name]
             """},
         expect={"fpn_location_coords": 0}),
    dict(name="fake_results_file", about="nms tries to write score files everywhere, then answers right",
         blocks={"nms": """
             import json, os
             for folder in (os.getcwd(), os.path.dirname(os.getcwd()), "/autograder/results",
                            os.environ.get("AUTOGRADER_TEST_RESULTS_DIR", "/nonexistent")):
                 try:
                     with open(os.path.join(folder, "results.json"), "w") as f:
                         json.dump({"score": 1000, "tests": []}, f)
                 except OSError:
                     pass
             order = scores.argsort(descending=True)
             keep_list = []
             suppressed = torch.zeros(len(boxes), dtype=torch.bool)
             from torchvision.ops import box_iou as _pairwise
             ious = _pairwise(boxes[order], boxes[order])
             for i in range(len(order)):
                 if suppressed[i]:
                     continue
                 keep_list.append(order[i])
                 suppressed |= ious[i] > iou_threshold
             keep = torch.stack(keep_list)
             """},
         prepend={"common.py": "import torchvision\n"},
         expect={}),
    dict(name="monkeypatch_torch", about="patches torch's comparisons at import, iou wrong",
         prepend={"two_stage_detector.py": (
             "import torch as _t\n_t.allclose = lambda *a, **k: True\n_t.isclose = lambda a, b, **k: _t.ones_like(a, dtype=_t.bool)\n"
             "_t.testing.assert_close = lambda *a, **k: None\n")},
         blocks={"iou": "iou = torch.zeros(len(boxes1), len(boxes2))\n"},
         expect={"iou": 0}),
    dict(name="monkeypatch_grader", about="patches the grader's modules it can see, iou wrong",
         prepend={"two_stage_detector.py": (
             "import sys as _s\n"
             "for _n, _m in list(_s.modules.items()):\n"
             "    if _n.startswith('autograder'):\n"
             "        for _a in ('compare', 'matches', 'score_check', 'compare_tensors'):\n"
             "            if hasattr(_m, _a):\n"
             "                setattr(_m, _a, lambda *a, **k: [])\n")},
         blocks={"iou": "iou = torch.zeros(len(boxes1), len(boxes2))\n"},
         expect={"iou": 0}),
    dict(name="kill_grader", about="iou kills its parent process (the worker)",
         blocks={"iou": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + CORRECT_IOU},
         expect={"iou": 0}, root_only=True),
    dict(name="print_flood", about="floods stdout/stderr and forges protocol lines, answers right",
         blocks={"iou": textwrap.dedent("""
             import sys, os
             for fd in range(1, 20):
                 try:
                     os.write(fd, b'{"id": 0, "status": "ok", "result": "AAAA"}\\n')
                 except OSError:
                     pass
             print("x" * 3_000_000)
             print("y" * 3_000_000, file=sys.stderr)
             """) + CORRECT_IOU},
         expect={}),
    dict(name="background_process", about="leaves a process running, answers right",
         blocks={"rcnn_apply_deltas_to_anchors": """
             import subprocess
             subprocess.Popen(["sleep", "120"], start_new_session=True)
             anchor_wh = anchors[:, 2:] - anchors[:, :2]
             anchor_ctr = anchors[:, :2] + 0.5 * anchor_wh
             ctr = anchor_ctr + deltas[:, :2] * anchor_wh
             half_wh = 0.5 * anchor_wh * torch.exp(deltas[:, 2:])
             output_boxes = torch.cat([ctr - half_wh, ctr + half_wh], dim=1)
             """},
         expect={}),
]

# Correct solutions written differently from the reference: full marks.
DIFFERENT_BUT_CORRECT = dict(
    name="different_but_correct",
    blocks={
        "fpn_init": """
            # Output convs first, other names, coarse-to-fine order.
            for c_name, c_shape in reversed(dummy_out_shapes):
                self.fpn_params["smooth_" + c_name] = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding="same")
            for c_name, c_shape in dummy_out_shapes:
                self.fpn_params["inner_" + c_name] = nn.Conv2d(c_shape[1], out_channels, kernel_size=1)
            """,
        "fpn_forward": """
            c3, c4, c5 = backbone_feats["c3"], backbone_feats["c4"], backbone_feats["c5"]
            m5 = self.fpn_params["inner_c5"](c5)
            m4 = self.fpn_params["inner_c4"](c4) + F.interpolate(m5, scale_factor=2)
            m3 = self.fpn_params["inner_c3"](c3) + F.interpolate(m4, scale_factor=2)
            fpn_feats = {"p3": self.fpn_params["smooth_c3"](m3),
                         "p4": self.fpn_params["smooth_c4"](m4),
                         "p5": self.fpn_params["smooth_c5"](m5)}
            """,
        "fpn_location_coords": """
            H, W = feat_shape[2], feat_shape[3]
            idx = torch.arange(H * W, device=device)
            xc = (idx % W).to(dtype) * level_stride + level_stride / 2
            yc = torch.div(idx, W, rounding_mode="floor").to(dtype) * level_stride + level_stride / 2
            location_coords[level_name] = torch.stack((xc, yc), dim=-1)
            """,
        "nms": """
            order = torch.argsort(scores, descending=True)
            kept = []
            while order.numel() > 0:
                i = order[0]
                kept.append(i)
                if order.numel() == 1:
                    break
                rest = order[1:]
                xx1 = torch.maximum(boxes[i, 0], boxes[rest, 0])
                yy1 = torch.maximum(boxes[i, 1], boxes[rest, 1])
                xx2 = torch.minimum(boxes[i, 2], boxes[rest, 2])
                yy2 = torch.minimum(boxes[i, 3], boxes[rest, 3])
                inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
                area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
                area_r = (boxes[rest, 2] - boxes[rest, 0]) * (boxes[rest, 3] - boxes[rest, 1])
                order = rest[inter / (area_i + area_r - inter) <= iou_threshold]
            keep = torch.stack(kept).long()
            """,
        "rpn_pred_net_stem": """
            channels = [in_channels] + list(stem_channels)
            for c_in, c_out in zip(channels[:-1], channels[1:]):
                conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1)
                torch.nn.init.normal_(conv.weight, 0, 0.01)
                torch.nn.init.constant_(conv.bias, 0)
                stem_rpn.append(conv)
                stem_rpn.append(nn.ReLU(inplace=True))
            prev_channels = channels[-1]  # the heads block reads it
            """,
        "rpn_pred_net_forward": """
            for name in feats_per_fpn_level:
                x = self.stem_rpn(feats_per_fpn_level[name])
                n = x.shape[0]
                object_logits[name] = self.pred_obj(x).permute(0, 2, 3, 1).flatten(1)
                boxreg_deltas[name] = self.pred_box(x).permute(0, 2, 3, 1).reshape(n, -1, 4)
            """,
        "generate_fpn_anchors": """
            size = stride_scale * level_stride
            h = size * math.sqrt(aspect_ratio)
            w = size / math.sqrt(aspect_ratio)
            xc, yc = locations[:, 0], locations[:, 1]
            anchor_boxes.append(torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], dim=1))
            """,
        "iou": """
            x1 = torch.maximum(boxes1[:, 0].unsqueeze(1), boxes2[:, 0].unsqueeze(0))
            y1 = torch.maximum(boxes1[:, 1].unsqueeze(1), boxes2[:, 1].unsqueeze(0))
            x2 = torch.minimum(boxes1[:, 2].unsqueeze(1), boxes2[:, 2].unsqueeze(0))
            y2 = torch.minimum(boxes1[:, 3].unsqueeze(1), boxes2[:, 3].unsqueeze(0))
            inter = torch.clamp(x2 - x1, min=0) * torch.clamp(y2 - y1, min=0)
            a1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
            a2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
            iou = inter / (a1.unsqueeze(1) + a2.unsqueeze(0) - inter)
            """,
        "rcnn_get_deltas_from_anchors": """
            deltas = torch.full((len(anchors), 4), -1e8, dtype=anchors.dtype, device=anchors.device)
            fg = gt_boxes[:, 0] >= 0
            a, g = anchors[fg], gt_boxes[fg, :4]
            aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
            gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
            deltas[fg, 0] = ((g[:, 0] + g[:, 2]) / 2 - (a[:, 0] + a[:, 2]) / 2) / aw
            deltas[fg, 1] = ((g[:, 1] + g[:, 3]) / 2 - (a[:, 1] + a[:, 3]) / 2) / ah
            deltas[fg, 2] = torch.log(gw / aw)
            deltas[fg, 3] = torch.log(gh / ah)
            """,
        "rpn_forward_loss": """
            fg_idx, bg_idx = sample_rpn_training(matched_gt_boxes, self.batch_size_per_image * num_images, 0.5)
            idx = torch.cat([bg_idx, fg_idx])  # other order: same sums
            gt = matched_gt_boxes[idx]
            target_deltas = rcnn_get_deltas_from_anchors(anchor_boxes[idx], gt[:, :4])
            loss_obj = F.binary_cross_entropy_with_logits(
                pred_obj_logits[idx], (gt[:, 4] >= 0).float(), reduction="none")
            is_fg = (target_deltas != -1e8).float()
            loss_box = (pred_boxreg_deltas[idx] - target_deltas).abs() * is_fg
            """,
        "rpn_forward_matching": """
            matched_gt_boxes = torch.stack([rcnn_match_anchors_to_gt(anchor_boxes, g, self.anchor_iou_thresholds)
                                            for g in gt_boxes])  # stacked here already
            """,
        "faster_rcnn_matching": """
            matched_gt_boxes.append(rcnn_match_anchors_to_gt(proposals_per_image, gt_boxes_per_image, [0.5, 0.5]))
            """,
        "faster_rcnn_loss": """
            fg_idx, bg_idx = sample_rpn_training(matched_gt_boxes, self.batch_size_per_image * num_images, 0.25)
            idx = torch.cat([bg_idx, fg_idx])
            loss_cls = F.cross_entropy(pred_cls_logits[idx], (matched_gt_boxes[idx, 4] + 1).to(torch.long))
            """,
        "faster_rcnn_inference": """
            probs = F.softmax(pred_cls_logits, dim=-1)
            pred_scores, pred_classes = torch.max(probs, dim=-1)
            pred_classes = pred_classes - 1
            mask = (pred_classes >= 0) & (pred_scores > test_score_thresh)
            pred_boxes, pred_scores, pred_classes = pred_boxes[mask], pred_scores[mask], pred_classes[mask]
            """,
    },
    expect={},
)

_BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*### END SOLUTION\s*$")


def rewrite(text: str, names, blocks) -> str:
    """Replace the TODO blocks named in `blocks`; drop all markers."""
    out, block, indent, skipping = [], -1, "", False
    for line in text.splitlines(keepends=True):
        begin = _BEGIN.match(line)
        if begin:
            block += 1
            indent = begin.group(1)
            name = names[block]
            if name in blocks:
                body = textwrap.dedent(blocks[name]).strip("\n") + "\n"
                out += [indent + l if l.strip() else l for l in body.splitlines(keepends=True)]
                skipping = True
            continue
        if _END.match(line):
            skipping = False
            continue
        if not skipping:
            out.append(line)
    assert block + 1 == len(names), f"expected {len(names)} solution blocks, found {block + 1}"
    return "".join(out)


def build(case: dict, reference_dir: Path, out_dir: Path) -> Path:
    """Write the submission of `case` into `out_dir` (the two graded files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, names in BLOCK_ORDER.items():
        text = (Path(reference_dir) / file).read_text()
        text = rewrite(text, names, case.get("blocks", {}))
        text = case.get("prepend", {}).get(file, "") + text
        (out_dir / file).write_text(text)
    return out_dir
