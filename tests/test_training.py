"""
`train_detector`: a short run whose loss falls, checkpoint resume, NaN stop.

The runs are tiny (4 images of 64 px, a 16-channel FPN, at most 20 iterations)
so that the file takes well under a minute on two CPU cores.
"""
import math

import pytest
import torch
from torch import nn

import a4_helper as helper
from kit.presets import build_detector
from kit.data import GT_PADDING


def _tiny_detector(num_classes=2):
    # The tests' small detector, its anchors scaled to these 64 px images.
    return build_detector("tiny", num_classes, image_size=64)


def _tiny_loader():
    """4 images of 64x64: a bright square (class 0) or disc (class 1) on grey."""
    images, gts = torch.zeros(4, 3, 64, 64), torch.full((4, 40, 5), GT_PADDING)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    for i, (x1, y1, s) in enumerate([(8, 8, 24), (30, 20, 30), (4, 30, 28), (20, 4, 40)]):
        if i % 2 == 0:
            mask = (xx >= x1) & (xx < x1 + s) & (yy >= y1) & (yy < y1 + s)
        else:
            mask = (xx - x1 - s / 2) ** 2 + (yy - y1 - s / 2) ** 2 < (s / 2) ** 2
        images[i, :, mask] = 2.0
        gts[i, 0] = torch.tensor([x1, y1, x1 + s, y1 + s, i % 2])
    items = [(f"img{i}", images[i], gts[i]) for i in range(4)]
    return torch.utils.data.DataLoader(items, batch_size=4, shuffle=False)


def test_loss_falls_and_history():
    torch.manual_seed(0)
    detector = _tiny_detector()
    history = helper.train_detector(detector, _tiny_loader(), learning_rate=0.02, max_iters=20,
                                    log_period=10, device="cpu", seed=0, progress=False)
    assert set(history) == {"iter", "loss", "lr", "loss_rpn_obj", "loss_rpn_box", "loss_cls"}
    assert history["iter"] == list(range(20)) and len(history["loss"]) == 20
    for i in (0, 19):
        parts = sum(history[k][i] for k in ("loss_rpn_obj", "loss_rpn_box", "loss_cls"))
        assert history["loss"][i] == pytest.approx(parts, rel=1e-5)
    first, last = sum(history["loss"][:5]) / 5, sum(history["loss"][-5:]) / 5
    assert last < 0.7 * first, (first, last)
    # Step decay at 60% and 90% of the iterations.
    assert history["lr"][11] == pytest.approx(0.02)
    assert history["lr"][12] == pytest.approx(0.002)
    assert history["lr"][17] == pytest.approx(0.002)
    assert history["lr"][18] == pytest.approx(0.0002)
    assert detector.training  # left in training mode
    assert helper.plot_losses(history) is not None


class _StopAfter:
    """Wraps a loader; raises KeyboardInterrupt when batch `n + 1` is asked for."""

    def __init__(self, loader, n):
        self.loader, self.n, self.served = loader, n, 0

    def __iter__(self):
        for batch in self.loader:
            if self.served == self.n:
                raise KeyboardInterrupt
            self.served += 1
            yield batch


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    loader = _tiny_loader()
    torch.manual_seed(1)
    straight = _tiny_detector()
    straight_history = helper.train_detector(straight, loader, max_iters=4, device="cpu",
                                             seed=3, progress=False)

    path = str(tmp_path / "ckpt.pt")
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        helper.train_detector(_tiny_detector(), _StopAfter(loader, 3), max_iters=4,
                              device="cpu", seed=3, progress=False, checkpoint_path=path,
                              checkpoint_period=2)
    assert torch.load(path, weights_only=False)["iter"] == 2

    torch.manual_seed(99)  # another init: the weights must come from the checkpoint
    resumed = _tiny_detector()
    history = helper.train_detector(resumed, loader, max_iters=4, device="cpu", seed=3,
                                    progress=False, checkpoint_path=path, checkpoint_period=2)
    assert history["iter"] == list(range(4))
    assert history["loss"] == pytest.approx(straight_history["loss"], rel=1e-4)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert torch.load(path, weights_only=False)["iter"] == 4


class _NaNAfter(nn.Module):
    def __init__(self, steps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.steps = steps
        self.calls = 0

    def forward(self, images, gt_boxes):
        self.calls += 1
        bad = math.nan if self.calls > self.steps else 0.0
        return {"loss_a": self.weight.sum() * 0.1, "loss_b": self.weight.sum() * bad}


def test_nan_loss_stops_with_a_clear_message():
    detector = _NaNAfter(steps=2)
    with pytest.raises(FloatingPointError, match=r"iteration 2 .*loss_b=nan.*learning rate"):
        helper.train_detector(detector, _tiny_loader(), max_iters=10, device="cpu",
                              progress=False)
    assert detector.calls == 3
