"""
Submissions written against the course's own starters (`starters/course/`,
the course's original provided code that the seed reproduces, and
`starters/errata/`, its later errata starter): what students of the course
hand in, with their layout, habits and mistakes.

`STUDENT` is a correct solution in a student's own style (not the kit's
reference): the RPN heads written over the placeholder lines, a helper
function, a method added to a provided class. `build(case, out_dir)` fills
the starter's blocks by a plain text rule that does not use the grader's
block finder: the `pass` after the k-th `# Replace "pass" statement with
your code` line of a file holds the k-th TODO of that file.

A case: `starter` ("course" or "errata"), `blocks` (check name -> code
replacing the student's block), `edits` ([(file, old, new)] text edits of
the filled files), `prepend` (file -> top-level code), `expect` (check ->
fraction of its points, all others full), `hints` (check -> text its
feedback must contain), `stood_in` (statements the report must list as
stood in), `carried` (what the report must list as carried over).
"""
import re
import textwrap
from pathlib import Path

from corpus import BLOCK_ORDER

STARTERS = Path(__file__).resolve().parent / "starters"
MARKER = re.compile(r'^(\s*)# Replace "pass" statement with your code\s*$')

STUDENT = {
    # ------------------------------------------------------------ common.py
    "fpn_init": """
        for name, shape in dummy_out_shapes:
            self.fpn_params["l" + name[1]] = nn.Conv2d(shape[1], out_channels, kernel_size=1, stride=1, padding=0)
        for name, shape in dummy_out_shapes:
            self.fpn_params["p" + name[1]] = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        """,
    "fpn_forward": """
        l3 = self.fpn_params["l3"](backbone_feats["c3"])
        l4 = self.fpn_params["l4"](backbone_feats["c4"])
        l5 = self.fpn_params["l5"](backbone_feats["c5"])
        m5 = l5
        m4 = l4 + F.interpolate(m5, size=(l4.shape[2], l4.shape[3]))
        m3 = l3 + F.interpolate(m4, size=(l3.shape[2], l3.shape[3]))
        fpn_feats["p3"] = self.fpn_params["p3"](m3)
        fpn_feats["p4"] = self.fpn_params["p4"](m4)
        fpn_feats["p5"] = self.fpn_params["p5"](m5)
        """,
    "fpn_location_coords": """
        H, W = feat_shape[2], feat_shape[3]
        shift_x = (torch.arange(W, dtype=dtype, device=device) + 0.5) * level_stride
        shift_y = (torch.arange(H, dtype=dtype, device=device) + 0.5) * level_stride
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        location_coords[level_name] = torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)
        """,
    "nms": """
        x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        areas = (x2 - x1) * (y2 - y1)
        order = scores.argsort(descending=True)
        keep = []
        while order.numel() > 0:
            i = order[0].item()
            keep.append(i)
            if order.numel() == 1:
                break
            rest = order[1:]
            xx1 = x1[rest].clamp(min=x1[i].item())
            yy1 = y1[rest].clamp(min=y1[i].item())
            xx2 = x2[rest].clamp(max=x2[i].item())
            yy2 = y2[rest].clamp(max=y2[i].item())
            inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
            ovr = inter / (areas[i] + areas[rest] - inter)
            order = rest[ovr <= iou_threshold]
        keep = torch.tensor(keep, dtype=torch.long, device=boxes.device)
        """,
    # ------------------------------------------------- two_stage_detector.py
    "rpn_pred_net_stem": """
        in_ch = in_channels
        for out_ch in stem_channels:
            conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1)
            torch.nn.init.normal_(conv.weight, mean=0, std=0.01)
            torch.nn.init.constant_(conv.bias, 0)
            stem_rpn.append(conv)
            stem_rpn.append(nn.ReLU())
            in_ch = out_ch
        """,
    # The heads are written over the placeholder lines (see HEADS_EDIT); the
    # block itself keeps the released `pass`.
    "rpn_pred_net_heads": "pass\n",
    "rpn_pred_net_forward": """
        for level_name, feat in feats_per_fpn_level.items():
            out = self.stem_rpn(feat)
            B = out.shape[0]
            object_logits[level_name] = self.pred_obj(out).permute(0, 2, 3, 1).reshape(B, -1)
            boxreg_deltas[level_name] = self.pred_box(out).permute(0, 2, 3, 1).reshape(B, -1, 4)
        """,
    "generate_fpn_anchors": """
        area = (stride_scale * level_stride) ** 2
        new_width = (area / aspect_ratio) ** 0.5
        new_height = area / new_width
        xc, yc = locations[:, 0], locations[:, 1]
        anchor_boxes.append(torch.stack(
            [xc - new_width / 2, yc - new_height / 2, xc + new_width / 2, yc + new_height / 2], dim=1))
        """,
    "iou": """
        area1 = box_area(boxes1)  # a helper of mine, above
        area2 = box_area(boxes2)
        lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
        rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, :, 0] * wh[:, :, 1]
        iou = inter / (area1[:, None] + area2 - inter)
        """,
    "rcnn_get_deltas_from_anchors": """
        deltas = torch.zeros_like(anchors)
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
        gw, gh = gt_boxes[:, 2] - gt_boxes[:, 0], gt_boxes[:, 3] - gt_boxes[:, 1]
        gx, gy = gt_boxes[:, 0] + 0.5 * gw, gt_boxes[:, 1] + 0.5 * gh
        deltas[:, 0] = (gx - ax) / aw
        deltas[:, 1] = (gy - ay) / ah
        deltas[:, 2] = torch.log(gw / aw)
        deltas[:, 3] = torch.log(gh / ah)
        ignore = (gt_boxes[:, :4] == -1).all(dim=1) | (gt_boxes[:, :4] == -1e8).all(dim=1)
        deltas[ignore] = -1e8
        """,
    "rcnn_apply_deltas_to_anchors": """
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
        cx, cy = ax + deltas[:, 0] * aw, ay + deltas[:, 1] * ah
        w, h = aw * torch.exp(deltas[:, 2]), ah * torch.exp(deltas[:, 3])
        output_boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
        """,
    "rpn_forward_anchors": """
        pred_obj_logits, pred_boxreg_deltas = self.pred_net(feats_per_fpn_level)
        fpn_shapes = {k: v.shape for k, v in feats_per_fpn_level.items()}
        locations = get_fpn_location_coords(
            fpn_shapes, strides_per_fpn_level, device=feats_per_fpn_level["p3"].device
        )
        anchors_per_fpn_level = generate_fpn_anchors(
            locations, strides_per_fpn_level, self.anchor_stride_scale, self.anchor_aspect_ratios
        )
        """,
    "rpn_forward_matching": """
        matched_gt_boxes = self._match_each_image(anchor_boxes, gt_boxes)  # a method of mine
        """,
    "rpn_forward_loss": """
        fg_idx, bg_idx = sample_rpn_training(matched_gt_boxes, self.batch_size_per_image * num_images, 0.5)
        idx = torch.cat((fg_idx, bg_idx))
        target_deltas = rcnn_get_deltas_from_anchors(anchor_boxes[idx], matched_gt_boxes[idx, :4])
        target_obj = (matched_gt_boxes[idx, 4] >= 0).float()
        loss_obj = F.binary_cross_entropy_with_logits(pred_obj_logits[idx], target_obj, reduction="none")
        loss_box = F.l1_loss(pred_boxreg_deltas[idx], target_deltas, reduction="none")
        loss_box[target_deltas == -1e8] = 0
        """,
    "rpn_predict_proposals": """
        boxes = rcnn_apply_deltas_to_anchors(level_boxreg_deltas[_batch_idx], level_anchors)
        W, H = image_size
        boxes[:, 0].clamp_(min=0, max=W)
        boxes[:, 1].clamp_(min=0, max=H)
        boxes[:, 2].clamp_(min=0, max=W)
        boxes[:, 3].clamp_(min=0, max=H)
        scores = level_obj_logits[_batch_idx]
        k = min(self.pre_nms_topk, scores.shape[0])
        top_scores, top_idx = torch.topk(scores, k)
        top_boxes = boxes[top_idx]
        keep = torchvision.ops.nms(top_boxes, top_scores, self.nms_thresh)[: self.post_nms_topk]
        level_proposals_per_image.append(top_boxes[keep])
        """,
    "faster_rcnn_cls_stem": """
        prev = self.backbone.out_channels
        for ch in stem_channels:
            conv = nn.Conv2d(prev, ch, 3, 1, 1)
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.constant_(conv.bias, 0)
            cls_pred.extend([conv, nn.ReLU()])
            prev = ch
        """,
    "faster_rcnn_cls_head": """
        cls_pred.append(nn.Flatten())
        cls_pred.append(nn.Linear(stem_channels[-1] * roi_size[0] * roi_size[1], num_classes + 1))
        """,
    "faster_rcnn_roi_align": """
        roi_feats = torchvision.ops.roi_align(
            level_feats, level_props, self.roi_size, spatial_scale=1 / level_stride, aligned=True
        )
        """,
    "faster_rcnn_matching": """
        matched_gt_boxes.append(rcnn_match_anchors_to_gt(proposals_per_image, gt_boxes_per_image, (0.5, 0.5)))
        """,
    "faster_rcnn_loss": """
        fg_idx, bg_idx = sample_rpn_training(matched_gt_boxes, self.batch_size_per_image * num_images, 0.25)
        idx = torch.cat([fg_idx, bg_idx])
        labels = (matched_gt_boxes[idx, 4] + 1).long()
        loss_cls = F.cross_entropy(pred_cls_logits[idx], labels)
        """,
    "faster_rcnn_inference": """
        probs = F.softmax(pred_cls_logits, dim=1)
        pred_scores, pred_classes = probs.max(dim=1)
        keep = (pred_scores > test_score_thresh) & (pred_classes != 0)
        pred_boxes = pred_boxes[keep]
        pred_scores = pred_scores[keep]
        pred_classes = pred_classes[keep] - 1
        """,
}

