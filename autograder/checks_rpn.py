"""
Checks of the RPN in two_stage_detector.py: `RPNPredictionNetwork` (stem,
heads, forward), the three blocks of `RPN.forward` (predictions and
anchors, matching, losses) and `RPN.predict_proposals`.

Every check runs two configurations (the defaults the notebooks use, and
other stem widths, numbers of anchors, `anchor_stride_scale`, aspect
ratios, IoU thresholds, `batch_size_per_image`, batch sizes and a
non-square image), so values hard-coded to the defaults fail.

Accepted variants: proposals clamped to `[0, W]` x `[0, H]` or to `[0, W - 1]`
x `[0, H - 1]` (the py-faster-rcnn pixel convention); a loss that samples
with its own code instead of `sample_rpn_training` is graded on the anchors
it actually drew, if those meet `sample_rpn_training`'s contract.
"""
import types

import torch
from torch import nn

from . import oracles
from .check_base import (DEVICE_CASE, STRIDES, Check, copy_params, init_problems, init_stats,
                         layers_of, module_spec, new_instance, rand_feats, rand_gt, random_state,
                         register, swap_class)
from .compare import compare, describe, matches
from .hooks import (GraderError, IndexRecorder, LineHooks, StopRun, find_line, raised_between,
                    set_locals)

# ====================================================== RPN prediction net
PRED_NET = {"a": dict(in_channels=8, stem_channels=[16, 16], num_anchors=3, batch=2, height=64, width=96),
            "b": dict(in_channels=12, stem_channels=[6, 10, 4], num_anchors=5, batch=1, height=96, width=64)}


def pred_net_args(cfg):
    return cfg["in_channels"], list(cfg["stem_channels"]), cfg["num_anchors"]


def pred_net_ref(ref, gen, cfg):
    torch.manual_seed(2)
    net = ref.tsd.RPNPredictionNetwork(*pred_net_args(cfg))
    random_state(net, gen)
    return net


def pred_net_case(ref, gen, key):
    """A configuration of the prediction network and its reference weights."""
    cfg = PRED_NET[key]
    net = pred_net_ref(ref, gen, cfg)
    return {"config": dict(cfg),
            "stem": [p.detach().clone() for p in net.stem_rpn.parameters()],
            "obj": [p.detach().clone() for p in net.pred_obj.parameters()],
            "box": [p.detach().clone() for p in net.pred_box.parameters()],
            "state": {k: v.clone() for k, v in net.state_dict().items()}}


@register
class RPNPredNetStem(Check):
    name, points = "rpn_pred_net_stem", 2.0
    todo = "RPNPredictionNetwork.__init__: the stem"
    hides = [("tsd", "RPNPredictionNetwork.__init__")]

    def make_inputs(self, ref, gen):
        a = pred_net_case(ref, gen, "a")
        cfg = a["config"]
        x = torch.randn(2, cfg["in_channels"], 5, 7, generator=gen)
        return {"structure": {"config": cfg}, "structure_other_config": {"config": PRED_NET["b"]},
                "output": {"config": cfg, "params": a["stem"], "x": x}, "init": {"config": cfg}}

    def run(self, ctx, case, inp):
        obj, error = new_instance(ctx.tsd.RPNPredictionNetwork, *pred_net_args(inp["config"]))
        cls = ctx.tsd.RPNPredictionNetwork
        if error is not None and raised_between(error, cls.__init__, find_line(cls.__init__, "stem_rpn = []"),
                                                find_line(cls.__init__, "self.stem_rpn = nn.Sequential(*stem_rpn)")):
            raise error
        stem = getattr(obj, "stem_rpn", None)
        if not isinstance(stem, nn.Module):
            raise error or GraderError("self.stem_rpn is missing")
        layers = layers_of(stem)
        if case.startswith("structure"):
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
        if case.startswith("structure") and isinstance(got, list) and got:
            convs = [s for s in got if s[0] == "Conv2d"]
            if got[-1] != ["ReLU"]:
                return ["every conv of the stem is followed by a ReLU"]
            if len(convs) != len(inp["config"]["stem_channels"]):
                return ["one 3x3 conv per entry of stem_channels (do not hard-code the number of layers)"]
        return []


