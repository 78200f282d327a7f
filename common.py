"""
Pieces shared by the detectors of this kit: the RegNet + FPN backbone, the
mapping of FPN locations to image co-ordinates, and non-maximum suppression.

Three of them are yours to implement (look for TODO): the FPN layers of
`DetectorBackboneWithFPN`, `get_fpn_location_coords` and `nms`.
"""
import socket
import urllib.parse
from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models
from torchvision.models import feature_extraction

# Total stride of every FPN level of `DetectorBackboneWithFPN`: a location of
# level "pK" covers a `2**K x 2**K` cell of the input image.
FPN_STRIDES = {"p3": 8, "p4": 16, "p5": 32}


def hello_common():
    print("Hello from common.py!")


def _load_pretrained_regnet(timeout: float = 5.0) -> nn.Module:
    """
    Build RegNet-X 400MF with torchvision's ImageNet weights. Uses the local
    torch hub cache when the weights are already there; otherwise checks that
    the download host answers within `timeout` seconds, so that an offline
    machine gets a clear error at once instead of a long hang.
    """
    weights = models.RegNet_X_400MF_Weights.IMAGENET1K_V1
    cache_file = (
        torch.hub.get_dir() + "/checkpoints/" + weights.url.rsplit("/", 1)[-1]
    )
    try:
        open(cache_file, "rb").close()
    except OSError:
        host = urllib.parse.urlparse(weights.url).hostname
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError as error:
            raise RuntimeError(
                "DetectorBackboneWithFPN(pretrained=True) needs torchvision's "
                f"ImageNet weights for RegNet-X 400MF, but {host} cannot be "
                f"reached ({error}). Either connect to the internet once (the "
                f"weights are then cached in {cache_file}), or build the "
                "backbone without them: DetectorBackboneWithFPN(out_channels, "
                "pretrained=False)."
            ) from None
    return models.regnet_x_400mf(weights=weights)


class DetectorBackboneWithFPN(nn.Module):
    r"""
    Detection backbone network: a tiny RegNet model coupled with a Feature
    Pyramid Network (FPN). This model takes in batches of input images with
    shape `(B, 3, H, W)` and gives features from three different FPN levels
    with shapes and total strides up to that level (`FPN_STRIDES`):

        - level p3: (out_channels, H /  8, W /  8)      stride =  8
        - level p4: (out_channels, H / 16, W / 16)      stride = 16
        - level p5: (out_channels, H / 32, W / 32)      stride = 32

    NOTE: Any ConvNet that progressively downsamples its input could be coupled
    with an FPN. RegNet-X 400MF is small enough to train on a Colab GPU (or, for
    a few hundred iterations, on a laptop CPU) and still detects well.

    Args:
        out_channels: Number of channels of every FPN level.
        pretrained: Initialize the RegNet with torchvision's ImageNet weights
            (default, as in the course). They are downloaded once and cached;
            without internet this raises an error at once that says what to do.
            Pass `pretrained=False` to start from random weights (offline demo,
            tests).
    """

    def __init__(self, out_channels: int, pretrained: bool = True):
        super().__init__()
        self.out_channels = out_channels

        _cnn = _load_pretrained_regnet() if pretrained else models.regnet_x_400mf()

        # Torchvision models only return features from the last level. Detector
        # backbones (with FPN) require intermediate features of different scales.
        # So we wrap the ConvNet with torchvision's feature extractor. Here we
        # will get output features with names (c3, c4, c5) with same stride as
        # (p3, p4, p5) described above.
        self.backbone = feature_extraction.create_feature_extractor(
            _cnn,
            return_nodes={
                "trunk_output.block2": "c3",
                "trunk_output.block3": "c4",
                "trunk_output.block4": "c5",
            },
        )

        # Pass a small dummy batch through the backbone to find the shapes of
        # (c3, c4, c5). Features are a dictionary with keys as defined above.
        # Values are batches of tensors in NCHW format.
        with torch.no_grad():
            dummy_out = self.backbone(torch.zeros(1, 3, 64, 64))
        dummy_out_shapes = [(key, value.shape) for key, value in dummy_out.items()]

        ######################################################################
        # TODO: Initialize additional Conv layers for FPN.
        #
        # Create THREE "lateral" 1x1 conv layers to transform (c3, c4, c5)
        # such that they all end up with the same `out_channels`.
        # Then create THREE "output" 3x3 conv layers to transform the merged
        # FPN features to output (p3, p4, p5) features.
        # All conv layers must have stride=1 and padding such that features
        # do not get downsampled due to 3x3 convs.
        #
        # HINT: You have to use `dummy_out_shapes` defined above to decide
        # the input/output channels of these layers.
        ######################################################################
        # This behaves like a Python dict, but makes PyTorch understand that
        # there are trainable weights inside it.
        # Add THREE lateral 1x1 conv and THREE output 3x3 conv layers.
        self.fpn_params = nn.ModuleDict()

        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        for c_name, c_shape in dummy_out_shapes:
            level = c_name[1]  # "3", "4" or "5"
            self.fpn_params[f"lateral{level}"] = nn.Conv2d(c_shape[1], out_channels, 1)
            self.fpn_params[f"output{level}"] = nn.Conv2d(
                out_channels, out_channels, 3, stride=1, padding=1
            )
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

    @property
    def fpn_strides(self):
        """
        Total stride up to the FPN level. For a fixed ConvNet, these values
        are invariant to input image size. You may access these values freely
        to implement your logic in Faster R-CNN.
        """
        return dict(FPN_STRIDES)

    def forward(self, images: torch.Tensor):

        # Multi-scale features, dictionary with keys: {"c3", "c4", "c5"}.
        backbone_feats = self.backbone(images)

        fpn_feats = {"p3": None, "p4": None, "p5": None}
        ######################################################################
        # TODO: Fill output FPN features (p3, p4, p5) using RegNet features
        # (c3, c4, c5) and FPN conv layers created above.
        # HINT: Use `F.interpolate` to upsample FPN features.
        ######################################################################

        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        # Top-down pathway: start at the coarsest level and add each lateral.
        merged = None
        for level in ("5", "4", "3"):
            lateral = self.fpn_params[f"lateral{level}"](backbone_feats[f"c{level}"])
            if merged is not None:
                lateral = lateral + F.interpolate(
                    merged, size=lateral.shape[-2:], mode="nearest"
                )
            merged = lateral
            fpn_feats[f"p{level}"] = self.fpn_params[f"output{level}"](merged)
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        return fpn_feats


