"""
Checks of common.py: the FPN layers and top-down pathway of
`DetectorBackboneWithFPN`, `get_fpn_location_coords` and `nms`.

Accepted variants: FPN upsampling by nearest or bilinear interpolation (the
TODO names `F.interpolate`, no mode); any order of exactly tied scores in
NMS, as long as the result is what greedy NMS keeps for some order of the
tied boxes (torchvision takes the lower index first).
"""
import torch
from torch import nn

from . import oracles
from .check_base import (DEVICE_CASE, STRIDES, Check, FastTrunkProvided, FixedTrunk, module_spec,
                         new_instance, rand_boxes, rand_c_feats, register)
from .compare import compare, matches
from .hooks import GraderError

FPN_CONFIGS = {"a": dict(out_channels=8, batch=2, height=64, width=96),
               "b": dict(out_channels=16, batch=1, height=96, width=128)}
LEVEL_OF_C = {"c3": "3", "c4": "4", "c5": "5"}


def build_backbone(ctx, out_channels):
    """The student's DetectorBackboneWithFPN with the RegNet trunk stood in for."""
    with FastTrunkProvided(ctx.common):
        obj, error = new_instance(ctx.common.DetectorBackboneWithFPN, out_channels, pretrained=False)
    return obj, error


def fpn_param_specs(module) -> list:
    fpn_params = getattr(module, "fpn_params", None)
    if not isinstance(fpn_params, nn.Module):
        raise GraderError("self.fpn_params is missing or not an nn.ModuleDict")
    return sorted((module_spec(m) for m in fpn_params.modules() if m is not fpn_params
                   and not isinstance(m, (nn.ModuleDict, nn.ModuleList, nn.Sequential))),
                  key=repr)


@register
class FPNInit(Check):
    name, file, points = "fpn_init", "common.py", 2.0
    todo = "DetectorBackboneWithFPN.__init__: the FPN lateral and output convs"
    hides = [("common", "DetectorBackboneWithFPN.__init__")]

    def make_inputs(self, ref, gen):
        return {"out_channels_8": {"out_channels": 8}, "out_channels_16": {"out_channels": 16}}

    def run(self, ctx, case, inp):
        obj, error = build_backbone(ctx, inp["out_channels"])
        if error is not None:
            raise error
        return fpn_param_specs(obj)

    def hints(self, case, got, exp, inp):
        if not isinstance(got, list):
            return []
        convs = [s for s in got if s and s[0] == "Conv2d"]
        if any(s[3] == [3, 3] and s[5] == [0, 0] for s in convs):
            return ["the 3x3 output convs need padding=1 to keep the feature size"]
        if convs and not any(s[3] == [3, 3] for s in convs):
            return ["only 1x1 convs: add THREE 3x3 output convs (out_channels -> out_channels), "
                    "one per level, applied to the merged maps"]
        if any(s[3] != [1, 1] and s[1] != s[2] for s in convs):
            return ["the lateral convs (RegNet channels -> out_channels) are 1x1"]
        return []


def fpn_convs(obj):
    """(lateral convs by input channels, 3x3 output convs) of fpn_params."""
    fpn_params = getattr(obj, "fpn_params", None)
    if not isinstance(fpn_params, nn.Module):
        raise GraderError("self.fpn_params is missing or not an nn.ModuleDict")
    lateral, output = {}, []
    for m in fpn_params.modules():
        if isinstance(m, nn.Conv2d):
            if m.kernel_size == (1, 1):
                lateral[m.in_channels] = m
            else:
                output.append(m)
    if sorted(lateral) != sorted(FixedTrunk.CHANNELS.values()) or len(output) != 3:
        raise GraderError(
            "fpn_params must hold three 1x1 lateral convs (for 64, 160 and 400 input channels) "
            f"and three 3x3 output convs; found 1x1 convs for {sorted(lateral)} input channels "
            f"and {len(output)} other convs"
        )
    return lateral, output


