"""
Generate the embedded "shapes" detection dataset in the PASCAL VOC layout.

Every image is a crop of one of scikit-image's bundled photographs or
textures (they install with the package, nothing is downloaded) with 1 to 8
synthetic objects of six classes drawn on it: varied colour, size (about a
tenth of the image's short side up to most of it), aspect ratio (1:3 to 3:1),
overlap and partial occlusion. A box is the tight box of the object's visible
pixels (as in VOC); heavily occluded or tiny objects are flagged difficult.

The output is fixed by the seed: image `i` of a split draws all its random
numbers from `numpy.random.default_rng((seed, split_id, i))`, so the bytes do
not depend on the number of worker processes.

    python data/make_shapes.py --out data/shapes --train 2000 --val 500

Layout written under `--out`:

    JPEGImages/{id}.jpg, Annotations/{id}.xml,
    ImageSets/Main/{train,val}.txt, classes.txt, COMPLETE
"""
import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ["circle", "square", "triangle", "diamond", "star", "cross"]
SPLITS = {"train": 0, "val": 1}
VERSION = 1

# scikit-image data that ships with the package (no `pooch` download needed).
BACKGROUND_NAMES = [
    "astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass",
    "gravel", "coins", "moon", "page", "hubble_deep_field",
    "immunohistochemistry", "stereo_motorcycle", "text", "clock",
    "colorwheel", "retina", "cell",
]

_BACKGROUNDS: List[np.ndarray] = []


def _load_backgrounds() -> List[np.ndarray]:
    """Load the bundled scikit-image pictures once per process, as RGB uint8."""
    if not _BACKGROUNDS:
        from skimage import data as skdata

        for name in BACKGROUND_NAMES:
            image = getattr(skdata, name)()
            if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disp)
                image = image[0]
            image = np.asarray(image)
            if image.dtype != np.uint8:
                image = (255 * (image.astype(np.float64) / max(image.max(), 1))).astype(np.uint8)
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            _BACKGROUNDS.append(np.ascontiguousarray(image[:, :, :3]))
    return _BACKGROUNDS


