"""
The TODOs of the kit: where each one is (file, function), what it needs
first, and whether the student's file still holds its stub.

The student release ships `kit/stubs.json`: a fingerprint of every function
with a TODO as released (solution replaced by `pass`). A function whose
fingerprint is still that one has not been started; the self-checks then
say "NOT DONE" instead of showing what a stub happens to return. Without the
file (the kit with its reference solution) every TODO counts as started.

    state("iou")             # "stub" or "started"
    missing_needs("rpn_forward_anchors")   # TODOs it needs that are stubs
"""
import ast
import hashlib
import importlib.util
import json
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
STUBS_PATH = os.path.join(_HERE, "stubs.json")


class Todo(NamedTuple):
    """One graded TODO: its check name, file, function and what it needs first."""

    name: str
    file: str
    function: str  # qualified name in the file, e.g. "RPN.forward"
    label: str  # what the student looks for, e.g. "RPN.forward: anchors"
    needs: Tuple[str, ...] = ()


_FPN = ("fpn_init", "fpn_forward")
_RPN_NET = ("rpn_pred_net_stem", "rpn_pred_net_heads", "rpn_pred_net_forward")
_LIST = [
    Todo("fpn_init", "common.py", "DetectorBackboneWithFPN.__init__",
         "DetectorBackboneWithFPN.__init__: the FPN convs"),
    Todo("fpn_forward", "common.py", "DetectorBackboneWithFPN.forward",
         "DetectorBackboneWithFPN.forward", ("fpn_init",)),
    Todo("fpn_location_coords", "common.py", "get_fpn_location_coords", "get_fpn_location_coords"),
    Todo("nms", "common.py", "nms", "nms"),
    Todo("rpn_pred_net_stem", "two_stage_detector.py", "RPNPredictionNetwork.__init__",
         "RPNPredictionNetwork.__init__: the stem"),
    Todo("rpn_pred_net_heads", "two_stage_detector.py", "RPNPredictionNetwork.__init__",
         "RPNPredictionNetwork.__init__: the heads", ("rpn_pred_net_stem",)),
    Todo("rpn_pred_net_forward", "two_stage_detector.py", "RPNPredictionNetwork.forward",
         "RPNPredictionNetwork.forward", ("rpn_pred_net_stem", "rpn_pred_net_heads")),
    Todo("generate_fpn_anchors", "two_stage_detector.py", "generate_fpn_anchors", "generate_fpn_anchors"),
    Todo("iou", "two_stage_detector.py", "iou", "iou"),
    Todo("rcnn_get_deltas_from_anchors", "two_stage_detector.py", "rcnn_get_deltas_from_anchors",
         "rcnn_get_deltas_from_anchors"),
    Todo("rcnn_apply_deltas_to_anchors", "two_stage_detector.py", "rcnn_apply_deltas_to_anchors",
         "rcnn_apply_deltas_to_anchors"),
    Todo("rpn_forward_anchors", "two_stage_detector.py", "RPN.forward",
         "RPN.forward: predictions and anchors",
         (*_FPN, *_RPN_NET, "fpn_location_coords", "generate_fpn_anchors")),
    Todo("rpn_forward_matching", "two_stage_detector.py", "RPN.forward",
         "RPN.forward: matching", ("rpn_forward_anchors", "iou")),
    Todo("rpn_forward_loss", "two_stage_detector.py", "RPN.forward",
         "RPN.forward: losses", ("rpn_forward_matching", "rcnn_get_deltas_from_anchors")),
    Todo("rpn_predict_proposals", "two_stage_detector.py", "RPN.predict_proposals",
         "RPN.predict_proposals", ("rcnn_apply_deltas_to_anchors",)),
    Todo("faster_rcnn_cls_stem", "two_stage_detector.py", "FasterRCNN.__init__",
         "FasterRCNN.__init__: the classifier stem", ("fpn_init",)),
    Todo("faster_rcnn_cls_head", "two_stage_detector.py", "FasterRCNN.__init__",
         "FasterRCNN.__init__: Flatten + Linear", ("faster_rcnn_cls_stem",)),
    Todo("faster_rcnn_roi_align", "two_stage_detector.py", "FasterRCNN.forward",
         "FasterRCNN.forward: RoI-Align",
         ("faster_rcnn_cls_head", "rpn_forward_anchors", "rpn_predict_proposals")),
    Todo("faster_rcnn_matching", "two_stage_detector.py", "FasterRCNN.forward",
         "FasterRCNN.forward: matching", ("faster_rcnn_roi_align", "rpn_forward_loss")),
    Todo("faster_rcnn_loss", "two_stage_detector.py", "FasterRCNN.forward",
         "FasterRCNN.forward: loss", ("faster_rcnn_matching",)),
    Todo("faster_rcnn_inference", "two_stage_detector.py", "FasterRCNN.inference",
         "FasterRCNN.inference", ("faster_rcnn_cls_head", "nms")),
]
TODOS: Dict[str, Todo] = {t.name: t for t in _LIST}


def fingerprint(text: str, function: str) -> Optional[str]:
    """
    Fingerprint of function `function` ("name" or "Class.method") in Python
    source `text`: a hash of its syntax tree, so comments and blank lines do
    not change it. None if the text does not parse or has no such function.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    nodes = tree.body
    node = None
    for part in function.split("."):
        node = next((n for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef,
                                                        ast.AsyncFunctionDef)) and n.name == part), None)
        if node is None:
            return None
        nodes = node.body
    return hashlib.sha1(ast.dump(node).encode()).hexdigest()[:16]


def _stubs() -> Dict[str, str]:
    if not os.path.exists(STUBS_PATH):
        return {}
    with open(STUBS_PATH) as f:
        return json.load(f)


def source_path(file: str) -> Optional[str]:
    """The file Python imports for graded file `file` (e.g. "common.py"), or None."""
    spec = importlib.util.find_spec(file[:-3])
    return spec.origin if spec is not None and spec.origin else None


def state(name: str) -> str:
    """
    "stub" while the function of TODO `name` is exactly as released,
    "started" otherwise (and always in the kit with its solution).
    """
    todo = TODOS[name]
    stub = _stubs().get(f"{todo.file}::{todo.function}")
    if stub is None:
        return "started"
    path = source_path(todo.file)
    if path is None:
        return "started"
    with open(path) as f:
        current = fingerprint(f.read(), todo.function)
    return "stub" if current == stub else "started"


def all_needs(name: str) -> List[str]:
    """Every TODO that TODO `name` needs first (transitively), earliest first."""
    order: List[str] = []

    def visit(n):
        for need in TODOS[n].needs:
            if need not in order:
                visit(need)
                order.append(need)

    visit(name)
    return [n for n in TODOS if n in order]


def missing_needs(*names: str) -> List[str]:
    """The TODOs among `names` and all they need that are still stubs, in kit order."""
    wanted = set()
    for name in names:
        wanted.update(all_needs(name))
        wanted.add(name)
    return [n for n in TODOS if n in wanted and state(n) == "stub"]


def describe(name: str) -> str:
    """e.g. "iou: two_stage_detector.py"."""
    todo = TODOS[name]
    return f"{todo.label} ({todo.file})"
