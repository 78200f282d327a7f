"""
Box operations of the reference solution against independent oracles:
torchvision.ops, torchvision's BoxCoder and hand-computed values.
"""
import math

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder

from common import get_fpn_location_coords, nms
from two_stage_detector import (
    assign_fpn_level,
    generate_fpn_anchors,
    iou,
    mix_gt_with_proposals,
    rcnn_apply_deltas_to_anchors,
    rcnn_get_deltas_from_anchors,
)


def random_boxes(n, size=224.0, min_wh=1.0, generator=None):
    """`(n, 4)` XYXY boxes with positive width and height inside `size`."""
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = min_wh + torch.rand(n, 2, generator=generator) * size * 0.5
    return torch.cat([xy, xy + wh], dim=1)


# ---------------------------------------------------------------------- iou
class TestIoU:
    def test_hand_computed(self):
        boxes1 = torch.tensor([[10, 10, 90, 90], [20, 20, 40, 40], [60, 60, 80, 80]]).float()
        boxes2 = torch.tensor([[10, 10, 90, 90], [60, 60, 80, 80], [30, 30, 70, 70]]).float()
        expected = torch.tensor(
            [[1.0, 0.0625, 0.25], [0.0625, 0.0, 0.0526316], [0.0625, 1.0, 0.0526316]]
        )
        torch.testing.assert_close(iou(boxes1, boxes2), expected, atol=1e-6, rtol=1e-5)

    @pytest.mark.parametrize("m, n", [(1, 1), (7, 13), (300, 50)])
    def test_random_against_torchvision(self, m, n):
        g = torch.Generator().manual_seed(m * 1000 + n)
        b1, b2 = random_boxes(m, generator=g), random_boxes(n, generator=g)
        torch.testing.assert_close(iou(b1, b2), torchvision.ops.box_iou(b1, b2))

    def test_special_cases(self):
        boxes = torch.tensor(
            [
                [0, 0, 10, 10],  # reference
                [20, 20, 30, 30],  # disjoint
                [2, 2, 8, 8],  # nested inside
                [0, 0, 10, 10],  # identical
                [10, 0, 20, 10],  # touching at an edge
                [10, 10, 20, 20],  # touching at a corner
            ]
        ).float()
        got = iou(boxes[:1], boxes)
        torch.testing.assert_close(got, torchvision.ops.box_iou(boxes[:1], boxes))
        torch.testing.assert_close(got[0], torch.tensor([1.0, 0.0, 0.36, 1.0, 0.0, 0.0]))


# ------------------------------------------------------------------- deltas
SCALE_CLAMP = math.log(224 / 8)


class TestDeltas:
    def coder(self):
        return BoxCoder((1.0, 1.0, 1.0, 1.0), bbox_xform_clip=SCALE_CLAMP)

    def test_get_deltas_against_torchvision(self):
        g = torch.Generator().manual_seed(0)
        anchors, gt = random_boxes(500, generator=g), random_boxes(500, generator=g)
        expected = self.coder().encode_single(gt, anchors)
        torch.testing.assert_close(rcnn_get_deltas_from_anchors(anchors, gt), expected)

    def test_get_deltas_accepts_class_column(self):
        g = torch.Generator().manual_seed(1)
        anchors, gt = random_boxes(20, generator=g), random_boxes(20, generator=g)
        gt5 = torch.cat([gt, torch.randint(0, 20, (20, 1)).float()], dim=1)
        torch.testing.assert_close(
            rcnn_get_deltas_from_anchors(anchors, gt5),
            rcnn_get_deltas_from_anchors(anchors, gt),
        )

    def test_apply_deltas_against_torchvision(self):
        g = torch.Generator().manual_seed(2)
        anchors = random_boxes(500, generator=g)
        deltas = torch.randn(500, 4, generator=g)
        deltas[:5, 2:] = 10.0  # beyond the clamp: must be clamped like torchvision
        expected = self.coder().decode_single(deltas, anchors)
        got = rcnn_apply_deltas_to_anchors(deltas.clone(), anchors)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)

    def test_apply_deltas_does_not_modify_input(self):
        deltas = torch.full((3, 4), 10.0)
        rcnn_apply_deltas_to_anchors(deltas, random_boxes(3))
        assert (deltas == 10.0).all()

    def test_round_trip(self):
        # Sizes from 8 to 120 px: every scale ratio stays inside the clamp.
        g = torch.Generator().manual_seed(3)
        anchors = random_boxes(1000, min_wh=8.0, generator=g)
        gt = random_boxes(1000, min_wh=8.0, generator=g)
        deltas = rcnn_get_deltas_from_anchors(anchors, gt)
        torch.testing.assert_close(
            rcnn_apply_deltas_to_anchors(deltas, anchors), gt, rtol=1e-5, atol=1e-3
        )

    def test_hand_computed(self):
        anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
        gt = torch.tensor([[5.0, 5.0, 25.0, 25.0]])  # centre (15, 15), size 20x20
        expected = torch.tensor([[1.0, 0.25, math.log(2.0), 0.0]])
        torch.testing.assert_close(rcnn_get_deltas_from_anchors(anchors, gt), expected)

    def test_background_and_neutral_rows(self):
        anchors = random_boxes(4)
        gt = torch.tensor(
            [
                [10.0, 10.0, 50.0, 60.0, 3.0],  # foreground
                [-1.0, -1.0, -1.0, -1.0, -1.0],  # background
                [-1e8, -1e8, -1e8, -1e8, -1e8],  # neutral
                [0.0, 0.0, 224.0, 224.0, 0.0],  # foreground, class 0
            ]
        )
        deltas = rcnn_get_deltas_from_anchors(anchors, gt[:, :4])
        assert torch.isfinite(deltas[[0, 3]]).all()
        assert (deltas[[1, 2]] == -1e8).all()
        assert (deltas[[0, 3]] > -1e7).all()