@register
class RPNPredNetHeads(Check):
    name, points = "rpn_pred_net_heads", 1.0
    todo = "RPNPredictionNetwork.__init__: objectness and box heads"
    hides = [("tsd", "RPNPredictionNetwork.__init__")]

    def make_inputs(self, ref, gen):
        a = pred_net_case(ref, gen, "a")
        cfg = a["config"]
        x = torch.randn(2, cfg["stem_channels"][-1], 5, 7, generator=gen)
        return {"structure": {"config": cfg}, "structure_other_config": {"config": PRED_NET["b"]},
                "output": {"config": cfg, "obj": a["obj"], "box": a["box"], "x": x}}

    def run(self, ctx, case, inp):
        cls = ctx.tsd.RPNPredictionNetwork
        args = pred_net_args(inp["config"])
        obj, error = new_instance(cls, *args)
        after = find_line(cls.__init__, "stem_rpn = []")
        target = find_line(cls.__init__, "self.stem_rpn = nn.Sequential(*stem_rpn)")
        if error is not None and raised_between(error, cls.__init__, after, target):
            # The stem raised: build the heads again with a stand-in stem.
            def stem(frame):
                layers, prev = [], args[0]
                for c in args[1]:
                    layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU()]
                    prev = c
                set_locals(frame, stem_rpn=layers)
                # The reference heads read `prev_channels` from the stem block;
                # without that block it is not even a local of this code.
                if "prev_channels" in frame.f_code.co_varnames:
                    set_locals(frame, prev_channels=prev)
                else:
                    frame.f_globals["prev_channels"] = prev

            with LineHooks(cls.__init__, {}, skips=[(after, target, stem)]):
                obj, error = new_instance(cls, *args)
        if error is not None:
            raise error
        heads = [getattr(obj, "pred_obj", None), getattr(obj, "pred_box", None)]
        if not all(isinstance(h, nn.Module) for h in heads):
            return {"pred_obj": describe(heads[0]), "pred_box": describe(heads[1])}
        if case.startswith("structure"):
            return {"pred_obj": [module_spec(m) for m in layers_of(heads[0])],
                    "pred_box": [module_spec(m) for m in layers_of(heads[1])]}
        copy_params(layers_of(heads[0]), inp["obj"], "pred_obj")
        copy_params(layers_of(heads[1]), inp["box"], "pred_box")
        with torch.no_grad():
            return {"pred_obj": heads[0](inp["x"]), "pred_box": heads[1](inp["x"])}

    def hints(self, case, got, exp, inp):
        if case.startswith("structure") and isinstance(got, dict) and isinstance(got.get("pred_box"), list):
            a = inp["config"]["num_anchors"]
            outs = [s[2] for s in got["pred_box"] if s and s[0] == "Conv2d"]
            if outs and outs[-1] != 4 * a:
                return [f"pred_box predicts 4 deltas for each of the num_anchors = {a} anchors: "
                        f"{4 * a} output channels"]
        return []


