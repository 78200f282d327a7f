"""
Tests of the VOC-layout loader, the embedded shapes generator and the photos.

Expected boxes are computed by hand in the comments (resize the shorter side
to S, centre-crop, VOC's 1-based `xmin..xmax` -> `[xmin - 1, xmax]`).
"""
import hashlib
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import a4_helper as helper
import kit.data as kit_data
from kit.data import _load_generator

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def _write_voc(root, images, classes=None, split="train"):
    """images: {id: (PIL image, [(name, xmin, ymin, xmax, ymax, difficult), ...])}"""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, (image, objects) in images.items():
        image.save(os.path.join(root, "JPEGImages", image_id + ".jpg"), quality=100)
        xml = [f"<annotation><size><width>{image.width}</width><height>{image.height}</height>"
               "<depth>3</depth></size>"]
        for name, x1, y1, x2, y2, difficult in objects:
            xml.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
                       f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
                       "</bndbox></object>")
        xml.append("</annotation>")
        with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
            f.write("".join(xml))
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("\n".join(images) + "\n")
    if classes is not None:
        with open(os.path.join(root, "classes.txt"), "w") as f:
            f.write("\n".join(classes) + "\n")


@pytest.fixture
def tiny_voc(tmp_path):
    """Two images: a landscape 40x20 and a portrait 20x30, S = 10."""
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # white band = exactly the centre crop after resizing
    tall = np.full((30, 20, 3), 128, np.uint8)
    images = {
        "wide": (Image.fromarray(wide), [
            # [0, 0, 8, 20] -> x0.5 -> [0, 0, 4, 10] -> x - 5 -> [-5, 0, -1, 10]: out, dropped
            ("dog", 1, 1, 8, 20, 0),
            # [10, 2, 30, 12] -> [5, 1, 15, 6] -> [0, 1, 10, 6]
            ("cat", 11, 3, 30, 12, 0),
            # difficult: left out
            ("cat", 11, 3, 30, 12, 1),
            # [20, 4, 40, 18] -> [10, 2, 20, 9] -> [5, 2, 15, 9] -> clamp [5, 2, 10, 9]
            ("dog", 21, 5, 40, 18, 0),
        ]),
        "tall": (Image.fromarray(tall), [
            # 20x30 -> 10x15, crop top = round(2.5) = 2
            # [2, 0, 10, 30] -> [1, 0, 5, 15] -> y - 2 -> [1, -2, 5, 13] -> clamp [1, 0, 5, 10]
            ("dog", 3, 1, 10, 30, 0),
            # [0, 26, 20, 30] -> [0, 13, 10, 15] -> [0, 11, 10, 13] -> clamp: zero height, dropped
            ("cat", 1, 27, 20, 30, 0),
        ]),
    }
    root = str(tmp_path / "tiny")
    _write_voc(root, images, classes=["cat", "dog"])
    return root


def test_crop_clamp_drop_difficult_padding(tiny_voc):
    ds = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert len(ds) == 2

    path, image, gt = ds[0]
    assert path.endswith("wide.jpg")
    assert image.shape == (3, 10, 10) and image.dtype == torch.float32
    assert gt.shape == (40, 5)
    expected = torch.tensor([[0.0, 1, 10, 6, 0], [5, 2, 10, 9, 1]])
    torch.testing.assert_close(gt[:2], expected)
    assert (gt[2:] == -1).all()
    # The crop is the white band: every pixel is white after denormalizing.
    pixels = image * STD + MEAN
    assert pixels[:, :, 1:-1].min() > 0.95

    _, image, gt = ds[1]
    torch.testing.assert_close(gt[:1], torch.tensor([[1.0, 0, 5, 10, 1]]))
    assert (gt[1:] == -1).all()
    torch.testing.assert_close(image * STD + MEAN, torch.full((3, 10, 10), 128 / 255),
                               atol=2 / 255, rtol=0)


def test_difficult_boxes(tiny_voc):
    ds = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10)
    # The difficult cat of "wide" has the same box as its plain cat: [0, 1, 10, 6].
    difficult = ds.difficult_boxes(0)
    assert difficult.shape == (40, 5)
    torch.testing.assert_close(difficult[:1], torch.tensor([[0.0, 1, 10, 6, 0]]))
    assert (difficult[1:] == -1).all()
    assert (ds.difficult_boxes(1) == -1).all()


