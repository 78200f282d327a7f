"""
A fast path for the kit's Faster R-CNN (provided code, not graded).

`FastFasterRCNN` is `two_stage_detector.FasterRCNN` with a different
`forward` around the same modules and weights (the same `state_dict`, so
checkpoints move freely between the two). The first stage, and every step
of the second stage that has a rule of its own, is the detector's own code:
its backbone, its `RPN` (anchors, matching, losses, proposals),
`mix_gt_with_proposals`, `rcnn_match_anchors_to_gt`, `sample_rpn_training`
and `FasterRCNN.inference`. What it changes is where the time goes:

- the second stage samples its training RoIs *before* RoI-Align and the
  classifier, so only the sampled RoIs (not all ~300 per image) are pooled
  and classified. The loss is the same: the reference computes logits of all
  proposals but its loss only reads the sampled ones, and both draw the same
  sample from the same random state;
- on CPU, RoI-Align runs as matrix products (`roi_align_separable`), whose
  backward is much faster than torchvision's CPU kernel;
- optionally channels-last convolutions and bf16 autocast;
- inference takes batches of any size (the reference `forward` takes one
  image), runs the classifier once for the batch, then `inference` per image.

`tests/test_fast_path.py` checks that both give the same losses, gradients
and detections, with the detector's real sample sizes.

Usage:
    detector = FasterRCNN(backbone, rpn, ...)        # as in the notebooks
    fast = FastFasterRCNN.from_reference(detector)   # shares its modules
    losses = fast(images, gt_boxes)                  # training
    fast.eval(); detections = fast.predict(images, 0.5, 0.5)   # a list
"""
import contextlib
from typing import List, Optional, Tuple

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from two_stage_detector import (
    FasterRCNN,
    mix_gt_with_proposals,
    rcnn_match_anchors_to_gt,
    sample_rpn_training,
)

__all__ = ["FastFasterRCNN", "roi_align_separable"]

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


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


def _prefer_separable_roi_align(device) -> bool:
    """CPU: `roi_align_separable`; GPU: torchvision's kernel (fast backward there)."""
    return device.type == "cpu"


class FastFasterRCNN(FasterRCNN):
    """
    `FasterRCNN` with a faster forward pass; see the module docstring.
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
        and `state_dict`) and settings, and trains and predicts exactly like it.

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
        for name, value in vars(detector).items():  # the constructor's settings
            if not name.startswith("_"):
                setattr(fast, name, value)
        for name, module in detector.named_children():
            setattr(fast, name, module)
        fast.channels_last = channels_last
        fast.autocast_dtype = autocast_dtype
        if channels_last:
            fast.to(memory_format=torch.channels_last)
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

        feats, output_dict = self._first_stage(images, gt_boxes)
        proposals = mix_gt_with_proposals(output_dict["proposals"], gt_boxes)
        boxes, image_idx, levels = self._flatten(proposals)  # (P, 4), (P,), (P,): image-major

        # Match every image's candidates to its GT, as `FasterRCNN.forward`.
        per_image = boxes.split(torch.bincount(image_idx, minlength=len(gt_boxes)).tolist())
        matched = torch.cat([
            rcnn_match_anchors_to_gt(image_boxes, image_gt, self.proposal_iou_thresholds)
            for image_boxes, image_gt in zip(per_image, gt_boxes)
        ])  # (P, 5)
        fg_idx, bg_idx = sample_rpn_training(matched, self.batch_size_per_image * len(gt_boxes),
                                             self.fg_fraction)
        sampled = torch.cat([fg_idx, bg_idx])  # (S,)
        logits, order = self._classify(feats, boxes[sampled], image_idx[sampled], levels[sampled])
        gt_classes = matched[sampled[order], 4].long() + 1  # (S,), background 0
        loss_cls = F.cross_entropy(logits.float(), gt_classes)
        return {"loss_rpn_obj": output_dict["loss_rpn_obj"],
                "loss_rpn_box": output_dict["loss_rpn_box"], "loss_cls": loss_cls}

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
        feats, output_dict = self._first_stage(images)
        proposals = output_dict["proposals"]
        boxes, image_idx, levels = self._flatten(proposals)
        logits, order = self._classify(feats, boxes, image_idx, levels)
        logits = logits[torch.argsort(order)].float()  # back to image-major rows
        per_image = logits.split(torch.bincount(image_idx, minlength=len(images)).tolist())
        return [
            self.inference(images[i : i + 1], {level: [props[i]] for level, props in proposals.items()},
                           image_logits, test_score_thresh, test_nms_thresh)
            for i, image_logits in enumerate(per_image)
        ]

    # ------------------------------------------------------------- pieces
    def _autocast(self, device):
        if self.autocast_dtype is None:  # leave the caller's autocast state alone
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def _first_stage(self, images, gt_boxes=None):
        """Backbone and the detector's own `RPN` (losses in training, proposals)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast(images.device):
            feats = self.backbone(images)
            # Anchors are made in the features' dtype: give the RPN float32
            # maps (its convolutions still autocast) so that boxes stay exact.
            feats = {level: f.float() for level, f in feats.items()}
            output_dict = self.rpn(feats, self.backbone.fpn_strides, gt_boxes)
        return feats, output_dict

    @staticmethod
    def _flatten(proposals):
        """
        Proposals `{level: [per-image (N, 4)]}` as rows in the order of the
        reference's second stage: image-major, levels in dict order within
        an image. Returns boxes `(P, 4)`, image index `(P,)`, level index `(P,)`.
        """
        rows = [(props[i], i, level) for i in range(len(next(iter(proposals.values()))))
                for level, props in enumerate(proposals.values())]
        boxes = torch.cat([r[0] for r in rows])
        counts = torch.tensor([len(r[0]) for r in rows], device=boxes.device)
        image_idx = torch.tensor([r[1] for r in rows], device=boxes.device).repeat_interleave(counts)
        levels = torch.tensor([r[2] for r in rows], device=boxes.device).repeat_interleave(counts)
        return boxes, image_idx, levels

    def _classify(self, feats, boxes, image_idx, levels):
        """
        RoI-Align `boxes (R, 4)` of images `image_idx (R,)` on the FPN levels
        `levels (R,)` (0 = first level), then run the classifier.

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
