import math
from typing import Dict, List, Optional, Tuple

import torch
import torchvision
from a4_helper import *
from common import class_spec_nms, get_fpn_location_coords, nms
from torch import nn
from torch.nn import functional as F

# Short hand type notation:
TensorDict = Dict[str, torch.Tensor]

# Sentinel rows of matched GT boxes (see `rcnn_match_anchors_to_gt`): an
# anchor (or proposal) matched with no GT box gets a row of all `BACKGROUND`
# if it is background, of all `NEUTRAL` if it is neutral (neither foreground
# nor background: never used for training). GT boxes from the dataloader are
# padded with rows of -1 too (class -1), and box deltas of background and
# neutral anchors are all `NEUTRAL` (see `rcnn_get_deltas_from_anchors`).
BACKGROUND = -1
NEUTRAL = -1e8

# FPN level assignment of boxes (Equation (1) of the FPN paper): a box of the
# canonical ImageNet size `FPN_CANONICAL_SIZE` (224 x 224) goes to level
# `FPN_CANONICAL_LEVEL` (k0 = 5, p5), each halving of its size one level finer.
FPN_CANONICAL_SIZE = 224
FPN_CANONICAL_LEVEL = 5


def hello_two_stage_detector():
    print("Hello from two_stage_detector.py!")


def assign_fpn_level(
    boxes: torch.Tensor, min_level: int = 3, max_level: int = 5
) -> torch.Tensor:
    """
    FPN level of every box by Equation (1) of the FPN paper:
    `floor(5 + log2(sqrt(area) / 224))` (with `FPN_CANONICAL_LEVEL` and
    `FPN_CANONICAL_SIZE`), clamped to `[min_level, max_level]`. The defaults
    are the levels p3 to p5 of `DetectorBackboneWithFPN`.

    Args:
        boxes: Tensor of shape `(..., 4 or more)`, XYXY boxes in absolute
            co-ordinates in the first four columns (others are ignored).

    Returns:
        torch.Tensor
            `int64` tensor of shape `boxes.shape[:-1]`: level `K` means "pK".
    """
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    level = torch.floor(
        FPN_CANONICAL_LEVEL + torch.log2(torch.sqrt(area) / FPN_CANONICAL_SIZE)
    )
    return torch.clamp(level, min=min_level, max=max_level).to(torch.int64)


def cat_across_fpn_levels(
    dict_with_fpn_levels: Dict[str, torch.Tensor], dim: int = 1
) -> torch.Tensor:
    """
    Convert a dict of tensors across FPN levels {"p3", "p4", "p5"} to a
    single tensor, concatenating along `dim` in the order of the dict's keys.
    Values could be anything - batches of image features, GT targets, etc.
    `RPN` and `FasterRCNN` call this as `self._cat_across_fpn_levels`.
    """
    return torch.cat(list(dict_with_fpn_levels.values()), dim=dim)


class RPNPredictionNetwork(nn.Module):
    """
    RPN prediction network that accepts FPN feature maps from different levels
    and makes two predictions for every anchor: objectness and box deltas.

    Faster R-CNN typically uses (p2, p3, p4, p5) feature maps. We will exclude
    p2 to have a small enough model for Colab.

    The same small fully convolutional network runs on every FPN level: a stem
    of 3x3 convolutions shared by both predictions, then one 1x1 convolution
    for the objectness logits and one for the box deltas.
    """

    def __init__(
        self, in_channels: int, stem_channels: List[int], num_anchors: int = 3
    ):
        """
        Args:
            in_channels: Number of channels in input feature maps. This value
                is same as the output channels of FPN.
            stem_channels: List of integers giving the number of output channels
                in each convolution layer of stem layers.
            num_anchors: Number of anchor boxes assumed per location (say, `A`).
                Faster R-CNN without an FPN uses `A = 9`, anchors with three
                different sizes and aspect ratios. With FPN, it is more common
                to have a fixed size dependent on the stride of FPN level, hence
                `A = 3` is default - with three aspect ratios.
        """
        super().__init__()

        self.num_anchors = num_anchors
        ######################################################################
        # TODO: Create a stem of alternating 3x3 convolution layers and RELU
        # activation modules. RPN shares this stem for objectness and box
        # regression (one stem for both predictions, not one per prediction).
        #
        # Use `in_channels` and `stem_channels` for creating these layers, the
        # docstring above tells you what they mean. Initialize weights of each
        # conv layer from a normal distribution with mean = 0 and std dev = 0.01
        # and all biases with zero. Use conv stride = 1 and zero padding such
        # that size of input features remains same: remember we need predictions
        # at every location in feature map, we shouldn't "lose" any locations.
        ######################################################################
        # Fill this list.
        stem_rpn = []
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        prev_channels = in_channels
        for out_channels in stem_channels:
            conv = nn.Conv2d(prev_channels, out_channels, 3, stride=1, padding=1)
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)
            stem_rpn += [conv, nn.ReLU()]
            prev_channels = out_channels
        ### END SOLUTION

        # Wrap the layers defined by student into a `nn.Sequential` module:
        self.stem_rpn = nn.Sequential(*stem_rpn)
        ######################################################################
        # TODO: Create TWO 1x1 conv layers for individually to predict
        # objectness and box deltas for every anchor, at every location.
        #
        # Objectness is obtained by applying sigmoid to its logits. However,
        # DO NOT initialize a sigmoid module here. PyTorch loss functions have
        # numerically stable implementations with logits.
        ######################################################################

        # Replace these lines with your code, keep variable names unchanged.
        self.pred_obj = None  # Objectness conv
        self.pred_box = None  # Box regression conv

        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        self.pred_obj = nn.Conv2d(prev_channels, num_anchors, 1)
        self.pred_box = nn.Conv2d(prev_channels, num_anchors * 4, 1)
        for layer in (self.pred_obj, self.pred_box):
            nn.init.normal_(layer.weight, mean=0.0, std=0.01)
            nn.init.zeros_(layer.bias)
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

    def forward(self, feats_per_fpn_level: TensorDict) -> List[TensorDict]:
        """
        Accept FPN feature maps and predict desired quantities for every anchor
        at every location. Format the output tensors such that feature height,
        width, and number of anchors are collapsed into a single dimension (see
        description below in "Returns" section) this is convenient for computing
        loss and performing inference.

        Args:
            feats_per_fpn_level: Features from FPN, keys {"p3", "p4", "p5"}.
                Each tensor will have shape `(batch_size, fpn_channels, H, W)`.

        Returns:
            List of dictionaries, each having keys {"p3", "p4", "p5"}:
            1. Objectness logits:     `(batch_size, H * W * num_anchors)`
            2. Box regression deltas: `(batch_size, H * W * num_anchors, 4)`
        """

        ######################################################################
        # TODO: Iterate over every FPN feature map and obtain predictions using
        # the layers defined above. DO NOT apply sigmoid to objectness logits.
        ######################################################################
        # Fill these with keys: {"p3", "p4", "p5"}, same as input dictionary.
        object_logits = {}
        boxreg_deltas = {}

        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        for level_name, feats in feats_per_fpn_level.items():
            batch_size = feats.shape[0]
            stem = self.stem_rpn(feats)
            # (B, A, H, W) -> (B, H, W, A) -> (B, H*W*A)
            logits = self.pred_obj(stem).permute(0, 2, 3, 1)
            object_logits[level_name] = logits.reshape(batch_size, -1)
            # (B, A*4, H, W) -> (B, H, W, A*4) -> (B, H*W*A, 4)
            deltas = self.pred_box(stem).permute(0, 2, 3, 1)
            boxreg_deltas[level_name] = deltas.reshape(batch_size, -1, 4)
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        return [object_logits, boxreg_deltas]


