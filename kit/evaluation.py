"""
Evaluation: detections of a dataset, mAP (VOC rules for difficult objects), the AP table.
"""
import os
from typing import Dict, Optional, Sequence, Union

import torch

from .data import auto_device


@torch.no_grad()
def _detections_on_difficult(
    boxes: torch.Tensor, classes: torch.Tensor, gt: torch.Tensor, difficult: torch.Tensor,
    iou_thresh: float = 0.5,
) -> torch.Tensor:
    """
    PASCAL VOC's rule for difficult objects: a detection is ignored (neither
    a hit nor a false positive) when, among the GT boxes of its class,
    difficult ones included, the one it overlaps most is difficult, with
    IoU >= `iou_thresh`.

    Args:
        boxes: `(N, 4)` detections, classes: `(N,)` their class ids.
        gt: `(G, 5)`, difficult: `(D, 5)` rows `(x1, y1, x2, y2, class)`.

    Returns:
        `(N,)` bool, True for the detections to ignore.
    """
    import torchvision

    if len(boxes) == 0 or len(difficult) == 0:
        return torch.zeros(len(boxes), dtype=torch.bool)
    all_gt = torch.cat([gt, difficult])  # (G + D, 5)
    is_difficult = torch.arange(len(all_gt)) >= len(gt)  # (G + D,)
    iou = torchvision.ops.box_iou(boxes, all_gt[:, :4])  # (N, G + D)
    iou[classes[:, None] != all_gt[None, :, 4].long()] = -1.0
    best_iou, best = iou.max(dim=1)  # (N,)
    return is_difficult[best] & (best_iou >= iou_thresh)


def _underlying_dataset(dataset):
    """The dataset inside wrappers such as `Subset` (followed through `.dataset`)."""
    seen = 0
    while dataset is not None and not hasattr(dataset, "difficult_boxes") and seen < 10:
        dataset = getattr(dataset, "dataset", None)
        seen += 1
    return dataset