@register
class RPNPredNetForward(Check):
    name, points = "rpn_pred_net_forward", 2.0
    todo = "RPNPredictionNetwork.forward"
    hides = [("tsd", "RPNPredictionNetwork.forward")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key in ("a", "b"):
            c = pred_net_case(ref, gen, key)
            cfg = c["config"]
            cases[f"config_{key}"] = {"config": cfg, "state": c["state"],
                                      "feats": rand_feats(gen, cfg["height"], cfg["width"], cfg["batch"],
                                                          cfg["in_channels"])}
        cases[DEVICE_CASE] = dict(cases["config_a"])
        return cases

    def run(self, ctx, case, inp):
        torch.manual_seed(0)
        net = ctx.ref_tsd.RPNPredictionNetwork(*pred_net_args(inp["config"]))
        net.load_state_dict(inp["state"])
        swap_class(net, ctx.tsd.RPNPredictionNetwork)
        net.to(ctx.device)
        with torch.no_grad():
            return net(ctx.move(inp["feats"]))

    def hints(self, case, got, exp, inp):
        if case == DEVICE_CASE or not (isinstance(got, (list, tuple)) and len(got) == 2 and isinstance(got[0], dict)):
            return []
        logits, ref = got[0].get("p3"), exp[0]["p3"]
        if isinstance(logits, torch.Tensor) and logits.shape == ref.shape:
            b, _ = ref.shape
            h, w = inp["feats"]["p3"].shape[-2:]
            a = inp["config"]["num_anchors"]
            alt = ref.view(b, h, w, a).permute(0, 3, 1, 2).reshape(b, -1)
            if matches(logits, alt):
                return ["permute (B, A, H, W) to (B, H, W, A) before flattening, so "
                        "that the anchors of one location are contiguous"]
        return []


# ==================================================================== RPN
RPN_CONFIGS = {
    "a": dict(kw=dict(fpn_channels=8, stem_channels=[8], batch_size_per_image=16, anchor_stride_scale=4,
                      anchor_aspect_ratios=[0.5, 1.0, 2.0], anchor_iou_thresholds=(0.3, 0.6),
                      nms_thresh=0.7, pre_nms_topk=50, post_nms_topk=10),
              batch=2, height=64, width=96),
    "b": dict(kw=dict(fpn_channels=8, stem_channels=[6], batch_size_per_image=10, anchor_stride_scale=2,
                      anchor_aspect_ratios=[0.25, 1.0, 3.0, 2.0], anchor_iou_thresholds=(0.2, 0.5),
                      nms_thresh=0.6, pre_nms_topk=30, post_nms_topk=7),
              batch=3, height=96, width=64),
}


def rpn_config(key):
    cfg = RPN_CONFIGS[key]
    kw = dict(cfg["kw"])
    kw["anchor_iou_thresholds"] = tuple(kw["anchor_iou_thresholds"])
    return {"kw": kw, "batch": cfg["batch"], "height": cfg["height"], "width": cfg["width"]}


def ref_rpn_state(ref, gen, kw):
    torch.manual_seed(3)
    return random_state(ref.tsd.RPN(**kw), gen)


def build_rpn(ctx, inp):
    torch.manual_seed(0)
    kw = dict(inp["config"]["kw"])
    kw["anchor_iou_thresholds"] = tuple(kw["anchor_iou_thresholds"])
    rpn = ctx.ref_tsd.RPN(**kw)
    rpn.load_state_dict(inp["state"])
    return swap_class(rpn, ctx.tsd.RPN)


def rpn_anchors(ref, cfg, feats):
    shapes = {k: v.shape for k, v in feats.items()}
    locs = ref.common.get_fpn_location_coords(shapes, STRIDES)
    return ref.tsd.generate_fpn_anchors(locs, STRIDES, cfg["kw"]["anchor_stride_scale"],
                                        cfg["kw"]["anchor_aspect_ratios"])


def ref_rpn_parts(ref, cfg, state, feats, gt):
    """Reference values of the RPN.forward blocks (used as isolation inputs)."""
    torch.manual_seed(0)
    rpn = ref.tsd.RPN(**cfg["kw"])
    rpn.load_state_dict(state)
    with torch.no_grad():
        logits, deltas = rpn.pred_net(feats)
        anchors = rpn_anchors(ref, cfg, feats)
        all_anchors = torch.cat(list(anchors.values()))
        matched = [ref.tsd.rcnn_match_anchors_to_gt(all_anchors, g, cfg["kw"]["anchor_iou_thresholds"]) for g in gt]
    return {"pred_obj_logits": logits, "pred_boxreg_deltas": deltas,
            "anchors_per_fpn_level": anchors, "matched_gt_boxes": matched}


def class0_gt(ref, cfg, feats, gen):
    """GT boxes of class 0 placed exactly on anchors inside the image (IoU 1:
    foreground anchors of class 0), plus one box of another class."""
    anchors = torch.cat(list(rpn_anchors(ref, cfg, feats).values()))
    inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= cfg["width"])
              & (anchors[:, 3] <= cfg["height"])).nonzero().squeeze(1)
    pick = inside[torch.randperm(len(inside), generator=gen)[:3]]
    gt = -torch.ones(cfg["batch"], 6, 5)
    for b in range(cfg["batch"]):
        gt[b, :3, :4] = anchors[pick]
        gt[b, :3, 4] = 0.0
        gt[b, 3, :4] = anchors[inside[b % len(inside)]] + torch.tensor([-2.0, -2.0, 3.0, 3.0])
        gt[b, 3, 4] = 2.0
    return gt


def rpn_case(ref, gen, key, gt_kind="random"):
    cfg = rpn_config(key)
    state = ref_rpn_state(ref, gen, cfg["kw"])
    feats = rand_feats(gen, cfg["height"], cfg["width"], cfg["batch"], cfg["kw"]["fpn_channels"])
    if gt_kind == "class0":
        gt = class0_gt(ref, cfg, feats, gen)
    else:
        valid = {"random": (4, 2), "no_gt_second": (4, 0), "with_empty": (3, 0, 5)}[gt_kind]
        gt = rand_gt(gen, cfg["batch"], 6, valid, cfg["width"], cfg["height"], classes=(1, 5))
    return {"config": cfg, "state": state, "feats": feats, "gt": gt,
            "parts": ref_rpn_parts(ref, cfg, state, feats, gt)}


