"""
`inference_with_detector` on hand-made predictions with hand-computed AP.

COCO-style AP samples the precision envelope at 101 recall points
0, 0.01, ..., 1 (pycocotools backend of torchmetrics).
"""
import os

import pytest
import torch
from torch import nn

import a4_helper as helper
from kit.evaluation import _detections_on_difficult



class FakeDetector(nn.Module):
    """Returns preset `(boxes, classes, scores)` for the i-th call."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.calls = 0
        self.thresholds = []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images, test_score_thresh=None, test_nms_thresh=None):
        assert images.shape[0] == 1
        self.thresholds.append((test_score_thresh, test_nms_thresh))
        boxes, classes, scores = self.outputs[self.calls]
        self.calls += 1
        return torch.tensor(boxes).reshape(-1, 4), torch.tensor(classes), torch.tensor(scores)


def _gt(*rows):
    gt = torch.full((40, 5), -1.0)
    if rows:
        gt[: len(rows)] = torch.tensor(rows, dtype=torch.float32)
    return gt


def _loader(gts):
    images = torch.zeros(len(gts), 3, 32, 32)
    items = [(f"img{i}.jpg", images[i], gt) for i, gt in enumerate(gts)]
    return torch.utils.data.DataLoader(items, batch_size=2)


def test_known_map():
    # Class 0 ("a"): GT boxes in images 0 and 1. Predictions ranked by score:
    #   0.9 TP (image 0), 0.8 FP (image 0, IoU 0 with GT), 0.7 TP (image 1)
    #   -> precision/recall points (1, 0.5), (1/2, 0.5), (2/3, 1).
    #   Envelope: 1 for recall <= 0.5 (51 of the 101 points), 2/3 above (50).
    #   AP = (51 * 1 + 50 * 2/3) / 101 = 0.834983...
    # Class 1 ("b"): one GT box in image 2, which gets no prediction -> AP 0.
    # Class 2 ("c"): no GT, no prediction -> not part of the mean.
    # A box with IoU 0.55 >= 0.5 counts as a hit (image 1: GT [0, 0, 10, 10],
    # prediction [0, 0, 10, 5.5]: IoU 55 / 100).
    gts = [_gt([0, 0, 10, 10, 0]), _gt([0, 0, 10, 10, 0]), _gt([5, 5, 20, 20, 1]), _gt()]
    outputs = [
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], [0.9, 0.8]),
        ([[0, 0, 10, 5.5]], [0], [0.7]),
        ([], [], []),
        ([], [], []),
    ]
    detector = FakeDetector(outputs)
    result = helper.inference_with_detector(
        detector, _loader(gts), ["a", "b", "c"], score_thresh=0.25, nms_thresh=0.4,
        device="cpu", progress=False,
    )
    ap_a = (51 + 50 * 2 / 3) / 101
    assert result["per_class"].keys() == {"a", "b"}
    assert result["per_class"]["a"] == pytest.approx(ap_a, abs=1e-6)
    assert result["per_class"]["b"] == 0
    assert result["map50"] == pytest.approx(ap_a / 2, abs=1e-6)
    assert result["num_images"] == 4 and detector.calls == 4
    assert detector.thresholds == [(0.25, 0.4)] * 4
    assert [len(p["boxes"]) for p in result["predictions"]] == [2, 1, 0, 0]


def test_low_iou_is_a_miss_and_perfect_is_one(tmp_path):
    gts = [_gt([0, 0, 10, 10, 1], [10, 10, 30, 30, 0])]
    # IoU 45 / 100 < 0.5 for class 1; class 0 exact.
    outputs = [([[0, 0, 10, 4.5], [10, 10, 30, 30]], [1, 0], [0.9, 0.6])]
    result = helper.inference_with_detector(
        FakeDetector(outputs), _loader(gts), {0: "a", 1: "b"}, 0.1, 0.5, device="cpu",
        output_dir=str(tmp_path), progress=False,
    )
    assert result["per_class"] == {"a": 1.0, "b": 0.0}
    assert result["map50"] == pytest.approx(0.5)
    with open(os.path.join(tmp_path, "detection-results", "img0.txt")) as f:
        assert f.read().split("\n")[0].split() == ["b", "0.900000", "0.00", "0.00", "10.00", "4.50"]
    with open(os.path.join(tmp_path, "ground-truth", "img0.txt")) as f:
        assert f.read().split() == ["b", "0.00", "0.00", "10.00", "10.00",
                                    "a", "10.00", "10.00", "30.00", "30.00"]


def test_max_images_and_table():
    gts = [_gt([0, 0, 10, 10, 0])] * 3
    outputs = [([[0, 0, 10, 10]], [0], [0.9])] * 3
    detector = FakeDetector(outputs)
    result = helper.inference_with_detector(detector, _loader(gts), ["a", "b"], 0.1, 0.5,
                                            device="cpu", max_images=2, progress=False)
    assert result["num_images"] == 2 and detector.calls == 2
    table = helper.format_ap_table(result, ["a", "b"])
    assert "a" in table and "n/a" in table and "1.000" in table


def test_detections_on_difficult_hand_made():
    gt = torch.tensor([[0.0, 0, 10, 10, 0]])
    difficult = torch.tensor([[20.0, 20, 30, 30, 0], [0, 0, 10, 8, 0]])
    boxes = torch.tensor([
        [20.0, 20, 30, 30],  # exactly the first difficult box: ignored
        [20, 20, 30, 30],    # same box, other class: no GT of class 1, a false positive
        [20, 20, 30, 24],    # IoU 40 / 100 with the difficult box: a false positive
        [20, 20, 30, 25],    # IoU 50 / 100: ignored
        [0, 0, 10, 10],      # IoU 1 with the GT, 0.8 with the second difficult box: a hit
        [0, 0, 10, 8],       # IoU 0.8 with the GT, 1 with the second difficult box: ignored
    ])
    classes = torch.tensor([0, 1, 0, 0, 0, 0])
    ignored = _detections_on_difficult(boxes, classes, gt, difficult)
    assert ignored.tolist() == [True, False, False, True, False, True]
    assert not _detections_on_difficult(boxes, classes, gt, torch.empty(0, 5)).any()


class DatasetWithDifficult(torch.utils.data.Dataset):
    """Items `(path, image, gt)` plus `difficult_boxes`, like VOC2007DetectionTiny."""

    def __init__(self, gts, difficult):
        self.gts, self.difficult = gts, difficult

    def __len__(self):
        return len(self.gts)

    def image_path(self, index):
        return f"img{index}.jpg"

    def __getitem__(self, index):
        return self.image_path(index), torch.zeros(3, 32, 32), self.gts[index]

    def difficult_boxes(self, index):
        return self.difficult[index]


@pytest.mark.parametrize("ignore, expected_ap", [(True, 1.0), (False, 0.5)])
def test_detections_of_difficult_objects_are_ignored(tmp_path, ignore, expected_ap):
    # One GT and one difficult object of class 0. Ranked by score: 0.9 on the
    # difficult object, 0.8 on the GT. Ignoring the first: AP 1. Counting it
    # as a false positive: precision 1/2 at recall 1, the whole envelope is
    # 1/2 -> AP 0.5.
    dataset = DatasetWithDifficult([_gt([0, 0, 10, 10, 0])], [_gt([20, 20, 30, 30, 0])])
    outputs = [([[20, 20, 30, 30], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    result = helper.inference_with_detector(
        FakeDetector(outputs), torch.utils.data.DataLoader(dataset, batch_size=2), ["a"], 0.1,
        0.5, device="cpu", progress=False, ignore_difficult=ignore, output_dir=str(tmp_path),
    )
    assert result["per_class"]["a"] == pytest.approx(expected_ap, abs=1e-6)
    assert result["num_ignored"] == int(ignore)
    assert result["predictions"][0]["ignored"].tolist() == [ignore, False]
    with open(os.path.join(tmp_path, "ground-truth", "img0.txt")) as f:
        lines = f.read().splitlines()
    assert lines == (["a 0.00 0.00 10.00 10.00", "a 20.00 20.00 30.00 30.00 difficult"] if ignore
                     else ["a 0.00 0.00 10.00 10.00"])


def test_difficult_objects_are_ignored_through_a_subset():
    # Items 1 and 2 of three, through Subset: the difficult object of item 2
    # is found by its image path in the dataset under the Subset.
    gts = [_gt([0, 0, 10, 10, 0]), _gt([0, 0, 10, 10, 0]), _gt([0, 0, 10, 10, 0])]
    difficult = [_gt(), _gt(), _gt([20, 20, 30, 30, 0])]
    subset = torch.utils.data.Subset(DatasetWithDifficult(gts, difficult), [1, 2])
    outputs = [([[0, 0, 10, 10]], [0], [0.8]), ([[20, 20, 30, 30], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    result = helper.inference_with_detector(
        FakeDetector(outputs), torch.utils.data.DataLoader(subset, batch_size=1), ["a"], 0.1, 0.5,
        device="cpu", progress=False)
    assert result["num_ignored"] == 1 and result["map50"] == pytest.approx(1.0, abs=1e-6)