def inference_with_detector(
    detector: torch.nn.Module,
    test_loader,
    class_names: Union[Sequence[str], Dict[int, str]],
    score_thresh: float = 0.3,
    nms_thresh: float = 0.5,
    device=None,
    output_dir: Optional[str] = None,
    max_images: Optional[int] = None,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
    ignore_difficult: bool = True,
) -> Dict:
    """
    Run the detector on every image of `test_loader` and compute per-class
    average precision and mAP at IoU 0.5 with torchmetrics'
    `MeanAveragePrecision` (pycocotools backend). Average precision uses
    COCO-style 101-point interpolation: the precision envelope sampled at
    recall 0, 0.01, ..., 1 (not VOC 2007's 11 points). Images without
    predictions still count (their GT boxes are misses); classes without GT
    in the split get no AP and do not enter the mean. Difficult objects are
    not GT (missing them costs nothing) and, as in the VOC devkit,
    detections of them are ignored rather than counted as false positives.

    Args:
        detector: in eval mode it is called on one image at a time as
            `detector(images (1, 3, S, S), test_score_thresh=...,
            test_nms_thresh=...)` and returns `(boxes (N, 4), classes (N,),
            scores (N,))`.
        test_loader: yields `(image_paths, images, gt_boxes)` batches (any
            batch size; images are run one by one).
        class_names: list (index = class id) or dict id -> name.
        score_thresh, nms_thresh: passed to the detector.
        output_dir: if given, also write the course's text files:
            `detection-results/{id}.txt` ("class score x1 y1 x2 y2") and
            `ground-truth/{id}.txt` ("class x1 y1 x2 y2", with a trailing
            "difficult" for difficult objects).
        max_images: stop after this many images (None: all).
        ignore_difficult: ignore detections whose best-overlapping GT box of
            their class is a difficult object with IoU >= 0.5. Needs a
            dataset with `difficult_boxes(index)` (`VOC2007DetectionTiny`),
            also when it is wrapped (`torch.utils.data.Subset`, or anything
            with a `.dataset` attribute): images are found by their path;
            for other datasets there is nothing to ignore.

    Returns:
        dict with "map50" (float, mean over classes with GT), "per_class"
        (dict class name -> AP50), "num_images", "num_ignored" (detections
        ignored on difficult objects), and "predictions": a list with one
        dict per image ("image_path", "boxes", "scores", "labels",
        "ignored": bool per detection).
    """
    from torchmetrics.detection import MeanAveragePrecision
    from tqdm.auto import tqdm

    if isinstance(class_names, dict):
        class_names = [class_names[i] for i in range(len(class_names))]
    device = auto_device(device)
    was_training = detector.training
    detector.to(device).eval()
    metric = MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True,
        backend="pycocotools",
    )
    dataset = getattr(test_loader, "dataset", None)
    difficult_of = None
    base = _underlying_dataset(dataset)
    if ignore_difficult and hasattr(base, "difficult_boxes"):
        index_of = {base.image_path(i): i for i in range(len(base))}

        def difficult_of(path):
            boxes = base.difficult_boxes(index_of[path]) if path in index_of else torch.empty(0, 5)
            return boxes[boxes[:, 4] >= 0]

    if output_dir:
        os.makedirs(os.path.join(output_dir, "detection-results"), exist_ok=True)
        os.makedirs(os.path.join(output_dir, "ground-truth"), exist_ok=True)
    predictions = []
    total = len(dataset) if dataset is not None else None
    if max_images is not None and total is not None:
        total = min(total, max_images)
    bar = tqdm(total=total, disable=not progress, desc="eval", dynamic_ncols=True)
    done = False
    for image_paths, images, gt_boxes in test_loader:
        for path, image, gt in zip(image_paths, images, gt_boxes):
            if max_images is not None and len(predictions) >= max_images:
                done = True
                break
            image = image.to(device=device, dtype=dtype)[None]
            boxes, classes, scores = detector(
                image, test_score_thresh=score_thresh, test_nms_thresh=nms_thresh
            )
            boxes = boxes.float().cpu().reshape(-1, 4)
            classes, scores = classes.long().cpu().reshape(-1), scores.float().cpu().reshape(-1)
            gt = gt.cpu()
            gt = gt[gt[:, 4] >= 0]
            difficult = difficult_of(path) if difficult_of else torch.empty(0, 5)
            ignored = _detections_on_difficult(boxes, classes, gt, difficult)
            metric.update(
                [{"boxes": boxes[~ignored], "scores": scores[~ignored], "labels": classes[~ignored]}],
                [{"boxes": gt[:, :4], "labels": gt[:, 4].long()}],
            )
            predictions.append({"image_path": path, "boxes": boxes, "scores": scores,
                                "labels": classes, "ignored": ignored})
            if output_dir:
                image_id = os.path.splitext(os.path.basename(path))[0]
                with open(os.path.join(output_dir, "detection-results", image_id + ".txt"), "w") as f:
                    for b, c, s in zip(boxes.tolist(), classes.tolist(), scores.tolist()):
                        f.write(f"{class_names[c]} {s:.6f} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f}\n")
                with open(os.path.join(output_dir, "ground-truth", image_id + ".txt"), "w") as f:
                    for rows, suffix in ((gt, ""), (difficult, " difficult")):
                        for b in rows.tolist():
                            f.write(f"{class_names[int(b[4])]} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} "
                                    f"{b[3]:.2f}{suffix}\n")
            bar.update(1)
        if done:
            break
    bar.close()
    if was_training:
        detector.train()

    result = metric.compute()
    per_class = {}
    classes = result["classes"].reshape(-1).tolist()
    aps = result["map_per_class"].reshape(-1).tolist()
    for c, ap in zip(classes, aps):
        if ap >= 0:  # -1: class has no GT in this split
            per_class[class_names[int(c)]] = float(ap)
    map50 = float(result["map"])
    return {
        "map50": max(map50, 0.0) if per_class else float("nan"),
        "per_class": per_class,
        "num_images": len(predictions),
        "num_ignored": int(sum(int(p["ignored"].sum()) for p in predictions)),
        "predictions": predictions,
    }


def format_ap_table(result: Dict, class_names: Sequence[str]) -> str:
    """Plain-text table of per-class AP50 and mAP50 from `inference_with_detector`."""
    width = max(len(n) for n in list(class_names) + ["mAP@0.5"])
    lines = [f"{'class':<{width}}  AP@0.5", "-" * (width + 8)]
    for name in class_names:
        ap = result["per_class"].get(name)
        lines.append(f"{name:<{width}}  " + ("  n/a" if ap is None else f"{ap:.3f}"))
    lines += ["-" * (width + 8), f"{'mAP@0.5':<{width}}  {result['map50']:.3f}"]
    return "\n".join(lines)