# ---------------------------------------------------- GT mixed with proposals
def square(x, y, side):
    return [x, y, x + side, y + side]


class TestMixGtWithProposals:
    # FPN paper, Equation (1) with k0 = 5 and canonical size 224, clamped to
    # p3..p5: side 224 -> p5, 223 and 112 -> p4, 111 -> p3, 20 -> p3, 500 -> p5.
    def test_hand_computed_levels(self):
        proposals = {
            "p3": [torch.zeros(2, 4), torch.zeros(0, 4)],
            "p4": [torch.ones(1, 4), torch.ones(3, 4)],
            "p5": [torch.zeros(0, 4), torch.full((1, 4), 2.0)],
        }
        gt = torch.full((2, 4, 5), -1.0)
        gt[0, 0] = torch.tensor(square(0, 0, 224) + [1])
        gt[0, 1] = torch.tensor(square(5, 5, 111) + [0])
        gt[0, 2] = torch.tensor(square(1, 2, 112) + [2])
        gt[1, 0] = torch.tensor(square(3, 3, 20) + [0])
        gt[1, 1] = torch.tensor(square(0, 0, 500) + [4])
        gt[1, 2] = torch.tensor(square(7, 7, 223) + [3])
        mixed = mix_gt_with_proposals(proposals, gt)
        expected = {
            "p3": [[[0.0] * 4] * 2 + [square(5, 5, 111)], [square(3, 3, 20)]],
            "p4": [[[1.0] * 4, square(1, 2, 112)], [[1.0] * 4] * 3 + [square(7, 7, 223)]],
            "p5": [[square(0, 0, 224)], [[2.0] * 4, square(0, 0, 500)]],
        }
        assert mixed.keys() == expected.keys()
        for level, per_image in expected.items():
            assert [m.tolist() for m in mixed[level]] == per_image, level

    def test_input_is_left_unchanged(self):
        props = [torch.zeros(2, 4), torch.ones(1, 4)]
        proposals = {"p3": list(props), "p4": [torch.zeros(0, 4)] * 2, "p5": [torch.zeros(0, 4)] * 2}
        gt = torch.full((2, 2, 5), -1.0)
        gt[0, 0] = torch.tensor(square(0, 0, 30) + [0])  # p3
        gt[1, 0] = torch.tensor(square(0, 0, 40) + [1])  # p3
        mixed = mix_gt_with_proposals(proposals, gt)
        assert [len(p) for p in mixed["p3"]] == [3, 2]
        assert all(a is b for a, b in zip(proposals["p3"], props))
        assert [len(p) for p in proposals["p3"]] == [2, 1]

    def test_assign_fpn_level(self):
        # sqrt(area) 224 -> 5, 223.9 -> 4, 112 -> 4, 111.9 -> 3, 56 -> 3,
        # 448 -> 6 (clamped to 5), 28 -> 2 (clamped to 3); a 0 x 0 box -> 3.
        sides = [224.0, 223.9, 112.0, 111.9, 56.0, 448.0, 28.0, 0.0]
        boxes = torch.tensor([[10.0, 20.0, 10.0 + a, 20.0 + a] for a in sides])
        assert assign_fpn_level(boxes).tolist() == [5, 4, 4, 3, 3, 5, 3, 3]
        assert assign_fpn_level(boxes, 2, 6).tolist() == [5, 4, 4, 3, 3, 6, 2, 2]
        # Non-square: only the area counts; extra columns and batch dims are fine.
        wide = torch.tensor([[[0.0, 0.0, 448.0, 112.0, 7.0]]])  # sqrt(area) = 224
        assert assign_fpn_level(wide).tolist() == [[5]]
        assert assign_fpn_level(wide).dtype == torch.int64

    def test_images_without_gt(self):
        proposals = {k: [torch.ones(1, 4), torch.ones(2, 4)] for k in ("p3", "p4", "p5")}
        mixed = mix_gt_with_proposals(proposals, torch.full((2, 3, 5), -1.0))
        for level in proposals:
            assert [m.tolist() for m in mixed[level]] == [p.tolist() for p in proposals[level]]


