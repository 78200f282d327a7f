"""
Small tools the notebooks share: the self-checks (`self_check`, `compare`:
expected vs got, one line for a TODO that is not written yet), `needs` for
cells that use finished TODOs, switches read from the environment, and a way
to look inside a forward pass at one call without running the rest of it.
"""
import contextlib
import inspect
import io
import math
import os
import socket
import sys
import traceback
from typing import Any, Dict, List, Optional

import torch

# kit/ sits in the kit's root: this folder's parent, or this folder itself
# (an nbgrader assignment keeps everything in one folder).
_HERE = os.path.dirname(os.path.abspath(__file__))
for _root in (_HERE, os.path.dirname(_HERE)):
    if os.path.isdir(os.path.join(_root, "kit")):
        if _root not in sys.path:
            sys.path.insert(0, _root)
        break
from kit import checking, todos  # noqa: E402

# One switch shortens every long cell (training, evaluation) to a smoke run.
FAST_ENV = "KIT_FAST"


def fast_mode() -> bool:
    """True when the environment variable KIT_FAST is set to 1 (used by CI)."""
    return os.environ.get(FAST_ENV, "0").strip().lower() in ("1", "true", "yes")


def pretrained_weights_available(timeout: float = 2.0) -> bool:
    """
    True when torchvision's ImageNet weights of RegNet-X 400MF are in the
    torch hub cache or their host answers within `timeout` seconds.
    """
    from torchvision import models

    url = models.RegNet_X_400MF_Weights.IMAGENET1K_V1.url
    cache_file = os.path.join(torch.hub.get_dir(), "checkpoints", url.rsplit("/", 1)[-1])
    if os.path.exists(cache_file):
        return True
    host = url.split("/")[2]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _as_tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    if isinstance(value, torch.Size):
        value = list(value)
    return torch.as_tensor(value, dtype=torch.float64)


def relative_error(expected, got) -> float:
    """`max |got - expected| / max(max |expected|, 1e-8)`; inf if shapes differ."""
    expected, got = _as_tensor(expected), _as_tensor(got)
    if expected.shape != got.shape:
        return math.inf
    if expected.numel() == 0:
        return 0.0
    scale = max(expected.abs().max().item(), 1e-8)
    return (got - expected).abs().max().item() / scale


def _show(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.numel() > 48:  # a summary instead of pages of numbers
            flat = value.flatten()
            head = ", ".join(f"{v:.4g}" for v in flat[:6].tolist())
            stats = value.double()
            return (f"shape {tuple(value.shape)}, first [{head}, ...], mean "
                    f"{stats.mean():.4g}, min {stats.min():.4g}, max {stats.max():.4g}")
        text = str(value)
        if value.dim() > 0:
            text += f"  shape {tuple(value.shape)}  {value.dtype}"
        return text
    if isinstance(value, torch.Size):
        return str(tuple(value))
    if inspect.isroutine(value):
        return f"{type(value).__name__} {getattr(value, '__name__', '')}".strip()
    return str(value)


# ------------------------------------------------------------ self-checks
class _Check:
    """State of the `self_check` / `needs` block that runs now."""

    def __init__(self, name: Optional[str], what: str):
        self.name, self.what = name, what
        self.verdict: Optional[str] = None  # a NOT DONE / NEEDS line: the block says only that
        self.reported = False


_CURRENT: List[_Check] = []


def _needs_text(names, most: int = 2) -> str:
    text = ", ".join(todos.describe(n) for n in names[:most])
    if len(names) > most:
        text += f" and {len(names) - most} more TODO{'s' if len(names) - most > 1 else ''} before it"
    return text


def _error_line(error: BaseException) -> str:
    """`Type: message (file.py, line N, in function)`, the deepest frame in a graded file."""
    where = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.basename(frame.filename) in ("two_stage_detector.py", "common.py"):
            where = f" ({os.path.basename(frame.filename)}, line {frame.lineno}, in {frame.name})"
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message[:200]}{where}"