# The errata starter's predict_proposals TODO: per-level dicts of one image.
ERRATA_PROPOSALS = """
    boxes = rcnn_apply_deltas_to_anchors(level_boxreg_deltas, level_anchors)
    W, H = image_size
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
    k = min(self.pre_nms_topk, level_obj_logits.shape[0])
    top_scores, top_idx = level_obj_logits.topk(k)
    top_boxes = boxes[top_idx]
    keep = torchvision.ops.nms(top_boxes, top_scores, self.nms_thresh)
    proposals_per_fpn_level_per_image[level_name] = top_boxes[keep]
    scores_per_fpn_level_per_image[level_name] = top_scores[keep].sigmoid()
    """

TSD = "two_stage_detector.py"
HEADS_EDIT = (TSD, """        self.pred_obj = None  # Objectness conv
        self.pred_box = None  # Box regression conv
""", """        self.pred_obj = nn.Conv2d(stem_channels[-1], num_anchors, kernel_size=1)  # Objectness conv
        self.pred_box = nn.Conv2d(stem_channels[-1], 4 * num_anchors, kernel_size=1)  # Box regression conv
""")
HELPER_EDIT = (TSD, "@torch.no_grad()\ndef iou(", '''def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of `(N, 4)` XYXY boxes (my helper)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


@torch.no_grad()
def iou(''')
METHOD_EDIT = (TSD, """        return torch.cat(list(dict_with_fpn_levels.values()), dim=dim)


class FasterRCNN(nn.Module):""", """        return torch.cat(list(dict_with_fpn_levels.values()), dim=dim)

    def _match_each_image(self, anchor_boxes, gt_boxes):
        # My helper: one matched (HWA, 5) tensor per image.
        return [rcnn_match_anchors_to_gt(anchor_boxes, g, self.anchor_iou_thresholds) for g in gt_boxes]


class FasterRCNN(nn.Module):""")
STUDENT_EDITS = [HEADS_EDIT, HELPER_EDIT, METHOD_EDIT]


