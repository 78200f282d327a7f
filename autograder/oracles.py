"""
Independent implementations of what the TODOs compute, built on torchvision
and plain tensor algebra rather than on the kit's reference code.

The grading parent uses them to accept legitimate variants of a TODO (an
FPN with bilinear upsampling, proposals clamped to `size - 1`, a loss on the
anchors a student's own sampler drew, any tie order in NMS) and to name
likely mistakes; the test suite checks them against the reference outputs,
so each is checked from two sides.
"""
import math
from typing import Dict, List, Optional

import torch
from torch.nn import functional as F

SCALE_CLAMP = math.log(224 / 8)


def _box_coder():
    from torchvision.models.detection._utils import BoxCoder

    return BoxCoder((1.0, 1.0, 1.0, 1.0), bbox_xform_clip=SCALE_CLAMP)


def encode(gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(dx, dy, dw, dh) of `gt_boxes` (N, 4) relative to `anchors` (N, 4)."""
    return _box_coder().encode_single(gt_boxes, anchors)


def decode(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes (N, 4) from deltas (N, 4) on anchors (N, 4), dw/dh clamped at log(224/8)."""
    return _box_coder().decode_single(deltas, anchors)


# ---------------------------------------------------------------- FPN
def fpn(c_feats: Dict[str, torch.Tensor], weights: Dict[str, list], mode: str = "nearest",
        variant: str = "correct") -> Dict[str, torch.Tensor]:
    """
    FPN top-down pathway with the given lateral / output conv weights.

    Args:
        c_feats: {"c3", "c4", "c5"} features.
        weights: {"lateral3": [w, b], "output3": [w, b], ...}.
        mode: "nearest", "bilinear" or "bilinear_aligned" (align_corners=True).
        variant: "correct"; or a known mistake: "upsample_output" (the
            top-down path upsamples the 3x3 outputs, not the merged maps),
            "no_output_conv" (p = merged maps), "output_before_merge" (the
            3x3 conv of each lateral before adding the upsampled map).
    """
    def up(x, size):
        if mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=mode == "bilinear_aligned")

    def conv(x, name, pad):
        w, b = weights[name]
        return F.conv2d(x, w, b, padding=pad)

    out, top = {}, None
    for level in ("5", "4", "3"):
        lateral = conv(c_feats[f"c{level}"], f"lateral{level}", 0)
        if variant == "output_before_merge":
            lateral = conv(lateral, f"output{level}", 1)
        merged = lateral if top is None else lateral + up(top, lateral.shape[-2:])
        if variant == "no_output_conv" or variant == "output_before_merge":
            p = merged
        else:
            p = conv(merged, f"output{level}", 1)
        out[f"p{level}"] = p
        top = p if variant == "upsample_output" else merged
    return {k: out[k] for k in ("p3", "p4", "p5")}


def location_coords(shapes: Dict[str, tuple], strides: Dict[str, int]) -> Dict[str, torch.Tensor]:
    out = {}
    for level, shape in shapes.items():
        h, w = shape[-2:]
        s = strides[level]
        ys, xs = torch.meshgrid(torch.arange(h) * s + s / 2, torch.arange(w) * s + s / 2, indexing="ij")
        out[level] = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()
    return out


def anchors(locations: Dict[str, torch.Tensor], strides: Dict[str, int], stride_scale: float,
            aspect_ratios: List[float]) -> Dict[str, torch.Tensor]:
    """(H*W*A, 4) anchors per level, the A aspect ratios of a location together."""
    out = {}
    for level, locs in locations.items():
        area = float(stride_scale * strides[level]) ** 2
        per_ratio = []
        for r in aspect_ratios:
            w = math.sqrt(area / r)
            h = area / w
            per_ratio.append(torch.stack([locs[:, 0] - w / 2, locs[:, 1] - h / 2,
                                          locs[:, 0] + w / 2, locs[:, 1] + h / 2], dim=1))
        out[level] = torch.stack(per_ratio, dim=1).reshape(-1, 4)
    return out


