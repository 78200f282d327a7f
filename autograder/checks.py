"""
One check per graded TODO (one `### BEGIN SOLUTION` block each).

Every check has
- `make_inputs(ref, gen)`: seeded inputs per case (built once, into the fixtures);
- `run(ctx, case, inputs)`: runs the student's code on those inputs, in the
  sandboxed child, with every other TODO replaced by the reference;
- `problems(...)` / `hints(...)`: compare with the reference outputs in the
  grading parent and name the likely mistake.

A check's score is `points * (cases passed) / (cases)`.
"""
import itertools
import types
from typing import Any, Dict, List

import torch
from torch import nn

from .compare import compare, describe, matches
from .hooks import GraderError, LineHooks, StopRun, find_line, raised_between, set_locals

STRIDES = {"p3": 8, "p4": 16, "p5": 32}
FPN_CH = 8
IMG_H, IMG_W = 64, 96  # non-square on purpose: catches swapped x/y
FEAT_HW = {"p3": (8, 12), "p4": (4, 6), "p5": (2, 3)}
NUM_CLASSES = 5

CHECKS: Dict[str, "Check"] = {}
# (file, check names in the order of the file's solution blocks)
BLOCKS = {
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


def register(cls):
    CHECKS[cls.name] = cls()
    return cls


class Check:
    name = ""
    file = "two_stage_detector.py"
    points = 2.0
    todo = ""
    # Reference objects holding this TODO's solution: removed from the child's
    # memory before the student's code runs. ("tsd"|"common", "attr[.attr]")
    hides: List[tuple] = []
    # Student functions this check calls directly (not replaced by the reference).
    keep: tuple = ()
    atol = 1e-4
    rtol = 1e-4

    def make_inputs(self, ref, gen) -> Dict[str, Any]:
        raise NotImplementedError

    def run(self, ctx, case: str, inp: Any) -> Any:
        raise NotImplementedError

    def problems(self, case, got, exp, inp) -> List[str]:
        return compare(got, exp, atol=self.atol, rtol=self.rtol)

    def hints(self, case, got, exp, inp) -> List[str]:
        return []


# ---------------------------------------------------------------- helpers
def rand_boxes(gen, n, width=IMG_W, height=IMG_H, min_size=4.0, max_frac=0.6):
    """`(n, 4)` XYXY boxes inside a `width x height` image."""
    wh = min_size + torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * max_frac
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


def rand_gt(gen, batch=2, num=6, valid=(4, 2)):
    """`(batch, num, 5)` GT boxes padded with -1 rows, like the data loader."""
    gt = -torch.ones(batch, num, 5)
    for b in range(batch):
        k = valid[b % len(valid)]
        gt[b, :k, :4] = rand_boxes(gen, k, min_size=12.0)
        gt[b, :k, 4] = torch.randint(0, NUM_CLASSES, (k,), generator=gen).float()
    return gt


def rand_feats(gen, batch=2, channels=FPN_CH):
    return {k: torch.randn(batch, channels, h, w, generator=gen) for k, (h, w) in FEAT_HW.items()}


def module_spec(m: nn.Module) -> list:
    """Architecture of one layer as a plain list (what the parent compares)."""
    if isinstance(m, nn.Conv2d):
        pad = m.padding
        if isinstance(pad, str):
            pad = tuple(k // 2 for k in m.kernel_size) if pad == "same" else (0, 0)
        return ["Conv2d", m.in_channels, m.out_channels, list(m.kernel_size),
                list(m.stride), list(pad), m.bias is not None]
    if isinstance(m, nn.Linear):
        return ["Linear", m.in_features, m.out_features, m.bias is not None]
    if isinstance(m, nn.Flatten):
        return ["Flatten", m.start_dim, m.end_dim]
    if isinstance(m, nn.ReLU):
        return ["ReLU"]
    return [type(m).__name__]


def layers_of(module) -> List[nn.Module]:
    """Leaf layers of a Sequential/list of modules, in order."""
    out = []
    for m in (module if isinstance(module, (list, tuple)) else [module]):
        if isinstance(m, nn.Sequential):
            out += layers_of(list(m))
        elif isinstance(m, nn.Module):
            out.append(m)
    return out


def copy_params(layers: List[nn.Module], tensors: List[torch.Tensor], what: str):
    """Copy reference parameters into the student's layers, in order."""
    params = [p for m in layers for p in m.parameters(recurse=True)]
    shapes = [tuple(p.shape) for p in params]
    ref_shapes = [tuple(t.shape) for t in tensors]
    if shapes != ref_shapes:
        raise GraderError(
            f"{what}: parameter shapes {shapes} differ from the expected "
            f"{ref_shapes}, so the reference weights cannot be copied in."
        )
    with torch.no_grad():
        for p, t in zip(params, tensors):
            p.copy_(t)


def init_stats(layers) -> list:
    """[(weight std, max |bias|)] of every conv layer."""
    return [[float(m.weight.detach().std()),
             float(m.bias.detach().abs().max()) if m.bias is not None else 0.0]
            for m in layers if isinstance(m, nn.Conv2d)]


def init_problems(got, exp) -> List[str]:
    if not isinstance(got, list) or not got or len(got) != len(exp):
        return [f"init: found {len(got) if isinstance(got, list) else 0} conv layers, "
                f"expected {len(exp)}"]
    out = []
    for i, (std, bias) in enumerate(got):
        if not 0.0085 <= std <= 0.0115:
            out.append(f"init: conv {i} weight std is {std:.4g}; initialize with "
                       "nn.init.normal_(weight, mean=0, std=0.01)")
        if bias != 0.0:
            out.append(f"init: conv {i} has a non-zero bias (max |b| = {bias:.3g}); "
                       "use nn.init.zeros_(bias)")
    return out


def new_instance(cls, *args, capture=None, **kwargs):
    """
    Build `cls(*args, **kwargs)` but keep the half-built object when its
    `__init__` raises (so an error in a later TODO of the same `__init__`
    does not hide the earlier ones). Returns (obj, error or None).
    """
    obj = cls.__new__(cls)
    try:
        cls.__init__(obj, *args, **kwargs)
        return obj, None
    except Exception as error:  # noqa: BLE001 - reported as feedback
        return obj, error


class StubBackbone(nn.Module):
    """Stands in for the RegNet + FPN: returns fixed features."""

    def __init__(self, feats, out_channels=FPN_CH):
        super().__init__()
        self.feats = feats
        self.out_channels = out_channels

    @property
    def fpn_strides(self):
        return dict(STRIDES)

    def forward(self, images):
        return {k: v.clone() for k, v in self.feats.items()}


class StubRPN(nn.Module):
    """Stands in for the RPN of FasterRCNN: returns fixed proposals."""

    def __init__(self, proposals):
        super().__init__()
        self.proposals = proposals

    def forward(self, feats, strides, gt_boxes=None):
        return {
            "proposals": {k: [p.clone() for p in v] for k, v in self.proposals.items()},
            "loss_rpn_obj": torch.tensor(0.0),
            "loss_rpn_box": torch.tensor(0.0),
        }


class StubCNN(nn.Module):
    """Stands in for RegNet inside DetectorBackboneWithFPN."""

    def __init__(self, c_feats):
        super().__init__()
        self.c_feats = c_feats

    def forward(self, images):
        return {k: v.clone() for k, v in self.c_feats.items()}


def swap_class(obj, cls):
    """Give a reference-built module the student's class (their methods)."""
    try:
        obj.__class__ = cls
    except TypeError as error:
        raise GraderError(f"cannot use your class {cls.__name__}: {error}")
    return obj


# ============================================================ common.py
C_CHANNELS = {"c3": 64, "c4": 160, "c5": 400}  # RegNet-X 400MF
C_HW = {"c3": (8, 12), "c4": (4, 6), "c5": (2, 3)}


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
        return {"out_channels_8": {"out_channels": FPN_CH},
                "out_channels_16": {"out_channels": 16}}

    def run(self, ctx, case, inp):
        obj, error = new_instance(ctx.common.DetectorBackboneWithFPN,
                                  inp["out_channels"], pretrained=False)
        if error is not None and not hasattr(obj, "fpn_params"):
            raise error
        return fpn_param_specs(obj)

    def hints(self, case, got, exp, inp):
        if isinstance(got, list) and any(s[0] == "Conv2d" and s[3] == [3, 3] and s[5] == [0, 0] for s in got):
            return ["the 3x3 output convs need padding=1 to keep the feature size"]
        return []


@register
class FPNForward(Check):
    name, file, points = "fpn_forward", "common.py", 3.0
    todo = "DetectorBackboneWithFPN.forward: top-down pathway"
    hides = [("common", "DetectorBackboneWithFPN.forward")]

    def make_inputs(self, ref, gen):
        torch.manual_seed(1)
        weights = {}
        for level, name in (("3", "c3"), ("4", "c4"), ("5", "c5")):
            weights[f"lateral{level}"] = [torch.randn(FPN_CH, C_CHANNELS[name], 1, 1, generator=gen) * 0.1,
                                          torch.randn(FPN_CH, generator=gen)]
            weights[f"output{level}"] = [torch.randn(FPN_CH, FPN_CH, 3, 3, generator=gen) * 0.1,
                                         torch.randn(FPN_CH, generator=gen)]
        c_feats = {k: torch.randn(2, C_CHANNELS[k], *C_HW[k], generator=gen) for k in C_CHANNELS}
        return {"forward": {"weights": weights, "c_feats": c_feats}}

    def run(self, ctx, case, inp):
        obj, error = new_instance(ctx.common.DetectorBackboneWithFPN, FPN_CH, pretrained=False)
        if not isinstance(getattr(obj, "fpn_params", None), nn.Module):
            raise error or GraderError("self.fpn_params is missing")
        obj.backbone = StubCNN(inp["c_feats"])
        convs = [m for m in obj.fpn_params.modules() if isinstance(m, nn.Conv2d)]
        lateral, output = {}, []
        for m in convs:
            if m.kernel_size == (1, 1):
                lateral[m.in_channels] = m
            else:
                output.append(m)
        w = inp["weights"]
        if sorted(lateral) != sorted(C_CHANNELS.values()) or len(output) != 3:
            raise GraderError(
                "fpn_params must hold three 1x1 lateral convs (for 64, 160 and 400 "
                f"input channels) and three 3x3 output convs; found 1x1 convs for "
                f"{sorted(lateral)} input channels and {len(output)} other convs"
            )
        for level, name in (("3", "c3"), ("4", "c4"), ("5", "c5")):
            copy_params([lateral[C_CHANNELS[name]]], w[f"lateral{level}"], f"lateral conv of {name}")
        # Which 3x3 conv serves which level is the student's naming: try all.
        outs = []
        for perm in itertools.permutations(range(3)):
            for level, idx in zip("345", perm):
                copy_params([output[idx]], w[f"output{level}"], "3x3 output conv")
            with torch.no_grad():
                outs.append(obj(torch.zeros(2, 3, IMG_H, IMG_W)))
        return outs

    def problems(self, case, got, exp, inp):
        # `exp` is the reference's list over the 6 assignments; the reference
        # names its layers by level, so its first entry is the right one.
        if not isinstance(got, list) or len(got) != 6:
            return compare(got, exp)
        best = min((compare(g, exp[0]) for g in got), key=len)
        return best

    def hints(self, case, got, exp, inp):
        return []


@register
class FPNLocationCoords(Check):
    name, file, points = "fpn_location_coords", "common.py", 2.0
    todo = "get_fpn_location_coords"
    hides = [("common", "get_fpn_location_coords"), ("tsd", "get_fpn_location_coords")]

    def make_inputs(self, ref, gen):
        return {
            "nonsquare": {"shapes": {k: (2, FPN_CH, h, w) for k, (h, w) in FEAT_HW.items()},
                          "strides": dict(STRIDES)},
            "224": {"shapes": {"p3": (1, 64, 28, 28), "p4": (1, 64, 14, 14), "p5": (1, 64, 7, 7)},
                    "strides": dict(STRIDES)},
        }

    def run(self, ctx, case, inp):
        shapes = {k: torch.Size(v) for k, v in inp["shapes"].items()}
        return ctx.common.get_fpn_location_coords(shapes, inp["strides"])

    def hints(self, case, got, exp, inp):
        hints = []
        if not isinstance(got, dict):
            return hints
        if matches({k: v.flip(1) for k, v in exp.items()}, got):
            hints.append("x and y are swapped: each row must be (xc, yc)")
        transposed = {}
        for k, v in exp.items():
            h, w = inp["shapes"][k][-2:]
            transposed[k] = v.view(h, w, 2).transpose(0, 1).reshape(-1, 2)
        if matches(transposed, got):
            hints.append("locations are in column-major order; flatten row by row "
                         "(x varies fastest), like a (H, W) feature map flattens")
        stride_off = {k: v - 0.5 * inp["strides"][k] for k, v in exp.items()}
        if matches(stride_off, got):
            hints.append("missing the +0.5 offset: use the centre of each cell")
        return hints


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

    def hints(self, case, got, exp, inp):
        keep = got.get("keep") if isinstance(got, dict) else None
        if isinstance(keep, torch.Tensor) and keep.shape == exp["keep"].shape and not keep.dtype == torch.long:
            return ["return indices as a torch.long tensor"]
        if isinstance(keep, torch.Tensor) and set(keep.tolist()) == set(exp["keep"].tolist()):
            return ["right boxes, wrong order: sort the kept indices by decreasing score"]
        return []


# ====================================================== RPN prediction net
RPN_STEM = [16, 16]
NUM_ANCHORS = 3


def rpn_pred_net_ref_weights(ref, gen):
    torch.manual_seed(2)
    net = ref.tsd.RPNPredictionNetwork(FPN_CH, RPN_STEM, NUM_ANCHORS)
    with torch.no_grad():
        for p in net.parameters():  # non-zero biases too: catches bias=False
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return net


@register
class RPNPredNetStem(Check):
    name, points = "rpn_pred_net_stem", 2.0
    todo = "RPNPredictionNetwork.__init__: the stem"
    hides = [("tsd", "RPNPredictionNetwork.__init__")]

    def make_inputs(self, ref, gen):
        net = rpn_pred_net_ref_weights(ref, gen)
        x = torch.randn(2, FPN_CH, 5, 7, generator=gen)
        stem = [p.detach().clone() for p in net.stem_rpn.parameters()]
        return {"structure": {}, "output": {"params": stem, "x": x}, "init": {}}

    def run(self, ctx, case, inp):
        obj, error = new_instance(ctx.tsd.RPNPredictionNetwork, FPN_CH, RPN_STEM, NUM_ANCHORS)
        stem = getattr(obj, "stem_rpn", None)
        if not isinstance(stem, nn.Module):
            raise error or GraderError("self.stem_rpn is missing")
        layers = layers_of(stem)
        if case == "structure":
            return [module_spec(m) for m in layers]
        if case == "init":
            return init_stats(layers)
        copy_params(layers, inp["params"], "stem_rpn")
        with torch.no_grad():
            return stem(inp["x"])

    def problems(self, case, got, exp, inp):
        if case == "init":
            return init_problems(got, exp)
        return super().problems(case, got, exp, inp)

    def hints(self, case, got, exp, inp):
        if case == "structure" and isinstance(got, list) and got and got[-1] != ["ReLU"]:
            return ["every conv of the stem is followed by a ReLU"]
        return []


@register
class RPNPredNetHeads(Check):
    name, points = "rpn_pred_net_heads", 1.0
    todo = "RPNPredictionNetwork.__init__: objectness and box heads"
    hides = [("tsd", "RPNPredictionNetwork.__init__")]

    def make_inputs(self, ref, gen):
        net = rpn_pred_net_ref_weights(ref, gen)
        x = torch.randn(2, RPN_STEM[-1], 5, 7, generator=gen)
        return {"structure": {},
                "output": {"obj": [p.detach().clone() for p in net.pred_obj.parameters()],
                           "box": [p.detach().clone() for p in net.pred_box.parameters()],
                           "x": x}}

    def run(self, ctx, case, inp):
        cls = ctx.tsd.RPNPredictionNetwork
        obj, error = new_instance(cls, FPN_CH, RPN_STEM, NUM_ANCHORS)
        after = find_line(cls.__init__, "stem_rpn = []")
        target = find_line(cls.__init__, "self.stem_rpn = nn.Sequential(*stem_rpn)")
        if error is not None and raised_between(error, cls.__init__, after, target):
            # The stem raised: build the heads again with a stand-in stem.
            def stem(frame):
                layers, prev = [], FPN_CH
                for c in RPN_STEM:
                    layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU()]
                    prev = c
                set_locals(frame, stem_rpn=layers)
                # The reference heads read `prev_channels` from the stem block;
                # without that block it is not even a local of this code.
                if "prev_channels" in frame.f_code.co_varnames:
                    set_locals(frame, prev_channels=prev)
                else:
                    frame.f_globals.setdefault("prev_channels", prev)

            with LineHooks(cls.__init__, {}, skips=[(after, target, stem)]):
                obj, error = new_instance(cls, FPN_CH, RPN_STEM, NUM_ANCHORS)
        heads = [getattr(obj, "pred_obj", None), getattr(obj, "pred_box", None)]
        if not all(isinstance(h, nn.Module) for h in heads):
            if error is not None:
                raise error
            return {"pred_obj": describe(heads[0]), "pred_box": describe(heads[1])}
        if case == "structure":
            return {"pred_obj": [module_spec(m) for m in layers_of(heads[0])],
                    "pred_box": [module_spec(m) for m in layers_of(heads[1])]}
        copy_params(layers_of(heads[0]), inp["obj"], "pred_obj")
        copy_params(layers_of(heads[1]), inp["box"], "pred_box")
        with torch.no_grad():
            return {"pred_obj": heads[0](inp["x"]), "pred_box": heads[1](inp["x"])}


@register
class RPNPredNetForward(Check):
    name, points = "rpn_pred_net_forward", 2.0
    todo = "RPNPredictionNetwork.forward"
    hides = [("tsd", "RPNPredictionNetwork.forward")]

    def make_inputs(self, ref, gen):
        net = rpn_pred_net_ref_weights(ref, gen)
        return {"forward": {"state": {k: v.clone() for k, v in net.state_dict().items()},
                            "feats": rand_feats(gen)}}

    def run(self, ctx, case, inp):
        torch.manual_seed(0)
        net = ctx.ref_tsd.RPNPredictionNetwork(FPN_CH, RPN_STEM, NUM_ANCHORS)
        net.load_state_dict(inp["state"])
        swap_class(net, ctx.tsd.RPNPredictionNetwork)
        with torch.no_grad():
            return net(inp["feats"])

    def hints(self, case, got, exp, inp):
        if isinstance(got, (list, tuple)) and len(got) == 2 and isinstance(got[0], dict):
            logits = got[0].get("p3")
            ref = exp[0]["p3"]
            if isinstance(logits, torch.Tensor) and logits.shape == ref.shape:
                b, hwa = ref.shape
                h, w = FEAT_HW["p3"]
                alt = ref.view(b, h, w, NUM_ANCHORS).permute(0, 3, 1, 2).reshape(b, -1)
                if matches(logits, alt):
                    return ["permute (B, A, H, W) to (B, H, W, A) before flattening, so "
                            "that the anchors of one location are contiguous"]
        return []


# ================================================================ box ops
@register
class GenerateFPNAnchors(Check):
    name, points = "generate_fpn_anchors", 3.0
    keep = ("generate_fpn_anchors",)
    todo = "generate_fpn_anchors"
    hides = [("tsd", "generate_fpn_anchors")]

    def make_inputs(self, ref, gen):
        shapes = {k: (2, FPN_CH, h, w) for k, (h, w) in FEAT_HW.items()}
        locations = ref.common.get_fpn_location_coords(shapes, STRIDES)
        return {"default": {"locations": locations, "stride_scale": 4, "aspect_ratios": [0.5, 1.0, 2.0]},
                "other_ratios": {"locations": locations, "stride_scale": 8, "aspect_ratios": [0.25, 1.0, 3.0, 1.5]}}

    def run(self, ctx, case, inp):
        return ctx.tsd.generate_fpn_anchors(inp["locations"], dict(STRIDES), inp["stride_scale"], inp["aspect_ratios"])

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict):
            return []
        flipped = {}
        for k, v in exp.items():
            ctr = (v[:, :2] + v[:, 2:]) / 2
            half = (v[:, 2:] - v[:, :2]).flip(1) / 2
            flipped[k] = torch.cat([ctr - half, ctr + half], dim=1)
        if matches(flipped, got):
            return ["aspect ratio inverted: width = sqrt(area / aspect_ratio), height = area / width"]
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
                "one_to_many": {"boxes1": rand_boxes(gen, 1), "boxes2": rand_boxes(gen, 50)}}

    def run(self, ctx, case, inp):
        return ctx.tsd.iou(inp["boxes1"], inp["boxes2"])

    def hints(self, case, got, exp, inp):
        if isinstance(got, torch.Tensor) and got.shape == exp.shape and (got < 0).any():
            return ["negative IoU: clamp the intersection width and height at 0"]
        if isinstance(got, torch.Tensor) and got.shape == exp.shape[::-1]:
            return ["result is transposed: iou[i, j] compares boxes1[i] with boxes2[j]"]
        return []