@contextlib.contextmanager
def self_check(name: str):
    """
    Run the self-check of TODO `name` (a check name, e.g. "iou"; see
    `kit.todos.TODOS`). The block prints one line instead of a traceback
    when the TODO is not written yet:

        NOT DONE  iou (two_stage_detector.py): still the stub - implement the TODO
        NEEDS  get_fpn_location_coords (common.py) first (for generate_fpn_anchors)

    and the block's own output is then hidden (it would only show what a
    stub returns). Otherwise the `compare` calls inside print as usual; an
    exception (a bug in finished code) prints one `ERROR` line with its
    place in your file, and the notebook goes on.

        with self_check("iou"):
            compare("iou: 3 boxes x 3 boxes", expected, iou(boxes1, boxes2), hint)
    """
    check = _Check(name, name)
    missing = todos.missing_needs(name)
    before = [m for m in missing if m != name]
    if name in missing:
        check.verdict = f"NOT DONE  {todos.describe(name)}: still the stub - implement the TODO"
        if before:
            check.verdict += f"; first {_needs_text(before, 1)}"
    elif before:
        check.verdict = f"NEEDS  {_needs_text(before)} first (for {todos.describe(name)})"
    yield from _run(check)


@contextlib.contextmanager
def needs(*names: str, what: str = "this cell"):
    """
    Run a cell that uses finished TODOs `names` (check names, see
    `kit.todos.TODOS`), e.g. a figure. While one of them (or one they need)
    is still a stub the block prints one line and its output is hidden:

        SKIPPED  the anchor grid: needs get_fpn_location_coords (common.py) first

    An exception prints one `ERROR` line instead of a traceback.
    """
    check = _Check(None, what)
    missing = todos.missing_needs(*names)
    if missing:
        check.verdict = f"SKIPPED  {what}: needs {_needs_text(missing)} first"
    yield from _run(check)


def _run(check: _Check):
    _CURRENT.append(check)
    try:
        if check.verdict:
            print(check.verdict)
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    yield check
                except Exception:  # noqa: BLE001 - unfinished code: the line above says it
                    pass
        else:
            try:
                yield check
            except Exception as error:  # noqa: BLE001 - one line, and the notebook goes on
                label = todos.describe(check.name) if check.name else check.what
                print(f"ERROR  {label}: {_error_line(error)}")
    finally:
        _CURRENT.pop()


def compare(name: str, expected, got, hint: str, tolerance: float = 1e-4) -> None:
    """
    Print a self-check: what was expected, what your code gave, their relative
    error, the verdict and what to look at if they differ.

    The verdict follows the grader's rule (`kit.checking`): an expected tensor
    needs a tensor of the same shape and dtype whose values are
    `torch.isclose(got, expected, atol=tolerance, rtol=tolerance)`; numbers and
    lists are compared by value. Inside `self_check(...)` a `got` of None
    prints one NOT DONE line.

    Args:
        name: Name of the check (the function or TODO under test).
        expected: Number, nested list, shape or tensor computed by hand or by
            an independent library (never by your code).
        got: The same thing from your code. `None` means "not implemented".
        hint: One line that says what to look at when they differ.
        tolerance: `atol` and `rtol` of the comparison.
    """
    check = _CURRENT[-1] if _CURRENT else None
    if check is not None and check.verdict:
        return  # the block already said NOT DONE / NEEDS
    if isinstance(expected, dict):
        for key in expected:
            compare(f"{name} [{key}]", expected[key],
                    None if not isinstance(got, dict) else got.get(key), hint, tolerance)
        return
    if got is None or inspect.isroutine(got):
        label = todos.describe(check.name) if check is not None and check.name else name
        if check is not None:
            if check.reported:
                return
            check.reported = True
        print(f"NOT DONE  {label}: got {_show(got)} for {name.split(':')[0]} - finish the TODO")
        return
    print(f"{name}")
    print(f"  expected: {_show(expected)}".replace("\n", "\n            "))
    print(f"  got:      {_show(got)}".replace("\n", "\n            "))
    problems = checking.value_problems(got, expected, "got", atol=tolerance, rtol=tolerance)
    try:
        error = relative_error(expected, got)
    except (TypeError, ValueError, RuntimeError):
        error = math.inf
    verdict = "MISMATCH" if problems else "OK"
    print(f"  relative error: {error:.2e} (tolerance {tolerance:.0e})  {verdict}")
    if problems:
        print(f"  {problems[0]}")
        print(f"  if they differ, look at: {hint}")