# ---------------------------------------------------------------- NMS
def nms_problems(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, keep) -> List[str]:
    """
    Whether `keep` is what greedy NMS keeps for *some* order of exactly tied
    scores (torchvision takes the lower index first; any order is accepted).
    Greedy NMS keeps `keep` iff: it is in non-increasing score order, no two
    kept boxes overlap with IoU > threshold, and every dropped box overlaps
    a kept box of at least its score with IoU > threshold.
    """
    from torchvision.ops import box_iou

    if not isinstance(keep, torch.Tensor) or keep.dim() != 1:
        return ["keep must be a 1-D tensor of indices"]
    if keep.dtype != torch.long:
        return [f"keep: dtype {keep.dtype}, expected torch.int64 (indices)"]
    n = len(boxes)
    idx = keep.tolist()
    if any(i < 0 or i >= n for i in idx):
        return [f"keep holds indices outside 0..{n - 1}"]
    if len(set(idx)) != len(idx):
        return ["keep holds an index twice"]
    s = scores[keep]
    if len(s) > 1 and bool((s[1:] > s[:-1]).any()):
        return ["kept indices are not sorted by decreasing score"]
    ious = box_iou(boxes, boxes)
    kept = torch.zeros(n, dtype=torch.bool)
    kept[keep] = True
    problems = []
    for a in idx:
        others = kept.clone()
        others[a] = False
        over = (ious[a] > threshold) & others
        if over.any():
            b = int(over.nonzero()[0])
            problems.append(f"boxes {min(a, b)} and {max(a, b)} are both kept, but their IoU is "
                            f"{float(ious[a, b]):.3f} > {threshold}")
            break
    for j in range(n):
        if kept[j]:
            continue
        if not ((ious[j] > threshold) & kept & (scores >= scores[j])).any():
            problems.append(f"box {j} (score {float(scores[j]):.4g}) was dropped, but no kept box "
                            f"with a higher score overlaps it with IoU > {threshold}")
            break
    return problems


# ---------------------------------------------------------------- RPN
def proposals(anchors_per_level, logits, deltas, image_size, pre_nms_topk, post_nms_topk,
              nms_thresh, clamp: str = "size") -> Dict[str, List[torch.Tensor]]:
    """
    RPN proposals per level and image: decode, clamp, top-k, NMS, keep
    `post_nms_topk`. `clamp`: "size" (to [0, W] x [0, H]), "size-1" (to
    [0, W - 1] x [0, H - 1]), "none", or "after_nms" (NMS on unclamped
    boxes, then clamp to the size).
    """
    from torchvision.ops import clip_boxes_to_image, nms

    w, h = image_size
    out = {}
    for level, a in anchors_per_level.items():
        per_image = []
        for b in range(logits[level].shape[0]):
            boxes = decode(deltas[level][b], a)
            if clamp == "size":
                boxes = clip_boxes_to_image(boxes, (h, w))
            elif clamp == "size-1":
                boxes = clip_boxes_to_image(boxes, (h - 1, w - 1))
            k = min(pre_nms_topk, len(boxes))
            top, order = logits[level][b].topk(k)
            kept = boxes[order][nms(boxes[order], top, nms_thresh)][:post_nms_topk]
            if clamp == "after_nms":
                kept = clip_boxes_to_image(kept, (h, w))
            per_image.append(kept)
        out[level] = per_image
    return out


def match(anchor_boxes: torch.Tensor, gt_boxes: torch.Tensor, thresholds) -> torch.Tensor:
    """(N, 5) matched GT rows: the best GT box at or above `thresholds[1]`
    (and above `thresholds[0]`), -1 rows at or below `thresholds[0]`, -1e8
    rows in between."""
    from torchvision.ops import box_iou

    gt = gt_boxes[gt_boxes[:, 4] != -1]
    out = -torch.ones(len(anchor_boxes), 5)
    if len(gt) == 0:
        return out
    quality, idx = box_iou(anchor_boxes, gt[:, :4]).max(dim=1)
    fg = (quality >= thresholds[1]) & (quality > thresholds[0])
    out[fg] = gt[idx[fg]]
    out[(quality > thresholds[0]) & ~fg] = -1e8
    return out


