"""
Helpers for the two-stage detector kit: data, training, evaluation, pictures.

Importing this module is cheap (`two_stage_detector.py` does
`from a4_helper import *`): matplotlib, scikit-image, torchmetrics and tqdm are
imported inside the functions that need them.

Run the demo (train on the embedded shapes data, evaluate, draw figures):

    python -m a4_helper demo --out outputs/demo
"""
import hashlib
import importlib.util
import math
import os
import random
import sys
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

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

_HERE = os.path.dirname(os.path.abspath(__file__))

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_BOXES = 40


def hello_helper():
    print("Hello from a4_helper.py!")


def reset_seed(number: int = 0):
    """Seed Python, NumPy and PyTorch (all devices) for reproducible runs."""
    random.seed(number)
    np.random.seed(number)
    torch.manual_seed(number)


def _auto_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


##############################################################################
# Data
##############################################################################


def _resolve_root(root: str) -> str:
    """
    The kit's one rule for data paths: a relative path is relative to the
    kit's folder (the one with this file), whatever the current folder is
    (a notebook runs in `notebooks/`).
    """
    root = os.fspath(root)
    return root if os.path.isabs(root) else os.path.join(_HERE, root)


def _load_generator():
    path = os.path.join(_HERE, "data", "make_shapes.py")
    spec = importlib.util.spec_from_file_location("_make_shapes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_make_shapes"] = module  # worker processes find it by this name
    spec.loader.exec_module(module)
    return module


def ensure_shapes_dataset(root: str = "data", num_train: int = 2000, num_val: int = 500,
                          seed: int = 0, workers: int = 0) -> str:
    """
    Build the embedded synthetic shapes dataset (VOC layout) if it is missing
    and return its folder, ready for `VOC2007DetectionTiny(folder, split)`.

    Generation is deterministic (fixed by `seed`) and takes well under a
    minute on two CPU cores; see `data/make_shapes.py`.

    Args:
        root: folder that holds `shapes/` (relative paths are relative to
            the kit's folder).
        num_train, num_val: images per split. Other sizes than the default
            2,000 + 500 go to their own folder, `shapes-{num_train}-{num_val}/`,
            so that they never replace the default one. Image `i` of a split
            is the same in every size (see `data/make_shapes.py`), so a larger
            train split contains the default one and the val splits agree.
        seed: generator seed.
        workers: processes for generation (0: one per core).
    """
    name = "shapes" if (num_train, num_val, seed) == (2000, 500, 0) else \
        f"shapes-{num_train}-{num_val}" + (f"-seed{seed}" if seed else "")
    out = os.path.join(_resolve_root(root), name)
    generator = _load_generator()
    if not generator.is_complete(out, num_train, num_val, seed):
        start = time.time()
        generator.generate(out, num_train, num_val, seed, workers)
        print(f"Built the shapes dataset ({num_train} train + {num_val} val images) "
              f"in {out} in {time.time() - start:.1f} s")
    return out


def photos_dataset_dir(root: str = "data") -> str:
    """
    VOC-layout folder with real photographs bundled with scikit-image
    (astronaut, cameraman: person; chelsea: cat; stereo_motorcycle: motorbike;
    horse: horse) and hand-drawn VOC annotations. The JPEGs are written from
    `skimage.data` on first use. Load with
    `VOC2007DetectionTiny(photos_dataset_dir(), split="photos")`.
    """
    out = os.path.join(_resolve_root(root), "photos")
    images_dir = os.path.join(out, "JPEGImages")
    list_file = os.path.join(out, "ImageSets", "Main", "photos.txt")
    with open(list_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    missing = [i for i in ids if not os.path.exists(os.path.join(images_dir, i + ".jpg"))]
    if missing:
        from PIL import Image
        from skimage import data as skdata

        os.makedirs(images_dir, exist_ok=True)
        for image_id in missing:
            image = getattr(skdata, image_id)()
            if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
                image = image[0]
            image = np.asarray(image)
            if image.dtype == bool:
                image = np.where(image, 255, 0).astype(np.uint8)  # dark horse on white
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            Image.fromarray(image[:, :, :3]).save(os.path.join(images_dir, image_id + ".jpg"), quality=95)
    return out


def default_dataset_dir(root: str = "data") -> Tuple[str, str]:
    """
    The dataset the kit trains on: PASCAL VOC 2007 if it is present under
    `root` (`root/VOCdevkit/VOC2007`), else the embedded shapes dataset,
    built if needed. A relative `root` is relative to the kit's folder, as
    for `VOC2007DetectionTiny`, so the default finds what
    `VOC2007DetectionTiny("data", download=True)` fetched from any folder.

    Returns:
        (dataset_dir, name) with name "voc2007" or "shapes".
    """
    voc = os.path.join(_resolve_root(root), "VOCdevkit", "VOC2007")
    if os.path.isdir(os.path.join(voc, "JPEGImages")):
        return voc, "voc2007"
    return ensure_shapes_dataset(root), "shapes"


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo ImageNet normalization: `(3, S, S)` -> `(3, S, S)` float in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image.float() * std + mean).clamp(0, 1)


