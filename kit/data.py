"""
Data: the embedded shapes dataset, the photographs, PASCAL VOC 2007 (one
`VOC2007DetectionTiny` class reads all three), seeds and devices.

Relative paths follow one rule: they are relative to the kit's folder
(`KIT_ROOT`, the one holding `a4_helper.py`), whatever the current folder.
"""
import hashlib
import importlib.util
import os
import random
import sys
import time
import xml.etree.ElementTree as ET
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

# The kit's folder (the one holding a4_helper.py and data/).
KIT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_BOXES = 40
# Value of every field of the rows that pad `gt_boxes` to MAX_BOXES rows: a
# class of -1 marks "no box" (`rcnn_match_anchors_to_gt` drops such rows). The
# dataset does not import two_stage_detector.py for it: the data must load
# whatever state the student's file is in.
GT_PADDING = -1.0


def reset_seed(number: int = 0):
    """Seed Python, NumPy and PyTorch (all devices) for reproducible runs."""
    random.seed(number)
    np.random.seed(number)
    torch.manual_seed(number)


def auto_device(device=None) -> torch.device:
    """`device` as a `torch.device`; by default CUDA when there is one, else the CPU."""
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
    return root if os.path.isabs(root) else os.path.join(KIT_ROOT, root)


def _load_generator():
    path = os.path.join(KIT_ROOT, "data", "make_shapes.py")
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
            the rest is padded with rows of `GT_PADDING` (-1). At most 40
            boxes are kept.

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

    def image_path(self, index: int) -> str:
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
        gt_boxes = torch.full((MAX_BOXES, 5), GT_PADDING)
        gt_boxes[: len(gt)] = gt
        return gt_boxes

    def _load_uint8(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Resized, centre-cropped `(3, S, S)` uint8 image and `(40, 5)` boxes."""
        from PIL import Image

        S = self.image_size
        image = Image.open(self.image_path(index)).convert("RGB")
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

        with Image.open(self.image_path(index)) as image:  # reads the header only
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
            path = os.path.join(KIT_ROOT, "data", "cache", f"{name}_{self.split}_{self.image_size}_{key}.pt")
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
        device = auto_device(cache_device)
        self.cache_path = path
        return {"images": data["images"].to(device), "gt_boxes": data["gt_boxes"].to(device)}

    def __getitem__(self, index: int):
        if self._cache is not None:
            image, gt_boxes = self._cache["images"][index], self._cache["gt_boxes"][index]
        else:
            image, gt_boxes = self._load_uint8(index)
        return self.image_path(index), self._normalize(image), gt_boxes.clone()