def _shape_points(name: str, box: Tuple[float, float, float, float]) -> List[Tuple[float, float]]:
    """Polygon of a class inside `box` = (x1, y1, x2, y2); circles are ellipses."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    if name == "square":
        unit = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif name == "triangle":
        unit = [(0, -1), (1, 1), (-1, 1)]
    elif name == "diamond":
        unit = [(0, -1), (1, 0), (0, 1), (-1, 0)]
    elif name == "star":
        angles = np.pi * (np.arange(10) / 5.0) - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        unit = list(zip(radii * np.cos(angles), radii * np.sin(angles)))
        # Stretch the star so that it fills its box (its points span [-.95, 1]).
        ys = [p[1] for p in unit]
        lo, hi = min(ys), max(ys)
        unit = [(px, -1 + 2 * (py - lo) / (hi - lo)) for px, py in unit]
        xs = [p[0] for p in unit]
        xlo, xhi = min(xs), max(xs)
        unit = [(-1 + 2 * (px - xlo) / (xhi - xlo), py) for px, py in unit]
    elif name == "cross":
        t = 0.33
        unit = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1),
                (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
    else:
        raise ValueError(f"unknown shape {name}")
    return [(cx + px * w / 2, cy + py * h / 2) for px, py in unit]


def _draw(draw: ImageDraw.ImageDraw, name: str, box, fill, outline=None, width=0):
    if name == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_shape_points(name, box), fill=fill, outline=outline, width=width)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    backgrounds = _load_backgrounds()
    source = backgrounds[rng.integers(len(backgrounds))]
    sh, sw = source.shape[:2]
    # Random crop (at least a third of the source), resized to the output size.
    scale = rng.uniform(0.35, 1.0)
    ch = max(16, min(sh, int(sh * scale)))
    cw = max(16, min(sw, int(ch * width / height)))
    top = rng.integers(0, sh - ch + 1)
    left = rng.integers(0, sw - cw + 1)
    crop = source[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    image = Image.fromarray(np.ascontiguousarray(crop)).resize((width, height), Image.BILINEAR)
    array = np.asarray(image).astype(np.float32)
    # Colour jitter: per-channel gain and overall contrast.
    array = array * rng.uniform(0.7, 1.2, size=3) * rng.uniform(0.6, 1.0)
    array += rng.uniform(-30, 30)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _random_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    # Saturated colours most of the time, some greys.
    if rng.random() < 0.15:
        v = int(rng.integers(0, 256))
        return (v, v, v)
    hue = rng.random() * 6
    c = np.array([abs(hue - 3) - 1, 2 - abs(hue - 2), 2 - abs(hue - 4)]).clip(0, 1)
    value = rng.uniform(0.45, 1.0)
    sat = rng.uniform(0.6, 1.0)
    rgb = value * (1 - sat + sat * c)
    return tuple(int(255 * v) for v in rgb)


def make_image(seed: int, split: str, index: int) -> Tuple[Image.Image, List[Dict]]:
    """Draw one image and its objects (`name`, `box` in 0-based pixels, `difficult`)."""
    rng = np.random.default_rng((seed, SPLITS[split], index))
    short = int(rng.integers(192, 289))
    long = int(short * rng.uniform(1.0, 1.6))
    width, height = (long, short) if rng.random() < 0.6 else (short, long)
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    labels = Image.new("L", (width, height), 0)  # id of the top object per pixel
    label_draw = ImageDraw.Draw(labels)

    num_objects = int(rng.integers(1, 9))
    placed: List[Dict] = []
    for _ in range(num_objects):
        for _attempt in range(20):
            size = short * np.exp(rng.uniform(np.log(0.1), np.log(0.75)))
            aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3)))  # w / h
            w = min(size * np.sqrt(aspect), 0.95 * width)
            h = min(size / np.sqrt(aspect), 0.95 * height)
            x1 = rng.uniform(-0.1 * w, width - 0.9 * w)  # may stick out a little
            y1 = rng.uniform(-0.1 * h, height - 0.9 * h)
            box = (x1, y1, x1 + w, y1 + h)
            ok = True
            for other in placed:
                ox1, oy1, ox2, oy2 = other["draw_box"]
                iw = min(box[2], ox2) - max(box[0], ox1)
                ih = min(box[3], oy2) - max(box[1], oy1)
                inter = max(iw, 0) * max(ih, 0)
                if inter > 0.5 * (ox2 - ox1) * (oy2 - oy1) or inter > 0.5 * w * h:
                    ok = False
                    break
            if ok:
                break
        else:
            continue
        name = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
        fill = _random_colour(rng)
        outline, line_width = None, 0
        if rng.random() < 0.5:
            outline = tuple(255 - v for v in fill)
            line_width = int(rng.integers(1, 4))
        _draw(draw, name, box, fill, outline, line_width)
        object_id = len(placed) + 1
        _draw(label_draw, name, box, object_id, object_id, line_width)
        mask = Image.new("1", (width, height), 0)
        _draw(ImageDraw.Draw(mask), name, box, 1, 1, line_width)
        placed.append({"name": name, "draw_box": box, "area": int(np.count_nonzero(np.asarray(mask)))})

    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))

    label_array = np.asarray(labels)
    objects = []
    for object_id, obj in enumerate(placed, start=1):
        ys, xs = np.nonzero(label_array == object_id)
        if len(xs) < 4:  # fully hidden: not an object of this image any more
            continue
        visible = len(xs) / max(obj["area"], 1)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        tiny = max(box[2] - box[0], box[3] - box[1]) + 1 < 0.08 * short
        objects.append({"name": obj["name"], "box": box, "difficult": bool(visible < 0.5 or tiny)})
    return image, objects


def annotation_xml(image_id: str, width: int, height: int, objects: List[Dict]) -> str:
    """VOC XML; VOC boxes are 1-based inclusive pixel indices."""
    parts = [
        "<annotation>",
        "  <folder>shapes</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for obj in objects:
        x1, y1, x2, y2 = obj["box"]
        parts += [
            "  <object>",
            f"    <name>{obj['name']}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            f"    <difficult>{int(obj['difficult'])}</difficult>",
            f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _write_one(args) -> str:
    out, seed, split, index = args
    image_id = f"{split}_{index:05d}"
    image, objects = make_image(seed, split, index)
    image.save(os.path.join(out, "JPEGImages", image_id + ".jpg"), quality=90)
    with open(os.path.join(out, "Annotations", image_id + ".xml"), "w") as f:
        f.write(annotation_xml(image_id, image.width, image.height, objects))
    return image_id


def generate(out: str, num_train: int = 2000, num_val: int = 500, seed: int = 0,
             workers: int = 0) -> str:
    """
    Write the dataset into `out` (see the module docstring) and return `out`.

    Args:
        num_train, num_val: images per split.
        seed: fixes every byte of the output.
        workers: processes to use; 0 means one per CPU core (at most 8).
    """
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    complete = os.path.join(out, "COMPLETE")
    if os.path.exists(complete):
        os.remove(complete)
    jobs = [(out, seed, split, i) for split, n in (("train", num_train), ("val", num_val))
            for i in range(n)]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            ids = list(pool.map(_write_one, jobs, chunksize=32))
    else:
        ids = [_write_one(job) for job in jobs]
    for split in SPLITS:
        with open(os.path.join(out, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.writelines(i + "\n" for i in ids if i.startswith(split + "_"))
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.writelines(name + "\n" for name in CLASS_NAMES)
    with open(complete, "w") as f:
        json.dump({"version": VERSION, "seed": seed, "train": num_train, "val": num_val}, f)
    return out


def is_complete(out: str, num_train: int = 2000, num_val: int = 500, seed: int = 0) -> bool:
    """True when `out` holds a finished generation with these settings."""
    try:
        with open(os.path.join(out, "COMPLETE")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    return info == {"version": VERSION, "seed": seed, "train": num_train, "val": num_val}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "shapes"))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    args = parser.parse_args(argv)
    if not args.force and is_complete(args.out, args.train, args.val, args.seed):
        print(f"{args.out} is complete ({args.train} train + {args.val} val, seed {args.seed}).")
        return
    start = time.time()
    generate(args.out, args.train, args.val, args.seed, args.workers)
    print(f"Wrote {args.train} train + {args.val} val images to {args.out} "
          f"in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
