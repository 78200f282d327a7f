"""
The training recipe of notebooks 4 and 5: the detector of this kit, its
training run with an explicit choice between resuming a checkpoint and
training from scratch, predictions drawn next to the ground truth, and the
evaluation.

    detector = build_detector(num_classes=len(class_names), pretrained=False)
    history = train(detector, train_loader, max_iters=200, checkpoint=path, resume=False)
"""
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
GRADED_FILES = ("two_stage_detector.py", "common.py")


def build_detector(num_classes: int, pretrained: bool = False):
    """
    The detector of this kit, the "course" preset of `kit.presets`: RegNet-X
    400MF + FPN (64 channels), an RPN with one 64-channel stem layer, and a
    classifier with one 64-channel stem layer.

    Args:
        num_classes: number of object classes (without background).
        pretrained: start the RegNet from torchvision's ImageNet weights.

    Returns:
        `FasterRCNN` built from YOUR `common.py` and `two_stage_detector.py`.
    """
    from kit.presets import build_detector as build_preset

    return build_preset("course", num_classes, pretrained=pretrained)


def graded_files_digest() -> str:
    """A hash of the graded files Python imports now (your current code)."""
    digest = hashlib.sha1()
    for name in GRADED_FILES:
        module = sys.modules.get(name[:-3])
        path = getattr(module, "__file__", None) or os.path.join(os.path.dirname(_HERE), name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


def _checkpoint_iteration(path: str) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return int(state.get("iter", 0))


def train(detector, train_loader, max_iters: int, checkpoint: Optional[str] = None,
          resume: bool = False, device=None, learning_rate: float = 5e-3,
          log_period: Optional[int] = None) -> Dict[str, List[float]]:
    """
    Train with `a4_helper.train_detector` and say what happens with the
    checkpoint:

    - "training from scratch": no checkpoint, or `resume=False` (an old one is
      renamed to `*.old.pt` first, never silently continued);
    - "resuming from PATH at iteration N": `resume=True`, a checkpoint exists
      and the graded files are the ones it was trained with;
    - with `resume=True` but changed graded files (you fixed a bug since), it
      trains from scratch and says so.

    Args:
        detector: the model to train.
        train_loader: the training batches.
        max_iters: iterations in all (a resumed run stops there too).
        checkpoint: file for the weights (saved every 500 iterations and at
            the end), or None.
        resume: continue the checkpoint if there is a usable one.
        device, learning_rate: passed to `train_detector`.
        log_period: iterations between loss printouts (default: 1/10 of the run).

    Returns:
        The history of `train_detector`.
    """
    from a4_helper import train_detector

    digest = graded_files_digest()
    if checkpoint:
        checkpoint = str(checkpoint)
        sidecar = checkpoint + ".json"
        if os.path.exists(checkpoint):
            saved = {}
            if os.path.exists(sidecar):
                with open(sidecar) as f:
                    saved = json.load(f)
            reason = None
            if not resume:
                reason = "RESUME = False"
            elif saved.get("graded_files") != digest:
                reason = "your graded files changed since it was saved"
            if reason:
                old = checkpoint[:-3] + ".old.pt" if checkpoint.endswith(".pt") else checkpoint + ".old"
                os.replace(checkpoint, old)
                print(f"training from scratch ({reason}; the old checkpoint is now {old})")
            else:
                print(f"resuming from {checkpoint} at iteration {_checkpoint_iteration(checkpoint)}")
        else:
            print("training from scratch (no checkpoint yet)")
        os.makedirs(os.path.dirname(os.path.abspath(checkpoint)), exist_ok=True)
        with open(sidecar, "w") as f:
            json.dump({"graded_files": digest}, f)
    else:
        print("training from scratch (no checkpoint)")
    return train_detector(detector, train_loader, learning_rate=learning_rate, max_iters=max_iters,
                          log_period=log_period or max(1, max_iters // 10), device=device,
                          checkpoint_path=checkpoint)


@torch.no_grad()
def show_predictions(model, dataset, indices: Sequence[int], class_names, device=None,
                     score_thresh: float = 0.4, nms_thresh: float = 0.5):
    """Draw the predictions of `model` next to the GT of `dataset[i]`, one figure per index."""
    import matplotlib.pyplot as plt

    from a4_helper import detection_visualizer

    model.eval()
    device = device or next(model.parameters()).device
    for index in indices:
        _, image, gt_boxes = dataset[index]
        boxes, classes, scores = model(image[None].to(device), test_score_thresh=score_thresh,
                                       test_nms_thresh=nms_thresh)
        preds = torch.cat([boxes, classes[:, None].float(), scores[:, None]], dim=1).cpu()
        detection_visualizer(image, class_names, gt_boxes=gt_boxes, pred_boxes=preds,
                             title=f"{len(preds)} detections (GT dashed)")
        plt.show()
