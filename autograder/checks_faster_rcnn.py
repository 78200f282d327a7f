"""
Checks of `FasterRCNN` in two_stage_detector.py: the classifier stem and
head of `__init__`, the three blocks of `forward` (RoI-Align, matching,
loss) and `inference`.

The detector around the graded block is made of real kit modules with
reference weights: the kit's `DetectorBackboneWithFPN` (its FPN; fixed
c3-c5 features stand in for RegNet) and the kit's `RPN`, whose proposals the
forward blocks get. So code that reads `rpn.pred_net` or `backbone.fpn_params`
sees what it would see in the notebooks. Two configurations per check (FPN
channels, stem widths, `num_classes`, `batch_size_per_image`, `roi_size`,
batch sizes, a non-square image), GT boxes of class 0 and an image without
GT.

Accepted variants: RoI-Align with any `sampling_ratio` of 0, 1, 2 or 4 (the
TODO leaves it open; torchvision's `MultiScaleRoIAlign` uses 2); a loss that
samples with its own code instead of `sample_rpn_training` is graded on the
proposals it actually drew, if those meet `sample_rpn_training`'s contract
(25 % foreground).
"""
import copy

import torch
from torch import nn

from . import oracles
from .check_base import (STRIDES, Check, FastTrunkProvided, copy_params, init_problems, init_stats,
                         kit_backbone, layers_of, module_spec, new_instance, rand_boxes, rand_c_feats,
                         rand_gt, random_state, register, swap_class)
from .compare import compare, matches
from .hooks import (GraderError, IndexRecorder, LineHooks, StopRun, find_line, first_code_line,
                    raised_between, raised_in_lines, set_locals)

FRCNN = {
    "a": dict(fpn_channels=8, batch=2, height=64, width=96, stem_channels=[8], num_classes=5,
              batch_size_per_image=8, roi_size=(7, 7),
              rpn=dict(fpn_channels=8, stem_channels=[8], batch_size_per_image=16, anchor_stride_scale=4,
                       anchor_aspect_ratios=[0.5, 1.0, 2.0], anchor_iou_thresholds=(0.3, 0.6),
                       nms_thresh=0.7, pre_nms_topk=30, post_nms_topk=6)),
    "b": dict(fpn_channels=12, batch=3, height=96, width=64, stem_channels=[6, 10], num_classes=3,
              batch_size_per_image=6, roi_size=(5, 3),
              rpn=dict(fpn_channels=12, stem_channels=[6], batch_size_per_image=10, anchor_stride_scale=3,
                       anchor_aspect_ratios=[1.0, 2.0], anchor_iou_thresholds=(0.3, 0.6),
                       nms_thresh=0.6, pre_nms_topk=20, post_nms_topk=5)),
}


def rpn_kw(cfg):
    kw = dict(cfg["rpn"])
    kw["anchor_iou_thresholds"] = tuple(kw["anchor_iou_thresholds"])
    kw["anchor_aspect_ratios"] = list(kw["anchor_aspect_ratios"])
    return kw


def frcnn_args(cfg):
    return (list(cfg["stem_channels"]), cfg["num_classes"], cfg["batch_size_per_image"], tuple(cfg["roi_size"]))


def surroundings(ref_common, ref_tsd, inp):
    """The kit's backbone and RPN of a case, reference weights."""
    cfg = inp["config"]
    backbone = kit_backbone(ref_common, cfg["fpn_channels"], inp["fpn_state"], inp["c_feats"])
    torch.manual_seed(0)
    rpn = ref_tsd.RPN(**rpn_kw(cfg))
    rpn.load_state_dict(inp["rpn_state"])
    return backbone, rpn