# ------------------------------------------------------------------ anchors
class TestAnchors:
    def test_hand_computed_p5(self):
        # p5 (stride 32) with 2x2 locations, anchors of size 2 * 32 = 64.
        locations = get_fpn_location_coords({"p5": (1, 8, 2, 2)}, {"p5": 32})
        anchors = generate_fpn_anchors(locations, {"p5": 32}, stride_scale=2)["p5"]
        assert anchors.shape == (2 * 2 * 3, 4)
        # Location-major: the first three anchors belong to location (16, 16),
        # in the order of `aspect_ratios` [0.5, 1.0, 2.0].
        torch.testing.assert_close(
            anchors[1], torch.tensor([-16.0, -16.0, 48.0, 48.0])
        )
        torch.testing.assert_close(
            anchors[0], torch.tensor([-29.2548, -6.6274, 61.2548, 38.6274]), atol=1e-4, rtol=0
        )
        torch.testing.assert_close(
            anchors[2], torch.tensor([-6.6274, -29.2548, 38.6274, 61.2548]), atol=1e-4, rtol=0
        )

    @pytest.mark.parametrize("stride_scale", [2, 4, 8])
    @pytest.mark.parametrize("aspect_ratios", [[0.5, 1.0, 2.0], [1.0], [0.25, 3.0]])
    def test_formula_on_random_sizes(self, stride_scale, aspect_ratios):
        strides = {"p3": 8, "p4": 16, "p5": 32}
        g = torch.Generator().manual_seed(stride_scale)
        locations = {k: torch.rand(int(torch.randint(1, 50, (1,), generator=g)), 2, generator=g) * 300 for k in strides}
        anchors = generate_fpn_anchors(locations, strides, stride_scale, aspect_ratios)
        for level, locs in locations.items():
            A = len(aspect_ratios)
            got = anchors[level].view(-1, A, 4)
            assert got.shape[0] == locs.shape[0]
            area = (stride_scale * strides[level]) ** 2
            w = torch.tensor([math.sqrt(area / r) for r in aspect_ratios])
            h = area / w
            wh = torch.stack([w, h], dim=1)  # (A, 2)
            expected = torch.cat([locs[:, None] - wh / 2, locs[:, None] + wh / 2], dim=2)
            torch.testing.assert_close(got, expected)


# --------------------------------------------------------- location coords
class TestLocationCoords:
    def test_hand_computed(self):
        coords = get_fpn_location_coords({"p3": (2, 16, 2, 3)}, {"p3": 8})["p3"]
        expected = torch.tensor(
            [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
        ).float()
        torch.testing.assert_close(coords, expected)

    def test_order_matches_conv_map_flatten(self):
        # A map whose value at (i, j) is (j + 0.5) * s for x and (i + 0.5) * s
        # for y must flatten to exactly the location coordinates.
        H, W, s = 5, 7, 16
        x_map = (torch.arange(W).float() + 0.5).mul(s).expand(1, 1, H, W)
        y_map = (torch.arange(H).float() + 0.5).mul(s)[:, None].expand(1, 1, H, W)
        feature_map = torch.cat([x_map, y_map], dim=1)  # (B=1, C=2, H, W)
        flattened = feature_map.flatten(2)[0].t()  # (H*W, 2)
        coords = get_fpn_location_coords({"p4": feature_map.shape}, {"p4": s})["p4"]
        torch.testing.assert_close(coords, flattened)

    def test_dtype_and_device(self):
        coords = get_fpn_location_coords(
            {"p3": (1, 1, 3, 3)}, {"p3": 8}, dtype=torch.float64, device="cpu"
        )["p3"]
        assert coords.dtype == torch.float64 and coords.shape == (9, 2)


# ---------------------------------------------------------------------- nms
class TestNMS:
    @pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
    @pytest.mark.parametrize("n", [1, 10, 3000])
    def test_against_torchvision(self, n, iou_threshold):
        g = torch.Generator().manual_seed(n)
        boxes = random_boxes(n, generator=g)
        scores = torch.rand(n, generator=g)
        expected = torchvision.ops.nms(boxes, scores, iou_threshold)
        got = nms(boxes, scores, iou_threshold)
        assert got.dtype == torch.long
        torch.testing.assert_close(got, expected)

    def test_crowded_boxes(self):
        # Many heavily overlapping boxes: long chains of suppression.
        g = torch.Generator().manual_seed(7)
        xy = torch.rand(2000, 2, generator=g) * 20
        boxes = torch.cat([xy, xy + 50 + torch.rand(2000, 2, generator=g) * 5], dim=1)
        scores = torch.rand(2000, generator=g)
        for thr in (0.3, 0.5, 0.7, 0.9):
            torch.testing.assert_close(
                nms(boxes, scores, thr), torchvision.ops.nms(boxes, scores, thr)
            )

    def test_hand_computed(self):
        boxes = torch.tensor(
            [[0, 0, 10, 10], [4, 4, 14, 14], [20, 20, 30, 30], [0, 0, 10, 9]]
        ).float()
        scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
        # Box 3 wins; box 0 overlaps it with IoU 90/100 and goes; box 1
        # overlaps box 3 with IoU 30/160 and stays; box 2 is disjoint.
        torch.testing.assert_close(nms(boxes, scores, 0.5), torch.tensor([3, 1, 2]))

    def test_empty(self):
        assert nms(torch.zeros(0, 4), torch.zeros(0)).numel() == 0