def run_rpn_forward(ctx, inp, capture_matching=False, replace_matching=False, recorder=None):
    """
    Run the student's RPN.forward (training) with the reference values in
    place of the earlier blocks' results. If an earlier block raises, run
    again with that block skipped, so its bug costs only its own check.
    """
    try:
        return _run_rpn_forward(ctx, inp, capture_matching, replace_matching, False, recorder)
    except StopRun:
        raise
    except BaseException as error:  # noqa: BLE001
        fwd = ctx.tsd.RPN.forward
        first = find_line(fwd, 'num_images = feats_per_fpn_level["p3"].shape[0]')
        last = find_line(fwd, "matched_gt_boxes = torch.stack(matched_gt_boxes" if replace_matching
                         else "output_dict = {}")
        if not raised_between(error, fwd, first, last):
            raise
        return _run_rpn_forward(ctx, inp, capture_matching, replace_matching, True, recorder)


def _run_rpn_forward(ctx, inp, capture_matching, replace_matching, skip, recorder):
    rpn = build_rpn(ctx, inp)
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

    def before_loss(frame):
        if recorder is not None:
            recorder.watch(frame.f_locals.get("pred_obj_logits"), frame.f_locals.get("pred_boxreg_deltas"))

    out_line = find_line(fwd, "output_dict = {}")
    stack_line = find_line(fwd, "matched_gt_boxes = torch.stack(matched_gt_boxes")
    actions = {out_line: after_anchors, stack_line: at_stack,
               find_line(fwd, "pred_boxreg_deltas = pred_boxreg_deltas.view(-1, 4)"): before_loss}
    skips = []
    if skip:
        skips.append((find_line(fwd, 'num_images = feats_per_fpn_level["p3"].shape[0]'), out_line, after_anchors))
        if replace_matching:
            skips.append((find_line(fwd, "matched_gt_boxes = []"), stack_line, ref_matching))
    # The proposals are another TODO: use the reference's.
    rpn.predict_proposals = types.MethodType(ctx.ref_tsd.RPN.__dict__["predict_proposals"], rpn)
    rpn.train()
    strides = dict(STRIDES)
    try:
        with LineHooks(fwd, actions, skips=skips):
            out = rpn(inp["feats"], strides, inp["gt"])
    except StopRun:
        return captured["matched"]
    return out


@register
class RPNForwardAnchors(Check):
    name, points = "rpn_forward_anchors", 1.0
    todo = "RPN.forward: predictions and anchors"
    hides = [("tsd", "RPN.forward")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key in ("a", "b"):
            cfg = rpn_config(key)
            cases[f"config_{key}"] = {"config": cfg, "state": ref_rpn_state(ref, gen, cfg["kw"]),
                                      "feats": rand_feats(gen, cfg["height"], cfg["width"], cfg["batch"],
                                                          cfg["kw"]["fpn_channels"])}
        cases[DEVICE_CASE] = dict(cases["config_a"])
        return cases

    def run(self, ctx, case, inp):
        rpn = build_rpn(ctx, inp)
        rpn.to(ctx.device)
        fwd = ctx.tsd.RPN.forward
        captured = {}

        def grab(frame):
            loc = frame.f_locals
            for key in ("pred_obj_logits", "pred_boxreg_deltas", "anchors_per_fpn_level"):
                captured[key] = loc.get(key, "<not defined>")
            raise StopRun

        rpn.eval()
        try:
            with LineHooks(fwd, {find_line(fwd, "output_dict = {}"): grab}), torch.no_grad():
                rpn(ctx.move(inp["feats"]), dict(STRIDES))
        except StopRun:
            pass
        if not captured:
            raise GraderError("RPN.forward never reached `output_dict = {}`")
        return captured

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict) or case == DEVICE_CASE:
            return []
        anchors, want = got.get("anchors_per_fpn_level"), exp["anchors_per_fpn_level"]
        if matches(got.get("pred_obj_logits"), exp["pred_obj_logits"]) and not matches(anchors, want):
            kw = inp["config"]["kw"]
            return [f"anchors: use the RPN's own settings, self.anchor_stride_scale (here "
                    f"{kw['anchor_stride_scale']}) and self.anchor_aspect_ratios (here "
                    f"{kw['anchor_aspect_ratios']}), not fixed values"]
        return []


