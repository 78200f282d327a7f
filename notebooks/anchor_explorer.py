"""
Anchor explorer: which anchors of one FPN level become foreground, background
or neutral for the ground truth of one image, and how that changes with the
level, the anchor size (`stride_scale`), the aspect ratios, the location and
the IoU thresholds.

All computations call YOUR code: `get_fpn_location_coords` (common.py),
`generate_fpn_anchors`, `iou` and `rcnn_match_anchors_to_gt`
(two_stage_detector.py), the anchors through `kit.anchors.fpn_anchors`. They
are looked up at call time, so edits that `%autoreload` picks up show at once.

    result = explore_anchors(gt_boxes, level="p4", stride_scale=8)
    result["counts"]        # {"foreground": 5, "neutral": 21, "background": 562}
    draw_explorer(image, gt_boxes, result)          # matplotlib Figure
    AnchorExplorer(image, gt_boxes, class_names)    # ipywidgets sliders (live)
    explorer_overview(image, gt_boxes)              # static fallback Figure
"""
import html
import io
from typing import Dict, Optional, Sequence, Tuple

import torch

from a4_helper import PALETTE
from kit.anchors import feature_map_shapes, fpn_anchors
from kit.data import GT_PADDING

ASPECT_RATIO_CHOICES = (0.25, 0.5, 1.0, 2.0, 4.0)

# Labels of the anchors in `explore_anchors(...)["labels"]`, one small int
# per anchor for counting and colouring. They are the explorer's own: not the
# sentinels of the rows that `rcnn_match_anchors_to_gt` returns
# (`two_stage_detector.BACKGROUND` / `NEUTRAL`), from which they are derived.
# Their order counts: a location's dot takes the largest label of its anchors.
LABEL_FOREGROUND, LABEL_NEUTRAL, LABEL_BACKGROUND = 1, 0, -1
LABEL_NAMES = {LABEL_FOREGROUND: "foreground", LABEL_NEUTRAL: "neutral",
               LABEL_BACKGROUND: "background"}
# The kit's one palette (a4_helper.PALETTE), as in every notebook's pictures.
LABEL_COLORS = {LABEL_FOREGROUND: PALETTE["foreground"], LABEL_NEUTRAL: PALETTE["neutral"],
                LABEL_BACKGROUND: PALETTE["background"]}
GT_COLOR = PALETTE["gt"]


def _fpn_strides() -> Dict[str, int]:
    """The backbone's FPN levels and strides, `common.FPN_STRIDES`."""
    import common

    return dict(common.FPN_STRIDES)


def _check_settings(level, stride_scale, aspect_ratios, iou_thresholds):
    levels = _fpn_strides()
    if level not in levels:
        raise ValueError(f"level must be one of {list(levels)}, got {level!r}.")
    if not stride_scale or stride_scale <= 0:
        raise ValueError(f"stride_scale must be a positive number, got {stride_scale!r}.")
    if len(aspect_ratios) == 0 or min(aspect_ratios) <= 0:
        raise ValueError(
            f"Pick at least one positive aspect ratio, got {tuple(aspect_ratios)!r}."
        )
    low, high = iou_thresholds
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(
            "iou_thresholds must be (low, high) with 0 <= low <= high <= 1, "
            f"got {tuple(iou_thresholds)!r}."
        )


def _valid_gt(gt_boxes: torch.Tensor) -> torch.Tensor:
    """GT rows `(x1, y1, x2, y2, class)` without the padding rows (class `GT_PADDING`)."""
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32)
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 5:
        raise ValueError(
            "gt_boxes must be a (M, 5) tensor of (x1, y1, x2, y2, class) rows "
            f"(one image, as the dataset serves them), got shape {tuple(gt_boxes.shape)}."
        )
    return gt_boxes[gt_boxes[:, 4] != GT_PADDING]