def matched_gt_rows(gen, n):
    """(n, 4) matched GT boxes with background (-1) and neutral (-1e8) rows."""
    gt = rand_boxes(gen, n)
    gt[1::5] = -1.0
    gt[3::7] = -1e8
    return gt


@register
class GetDeltas(Check):
    name, points = "rcnn_get_deltas_from_anchors", 2.0
    keep = ("rcnn_get_deltas_from_anchors",)
    todo = "rcnn_get_deltas_from_anchors"
    hides = [("tsd", "rcnn_get_deltas_from_anchors")]

    def make_inputs(self, ref, gen):
        return {"foreground": {"anchors": rand_boxes(gen, 40), "gt": rand_boxes(gen, 40)},
                "background_neutral": {"anchors": rand_boxes(gen, 40), "gt": matched_gt_rows(gen, 40)}}

    def run(self, ctx, case, inp):
        return ctx.tsd.rcnn_get_deltas_from_anchors(inp["anchors"].clone(), inp["gt"].clone())

    def hints(self, case, got, exp, inp):
        if not isinstance(got, torch.Tensor) or got.shape != exp.shape:
            return []
        ignore = (exp == -1e8).all(dim=1)
        if ignore.any() and not torch.allclose(got[ignore], exp[ignore]):
            return ["deltas of background (-1) and neutral (-1e8) GT boxes must be -1e8"]
        fg = ~ignore
        if matches(got[fg][:, :2], exp[fg][:, :2]) and not matches(got[fg][:, 2:], exp[fg][:, 2:]):
            return ["dw, dh are log(gt_size / anchor_size)"]
        return []


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
                "large_scale": {"deltas": big, "anchors": rand_boxes(gen, 40)}}

    def run(self, ctx, case, inp):
        return ctx.tsd.rcnn_apply_deltas_to_anchors(inp["deltas"].clone(), inp["anchors"].clone())


