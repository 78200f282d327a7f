"""
Anchors of the FPN levels for an image size, built with YOUR
`get_fpn_location_coords` (common.py) and `generate_fpn_anchors`
(two_stage_detector.py): the one place outside the detector where anchors
are made (figures, the demo, the anchor explorer, the notebooks' checks).
"""
import math
from typing import Dict, Sequence, Tuple

import torch

from . import todos


def feature_map_shapes(image_size: Tuple[int, int], strides: Dict[str, int]) -> Dict[str, Tuple[int, ...]]:
    """
    Shapes `(1, 1, H, W)` of the FPN maps of one image, as the backbone makes
    them (every stride-2 layer rounds up).

    Args:
        image_size: `(W, H)` of the image in pixels.
        strides: FPN level name -> stride, e.g. `common.FPN_STRIDES`.
    """
    width, height = image_size
    return {level: (1, 1, math.ceil(height / s), math.ceil(width / s)) for level, s in strides.items()}


def fpn_anchors(
    image_size: Tuple[int, int],
    strides: Dict[str, int],
    stride_scale: float,
    aspect_ratios: Sequence[float],
    device: torch.device = "cpu",
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """
    Location centres and anchors of every FPN level, for one image size.

    Args:
        image_size: `(W, H)` of the images in pixels.
        strides: FPN level name -> stride (a subset of levels is fine).
        stride_scale: anchor size of aspect ratio 1 in strides (the RPN's
            `anchor_stride_scale`).
        aspect_ratios: anchor aspect ratios (the RPN's `anchor_aspect_ratios`).
        device: where the tensors live.

    Returns:
        locations: level -> `(H*W, 2)` centres `(x, y)`.
        anchors: level -> `(H*W*A, 4)` XYXY anchors, `A = len(aspect_ratios)`.

    Raises:
        NotImplementedError: "needs <TODO> (<file>): implement it first."
            for the TODO whose function still returns None, e.g. "needs
            get_fpn_location_coords (common.py): implement it first.". A
            caller can put its own subject first ("The explorer " + message).
    """
    # Looked up at call time: the student's edits (%autoreload) and test
    # doubles of these functions are what runs.
    import common
    import two_stage_detector as tsd

    shapes = feature_map_shapes(image_size, strides)
    locations = common.get_fpn_location_coords(shapes, strides, dtype=torch.float32, device=device)
    _check_done(locations, "fpn_location_coords")
    anchors = tsd.generate_fpn_anchors(locations, strides, stride_scale, list(aspect_ratios))
    _check_done(anchors, "generate_fpn_anchors")
    return locations, anchors


def _check_done(per_level, todo: str) -> None:
    """Raise NotImplementedError if TODO `todo` gave None (for any level)."""
    if per_level is None or any(v is None for v in per_level.values()):
        raise NotImplementedError(f"needs {todos.describe(todo)}: implement it first.")