def explore_anchors(
    gt_boxes: torch.Tensor,
    level: str = "p4",
    stride_scale: float = 8,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    center: Optional[Tuple[float, float]] = None,
    iou_thresholds: Tuple[float, float] = (0.3, 0.6),
    image_size: Tuple[int, int] = (224, 224),
) -> Dict:
    """
    Anchors of one FPN level and their labels against one image's GT boxes.

    Args:
        gt_boxes: `(M, 5)` GT boxes `(x1, y1, x2, y2, class)` of one image;
            padding rows (class -1) are ignored.
        level: FPN level, a key of `common.FPN_STRIDES` ("p3", "p4", "p5").
        stride_scale: Anchor side is `stride_scale * stride` (for ratio 1).
        aspect_ratios: Anchor aspect ratios (height / width) per location.
        center: `(x, y)` in pixels; the location of the level nearest to it
            is the "selected location". Default: the image centre.
        iou_thresholds: `(low, high)`: IoU <= low is background, IoU >= high
            is foreground, in between is neutral (as `rcnn_match_anchors_to_gt`).
        image_size: `(width, height)` of the image in pixels.

    Returns:
        Dict with keys
            "level", "stride", "stride_scale", "aspect_ratios", "iou_thresholds",
            "grid": `(H, W)` locations of the level,
            "anchors": `(H * W * A, 4)` XYXY anchors,
            "labels": `(H * W * A,)` long, LABEL_FOREGROUND (1) /
                LABEL_NEUTRAL (0) / LABEL_BACKGROUND (-1),
            "best_iou": `(H * W * A,)` IoU with the best-matching GT box,
            "counts": {"foreground": int, "neutral": int, "background": int},
            "location": index of the selected location,
            "center": `(x, y)` of the selected location,
            "location_anchors": `(A, 4)`, "location_labels": `(A,)`,
            "location_ious": `(A,)`: the anchors at the selected location.
    """
    import two_stage_detector as tsd

    aspect_ratios = [float(r) for r in aspect_ratios]
    _check_settings(level, stride_scale, aspect_ratios, iou_thresholds)
    width, height = image_size
    strides = {level: _fpn_strides()[level]}
    gt = _valid_gt(gt_boxes)

    try:
        locations, anchors = fpn_anchors(image_size, strides, stride_scale, aspect_ratios)
    except NotImplementedError as error:  # "needs <TODO> (<file>): implement it first."
        raise NotImplementedError(f"The explorer {error}") from None
    locations, anchors = locations[level], anchors[level]  # (H*W, 2), (H*W*A, 4)
    grid = tuple(feature_map_shapes(image_size, strides)[level][-2:])
    num_anchors = len(aspect_ratios)

    if len(gt) > 0:
        best_iou = tsd.iou(anchors, gt[:, :4]).max(dim=1).values  # (N,)
    else:
        best_iou = anchors.new_zeros(len(anchors))
    matched = tsd.rcnn_match_anchors_to_gt(anchors, gt, tuple(iou_thresholds))  # (N, 5)
    labels = torch.full((len(anchors),), LABEL_NEUTRAL, dtype=torch.long)
    labels[matched[:, 4] >= 0] = LABEL_FOREGROUND
    labels[matched[:, 4] == tsd.BACKGROUND] = LABEL_BACKGROUND

    if center is None:
        center = (width / 2, height / 2)
    distances = (locations - locations.new_tensor(center)).abs().sum(dim=1)  # (H*W,)
    location = int(distances.argmin())
    rows = slice(location * num_anchors, (location + 1) * num_anchors)

    return {
        "level": level,
        "stride": strides[level],
        "stride_scale": stride_scale,
        "aspect_ratios": aspect_ratios,
        "iou_thresholds": tuple(iou_thresholds),
        "grid": grid,
        "anchors": anchors,
        "labels": labels,
        "best_iou": best_iou,
        "counts": {
            name: int((labels == value).sum()) for value, name in LABEL_NAMES.items()
        },
        "location": location,
        "center": tuple(float(c) for c in locations[location]),
        "location_anchors": anchors[rows],
        "location_labels": labels[rows],
        "location_ious": best_iou[rows],
    }


def format_counts(result: Dict) -> str:
    """Counts of `explore_anchors` as text, plus the anchors at the location."""
    (grid_h, grid_w), counts = result["grid"], result["counts"]
    low, high = result["iou_thresholds"]
    total = len(result["labels"])
    lines = [
        f"level {result['level']}, stride {result['stride']}, stride_scale "
        f"{result['stride_scale']} (1:1 anchor {result['stride_scale'] * result['stride']:g} px)",
        f"{grid_h}x{grid_w} locations x {len(result['aspect_ratios'])} ratios = {total} anchors",
        f"foreground {counts['foreground']} (IoU >= {high:.2f}) | neutral "
        f"{counts['neutral']} | background {counts['background']} (<= {low:.2f})",
        "anchors at location ({:.0f}, {:.0f}):".format(*result["center"]),
    ]
    for ratio, box, label, quality in zip(
        result["aspect_ratios"],
        result["location_anchors"].tolist(),
        result["location_labels"].tolist(),
        result["location_ious"].tolist(),
    ):
        lines.append(
            "  ratio {:<4g} [{:7.1f} {:7.1f} {:7.1f} {:7.1f}]  IoU {:.2f}  {}".format(
                ratio, *box, quality, LABEL_NAMES[label]
            )
        )
    return "\n".join(lines)