# ==================================================================== RPN
RPN_KW = dict(fpn_channels=FPN_CH, stem_channels=[8], batch_size_per_image=16,
              anchor_stride_scale=4, anchor_iou_thresholds=(0.3, 0.6),
              nms_thresh=0.7, pre_nms_topk=50, post_nms_topk=10)


def ref_rpn_state(ref, gen):
    torch.manual_seed(3)
    rpn = ref.tsd.RPN(**RPN_KW)
    with torch.no_grad():
        for p in rpn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return {k: v.clone() for k, v in rpn.state_dict().items()}


def build_rpn(ctx, state):
    torch.manual_seed(0)
    rpn = ctx.ref_tsd.RPN(**RPN_KW)
    rpn.load_state_dict(state)
    return swap_class(rpn, ctx.tsd.RPN)


def ref_rpn_parts(ref, state, feats, gt):
    """Reference values of the RPN.forward blocks (used as isolation inputs)."""
    torch.manual_seed(0)
    rpn = ref.tsd.RPN(**RPN_KW)
    rpn.load_state_dict(state)
    with torch.no_grad():
        logits, deltas = rpn.pred_net(feats)
        shapes = {k: v.shape for k, v in feats.items()}
        locs = ref.common.get_fpn_location_coords(shapes, STRIDES)
        anchors = ref.tsd.generate_fpn_anchors(locs, STRIDES, RPN_KW["anchor_stride_scale"])
        all_anchors = torch.cat(list(anchors.values()))
        matched = [ref.tsd.rcnn_match_anchors_to_gt(all_anchors, g, RPN_KW["anchor_iou_thresholds"]) for g in gt]
    return {"pred_obj_logits": logits, "pred_boxreg_deltas": deltas,
            "anchors_per_fpn_level": anchors, "matched_gt_boxes": matched}