def frcnn_case(ref, gen, key, gt_kind="random"):
    cfg = copy.deepcopy(FRCNN[key])
    c_feats = rand_c_feats(gen, cfg["batch"], cfg["height"], cfg["width"])
    backbone = kit_backbone(ref.common, cfg["fpn_channels"], _random_fpn_state(ref, cfg, gen), c_feats)
    torch.manual_seed(3)
    rpn = ref.tsd.RPN(**rpn_kw(cfg))
    rpn_state = random_state(rpn, gen)
    torch.manual_seed(4)
    model = ref.tsd.FasterRCNN(backbone, rpn, *frcnn_args(cfg))
    cls_state = random_state(model.cls_pred, gen)
    c = cfg["num_classes"]
    valid = {"random": (4, 2), "class0": (3, 2), "no_gt": (3, 0, 4)}[gt_kind]
    gt = rand_gt(gen, cfg["batch"], 6, valid, cfg["width"], cfg["height"], classes=(1, c))
    if gt_kind == "class0":  # the first two objects of every image are of class 0
        gt[:, :2, 4] = torch.where(gt[:, :2, 4] >= 0, torch.zeros_like(gt[:, :2, 4]), gt[:, :2, 4])
    inp = {"config": cfg, "fpn_state": {k: v.clone() for k, v in backbone.fpn_params.state_dict().items()},
           "c_feats": c_feats, "rpn_state": rpn_state, "cls_state": cls_state, "gt": gt}
    return inp, model


def _random_fpn_state(ref, cfg, gen):
    with FastTrunkProvided(ref.common):
        torch.manual_seed(5)
        fpn = ref.common.DetectorBackboneWithFPN(cfg["fpn_channels"], pretrained=False)
    return random_state(fpn.fpn_params, gen)


def build_frcnn(ctx, inp):
    """The reference-built detector of a case with the student's class."""
    backbone, rpn = surroundings(ctx.ref_common, ctx.ref_tsd, inp)
    torch.manual_seed(0)
    model = ctx.ref_tsd.FasterRCNN(backbone, rpn, *frcnn_args(inp["config"]))
    model.cls_pred.load_state_dict(inp["cls_state"])
    return swap_class(model, ctx.tsd.FasterRCNN)


def images_for(inp):
    cfg = inp["config"]
    return torch.zeros(cfg["batch"], 3, cfg["height"], cfg["width"])


def ref_parts(ref, model, inp):
    """Reference intermediates of FasterRCNN.forward (isolation inputs)."""
    cfg = inp["config"]
    gt = inp["gt"]
    model.train()
    with torch.no_grad():
        feats = model.backbone(images_for(inp))
        props = model.rpn(feats, model.backbone.fpn_strides, gt)["proposals"]
        eval_props = {k: [p.clone() for p in v] for k, v in props.items()}
        props = ref.tsd.mix_gt_with_proposals({k: [p.clone() for p in v] for k, v in props.items()}, gt)
        roi = oracles.roi_features(feats, props, STRIDES, cfg["roi_size"])
        roi_feats = ref.tsd.FasterRCNN._cat_per_image(roi, props)
        logits = model.cls_pred(roi_feats)
    matched = []
    for i in range(len(gt)):
        p = torch.cat([props[k][i] for k in props])
        matched.append(ref.tsd.rcnn_match_anchors_to_gt(p, gt[i], (0.5, 0.5)))
    return {"roi_feats": roi_feats, "roi_per_level": [roi[k] for k in feats], "matched": matched,
            "pred_cls_logits": logits, "feats": feats, "eval_proposals": eval_props, "proposals": props}


# ------------------------------------------------------------ __init__
def student_cls_layers(ctx, inp, skip_stem=False):
    """
    The student's `cls_pred` layers, even if the other TODO of __init__
    raised. An error raised in the stem block reaches the stem check, any
    other the head check (`skip_stem`), for which a raising stem block is
    skipped (a stand-in stem takes its place) so that the head can be graded.
    """
    cls = ctx.tsd.FasterRCNN
    init = cls.__init__
    captured = {}

    def grab(frame):
        if isinstance(frame.f_locals.get("cls_pred"), list):
            captured["cls_pred"] = list(frame.f_locals["cls_pred"])

    backbone, rpn = surroundings(ctx.ref_common, ctx.ref_tsd, inp)
    args = (backbone, rpn, *frcnn_args(inp["config"]))
    actions = {find_line(init, "self.cls_pred = nn.Sequential(*cls_pred)"): grab}
    with LineHooks(init, actions, on_exception=grab):
        obj, error = new_instance(cls, *args)
    stem = ctx.block_range("faster_rcnn_cls_stem")
    head = ctx.block_range("faster_rcnn_cls_head")
    if error is not None and stem and raised_in_lines(error, init, *stem):
        if not skip_stem:
            raise error
        after = find_line(init, "cls_pred = []")
        target = first_code_line(init, *head) if head else None
        if target is None:
            raise error

        def stand_in(frame):
            layers, prev = [], inp["config"]["fpn_channels"]
            for c in inp["config"]["stem_channels"]:
                layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU()]
                prev = c
            set_locals(frame, cls_pred=layers)
            # The reference head reads `prev_channels` from the stem block.
            if "prev_channels" in frame.f_code.co_varnames:
                set_locals(frame, prev_channels=prev)
            else:
                frame.f_globals["prev_channels"] = prev

        captured.clear()
        with LineHooks(init, actions, on_exception=grab, skips=[(after, target, stand_in)]):
            obj, error = new_instance(cls, *args)
    if error is not None and skip_stem:
        raise error  # raised by the head block, or after the stem was stood in for
    if isinstance(getattr(obj, "cls_pred", None), nn.Module):
        return layers_of(obj.cls_pred)
    if error is not None and not (stem and raised_in_lines(error, init, *stem)) and "cls_pred" in captured:
        return layers_of(captured["cls_pred"])  # the head raised: grade the stem built before it
    raise error or GraderError("cls_pred was never built")


