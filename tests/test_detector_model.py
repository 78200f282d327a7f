"""
The reference detector end to end: output shapes, losses at initialization
against their analytic values, inference outputs, and a short overfit run.
"""
import math
import re
from pathlib import Path

import pytest
import torch

from common import DetectorBackboneWithFPN
from two_stage_detector import RPN, FasterRCNN, RPNPredictionNetwork

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 5


def make_detector(fpn_channels=32, seed=0):
    torch.manual_seed(seed)
    backbone = DetectorBackboneWithFPN(fpn_channels, pretrained=False)
    rpn = RPN(fpn_channels, [fpn_channels], batch_size_per_image=32, pre_nms_topk=200, post_nms_topk=50)
    return FasterRCNN(backbone, rpn, [fpn_channels], NUM_CLASSES, batch_size_per_image=32)


def make_gt(batch_size, image_size, generator):
    """`(B, 6, 5)` GT boxes with 1..4 real boxes per image, padded with -1;
    sides from 40% to 90% of the image, so that default anchors match them."""
    gt = torch.full((batch_size, 6, 5), -1.0)
    for b in range(batch_size):
        n = 1 + b % 4
        wh = (0.4 + torch.rand(n, 2, generator=generator) * 0.5) * image_size
        xy = torch.rand(n, 2, generator=generator) * (image_size - wh)
        gt[b, :n, :2] = xy
        gt[b, :n, 2:4] = (xy + wh).clamp(max=image_size)
        gt[b, :n, 4] = torch.randint(0, NUM_CLASSES, (n,), generator=generator).float()
    return gt