@register
class FPNForward(Check):
    name, file, points = "fpn_forward", "common.py", 3.0
    todo = "DetectorBackboneWithFPN.forward: top-down pathway"
    hides = [("common", "DetectorBackboneWithFPN.forward")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key, cfg in FPN_CONFIGS.items():
            ch = cfg["out_channels"]
            weights = {}
            for c_name, c_in in FixedTrunk.CHANNELS.items():
                level = LEVEL_OF_C[c_name]
                weights[f"lateral{level}"] = [torch.randn(ch, c_in, 1, 1, generator=gen) * 0.1,
                                              torch.randn(ch, generator=gen)]
                weights[f"output{level}"] = [torch.randn(ch, ch, 3, 3, generator=gen) * 0.1,
                                             torch.randn(ch, generator=gen)]
            cases[f"config_{key}"] = {"weights": weights, "out_channels": ch,
                                      "c_feats": rand_c_feats(gen, cfg["batch"], cfg["height"], cfg["width"])}
        cases[DEVICE_CASE] = dict(cases["config_a"])
        return cases

    def run(self, ctx, case, inp):
        obj, error = build_backbone(ctx, inp["out_channels"])
        if error is not None:
            raise GraderError(f"DetectorBackboneWithFPN.__init__ (check fpn_init) raised, so forward "
                              f"cannot run with your layers: {type(error).__name__}: {error}")
        lateral, output = fpn_convs(obj)
        c_feats = inp["c_feats"]
        obj.backbone = FixedTrunk(c_feats)
        images = torch.zeros(len(c_feats["c3"]), 3, 1, 1)
        # Which 3x3 conv serves which level: the size of the map it gets.
        sizes = {}

        def record(mod, args):
            sizes.setdefault(id(mod), tuple(args[0].shape[-2:]))

        handles = [m.register_forward_pre_hook(record) for m in output]
        try:
            with torch.no_grad():
                obj(images)
        finally:
            for h in handles:
                h.remove()
        size_level = {tuple(c_feats[c].shape[-2:]): LEVEL_OF_C[c] for c in c_feats}
        assigned = {}
        for m in output:
            level = size_level.get(sizes.get(id(m)))
            if level is not None and level not in assigned:
                assigned[level] = m
        rest = [m for m in output if m not in assigned.values()]
        for level in "345":
            if level not in assigned:
                assigned[level] = rest.pop(0)
        w = inp["weights"]
        with torch.no_grad():
            for c_name, c_in in FixedTrunk.CHANNELS.items():
                level = LEVEL_OF_C[c_name]
                pairs = ((lateral[c_in], w[f"lateral{level}"]), (assigned[level], w[f"output{level}"]))
                for conv, (weight, bias) in pairs:
                    if conv.weight.shape != weight.shape or (conv.bias is None) != (bias is None):
                        raise GraderError(f"FPN conv of level {level}: weight shape {tuple(conv.weight.shape)}"
                                          f" (bias: {conv.bias is not None}), expected {tuple(weight.shape)} "
                                          "with a bias")
                    conv.weight.copy_(weight)
                    conv.bias.copy_(bias)
            obj.to(ctx.device)
            obj.backbone = FixedTrunk(ctx.move(c_feats))
            return obj(images.to(ctx.device))

    def accepts(self, case, got, exp, inp):
        if case == DEVICE_CASE:
            return None
        for mode in ("bilinear", "bilinear_aligned"):
            if matches(got, oracles.fpn(inp["c_feats"], inp["weights"], mode=mode)):
                return f"upsampling by {mode.replace('_aligned', ' (align_corners=True)')} interpolation"
        return None

    def hints(self, case, got, exp, inp):
        if case == DEVICE_CASE:
            return []
        mistakes = {
            "upsample_output": "the top-down path upsamples the output of the 3x3 conv; upsample the "
                               "merged map (lateral + upsampled coarser merged map), then apply the 3x3 conv",
            "no_output_conv": "the 3x3 output convs are not applied: p_k = output_conv_k(merged_k)",
            "output_before_merge": "the 3x3 output conv is applied before merging; apply it to the merged "
                                   "map (lateral_k(c_k) + upsampled merged map of the coarser level)",
        }
        for variant, hint in mistakes.items():
            for mode in ("nearest", "bilinear", "bilinear_aligned"):
                if matches(got, oracles.fpn(inp["c_feats"], inp["weights"], mode=mode, variant=variant)):
                    return [hint]
        return []


@register
class FPNLocationCoords(Check):
    name, file, points = "fpn_location_coords", "common.py", 2.0
    todo = "get_fpn_location_coords"
    hides = [("common", "get_fpn_location_coords"), ("tsd", "get_fpn_location_coords")]

    def make_inputs(self, ref, gen):
        nonsquare = {"p3": (2, 8, 8, 12), "p4": (2, 8, 4, 6), "p5": (2, 8, 2, 3)}
        return {
            "nonsquare": {"shapes": nonsquare, "strides": dict(STRIDES)},
            "224": {"shapes": {"p3": (1, 64, 28, 28), "p4": (1, 64, 14, 14), "p5": (1, 64, 7, 7)},
                    "strides": dict(STRIDES)},
            "other_strides": {"shapes": {"p3": (1, 4, 10, 6), "p4": (1, 4, 5, 3), "p5": (1, 4, 3, 2)},
                              "strides": {"p3": 4, "p4": 8, "p5": 16}},
            DEVICE_CASE: {"shapes": nonsquare, "strides": dict(STRIDES)},
        }

    def run(self, ctx, case, inp):
        shapes = {k: torch.Size(v) for k, v in inp["shapes"].items()}
        if case == DEVICE_CASE:
            return ctx.common.get_fpn_location_coords(shapes, inp["strides"], device=ctx.device)
        return ctx.common.get_fpn_location_coords(shapes, inp["strides"])

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict) or case == DEVICE_CASE:
            return []
        swapped = {k: v.flip(1) for k, v in exp.items()}
        transposed = {}
        for k, v in exp.items():
            h, w = inp["shapes"][k][-2:]
            transposed[k] = v.view(h, w, 2).transpose(0, 1).reshape(-1, 2)
        is_swapped, is_transposed = matches(swapped, got), matches(transposed, got)
        if is_swapped and is_transposed:  # square maps: the two mistakes look alike
            return ["x and y are swapped, or the locations are in column-major order (on square maps "
                    "the two look alike): each row is (xc, yc), flattened row by row (x varies fastest)"]
        if is_swapped:
            return ["x and y are swapped: each row must be (xc, yc)"]
        if is_transposed:
            return ["locations are in column-major order; flatten row by row "
                    "(x varies fastest), like a (H, W) feature map flattens"]
        stride_off = {k: v - 0.5 * inp["strides"][k] for k, v in exp.items()}
        if matches(stride_off, got):
            return ["missing the +0.5 offset: use the centre of each cell"]
        return []