def sample_problems(sample, labels, num_samples, fg_fraction) -> List[str]:
    """
    Whether `sample` (indices into `labels`: class >= 0 foreground, -1
    background, -1e8 neutral) meets `sample_rpn_training`'s contract:
    `min(int(num_samples * fg_fraction), #foreground)` foreground indices,
    the rest of `num_samples` background (as many as there are), no neutral
    and no index twice.
    """
    idx = sample.tolist()
    if len(set(idx)) != len(idx):
        return ["the sampled indices repeat: sample without replacement (torch.randperm)"]
    lab = labels[sample]
    fg_all = int((labels >= 0).sum())
    bg_all = int((labels == -1).sum())
    num_fg = min(int(num_samples * fg_fraction), fg_all)
    num_bg = min(num_samples - num_fg, bg_all)
    got_fg, got_bg = int((lab >= 0).sum()), int((lab == -1).sum())
    problems = []
    if ((lab != -1) & (lab < 0)).any():
        problems.append("the sample holds neutral anchors (GT class -1e8): sample only foreground and background")
    if (got_fg, got_bg) != (num_fg, num_bg):
        problems.append(f"sampled {got_fg} foreground and {got_bg} background, expected {num_fg} and "
                        f"{num_bg} (num_samples = {num_samples}, fg_fraction = {fg_fraction}, "
                        f"{fg_all} foreground and {bg_all} background available)")
    return problems


def rpn_losses(logits, deltas, anchor_boxes, matched, sample, total_batch_size, foreground=">="):
    """
    RPN losses of the anchors in `sample` (flat indices), summed and divided
    by `total_batch_size`: BCE on objectness, L1 on the deltas of the
    foreground anchors. `foreground` ">" is the mistake of treating class 0
    as background.
    """
    lab = matched[sample, 4]
    fg = lab >= 0 if foreground == ">=" else lab > 0
    obj = F.binary_cross_entropy_with_logits(logits[sample], fg.to(logits.dtype), reduction="sum")
    fg_idx = sample[fg]
    box = (deltas[fg_idx] - encode(matched[fg_idx, :4], anchor_boxes[fg_idx])).abs().sum()
    return {"loss_rpn_obj": obj / total_batch_size, "loss_rpn_box": box / total_batch_size}


# ------------------------------------------------------------- Faster R-CNN
def roi_features(feats: Dict[str, torch.Tensor], props: Dict[str, List[torch.Tensor]], strides,
                 roi_size, spatial_scale=None, aligned=True, sampling_ratio=-1) -> Dict[str, torch.Tensor]:
    """RoI-Align of every level's proposals on that level's features."""
    from torchvision.ops import roi_align

    return {k: roi_align(feats[k], props[k], tuple(roi_size),
                         spatial_scale=(1.0 / strides[k]) if spatial_scale is None else spatial_scale[k],
                         sampling_ratio=sampling_ratio, aligned=aligned) for k in feats}


def cls_loss(logits, matched, sample):
    """Mean cross entropy of the sampled proposals, classes shifted by +1."""
    return F.cross_entropy(logits[sample], matched[sample, 4].long() + 1)


def detections(boxes, logits, score_thresh, nms_thresh):
    """Inference of the second stage: best class by softmax, background and
    low scores dropped, class-wise NMS (torchvision.ops.batched_nms)."""
    from torchvision.ops import batched_nms

    scores, classes = logits.softmax(dim=1).max(dim=1)
    keep = (classes > 0) & (scores > score_thresh)
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep] - 1
    kept = batched_nms(boxes, scores, classes, nms_thresh)
    return [boxes[kept], classes[kept], scores[kept]]


def flat_rpn_inputs(parts: dict, batch: int):
    """The flat (B * HWA) tensors RPN.forward's loss block sees."""
    logits = torch.cat([parts["pred_obj_logits"][k] for k in parts["pred_obj_logits"]], dim=1).reshape(-1)
    deltas = torch.cat([parts["pred_boxreg_deltas"][k] for k in parts["pred_boxreg_deltas"]], dim=1).reshape(-1, 4)
    anchors_all = torch.cat([parts["anchors_per_fpn_level"][k] for k in parts["anchors_per_fpn_level"]], dim=0)
    anchor_boxes = anchors_all.unsqueeze(0).repeat(batch, 1, 1).reshape(-1, 4)
    matched = torch.stack(parts["matched_gt_boxes"]).reshape(-1, 5)
    return logits, deltas, anchor_boxes, matched


def first_match(candidates: Dict[str, object], got, compare_fn) -> Optional[str]:
    """The name of the first candidate output that `got` matches."""
    for name, value in candidates.items():
        try:
            if compare_fn(got, value):
                return name
        except Exception:  # noqa: BLE001 - odd outputs
            continue
    return None