@register
class RPNForwardMatching(Check):
    name, points = "rpn_forward_matching", 1.0
    todo = "RPN.forward: match anchors with GT boxes"
    hides = [("tsd", "RPN.forward")]

    def make_inputs(self, ref, gen):
        cases = {"config_a": rpn_case(ref, gen, "a"), "config_b": rpn_case(ref, gen, "b", "with_empty")}
        for c in cases.values():
            c["parts"].pop("matched_gt_boxes")
        return cases

    def run(self, ctx, case, inp):
        return run_rpn_forward(ctx, inp, capture_matching=True)

    def problems(self, case, got, exp, inp):
        if isinstance(got, torch.Tensor):  # already stacked: fine too
            return compare(got, torch.stack(exp), where="matched_gt_boxes")
        return compare(got, exp, where="matched_gt_boxes")

    def hints(self, case, got, exp, inp):
        if not isinstance(got, (list, tuple, torch.Tensor)) or not len(got):
            return []
        thresholds = tuple(inp["config"]["kw"]["anchor_iou_thresholds"])
        default = tuple(RPN_CONFIGS["a"]["kw"]["anchor_iou_thresholds"])
        if thresholds == default:
            return []
        anchors = torch.cat(list(inp["parts"]["anchors_per_fpn_level"].values()))
        fixed = [oracles.match(anchors, g, default) for g in inp["gt"]]
        if matches(got, fixed) or (isinstance(got, torch.Tensor) and matches(got, torch.stack(fixed))):
            return [f"match with the RPN's own IoU thresholds, self.anchor_iou_thresholds (here "
                    f"{thresholds}), not fixed values {default}"]
        return []


REDUCTION_HINT = ("the provided code sums the per-anchor losses and divides by batch_size_per_image "
                  "* num_images: compute them with reduction='none' (a mean divides twice)")


@register
class RPNForwardLoss(Check):
    name, points = "rpn_forward_loss", 3.0
    todo = "RPN.forward: sampling and losses"
    hides = [("tsd", "RPN.forward")]

    def make_inputs(self, ref, gen):
        return {"batch": rpn_case(ref, gen, "a"), "no_gt_in_second_image": rpn_case(ref, gen, "a", "no_gt_second"),
                "class_0_objects": rpn_case(ref, gen, "a", "class0"),
                "config_b": rpn_case(ref, gen, "b", "with_empty")}

    def run(self, ctx, case, inp):
        recorder = IndexRecorder()
        with recorder:
            out = run_rpn_forward(ctx, inp, replace_matching=True, recorder=recorder)
        if not isinstance(out, dict):
            return out
        result = {k: out.get(k) for k in ("loss_rpn_obj", "loss_rpn_box")}
        result["sampled"] = recorder.sampled()
        result["repeated"] = recorder.repeated
        return result

    def problems(self, case, got, exp, inp):
        if not isinstance(got, dict):
            return compare(got, exp)
        keys = ("loss_rpn_obj", "loss_rpn_box")
        return compare({k: got.get(k) for k in keys}, {k: exp[k] for k in keys})

    def _oracle(self, got, inp, foreground=">="):
        cfg = inp["config"]
        logits, deltas, anchors, matched = oracles.flat_rpn_inputs(inp["parts"], cfg["batch"])
        total = cfg["kw"]["batch_size_per_image"] * cfg["batch"]
        sample = got.get("sampled")
        return oracles.rpn_losses(logits, deltas, anchors, matched, sample, total, foreground), matched, total

    def accepts(self, case, got, exp, inp):
        if not isinstance(got, dict) or not isinstance(got.get("sampled"), torch.Tensor):
            return None
        want, matched, total = self._oracle(got, inp)
        if got.get("repeated") or oracles.sample_problems(got["sampled"], matched[:, 4], total, 0.5):
            return None
        if matches({k: got.get(k) for k in want}, want):
            return "your own sampling, graded on the anchors it drew"
        return None

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict):
            return []
        hints = []
        if isinstance(got.get("sampled"), torch.Tensor):
            want, matched, total = self._oracle(got, inp)
            contract = oracles.sample_problems(got["sampled"], matched[:, 4], total, 0.5)
            if got.get("repeated"):
                contract = ["the sampled indices repeat: sample without replacement"] + contract
            if contract:
                per_batch = len(got["sampled"]) <= inp["config"]["kw"]["batch_size_per_image"] < total
                hints.append(contract[0] + ("; sample batch_size_per_image anchors per image, i.e. "
                                            "batch_size_per_image * num_images in all" if per_batch else ""))
            else:
                gt_0 = self._oracle(got, inp, foreground=">")[0]["loss_rpn_obj"]
                if matches(got.get("loss_rpn_obj"), gt_0) and not matches(gt_0, want["loss_rpn_obj"]):
                    hints.append("objects of class 0 are foreground too: foreground is class >= 0, not > 0")
                n = len(got["sampled"])
                for key in want:
                    g = got.get(key)
                    if isinstance(g, torch.Tensor) and g.numel() == 1 and n and \
                            abs(float(g) * n - float(want[key])) <= 1e-4 * (1 + abs(float(want[key]))) and \
                            not matches(g, want[key]):
                        hints.append(REDUCTION_HINT)
                        break
        if matches(got.get("loss_rpn_obj"), exp["loss_rpn_obj"]) \
                and not matches(got.get("loss_rpn_box"), exp["loss_rpn_box"]) and not hints:
            hints.append("box loss: L1 between predicted and GT deltas, with the loss of "
                         "background anchors (GT deltas -1e8) set to 0")
        return hints


