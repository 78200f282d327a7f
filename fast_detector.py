"""
A batched fast path for the kit's Faster R-CNN (provided code, not graded).

`FastFasterRCNN` is `two_stage_detector.FasterRCNN` with a different
`forward`: the same modules and weights (the same `state_dict`, so
checkpoints move freely between the two), the same losses and the same
detections, but the pipeline around the network runs on whole batches:

- anchors are built once per feature-map size and cached;
- RPN anchors are matched to the GT boxes of all images in one IoU call
  (the anchors are shared by all images), proposals are decoded only for the
  top-k anchors of each level, and NMS runs for all (image, level) groups at
  once on GPU (one batched suppression-matrix NMS instead of B x 3 calls);
- the second stage samples its training RoIs *before* RoI-Align and the
  classifier, so only the sampled RoIs (not all ~300 per image) are pooled and
  classified. The loss is the same: the reference computes logits of all
  proposals but its loss only reads the sampled ones;
- inference takes batches of any size (the reference `inference` takes one
  image) and returns one `(boxes, classes, scores)` tuple per image.

It calls the kit's functions and modules wherever they work on one tensor
(backbone, RPN prediction network, anchors, location coordinates, box
deltas, IoU, `sample_rpn_training`, `assign_fpn_level`, the classifier), so
it trains *your* model. What it writes anew are the batched versions of the
per-image loops: matching (the rule of `rcnn_match_anchors_to_gt`, for a
whole batch), proposal decoding with NMS, mixing GT into the proposals, and
inference. `tests/test_fast_path.py` checks that both give the same losses
and detections.

Usage:
    detector = FasterRCNN(backbone, rpn, ...)        # as in the notebooks
    fast = FastFasterRCNN.from_reference(detector)   # shares its modules
    losses = fast(images, gt_boxes)                  # training
    fast.eval(); detections = fast.predict(images, 0.5, 0.5)   # a list
"""
import contextlib
from typing import Dict, List, Optional, Tuple

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from common import get_fpn_location_coords
from two_stage_detector import (
    BACKGROUND,
    NEUTRAL,
    FasterRCNN,
    assign_fpn_level,
    generate_fpn_anchors,
    iou,
    rcnn_apply_deltas_to_anchors,
    rcnn_get_deltas_from_anchors,
    sample_rpn_training,
)