@pytest.mark.parametrize(
    "image_size, expected", [(224, {"p3": 2352, "p4": 588, "p5": 147}), (160, {"p3": 1200, "p4": 300, "p5": 75})]
)
def test_prediction_network_shapes(image_size, expected):
    net = RPNPredictionNetwork(64, [64, 64], num_anchors=3)
    feats = {
        level: torch.randn(2, 64, image_size // stride, image_size // stride)
        for level, stride in {"p3": 8, "p4": 16, "p5": 32}.items()
    }
    obj, deltas = net(feats)
    for level, n in expected.items():
        assert obj[level].shape == (2, n)
        assert deltas[level].shape == (2, n, 4)


def test_prediction_network_layout_and_init():
    net = RPNPredictionNetwork(8, [16, 16], num_anchors=3)
    convs = [m for m in net.stem_rpn if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert net.pred_obj.out_channels == 3 and net.pred_box.out_channels == 12
    for conv in convs + [net.pred_obj, net.pred_box]:
        assert (conv.bias == 0).all()
        assert abs(conv.weight.std().item() - 0.01) < 0.003


def test_prediction_network_anchor_order():
    # Location-major, anchor-minor: row (h * W + w) * A + a of the output comes
    # from channel a (objectness) / channels 4a..4a+3 (deltas) at (h, w).
    net = RPNPredictionNetwork(4, [4], num_anchors=3)
    feats = {"p3": torch.randn(1, 4, 3, 5)}
    obj, deltas = net(feats)
    stem = net.stem_rpn(feats["p3"])
    raw_obj, raw_box = net.pred_obj(stem)[0], net.pred_box(stem)[0]
    h, w, a = 2, 3, 1
    row = (h * 5 + w) * 3 + a
    torch.testing.assert_close(obj["p3"][0, row], raw_obj[a, h, w])
    torch.testing.assert_close(deltas["p3"][0, row], raw_box[4 * a : 4 * a + 4, h, w])


@pytest.mark.parametrize("image_size, batch_size", [(224, 2), (160, 3), (256, 1)])
def test_training_losses_at_initialization(image_size, batch_size):
    detector = make_detector().train()
    g = torch.Generator().manual_seed(image_size)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    losses = detector(images, make_gt(batch_size, image_size, g))
    assert set(losses) == {"loss_rpn_obj", "loss_rpn_box", "loss_cls"}
    assert all(torch.isfinite(v) for v in losses.values())
    # Tiny initial weights: logits near 0, so sigmoid BCE = ln 2 and softmax
    # cross-entropy over C+1 classes = ln(C + 1).
    assert losses["loss_rpn_obj"].item() == pytest.approx(math.log(2), abs=0.02)
    assert losses["loss_cls"].item() == pytest.approx(math.log(NUM_CLASSES + 1), abs=0.05)
    sum(losses.values()).backward()
    assert detector.rpn.pred_net.pred_obj.weight.grad is not None



def test_second_stage_classifies_proposals_and_gt_boxes():
    """In training the classifier sees every RPN proposal and every GT box."""
    detector = make_detector().train()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 160, 160, generator=g)
    gt = make_gt(2, 160, g)
    with torch.no_grad():
        feats = detector.backbone(images)
        rpn_out = detector.rpn(feats, detector.backbone.fpn_strides, gt)
    num_proposals = sum(len(p) for per_image in rpn_out["proposals"].values() for p in per_image)
    rows = []
    hook = detector.cls_pred.register_forward_hook(lambda m, inp, out: rows.append(len(out)))
    try:
        detector(images, gt)
    finally:
        hook.remove()
    assert rows == [num_proposals + int((gt[:, :, 4] != -1).sum())]



def test_sampling_and_matching_settings_reach_the_losses(monkeypatch):
    """The constructors' fg_fraction and proposal_iou_thresholds are the ones
    used, and the defaults are the course's (RPN 0.5; second stage 0.25 and
    IoU 0.5)."""
    import two_stage_detector as tsd

    fractions, thresholds = [], []
    sample, match = tsd.sample_rpn_training, tsd.rcnn_match_anchors_to_gt

    def record_sample(gt_boxes, num_samples, fg_fraction):
        fractions.append(fg_fraction)
        return sample(gt_boxes, num_samples, fg_fraction)

    def record_match(anchor_boxes, gt_boxes, iou_thresholds):
        thresholds.append(tuple(iou_thresholds))
        return match(anchor_boxes, gt_boxes, iou_thresholds)

    monkeypatch.setattr(tsd, "sample_rpn_training", record_sample)
    monkeypatch.setattr(tsd, "rcnn_match_anchors_to_gt", record_match)
    g = torch.Generator().manual_seed(2)
    images, gt = torch.randn(1, 3, 160, 160, generator=g), make_gt(1, 160, g)
    make_detector().train()(images, gt)
    assert fractions == [0.5, 0.25] and thresholds == [(0.3, 0.6), (0.5, 0.5)]

    fractions.clear(), thresholds.clear()
    torch.manual_seed(0)
    backbone = DetectorBackboneWithFPN(16, pretrained=False)
    rpn = RPN(16, [16], batch_size_per_image=8, anchor_iou_thresholds=(0.2, 0.7), fg_fraction=0.4)
    detector = FasterRCNN(backbone, rpn, [16], NUM_CLASSES, batch_size_per_image=8, fg_fraction=0.1,
                          proposal_iou_thresholds=(0.4, 0.6))
    detector.train()(images, gt)
    assert fractions == [0.4, 0.1] and thresholds == [(0.2, 0.7), (0.4, 0.6)]


@pytest.mark.parametrize("image_size", [224, 160])
def test_inference_outputs(image_size):
    detector = make_detector().eval()
    image = torch.randn(1, 3, image_size, image_size)
    with torch.no_grad():
        boxes, classes, scores = detector(image, test_score_thresh=0.0, test_nms_thresh=0.5)
    assert boxes.shape[0] == classes.shape[0] == scores.shape[0] > 0
    assert boxes.shape[1] == 4
    assert (boxes >= 0).all() and (boxes <= image_size).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert classes.min() >= 0 and classes.max() <= NUM_CLASSES - 1
    assert (scores >= 0).all() and (scores <= 1).all()


def test_roi_features_line_up_with_matched_gt():
    # Features of level L, image i are filled with 10 * L + i; after regrouping
    # rows must read image 0 (p3, p4, p5) then image 1 (p3, p4, p5), the order
    # in which matched GT boxes are built per image.
    proposals = {
        "p3": [torch.zeros(2, 4), torch.zeros(1, 4)],
        "p4": [torch.zeros(3, 4), torch.zeros(0, 4)],
        "p5": [torch.zeros(1, 4), torch.zeros(2, 4)],
    }
    feats = {
        level: torch.cat(
            [torch.full((len(p), 1, 1, 1), 10.0 * L + i) for i, p in enumerate(props)]
        )
        for L, (level, props) in enumerate(proposals.items())
    }
    got = FasterRCNN._cat_per_image(feats, proposals).flatten().tolist()
    assert got == [0, 0, 10, 10, 10, 20, 1, 21, 21]


def test_overfit_few_images():
    """A few SGD steps on two fixed images must drive the loss down."""
    detector = make_detector(fpn_channels=32, seed=1).train()
    g = torch.Generator().manual_seed(0)
    image_size = 128
    images = torch.randn(2, 3, image_size, image_size, generator=g)
    gt = make_gt(2, image_size, g)
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(40):
        losses = detector(images, gt)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    first, last = sum(history[:3]) / 3, sum(history[-3:]) / 3
    assert last < 0.5 * first, history


# ----------------------------------------------------- solution markers
@pytest.mark.parametrize("name", ["two_stage_detector.py", "common.py"])
def test_solution_markers_wrap_every_todo(name):
    """Each `# Replace "pass" ...` placeholder is followed by exactly one
    solution block, and solution blocks appear nowhere else."""
    lines = (ROOT / name).read_text().splitlines()
    placeholders = [i for i, l in enumerate(lines) if 'Replace "pass" statement' in l]
    begins = [i for i, l in enumerate(lines) if l.strip() == "### BEGIN SOLUTION"]
    ends = [i for i, l in enumerate(lines) if l.strip() == "### END SOLUTION"]
    assert len(begins) == len(ends) == len(placeholders) > 0
    for p, b, e in zip(placeholders, begins, ends):
        assert b == p + 1, f"{name}:{b + 1}: solution block does not follow its placeholder"
        assert b < e
    assert all(e < b for e, b in zip(ends, begins[1:])), "nested or unbalanced markers"


def test_no_hard_coded_image_size_in_solutions():
    for name in ["two_stage_detector.py", "common.py"]:
        text = (ROOT / name).read_text()
        for block in re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", text, re.S):
            assert "224" not in block, f"{name}: solution hard-codes 224"