@torch.no_grad()
def generate_fpn_anchors(
    locations_per_fpn_level: TensorDict,
    strides_per_fpn_level: Dict[str, int],
    stride_scale: int,
    aspect_ratios: List[float] = [0.5, 1.0, 2.0],
):
    """
    Generate multiple anchor boxes at every location of FPN level. Anchor boxes
    should be in XYXY format and they should be centered at the given locations.

    Args:
        locations_per_fpn_level: Centers at different levels of FPN (p3, p4, p5),
            that are already projected to absolute co-ordinates in input image
            dimension. Dictionary of three keys: (p3, p4, p5) giving tensors of
            shape `(H * W, 2)` where H, W is the size of FPN feature map.
        strides_per_fpn_level: Dictionary of same keys as above, each with an
            integer value giving the stride of corresponding FPN level.
            See `DetectorBackboneWithFPN.fpn_strides` in `common.py`.
        stride_scale: Size of square anchor at every FPN levels will be
            `(this value) * (FPN level stride)`. `RPN` passes its
            `anchor_stride_scale` (default 8), which makes anchor boxes of
            size (64x64), (128x128), (256x256) for FPN levels p3, p4, and p5
            respectively; a value of 4 would make (32x32), (64x64), (128x128).
        aspect_ratios: Anchor aspect ratios to consider at every location. We
            consider anchor area to be `(stride_scale * FPN level stride) ** 2`
            and set new width and height of anchors at every location:
                new_width = sqrt(area / aspect ratio)
                new_height = area / new_width

    Returns:
        TensorDict
            Dictionary with same keys as `locations_per_fpn_level` and values as
            tensors of shape `(HWA, 4)` giving anchors for all locations
            per FPN level, each location having `A = len(aspect_ratios)` anchors.
            All anchors are in XYXY format and their centers align with locations.
    """

    # Set these to `(H * W * A, 4)` Tensors giving anchor boxes in XYXY format.
    anchors_per_fpn_level = {
        level_name: None for level_name, _ in locations_per_fpn_level.items()
    }

    for level_name, locations in locations_per_fpn_level.items():
        level_stride = strides_per_fpn_level[level_name]

        # List of `A = len(aspect_ratios)` anchor boxes.
        anchor_boxes = []
        for aspect_ratio in aspect_ratios:
            ##################################################################
            # TODO: Implement logic for anchor boxes below. Write vectorized
            # implementation to generate anchors for a single aspect ratio.
            # Fill `anchor_boxes` list above.
            #
            # Calculate resulting width and height of the anchor box as per
            # `stride_scale` and `aspect_ratios` definitions. Then shift the
            # locations to get top-left and bottom-right co-ordinates.
            ##################################################################
            # Replace "pass" statement with your code
            ### BEGIN SOLUTION
            area = (stride_scale * level_stride) ** 2
            width = math.sqrt(area / aspect_ratio)
            height = area / width
            half_size = locations.new_tensor([width / 2, height / 2])  # (2,)
            # (H*W, 4): (xc - w/2, yc - h/2, xc + w/2, yc + h/2)
            anchor_boxes.append(
                torch.cat([locations - half_size, locations + half_size], dim=1)
            )
            ### END SOLUTION
            ##################################################################
            #                        END OF YOUR CODE                        #
            ##################################################################

        # shape: (A, H * W, 4)
        anchor_boxes = torch.stack(anchor_boxes)
        # Bring `H * W` first and collapse those dimensions.
        anchor_boxes = anchor_boxes.permute(1, 0, 2).contiguous().view(-1, 4)
        anchors_per_fpn_level[level_name] = anchor_boxes

    return anchors_per_fpn_level


