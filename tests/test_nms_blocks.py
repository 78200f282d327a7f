"""
`common.nms` (the reference solution, block-wise) against
`torchvision.ops.nms` where the blocks matter: more boxes than one block,
suppression chains that cross block borders, ties in score, duplicates.
"""
import pytest
import torch
import torchvision

from common import nms


def random_boxes(n, size=224.0, generator=None):
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = 1 + torch.rand(n, 2, generator=generator) * size * 0.5
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("n", [255, 256, 257, 513, 5000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.5, 0.7])
def test_block_borders_against_torchvision(n, iou_threshold):
    g = torch.Generator().manual_seed(n)
    boxes = random_boxes(n, generator=g)
    scores = torch.rand(n, generator=g)
    torch.testing.assert_close(nms(boxes, scores, iou_threshold),
                               torchvision.ops.nms(boxes, scores, iou_threshold))


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.9])
def test_ties_duplicates_and_chains(iou_threshold):
    g = torch.Generator().manual_seed(11)
    # A slow drift: each box overlaps its neighbours in score order, so
    # suppression chains run through many blocks.
    steps = torch.arange(1200, dtype=torch.float32)[:, None]
    drift = torch.cat([steps * 0.7, steps * 0.3, steps * 0.7 + 40, steps * 0.3 + 40], dim=1)
    dupes = random_boxes(300, generator=g).repeat(2, 1)  # every box twice
    boxes = torch.cat([drift, dupes, torch.zeros(5, 4)])  # and 5 boxes of area 0
    # Few distinct scores: many ties, which torchvision breaks by index.
    scores = torch.randint(0, 20, (len(boxes),), generator=g).float()
    scores[: len(drift)] = torch.linspace(1, 0, len(drift)) * 20
    perm = torch.randperm(len(boxes), generator=g)
    boxes, scores = boxes[perm], scores[perm]
    torch.testing.assert_close(nms(boxes, scores, iou_threshold),
                               torchvision.ops.nms(boxes, scores, iou_threshold))
