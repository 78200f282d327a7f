"""
What every check shares: the `Check` interface, seeded inputs, module
helpers, the kit modules that surround a graded block, and the device case.

A check has
- `make_inputs(ref, gen)`: seeded inputs per case (built once, into the
  fixtures), several configurations each (non-default hyperparameters, batch
  sizes, non-square images, edge cases);
- `run(ctx, case, inp)`: runs the student's code on those inputs, in the
  sandboxed child, with every other TODO replaced by the reference;
- `problems(...)`, `accepts(...)`, `hints(...)`, `error_hints(...)`: in the
  grading parent, what differs from the reference outputs, which legitimate
  variant the output is (then the case passes), and the likely mistake.

A check's score is `points * (cases passed) / (cases)`.

The device case. Checks whose TODO can run shape-only also have a case
"device": the same code with every input on PyTorch's `meta` device (tensors
without data, standing in for a GPU). Code that creates tensors on the CPU
whatever its inputs (`torch.zeros(n)`, `torch.tensor([w, h])`,
`get_fpn_location_coords(...)` without `device=`) fails there, as it would
on a GPU, and the feedback says so. It is the last case of its check and
scores like the others, but only once the other cases pass: correct code
that ignores the device loses that one case, wrong code gains nothing from
it. Code that reads tensor values (`.item()`, `if tensor:`, boolean masks)
cannot run on `meta`: its device case is not scored against it (it passes,
with a note, when the other cases do).
"""
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .compare import compare, describe
from .hooks import GraderError

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

STRIDES = {"p3": 8, "p4": 16, "p5": 32}
LEVELS = ("p3", "p4", "p5")
DEVICE_CASE = "device"
META = "meta"


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
        """What differs from the reference output (empty: the case passes)."""
        if case == DEVICE_CASE:
            return device_problems(got, exp)
        return compare(got, exp, atol=self.atol, rtol=self.rtol)

    def accepts(self, case, got, exp, inp) -> Optional[str]:
        """The legitimate variant `got` is (the case passes), or None."""
        return None

    def hints(self, case, got, exp, inp) -> List[str]:
        """Likely mistakes, for an output that differs."""
        return []

    def error_hints(self, case, error: str) -> List[str]:
        """Likely mistakes, for a case that raised `error`."""
        if case == DEVICE_CASE and is_device_error(error):
            return [DEVICE_HINT]
        return []


# ---------------------------------------------------------------- inputs
def rand_boxes(gen, n, width=96, height=64, min_size=4.0, max_frac=0.6):
    """`(n, 4)` XYXY boxes inside a `width x height` image."""
    wh = min_size + torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * max_frac
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


def rand_gt(gen, batch=2, num=6, valid=(4, 2), width=96, height=64, classes=(1, 5)):
    """`(batch, num, 5)` GT boxes padded with -1 rows, like the data loader;
    class IDs in `[classes[0], classes[1])` (class 0 only where asked for)."""
    gt = -torch.ones(batch, num, 5)
    for b in range(batch):
        k = valid[b % len(valid)]
        gt[b, :k, :4] = rand_boxes(gen, k, width, height, min_size=12.0)
        gt[b, :k, 4] = torch.randint(classes[0], classes[1], (k,), generator=gen).float()
    return gt


