"""
Checks of the box operations of two_stage_detector.py: `generate_fpn_anchors`,
`iou`, `rcnn_get_deltas_from_anchors` and `rcnn_apply_deltas_to_anchors`.
Each also runs shape-only on the meta device (see check_base).
"""
import torch

from . import oracles
from .check_base import DEVICE_CASE, STRIDES, Check, rand_boxes, register
from .compare import matches


def level_locations(ref, shapes, strides):
    return ref.common.get_fpn_location_coords({k: torch.Size(v) for k, v in shapes.items()}, strides)


NONSQUARE = {"p3": (2, 8, 8, 12), "p4": (2, 8, 4, 6), "p5": (2, 8, 2, 3)}


@register
class GenerateFPNAnchors(Check):
    name, points = "generate_fpn_anchors", 3.0
    keep = ("generate_fpn_anchors",)
    todo = "generate_fpn_anchors"
    hides = [("tsd", "generate_fpn_anchors")]

    def make_inputs(self, ref, gen):
        locations = level_locations(ref, NONSQUARE, STRIDES)
        other = level_locations(ref, {"p3": (1, 4, 6, 4), "p4": (1, 4, 3, 2), "p5": (1, 4, 2, 1)},
                                {"p3": 4, "p4": 8, "p5": 16})
        return {"default": {"locations": locations, "strides": dict(STRIDES), "stride_scale": 4,
                            "aspect_ratios": [0.5, 1.0, 2.0]},
                "other_ratios": {"locations": locations, "strides": dict(STRIDES), "stride_scale": 8,
                                 "aspect_ratios": [0.25, 1.0, 3.0, 1.5]},
                "other_strides": {"locations": other, "strides": {"p3": 4, "p4": 8, "p5": 16},
                                  "stride_scale": 3, "aspect_ratios": [2.0, 0.5]},
                DEVICE_CASE: {"locations": locations, "strides": dict(STRIDES), "stride_scale": 4,
                              "aspect_ratios": [0.5, 1.0, 2.0]}}

    def run(self, ctx, case, inp):
        return ctx.tsd.generate_fpn_anchors(ctx.move(inp["locations"]), dict(inp["strides"]),
                                            inp["stride_scale"], list(inp["aspect_ratios"]))

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict) or case == DEVICE_CASE:
            return []
        flipped = {}
        for k, v in exp.items():
            ctr = (v[:, :2] + v[:, 2:]) / 2
            half = (v[:, 2:] - v[:, :2]).flip(1) / 2
            flipped[k] = torch.cat([ctr - half, ctr + half], dim=1)
        if matches(flipped, got):
            return ["aspect ratio inverted: width = sqrt(area / aspect_ratio), height = area / width"]
        ratio_major = {k: v.view(-1, len(inp["aspect_ratios"]), 4).transpose(0, 1).reshape(-1, 4)
                       for k, v in exp.items()}
        if matches(ratio_major, got):
            return ["anchors are grouped by aspect ratio: the A anchors of one location must be "
                    "consecutive (the provided permute after the loop does that; append one (H*W, 4) "
                    "tensor per aspect ratio)"]
        return []


@register
class IoU(Check):
    name, points = "iou", 3.0
    keep = ("iou",)
    todo = "iou"
    hides = [("tsd", "iou")]

    def make_inputs(self, ref, gen):
        special = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [2, 2, 8, 8],
                                [0, 0, 10, 10], [10, 0, 20, 10], [10, 10, 20, 20]]).float()
        return {"special": {"boxes1": special[:2], "boxes2": special},
                "random": {"boxes1": rand_boxes(gen, 30), "boxes2": rand_boxes(gen, 17)},
                "one_to_many": {"boxes1": rand_boxes(gen, 1), "boxes2": rand_boxes(gen, 50)},
                DEVICE_CASE: {"boxes1": rand_boxes(gen, 7), "boxes2": rand_boxes(gen, 5)}}

    def run(self, ctx, case, inp):
        return ctx.tsd.iou(ctx.move(inp["boxes1"]), ctx.move(inp["boxes2"]))

    def hints(self, case, got, exp, inp):
        if not isinstance(got, torch.Tensor) or case == DEVICE_CASE:
            return []
        if got.shape == exp.shape and (got < 0).any():
            return ["negative IoU: clamp the intersection width and height at 0"]
        if got.shape == exp.shape[::-1]:
            return ["result is transposed: iou[i, j] compares boxes1[i] with boxes2[j]"]
        return []


def matched_gt_rows(gen, n):
    """(n, 4) matched GT boxes with background (-1) and neutral (-1e8) rows."""
    gt = rand_boxes(gen, n)
    gt[1::5] = -1.0
    gt[3::7] = -1e8
    return gt


