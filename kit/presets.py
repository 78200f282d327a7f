"""
The detector configurations of the kit, each stated once, and one function
that builds a detector from them with YOUR `common.py` and
`two_stage_detector.py`:

    detector = build_detector("course", num_classes=20)
    detector = build_detector("demo", num_classes=6, image_size=224)
    detector = build_detector("tiny", num_classes=2, rpn={"post_nms_topk": 10})

A preset is a plain dict: `fpn_channels` (the FPN width), `image_size` (the
image size its anchors are made for), `rpn` (keyword arguments of `RPN`) and
`roi` (keyword arguments of `FasterRCNN`). Arguments that a preset does not
state are the constructors' defaults.
"""
import copy
from typing import Any, Dict, Optional

PRESETS: Dict[str, Dict[str, Any]] = {
    # The course's VOC setting (notebooks 4 and 5): 224 px images, the RPN's
    # default anchors (8 x stride, aspect ratios 0.5 / 1 / 2).
    "course": {
        "fpn_channels": 64,
        "image_size": 224,
        "rpn": {"stem_channels": [64], "batch_size_per_image": 16, "pre_nms_topk": 500,
                "post_nms_topk": 200},
        "roi": {"stem_channels": [64], "batch_size_per_image": 32},
    },
    # The shapes demo (`demo.py`): small images, trained from scratch.
    "demo": {
        "fpn_channels": 48,
        "image_size": 160,
        "rpn": {
            "stem_channels": [48],
            "batch_size_per_image": 64,
            # Objects here are about 11 px to most of a 160 px image, with
            # aspect ratios from 1:3 to 3:1. Anchors of 2.5 x stride (20, 40,
            # 80 px at p3, p4, p5) in five shapes, and foreground from IoU
            # 0.4, give 98 % of val objects at least one foreground anchor.
            # With the course's IoU 0.6 (or even 0.5) and three shapes, 12 %
            # of the objects had none: the matching has no "best anchor per
            # object" rule, so such objects are never taught as foreground.
            # The anchors scale with the image size (shapes objects are sized
            # relative to the image).
            "anchor_stride_scale": 2.5,
            "anchor_aspect_ratios": [1 / 3, 0.5, 1.0, 2.0, 3.0],
            "anchor_iou_thresholds": (0.3, 0.4),
            "nms_thresh": 0.7,
            "pre_nms_topk": 200,
            "post_nms_topk": 30,
        },
        "roi": {"stem_channels": [48], "batch_size_per_image": 64},
    },
    # The speed benchmark (`bench/benchmark.py`), which configures
    # torchvision's detector from these values too: everything they share is
    # stated here, defaults included.
    "bench": {
        "fpn_channels": 64,
        "image_size": 224,
        "rpn": {
            "stem_channels": [64],
            "batch_size_per_image": 256,
            "anchor_stride_scale": 8,
            "anchor_aspect_ratios": [0.5, 1.0, 2.0],
            "anchor_iou_thresholds": (0.3, 0.6),
            "nms_thresh": 0.7,
            "pre_nms_topk": 400,  # per level, like torchvision's pre_nms_top_n
            "post_nms_topk": 100,  # per level: at most 3 x 100 = 300 per image
            "fg_fraction": 0.5,
        },
        "roi": {"stem_channels": [64, 64], "batch_size_per_image": 128, "roi_size": (7, 7),
                "fg_fraction": 0.25, "proposal_iou_thresholds": (0.5, 0.5)},
    },
    # The small detectors of the tests: fast to build and to run on a CPU.
    "tiny": {
        "fpn_channels": 16,
        "image_size": 96,
        "rpn": {"stem_channels": [16], "batch_size_per_image": 16, "anchor_stride_scale": 3,
                "pre_nms_topk": 60, "post_nms_topk": 20},
        "roi": {"stem_channels": [16], "batch_size_per_image": 32},
    },
}


def preset_config(preset: str, image_size: Optional[int] = None, fpn_channels: Optional[int] = None,
                  rpn: Optional[Dict[str, Any]] = None, roi: Optional[Dict[str, Any]] = None
                  ) -> Dict[str, Any]:
    """
    The configuration of a preset with overrides: a new dict (the preset
    itself is left unchanged).

    Args:
        preset: a name of `PRESETS`.
        image_size: images of this size: the anchors scale with it (the
            preset's `anchor_stride_scale` times `image_size / preset image_size`),
            unless `rpn` gives `anchor_stride_scale`.
        fpn_channels: another FPN width (give the stems in `rpn` / `roi` too
            if they should change with it).
        rpn: `RPN` keyword arguments replacing the preset's.
        roi: `FasterRCNN` keyword arguments replacing the preset's.

    Returns:
        `{"fpn_channels", "image_size", "rpn", "roi"}` as in `PRESETS`.

    Raises:
        ValueError: for a name that is not a preset, or another image size
            for a preset that keeps the RPN's default anchors (give
            `anchor_stride_scale` in `rpn`).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = copy.deepcopy(PRESETS[preset])
    rpn = copy.deepcopy(rpn or {})
    if image_size is not None:
        if "anchor_stride_scale" in cfg["rpn"]:
            scale = cfg["rpn"]["anchor_stride_scale"]
            cfg["rpn"]["anchor_stride_scale"] = scale * image_size / cfg["image_size"]
        elif image_size != cfg["image_size"] and "anchor_stride_scale" not in rpn:
            raise ValueError(f"preset {preset!r} keeps the RPN's default anchors, made for "
                             f"{cfg['image_size']} px images: for {image_size} px give "
                             "rpn={'anchor_stride_scale': ...}")
        cfg["image_size"] = image_size
    if fpn_channels is not None:
        cfg["fpn_channels"] = fpn_channels
    cfg["rpn"].update(rpn)
    cfg["roi"].update(copy.deepcopy(roi or {}))
    return cfg


def build_detector(preset: str, num_classes: int, pretrained: bool = False,
                   image_size: Optional[int] = None, fpn_channels: Optional[int] = None,
                   rpn: Optional[Dict[str, Any]] = None, roi: Optional[Dict[str, Any]] = None):
    """
    A `FasterRCNN` of a preset, built from YOUR `common.py` and
    `two_stage_detector.py` (imported now, not when this module is).

    Args:
        preset: a name of `PRESETS` ("course", "demo", "bench", "tiny").
        num_classes: number of object classes (without background).
        pretrained: start the RegNet from torchvision's ImageNet weights.
        image_size, fpn_channels, rpn, roi: overrides, see `preset_config`.

    Returns:
        `FasterRCNN(backbone, rpn, ...)` of the preset.

    Raises:
        ValueError: for a name that is not a preset.
    """
    cfg = preset_config(preset, image_size, fpn_channels, rpn, roi)
    from common import DetectorBackboneWithFPN
    from two_stage_detector import RPN, FasterRCNN

    backbone = DetectorBackboneWithFPN(cfg["fpn_channels"], pretrained=pretrained)
    return FasterRCNN(backbone, RPN(cfg["fpn_channels"], **cfg["rpn"]), num_classes=num_classes,
                      **cfg["roi"])