def fill(text: str, blocks: dict, names) -> str:
    """Put `blocks[name]` in place of the `pass` after the marker of each TODO."""
    lines = text.splitlines(keepends=True)
    out, k, pending = [], 0, None
    for line in lines:
        m = MARKER.match(line)
        if m:
            pending = (m.group(1), names[k])
            k += 1
            out.append(line)
            continue
        if pending is not None and line.strip() == "pass" and line.startswith(pending[0] + "pass"):
            indent, name = pending
            code = blocks.get(name, "pass\n")
            body = textwrap.dedent(code).strip("\n") + "\n"
            out += [indent + l if l.strip() else l for l in body.splitlines(keepends=True)]
            pending = None
            continue
        out.append(line)
    assert k == len(names), f"expected {len(names)} TODO markers, found {k}"
    return "".join(out)


def build(case: dict, out_dir: Path) -> Path:
    """Write the submission of `case` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    starter = case.get("starter", "course")
    blocks = dict(STUDENT)
    if starter == "errata":
        blocks["rpn_predict_proposals"] = ERRATA_PROPOSALS
    blocks.update(case.get("blocks", {}))
    for file, names in BLOCK_ORDER.items():
        src = STARTERS / (starter if file == TSD else "course") / file
        text = fill(src.read_text(), blocks, names)
        for f, old, new in STUDENT_EDITS + case.get("edits", []):
            if f == file:
                assert old in text, (case.get("name"), old[:60])
                text = text.replace(old, new, 1)
        text = case.get("prepend", {}).get(file, "") + text
        (out_dir / file).write_text(text)
    return out_dir


UNUSED_IMPORTS = """import os
import eecs598
from eecs598.utils import reset_seed
from one_stage_detector import FCOSPredictionNetwork, FCOS
import joblib
from torchvision.transforms import functional_tensor
import turtle