def test_boxes_never_degenerate(tiny_voc):
    ds = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10, min_box_size=4.5)
    _, _, gt = ds[0]
    # [0, 1, 10, 6] is 5 high, [5, 2, 10, 9] only 5 wide: both kept at 4.5 ...
    assert (gt[:, 4] >= 0).sum() == 2
    ds = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10, min_box_size=5.5)
    assert (ds[0][2][:, 4] >= 0).sum() == 0  # ... and both dropped at 5.5
    with pytest.raises(ValueError, match="min_box_size"):
        helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10, min_box_size=0)


def test_default_classes_unknown_class_and_missing_split(tmp_path, tiny_voc):
    os.remove(os.path.join(tiny_voc, "classes.txt"))
    ds = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10)
    assert ds.num_classes == 20 and ds.class_names[7] == "cat" and ds.class_names[11] == "dog"
    assert ds[1][2][0, 4] == 11

    ds = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10, class_names=["cat"])
    with pytest.raises(ValueError, match="'dog'"):
        ds[0]

    with pytest.raises(FileNotFoundError, match="ensure_shapes_dataset"):
        helper.VOC2007DetectionTiny(str(tmp_path / "nothing"), "train")


def test_relative_paths_are_relative_to_the_kit_folder(tmp_path, monkeypatch):
    kit = tmp_path / "kit"
    root = kit / "data" / "VOCdevkit" / "VOC2007"
    _write_voc(str(root), {"a": (Image.new("RGB", (8, 8)), [("person", 1, 1, 4, 4, 0)])}, split="val")
    monkeypatch.setattr(kit_data, "KIT_ROOT", str(kit))
    monkeypatch.chdir(tmp_path)  # another folder, as a notebook in notebooks/
    for name in ("data", "data/VOCdevkit", "data/VOCdevkit/VOC2007"):
        assert helper.VOC2007DetectionTiny(name, "val", image_size=8).dataset_dir == str(root), name
    assert helper.default_dataset_dir("data") == (str(root), "voc2007")
    # The VOCdevkit folder itself: a download would go to data/VOCdevkit, not VOCdevkit/VOCdevkit.
    with pytest.raises(FileNotFoundError) as error:
        helper.VOC2007DetectionTiny("data/VOCdevkit", "train")
    assert f"goes to {str(root)!r}" in str(error.value)
    assert f"VOC2007DetectionTiny({str(kit / 'data')!r}" in str(error.value)


def test_voc_devkit_parent_folder_is_found(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    _write_voc(str(root), {"a": (Image.new("RGB", (8, 8)), [("person", 1, 1, 4, 4, 0)])}, split="val")
    ds = helper.VOC2007DetectionTiny(str(tmp_path), "val", image_size=8)
    assert ds.dataset_dir == str(root)
    torch.testing.assert_close(ds[0][2][0], torch.tensor([0.0, 0, 4, 4, 14]))
    assert helper.default_dataset_dir(str(tmp_path)) == (str(root), "voc2007")


def test_cache_serves_the_same_items(tiny_voc, tmp_path):
    plain = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10)
    cache_file = str(tmp_path / "cache" / "tiny.pt")
    cached = helper.VOC2007DetectionTiny(tiny_voc, "train", image_size=10, cache=cache_file,
                                         cache_device="cpu")
    assert os.path.exists(cache_file)
    assert torch.load(cache_file)["images"].dtype == torch.uint8
    for i in range(len(plain)):
        for a, b in zip(plain[i], cached[i]):
            if isinstance(a, str):
                assert a == b
            else:
                torch.testing.assert_close(a, b, atol=0, rtol=0)
    # Served items are copies: changing one does not change the cache.
    cached[0][2].fill_(7)
    assert cached[0][2][0, 0] == 0