def run_rpn_forward(ctx, inp, capture_matching=False, replace_matching=False):
    """
    Run the student's RPN.forward (training) with the reference values in
    place of the earlier blocks' results. If an earlier block raises, run
    again with that block skipped, so its bug costs only its own check.
    """
    try:
        return _run_rpn_forward(ctx, inp, capture_matching, replace_matching, skip=False)
    except StopRun:
        raise
    except BaseException as error:  # noqa: BLE001
        fwd = ctx.tsd.RPN.forward
        first = find_line(fwd, 'num_images = feats_per_fpn_level["p3"].shape[0]')
        last = find_line(fwd, "matched_gt_boxes = torch.stack(matched_gt_boxes" if replace_matching
                         else "output_dict = {}")
        if not raised_between(error, fwd, first, last):
            raise
        return _run_rpn_forward(ctx, inp, capture_matching, replace_matching, skip=True)


def _run_rpn_forward(ctx, inp, capture_matching, replace_matching, skip):
    rpn = build_rpn(ctx, inp["state"])
    parts = inp["parts"]
    fwd = ctx.tsd.RPN.forward
    captured = {}

    def after_anchors(frame):
        set_locals(frame, pred_obj_logits={k: v.clone() for k, v in parts["pred_obj_logits"].items()},
                   pred_boxreg_deltas={k: v.clone() for k, v in parts["pred_boxreg_deltas"].items()},
                   anchors_per_fpn_level={k: v.clone() for k, v in parts["anchors_per_fpn_level"].items()})

    def ref_matching(frame):
        set_locals(frame, matched_gt_boxes=[m.clone() for m in parts["matched_gt_boxes"]])

    def at_stack(frame):
        if capture_matching:
            captured["matched"] = frame.f_locals.get("matched_gt_boxes", "<not defined>")
            raise StopRun
        if replace_matching:
            ref_matching(frame)

    out_line = find_line(fwd, "output_dict = {}")
    stack_line = find_line(fwd, "matched_gt_boxes = torch.stack(matched_gt_boxes")
    actions = {out_line: after_anchors, stack_line: at_stack}
    skips = []
    if skip:
        skips.append((find_line(fwd, 'num_images = feats_per_fpn_level["p3"].shape[0]'), out_line, after_anchors))
        if replace_matching:
            skips.append((find_line(fwd, "matched_gt_boxes = []"), stack_line, ref_matching))
    # The proposals are another TODO: use the reference's.
    rpn.predict_proposals = types.MethodType(ctx.ref_tsd.RPN.__dict__["predict_proposals"], rpn)
    rpn.train()
    try:
        with LineHooks(fwd, actions, skips=skips):
            out = rpn(inp["feats"], dict(STRIDES), inp["gt"])
    except StopRun:
        return captured["matched"]
    return out