CLASS_COLUMN_HINT = ("gt_boxes has shape (N, 4) here, as the docstring says (the course's notebook "
                     "passed (N, 5) boxes with the class in column 4): tell background (-1) and "
                     "neutral (-1e8) rows by their co-ordinates, not by a class column")
XYWH_HINT = ("the formula treats boxes as (x, y, w, h); they are XYXY: width = x2 - x1, "
             "centre = (x1 + x2) / 2")


def xywh_variants_get(anchors, gt):
    """Deltas computed as if the XYXY boxes were (x, y, w, h) (two readings)."""
    out = []
    for centred in (False, True):
        a_wh, g_wh = anchors[:, 2:], gt[:, 2:4]
        a_c = anchors[:, :2] + (a_wh / 2 if centred else 0)
        g_c = gt[:, :2] + (g_wh / 2 if centred else 0)
        out.append(torch.cat([(g_c - a_c) / a_wh, torch.log(g_wh / a_wh)], dim=1))
    return out


@register
class GetDeltas(Check):
    name, points = "rcnn_get_deltas_from_anchors", 2.0
    keep = ("rcnn_get_deltas_from_anchors",)
    todo = "rcnn_get_deltas_from_anchors"
    hides = [("tsd", "rcnn_get_deltas_from_anchors")]

    def make_inputs(self, ref, gen):
        return {"foreground": {"anchors": rand_boxes(gen, 40), "gt": rand_boxes(gen, 40)},
                "background_neutral": {"anchors": rand_boxes(gen, 40), "gt": matched_gt_rows(gen, 40)},
                DEVICE_CASE: {"anchors": rand_boxes(gen, 12), "gt": matched_gt_rows(gen, 12)}}

    def run(self, ctx, case, inp):
        return ctx.tsd.rcnn_get_deltas_from_anchors(ctx.move(inp["anchors"].clone()), ctx.move(inp["gt"].clone()))

    def hints(self, case, got, exp, inp):
        if not isinstance(got, torch.Tensor) or got.shape != exp.shape or case == DEVICE_CASE:
            return []
        ignore = (exp == -1e8).all(dim=1)
        fg = ~ignore
        if any(matches(got[fg], v[fg]) for v in xywh_variants_get(inp["anchors"], inp["gt"])):
            return [XYWH_HINT]
        if ignore.any() and not torch.allclose(got[ignore], exp[ignore]):
            return ["deltas of background (-1) and neutral (-1e8) GT boxes must be -1e8"]
        if matches(got[fg][:, :2], exp[fg][:, :2]) and not matches(got[fg][:, 2:], exp[fg][:, 2:]):
            return ["dw, dh are log(gt_size / anchor_size)"]
        return []

    def error_hints(self, case, error):
        if "index 4 is out of bounds" in error or "out of bounds for dimension 1 with size 4" in error:
            return [CLASS_COLUMN_HINT]
        return super().error_hints(case, error)


@register
class ApplyDeltas(Check):
    name, points = "rcnn_apply_deltas_to_anchors", 2.0
    keep = ("rcnn_apply_deltas_to_anchors",)
    todo = "rcnn_apply_deltas_to_anchors"
    hides = [("tsd", "rcnn_apply_deltas_to_anchors")]

    def make_inputs(self, ref, gen):
        deltas = torch.randn(40, 4, generator=gen) * 0.5
        big = deltas.clone()
        big[::3, 2:] = 6.0  # beyond the provided clamp
        return {"random": {"deltas": deltas, "anchors": rand_boxes(gen, 40)},
                "large_scale": {"deltas": big, "anchors": rand_boxes(gen, 40)},
                DEVICE_CASE: {"deltas": deltas[:9], "anchors": rand_boxes(gen, 9)}}

    def run(self, ctx, case, inp):
        return ctx.tsd.rcnn_apply_deltas_to_anchors(ctx.move(inp["deltas"].clone()), ctx.move(inp["anchors"].clone()))

    def hints(self, case, got, exp, inp):
        if not isinstance(got, torch.Tensor) or got.shape != exp.shape or case == DEVICE_CASE:
            return []
        d, a = inp["deltas"].clone(), inp["anchors"]
        d[:, 2:] = d[:, 2:].clamp(max=oracles.SCALE_CLAMP)
        corner = torch.cat([a[:, :2] + d[:, :2] * a[:, 2:], a[:, 2:] * torch.exp(d[:, 2:])], dim=1)
        if matches(got, corner):
            return [XYWH_HINT]
        wh = a[:, 2:] - a[:, :2]
        ctr = a[:, :2] + wh / 2 + d[:, :2] * wh
        if matches(got, torch.cat([ctr - wh * d[:, 2:] / 2, ctr + wh * d[:, 2:] / 2], dim=1)):
            return ["the size is anchor_size * exp(dw), not anchor_size * dw"]
        return []
