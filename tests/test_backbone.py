"""
The RegNet + FPN backbone: feature shapes, and the ImageNet-weights path
(cached weights are used, and offline without a cache fails at once with a
message that says what to do). Nothing here touches the network.
"""
import socket

import pytest
import torch
from torchvision import models

from common import DetectorBackboneWithFPN


@pytest.mark.parametrize("image_size", [224, 160, 256])
def test_fpn_shapes(image_size):
    backbone = DetectorBackboneWithFPN(48, pretrained=False)
    feats = backbone(torch.randn(2, 3, image_size, image_size))
    assert list(feats) == ["p3", "p4", "p5"]
    for level, stride in backbone.fpn_strides.items():
        assert feats[level].shape == (2, 48, image_size // stride, image_size // stride)


def test_trunk_features_are_regnet_blocks():
    backbone = DetectorBackboneWithFPN(16, pretrained=False)
    c = backbone.backbone(torch.randn(1, 3, 224, 224))
    assert {k: tuple(v.shape[1:]) for k, v in c.items()} == {
        "c3": (64, 28, 28),
        "c4": (160, 14, 14),
        "c5": (400, 7, 7),
    }


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_pretrained_offline_fails_fast_with_advice(empty_hub, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        DetectorBackboneWithFPN(16)


def test_pretrained_uses_cached_weights(empty_hub, monkeypatch):
    # Put a (random) state dict where torch.hub caches the ImageNet weights:
    # the backbone must load it from there without asking the network.
    weights = models.RegNet_X_400MF_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    cached = models.regnet_x_400mf().state_dict()
    (empty_hub / "checkpoints").mkdir()
    torch.save(cached, empty_hub / "checkpoints" / weights.url.rsplit("/", 1)[-1])

    def no_network(*args, **kwargs):
        raise AssertionError("must not touch the network when weights are cached")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    backbone = DetectorBackboneWithFPN(16)
    stem_weight = backbone.backbone.stem[0].weight
    torch.testing.assert_close(stem_weight, cached["stem.0.weight"])