def _digest(folder):
    h = hashlib.sha256()
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        for name in sorted(os.listdir(os.path.join(folder, sub))):
            with open(os.path.join(folder, sub, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_generator_is_deterministic(tmp_path):
    generator = _load_generator()
    a = generator.generate(str(tmp_path / "a"), num_train=5, num_val=2, seed=3, workers=1)
    b = generator.generate(str(tmp_path / "b"), num_train=5, num_val=2, seed=3, workers=2)
    c = generator.generate(str(tmp_path / "c"), num_train=5, num_val=2, seed=4, workers=1)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert generator.is_complete(a, 5, 2, 3) and not generator.is_complete(a, 5, 2, 4)


def test_shapes_dataset_properties(tmp_path):
    root = str(tmp_path)
    out = helper.ensure_shapes_dataset(root, num_train=40, num_val=4, seed=0, workers=1)
    stamp = os.path.getmtime(os.path.join(out, "COMPLETE"))
    assert helper.ensure_shapes_dataset(root, num_train=40, num_val=4, seed=0) == out
    assert os.path.getmtime(os.path.join(out, "COMPLETE")) == stamp  # not built twice

    sizes, aspects, counts, difficult, image_sizes = [], [], [], 0, set()
    for name in sorted(os.listdir(os.path.join(out, "Annotations"))):
        root_el = ET.parse(os.path.join(out, "Annotations", name)).getroot()
        w, h = (int(root_el.find("size").find(k).text) for k in ("width", "height"))
        image_sizes.add((w, h))
        objects = root_el.findall("object")
        counts.append(len(objects))
        for obj in objects:
            bb = [int(obj.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= bb[0] <= bb[2] <= w and 1 <= bb[1] <= bb[3] <= h
            bw, bh = bb[2] - bb[0] + 1, bb[3] - bb[1] + 1
            difficult += int(obj.find("difficult").text)
            sizes.append(np.sqrt(bw * bh) / min(w, h))
            aspects.append(bw / bh)
    assert 1 <= min(counts) and max(counts) <= 8 and max(counts) >= 6
    assert difficult > 0
    assert min(sizes) < 0.15 and max(sizes) > 0.5
    assert min(aspects) < 0.5 and max(aspects) > 2
    assert any(w != h for w, h in image_sizes) and len(image_sizes) > 10

    ds = helper.VOC2007DetectionTiny(out, "train", image_size=64)
    assert ds.class_names == ["circle", "square", "triangle", "diamond", "star", "cross"]
    for i in range(0, 40, 5):
        _, image, gt = ds[i]
        valid = gt[gt[:, 4] >= 0]
        assert image.shape == (3, 64, 64)
        assert (valid[:, 2] - valid[:, 0] >= 1).all() and (valid[:, 3] - valid[:, 1] >= 1).all()
        assert valid[:, :4].min() >= 0 and valid[:, :4].max() <= 64


def test_larger_train_split_gets_its_own_folder_and_extends_the_default(tmp_path):
    # The long schedule trains on a larger generated train split; it must not
    # replace the default folder, and its val split must be the same images.
    root = str(tmp_path)
    small = helper.ensure_shapes_dataset(root, num_train=3, num_val=2, seed=0, workers=1)
    large = helper.ensure_shapes_dataset(root, num_train=6, num_val=2, seed=0, workers=1)
    assert os.path.basename(small) == "shapes-3-2" and os.path.basename(large) == "shapes-6-2"
    assert os.path.exists(os.path.join(small, "COMPLETE"))  # not replaced
    for name in ["train_00000", "train_00002", "val_00001"]:
        for sub, ext in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
            with open(os.path.join(small, sub, name + ext), "rb") as a, \
                    open(os.path.join(large, sub, name + ext), "rb") as b:
                assert a.read() == b.read(), (sub, name)
    with open(os.path.join(large, "ImageSets", "Main", "train.txt")) as f:
        assert len(f.read().split()) == 6


def test_photos():
    ds = helper.VOC2007DetectionTiny(helper.photos_dataset_dir(), split="photos", image_size=224)
    names = [ds.class_names[int(gt[0, 4])] for _, _, gt in (ds[i] for i in range(len(ds)))]
    assert dict(zip(ds.ids, names)) == {
        "astronaut": "person", "camera": "person", "chelsea": "cat",
        "stereo_motorcycle": "motorbike", "horse": "horse",
    }
    # chelsea is 451x300: -> 336x224, crop left 56; its box [0, 0, 400, 300]
    # -> [0, 0, 298.7, 224] -> [-56, 0, 242.7, 224] -> clamp [0, 0, 224, 224].
    _, image, gt = ds[ds.ids.index("chelsea")]
    torch.testing.assert_close(gt[0], torch.tensor([0.0, 0, 224, 224, 7]))
    # The difficult bicycle next to the motorbike is left out.
    _, _, gt = ds[ds.ids.index("stereo_motorcycle")]
    assert (gt[:, 4] >= 0).sum() == 1


def test_denormalize_inverts_normalization():
    x = torch.rand(3, 5, 5)
    torch.testing.assert_close(helper.denormalize((x - MEAN) / STD), x)
    assert helper.denormalize(torch.full((3, 2, 2), 50.0)).max() == 1