@torch.no_grad()
def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """
    Compute intersection-over-union (IoU) between pairs of box tensors. Input
    box tensors must in XYXY format.

    Args:
        boxes1: Tensor of shape `(M, 4)` giving a set of box co-ordinates.
        boxes2: Tensor of shape `(N, 4)` giving another set of box co-ordinates.

    Returns:
        torch.Tensor
            Tensor of shape (M, N) with `iou[i, j]` giving IoU between i-th box
            in `boxes1` and j-th box in `boxes2`.
    """

    ##########################################################################
    # TODO: Implement the IoU function here.
    ##########################################################################
    # Replace "pass" statement with your code
    ### BEGIN SOLUTION
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (M,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (N,)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (M, N, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (M, N, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (M, N, 2)
    intersection = wh[..., 0] * wh[..., 1]  # (M, N)
    iou = intersection / (area1[:, None] + area2[None, :] - intersection)
    ### END SOLUTION
    ##########################################################################
    #                             END OF YOUR CODE                           #
    ##########################################################################
    return iou


@torch.no_grad()
def rcnn_match_anchors_to_gt(
    anchor_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    iou_thresholds: Tuple[float, float],
) -> TensorDict:
    """
    Match anchor boxes (or RPN proposals) with a set of GT boxes. Every anchor
    is matched with the GT box it has the highest IoU with; by that IoU it is
    "foreground" (matched with that box), "background" or "neutral".

    NOTE: This function is NOT BATCHED. Call separately for GT boxes per image.

    Args:
        anchor_boxes: Anchor boxes (or RPN proposals): a combined tensor of
            shape `(N, 4)` where `N` are total anchors from all FPN levels, or
            a set of RPN proposals.
        gt_boxes: GT boxes of a single image, a batch of `(M, 5)` boxes with
            absolute co-ordinates and class ID `(x1, y1, x2, y2, C)`. In this
            codebase, this tensor is directly served by the dataloader (rows
            of -1 pad the images that have fewer boxes; they are ignored).
        iou_thresholds: Tuple of (low, high) IoU thresholds, both in [0, 1]
            giving thresholds to assign foreground/background anchors:
            IoU <= low is background, low < IoU < high is neutral and
            IoU >= high is foreground. With low == high there are no neutral
            anchors.

    Returns:
        torch.Tensor
            Tensor of shape `(N, 5)`: the matched GT box and class of every
            anchor; rows of background anchors are all -1, rows of neutral
            anchors all -1e8.
    """

    # Filter empty GT boxes:
    gt_boxes = gt_boxes[gt_boxes[:, 4] != -1]

    # If no GT boxes are available, match all anchors to background and return.
    if len(gt_boxes) == 0:
        fake_boxes = torch.zeros_like(anchor_boxes) + BACKGROUND
        fake_class = torch.zeros_like(anchor_boxes[:, [0]]) + BACKGROUND
        return torch.cat([fake_boxes, fake_class], dim=1)

    # Match matrix => pairwise IoU of anchors (rows) and GT boxes (columns).
    # STUDENTS: This matching depends on your IoU implementation.
    match_matrix = iou(anchor_boxes, gt_boxes[:, :4])

    # Find matched ground-truth instance per anchor:
    match_quality, matched_idxs = match_matrix.max(dim=1)
    matched_gt_boxes = gt_boxes[matched_idxs]

    # Set boxes with low IoU threshold to background (-1).
    matched_gt_boxes[match_quality <= iou_thresholds[0]] = BACKGROUND

    # Set remaining boxes to neutral (-1e8).
    neutral_idxs = (match_quality > iou_thresholds[0]) & (
        match_quality < iou_thresholds[1]
    )
    matched_gt_boxes[neutral_idxs, :] = NEUTRAL
    return matched_gt_boxes


def rcnn_get_deltas_from_anchors(
    anchors: torch.Tensor, gt_boxes: torch.Tensor
) -> torch.Tensor:
    """
    Get box regression deltas that transform `anchors` to `gt_boxes`. These
    deltas will become GT targets for box regression. The deltas are in
    `(dx, dy, dw, dh)` format: the offset from the anchor center to the GT
    box center, in units of anchor width and height, and the log of the ratio
    of GT box size to anchor size. Box regression is only supervised by
    foreground anchors. If GT boxes are "background/neutral", then deltas
    must be `(-1e8, -1e8, -1e8, -1e8)` (just some LARGE negative number).

    Follow Slide 68:
        https://web.eecs.umich.edu/~justincj/slides/eecs498/WI2022/598_WI2022_lecture13.pdf

    Args:
        anchors: Tensor of shape `(N, 4)` giving anchors boxes in XYXY format.
        gt_boxes: Tensor of shape `(N, 4)` giving matching GT boxes.

    Returns:
        torch.Tensor
            Tensor of shape `(N, 4)` giving anchor deltas.
    """
    ##########################################################################
    # TODO: Implement the logic to get deltas.
    # Remember to set the deltas of "background/neutral" GT boxes to -1e8
    ##########################################################################
    deltas = None
    # Replace "pass" statement with your code
    ### BEGIN SOLUTION
    anchor_wh = anchors[:, 2:] - anchors[:, :2]  # (N, 2)
    anchor_ctr = anchors[:, :2] + 0.5 * anchor_wh  # (N, 2)
    gt_wh = gt_boxes[:, 2:4] - gt_boxes[:, :2]  # (N, 2)
    gt_ctr = gt_boxes[:, :2] + 0.5 * gt_wh  # (N, 2)

    # Background rows are all -1 and neutral rows all -1e8: log() of their
    # "sizes" would be meaningless, so only divide/log foreground rows.
    coords = gt_boxes[:, :4]
    ignore = (coords == BACKGROUND).all(dim=1) | (coords == NEUTRAL).all(dim=1)  # (N,)
    gt_wh = torch.where(ignore[:, None], anchor_wh, gt_wh)
    deltas = torch.cat(
        [(gt_ctr - anchor_ctr) / anchor_wh, torch.log(gt_wh / anchor_wh)], dim=1
    )  # (N, 4)
    deltas[ignore] = NEUTRAL
    ### END SOLUTION
    ##########################################################################
    #                             END OF YOUR CODE                           #
    ##########################################################################

    return deltas


def rcnn_apply_deltas_to_anchors(
    deltas: torch.Tensor, anchors: torch.Tensor
) -> torch.Tensor:
    """
    Implement the inverse of `rcnn_get_deltas_from_anchors` here.

    Args:
        deltas: Tensor of shape `(N, 4)` giving box regression deltas.
        anchors: Tensor of shape `(N, 4)` giving anchors to apply deltas on.

    Returns:
        torch.Tensor
            Same shape as deltas and anchors, giving the resulting boxes in
            XYXY format.
    """

    # Clamp dw and dh such that they would transform a 8px box no larger than
    # 224px. This is necessary for numerical stability as we apply exponential.
    scale_clamp = math.log(224 / 8)
    deltas = deltas.clone()  # Clamp a copy: never modify the caller's tensor.
    deltas[:, 2] = torch.clamp(deltas[:, 2], max=scale_clamp)
    deltas[:, 3] = torch.clamp(deltas[:, 3], max=scale_clamp)

    ##########################################################################
    # TODO: Implement the transformation logic to get output boxes.
    ##########################################################################
    output_boxes = None
    # Replace "pass" statement with your code
    ### BEGIN SOLUTION
    anchor_wh = anchors[:, 2:] - anchors[:, :2]  # (N, 2)
    anchor_ctr = anchors[:, :2] + 0.5 * anchor_wh  # (N, 2)
    ctr = anchor_ctr + deltas[:, :2] * anchor_wh  # (N, 2)
    half_wh = 0.5 * anchor_wh * torch.exp(deltas[:, 2:])  # (N, 2)
    output_boxes = torch.cat([ctr - half_wh, ctr + half_wh], dim=1)  # (N, 4)
    ### END SOLUTION
    ##########################################################################
    #                             END OF YOUR CODE                           #
    ##########################################################################
    return output_boxes


@torch.no_grad()
def sample_rpn_training(
    gt_boxes: torch.Tensor, num_samples: int, fg_fraction: float
):
    """
    Return `num_samples` (or fewer, if not enough found) random pairs of anchors
    and GT boxes without exceeding `fg_fraction * num_samples` positives, and
    then try to fill the remaining slots with background anchors. We will ignore
    "neutral" anchors in this sampling as they are not used for training.

    Args:
        gt_boxes: Tensor of shape `(N, 5)` giving GT box co-ordinates that are
            already matched with some anchor boxes (with GT class label at last
            dimension). Label -1 means background and -1e8 means neutral.
        num_samples: Total anchor-GT pairs with label >= -1 to return.
        fg_fraction: The number of subsampled labels with values >= 0 is
            `min(num_foreground, int(fg_fraction * num_samples))`. In other
            words, if there are not enough fg, the sample is filled with more
            bg. Both are drawn without repetition: with too few bg as well,
            fewer than `num_samples` indices are returned.

    Returns:
        fg_idx, bg_idx (Tensor):
            1D vector of indices. The total length of both is `num_samples` or
            fewer. Use these to index anchors, GT boxes, and model predictions.
    """
    foreground = (gt_boxes[:, 4] >= 0).nonzero().squeeze(1)
    background = (gt_boxes[:, 4] == BACKGROUND).nonzero().squeeze(1)

    # Protect against not enough foreground examples.
    num_fg = min(int(num_samples * fg_fraction), foreground.numel())
    num_bg = num_samples - num_fg

    # Randomly select positive and negative examples.
    perm1 = torch.randperm(foreground.numel(), device=foreground.device)[:num_fg]
    perm2 = torch.randperm(background.numel(), device=background.device)[:num_bg]

    fg_idx = foreground[perm1]
    bg_idx = background[perm2]
    return fg_idx, bg_idx


@torch.no_grad()
def mix_gt_with_proposals(
    proposals_per_fpn_level: Dict[str, List[torch.Tensor]], gt_boxes: torch.Tensor
):
    """
    At start of training, RPN proposals may be low quality. It's possible that
    very few of these have high IoU with GT boxes. This may stall or de-stabilize
    training of second stage. This function mixes GT boxes with RPN proposals to
    improve training. Different GT boxes are mixed with proposals from different
    FPN levels according to assignment rule of FPN paper.

    Args:
        proposals_per_fpn_level: Dict of proposals per FPN level, per image in
            batch. These are the "proposals" of the output of `RPN.forward()`.
        gt_boxes: Tensor of shape `(B, M, 5)` giving GT boxes per image in
            batch, with GT class label (rows of -1 are padding, ignored).

    Returns:
        Dict[str, List[torch.Tensor]]
            A new dict, same keys and list lengths as `proposals_per_fpn_level`:
            the proposals of every image and level followed by the GT boxes of
            that image assigned to that level (4 columns, no class label). The
            input dict, its lists and tensors are left unchanged.
    """

    # Mix ground-truth boxes for every example, per FPN level. There's no direct
    # way to vectorize this. New lists: the caller's dict is not modified.
    mixed_per_fpn_level = {
        level_name: list(props) for level_name, props in proposals_per_fpn_level.items()
    }
    level_ids = [int(level_name[1:]) for level_name in mixed_per_fpn_level]
    for _idx, _gtb in enumerate(gt_boxes):

        # Filter empty GT boxes:
        _gtb = _gtb[_gtb[:, 4] != -1]
        if len(_gtb) == 0:
            continue

        # Compute FPN level assignments for each GT box. This follows Equation (1)
        # of FPN paper (k0 = 5). `level_assn` has `(M, )` integers, one of the
        # levels of the dict's keys: {3, 4, 5} for {"p3", "p4", "p5"}.
        level_assn = assign_fpn_level(_gtb, min(level_ids), max(level_ids))

        for level_name, _props in mixed_per_fpn_level.items():
            _prop = _props[_idx]

            # Get GT boxes of this image that match level scale, and append them
            # to proposals.
            _gt_boxes_fpn_subset = _gtb[level_assn == int(level_name[1:])]
            if len(_gt_boxes_fpn_subset) > 0:
                _props[_idx] = torch.cat(
                    # Remove class label since proposals don't have it:
                    [_prop, _gt_boxes_fpn_subset[:, :4]],
                    dim=0,
                )

    return mixed_per_fpn_level


class RPN(nn.Module):
    """
    Region Proposal Network: First stage of Faster R-CNN detector.

    This class puts together everything you implemented so far. It accepts FPN
    features as input and uses `RPNPredictionNetwork` to predict objectness and
    box reg deltas. Computes proposal boxes for second stage (during both
    training and inference) and losses during training.
    """

    def __init__(
        self,
        fpn_channels: int,
        stem_channels: List[int],
        batch_size_per_image: int,
        anchor_stride_scale: int = 8,
        anchor_aspect_ratios: List[float] = [0.5, 1.0, 2.0],
        anchor_iou_thresholds: Tuple[float, float] = (0.3, 0.6),
        nms_thresh: float = 0.7,
        pre_nms_topk: int = 400,
        post_nms_topk: int = 100,
        fg_fraction: float = 0.5,
    ):
        """
        Args:
            batch_size_per_image: Anchors per image to sample for training.
            anchor_iou_thresholds: (low, high) IoU thresholds of the matching
                of anchors with GT boxes (see `rcnn_match_anchors_to_gt`).
            nms_thresh: IoU threshold for the NMS on proposals. It is used
                during both, training and inference: the second stage takes
                the RPN's proposals in both.
            pre_nms_topk: Number of top-K proposals to select before applying
                NMS, per FPN level. This helps in speeding up NMS.
            post_nms_topk: Number of top-K proposals to select after applying
                NMS, per FPN level. NMS is obviously going to be class-agnostic.
            fg_fraction: At most this fraction of the sampled anchors are
                foreground (`sample_rpn_training`); default 0.5: 50-50%
                foreground/background, unless there aren't enough foreground.

        Refer explanations of remaining args in the classes/functions above.
        """
        super().__init__()
        self.pred_net = RPNPredictionNetwork(
            fpn_channels, stem_channels, num_anchors=len(anchor_aspect_ratios)
        )
        # Record all input arguments:
        self.batch_size_per_image = batch_size_per_image
        self.anchor_stride_scale = anchor_stride_scale
        self.anchor_aspect_ratios = anchor_aspect_ratios
        self.anchor_iou_thresholds = anchor_iou_thresholds
        self.nms_thresh = nms_thresh
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.fg_fraction = fg_fraction

    def forward(
        self,
        feats_per_fpn_level: TensorDict,
        strides_per_fpn_level: Dict[str, int],
        gt_boxes: Optional[torch.Tensor] = None,
    ):
        # Get batch size from FPN feats:
        num_images = feats_per_fpn_level["p3"].shape[0]

        ######################################################################
        # TODO: Implement the first part of the forward pass (training and
        # inference alike). Follow these steps:
        #   1. Pass the FPN features per level to the RPN prediction network.
        #   2. Generate anchor boxes for all FPN levels.
        #
        # HINT: You have already implemented everything, just have to call the
        # appropriate functions.
        ######################################################################
        # Feel free to delete this line: (but keep variable names same)
        pred_obj_logits, pred_boxreg_deltas, anchors_per_fpn_level = (
            None,
            None,
            None,
        )
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        pred_obj_logits, pred_boxreg_deltas = self.pred_net(feats_per_fpn_level)
        shape_per_fpn_level = {
            level_name: feats.shape
            for level_name, feats in feats_per_fpn_level.items()
        }
        p3 = feats_per_fpn_level["p3"]
        locations_per_fpn_level = get_fpn_location_coords(
            shape_per_fpn_level, strides_per_fpn_level, dtype=p3.dtype, device=p3.device
        )
        anchors_per_fpn_level = generate_fpn_anchors(
            locations_per_fpn_level,
            strides_per_fpn_level,
            self.anchor_stride_scale,
            self.anchor_aspect_ratios,
        )
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        # We will fill three values in this output dict - "proposals",
        # "loss_rpn_box" (training only), "loss_rpn_obj" (training only)
        output_dict = {}

        # Get image height and width according to feature sizes and strides.
        # We need these to clamp proposals (These are (224, 224) in the
        # course's notebooks, but we avoid hard-coding them).
        img_h = feats_per_fpn_level["p3"].shape[2] * strides_per_fpn_level["p3"]
        img_w = feats_per_fpn_level["p3"].shape[3] * strides_per_fpn_level["p3"]

        # STUDENT: Implement this method before moving forward with the rest
        # of this `forward` method.
        output_dict["proposals"] = self.predict_proposals(
            anchors_per_fpn_level,
            pred_obj_logits,
            pred_boxreg_deltas,
            (img_w, img_h),
        )
        # Return here during inference - loss computation not required.
        if not self.training:
            return output_dict

        # ... otherwise continue loss computation:
        ######################################################################
        # Match the generated anchors with provided GT boxes. The matching
        # function is not batched so you may use a for-loop over images.
        ######################################################################
        # Combine anchor boxes from all FPN levels - we do not need any
        # distinction of boxes across different levels (for training).
        anchor_boxes = self._cat_across_fpn_levels(anchors_per_fpn_level, dim=0)

        # Get matched GT boxes (list of B tensors, each of shape `(H*W*A, 5)`
        # giving matching GT boxes to anchor boxes). Fill this list:
        matched_gt_boxes = []
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        for gt_boxes_per_image in gt_boxes:
            matched_gt_boxes.append(
                rcnn_match_anchors_to_gt(
                    anchor_boxes, gt_boxes_per_image, self.anchor_iou_thresholds
                )
            )
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        # Combine matched boxes from all images to a `(B, HWA, 5)` tensor.
        matched_gt_boxes = torch.stack(matched_gt_boxes, dim=0)

        # Combine predictions across all FPN levels.
        pred_obj_logits = self._cat_across_fpn_levels(pred_obj_logits)
        pred_boxreg_deltas = self._cat_across_fpn_levels(pred_boxreg_deltas)

        # Repeat anchor boxes `batch_size` times so there is a 1:1
        # correspondence with GT boxes.
        anchor_boxes = anchor_boxes.unsqueeze(0).repeat(num_images, 1, 1)
        anchor_boxes = anchor_boxes.contiguous().view(-1, 4)

        # Collapse `batch_size`, and `HWA` to a single dimension so we have
        # simple `(-1, 4 or 5)` tensors. This simplifies loss computation.
        matched_gt_boxes = matched_gt_boxes.view(-1, 5)
        pred_obj_logits = pred_obj_logits.view(-1)
        pred_boxreg_deltas = pred_boxreg_deltas.view(-1, 4)

        ######################################################################
        # TODO: Compute training losses. Follow three steps in order:
        #   1. Sample a few anchor boxes for training. Pass the variable
        #      `matched_gt_boxes` to `sample_rpn_training` function and
        #      use those indices to get subset of predictions and targets.
        #      RPN samples 50-50% foreground/background anchors, unless
        #      there aren't enough foreground anchors (`self.fg_fraction`).
        #
        #   2. Compute GT targets for box regression (you have implemented
        #      the transformation function already).
        #
        #   3. Calculate objectness and box reg losses per sampled anchor.
        #      Remember to set box loss for "background" anchors to 0.
        ######################################################################
        # Feel free to delete this line: (but keep variable names same)
        loss_obj, loss_box = None, None
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        fg_idx, bg_idx = sample_rpn_training(
            matched_gt_boxes,
            self.batch_size_per_image * num_images,
            self.fg_fraction,
        )
        sampled_idx = torch.cat([fg_idx, bg_idx])  # (S,)
        sampled_gt_boxes = matched_gt_boxes[sampled_idx]  # (S, 5)
        gt_deltas = rcnn_get_deltas_from_anchors(
            anchor_boxes[sampled_idx], sampled_gt_boxes[:, :4]
        )  # (S, 4)
        gt_objectness = (sampled_gt_boxes[:, 4] >= 0).to(pred_obj_logits.dtype)
        loss_obj = F.binary_cross_entropy_with_logits(
            pred_obj_logits[sampled_idx], gt_objectness, reduction="none"
        )  # (S,)
        loss_box = F.l1_loss(
            pred_boxreg_deltas[sampled_idx], gt_deltas, reduction="none"
        )  # (S, 4)
        loss_box[gt_deltas == NEUTRAL] = 0.0
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        # Sum losses and average by num(foreground + background) anchors.
        # In training code, we simply add these two and call `.backward()`
        total_batch_size = self.batch_size_per_image * num_images
        output_dict["loss_rpn_obj"] = loss_obj.sum() / total_batch_size
        output_dict["loss_rpn_box"] = loss_box.sum() / total_batch_size

        return output_dict

    @torch.no_grad()  # Don't track gradients in this function.
    def predict_proposals(
        self,
        anchors_per_fpn_level: Dict[str, torch.Tensor],
        pred_obj_logits: Dict[str, torch.Tensor],
        pred_boxreg_deltas: Dict[str, torch.Tensor],
        image_size: Tuple[int, int],  # (width, height)
    ):
        """
        Predict proposals for a batch of images for the second stage. Other
        input arguments are same as those computed in `forward` method. This
        method should not be called from anywhere except from inside `forward`.

        Returns:
            Dict[str, List[torch.Tensor]]
                proposals: Dictionary with the keys of `anchors_per_fpn_level`
                    ({"p3", "p4", "p5"}), each a list of `batch_size` tensors
                    of shape `(N, 4)`, `N <= post_nms_topk`, giving *absolute*
                    XYXY co-ordinates of the proposals of that image predicted
                    at that level, clamped to the image. These will serve as
                    anchor boxes for the second stage.
        """

        # Gather proposals from all FPN levels in this dict.
        proposals_all_levels = {
            level_name: None for level_name, _ in anchors_per_fpn_level.items()
        }
        for level_name in anchors_per_fpn_level.keys():

            # Get anchor boxes and predictions from a single level.
            level_anchors = anchors_per_fpn_level[level_name]

            # shape: (batch_size, HWA), (batch_size, HWA, 4)
            level_obj_logits = pred_obj_logits[level_name]
            level_boxreg_deltas = pred_boxreg_deltas[level_name]

            # Fill proposals per image, for this FPN level, in this list.
            level_proposals_per_image = []
            for _batch_idx in range(level_obj_logits.shape[0]):
                ##############################################################
                # TODO: Perform the following steps in order:
                #   1. Transform the anchors to proposal boxes using predicted
                #      box deltas, clamp to image height and width.
                #   2. Sort all proposals by their predicted objectness, and
                #      retain `self.pre_nms_topk` proposals. This speeds up
                #      our NMS computation. HINT: `torch.topk`
                #   3. Apply NMS and retain `self.post_nms_topk` proposals
                #      per image, per level.
                #
                # NOTE: Your `nms` method may be slow for training - you may
                # use `torchvision.ops.nms` with exact same input arguments,
                # to speed up training. We will grade your `nms` implementation
                # separately; you will NOT lose points if you don't use it here.
                #
                # Note that deltas, anchor boxes, and objectness logits have
                # different shapes, you need to make some intermediate views.
                ##############################################################
                # Replace "pass" statement with your code
                ### BEGIN SOLUTION
                proposals = rcnn_apply_deltas_to_anchors(
                    level_boxreg_deltas[_batch_idx], level_anchors
                )  # (HWA, 4)
                img_w, img_h = image_size
                proposals[:, 0::2] = proposals[:, 0::2].clamp(min=0, max=img_w)
                proposals[:, 1::2] = proposals[:, 1::2].clamp(min=0, max=img_h)

                obj_logits = level_obj_logits[_batch_idx]  # (HWA,)
                topk = min(self.pre_nms_topk, obj_logits.numel())
                topk_logits, topk_idx = obj_logits.topk(topk)  # (K,), (K,)
                topk_proposals = proposals[topk_idx]  # (K, 4)

                keep = torchvision.ops.nms(topk_proposals, topk_logits, self.nms_thresh)
                keep = keep[: self.post_nms_topk]
                level_proposals_per_image.append(topk_proposals[keep])
                ### END SOLUTION
                ##############################################################
                #                       END OF YOUR CODE                     #
                ##############################################################

            # Collate proposals from individual images. Do not stack these
            # tensors, they may have different shapes since few images or
            # levels may have less than `post_nms_topk` proposals. We could
            # pad these tensors but there's no point - they will be used by
            # `torchvision.ops.roi_align` in second stage which operates
            # with lists, not batched tensors.
            proposals_all_levels[level_name] = level_proposals_per_image

        return proposals_all_levels

    @staticmethod
    def _cat_across_fpn_levels(
        dict_with_fpn_levels: Dict[str, torch.Tensor], dim: int = 1
    ):
        """
        Convert a dict of tensors across FPN levels {"p3", "p4", "p5"} to a
        single tensor. Values could be anything - batches of image features,
        GT targets, etc. Same as the module-level `cat_across_fpn_levels`.
        """
        return cat_across_fpn_levels(dict_with_fpn_levels, dim=dim)


class FasterRCNN(nn.Module):
    """
    Faster R-CNN detector: this module combines backbone, RPN, ROI predictors.

    Unlike the original Faster R-CNN, the second stage has no box regression:
    the RPN proposals are the final boxes, and the second stage only classifies
    them. The classifier predicts `num_classes + 1` logits per proposal
    (background included) and is trained with cross-entropy on a sample of
    proposals.

    Args:
        backbone: `DetectorBackboneWithFPN` giving FPN features (p3, p4, p5).
        rpn: `RPN` giving proposals (and its losses during training).
        stem_channels: Output channels of the 3x3 convs of the classifier stem.
        num_classes: Number of object classes `C`, background excluded.
        batch_size_per_image: Proposals per image to sample for training the
            classifier.
        roi_size: `(height, width)` of RoI-aligned features of a proposal.
        fg_fraction: At most this fraction of the sampled proposals are
            foreground (`sample_rpn_training`); default 0.25.
        proposal_iou_thresholds: (low, high) IoU thresholds of the matching
            of proposals with GT boxes (see `rcnn_match_anchors_to_gt`);
            default (0.5, 0.5): IoU > 0.5 is foreground, otherwise background.
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: nn.Module,
        stem_channels: List[int],
        num_classes: int,
        batch_size_per_image: int,
        roi_size: Tuple[int, int] = (7, 7),
        fg_fraction: float = 0.25,
        proposal_iou_thresholds: Tuple[float, float] = (0.5, 0.5),
    ):
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.num_classes = num_classes
        self.roi_size = roi_size
        self.batch_size_per_image = batch_size_per_image
        self.fg_fraction = fg_fraction
        self.proposal_iou_thresholds = proposal_iou_thresholds

        ######################################################################
        # TODO: Create a stem of alternating 3x3 convolution layers and RELU
        # activation modules using `stem_channels` argument, exactly like
        # the stem of `RPNPredictionNetwork`. use the same stride, padding,
        # and weight initialization as previous TODOs.
        #
        # HINT: This stem will be applied on RoI-aligned FPN features. You can
        # decide the number of input channels accordingly.
        ######################################################################
        # Fill this list. It is okay to use your implementation from
        # `RPNPredictionNetwork` for this code block.
        cls_pred = []
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        prev_channels = backbone.out_channels
        for out_channels in stem_channels:
            conv = nn.Conv2d(prev_channels, out_channels, 3, stride=1, padding=1)
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)
            cls_pred += [conv, nn.ReLU()]
            prev_channels = out_channels
        ### END SOLUTION

        ######################################################################
        # TODO: Add an `nn.Flatten` module to `cls_pred`, followed by a linear
        # layer to output C+1 classification logits (C classes + background).
        # Think about the input size of this linear layer based on the output
        # shape from `nn.Flatten` layer.
        ######################################################################
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        roi_h, roi_w = roi_size
        cls_pred += [
            nn.Flatten(),
            nn.Linear(prev_channels * roi_h * roi_w, num_classes + 1),
        ]
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        # Wrap the layers defined by student into a `nn.Sequential` module,
        # Faster R-CNN also predicts box offsets to "refine" RPN proposals, we
        # exclude it for simplicity and keep RPN proposal boxes as final boxes.
        self.cls_pred = nn.Sequential(*cls_pred)

    def forward(
        self,
        images: torch.Tensor,
        gt_boxes: Optional[torch.Tensor] = None,
        test_score_thresh: Optional[float] = None,
        test_nms_thresh: Optional[float] = None,
    ):
        """
        Args:
            images: Batch of images, a tensor of shape `(B, 3, H, W)`.
            gt_boxes: GT boxes of the batch, a tensor of shape `(B, M, 5)`:
                `gt_boxes[i, j] = (x1, y1, x2, y2, C)` is the `j`-th object of
                `images[i]`, in absolute XYXY co-ordinates, with class ID `C`
                (0 to `num_classes - 1`); images with fewer than `M` objects
                are padded with rows of -1. Required during training, not used
                during inference.
            test_score_thresh: During inference, keep predictions with a score
                higher than this value. Not used during training.
            test_nms_thresh: IoU threshold of the class-specific NMS during
                inference. Not used during training.

        Returns:
            During training, a dictionary of losses: "loss_rpn_obj" and
            "loss_rpn_box" (RPN) and "loss_cls" (second-stage classifier).
            During inference (batch size 1), the output of `inference`: a
            tuple `(pred_boxes, pred_classes, pred_scores)`.
        """

        feats_per_fpn_level = self.backbone(images)
        output_dict = self.rpn(
            feats_per_fpn_level, self.backbone.fpn_strides, gt_boxes
        )
        proposals_per_fpn_level = output_dict["proposals"]

        # Mix GT boxes with proposals. This is necessary to stabilize training
        # since RPN proposals may be bad during first few iterations. Also, why
        # waste good supervisory signal from GT boxes, for second-stage?
        if self.training:
            proposals_per_fpn_level = mix_gt_with_proposals(
                proposals_per_fpn_level, gt_boxes
            )
            # The second stage works on these mixed proposals from here on;
            # `output_dict["proposals"]` holds the same dict.
            output_dict["proposals"] = proposals_per_fpn_level

        # Get batch size from FPN feats:
        num_images = feats_per_fpn_level["p3"].shape[0]

        # Perform RoI-align using FPN features and proposal boxes.
        roi_feats_per_fpn_level = {
            level_name: None for level_name in feats_per_fpn_level.keys()
        }
        # RoI-align the proposals of every level on that level's features.
        for level_name in feats_per_fpn_level.keys():
            ##################################################################
            # TODO: Call `torchvision.ops.roi_align`. See its documentation to
            # properly format input arguments. Use `aligned=True`
            ##################################################################
            level_feats = feats_per_fpn_level[level_name]
            level_props = proposals_per_fpn_level[level_name]
            level_stride = self.backbone.fpn_strides[level_name]

            # Replace "pass" statement with your code
            ### BEGIN SOLUTION
            roi_feats = torchvision.ops.roi_align(
                level_feats,
                level_props,
                output_size=self.roi_size,
                spatial_scale=1.0 / level_stride,
                aligned=True,
            )  # (total proposals of this level, fpn_channels, roi_h, roi_w)
            ### END SOLUTION
            ##################################################################
            #                         END OF YOUR CODE                       #
            ##################################################################

            roi_feats_per_fpn_level[level_name] = roi_feats

        # Combine ROI feats across FPN levels.
        # `roi_align` returns the features of one level image by image, so we
        # regroup them image-major (all levels of image 0, then image 1, ...):
        # the same order in which `matched_gt_boxes` is built below.
        # shape: (batch_size * total_proposals, fpn_channels, roi_h, roi_w)
        roi_feats = self._cat_per_image(
            roi_feats_per_fpn_level, proposals_per_fpn_level
        )

        # Obtain classification logits for all ROI features.
        # shape: (batch_size * total_proposals, num_classes + 1)
        pred_cls_logits = self.cls_pred(roi_feats)

        if not self.training:
            # During inference, just go to this method and skip rest of the
            # forward pass. Batch size must be 1!
            # fmt: off
            return self.inference(
                images,
                proposals_per_fpn_level,
                pred_cls_logits,
                test_score_thresh=test_score_thresh,
                test_nms_thresh=test_nms_thresh,
            )
            # fmt: on

        ######################################################################
        # Match the RPN proposals with provided GT boxes and append to
        # `matched_gt_boxes`. Use `rcnn_match_anchors_to_gt` with IoU threshold
        # such that IoU > 0.5 is foreground, otherwise background
        # (`self.proposal_iou_thresholds`). There are no neutral proposals in
        # second-stage.
        ######################################################################
        matched_gt_boxes = []
        for _idx in range(len(gt_boxes)):
            # Get proposals per image from this dictionary of list of tensors.
            proposals_per_fpn_level_per_image = {
                level_name: prop[_idx]
                for level_name, prop in proposals_per_fpn_level.items()
            }
            proposals_per_image = self._cat_across_fpn_levels(
                proposals_per_fpn_level_per_image, dim=0
            )
            gt_boxes_per_image = gt_boxes[_idx]
            # Replace "pass" statement with your code
            ### BEGIN SOLUTION
            matched_gt_boxes.append(
                rcnn_match_anchors_to_gt(
                    proposals_per_image,
                    gt_boxes_per_image,
                    self.proposal_iou_thresholds,
                )
            )
            ### END SOLUTION
            ##################################################################
            #                         END OF YOUR CODE                       #
            ##################################################################

        # Combine the matched GT boxes of all images (image-major, like RoI feats).
        matched_gt_boxes = torch.cat(matched_gt_boxes, dim=0)

        ######################################################################
        # TODO: Train the classifier head. Perform these steps in order:
        #   1. Sample a few RPN proposals, like you sampled 50-50% anchor boxes
        #      to train RPN objectness classifier. However this time, sample
        #      such that ~25% RPN proposals are foreground, and the rest are
        #      background (`self.fg_fraction`). Faster R-CNN performed such
        #      weighted sampling to deal with class imbalance, before Focal
        #      Loss was published.
        #
        #   2. Use these indices to get GT class labels from `matched_gt_boxes`
        #      and obtain the corresponding logits predicted by classifier.
        #
        #   3. Compute cross entropy loss - use `F.cross_entropy`, see its API
        #      documentation on PyTorch website. Since background ID = -1, you
        #      may shift class labels by +1 such that background ID = 0 and
        #      other classes have IDs (1 to num_classes; 1-20 for the 20 VOC
        #      classes). Make sure to reverse shift this during inference, so
        #      that model predicts IDs (0 to num_classes - 1; VOC: 0-19).
        ######################################################################
        # Feel free to delete this line: (but keep variable names same)
        loss_cls = None
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        fg_idx, bg_idx = sample_rpn_training(
            matched_gt_boxes,
            self.batch_size_per_image * num_images,
            self.fg_fraction,
        )
        sampled_idx = torch.cat([fg_idx, bg_idx])  # (S,)
        gt_classes = matched_gt_boxes[sampled_idx, 4].long() + 1  # (S,)
        loss_cls = F.cross_entropy(pred_cls_logits[sampled_idx], gt_classes)
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################
        return {
            "loss_rpn_obj": output_dict["loss_rpn_obj"],
            "loss_rpn_box": output_dict["loss_rpn_box"],
            "loss_cls": loss_cls,
        }

    @staticmethod
    def _cat_across_fpn_levels(
        dict_with_fpn_levels: Dict[str, torch.Tensor], dim: int = 1
    ):
        """
        Convert a dict of tensors across FPN levels {"p3", "p4", "p5"} to a
        single tensor. Values could be anything - batches of image features,
        GT targets, etc. Same as the module-level `cat_across_fpn_levels`.
        """
        return cat_across_fpn_levels(dict_with_fpn_levels, dim=dim)

    @staticmethod
    def _cat_per_image(
        roi_feats_per_fpn_level: TensorDict,
        proposals_per_fpn_level: Dict[str, List[torch.Tensor]],
    ) -> torch.Tensor:
        """
        Concatenate RoI features of all FPN levels image-major: rows of image 0
        (levels p3, p4, p5), then rows of image 1, and so on. Within an image
        the rows follow `_cat_across_fpn_levels` of that image's proposals.
        """
        per_level_per_image = [
            roi_feats_per_fpn_level[level_name].split(
                [len(props) for props in proposals_per_fpn_level[level_name]]
            )
            for level_name in roi_feats_per_fpn_level
        ]
        return torch.cat([f for per_image in zip(*per_level_per_image) for f in per_image])

    def inference(
        self,
        images: torch.Tensor,
        proposals: Dict[str, List[torch.Tensor]],
        pred_cls_logits: torch.Tensor,
        test_score_thresh: float,
        test_nms_thresh: float,
    ):
        """
        Run inference on a single input image (batch size = 1). Other input
        arguments are same as those computed in `forward` method. This method
        should not be called from anywhere except from inside `forward`.

        Returns:
            Three tensors:
                - pred_boxes: Tensor of shape `(N, 4)` giving *absolute* XYXY
                  co-ordinates of predicted boxes.

                - pred_classes: Tensor of shape `(N, )` giving predicted class
                  labels for these boxes (one of `num_classes` labels). Make
                  sure there are no background predictions (-1).

                - pred_scores: Tensor of shape `(N, )` giving confidence scores
                  for predictions.
        """

        # The second stage inference in Faster R-CNN is quite straightforward:
        # combine proposals from all FPN levels and perform a *class-specific
        # NMS*. There would have been more steps here if we further refined
        # RPN proposals by predicting box regression deltas.

        # Use `[0]` to remove the batch dimension.
        proposals = {level_name: prop[0] for level_name, prop in proposals.items()}
        pred_boxes = self._cat_across_fpn_levels(proposals, dim=0)

        ######################################################################
        # Faster R-CNN inference, perform the following steps in order:
        #   1. Get the most confident predicted class and score for every box.
        #      Note that the "score" of any class (including background) is its
        #      probability after applying C+1 softmax.
        #
        #   2. Only retain prediction that have a confidence score higher than
        #      provided threshold in arguments.
        #
        # NOTE: `pred_classes` may contain background as ID = 0 (based on how
        # the classifier was supervised in `forward`). Remember to shift the
        # predicted IDs such that model outputs IDs (0 to num_classes - 1),
        # e.g. (0-19) for 20 VOC classes.
        ######################################################################
        pred_scores, pred_classes = None, None
        # Replace "pass" statement with your code
        ### BEGIN SOLUTION
        pred_scores, pred_classes = pred_cls_logits.softmax(dim=1).max(dim=1)  # (N,)
        keep = (pred_scores > test_score_thresh) & (pred_classes > 0)
        pred_boxes = pred_boxes[keep]  # (N', 4)
        pred_scores = pred_scores[keep]  # (N',)
        pred_classes = pred_classes[keep] - 1  # (N',), background shifted out
        ### END SOLUTION
        ######################################################################
        #                           END OF YOUR CODE                         #
        ######################################################################

        # STUDENTS: This line depends on your implementation of NMS.
        keep = class_spec_nms(
            pred_boxes, pred_scores, pred_classes, iou_threshold=test_nms_thresh
        )
        pred_boxes = pred_boxes[keep]
        pred_classes = pred_classes[keep]
        pred_scores = pred_scores[keep]
        return pred_boxes, pred_classes, pred_scores