def get_fpn_location_coords(
    shape_per_fpn_level: Dict[str, Tuple],
    strides_per_fpn_level: Dict[str, int],
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> Dict[str, torch.Tensor]:
    """
    Map every location in FPN feature map to a point on the image. This point
    is the centre of the image cell that the location covers: location `(i, j)`
    (row `i`, column `j`) of a level with stride `s` maps to
    `(x, y) = ((j + 0.5) * s, (i + 0.5) * s)`. With one co-ordinate system for
    all FPN levels and GT boxes, anchors of every level can be compared with GT.

    Args:
        shape_per_fpn_level: Shape of the FPN feature level, dictionary of keys
            {"p3", "p4", "p5"} and feature shapes `(B, C, H, W)` as values.
        strides_per_fpn_level: Dictionary of same keys as above, each with an
            integer value giving the stride of corresponding FPN level.
            See `DetectorBackboneWithFPN.fpn_strides`.
        dtype, device: Of the returned tensors.

    Returns:
        Dict[str, torch.Tensor]
            Dictionary with same keys as `shape_per_fpn_level` and values as
            tensors of shape `(H * W, 2)` giving `(xc, yc)` co-ordinates of the
            centers of the FPN locations on the input image, in the order in
            which a `(B, C, H, W)` feature map flattens its `H * W` locations
            (row by row: x varies fastest).
    """

    # Set these to `(H*W, 2)` Tensors giving (xc, yc) co-ordinates of FPN location.
    location_coords = {
        level_name: None for level_name, _ in shape_per_fpn_level.items()
    }

    for level_name, feat_shape in shape_per_fpn_level.items():
        level_stride = strides_per_fpn_level[level_name]

        ######################################################################
        # TODO: Implement logic to get location co-ordinates below.
        ######################################################################
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        height, width = feat_shape[-2:]
        ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) * level_stride
        xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) * level_stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        location_coords[level_name] = torch.stack(
            [grid_x.flatten(), grid_y.flatten()], dim=1
        )  # (H*W, 2)
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################
    return location_coords


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5):
    """
    Non-maximum suppression removes overlapping bounding boxes.

    Args:
        boxes: Tensor of shape (N, 4) giving top-left and bottom-right coordinates
            of the bounding boxes to perform NMS on.
        scores: Tensor of shape (N, ) giving scores for each of the boxes.
        iou_threshold: Discard all overlapping boxes with IoU > iou_threshold

    Returns:
        keep: torch.long tensor with the indices of the elements that have been
            kept by NMS, sorted in decreasing order of scores;
            of shape [num_kept_boxes]
    """

    if (not boxes.numel()) or (not scores.numel()):
        return torch.zeros(0, dtype=torch.long, device=boxes.device)

    keep = None
    ##########################################################################
    # TODO: Implement non-maximum suppression which iterates the following:
    #       1. Select the highest-scoring box among the remaining ones,
    #          which has not been chosen in this step before
    #       2. Eliminate boxes with IoU > threshold
    #       3. If any boxes remain, GOTO 1
    #       Your implementation should not depend on a specific device type;
    #       you can use the device of the input if necessary.
    # You must not use `torchvision.ops.nms` here: write it in PyTorch. It
    # must keep exactly the boxes that `torchvision.ops.nms` keeps.
    ##########################################################################
    # Replace "pass" statement with your code
    ### BEGIN SOLUTION
    order = scores.argsort(descending=True, stable=True)  # (N,), ties: lower index first
    x1, y1, x2, y2 = boxes[order].unbind(dim=1)  # (N,) each, by decreasing score
    areas = (x2 - x1) * (y2 - y1)  # (N,)

    # Greedy NMS keeps box j iff no kept box before j suppresses it. Boxes go
    # in score order, in blocks: inside a block, iterate that rule on all of
    # its boxes at once to its fixed point (each pass fixes at least one more
    # box, usually a handful of passes in all); then the block's kept boxes
    # suppress every later box in one step. No N x N matrix is built, and
    # later blocks only look forward.
    block_size = 256
    num_boxes = len(areas)
    keep_mask = torch.ones_like(areas, dtype=torch.bool)  # (N,)
    for start in range(0, num_boxes, block_size):
        end = min(start + block_size, num_boxes)
        # IoU of the block's boxes with themselves and every later box.
        rows, cols = slice(start, end), slice(start, num_boxes)
        inter = (torch.min(x2[rows, None], x2[cols]) - torch.max(x1[rows, None], x1[cols])).clamp_(min=0)
        inter *= (torch.min(y2[rows, None], y2[cols]) - torch.max(y1[rows, None], y1[cols])).clamp_(min=0)
        overlaps = inter / (areas[rows, None] + areas[cols] - inter) > iou_threshold  # (b, N - start)
        suppresses = overlaps[:, : end - start].triu(diagonal=1)  # (b, b): i before j

        alive = keep_mask[rows]  # not suppressed by an earlier block
        kept = alive
        while True:
            new_kept = alive & ~(suppresses & kept[:, None]).any(dim=0)
            if torch.equal(new_kept, kept):
                break
            kept = new_kept
        keep_mask[rows] = kept
        keep_mask[end:] &= ~overlaps[kept, end - start :].any(dim=0)
    keep = order[keep_mask]
    ### END SOLUTION
    ##########################################################################
    #                             END OF YOUR CODE                           #
    ##########################################################################
    return keep


def class_spec_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    iou_threshold: float = 0.5,
):
    """
    Wrap `nms` to make it class-specific. Pass class IDs as `class_ids`.
    STUDENT: This depends on your `nms` implementation.

    Returns:
        keep: torch.long tensor with the indices of the elements that have been
            kept by NMS, sorted in decreasing order of scores;
            of shape [num_kept_boxes]
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    # Shift the boxes of each class far apart, so boxes of different classes
    # never overlap, then suppress all of them in one call.
    max_coordinate = boxes.max()
    offsets = class_ids.to(boxes) * (max_coordinate + 1)
    boxes_for_nms = boxes + offsets[:, None]
    keep = nms(boxes_for_nms, scores, iou_threshold)
    return keep