def _parse_voc_xml(
    path: str, class_to_idx: Dict[str, int], difficult: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """
    Boxes `(N, 4)` in continuous 0-based pixel co-ordinates (VOC's 1-based
    inclusive `xmin..xmax` becomes `[xmin - 1, xmax]`) and class ids `(N,)` of
    the non-difficult objects of one VOC annotation file (with
    `difficult=True`: of its difficult objects).
    """
    boxes, classes = [], []
    for obj in ET.parse(path).getroot().iter("object"):
        flag = obj.find("difficult")
        if (flag is not None and int(flag.text) == 1) != difficult:
            continue
        name = obj.find("name").text.strip()
        if name not in class_to_idx:
            raise ValueError(f"{path}: class {name!r} is not one of {list(class_to_idx)}")
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        classes.append(class_to_idx[name])
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(classes, dtype=np.float32)


class VOC2007DetectionTiny(torch.utils.data.Dataset):
    """
    A detection dataset in the PASCAL VOC layout (`JPEGImages/*.jpg`,
    `Annotations/*.xml`, `ImageSets/Main/{split}.txt`): PASCAL VOC 2007 itself,
    the embedded shapes dataset, or the bundled photos.

    Each item is `(image_path, image, gt_boxes)`:
        image_path: str, the JPEG file.
        image: `(3, S, S)` float32, ImageNet-normalized. The image is resized
            (bilinear) so that its shorter side is S, then centre-cropped to S.
        gt_boxes: `(40, 5)` float32 rows `(x1, y1, x2, y2, class)` in absolute
            pixels of the crop, clamped to `[0, S]`. Difficult objects are
            left out, boxes that are narrower or lower than `min_box_size`
            pixels after clamping (pushed out of the crop) are dropped, and
            the rest is padded with rows of -1. At most 40 boxes are kept.

    Args:
        dataset_dir: the VOC-layout folder (e.g. `data/VOCdevkit/VOC2007`), the
            `VOCdevkit` folder itself, or a folder that contains
            `VOCdevkit/VOC2007` (e.g. `data`). Relative paths are relative
            to the kit's folder, not to the current folder.
        split: an `ImageSets/Main/{split}.txt` list: "train", "val" (or
            "trainval", "test" for VOC), "photos" for the bundled photos.
        download: fetch VOC 2007 train/val through torchvision if it is
            missing (needs internet, about 450 MB): into
            `dataset_dir/VOCdevkit/VOC2007`, or next to it when `dataset_dir`
            is a `VOCdevkit` or `VOC2007` folder.
        image_size: S.
        cache: None/False: decode JPEGs on every access. True: preprocess the
            split once into one uint8 tensor file under `data/cache/` (or the
            file named by `cache` if it is a str) and serve items from it.
        cache_device: where the cached tensor lives ("cuda" if available by
            default, so epochs need no host-to-device copies).
        class_names: the classes (index = class id). Default: `classes.txt`
            of the dataset folder if present, else the 20 VOC classes.
        min_box_size: boxes smaller than this (in pixels, width or height)
            after the crop are dropped; must be > 0 so that no zero-area box
            ever reaches the box-delta computation.

    Attributes:
        class_names: List[str], index = class id. num_classes: int.
    """

    def __init__(
        self,
        dataset_dir: str,
        split: str = "train",
        download: bool = False,
        image_size: int = 224,
        cache: Union[None, bool, str] = None,
        cache_device: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        min_box_size: float = 1.0,
    ):
        super().__init__()
        if min_box_size <= 0:
            raise ValueError("min_box_size must be > 0 (zero-area boxes break the box deltas)")
        self.image_size = int(image_size)
        self.split = split
        self.min_box_size = float(min_box_size)
        self.dataset_dir = self._find_layout(dataset_dir, split, download)

        if class_names is None:
            classes_file = os.path.join(self.dataset_dir, "classes.txt")
            if os.path.exists(classes_file):
                with open(classes_file) as f:
                    class_names = [line.strip() for line in f if line.strip()]
            else:
                class_names = VOC_CLASSES
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.class_to_idx = {name: i for i, name in enumerate(self.class_names)}
        self.idx_to_class = dict(enumerate(self.class_names))

        with open(os.path.join(self.dataset_dir, "ImageSets", "Main", f"{split}.txt")) as f:
            self.ids = [line.split()[0] for line in f if line.strip()]

        self._cache = None
        if cache:
            self._cache = self._load_or_build_cache(cache, cache_device)

    @staticmethod
    def _find_layout(dataset_dir: str, split: str, download: bool) -> str:
        dataset_dir = os.path.normpath(_resolve_root(dataset_dir))
        candidates = [dataset_dir, os.path.join(dataset_dir, "VOC2007"),
                      os.path.join(dataset_dir, "VOCdevkit", "VOC2007")]
        for candidate in candidates:
            if os.path.exists(os.path.join(candidate, "ImageSets", "Main", f"{split}.txt")):
                return candidate
        # Where a download goes: the folder that holds VOCdevkit/.
        base = dataset_dir
        if os.path.basename(base) == "VOC2007":
            base = os.path.dirname(base)
        if os.path.basename(base) == "VOCdevkit":
            base = os.path.dirname(base)
        voc = os.path.join(base, "VOCdevkit", "VOC2007")
        if download:
            import torchvision

            # One archive holds VOC 2007 train and val (and their lists).
            torchvision.datasets.VOCDetection(base, year="2007", image_set="trainval", download=True)
            if os.path.exists(os.path.join(voc, "ImageSets", "Main", f"{split}.txt")):
                return voc
        raise FileNotFoundError(
            f"No VOC-layout split {split!r} (ImageSets/Main/{split}.txt) in {dataset_dir!r}. "
            "For the embedded shapes data call a4_helper.ensure_shapes_dataset(); for PASCAL "
            f"VOC 2007 (needs internet, about 450 MB, goes to {voc!r}) run "
            f"VOC2007DetectionTiny({base!r}, split={split!r}, download=True)."
        )

    def __len__(self) -> int:
        return len(self.ids)

    def _image_path(self, index: int) -> str:
        return os.path.join(self.dataset_dir, "JPEGImages", self.ids[index] + ".jpg")

    def _crop_geometry(self, width: int, height: int) -> Tuple[int, int, int, int]:
        """`(new_w, new_h, left, top)`: resize so that the shorter side is S, then centre-crop."""
        S = self.image_size
        # Shorter side exactly S; longer side rounded down (as torchvision's Resize).
        new_w = S if width <= height else int(S * width / height)
        new_h = S if height <= width else int(S * height / width)
        left, top = int(round((new_w - S) / 2.0)), int(round((new_h - S) / 2.0))
        return new_w, new_h, left, top

    def _load_boxes(self, index: int, size: Tuple[int, int], difficult: bool = False) -> torch.Tensor:
        """`(40, 5)` boxes of image `index` (original `size` = (width, height)) in crop pixels."""
        S = self.image_size
        width, height = size
        new_w, new_h, left, top = self._crop_geometry(width, height)
        boxes, classes = _parse_voc_xml(
            os.path.join(self.dataset_dir, "Annotations", self.ids[index] + ".xml"),
            self.class_to_idx,
            difficult=difficult,
        )
        boxes = torch.from_numpy(boxes)
        boxes[:, 0::2] = (boxes[:, 0::2] * (new_w / width) - left).clamp(0, S)
        boxes[:, 1::2] = (boxes[:, 1::2] * (new_h / height) - top).clamp(0, S)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_box_size) & (
            (boxes[:, 3] - boxes[:, 1]) >= self.min_box_size
        )
        gt = torch.cat([boxes, torch.from_numpy(classes)[:, None]], dim=1)[keep][:MAX_BOXES]
        gt_boxes = torch.full((MAX_BOXES, 5), -1.0)
        gt_boxes[: len(gt)] = gt
        return gt_boxes

    def _load_uint8(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Resized, centre-cropped `(3, S, S)` uint8 image and `(40, 5)` boxes."""
        from PIL import Image

        S = self.image_size
        image = Image.open(self._image_path(index)).convert("RGB")
        new_w, new_h, left, top = self._crop_geometry(*image.size)
        gt_boxes = self._load_boxes(index, image.size)
        image = image.resize((new_w, new_h), Image.BILINEAR).crop((left, top, left + S, top + S))
        array = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # (3, S, S)
        return array, gt_boxes

    def difficult_boxes(self, index: int) -> torch.Tensor:
        """
        The difficult objects of item `index` that `gt_boxes` leaves out, as
        `(40, 5)` rows `(x1, y1, x2, y2, class)` under the same crop, clamp,
        drop and padding rules. Evaluation ignores detections of them
        (`inference_with_detector(..., ignore_difficult=True)`), as the VOC
        devkit does.
        """
        from PIL import Image

        with Image.open(self._image_path(index)) as image:  # reads the header only
            size = image.size
        return self._load_boxes(index, size, difficult=True)

    @staticmethod
    def _normalize(image_uint8: torch.Tensor) -> torch.Tensor:
        image = image_uint8.float().div_(255)
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
        return (image - mean) / std

    def _cache_key(self) -> str:
        digest = hashlib.sha1()
        digest.update(f"{os.path.realpath(self.dataset_dir)}|{self.split}|{self.image_size}|"
                      f"{self.min_box_size}|{self.class_names}".encode())
        for image_id in self.ids:
            stat = os.stat(os.path.join(self.dataset_dir, "Annotations", image_id + ".xml"))
            digest.update(f"{image_id}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:12]

    def _load_or_build_cache(self, cache, cache_device):
        key = self._cache_key()
        if isinstance(cache, str):
            path = cache
        else:
            name = os.path.basename(os.path.normpath(self.dataset_dir))
            path = os.path.join(_HERE, "data", "cache", f"{name}_{self.split}_{self.image_size}_{key}.pt")
        data = None
        if os.path.exists(path):
            data = torch.load(path, map_location="cpu")
            if data.get("key") != key:
                data = None
        if data is None:
            images = torch.empty(len(self), 3, self.image_size, self.image_size, dtype=torch.uint8)
            boxes = torch.empty(len(self), MAX_BOXES, 5)
            for i in range(len(self)):
                images[i], boxes[i] = self._load_uint8(i)
            data = {"key": key, "images": images, "gt_boxes": boxes}
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            torch.save(data, path + ".tmp")
            os.replace(path + ".tmp", path)
        device = _auto_device(cache_device)
        self.cache_path = path
        return {"images": data["images"].to(device), "gt_boxes": data["gt_boxes"].to(device)}

    def __getitem__(self, index: int):
        if self._cache is not None:
            image, gt_boxes = self._cache["images"][index], self._cache["gt_boxes"][index]
        else:
            image, gt_boxes = self._load_uint8(index)
        return self._image_path(index), self._normalize(image), gt_boxes.clone()


##############################################################################
# Training
##############################################################################


def _infinite(loader):
    while True:
        for batch in loader:
            yield batch


def train_detector(
    detector: torch.nn.Module,
    train_loader,
    learning_rate: float = 5e-3,
    weight_decay: float = 1e-4,
    max_iters: int = 5000,
    log_period: int = 20,
    device=None,
    amp: bool = False,
    checkpoint_path: Optional[str] = None,
    checkpoint_period: int = 500,
    seed: Optional[int] = 0,
    warmup_iters: int = 0,
    grad_clip: Optional[float] = None,
    progress: bool = True,
    optimizer: str = "sgd",
    schedule: str = "step",
) -> Dict[str, List[float]]:
    """
    Train a detector as in the course: SGD (momentum 0.9) with the learning
    rate divided by 10 at 60% and 90% of `max_iters` (the defaults), or
    AdamW and a cosine schedule (what the demo uses for short runs).

    Args:
        detector: a module whose `forward(images, gt_boxes)` returns a dict
            of scalar losses in training mode.
        train_loader: yields `(image_paths, images (B, 3, S, S), gt_boxes
            (B, 40, 5))`; it is cycled for `max_iters` iterations.
        learning_rate, weight_decay: SGD hyperparameters.
        max_iters: total iterations (also the end of the LR schedule).
        log_period: iterations between updates of the progress bar.
        device: "cuda", "cpu", ...; None picks CUDA when available.
        amp: mixed precision (float16 autocast and gradient scaling), CUDA only.
        checkpoint_path: if given, save model/optimizer/scheduler/history
            there every `checkpoint_period` iterations and at the end; if the
            file exists, training resumes from it (the data order restarts).
        seed: passed to `reset_seed` before training (None: leave RNGs alone).
        warmup_iters: linear learning-rate warm-up iterations (0: none).
        grad_clip: clip the gradient norm to this value (None: no clipping).
        progress: show a tqdm progress bar with the latest losses.
        optimizer: "sgd" (momentum 0.9) or "adamw" (betas 0.9, 0.999).
        schedule: "step" (divide by 10 at 60% and 90% of `max_iters`) or
            "cosine" (from `learning_rate` down to 0 at `max_iters`); the
            warm-up applies to both.

    Returns:
        history: dict of lists, one entry per iteration: "iter", "loss"
        (total), one key per loss of the detector (e.g. "loss_rpn_obj",
        "loss_rpn_box", "loss_cls") and "lr".

    Raises:
        FloatingPointError: when the loss becomes NaN or infinite.
    """
    from tqdm.auto import tqdm

    device = _auto_device(device)
    if seed is not None:
        reset_seed(seed)
    use_amp = bool(amp) and device.type == "cuda"
    if amp and not use_amp:
        print("train_detector: amp=True needs a CUDA device; training in float32.")
    detector.to(device)
    params = [p for p in detector.parameters() if p.requires_grad]
    if optimizer not in ("sgd", "adamw") or schedule not in ("step", "cosine"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', schedule 'step' or 'cosine'; "
                         f"got {optimizer!r}, {schedule!r}")
    if optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    milestones = [int(0.6 * max_iters), int(0.9 * max_iters)]

    def lr_factor(it: int) -> float:
        if schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * min(it / max(max_iters, 1), 1.0)))
        else:
            factor = 0.1 ** sum(it >= m for m in milestones)
        if warmup_iters > 0 and it < warmup_iters:
            factor *= (it + 1) / warmup_iters
        return factor

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: Dict[str, List[float]] = {"iter": [], "loss": [], "lr": []}
    start_iter = 0
    if checkpoint_path and os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        detector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        start_iter = state["iter"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        print(f"Resumed from {checkpoint_path} at iteration {start_iter}.")

    def save(it: int):
        if checkpoint_path:
            os.makedirs(os.path.dirname(os.path.abspath(checkpoint_path)), exist_ok=True)
            state = {"model": detector.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "history": history, "iter": it,
                     "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}}
            torch.save(state, checkpoint_path + ".tmp")
            os.replace(checkpoint_path + ".tmp", checkpoint_path)

    detector.train()
    batches = _infinite(train_loader)
    bar = tqdm(range(start_iter, max_iters), initial=start_iter, total=max_iters,
               disable=not progress, desc="train", dynamic_ncols=True)
    for it in bar:
        _, images, gt_boxes = next(batches)
        images = images.to(device, non_blocking=True)
        gt_boxes = gt_boxes.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            losses = detector(images, gt_boxes)
        total = sum(losses.values())
        if not torch.isfinite(total):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise FloatingPointError(
                f"Loss is {total.item()} at iteration {it} ({values}). Training stopped: "
                "lower the learning rate, add warm-up (warmup_iters) or gradient clipping "
                "(grad_clip), and check that no GT box has zero width or height."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
        history["iter"].append(it)
        history["loss"].append(total.item())
        history["lr"].append(optimizer.param_groups[0]["lr"])
        for key, value in losses.items():
            history.setdefault(key, []).append(value.item())
        scheduler.step()
        if it % log_period == 0 or it == max_iters - 1:
            bar.set_postfix({k.replace("loss_", ""): f"{history[k][-1]:.3f}"
                             for k in ["loss", *losses]}, refresh=False)
            if not progress:
                print(f"[iter {it}/{max_iters}] " + " ".join(
                    f"{k}: {history[k][-1]:.3f}" for k in ["loss", *losses]), flush=True)
        if checkpoint_path and (it + 1) % checkpoint_period == 0:
            save(it + 1)
    bar.close()
    if start_iter < max_iters:
        save(max_iters)
    return history


##############################################################################
# Evaluation
##############################################################################


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
    device = _auto_device(device)
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
        index_of = {base._image_path(i): i for i in range(len(base))}

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


##############################################################################
# Pictures
##############################################################################

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


def _add_box(ax, box, colour, linewidth=2.0, linestyle="-", label=None, alpha=1.0,
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
            _add_box(ax, box, PALETTE["gt"], linewidth=1.5, linestyle="--",
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
            _add_box(ax, box, colour, label=label or None)
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
        _add_box(ax, box, colour, linewidth=1.2, halo=False)
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
    the kit's `PALETTE`: foreground (class >= 0), neutral (-1e8), background
    (-1), and the GT boxes thick. All foreground anchors are drawn; of the
    neutral and background ones only `max_neutral` / `max_background`,
    picked at random, to keep the picture readable.

    Args:
        image: see `detection_visualizer`.
        anchors: `(N, 4)` anchors; matched_gt_boxes: `(N, 5)`.
        gt_boxes: `(M, 5)` GT boxes of the image (rows of -1 skipped).

    Returns:
        matplotlib Figure; Rectangle patches carry the edge colours of
        `PALETTE` (foreground, neutral, background, gt), and the legend gives
        the full counts.
    """
    fig, ax = _new_axes(ax)
    anchors = torch.as_tensor(anchors).detach().cpu().reshape(-1, 4)
    matched = torch.as_tensor(matched_gt_boxes).detach().cpu().reshape(-1, 5)
    fg = (matched[:, 4] >= 0).nonzero().flatten()
    neutral = (matched[:, 4] == -1e8).nonzero().flatten()
    bg = (matched[:, 4] == -1).nonzero().flatten()
    generator = torch.Generator().manual_seed(seed)
    bg_drawn = bg[torch.randperm(len(bg), generator=generator)[:max_background]]
    neutral_drawn = neutral[torch.randperm(len(neutral), generator=generator)[:max_neutral]]
    _show(ax, image, normalized, title)
    if gt_boxes is not None:
        for box in torch.as_tensor(gt_boxes).detach().cpu().reshape(-1, 5).tolist():
            if box[4] >= 0:
                _add_box(ax, box, PALETTE["gt"], linewidth=3.0)
    for idx, colour, width in ((bg_drawn, PALETTE["background"], 1.0),
                               (neutral_drawn, PALETTE["neutral"], 1.0),
                               (fg, PALETTE["foreground"], 1.8)):
        for box in anchors[idx].tolist():
            _add_box(ax, box, colour, linewidth=width, halo=False)
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
                    _add_box(ax, box, PALETTE["gt"], linewidth=2.5, linestyle="--")
        for i, box in enumerate(boxes.tolist()):
            _add_box(ax, box, _COLOURS[i % len(_COLOURS)], linewidth=1.2)
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