def _to_hwc(image):
    """`(3, H, W)` tensor in [0, 1] (see `a4_helper.denormalize`) or `(H, W, 3)` array."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    return image


def draw_explorer(image, gt_boxes, result: Dict, class_names=None, ax=None, title=True):
    """
    Draw the image, its GT boxes (yellow), every location of the level as a dot
    coloured by its best anchor (green: a foreground anchor, orange: a neutral
    one, small red: background only), all foreground anchors (thin green) and
    the anchors of the selected location (thick, coloured by label).

    Returns:
        The matplotlib Figure (drawn into `ax` when given).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 5.2))
    else:
        fig = ax.figure
    picture = _to_hwc(image)
    ax.imshow(picture)
    height, width = picture.shape[:2]

    for x1, y1, x2, y2, cls in _valid_gt(gt_boxes).tolist():
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2.5, ec=GT_COLOR))
        if class_names is not None and 0 <= int(cls) < len(class_names):
            ax.text(x1 + 2, y1 + 9, class_names[int(cls)], color="black", fontsize=8,
                    bbox=dict(facecolor=GT_COLOR, edgecolor="none", pad=1))

    anchors, labels = result["anchors"], result["labels"]
    for x1, y1, x2, y2 in anchors[labels == LABEL_FOREGROUND].tolist():
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8,
                               ec=LABEL_COLORS[LABEL_FOREGROUND], alpha=0.7))

    # One dot per location, coloured by the best label among its anchors.
    per_location = labels.view(-1, len(result["aspect_ratios"])).max(dim=1).values
    centers = 0.5 * (anchors[:, :2] + anchors[:, 2:])
    centers = centers.view(-1, len(result["aspect_ratios"]), 2)[:, 0]
    for value, size in ((LABEL_BACKGROUND, 6), (LABEL_NEUTRAL, 12), (LABEL_FOREGROUND, 16)):
        chosen = centers[per_location == value]
        if len(chosen):
            ax.scatter(chosen[:, 0], chosen[:, 1], s=size, c=LABEL_COLORS[value],
                       edgecolors="black", linewidths=0.4, zorder=3)

    for (x1, y1, x2, y2), label in zip(result["location_anchors"].tolist(),
                                       result["location_labels"].tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2.2,
                               ls="--", ec=LABEL_COLORS[label], zorder=4))
    ax.plot(*result["center"], marker="+", color="white", ms=14, mew=2.5, zorder=5)

    ax.set_xlim(-0.15 * width, 1.15 * width)
    ax.set_ylim(1.15 * height, -0.15 * height)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        counts = result["counts"]
        ax.set_title(
            f"{result['level']}, stride_scale {result['stride_scale']}: "
            f"fg {counts['foreground']} / neutral {counts['neutral']} / "
            f"bg {counts['background']}",
            fontsize=9,
        )
    handles = [Line2D([], [], color=GT_COLOR, lw=2.5, label="GT box")] + [
        Line2D([], [], color=LABEL_COLORS[v], lw=2, label=LABEL_NAMES[v])
        for v in (LABEL_FOREGROUND, LABEL_NEUTRAL, LABEL_BACKGROUND)
    ]
    ax.legend(handles=handles, loc="lower center", ncol=4, fontsize=7,
              bbox_to_anchor=(0.5, -0.11), frameon=False)
    return fig