class StopForward(Exception):
    """Raised by `capture` to end a forward pass once the call was recorded."""


@contextlib.contextmanager
def capture(module, name: str, stop: int = 0, run: bool = True):
    """
    Record every call of `module.<name>` (arguments and return value) while
    the `with` block runs. With `stop=n` (or True for 1) the n-th call raises
    `StopForward` after it is recorded, which `capture` swallows: a forward
    pass can be inspected up to one step without running the rest of it (nor
    the TODOs after that step). With `run=False` the original is not called
    (its result is recorded as None).

        with capture(rpn, "predict_proposals", stop=True, run=False) as calls:
            rpn(feats, strides)
        anchors_per_fpn_level = calls[0]["args"][0]

    Works for functions of a module and methods of an object alike.
    """
    original = getattr(module, name)
    calls: List[Dict[str, Any]] = []

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs) if run else None
        calls.append({"args": args, "kwargs": kwargs, "result": result})
        if stop and len(calls) >= stop:
            raise StopForward(name)
        return result

    had_own = name in vars(module)
    setattr(module, name, wrapper)
    try:
        yield calls
    except StopForward:
        pass
    finally:
        if had_own:
            setattr(module, name, original)
        else:
            delattr(module, name)


@contextlib.contextmanager
def capture_input(module: torch.nn.Module, stop: bool = True):
    """
    Record the positional inputs of `module` (an `nn.Module` inside a model,
    e.g. `detector.cls_pred`) and, with `stop=True`, end the forward pass there.
    """
    calls: List[Dict[str, Any]] = []

    def hook(_module, args):
        calls.append({"args": args})
        if stop:
            raise StopForward(type(module).__name__)

    handle = module.register_forward_pre_hook(hook)
    try:
        yield calls
    except StopForward:
        pass
    finally:
        handle.remove()


class RPNOnly(torch.nn.Module):
    """
    Backbone + RPN as one model whose forward returns the RPN losses while
    training (so `a4_helper.train_detector` can train the first stage alone)
    and the RPN outputs (proposals) in eval mode.
    """

    def __init__(self, backbone: torch.nn.Module, rpn: torch.nn.Module):
        super().__init__()
        self.backbone, self.rpn = backbone, rpn

    def forward(self, images, gt_boxes=None, **unused):
        feats = self.backbone(images)
        output = self.rpn(feats, self.backbone.fpn_strides, gt_boxes)
        if self.training:
            return {k: v for k, v in output.items() if k.startswith("loss")}
        return output


@torch.no_grad()
def proposals_before_nms(anchors, obj_logits, deltas, image_size, topk=400):
    """
    The RPN's proposals of one image and level before NMS: `topk` anchors
    with the highest objectness moved by their deltas (YOUR
    `rcnn_apply_deltas_to_anchors`) and clamped to `image_size = (W, H)`.

    Args:
        anchors: `(N, 4)`; obj_logits: `(N,)`; deltas: `(N, 4)`.

    Returns:
        `(min(topk, N), 4)` boxes and their `(min(topk, N),)` logits, highest
        objectness first.
    """
    import two_stage_detector as tsd

    # The steps of RPN.predict_proposals (decode, clamp, rank), not shared: there they are a TODO.
    boxes = tsd.rcnn_apply_deltas_to_anchors(deltas, anchors)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_size[0])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_size[1])
    order = obj_logits.argsort(descending=True)[:topk]
    return boxes[order], obj_logits[order]