@register
class RPNForwardAnchors(Check):
    name, points = "rpn_forward_anchors", 1.0
    todo = "RPN.forward: predictions and anchors"
    hides = [("tsd", "RPN.forward")]

    def make_inputs(self, ref, gen):
        state = ref_rpn_state(ref, gen)
        return {"forward": {"state": state, "feats": rand_feats(gen)}}

    def run(self, ctx, case, inp):
        rpn = build_rpn(ctx, inp["state"])
        fwd = ctx.tsd.RPN.forward
        captured = {}

        def grab(frame):
            loc = frame.f_locals
            for key in ("pred_obj_logits", "pred_boxreg_deltas", "anchors_per_fpn_level"):
                captured[key] = loc.get(key, "<not defined>")
            raise StopRun

        rpn.eval()
        try:
            with LineHooks(fwd, {find_line(fwd, "output_dict = {}"): grab}):
                rpn(inp["feats"], dict(STRIDES))
        except StopRun:
            pass
        if not captured:
            raise GraderError("RPN.forward never reached `output_dict = {}`")
        return captured


@register
class RPNForwardMatching(Check):
    name, points = "rpn_forward_matching", 1.0
    todo = "RPN.forward: match anchors with GT boxes"
    hides = [("tsd", "RPN.forward")]

    def make_inputs(self, ref, gen):
        state = ref_rpn_state(ref, gen)
        feats, gt = rand_feats(gen), rand_gt(gen)
        parts = ref_rpn_parts(ref, state, feats, gt)
        parts.pop("matched_gt_boxes")
        return {"forward": {"state": state, "feats": feats, "gt": gt, "parts": parts}}

    def run(self, ctx, case, inp):
        return run_rpn_forward(ctx, inp, capture_matching=True)

    def problems(self, case, got, exp, inp):
        if isinstance(got, torch.Tensor):  # already stacked: fine too
            return compare(got, torch.stack(exp), where="matched_gt_boxes")
        return compare(got, exp, where="matched_gt_boxes")


