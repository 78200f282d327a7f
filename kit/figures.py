"""
Figures: boxes on images, anchors, matches, proposals, loss curves (one palette).
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .data import denormalize


# The one palette of the kit's pictures (notebooks, anchor explorer): GT
# boxes, and anchors that are foreground / neutral / background for them.
# Difficult objects (neither GT nor background) are drawn dashed in grey.
PALETTE = {
    "gt": "#ffd600",
    "foreground": "#00c853",
    "neutral": "#ff9100",
    "background": "#e53935",
    "difficult": "#9e9e9e",
}

_COLOURS = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
    "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324",
    "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075",
    "#a9a9a9", "#ffe119",
]


def _to_hwc(image, normalized: bool = True) -> np.ndarray:
    """(3, H, W) tensor (ImageNet-normalized if `normalized`) or (H, W, 3) array -> HWC."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype == torch.uint8:
            return image.permute(1, 2, 0).numpy()
        image = denormalize(image) if normalized else image.float().clamp(0, 1)
        return image.permute(1, 2, 0).numpy()
    return np.asarray(image)


def _new_axes(ax=None, figsize=(5, 5)):
    """A new pyplot figure (notebooks show it) with one Axes, or `ax`'s figure."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def add_box(ax, box, colour, linewidth=2.0, linestyle="-", label=None, alpha=1.0,
             text_colour="white", halo=True):
    from matplotlib import patches, patheffects

    x1, y1, x2, y2 = [float(v) for v in box[:4]]
    rect = patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                             linewidth=linewidth, linestyle=linestyle, alpha=alpha)
    if halo:  # a dark halo keeps light boxes visible on light images
        rect.set_path_effects([patheffects.withStroke(linewidth=linewidth + 1.2, foreground="black"),
                               patheffects.Normal()])
    ax.add_patch(rect)
    if label:
        # Above the box; inside it when the box touches the top edge (the
        # label would be clipped away above the image).
        inside = y1 < 10
        ax.text(x1, y1, label, fontsize=7, color=text_colour, va="top" if inside else "bottom",
                clip_on=True, bbox=dict(facecolor=colour, alpha=0.8, pad=1, edgecolor="none"))


def _show(ax, image, normalized=True, title=None):
    hwc = _to_hwc(image, normalized)
    ax.imshow(hwc)
    ax.set_xlim(0, hwc.shape[1])
    ax.set_ylim(hwc.shape[0], 0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def detection_visualizer(
    image,
    class_names: Union[Sequence[str], Dict[int, str]],
    gt_boxes: Optional[torch.Tensor] = None,
    pred_boxes: Optional[torch.Tensor] = None,
    pred_scores: Optional[torch.Tensor] = None,
    ax=None,
    title: Optional[str] = None,
    normalized: bool = True,
):
    """
    Draw GT boxes (dashed, `PALETTE["gt"]`, with class) and predictions
    (solid, one colour per class, with class and score) on an image. Labels
    of boxes touching the top edge are drawn inside the box.

    Args:
        image: `(3, H, W)` tensor as served by the dataset (ImageNet-normalized;
            pass `normalized=False` for [0, 1] images), or `(H, W, 3)` array.
        class_names: list (index = class id) or dict id -> name.
        gt_boxes: `(M, 5)` rows `(x1, y1, x2, y2, class)`; rows of -1 skipped.
        pred_boxes: `(N, 4)`, `(N, 5)` with class or `(N, 6)` with class and
            score.
        pred_scores: `(N,)` scores, if not in `pred_boxes`.
        ax: draw into this matplotlib Axes instead of a new figure.

    Returns:
        matplotlib Figure (one Rectangle patch per drawn box).
    """
    fig, ax = _new_axes(ax)
    _show(ax, image, normalized, title)
    if gt_boxes is not None:
        for box in torch.as_tensor(gt_boxes).reshape(-1, 5).tolist():
            if box[4] < 0:
                continue
            add_box(ax, box, PALETTE["gt"], linewidth=1.5, linestyle="--",
                     label=f"{class_names[int(box[4])]}", text_colour="black")
    if pred_boxes is not None:
        pred = torch.as_tensor(pred_boxes).float()
        pred = pred.reshape(-1, pred.shape[-1] if pred.numel() else 4)
        for i, box in enumerate(pred.tolist()):
            cls = int(box[4]) if len(box) > 4 else None
            score = box[5] if len(box) > 5 else (float(pred_scores[i]) if pred_scores is not None else None)
            colour = _COLOURS[cls % len(_COLOURS)] if cls is not None else "yellow"
            label = "" if cls is None else str(class_names[cls])
            if score is not None:
                label = f"{label} {score:.2f}".strip()
            add_box(ax, box, colour, label=label or None)
    return fig


def draw_anchors(image, anchors: torch.Tensor, centers: Optional[torch.Tensor] = None,
                 ax=None, title: Optional[str] = None, colour: str = "yellow",
                 max_anchors: Optional[int] = None, normalized: bool = True):
    """
    Draw anchor boxes (e.g. one FPN level, one aspect ratio) on an image.

    Args:
        image: see `detection_visualizer`.
        anchors: `(N, 4)` XYXY anchors in image pixels.
        centers: optional `(K, 2)` points (e.g. FPN locations) drawn as dots.
        max_anchors: draw only this many, evenly spread over the N anchors.

    Returns:
        matplotlib Figure (one Rectangle patch per drawn anchor).
    """
    fig, ax = _new_axes(ax)
    _show(ax, image, normalized, title)
    anchors = torch.as_tensor(anchors).detach().cpu().reshape(-1, 4)
    if max_anchors is not None and len(anchors) > max_anchors:
        anchors = anchors[torch.linspace(0, len(anchors) - 1, max_anchors).long()]
    for box in anchors.tolist():
        add_box(ax, box, colour, linewidth=1.2, halo=False)
    if centers is not None:
        centers = torch.as_tensor(centers).detach().cpu().reshape(-1, 2)
        ax.scatter(centers[:, 0], centers[:, 1], s=4, c="cyan")
    return fig


def draw_matches(image, anchors: torch.Tensor, matched_gt_boxes: torch.Tensor,
                 gt_boxes: Optional[torch.Tensor] = None, ax=None, title: Optional[str] = None,
                 max_background: int = 10, max_neutral: int = 15, normalized: bool = True,
                 seed: int = 0):
    """
    Colour anchors by their match (output of `rcnn_match_anchors_to_gt`) in
    the kit's `PALETTE`: foreground (class >= 0), neutral (rows of
    `two_stage_detector.NEUTRAL`), background (rows of
    `two_stage_detector.BACKGROUND`), and the GT boxes thick. All foreground
    anchors are drawn; of the neutral and background ones only `max_neutral`
    / `max_background`, picked at random, to keep the picture readable.

    Args:
        image: see `detection_visualizer`.
        anchors: `(N, 4)` anchors; matched_gt_boxes: `(N, 5)`.
        gt_boxes: `(M, 5)` GT boxes of the image (rows of -1 skipped).

    Returns:
        matplotlib Figure; Rectangle patches carry the edge colours of
        `PALETTE` (foreground, neutral, background, gt), and the legend gives
        the full counts.
    """
    # The sentinels of the file that made `matched_gt_boxes`; imported here,
    # as two_stage_detector.py imports this module (through a4_helper).
    from two_stage_detector import BACKGROUND, NEUTRAL

    fig, ax = _new_axes(ax)
    anchors = torch.as_tensor(anchors).detach().cpu().reshape(-1, 4)
    matched = torch.as_tensor(matched_gt_boxes).detach().cpu().reshape(-1, 5)
    fg = (matched[:, 4] >= 0).nonzero().flatten()
    neutral = (matched[:, 4] == NEUTRAL).nonzero().flatten()
    bg = (matched[:, 4] == BACKGROUND).nonzero().flatten()
    generator = torch.Generator().manual_seed(seed)
    bg_drawn = bg[torch.randperm(len(bg), generator=generator)[:max_background]]
    neutral_drawn = neutral[torch.randperm(len(neutral), generator=generator)[:max_neutral]]
    _show(ax, image, normalized, title)
    if gt_boxes is not None:
        for box in torch.as_tensor(gt_boxes).detach().cpu().reshape(-1, 5).tolist():
            if box[4] >= 0:
                add_box(ax, box, PALETTE["gt"], linewidth=3.0)
    for idx, colour, width in ((bg_drawn, PALETTE["background"], 1.0),
                               (neutral_drawn, PALETTE["neutral"], 1.0),
                               (fg, PALETTE["foreground"], 1.8)):
        for box in anchors[idx].tolist():
            add_box(ax, box, colour, linewidth=width, halo=False)
    from matplotlib.lines import Line2D

    ax.legend(handles=[
        Line2D([], [], color=PALETTE["foreground"], label=f"foreground ({len(fg)})"),
        Line2D([], [], color=PALETTE["neutral"],
               label=f"neutral ({len(neutral)}, {len(neutral_drawn)} drawn)"),
        Line2D([], [], color=PALETTE["background"],
               label=f"background ({len(bg)}, {len(bg_drawn)} drawn)"),
        Line2D([], [], color=PALETTE["gt"], lw=3, label="GT"),
    ], loc="lower right", fontsize=6, framealpha=0.7, facecolor="grey")
    return fig


def draw_proposals(image, proposals_before: torch.Tensor, proposals_after: torch.Tensor,
                   topk: int = 20, title: Optional[str] = None, normalized: bool = True,
                   gt_boxes: Optional[torch.Tensor] = None):
    """
    Two panels: the top-`topk` proposals before NMS (left) and after NMS
    (right). Both inputs are `(N, 4)` XYXY boxes sorted by objectness over
    all FPN levels together (the first `topk` rows are drawn).

    Args:
        gt_boxes: optional `(M, 5)` GT boxes, drawn dashed in `PALETTE["gt"]`
            on both panels (rows of -1 skipped).

    Returns:
        matplotlib Figure with two Axes, each with at most `topk` proposal
        Rectangles (plus one per GT box).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, boxes, name in ((axes[0], proposals_before, "before NMS"),
                            (axes[1], proposals_after, "after NMS")):
        boxes = torch.as_tensor(boxes).detach().cpu().reshape(-1, 4)[:topk]
        _show(ax, image, normalized, f"top-{len(boxes)} proposals {name}")
        if gt_boxes is not None:
            for box in torch.as_tensor(gt_boxes).detach().cpu().reshape(-1, 5).tolist():
                if box[4] >= 0:
                    add_box(ax, box, PALETTE["gt"], linewidth=2.5, linestyle="--")
        for i, box in enumerate(boxes.tolist()):
            add_box(ax, box, _COLOURS[i % len(_COLOURS)], linewidth=1.2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_losses(history: Dict[str, List[float]], smooth: int = 20, ax=None):
    """
    Loss curves from `train_detector`'s history: one line per loss (moving
    average over `smooth` iterations; raw total loss faint behind). A short
    history (at most `smooth` iterations, e.g. a smoke run) is drawn as raw
    values with a marker at every point.

    Returns:
        matplotlib Figure (one Line2D per loss key, plus the raw total).
    """
    fig, ax = _new_axes(ax, figsize=(7, 4))
    iters = np.asarray(history["iter"], dtype=float)
    keys = [k for k in history if k.startswith("loss")]

    def moving_average(values):
        values = np.asarray(values, dtype=float)
        k = max(1, min(smooth, len(values)))
        return np.convolve(values, np.ones(k) / k, mode="valid"), k

    short = len(iters) <= smooth
    if not short:
        ax.plot(iters, history["loss"], color="grey", alpha=0.3, linewidth=0.8, label="loss (raw)")
    for key in keys:
        if short:
            ax.plot(iters, history[key], marker="o", label=key, linewidth=1.5)
            continue
        values, k = moving_average(history[key])
        ax.plot(iters[k - 1:], values, label=key, linewidth=1.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"training losses ({len(iters)} iterations, every value)" if short else
                 f"training losses (moving average over {smooth} iterations)", fontsize=9)
    return fig