def draw_fpn_locations(image, locations_per_fpn_level, figsize=(12, 4)):
    """
    One panel per FPN level: the image with the centre of every location of
    that level (`get_fpn_location_coords` output) as a dot.

    Args:
        image: `(3, H, W)` tensor in [0, 1] or `(H, W, 3)` array.
        locations_per_fpn_level: {"p3": (H3*W3, 2), ...} `(x, y)` centres.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    levels = list(locations_per_fpn_level)
    fig, axes = plt.subplots(1, len(levels), figsize=figsize, squeeze=False)
    for ax, level in zip(axes[0], levels):
        points = torch.as_tensor(locations_per_fpn_level[level]).cpu()
        ax.imshow(image)
        ax.scatter(points[:, 0], points[:, 1], s=6, c="#00e5ff", edgecolors="black",
                   linewidths=0.3)
        ax.set_title(f"{level}: {len(points)} locations")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def show_ground_truth(dataset, index: int, ax=None):
    """
    Draw item `index` of a `VOC2007DetectionTiny` with its GT boxes and, dashed
    in grey, its *difficult* objects (left out of `gt_boxes`: a detector is
    neither asked to find them nor punished for finding them).

    Returns:
        matplotlib Figure.
    """
    from matplotlib.lines import Line2D

    from kit.figures import PALETTE, add_box, detection_visualizer

    path, image, gt_boxes = dataset[index]
    difficult = dataset.difficult_boxes(index)
    difficult = difficult[difficult[:, 4] >= 0]
    fig = detection_visualizer(image, dataset.class_names, gt_boxes=gt_boxes, ax=ax,
                               title=os.path.basename(path))
    ax = fig.axes[0] if ax is None else ax
    for box in difficult.tolist():
        add_box(ax, box, PALETTE["difficult"], linewidth=1.5, linestyle=":",
                 label=f"difficult {dataset.class_names[int(box[4])]}", text_colour="black")
    handles = [Line2D([], [], color=PALETTE["gt"], ls="--", label="GT")]
    if len(difficult):
        handles.append(Line2D([], [], color=PALETTE["difficult"], ls=":", label="difficult (not GT)"))
    ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7)
    return fig


@torch.no_grad()
def ranked_proposals(anchors, obj_logits, deltas, proposals_after, image_size, pre_nms_topk: int,
                     topk: int = 10):
    """
    The RPN's proposals of image 0 before and after NMS, each ranked by
    objectness over ALL FPN levels together (the RPN keeps and returns them
    level by level), cut to the `topk` best.

    Args:
        anchors, obj_logits, deltas: what `RPN.forward` hands to
            `predict_proposals` (dicts per level; batch index 0 is used).
        proposals_after: `predict_proposals`' result, {level: [boxes of image 0, ...]}.
        image_size: `(W, H)`.
        pre_nms_topk: the RPN's `pre_nms_topk`.

    Returns:
        `(before (k, 4), after (k', 4))`, best first.
    """
    boxes_before, logits_before, boxes_after, logits_after = [], [], [], []
    for level in anchors:
        boxes, logits = proposals_before_nms(anchors[level], obj_logits[level][0], deltas[level][0],
                                             image_size, pre_nms_topk)
        boxes_before.append(boxes)
        logits_before.append(logits)
        kept = proposals_after[level][0].to(boxes.device).reshape(-1, 4)
        if len(kept) and len(boxes):
            # The logit of each kept proposal: that of its box before NMS.
            nearest = torch.cdist(kept.float(), boxes.float(), p=1).argmin(dim=1)
            logits_after.append(logits[nearest])
        else:
            logits_after.append(logits.new_zeros(len(kept)))
        boxes_after.append(kept)

    def top(boxes, logits):
        boxes, logits = torch.cat(boxes), torch.cat(logits)
        return boxes[logits.argsort(descending=True)[:topk]].cpu()

    return top(boxes_before, logits_before), top(boxes_after, logits_after)