@register
class RPNForwardLoss(Check):
    name, points = "rpn_forward_loss", 3.0
    todo = "RPN.forward: sampling and losses"
    hides = [("tsd", "RPN.forward")]

    def make_inputs(self, ref, gen):
        cases = {}
        for case in ("batch", "no_gt_in_second_image"):
            state = ref_rpn_state(ref, gen)
            feats = rand_feats(gen)
            gt = rand_gt(gen, valid=(4, 0) if case != "batch" else (4, 2))
            parts = ref_rpn_parts(ref, state, feats, gt)
            cases[case] = {"state": state, "feats": feats, "gt": gt, "parts": parts}
        return cases

    def run(self, ctx, case, inp):
        out = run_rpn_forward(ctx, inp, replace_matching=True)
        if not isinstance(out, dict):
            return out
        return {k: out.get(k) for k in ("loss_rpn_obj", "loss_rpn_box")}

    def hints(self, case, got, exp, inp):
        if isinstance(got, dict) and matches(got.get("loss_rpn_obj"), exp["loss_rpn_obj"]) \
                and not matches(got.get("loss_rpn_box"), exp["loss_rpn_box"]):
            return ["box loss: L1 between predicted and GT deltas, with the loss of "
                    "background anchors (GT deltas -1e8) set to 0"]
        return []


@register
class RPNPredictProposals(Check):
    name, points = "rpn_predict_proposals", 3.0
    todo = "RPN.predict_proposals"
    hides = [("tsd", "RPN.predict_proposals")]

    def make_inputs(self, ref, gen):
        state = ref_rpn_state(ref, gen)
        shapes = {k: (2, FPN_CH, h, w) for k, (h, w) in FEAT_HW.items()}
        locs = ref.common.get_fpn_location_coords(shapes, STRIDES)
        anchors = ref.tsd.generate_fpn_anchors(locs, STRIDES, 4)
        logits = {k: torch.randn(2, len(v), generator=gen) for k, v in anchors.items()}
        deltas = {k: torch.randn(2, len(v), 4, generator=gen) * 0.3 for k, v in anchors.items()}
        return {"proposals": {"state": state, "anchors": anchors, "logits": logits, "deltas": deltas}}

    def run(self, ctx, case, inp):
        rpn = build_rpn(ctx, inp["state"])
        rpn.eval()
        return rpn.predict_proposals(inp["anchors"], inp["logits"], inp["deltas"], (IMG_W, IMG_H))

    def hints(self, case, got, exp, inp):
        hints = []
        if isinstance(got, dict):
            for props in got.values():
                for p in (props if isinstance(props, list) else []):
                    if isinstance(p, torch.Tensor) and p.numel() and (
                            (p < 0).any() or (p[:, 0::2] > IMG_W).any() or (p[:, 1::2] > IMG_H).any()):
                        return ["proposals outside the image: clamp x to [0, width] and y to [0, height]"]
            lens = [len(p) for v in got.values() if isinstance(v, list) for p in v]
            if lens and max(lens) > RPN_KW["post_nms_topk"]:
                hints.append("keep at most post_nms_topk proposals per image and level after NMS")
        return hints


# ============================================================ Faster R-CNN
FRCNN_STEM = [8]
FRCNN_BATCH = 8


def frcnn_inputs(ref, gen, with_state=True):
    feats = rand_feats(gen)
    proposals = {k: [rand_boxes(gen, 5) for _ in range(2)] for k in FEAT_HW}
    gt = rand_gt(gen)
    torch.manual_seed(4)
    model = ref.tsd.FasterRCNN(StubBackbone(feats), StubRPN(proposals), FRCNN_STEM, NUM_CLASSES, FRCNN_BATCH)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return {"feats": feats, "proposals": proposals, "gt": gt,
            "state": {k: v.clone() for k, v in model.state_dict().items()}}, model


def build_frcnn(ctx, inp):
    torch.manual_seed(0)
    model = ctx.ref_tsd.FasterRCNN(StubBackbone(inp["feats"]), StubRPN(inp["proposals"]),
                                   FRCNN_STEM, NUM_CLASSES, FRCNN_BATCH)
    model.load_state_dict(inp["state"])
    return swap_class(model, ctx.tsd.FasterRCNN)


def images_for(inp):
    return torch.zeros(inp["gt"].shape[0], 3, IMG_H, IMG_W)


def student_cls_layers(ctx):
    """The student's `cls_pred` layers, even if a later TODO of __init__ raised."""
    cls = ctx.tsd.FasterRCNN
    init = cls.__init__
    captured = {}

    def grab(frame):
        if isinstance(frame.f_locals.get("cls_pred"), list):
            captured["cls_pred"] = list(frame.f_locals["cls_pred"])

    actions = {find_line(init, "self.cls_pred = nn.Sequential(*cls_pred)"): grab}
    with LineHooks(init, actions, on_exception=grab):
        obj, error = new_instance(cls, StubBackbone({}), StubRPN({}), FRCNN_STEM, NUM_CLASSES, FRCNN_BATCH)
    if isinstance(getattr(obj, "cls_pred", None), nn.Module):
        return layers_of(obj.cls_pred)
    if "cls_pred" in captured:
        return layers_of(captured["cls_pred"])
    raise error or GraderError("cls_pred was never built")


def split_stem_head(layers):
    for i, m in enumerate(layers):
        if isinstance(m, (nn.Flatten, nn.Linear)):
            return layers[:i], layers[i:]
    return layers, []