class AnchorExplorer:
    """
    ipywidgets sliders for `explore_anchors`: FPN level, `stride_scale`, aspect
    ratios, location (x, y in pixels, snapped to the level's nearest location)
    and the IoU thresholds. Each change redraws the picture and the counts.
    Display it as the last expression of a cell. `.result` holds the latest
    `explore_anchors` output.

    Args:
        image: `(3, H, W)` tensor in [0, 1] (use `a4_helper.denormalize`).
        gt_boxes: `(M, 5)` GT boxes of this image.
        class_names: Optional names to label the GT boxes.
        level, stride_scale, aspect_ratios, center, iou_thresholds: Start values.
    """

    def __init__(
        self,
        image,
        gt_boxes,
        class_names=None,
        level: str = "p4",
        stride_scale: int = 8,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        center: Optional[Tuple[int, int]] = None,
        iou_thresholds: Tuple[float, float] = (0.3, 0.6),
    ):
        import ipywidgets as widgets

        self.image, self.gt_boxes, self.class_names = image, gt_boxes, class_names
        height, width = _to_hwc(image).shape[:2]
        self.image_size = (width, height)
        center = center or (width // 2, height // 2)
        _check_settings(level, stride_scale, aspect_ratios, iou_thresholds)
        self.result = None

        style = {"description_width": "100px"}
        layout = widgets.Layout(width="470px")
        self.controls = {
            "level": widgets.ToggleButtons(
                options=list(_fpn_strides()), value=level, description="FPN level",
                style={"description_width": "100px", "button_width": "60px"},
            ),
            "stride_scale": widgets.IntSlider(
                value=stride_scale, min=1, max=12, description="stride_scale",
                continuous_update=False, style=style, layout=layout,
            ),
            "aspect_ratios": widgets.SelectMultiple(
                options=sorted(set(ASPECT_RATIO_CHOICES) | set(map(float, aspect_ratios))),
                value=tuple(float(r) for r in aspect_ratios),
                description="aspect ratios", rows=5, style=style,
            ),
            "center_x": widgets.IntSlider(
                value=center[0], min=0, max=width - 1, description="location x",
                continuous_update=False, style=style, layout=layout,
            ),
            "center_y": widgets.IntSlider(
                value=center[1], min=0, max=height - 1, description="location y",
                continuous_update=False, style=style, layout=layout,
            ),
            "iou_thresholds": widgets.FloatRangeSlider(
                value=tuple(iou_thresholds), min=0.0, max=1.0, step=0.05,
                description="IoU bg / fg", continuous_update=False, style=style,
                layout=layout,
            ),
        }
        for name, control in self.controls.items():
            control.add_class(f"anchor-explorer-{name.replace('_', '-')}")
        self.output = widgets.interactive_output(self._render, self.controls)
        # Controls above the picture: the explorer fits a notebook column of
        # 560 px (a JupyterLab window of 1400 px with the file browser open).
        self.output.layout = widgets.Layout(width="560px")
        self.output.add_class("anchor-explorer-output")
        controls = widgets.VBox(list(self.controls.values()),
                                layout=widgets.Layout(width="480px"))
        self.widget = widgets.VBox([controls, self.output])
        self.widget.add_class("anchor-explorer")

    def _render(self, level, stride_scale, aspect_ratios, center_x, center_y, iou_thresholds):
        import matplotlib.pyplot as plt
        from IPython.display import Image, display

        try:
            self.result = explore_anchors(
                self.gt_boxes, level, stride_scale, aspect_ratios,
                (center_x, center_y), iou_thresholds, self.image_size,
            )
        except (ValueError, NotImplementedError) as error:
            print(error)
            return
        except Exception as error:  # the student's code under exploration failed
            print(f"The explorer could not run your code: {type(error).__name__}: {error}\n"
                  "Check get_fpn_location_coords, generate_fpn_anchors and iou first.")
            return
        text = format_counts(self.result)
        print(text)
        fig = draw_explorer(self.image, self.gt_boxes, self.result, self.class_names)
        # PNG bytes of our own: the inline backend's display of a figure made
        # in a widget callback can come out blank.
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        display(Image(data=buffer.getvalue(), format="png"))

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if self.result is not None:
            # Shown where widgets are not live (static renderers).
            bundle["text/plain"] = "AnchorExplorer (needs a live kernel)\n" + format_counts(
                self.result
            )
        return bundle

    def counts_html(self) -> str:
        return "<pre>" + html.escape(format_counts(self.result)) + "</pre>"


def explorer_overview(
    image,
    gt_boxes,
    class_names=None,
    stride_scales: Sequence[int] = (4, 8),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    iou_thresholds: Tuple[float, float] = (0.3, 0.6),
    center: Optional[Tuple[float, float]] = None,
):
    """
    Static view of the explorer (no widgets needed): one panel per FPN level
    (columns) and `stride_scale` (rows), each titled with its counts.

    Returns:
        (Figure, List of `explore_anchors` results, row by row)
    """
    import matplotlib.pyplot as plt

    height, width = _to_hwc(image).shape[:2]
    levels = list(_fpn_strides())
    fig, axes = plt.subplots(
        len(stride_scales), len(levels), squeeze=False,
        figsize=(3.6 * len(levels), 3.8 * len(stride_scales)),
    )
    results = []
    for row, stride_scale in enumerate(stride_scales):
        for col, level in enumerate(levels):
            result = explore_anchors(
                gt_boxes, level, stride_scale, aspect_ratios, center,
                iou_thresholds, (width, height),
            )
            results.append(result)
            draw_explorer(image, gt_boxes, result, class_names, ax=axes[row, col])
            if axes[row, col].get_legend() is not None and (row, col) != (
                len(stride_scales) - 1, len(levels) - 1
            ):
                axes[row, col].get_legend().remove()
    fig.tight_layout()
    return fig, results