"""

CASES = [
    # ---------------------------------------------------- drop-in unchanged
    dict(name="course_student", about="a correct course submission: course starter, course common.py",
         expect={}),
    dict(name="course_unused_imports",
         about="imports the course's helper package, a previous assignment, joblib, a removed torchvision "
               "module: none is used by graded code",
         prepend={TSD: UNUSED_IMPORTS, "common.py": "import joblib\nfrom eecs598 import Solver\n"},
         stood_in=["import eecs598", "from eecs598.utils import reset_seed",
                   "from one_stage_detector import FCOSPredictionNetwork, FCOS", "import joblib",
                   "from torchvision.transforms import functional_tensor", "from eecs598 import Solver"],
         expect={}),
    dict(name="course_used_import", about="iou uses a helper of the course's package, which the grader lacks",
         prepend={TSD: "from eecs598.utils import box_iou_helper\n"},
         blocks={"iou": "iou = box_iou_helper(boxes1, boxes2)\n"},
         stood_in=["from eecs598.utils import box_iou_helper"],
         hints={"iou": "`box_iou_helper` is not available when grading"},
         expect={"iou": 0}),
    dict(name="errata_student", about="a correct submission against the errata starter",
         starter="errata", expect={}),
    dict(name="errata_proposals_not_clamped", about="errata predict_proposals forgets to clamp",
         starter="errata",
         blocks={"rpn_predict_proposals": ERRATA_PROPOSALS.replace(
             "    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)\n    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)\n", "")},
         hints={"rpn_predict_proposals": "clamp x to [0, width]"},
         expect={"rpn_predict_proposals": 0}),
    dict(name="course_markers_deleted", about="the student deleted the 'Replace \"pass\"' comments of iou "
                                              "and of the RPN heads",
         edits=[(TSD, '    ##########################################################################\n'
                      '    # TODO: Implement the IoU function here.\n'
                      '    ##########################################################################\n'
                      '    # Replace "pass" statement with your code\n',
                 '    # my IoU\n'),
                (TSD, '\n        # Replace "pass" statement with your code\n        pass\n'
                      '        ######################################################################\n'
                      '        #                           END OF YOUR CODE                         #\n'
                      '        ######################################################################\n\n'
                      '    def forward(self, feats_per_fpn_level: TensorDict) -> List[TensorDict]:',
                 '\n    def forward(self, feats_per_fpn_level: TensorDict) -> List[TensorDict]:')],
         expect={}),
    # ------------------------------------------------- legitimate variants
    dict(name="course_stem_from_rpn", about="classifier stem reads its input channels from the RPN",
         blocks={"faster_rcnn_cls_stem": STUDENT["faster_rcnn_cls_stem"].replace(
             "prev = self.backbone.out_channels", "prev = rpn.pred_net.stem_rpn[0].in_channels")},
         expect={}),
    dict(name="course_bilinear_fpn", about="FPN merge with bilinear upsampling",
         blocks={"fpn_forward": STUDENT["fpn_forward"].replace(
             "size=(l4.shape[2], l4.shape[3]))", "size=(l4.shape[2], l4.shape[3]), mode=\"bilinear\")").replace(
             "size=(l3.shape[2], l3.shape[3]))", "size=(l3.shape[2], l3.shape[3]), mode=\"bilinear\", "
                                                "align_corners=False)")},
         expect={}),
    dict(name="course_clamp_size_minus_1", about="proposals clamped to [0, size - 1] (py-faster-rcnn)",
         blocks={"rpn_predict_proposals": STUDENT["rpn_predict_proposals"].replace(
             "W, H = image_size", "W, H = image_size[0] - 1, image_size[1] - 1")},
         expect={}),
    dict(name="course_roi_align_sampling_ratio", about="RoI-Align with sampling_ratio=2, as torchvision's "
                                                       "MultiScaleRoIAlign",
         blocks={"faster_rcnn_roi_align": STUDENT["faster_rcnn_roi_align"].replace(
             "aligned=True", "sampling_ratio=2, aligned=True")},
         expect={}),
    dict(name="course_own_sampler", about="both losses sample with their own torch.randperm",
         blocks={"rpn_forward_loss": """
             labels = matched_gt_boxes[:, 4]
             fg = torch.where(labels >= 0)[0]
             bg = torch.where(labels == -1)[0]
             total = self.batch_size_per_image * num_images
             n_fg = min(len(fg), total // 2)
             fg = fg[torch.randperm(len(fg), device=fg.device)[:n_fg]]
             bg = bg[torch.randperm(len(bg), device=bg.device)[: total - n_fg]]
             idx = torch.cat([fg, bg])
             target_deltas = rcnn_get_deltas_from_anchors(anchor_boxes[idx], matched_gt_boxes[idx, :4])
             loss_obj = F.binary_cross_entropy_with_logits(
                 pred_obj_logits[idx], (labels[idx] >= 0).float(), reduction="none")
             loss_box = (pred_boxreg_deltas[idx] - target_deltas).abs()
             loss_box[target_deltas == -1e8] = 0
             """,
                 "faster_rcnn_loss": """
             labels = matched_gt_boxes[:, 4]
             fg = (labels >= 0).nonzero().flatten()
             bg = (labels == -1).nonzero().flatten()
             total = self.batch_size_per_image * num_images
             n_fg = min(fg.numel(), int(total * 0.25))
             fg = fg[torch.randperm(fg.numel())[:n_fg]]
             bg = bg[torch.randperm(bg.numel())[: total - n_fg]]
             sel = torch.cat([fg, bg])
             loss_cls = F.cross_entropy(pred_cls_logits[sel], labels[sel].long() + 1)
             """},
         expect={}),
    dict(name="course_nms_ties_unstable", about="NMS that takes tied scores in another order than torchvision",
         blocks={"nms": STUDENT["nms"].replace("order = scores.argsort(descending=True)",
                                               "order = torch.flip(torch.sort(scores, stable=True)[1], dims=[0])")},
         expect={}),
    # ------------------------------------------------------- hard-coding
    dict(name="course_foreground_gt_0", about="RPN objectness targets: class > 0 instead of >= 0",
         blocks={"rpn_forward_loss": STUDENT["rpn_forward_loss"].replace(
             "target_obj = (matched_gt_boxes[idx, 4] >= 0).float()", "target_obj = (matched_gt_boxes[idx, 4] > 0).float()")},
         hints={"rpn_forward_loss": "class >= 0, not > 0"},
         expect={"rpn_forward_loss": 3 / 4}),
    dict(name="course_hardcoded_thresholds", about="RPN matching with IoU thresholds (0.3, 0.6) written out",
         blocks={"rpn_forward_matching": """
             for i in range(num_images):
                 matched_gt_boxes.append(rcnn_match_anchors_to_gt(anchor_boxes, gt_boxes[i], (0.3, 0.6)))
             """},
         hints={"rpn_forward_matching": "self.anchor_iou_thresholds"},
         expect={"rpn_forward_matching": 1 / 2}),
    dict(name="course_hardcoded_anchor_settings", about="RPN anchors with stride_scale 4 and ratios [0.5, 1, 2] "
                                                        "written out",
         blocks={"rpn_forward_anchors": STUDENT["rpn_forward_anchors"].replace(
             "self.anchor_stride_scale, self.anchor_aspect_ratios", "4, [0.5, 1.0, 2.0]")},
         hints={"rpn_forward_anchors": "self.anchor_stride_scale"},
         expect={"rpn_forward_anchors": 1 / 3}),
    dict(name="course_hardcoded_roi_size", about="7 * 7 in the classifier head and (7, 7) in RoI-Align",
         blocks={"faster_rcnn_cls_head": STUDENT["faster_rcnn_cls_head"].replace(
             "roi_size[0] * roi_size[1]", "7 * 7"),
             "faster_rcnn_roi_align": STUDENT["faster_rcnn_roi_align"].replace("self.roi_size", "(7, 7)")},
         hints={"faster_rcnn_cls_head": "not 7 * 7", "faster_rcnn_roi_align": "not (7, 7)"},
         expect={"faster_rcnn_cls_head": 1 / 2, "faster_rcnn_roi_align": 1 / 2}),
    dict(name="course_cpu_tensors", about="coordinates, anchors and IoU built on the CPU whatever the input device",
         blocks={"fpn_location_coords": STUDENT["fpn_location_coords"].replace(", device=device", ""),
                 "fpn_forward": STUDENT["fpn_forward"].replace(
                     "m5 = l5", "m5 = l5 + torch.zeros(l5.shape)  # on the CPU"),
                 "rpn_forward_anchors": STUDENT["rpn_forward_anchors"].replace(
                     ", device=feats_per_fpn_level[\"p3\"].device", ""),
                 "generate_fpn_anchors": """
                     area = (stride_scale * level_stride) ** 2
                     w = math.sqrt(area / aspect_ratio)
                     h = area / w
                     half = torch.tensor([w / 2, h / 2, w / 2, h / 2])
                     sign = torch.tensor([-1.0, -1.0, 1.0, 1.0])
                     anchor_boxes.append(locations.repeat(1, 2) + sign * half)
                     """,
                 "iou": """
                     M, N = boxes1.shape[0], boxes2.shape[0]
                     iou = torch.zeros(M, N)
                     area1 = box_area(boxes1)
                     area2 = box_area(boxes2)
                     lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
                     rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
                     wh = (rb - lt).clamp(min=0)
                     inter = wh[:, :, 0] * wh[:, :, 1]
                     iou += inter / (area1[:, None] + area2 - inter)
                     """},
         hints={"fpn_location_coords": "meta device", "generate_fpn_anchors": "meta device",
                "fpn_forward": "meta device",
                "iou": "meta device", "rpn_forward_anchors": "meta device"},
         expect={"fpn_location_coords": 3 / 4, "fpn_forward": 2 / 3, "rpn_forward_anchors": 2 / 3,
                 "generate_fpn_anchors": 3 / 4,
                 "iou": 3 / 4}),
    # ------------------------------------------------------ named mistakes
    dict(name="course_fpn_upsamples_output", about="FPN upsamples the 3x3 output instead of the merged map",
         blocks={"fpn_forward": """
             p5 = self.fpn_params["p5"](self.fpn_params["l5"](backbone_feats["c5"]))
             p4 = self.fpn_params["p4"](self.fpn_params["l4"](backbone_feats["c4"]) + F.interpolate(p5, scale_factor=2))
             p3 = self.fpn_params["p3"](self.fpn_params["l3"](backbone_feats["c3"]) + F.interpolate(p4, scale_factor=2))
             fpn_feats = {"p3": p3, "p4": p4, "p5": p5}
             """},
         hints={"fpn_forward": "upsamples the output of the 3x3 conv"},
         expect={"fpn_forward": 0}),
    dict(name="course_fpn_no_output_conv", about="FPN creates the 3x3 convs but never applies them",
         blocks={"fpn_forward": """
             m5 = self.fpn_params["l5"](backbone_feats["c5"])
             m4 = self.fpn_params["l4"](backbone_feats["c4"]) + F.interpolate(m5, scale_factor=2)
             m3 = self.fpn_params["l3"](backbone_feats["c3"]) + F.interpolate(m4, scale_factor=2)
             fpn_feats = {"p3": m3, "p4": m4, "p5": m5}
             """},
         hints={"fpn_forward": "3x3 output convs are not applied"},
         expect={"fpn_forward": 0}),
    dict(name="course_fpn_output_before_merge", about="FPN applies the 3x3 conv before merging",
         blocks={"fpn_forward": """
             x5 = self.fpn_params["p5"](self.fpn_params["l5"](backbone_feats["c5"]))
             x4 = self.fpn_params["p4"](self.fpn_params["l4"](backbone_feats["c4"])) + F.interpolate(x5, scale_factor=2)
             x3 = self.fpn_params["p3"](self.fpn_params["l3"](backbone_feats["c3"])) + F.interpolate(x4, scale_factor=2)
             fpn_feats = {"p3": x3, "p4": x4, "p5": x5}
             """},
         hints={"fpn_forward": "applied before merging"},
         expect={"fpn_forward": 0}),
    dict(name="course_fpn_missing_output_convs", about="FPN without the three 3x3 output convs",
         blocks={"fpn_init": """
             for name, shape in dummy_out_shapes:
                 self.fpn_params["l" + name[1]] = nn.Conv2d(shape[1], out_channels, kernel_size=1)
             """,
                 "fpn_forward": """
             m5 = self.fpn_params["l5"](backbone_feats["c5"])
             m4 = self.fpn_params["l4"](backbone_feats["c4"]) + F.interpolate(m5, scale_factor=2)
             m3 = self.fpn_params["l3"](backbone_feats["c3"]) + F.interpolate(m4, scale_factor=2)
             fpn_feats = {"p3": m3, "p4": m4, "p5": m5}
             """},
         hints={"fpn_init": "add THREE 3x3 output convs", "fpn_forward": "three 3x3 output convs"},
         expect={"fpn_init": 0, "fpn_forward": 0}),
    dict(name="course_coords_column_major", about="location co-ordinates in column-major order",
         blocks={"fpn_location_coords": """
             H, W = feat_shape[2], feat_shape[3]
             xs = (torch.arange(W, dtype=dtype, device=device) + 0.5) * level_stride
             ys = (torch.arange(H, dtype=dtype, device=device) + 0.5) * level_stride
             xx, yy = torch.meshgrid(xs, ys, indexing="ij")
             location_coords[level_name] = torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)
             """},
         hints={"fpn_location_coords": "column-major order"},
         expect={"fpn_location_coords": 0}),
    dict(name="course_sample_per_batch", about="RPN loss samples batch_size_per_image anchors for the whole batch",
         blocks={"rpn_forward_loss": STUDENT["rpn_forward_loss"].replace(
             "self.batch_size_per_image * num_images, 0.5", "self.batch_size_per_image, 0.5")},
         hints={"rpn_forward_loss": "per image"},
         expect={"rpn_forward_loss": 0}),
    dict(name="course_loss_mean_then_divided", about="RPN losses with reduction='mean', divided again by the "
                                                     "provided code",
         blocks={"rpn_forward_loss": STUDENT["rpn_forward_loss"].replace('reduction="none")', 'reduction="mean")')
                 .replace("loss_box[target_deltas == -1e8] = 0\n", "")},
         hints={"rpn_forward_loss": "reduction='none'"},
         expect={"rpn_forward_loss": 0}),
    dict(name="course_cls_loss_divided_again", about="classification loss divided by the batch once more",
         blocks={"faster_rcnn_loss": STUDENT["faster_rcnn_loss"].replace(
             "loss_cls = F.cross_entropy(pred_cls_logits[idx], labels)",
             "loss_cls = F.cross_entropy(pred_cls_logits[idx], labels) / (self.batch_size_per_image * num_images)")},
         hints={"faster_rcnn_loss": "do not divide again"},
         expect={"faster_rcnn_loss": 0}),
    dict(name="course_clamp_after_nms", about="proposals clamped after NMS",
         blocks={"rpn_predict_proposals": """
             boxes = rcnn_apply_deltas_to_anchors(level_boxreg_deltas[_batch_idx], level_anchors)
             W, H = image_size
             scores = level_obj_logits[_batch_idx]
             top_scores, top_idx = torch.topk(scores, min(self.pre_nms_topk, scores.shape[0]))
             top_boxes = boxes[top_idx]
             keep = torchvision.ops.nms(top_boxes, top_scores, self.nms_thresh)[: self.post_nms_topk]
             kept = top_boxes[keep]
             kept[:, 0::2] = kept[:, 0::2].clamp(0, W)
             kept[:, 1::2] = kept[:, 1::2].clamp(0, H)
             level_proposals_per_image.append(kept)
             """},
         hints={"rpn_predict_proposals": "before NMS"},
         expect={"rpn_predict_proposals": 0}),
    dict(name="course_nms_never_matches", about="NMS checks `idx in removed` on a set of tensors: never true",
         blocks={"nms": """
             order = scores.argsort(descending=True)
             x1, y1, x2, y2 = boxes.unbind(dim=1)
             areas = (x2 - x1) * (y2 - y1)
             removed = set()
             keep = []
             for idx in order:
                 if idx in removed:  # tensors hash by identity: never true
                     continue
                 keep.append(idx)
                 w = (torch.min(x2[idx], x2) - torch.max(x1[idx], x1)).clamp(min=0)
                 h = (torch.min(y2[idx], y2) - torch.max(y1[idx], y1)).clamp(min=0)
                 overlap = w * h / (areas[idx] + areas - w * h)
                 for other in (overlap > iou_threshold).nonzero().flatten():
                     removed.add(other)
             keep = torch.stack(keep)
             """},
         hints={"nms": "never matches"},
         expect={"nms": 0}),
    dict(name="course_nms_never_runs", about="NMS loop whose condition is never true",
         blocks={"nms": STUDENT["nms"].replace("while order.numel() > 0:", "while order.numel() > len(boxes):")},
         hints={"nms": "never ran"},
         expect={"nms": 0}),
    dict(name="course_deltas_xywh", about="deltas computed as if boxes were (x, y, w, h)",
         blocks={"rcnn_get_deltas_from_anchors": """
             deltas = torch.zeros_like(anchors)
             deltas[:, 0] = (gt_boxes[:, 0] - anchors[:, 0]) / anchors[:, 2]
             deltas[:, 1] = (gt_boxes[:, 1] - anchors[:, 1]) / anchors[:, 3]
             deltas[:, 2] = torch.log(gt_boxes[:, 2] / anchors[:, 2])
             deltas[:, 3] = torch.log(gt_boxes[:, 3] / anchors[:, 3])
             ignore = (gt_boxes[:, :4] == -1).all(dim=1) | (gt_boxes[:, :4] == -1e8).all(dim=1)
             deltas[ignore] = -1e8
             """},
         hints={"rcnn_get_deltas_from_anchors": "(x, y, w, h)"},
         expect={"rcnn_get_deltas_from_anchors": 0}),
    dict(name="course_deltas_class_column", about="deltas read the class column of 5-column GT boxes",
         blocks={"rcnn_get_deltas_from_anchors": STUDENT["rcnn_get_deltas_from_anchors"].replace(
             "ignore = (gt_boxes[:, :4] == -1).all(dim=1) | (gt_boxes[:, :4] == -1e8).all(dim=1)",
             "ignore = gt_boxes[:, 4] < 0")},
         hints={"rcnn_get_deltas_from_anchors": "shape (N, 4)"},
         expect={"rcnn_get_deltas_from_anchors": 0}),
]