@register
class FasterRCNNClsStem(Check):
    name, points = "faster_rcnn_cls_stem", 1.0
    todo = "FasterRCNN.__init__: the classifier stem"
    hides = [("tsd", "FasterRCNN.__init__")]

    def make_inputs(self, ref, gen):
        base, model = frcnn_inputs(ref, gen)
        stem, _ = split_stem_head(layers_of(model.cls_pred))
        params = [p.detach().clone() for m in stem for p in m.parameters()]
        return {"structure": {}, "init": {},
                "output": {"params": params, "x": torch.randn(6, FPN_CH, 7, 7, generator=gen)}}

    def run(self, ctx, case, inp):
        stem, _ = split_stem_head(student_cls_layers(ctx))
        if case == "structure":
            return [module_spec(m) for m in stem]
        if case == "init":
            return init_stats(stem)
        copy_params(stem, inp["params"], "classifier stem")
        with torch.no_grad():
            return nn.Sequential(*stem)(inp["x"])

    def problems(self, case, got, exp, inp):
        if case == "init":
            return init_problems(got, exp)
        return super().problems(case, got, exp, inp)


@register
class FasterRCNNClsHead(Check):
    name, points = "faster_rcnn_cls_head", 1.0
    todo = "FasterRCNN.__init__: Flatten + Linear to C+1 logits"
    hides = [("tsd", "FasterRCNN.__init__")]

    def make_inputs(self, ref, gen):
        base, model = frcnn_inputs(ref, gen)
        _, head = split_stem_head(layers_of(model.cls_pred))
        params = [p.detach().clone() for m in head for p in m.parameters()]
        return {"structure": {},
                "output": {"params": params, "x": torch.randn(6, FRCNN_STEM[-1], 7, 7, generator=gen)}}

    def run(self, ctx, case, inp):
        _, head = split_stem_head(student_cls_layers(ctx))
        if case == "structure":
            return [module_spec(m) for m in head]
        copy_params(head, inp["params"], "classifier head")
        with torch.no_grad():
            return nn.Sequential(*head)(inp["x"])

    def hints(self, case, got, exp, inp):
        if case == "structure" and isinstance(got, list) and any(
                s[0] == "Linear" and s[2] == NUM_CLASSES for s in got):
            return ["the linear layer outputs num_classes + 1 logits (background too)"]
        return []


@register
class FasterRCNNRoIAlign(Check):
    name, points = "faster_rcnn_roi_align", 2.0
    todo = "FasterRCNN.forward: torchvision.ops.roi_align per FPN level"
    hides = [("tsd", "FasterRCNN.forward")]

    def make_inputs(self, ref, gen):
        base, _ = frcnn_inputs(ref, gen)
        return {"forward": base}

    def run(self, ctx, case, inp):
        model = build_frcnn(ctx, inp)
        fwd = ctx.tsd.FasterRCNN.forward
        captured = []

        def grab(frame):
            captured.append(frame.f_locals.get("roi_feats", "<not defined>"))

        def stop(frame):
            raise StopRun

        actions = {find_line(fwd, "roi_feats_per_fpn_level[level_name] = roi_feats"): grab,
                   find_line(fwd, "roi_feats = self._cat_per_image("): stop}
        model.eval()
        try:
            with LineHooks(fwd, actions):
                model(images_for(inp), test_score_thresh=0.5, test_nms_thresh=0.5)
        except StopRun:
            pass
        return captured

    def hints(self, case, got, exp, inp):
        import torchvision

        if not isinstance(got, list) or len(got) != 3:
            return []
        for level, g in zip(FEAT_HW, got):
            feats, props, s = inp["feats"][level], inp["proposals"][level], STRIDES[level]
            variants = {
                "spatial_scale must be 1 / stride of the level (features are smaller than the image)":
                    dict(spatial_scale=float(s), aligned=True),
                "use aligned=True": dict(spatial_scale=1.0 / s, aligned=False),
            }
            for hint, kw in variants.items():
                alt = torchvision.ops.roi_align(feats, props, output_size=(7, 7), **kw)
                if matches(g, alt):
                    return [hint]
        return []


@register
class FasterRCNNMatching(Check):
    name, points = "faster_rcnn_matching", 1.0
    todo = "FasterRCNN.forward: match proposals with GT boxes"
    hides = [("tsd", "FasterRCNN.forward")]

    def make_inputs(self, ref, gen):
        base, model = frcnn_inputs(ref, gen)
        base["parts"] = frcnn_ref_parts(ref, model, base)
        del base["parts"]["matched"]
        return {"forward": base}

    def run(self, ctx, case, inp):
        model = build_frcnn(ctx, inp)
        fwd = ctx.tsd.FasterRCNN.forward
        captured = {}

        def grab(frame):
            captured["matched"] = frame.f_locals.get("matched_gt_boxes", "<not defined>")
            raise StopRun

        roi_actions, roi_skip = roi_align_replacement(fwd, inp["parts"])
        actions = {find_line(fwd, "matched_gt_boxes = torch.cat(matched_gt_boxes"): grab, **roi_actions}

        def run(skips):
            model.train()
            try:
                with LineHooks(fwd, actions, skips=[roi_skip] if skips is None else skips):
                    model(images_for(inp), inp["gt"])
            except StopRun:
                pass

        run_skipping_roi_align(fwd, run)
        if not captured:
            raise GraderError("FasterRCNN.forward never reached the matched GT boxes")
        return captured["matched"]

    def problems(self, case, got, exp, inp):
        if isinstance(got, torch.Tensor):  # already concatenated: fine too
            return compare(got, torch.cat(exp), where="matched_gt_boxes")
        return compare(got, exp, where="matched_gt_boxes")


