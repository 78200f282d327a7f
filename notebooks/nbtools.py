"""
Small tools the notebooks share: the self-check printout (expected vs got vs
relative error), switches read from the environment, and a way to look inside
a forward pass at one call without running the rest of it.
"""
import contextlib
import math
import os
import socket
from typing import Any, Dict, List

import torch

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
            text += f"  shape {tuple(value.shape)}"
        return text
    if isinstance(value, torch.Size):
        return str(tuple(value))
    return str(value)


def compare(name: str, expected, got, hint: str, tolerance: float = 1e-4) -> None:
    """
    Print a self-check: what was expected, what your code gave, their relative
    error, and what to look at if they differ.

    Args:
        name: Name of the check (the function or TODO under test).
        expected: Number, nested list, shape or tensor computed by hand or by
            an independent library (never by your code).
        got: The same thing from your code. `None` means "not implemented".
        hint: One line that says what to look at when they differ.
        tolerance: Largest accepted relative error.
    """
    if isinstance(expected, dict):
        for key in expected:
            compare(f"{name} [{key}]", expected[key],
                    None if got is None else got.get(key), hint, tolerance)
        return
    print(f"{name}")
    print(f"  expected: {_show(expected)}".replace("\n", "\n            "))
    print(f"  got:      {_show(got)}".replace("\n", "\n            "))
    if got is None:
        error = math.inf
    else:
        try:
            error = relative_error(expected, got)
        except (TypeError, ValueError, RuntimeError):
            error = math.inf
    verdict = "OK" if error <= tolerance else "MISMATCH"
    print(f"  relative error: {error:.2e} (tolerance {tolerance:.0e})  {verdict}")
    if verdict != "OK":
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