@register
class RPNPredictProposals(Check):
    name, points = "rpn_predict_proposals", 3.0
    todo = "RPN.predict_proposals"
    hides = [("tsd", "RPN.predict_proposals")]

    def make_inputs(self, ref, gen):
        cases = {}
        for key in ("a", "b"):
            cfg = rpn_config(key)
            state = ref_rpn_state(ref, gen, cfg["kw"])
            feats = rand_feats(gen, cfg["height"], cfg["width"], 2 if key == "a" else 1, cfg["kw"]["fpn_channels"])
            anchors = rpn_anchors(ref, cfg, feats)
            b = feats["p3"].shape[0]
            logits = {k: torch.randn(b, len(v), generator=gen) for k, v in anchors.items()}
            deltas = {k: torch.randn(b, len(v), 4, generator=gen) * 0.3 for k, v in anchors.items()}
            cases[f"config_{key}"] = {"config": cfg, "state": state, "anchors": anchors, "logits": logits,
                                      "deltas": deltas, "image_size": (cfg["width"], cfg["height"])}
        return cases

    def run(self, ctx, case, inp):
        rpn = build_rpn(ctx, inp)
        rpn.eval()
        return rpn.predict_proposals(inp["anchors"], inp["logits"], inp["deltas"], tuple(inp["image_size"]))

    def _oracle(self, inp, clamp):
        kw = inp["config"]["kw"]
        return oracles.proposals(inp["anchors"], inp["logits"], inp["deltas"], tuple(inp["image_size"]),
                                 kw["pre_nms_topk"], kw["post_nms_topk"], kw["nms_thresh"], clamp)

    def accepts(self, case, got, exp, inp):
        if isinstance(got, dict) and matches(got, self._oracle(inp, "size-1")):
            return "proposals clamped to [0, width - 1] x [0, height - 1]"
        return None

    def hints(self, case, got, exp, inp):
        if not isinstance(got, dict):
            return []
        if matches(got, self._oracle(inp, "none")):
            return ["proposals outside the image: clamp x to [0, width] and y to [0, height] "
                    "(image_size is (width, height))"]
        if matches(got, self._oracle(inp, "after_nms")):
            return ["clamp the proposals to the image before NMS: NMS must compare the boxes "
                    "that are kept, and IoUs change with clamping"]
        w, h = inp["image_size"]
        swapped = oracles.proposals(inp["anchors"], inp["logits"], inp["deltas"], (h, w),
                                    inp["config"]["kw"]["pre_nms_topk"], inp["config"]["kw"]["post_nms_topk"],
                                    inp["config"]["kw"]["nms_thresh"], "size")
        if w != h and matches(got, swapped):
            return ["width and height are swapped when clamping: image_size is (width, height)"]
        lens = [len(p) for v in got.values() if isinstance(v, list) for p in v if isinstance(p, torch.Tensor)]
        if lens and max(lens) > inp["config"]["kw"]["post_nms_topk"]:
            return ["keep at most post_nms_topk proposals per image and level after NMS"]
        return []