def feat_shapes(height, width, batch, channels) -> Dict[str, tuple]:
    return {k: (batch, channels, height // s, width // s) for k, s in STRIDES.items()}


def rand_feats(gen, height=64, width=96, batch=2, channels=8):
    return {k: torch.randn(*shape, generator=gen) for k, shape in feat_shapes(height, width, batch, channels).items()}


def random_state(module: nn.Module, gen, scale=0.1) -> dict:
    """Random weights (non-zero biases too: catches bias=False) as a state dict."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return {k: v.clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- modules
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


def new_instance(cls, *args, **kwargs):
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


def swap_class(obj, cls):
    """Give a reference-built module the student's class (their methods)."""
    try:
        obj.__class__ = cls
    except TypeError as error:
        raise GraderError(f"cannot use your class {cls.__name__}: {error}")
    return obj


class FixedTrunk(nn.Module):
    """
    Stands in for RegNet-X 400MF inside `DetectorBackboneWithFPN` (building
    RegNet takes seconds): returns c3, c4, c5 with RegNet's channels and
    strides, fixed features when given, else zeros of the right shape.
    """

    CHANNELS = {"c3": 64, "c4": 160, "c5": 400}
    STRIDES = {"c3": 8, "c4": 16, "c5": 32}

    def __init__(self, c_feats=None):
        super().__init__()
        self.c_feats = c_feats

    def forward(self, images):
        if self.c_feats is not None:
            return {k: v.clone() for k, v in self.c_feats.items()}
        b, _, h, w = images.shape
        return {k: images.new_zeros(b, c, -(-h // self.STRIDES[k]), -(-w // self.STRIDES[k]))
                for k, c in self.CHANNELS.items()}


class FastTrunkProvided:
    """
    While active, the provided code of `DetectorBackboneWithFPN.__init__` in
    the student's common.py builds `FixedTrunk` instead of RegNet (the same
    c3-c5 shapes; the TODO only reads their shapes).
    """

    def __init__(self, common_module):
        self.module = common_module

    def __enter__(self):
        import types

        m = self.module
        self.saved = {k: getattr(m, k, None) for k in ("models", "feature_extraction", "_load_pretrained_regnet")}
        m.models = types.SimpleNamespace(regnet_x_400mf=lambda *a, **k: nn.Identity())
        m.feature_extraction = types.SimpleNamespace(create_feature_extractor=lambda *a, **k: FixedTrunk())
        m._load_pretrained_regnet = lambda *a, **k: nn.Identity()
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is not None:
                setattr(self.module, k, v)
        return False


def kit_backbone(common_module, out_channels, fpn_state, c_feats):
    """
    The kit's `DetectorBackboneWithFPN` (reference class, reference FPN
    weights `fpn_state`) with `FixedTrunk(c_feats)` in place of RegNet.
    """
    with FastTrunkProvided(common_module):
        torch.manual_seed(0)
        backbone = common_module.DetectorBackboneWithFPN(out_channels, pretrained=False)
    backbone.backbone = FixedTrunk(c_feats)
    backbone.fpn_params.load_state_dict(fpn_state)
    return backbone


def rand_c_feats(gen, batch, height, width):
    return {k: torch.randn(batch, c, height // FixedTrunk.STRIDES[k], width // FixedTrunk.STRIDES[k], generator=gen)
            for k, c in FixedTrunk.CHANNELS.items()}


# ---------------------------------------------------------------- devices
DEVICE_HINT = ("your code creates a tensor on the CPU while its inputs are on another device "
               "(here the meta device, a stand-in for a GPU): it would fail on a GPU. Create "
               "tensors on the inputs' device: `torch.zeros(n, device=x.device)`, `x.new_tensor(...)`, "
               "`torch.zeros_like(x)`, and pass `device=`/`dtype=` where a function takes them")
DEVICE_ERRORS = ("is not on the expected device", "expected all tensors to be on the same device",
                 "found at least two devices", "expected device meta", "but got device cpu",
                 "must be on the same device")


def is_device_error(text: str) -> bool:
    text = str(text).lower()
    return any(e in text for e in DEVICE_ERRORS)


def to_device(value, device):
    """Tensors in nested dicts/lists/tuples moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


def device_summary(value, depth=0):
    """Devices, shapes and dtypes of the tensors in an output (meta tensors
    have no values to compare)."""
    if depth > 8:
        return "<nested too deep>"
    if isinstance(value, torch.Tensor):
        return {"__tensor__": True, "device": value.device.type, "shape": list(value.shape),
                "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {str(k): device_summary(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, (list, tuple)):
        return [device_summary(v, depth + 1) for v in list(value)[:256]]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"<{type(value).__name__} object>"


UNCHECKED = "__unchecked__"
DEVICE_WAITS = "the device case counts once the other cases pass"


def device_problems(got, exp, where="output") -> List[str]:
    """Where the output of the device case is not on the inputs' device."""
    if isinstance(got, dict) and UNCHECKED in got:
        return []  # could not run on meta: not scored (see module docstring)
    out: List[str] = []

    def walk(g, e, w):
        if len(out) >= 64:
            return
        if isinstance(e, dict) and e.get("__tensor__"):
            if not (isinstance(g, dict) and g.get("__tensor__")):
                out.append(f"{w}: got {describe(g)}, expected a tensor")
            elif g["device"] != e["device"]:
                out.append(f"\0{w}: on the {g['device']} device")
            elif g["shape"] != e["shape"]:
                out.append(f"{w}: shape {tuple(g['shape'])}, expected {tuple(e['shape'])}")
            return
        if isinstance(e, dict):
            if not isinstance(g, dict) or set(g) != set(e):
                out.append(f"{w}: got {describe(g)}, expected a dict with keys {sorted(e)}")
                return
            for k in e:
                walk(g[k], e[k], f"{w}[{k!r}]")
            return
        if isinstance(e, list):
            if not isinstance(g, list) or len(g) != len(e):
                out.append(f"{w}: got {describe(g)}, expected a list of length {len(e)}")
                return
            for i, (gi, ei) in enumerate(zip(g, e)):
                walk(gi, ei, f"{w}[{i}]")

    walk(got, exp, where)
    moved = [p for p in out if p.startswith("\0")]
    if moved:
        first = moved[0][1:]
        more = f" (and {len(moved) - 1} more)" if len(moved) > 1 else ""
        out = [f"{first}{more}, but the inputs were on the meta device (a stand-in for a GPU): "
               f"{DEVICE_HINT}"] + [p for p in out if not p.startswith("\0")]
    return out[:3]


# ---------------------------------------------------------------- verdicts
def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - odd outputs never break scoring
        return None


def _with_hints(message: str, hints) -> str:
    return message + "".join(f"\n    likely mistake: {h}" for h in (hints or [])[:2])


def verdict(check: Check, case: str, got, exp, load_inputs, others_passed: bool = True):
    """
    Judge one case of a check in the grading parent.

    Args:
        got: the child's `{"ok", "value" | "error"}` for the case.
        exp: the reference output.
        load_inputs: returns the case's inputs (loaded only when needed).
        others_passed: whether every earlier case of the check passed (the
            device case, last, passes unchecked only then).

    Returns:
        (passed, message or None, note or None): the note names an accepted
        variant, or why the device case was not scored.
    """
    if not isinstance(got, dict) or "ok" not in got:
        return False, "no output", None
    if not got["ok"]:
        error = str(got.get("error", "error"))
        return False, _with_hints(error, _safe(check.error_hints, case, error)), None
    value = got.get("value")
    if case == DEVICE_CASE and isinstance(value, dict) and UNCHECKED in value:
        if others_passed:
            return True, None, ("not checked on the meta device: your code reads tensor values, "
                                "which meta tensors do not have (not scored against you)")
        return False, DEVICE_WAITS, None
    try:
        problems = check.problems(case, value, exp, None)
    except Exception as error:  # noqa: BLE001 - odd outputs
        problems = [f"cannot compare: {type(error).__name__}: {error}; got {describe(value)}"]
    if case == DEVICE_CASE and not problems and not others_passed:
        return False, DEVICE_WAITS, None
    if not problems:
        return True, None, None
    inp = _safe(load_inputs)
    variant = _safe(check.accepts, case, value, exp, inp) if inp is not None else None
    if variant:
        return True, None, f"accepted: {variant}"
    hints = _safe(check.hints, case, value, exp, inp) if inp is not None else None
    return False, _with_hints("; ".join(problems[:3]), hints), None