@register
class NMS(Check):
    name, file, points = "nms", "common.py", 3.0
    todo = "nms (without torchvision.ops.nms)"
    hides = [("common", "nms"), ("tsd", "nms"), ("common", "class_spec_nms"), ("tsd", "class_spec_nms")]

    def make_inputs(self, ref, gen):
        cases = {}
        for name, n, thresh in (("small", 8, 0.5), ("many", 200, 0.5), ("strict", 120, 0.3), ("loose", 120, 0.7)):
            boxes = rand_boxes(gen, n, max_frac=0.4)
            scores = torch.rand(n, generator=gen)
            cases[name] = {"boxes": boxes, "scores": scores, "iou_threshold": thresh}
        # Exactly tied scores, tied boxes overlapping: any tie order is accepted.
        boxes = rand_boxes(gen, 60, max_frac=0.4)
        boxes[1::6] = boxes[0::6] + 1.0
        scores = (torch.rand(60, generator=gen) * 8).floor() / 8
        scores[1::6] = scores[0::6]
        cases["ties"] = {"boxes": boxes, "scores": scores, "iou_threshold": 0.5}
        return cases

    def run(self, ctx, case, inp):
        import torchvision

        used = []
        real = torchvision.ops.nms

        def forbidden(*args, **kwargs):
            used.append(True)
            return real(*args, **kwargs)

        torchvision.ops.nms = torchvision.ops.boxes.nms = forbidden
        try:
            keep = ctx.common.nms(inp["boxes"].clone(), inp["scores"].clone(), inp["iou_threshold"])
        finally:
            torchvision.ops.nms = torchvision.ops.boxes.nms = real
        return {"keep": keep, "used_torchvision": bool(used)}

    def problems(self, case, got, exp, inp):
        if isinstance(got, dict) and got.get("used_torchvision"):
            return ["nms calls torchvision.ops.nms; write it in PyTorch"]
        return compare(got.get("keep") if isinstance(got, dict) else got, exp["keep"], where="keep")

    def accepts(self, case, got, exp, inp):
        keep = got.get("keep") if isinstance(got, dict) else None
        if got.get("used_torchvision") or not isinstance(keep, torch.Tensor):
            return None
        if not oracles.nms_problems(inp["boxes"], inp["scores"], inp["iou_threshold"], keep):
            return "another order of exactly tied scores"
        return None

    def hints(self, case, got, exp, inp):
        keep = got.get("keep") if isinstance(got, dict) else None
        if not isinstance(keep, torch.Tensor):
            return []
        n, want = len(inp["boxes"]), exp["keep"]
        if keep.shape == want.shape and keep.dtype != torch.long:
            return ["return indices as a torch.long tensor"]
        if keep.numel() == 0 and want.numel():
            return ["nothing was kept: the selection loop never ran (check its condition); the "
                    "highest-scoring box is always kept"]
        if keep.numel() == n and want.numel() < n:
            return ["every box was kept, so no box is ever suppressed: a test like `if idx in removed` "
                    "on tensors never matches (tensors compare by identity in sets and lists); keep a "
                    "boolean mask of suppressed boxes, or use .item() indices"]
        if keep.dtype == torch.long and set(keep.tolist()) == set(want.tolist()):
            return ["right boxes, wrong order: sort the kept indices by decreasing score"]
        problems = oracles.nms_problems(inp["boxes"], inp["scores"], inp["iou_threshold"], keep) \
            if keep.dtype == torch.long else []
        return problems[:1]