def split_stem_head(layers):
    for i, m in enumerate(layers):
        if isinstance(m, (nn.Flatten, nn.Linear)):
            return layers[:i], layers[i:]
    return layers, []


def init_case(ref, gen, key):
    inp, model = frcnn_case(ref, gen, key)
    stem, head = split_stem_head(layers_of(model.cls_pred))
    return inp, [p.detach().clone() for m in stem for p in m.parameters()], \
        [p.detach().clone() for m in head for p in m.parameters()]


def init_inputs(inp):
    """What __init__ needs of a case (not the GT, not the classifier state)."""
    return {k: inp[k] for k in ("config", "fpn_state", "c_feats", "rpn_state")}


@register
class FasterRCNNClsStem(Check):
    name, points = "faster_rcnn_cls_stem", 1.0
    todo = "FasterRCNN.__init__: the classifier stem"
    hides = [("tsd", "FasterRCNN.__init__")]

    def make_inputs(self, ref, gen):
        a, stem_a, _ = init_case(ref, gen, "a")
        b, _, _ = init_case(ref, gen, "b")
        x = torch.randn(6, a["config"]["fpn_channels"], *a["config"]["roi_size"], generator=gen)
        return {"structure": init_inputs(a), "structure_other_config": init_inputs(b), "init": init_inputs(a),
                "output": dict(init_inputs(a), params=stem_a, x=x)}

    def run(self, ctx, case, inp):
        stem, _ = split_stem_head(student_cls_layers(ctx, inp))
        if case.startswith("structure"):
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

    def hints(self, case, got, exp, inp):
        if case.startswith("structure") and isinstance(got, list) and got and isinstance(exp, list) and exp:
            if got[0][:1] == ["Conv2d"] and got[0][1] != exp[0][1]:
                return [f"the stem's input channels are the FPN's: backbone.out_channels (here "
                        f"{exp[0][1]}), not a fixed number"]
            if len(got) != len(exp):
                return ["one 3x3 conv + ReLU per entry of stem_channels"]
        return []