def frcnn_ref_parts(ref, model, inp):
    """Reference RoI features and matches (isolation inputs for the loss)."""
    import torchvision

    feats, gt = inp["feats"], inp["gt"]
    props = {k: [p.clone() for p in v] for k, v in inp["proposals"].items()}
    props = ref.tsd.mix_gt_with_proposals(props, gt)
    roi = {k: torchvision.ops.roi_align(feats[k], props[k], (7, 7), 1.0 / STRIDES[k], aligned=True) for k in feats}
    roi_feats = ref.tsd.FasterRCNN._cat_per_image(roi, props)
    matched = []
    for i in range(len(gt)):
        p = torch.cat([props[k][i] for k in props])
        matched.append(ref.tsd.rcnn_match_anchors_to_gt(p, gt[i], (0.5, 0.5)))
    return {"roi_feats": roi_feats, "roi_per_level": [roi[k] for k in feats], "matched": matched}


def roi_align_replacement(fwd, parts):
    """Line hook and skip: the reference RoI features, level by level."""
    per_level = dict(zip(FEAT_HW, parts["roi_per_level"]))

    def replace(frame):
        set_locals(frame, roi_feats=per_level[frame.f_locals["level_name"]].clone())

    target = find_line(fwd, "roi_feats_per_fpn_level[level_name] = roi_feats")
    after = find_line(fwd, "level_stride = self.backbone.fpn_strides[level_name]")
    return {target: replace}, (after, target, replace)


def run_skipping_roi_align(fwd, run):
    """`run(skips)`; if the student's RoI-Align block raises, again without it."""
    try:
        return run([])
    except StopRun:
        raise
    except BaseException as error:  # noqa: BLE001
        after = find_line(fwd, "level_stride = self.backbone.fpn_strides[level_name]")
        target = find_line(fwd, "roi_feats_per_fpn_level[level_name] = roi_feats")
        if not raised_between(error, fwd, after, target):
            raise
        return run(None)


@register
class FasterRCNNLoss(Check):
    name, points = "faster_rcnn_loss", 2.0
    todo = "FasterRCNN.forward: sampling and classification loss"
    hides = [("tsd", "FasterRCNN.forward")]

    def make_inputs(self, ref, gen):
        cases = {}
        for case in ("batch", "second_batch"):
            base, model = frcnn_inputs(ref, gen)
            base["parts"] = frcnn_ref_parts(ref, model, base)
            cases[case] = base
        return cases

    def run(self, ctx, case, inp):
        model = build_frcnn(ctx, inp)
        fwd = ctx.tsd.FasterRCNN.forward
        parts = inp["parts"]

        def roi(frame):
            set_locals(frame, roi_feats=parts["roi_feats"].clone())

        def matched(frame):
            set_locals(frame, matched_gt_boxes=[m.clone() for m in parts["matched"]])

        roi_actions, roi_skip = roi_align_replacement(fwd, parts)
        actions = {find_line(fwd, "pred_cls_logits = self.cls_pred(roi_feats)"): roi,
                   find_line(fwd, "matched_gt_boxes = torch.cat(matched_gt_boxes"): matched, **roi_actions}

        def run(skips):
            model.train()
            with LineHooks(fwd, actions, skips=[roi_skip] if skips is None else skips):
                return model(images_for(inp), inp["gt"])

        out = run_skipping_roi_align(fwd, run)
        return out.get("loss_cls") if isinstance(out, dict) else out

    def hints(self, case, got, exp, inp):
        return []


@register
class FasterRCNNInference(Check):
    name, points = "faster_rcnn_inference", 2.0
    todo = "FasterRCNN.inference: scores, threshold, background"
    hides = [("tsd", "FasterRCNN.inference")]

    def make_inputs(self, ref, gen):
        base, _ = frcnn_inputs(ref, gen)
        n = sum(len(v[0]) for v in base["proposals"].values())
        logits = torch.randn(n, NUM_CLASSES + 1, generator=gen) * 2.0
        logits[::4, 0] += 4.0  # some confident background
        base = {k: v for k, v in base.items() if k != "gt"}
        base["proposals"] = {k: v[:1] for k, v in base["proposals"].items()}
        return {"thresh_0.2": dict(base, logits=logits, score_thresh=0.2, nms_thresh=0.5),
                "thresh_0.5": dict(base, logits=logits, score_thresh=0.5, nms_thresh=0.3)}

    def run(self, ctx, case, inp):
        model = build_frcnn(ctx, dict(inp, gt=torch.zeros(1, 1, 5)))
        model.eval()
        props = {k: [p.clone() for p in v] for k, v in inp["proposals"].items()}
        with torch.no_grad():
            out = model.inference(torch.zeros(1, 3, IMG_H, IMG_W), props, inp["logits"].clone(),
                                  test_score_thresh=inp["score_thresh"], test_nms_thresh=inp["nms_thresh"])
        return list(out) if isinstance(out, tuple) else out

    def problems(self, case, got, exp, inp):
        # Order-insensitive: sort both by (score, box) before comparing.
        def canon(triple):
            boxes, classes, scores = triple
            order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), boxes[i].tolist()))
            order = torch.tensor(order, dtype=torch.long)
            return [boxes[order], classes[order], scores[order]]

        if not (isinstance(got, list) and len(got) == 3 and all(isinstance(t, torch.Tensor) for t in got)
                and len({len(t) for t in got}) == 1):
            return compare(got, exp)
        return compare(canon(got), canon(exp), where="(boxes, classes, scores)")

    def hints(self, case, got, exp, inp):
        if isinstance(got, list) and len(got) == 3 and isinstance(got[1], torch.Tensor):
            classes = got[1]
            if classes.numel() and classes.shape == exp[1].shape and torch.equal(classes.sort()[0], exp[1].sort()[0] + 1):
                return ["class IDs are off by one: shift the predicted IDs by -1 (background is 0)"]
            if classes.numel() and (classes < 0).any():
                return ["background predictions are kept: drop boxes whose best class is background"]
        return []


CHECK_NAMES = list(CHECKS)
assert sorted(CHECK_NAMES) == sorted(BLOCKS["common.py"] + BLOCKS["two_stage_detector.py"])
