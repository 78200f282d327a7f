"""
Helpers for the two-stage detector kit, in one namespace for the notebooks
and for `two_stage_detector.py` (which does `from a4_helper import *`).

The code lives in the `kit` package, one concept per module:

- `kit.data`: the shapes dataset, the photographs, `VOC2007DetectionTiny`;
- `kit.training`: `train_detector`;
- `kit.evaluation`: `inference_with_detector` (mAP), `format_ap_table`;
- `kit.figures`: `detection_visualizer`, `draw_anchors`, `draw_matches`,
  `draw_proposals`, `plot_losses`, the colour `PALETTE`.

Importing this module is cheap: matplotlib, scikit-image, torchmetrics and
tqdm are imported inside the functions that need them.
"""
from kit.data import (IMAGENET_MEAN, IMAGENET_STD, KIT_ROOT, MAX_BOXES, VOC_CLASSES,
                      VOC2007DetectionTiny, auto_device, default_dataset_dir, denormalize,
                      ensure_shapes_dataset, photos_dataset_dir, reset_seed)
from kit.evaluation import format_ap_table, inference_with_detector
from kit.figures import (PALETTE, detection_visualizer, draw_anchors, draw_matches,
                         draw_proposals, plot_losses)
from kit.training import train_detector

__all__ = [
    "hello_helper",
    "reset_seed",
    "VOC2007DetectionTiny",
    "ensure_shapes_dataset",
    "photos_dataset_dir",
    "default_dataset_dir",
    "denormalize",
    "train_detector",
    "inference_with_detector",
    "detection_visualizer",
    "draw_anchors",
    "draw_matches",
    "draw_proposals",
    "plot_losses",
]


def hello_helper():
    print("Hello from a4_helper.py!")