@register
class FasterRCNNClsHead(Check):
    name, points = "faster_rcnn_cls_head", 1.0
    todo = "FasterRCNN.__init__: Flatten + Linear to C+1 logits"
    hides = [("tsd", "FasterRCNN.__init__")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key in ("a", "b"):
            inp, _, head = init_case(ref, gen, key)
            cfg = inp["config"]
            x = torch.randn(6, cfg["stem_channels"][-1], *cfg["roi_size"], generator=gen)
            suffix = "" if key == "a" else "_other_config"
            cases[f"structure{suffix}"] = init_inputs(inp)
            cases[f"output{suffix}"] = dict(init_inputs(inp), params=head, x=x)
        return cases

    def run(self, ctx, case, inp):
        _, head = split_stem_head(student_cls_layers(ctx, inp, skip_stem=True))
        if case.startswith("structure"):
            return [module_spec(m) for m in head]
        copy_params(head, inp["params"], "classifier head")
        with torch.no_grad():
            return nn.Sequential(*head)(inp["x"])

    def hints(self, case, got, exp, inp):
        if not (case.startswith("structure") and isinstance(got, list)):
            return []
        cfg = inp["config"]
        linear = [s for s in got if s and s[0] == "Linear"]
        if linear and linear[-1][2] == cfg["num_classes"]:
            return ["the linear layer outputs num_classes + 1 logits (background too)"]
        want_in = cfg["stem_channels"][-1] * cfg["roi_size"][0] * cfg["roi_size"][1]
        if linear and linear[0][1] != want_in:
            return [f"the linear layer's input is stem_channels[-1] * roi_h * roi_w = {want_in} here "
                    f"(roi_size = {tuple(cfg['roi_size'])}): use self.roi_size / roi_size, not 7 * 7"]
        return []


# ------------------------------------------------------------- forward
def forward_case(ref, gen, key, gt_kind="random"):
    inp, model = frcnn_case(ref, gen, key, gt_kind)
    inp["parts"] = ref_parts(ref, model, inp)
    return inp


def roi_align_replacement(fwd, parts):
    """Line hook and skip: the reference RoI features, level by level."""
    per_level = dict(zip(("p3", "p4", "p5"), parts["roi_per_level"]))

    def replace(frame):
        set_locals(frame, roi_feats=per_level[frame.f_locals["level_name"]].clone())

    target = find_line(fwd, "roi_feats_per_fpn_level[level_name] = roi_feats")
    after = find_line(fwd, "level_stride = self.backbone.fpn_strides[level_name]")
    return {target: replace}, (after, target, replace)


def matching_replacement(fwd, parts):
    """Skip: the reference matches, when the student's matching loop raises."""
    def replace(frame):
        set_locals(frame, matched_gt_boxes=[m.clone() for m in parts["matched"]])

    after = find_line(fwd, "gt_boxes_per_image = gt_boxes[_idx]")
    target = find_line(fwd, "matched_gt_boxes = torch.cat(matched_gt_boxes")
    return (after, target, replace)


def run_isolated(fwd, run, parts, with_matching=False):
    """
    `run(skips)`; if the student's RoI-Align block (or, `with_matching`, the
    matching block) raises, again with that block skipped, so that its bug
    costs only its own check.
    """
    skips = []
    for _ in range(3):
        try:
            return run(list(skips))
        except StopRun:
            raise
        except BaseException as error:  # noqa: BLE001
            roi_skip = roi_align_replacement(fwd, parts)[1]
            match_skip = matching_replacement(fwd, parts)
            if roi_skip not in skips and raised_between(error, fwd, roi_skip[0], roi_skip[1]):
                skips.append(roi_skip)
            elif with_matching and match_skip not in skips and \
                    raised_between(error, fwd, match_skip[0], match_skip[1]):
                skips.append(match_skip)
            else:
                raise
    return run(list(skips))


@register
class FasterRCNNRoIAlign(Check):
    name, points = "faster_rcnn_roi_align", 2.0
    todo = "FasterRCNN.forward: torchvision.ops.roi_align per FPN level"
    hides = [("tsd", "FasterRCNN.forward")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key in ("a", "b"):
            inp = forward_case(ref, gen, key)
            parts = inp.pop("parts")
            inp["oracle"] = {"feats": parts["feats"], "proposals": parts["eval_proposals"]}
            cases[f"config_{key}"] = inp
        return cases

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
            with LineHooks(fwd, actions), torch.no_grad():
                model(images_for(inp), test_score_thresh=0.5, test_nms_thresh=0.5)
        except StopRun:
            pass
        return captured

    def accepts(self, case, got, exp, inp):
        if not isinstance(got, list) or len(got) != 3:
            return None
        feats, props = inp["oracle"]["feats"], inp["oracle"]["proposals"]
        for ratio in (0, 1, 2, 4):  # the TODO leaves sampling_ratio open (torchvision's MultiScaleRoIAlign: 2)
            alt = oracles.roi_features(feats, props, STRIDES, tuple(inp["config"]["roi_size"]), sampling_ratio=ratio)
            if matches(got, [alt[k] for k in ("p3", "p4", "p5")]):
                return f"sampling_ratio={ratio}"
        return None

    def hints(self, case, got, exp, inp):
        if not isinstance(got, list) or len(got) != 3:
            return []
        feats, props = inp["oracle"]["feats"], inp["oracle"]["proposals"]
        roi = tuple(inp["config"]["roi_size"])
        variants = {
            "spatial_scale must be 1 / stride of the level (features are smaller than the image)":
                dict(spatial_scale={k: float(s) for k, s in STRIDES.items()}),
            "use aligned=True": dict(aligned=False),
        }
        for hint, kw in variants.items():
            alt = oracles.roi_features(feats, props, STRIDES, roi, **kw)
            if matches(got, [alt[k] for k in ("p3", "p4", "p5")]):
                return [hint]
        if roi != (7, 7):
            alt = oracles.roi_features(feats, props, STRIDES, (7, 7))
            if matches(got, [alt[k] for k in ("p3", "p4", "p5")]):
                return [f"output_size is self.roi_size (here {roi}), not (7, 7)"]
        return []


@register
class FasterRCNNMatching(Check):
    name, points = "faster_rcnn_matching", 1.0
    todo = "FasterRCNN.forward: match proposals with GT boxes"
    hides = [("tsd", "FasterRCNN.forward")]

    def make_inputs(self, ref, gen):
        cases = {"config_a": forward_case(ref, gen, "a"), "config_b": forward_case(ref, gen, "b", "no_gt")}
        for inp in cases.values():
            inp["parts"] = {k: inp["parts"][k] for k in ("roi_per_level", "proposals")}
        return cases

    def run(self, ctx, case, inp):
        model = build_frcnn(ctx, inp)
        fwd = ctx.tsd.FasterRCNN.forward
        captured = {}

        def grab(frame):
            captured["matched"] = frame.f_locals.get("matched_gt_boxes", "<not defined>")
            raise StopRun

        roi_actions, _ = roi_align_replacement(fwd, inp["parts"])
        actions = {find_line(fwd, "matched_gt_boxes = torch.cat(matched_gt_boxes"): grab, **roi_actions}

        def run(skips):
            model.train()
            try:
                with LineHooks(fwd, actions, skips=skips):
                    model(images_for(inp), inp["gt"])
            except StopRun:
                pass

        run_isolated(fwd, run, inp["parts"])
        if not captured:
            raise GraderError("FasterRCNN.forward never reached the matched GT boxes")
        return captured["matched"]

    def problems(self, case, got, exp, inp):
        if isinstance(got, torch.Tensor):  # already concatenated: fine too
            return compare(got, torch.cat(exp), where="matched_gt_boxes")
        return compare(got, exp, where="matched_gt_boxes")


CE_TWICE_HINT = "F.cross_entropy already averages over the sampled proposals: do not divide again"


@register
class FasterRCNNLoss(Check):
    name, points = "faster_rcnn_loss", 2.0
    todo = "FasterRCNN.forward: sampling and classification loss"
    hides = [("tsd", "FasterRCNN.forward")]

    def make_inputs(self, ref, gen):
        cases = {"batch": forward_case(ref, gen, "a"), "second_batch": forward_case(ref, gen, "a"),
                 "class_0_objects": forward_case(ref, gen, "a", "class0"),
                 "config_b": forward_case(ref, gen, "b", "no_gt")}
        for inp in cases.values():
            inp["parts"] = {k: inp["parts"][k] for k in ("roi_feats", "roi_per_level", "matched", "pred_cls_logits",
                                                         "proposals")}
        return cases

    def run(self, ctx, case, inp):
        model = build_frcnn(ctx, inp)
        fwd = ctx.tsd.FasterRCNN.forward
        parts = inp["parts"]
        recorder = IndexRecorder()

        def roi(frame):
            set_locals(frame, roi_feats=parts["roi_feats"].clone())

        def matched(frame):
            set_locals(frame, matched_gt_boxes=[m.clone() for m in parts["matched"]])
            recorder.watch(frame.f_locals.get("pred_cls_logits"))

        roi_actions, _ = roi_align_replacement(fwd, parts)
        actions = {find_line(fwd, "pred_cls_logits = self.cls_pred(roi_feats)"): roi,
                   find_line(fwd, "matched_gt_boxes = torch.cat(matched_gt_boxes"): matched, **roi_actions}

        def run(skips):
            model.train()
            with LineHooks(fwd, actions, skips=skips):
                return model(images_for(inp), inp["gt"])

        with recorder:
            out = run_isolated(fwd, run, parts, with_matching=True)
        loss = out.get("loss_cls") if isinstance(out, dict) else out
        return {"loss_cls": loss, "sampled": recorder.sampled(), "repeated": recorder.repeated}

    def problems(self, case, got, exp, inp):
        if not isinstance(got, dict):
            return compare(got, exp)
        return compare(got.get("loss_cls"), exp["loss_cls"], where="loss_cls")

    def _oracle(self, got, inp):
        parts, cfg = inp["parts"], inp["config"]
        matched = torch.cat(parts["matched"])
        total = cfg["batch_size_per_image"] * cfg["batch"]
        return oracles.cls_loss(parts["pred_cls_logits"], matched, got["sampled"]), matched, total

    def accepts(self, case, got, exp, inp):
        if not isinstance(got, dict) or not isinstance(got.get("sampled"), torch.Tensor):
            return None
        want, matched, total = self._oracle(got, inp)
        if got.get("repeated") or oracles.sample_problems(got["sampled"], matched[:, 4], total, 0.25):
            return None
        if matches(got.get("loss_cls"), want):
            return "your own sampling, graded on the proposals it drew"
        return None

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict):
            return []
        loss = got.get("loss_cls")
        if isinstance(got.get("sampled"), torch.Tensor):
            want, matched, total = self._oracle(got, inp)
            contract = oracles.sample_problems(got["sampled"], matched[:, 4], total, 0.25)
            if got.get("repeated"):
                contract = ["the sampled indices repeat: sample without replacement"] + contract
            if contract:
                per_batch = len(got["sampled"]) <= inp["config"]["batch_size_per_image"] < total
                return [contract[0] + ("; sample batch_size_per_image proposals per image, i.e. "
                                       "batch_size_per_image * num_images in all" if per_batch else "")]
        else:
            want, total = exp["loss_cls"], inp["config"]["batch_size_per_image"] * inp["config"]["batch"]
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            value, ref = float(loss), float(want)
            n = len(got["sampled"]) if isinstance(got.get("sampled"), torch.Tensor) else total
            for factor in {total, n}:
                if factor and abs(value * factor - ref) <= 1e-4 * (1 + abs(ref)):
                    return [CE_TWICE_HINT]
            if n and abs(value - ref * n) <= 1e-3 * (1 + abs(ref * n)):
                return ["average the loss over the sampled proposals (F.cross_entropy's default "
                        "reduction='mean'), not their sum"]
        return []

    def error_hints(self, case, error):
        if "out of bounds" in error and ("Target" in error or "target" in error):
            return ["background GT class is -1: shift the GT classes by +1 (background 0, objects "
                    "1..C) before F.cross_entropy"]
        return super().error_hints(case, error)


# ------------------------------------------------------------ inference
@register
class FasterRCNNInference(Check):
    name, points = "faster_rcnn_inference", 2.0
    todo = "FasterRCNN.inference: scores, threshold, background"
    hides = [("tsd", "FasterRCNN.inference")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key, thresholds in (("a", (0.2, 0.5)), ("a", (0.5, 0.3)), ("b", (0.3, 0.5))):
            inp, _ = frcnn_case(ref, gen, key)
            cfg = inp["config"]
            props = {k: [rand_boxes(gen, 6 if key == "a" else 4, cfg["width"], cfg["height"])] for k in STRIDES}
            n = sum(len(v[0]) for v in props.values())
            logits = torch.randn(n, cfg["num_classes"] + 1, generator=gen) * 2.0
            logits[::4, 0] += 4.0  # some confident background
            name = f"thresh_{thresholds[0]}" if key == "a" else "config_b"
            cases[name] = dict(init_inputs(inp), cls_state=inp["cls_state"], proposals=props, logits=logits,
                               score_thresh=thresholds[0], nms_thresh=thresholds[1])
        return cases

    def run(self, ctx, case, inp):
        inp = dict(inp, config=dict(inp["config"], batch=1))
        model = build_frcnn(ctx, inp)
        model.eval()
        cfg = inp["config"]
        props = {k: [p.clone() for p in v] for k, v in inp["proposals"].items()}
        with torch.no_grad():
            out = model.inference(torch.zeros(1, 3, cfg["height"], cfg["width"]), props, inp["logits"].clone(),
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
        if not (isinstance(got, list) and len(got) == 3 and isinstance(got[1], torch.Tensor)):
            return []
        classes = got[1]
        if classes.numel() and classes.shape == exp[1].shape and \
                torch.equal(classes.sort()[0], exp[1].sort()[0] + 1):
            return ["class IDs are off by one: shift the predicted IDs by -1 (background is 0)"]
        if classes.numel() and (classes < 0).any():
            return ["background predictions are kept: drop boxes whose best class is background"]
        if isinstance(got[2], torch.Tensor) and got[2].numel() and (got[2] > 1).any():
            return ["scores are the softmax probabilities of the C + 1 classes, not the logits"]
        return []