__all__ = ["FastFasterRCNN", "batched_box_iou", "batched_nms_sorted"]

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def batched_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """
    IoU of every pair of boxes within each batch element.

    Args:
        boxes1: `(B, N, 4)` XYXY boxes.
        boxes2: `(B, M, 4)` XYXY boxes.

    Returns:
        `(B, N, M)` IoU (0 for pairs involving degenerate boxes of area 0).
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    top_left = torch.max(boxes1[:, :, None, :2], boxes2[:, None, :, :2])  # (B, N, M, 2)
    bottom_right = torch.min(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (B, N, M)
    union = area1[:, :, None] + area2[:, None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


@torch.no_grad()
def batched_nms_sorted(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """
    Greedy NMS on many groups at once, without a host round trip per group.

    Args:
        boxes: `(G, K, 4)` XYXY boxes of G independent groups, each group
            already sorted by decreasing score.
        iou_threshold: A box is suppressed by a kept, higher-scoring box of its
            group with IoU > iou_threshold.

    Returns:
        `(G, K)` bool mask of the kept boxes: what `torchvision.ops.nms` keeps
        in each group (same IoU formula; ties in score aside).
    """
    x1, y1, x2, y2 = boxes.unbind(-1)  # (G, K) each
    areas = (x2 - x1) * (y2 - y1)
    inter_w = (torch.min(x2[:, :, None], x2[:, None]) - torch.max(x1[:, :, None], x1[:, None])).clamp(min=0)
    inter_h = (torch.min(y2[:, :, None], y2[:, None]) - torch.max(y1[:, :, None], y1[:, None])).clamp(min=0)
    inter = inter_w * inter_h  # (G, K, K)
    ious = inter / (areas[:, :, None] + areas[:, None] - inter)
    suppresses = (ious > iou_threshold).triu(diagonal=1)  # (G, K, K)
    # Same fixed point as `common.nms`: keep j iff no kept i < j suppresses j.
    keep = torch.ones_like(areas, dtype=torch.bool)
    for _ in range(boxes.shape[1]):
        new_keep = ~(suppresses & keep[:, :, None]).any(dim=1)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def _bilinear_weights(start, bin_size, pooled, size):
    """
    RoI-Align's sampling along one axis, as a matrix: `(R, pooled, size)`
    weights such that pooling bin p of RoI r reads
    `sum_i weights[r, p, i] * feature[i]` along this axis. Each bin averages
    `ceil(bin_size)` bilinear samples (torchvision's `sampling_ratio=-1`);
    samples beyond one pixel outside the map read 0, as in torchvision.
    """
    grid = torch.ceil(bin_size)  # (R,) samples per bin along this axis
    num_samples = max(int(grid.max()), 1) if grid.numel() else 1
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)[None, :, None]
    i = torch.arange(num_samples, device=start.device, dtype=start.dtype)[None, None, :]
    start, bin_size, grid = start[:, None, None], bin_size[:, None, None], grid[:, None, None]
    coord = start + p * bin_size + (i + 0.5) * bin_size / grid.clamp(min=1)  # (R, pooled, S)
    weight = ((i < grid) & (coord >= -1.0) & (coord <= size)) / grid.clamp(min=1)
    coord = torch.where(weight > 0, coord, torch.zeros_like(coord))  # unused samples
    coord = coord.clamp(min=0)
    low = coord.long()
    at_edge = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coord), coord - low)  # distance to `low`
    weights = coord.new_zeros(coord.shape[0], pooled, size)
    weights.scatter_add_(2, low, (1 - frac) * weight)
    weights.scatter_add_(2, high, frac * weight)
    return weights


def roi_align_separable(features, rois, output_size, spatial_scale):
    """
    `torchvision.ops.roi_align(..., sampling_ratio=-1, aligned=True)` written
    as matrix products. Bilinear sampling is separable, so bin (p, q) of RoI r
    is `Ay[r, p, :] @ feature @ Ax[r, q, :]` with small per-RoI weight
    matrices. Its backward is two matrix products too; torchvision's CPU
    backward kernel is a single-threaded scatter and dominated training time
    on CPU (see bench/NOTES.md). Used on CPU; on GPU torchvision's kernel is
    faster.

    Args:
        features: `(B, C, H, W)`.
        rois: `(R, 5)` rows `(image index, x1, y1, x2, y2)`.
        output_size: `(pooled_h, pooled_w)`.
        spatial_scale: feature-map pixels per image pixel (1 / stride).

    Returns:
        `(R, C, pooled_h, pooled_w)` in the order of `rois`.
    """
    if torch.is_autocast_enabled(features.device.type):  # like torchvision: compute in float32
        with torch.autocast(features.device.type, enabled=False):
            return roi_align_separable(features.float(), rois.float(), output_size, spatial_scale).to(
                torch.get_autocast_dtype(features.device.type)
            )
    num_images, channels, height, width = features.shape
    pooled_h, pooled_w = output_size
    boxes = rois[:, 1:].float() * spatial_scale - 0.5  # (R, 4), pixel centres at 0
    ay = _bilinear_weights(boxes[:, 1], (boxes[:, 3] - boxes[:, 1]) / pooled_h, pooled_h, height)
    ax = _bilinear_weights(boxes[:, 0], (boxes[:, 2] - boxes[:, 0]) / pooled_w, pooled_w, width)
    image_idx = rois[:, 0].long()
    order = torch.argsort(image_idx, stable=True)
    counts = torch.bincount(image_idx, minlength=num_images).tolist()
    maps = features.permute(0, 2, 3, 1)  # (B, H, W, C): a view for channels-last maps
    outputs = []
    for b, (ay_b, ax_b) in enumerate(zip(ay[order].split(counts), ax[order].split(counts))):
        if len(ay_b):
            rows = ay_b.reshape(-1, height) @ maps[b].reshape(height, width * channels)
            rows = rows.view(-1, pooled_h, width, channels)  # (R_b, pooled_h, W, C)
            outputs.append(ax_b[:, None] @ rows)  # (R_b, pooled_h, pooled_w, C)
    if not outputs:
        return features.new_zeros(0, channels, pooled_h, pooled_w)
    return torch.cat(outputs)[torch.argsort(order)].permute(0, 3, 1, 2)  # channels-last view


def _prefer_matrix_nms(device) -> bool:
    """GPU: batched matrix NMS (no host sync per image); CPU: torchvision's loop."""
    return device.type != "cpu"


def _prefer_separable_roi_align(device) -> bool:
    """CPU: `roi_align_separable`; GPU: torchvision's kernel (fast backward there)."""
    return device.type == "cpu"


# `FasterRCNN`'s settings that are not modules (`from_reference` copies them).
_SETTINGS = ("num_classes", "roi_size", "batch_size_per_image", "fg_fraction", "proposal_iou_thresholds")


class FastFasterRCNN(FasterRCNN):
    """
    `FasterRCNN` with a batched forward pass; see the module docstring.
    Constructor arguments are those of `FasterRCNN`; `from_reference` wraps
    an existing detector instead (sharing its modules and weights).
    """

    channels_last = False  # run the convolutions on channels-last tensors
    autocast_dtype = None  # e.g. torch.bfloat16: autocast the network parts

    @classmethod
    def from_reference(
        cls,
        detector: FasterRCNN,
        channels_last: bool = True,
        autocast_dtype: Optional[torch.dtype] = None,
    ) -> "FastFasterRCNN":
        """
        Wrap `detector`: the result shares its modules (and so its weights
        and `state_dict`) and trains and predicts exactly like it.

        Args:
            detector: A `FasterRCNN`.
            channels_last: Convert the weights (of `detector` too) and the
                input images to channels-last memory format: faster
                convolutions on CPU (oneDNN) and on recent GPUs.
            autocast_dtype: `torch.bfloat16` runs backbone, heads and RoI
                features under autocast (boxes, matching and losses stay
                float32). Helps on GPUs and on CPUs with bf16 instructions
                (AVX512-BF16, AMX); slower on CPUs without them. Default: off.
        """
        fast = cls.__new__(cls)
        nn.Module.__init__(fast)
        for name, module in detector.named_children():
            setattr(fast, name, module)
        for name in _SETTINGS:  # the constructor's settings, as the detector has them
            setattr(fast, name, getattr(detector, name))
        fast.channels_last = channels_last
        fast.autocast_dtype = autocast_dtype
        if channels_last:
            fast.to(memory_format=torch.channels_last)
        fast.train(detector.training)
        return fast

    # ------------------------------------------------------------ forward
    def forward(
        self,
        images: torch.Tensor,
        gt_boxes: Optional[torch.Tensor] = None,
        test_score_thresh: Optional[float] = None,
        test_nms_thresh: Optional[float] = None,
    ):
        """
        Training: `images (B, 3, H, W)`, `gt_boxes (B, M, 5)` padded with -1
        rows -> dict of the three losses, like `FasterRCNN.forward`.
        Inference: like `FasterRCNN.forward` for one image (a tuple of boxes,
        classes, scores); for a batch, a list of such tuples (see `predict`).
        """
        if not self.training:
            detections = self.predict(images, test_score_thresh, test_nms_thresh)
            return detections[0] if len(detections) == 1 else detections
        if gt_boxes is None:
            raise ValueError("FastFasterRCNN needs gt_boxes in training mode; call .eval() for inference.")

        gt_boxes = self._compact_gt(gt_boxes)
        feats, anchors, obj_logits, deltas, image_size = self._run_rpn_net(images)
        loss_rpn_obj, loss_rpn_box = self._rpn_losses(anchors, obj_logits, deltas, gt_boxes)
        boxes, valid, levels = self._proposals(anchors, obj_logits, deltas, image_size)
        boxes, valid, levels = self._mix_gt(boxes, valid, levels, gt_boxes, len(feats))

        # Match candidates (proposals and GT) to GT: IoU > 0.5 is foreground.
        matched = self._match(boxes, gt_boxes, self.proposal_iou_thresholds)  # (B, P, 5)
        matched = matched.masked_fill(~valid[..., None], NEUTRAL)  # padding: never sampled
        num_images, num_cands = valid.shape
        fg_idx, bg_idx = sample_rpn_training(
            matched.view(-1, 5), self.batch_size_per_image * num_images, self.fg_fraction
        )
        sampled = torch.cat([fg_idx, bg_idx])  # (S,) indices into B * P
        logits, order = self._classify(
            feats, boxes.view(-1, 4)[sampled], sampled // num_cands, levels[sampled % num_cands]
        )
        gt_classes = matched.view(-1, 5)[sampled[order], 4].long() + 1
        loss_cls = F.cross_entropy(logits.float(), gt_classes)
        return {"loss_rpn_obj": loss_rpn_obj, "loss_rpn_box": loss_rpn_box, "loss_cls": loss_cls}

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        test_score_thresh: float,
        test_nms_thresh: float,
    ) -> List[Detections]:
        """
        Batched inference.

        Returns:
            A list with one `(pred_boxes (N, 4), pred_classes (N,),
            pred_scores (N,))` tuple per image, exactly as
            `FasterRCNN.inference` returns them for that image alone.
        """
        feats, anchors, obj_logits, deltas, image_size = self._run_rpn_net(images)
        boxes, valid, levels = self._proposals(anchors, obj_logits, deltas, image_size)
        image_idx, cand_idx = valid.nonzero(as_tuple=True)  # proposals, image-major
        boxes = boxes[image_idx, cand_idx]  # (R, 4)
        logits, order = self._classify(feats, boxes, image_idx, levels[cand_idx])
        boxes, image_idx = boxes[order], image_idx[order]

        scores, classes = logits.float().softmax(dim=1).max(dim=1)  # (R,)
        keep = (scores > test_score_thresh) & (classes > 0)
        boxes, scores, classes, image_idx = boxes[keep], scores[keep], classes[keep] - 1, image_idx[keep]
        # Class-specific NMS within each image: one group per (image, class).
        keep = torchvision.ops.batched_nms(
            boxes, scores, image_idx * self.num_classes + classes, test_nms_thresh
        )  # sorted by decreasing score
        keep = keep[torch.argsort(image_idx[keep], stable=True)]  # image-major
        boxes, scores, classes, image_idx = boxes[keep], scores[keep], classes[keep], image_idx[keep]
        counts = torch.bincount(image_idx, minlength=len(images)).tolist()
        return list(zip(boxes.split(counts), classes.split(counts), scores.split(counts)))

    # ------------------------------------------------------------- pieces
    def _autocast(self, device):
        if self.autocast_dtype is None:  # leave the caller's autocast state alone
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def _run_rpn_net(self, images):
        """Backbone and RPN prediction network, plus the (cached) anchors."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast(images.device):
            feats = self.backbone(images)
            obj_logits, deltas = self.rpn.pred_net(feats)
        strides = self.backbone.fpn_strides
        anchors = self._anchors(feats, strides)
        p3 = feats["p3"]
        image_size = (p3.shape[3] * strides["p3"], p3.shape[2] * strides["p3"])  # (W, H)
        return feats, anchors, obj_logits, deltas, image_size

    def _anchors(self, feats, strides) -> Dict[str, torch.Tensor]:
        key = tuple((k, tuple(v.shape[-2:])) for k, v in feats.items()) + (feats["p3"].device,)
        cache = self.__dict__.setdefault("_anchor_cache", {})
        if key not in cache:
            shapes = {k: v.shape for k, v in feats.items()}
            locations = get_fpn_location_coords(shapes, strides, dtype=torch.float32, device=feats["p3"].device)
            cache.clear()
            cache[key] = generate_fpn_anchors(
                locations, strides, self.rpn.anchor_stride_scale, self.rpn.anchor_aspect_ratios
            )
        return cache[key]

    @staticmethod
    @torch.no_grad()
    def _compact_gt(gt_boxes):
        """
        Move the real GT rows of each image `(B, M, 5)` first (in their order)
        and drop the columns that are padding in every image: datasets pad to
        40 rows, images have a few objects, and matching cost is per column.
        """
        valid = gt_boxes[..., 4] != -1  # (B, M)
        num_cols = max(int(valid.sum(dim=1).max()), 1)
        order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, :num_cols]
        return gt_boxes.gather(1, order[..., None].expand(-1, -1, gt_boxes.shape[2]))

    @torch.no_grad()
    def _match(self, boxes, gt_boxes, iou_thresholds, shared=False):
        """
        `rcnn_match_anchors_to_gt` for a whole batch.

        Args:
            boxes: `(B, P, 4)` candidates, or `(P, 4)` shared by all images
                (anchors) when `shared` is True.
            gt_boxes: `(B, M, 5)`, rows with class -1 are padding.

        Returns:
            `(B, P, 5)` matched GT boxes: `BACKGROUND` rows (-1) background,
            `NEUTRAL` rows (-1e8) neutral.
        """
        num_images, num_gt = gt_boxes.shape[:2]
        gt_boxes = gt_boxes.float()
        if shared:  # one IoU call: the anchors are the same for all images
            quality = iou(boxes, gt_boxes[..., :4].reshape(-1, 4))  # (P, B * M)
            quality = quality.view(-1, num_images, num_gt).transpose(0, 1)  # (B, P, M)
        else:
            quality = batched_box_iou(boxes, gt_boxes[..., :4])  # (B, P, M)
        quality = quality.masked_fill((gt_boxes[:, None, :, 4] == -1), -1.0)
        quality, matched_idx = quality.max(dim=2)  # (B, P)
        matched = gt_boxes.gather(1, matched_idx[..., None].expand(-1, -1, 5))  # (B, P, 5)
        low, high = iou_thresholds
        matched = torch.where((quality <= low)[..., None], torch.full_like(matched, BACKGROUND), matched)
        neutral = (quality > low) & (quality < high)
        return torch.where(neutral[..., None], torch.full_like(matched, NEUTRAL), matched)

    def _rpn_losses(self, anchors, obj_logits, deltas, gt_boxes):
        """RPN objectness and box losses of the batch, as `RPN.forward`."""
        rpn = self.rpn
        num_images = gt_boxes.shape[0]
        anchor_boxes = torch.cat(list(anchors.values()))  # (A, 4)
        matched = self._match(anchor_boxes, gt_boxes, rpn.anchor_iou_thresholds, shared=True)
        matched = matched.view(-1, 5)  # (B * A, 5)
        obj_logits = torch.cat(list(obj_logits.values()), dim=1).reshape(-1).float()
        deltas = torch.cat(list(deltas.values()), dim=1).reshape(-1, 4).float()

        total = rpn.batch_size_per_image * num_images
        fg_idx, bg_idx = sample_rpn_training(matched, total, rpn.fg_fraction)
        idx = torch.cat([fg_idx, bg_idx])  # (S,) into B * A
        sampled_gt = matched[idx]  # (S, 5)
        gt_deltas = rcnn_get_deltas_from_anchors(anchor_boxes[idx % len(anchor_boxes)], sampled_gt[:, :4])
        gt_objectness = (sampled_gt[:, 4] >= 0).float()
        loss_obj = F.binary_cross_entropy_with_logits(obj_logits[idx], gt_objectness, reduction="sum")
        loss_box = F.l1_loss(deltas[idx], gt_deltas, reduction="none")
        loss_box = loss_box.masked_fill(gt_deltas == NEUTRAL, 0.0).sum()
        return loss_obj / total, loss_box / total

    @torch.no_grad()
    def _proposals(self, anchors, obj_logits, deltas, image_size):
        """
        `RPN.predict_proposals` for the whole batch.

        Returns:
            boxes: `(B, P, 4)` top-k boxes of every level side by side.
            valid: `(B, P)` bool, the boxes kept by NMS and `post_nms_topk`.
            levels: `(P,)` FPN level index (0 = p3) of each column.
        """
        rpn = self.rpn
        img_w, img_h = image_size
        all_boxes, all_valid, all_levels = [], [], []
        for level_idx, (level_name, level_anchors) in enumerate(anchors.items()):
            logits = obj_logits[level_name].float()  # (B, HWA)
            num_images = logits.shape[0]
            k = min(rpn.pre_nms_topk, logits.shape[1])
            top_logits, top_idx = logits.topk(k, dim=1)  # (B, K), sorted
            top_deltas = deltas[level_name].float().gather(1, top_idx[..., None].expand(-1, -1, 4))
            boxes = rcnn_apply_deltas_to_anchors(
                top_deltas.reshape(-1, 4), level_anchors[top_idx].reshape(-1, 4)
            ).view(num_images, k, 4)
            boxes = torch.stack(
                [boxes[..., 0].clamp(0, img_w), boxes[..., 1].clamp(0, img_h),
                 boxes[..., 2].clamp(0, img_w), boxes[..., 3].clamp(0, img_h)], dim=-1
            )
            keep = self._nms_groups(boxes, top_logits, rpn.nms_thresh)  # (B, K)
            keep &= keep.cumsum(dim=1) <= rpn.post_nms_topk
            all_boxes.append(boxes)
            all_valid.append(keep)
            all_levels.append(torch.full((k,), level_idx, device=boxes.device))
        return torch.cat(all_boxes, 1), torch.cat(all_valid, 1), torch.cat(all_levels)

    @staticmethod
    def _nms_groups(boxes, scores, iou_threshold):
        """NMS of each row of `boxes (B, K, 4)` (sorted by `scores (B, K)`) -> keep mask."""
        if not _prefer_matrix_nms(boxes.device):  # torchvision's C++ kernel, one call per image
            keep = torch.zeros(scores.shape, dtype=torch.bool, device=boxes.device)
            for i in range(len(boxes)):
                keep[i, torchvision.ops.nms(boxes[i], scores[i], iou_threshold)] = True
            return keep
        return batched_nms_sorted(boxes, iou_threshold)  # no host sync per image

    @torch.no_grad()
    def _mix_gt(self, boxes, valid, levels, gt_boxes, num_levels):
        """
        `mix_gt_with_proposals` for the batch: GT boxes join the candidates of
        the FPN level that the FPN paper's rule assigns them to.
        """
        gt = gt_boxes.float()
        gt_valid = gt[..., 4] != -1  # (B, M)
        level = assign_fpn_level(gt, min_level=3, max_level=2 + num_levels) - 3  # (B, M), 0 = p3
        num_gt = gt.shape[1]
        cand_boxes, cand_valid, cand_levels = [boxes], [valid], [levels]
        for level_idx in range(num_levels):
            cand_boxes.append(gt[..., :4])
            cand_valid.append(gt_valid & (level == level_idx))
            cand_levels.append(torch.full((num_gt,), level_idx, device=levels.device))
        return torch.cat(cand_boxes, 1), torch.cat(cand_valid, 1), torch.cat(cand_levels)

    def _classify(self, feats, boxes, image_idx, levels):
        """
        RoI-Align `boxes (R, 4)` of images `image_idx (R,)` on the FPN levels
        `levels (R,)` (0 = p3), then run the classifier.

        Returns:
            logits `(R, C + 1)` in level-major order, and `order (R,)`: row i
            of the logits belongs to box `order[i]`.
        """
        level_names = list(feats.keys())
        order = torch.argsort(levels, stable=True)
        counts = torch.bincount(levels, minlength=len(level_names)).tolist()
        rois = torch.cat([image_idx[:, None].to(boxes), boxes], dim=1)[order]  # float32
        roi_feats = []
        with self._autocast(boxes.device):
            for name, level_rois in zip(level_names, rois.split(counts)):
                scale = 1.0 / self.backbone.fpn_strides[name]
                if _prefer_separable_roi_align(boxes.device):  # torchvision's CPU backward is slow
                    roi_feats.append(roi_align_separable(feats[name], level_rois, self.roi_size, scale))
                else:  # rois stay float32 under autocast: they are co-ordinates
                    roi_feats.append(torchvision.ops.roi_align(
                        feats[name], level_rois, self.roi_size, scale, aligned=True
                    ))
            return self.cls_pred(torch.cat(roi_feats)), order
