"""
The batched fast path (`fast_detector.py`) against the reference detector
(`two_stage_detector.FasterRCNN`, which runs image by image) and against
torchvision's box ops; and a smoke run of the speed benchmark.
"""
import copy
import json
import subprocess
import sys

import pytest
import torch
import torchvision

import fast_detector
from fast_detector import FastFasterRCNN, roi_align_separable
from kit.presets import build_detector

IMAGE_SIZE = 96
NUM_CLASSES = 5


def random_boxes(shape, size=IMAGE_SIZE, generator=None):
    xy = torch.rand(*shape, 2, generator=generator) * size * 0.7
    wh = 4 + torch.rand(*shape, 2, generator=generator) * size * 0.5
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=-1)


@pytest.fixture(scope="module")
def base_detector():
    torch.manual_seed(0)
    return build_detector("tiny", NUM_CLASSES)  # 96 px images, as here


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    gt = torch.full((3, 6, 5), -1.0)
    gt[0, :4, :4] = random_boxes((4,), generator=g)  # 4 objects
    gt[0, :4, 4] = torch.tensor([0.0, 3.0, 1.0, 4.0])
    gt[1, :1, :4] = torch.tensor([[0.0, 0.0, IMAGE_SIZE, IMAGE_SIZE]])  # one big object
    gt[1, :1, 4] = 2.0
    # image 2 has no objects at all: every row is padding
    return images, gt


@pytest.fixture
def make_detector(base_detector):
    """A fresh copy of the (slow to build) small test detector."""
    return lambda: copy.deepcopy(base_detector)


@pytest.fixture
def detectors(make_detector):
    # The detector's real sample sizes (16 anchors and 32 RoIs per image):
    # seeded alike, both draw the same sample.
    reference = make_detector()
    return reference, FastFasterRCNN.from_reference(reference)


def test_shares_modules_and_state_dict(detectors, make_detector):
    reference, fast = detectors
    assert fast.backbone is reference.backbone and fast.cls_pred is reference.cls_pred
    assert list(fast.state_dict()) == list(reference.state_dict())
    # A checkpoint of one loads into the other.
    FastFasterRCNN.from_reference(make_detector()).load_state_dict(reference.state_dict())


@pytest.fixture(params=["cpu paths", "gpu paths"])
def device_paths(request, monkeypatch):
    # "gpu paths": run the choice the fast path makes on CUDA (torchvision's
    # RoI-Align) on the CPU, so that it is tested even without a GPU.
    if request.param == "gpu paths":
        monkeypatch.setattr(fast_detector, "_prefer_separable_roi_align", lambda device: False)
    return request.param


def test_training_losses_and_gradients_match_reference(detectors, device_paths):
    reference, fast = detectors
    images, gt = make_batch()
    results = []
    for model in (reference, fast):
        model.train()
        model.zero_grad()
        torch.manual_seed(7)  # the same random state for `sample_rpn_training`
        losses = model(images, gt)
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((losses, grads))
    (ref_losses, ref_grads), (fast_losses, fast_grads) = results
    assert set(fast_losses) == {"loss_rpn_obj", "loss_rpn_box", "loss_cls"}
    for name in ref_losses:
        assert ref_losses[name] > 0, name
        torch.testing.assert_close(fast_losses[name], ref_losses[name], rtol=1e-4, atol=1e-6)
    assert set(fast_grads) == set(ref_grads)
    for name in ref_grads:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_inference_matches_reference_image_by_image(detectors, device_paths):
    reference, fast = detectors
    images, _ = make_batch(seed=1)
    reference.eval()
    fast.eval()
    with torch.no_grad():
        batched = fast.predict(images, test_score_thresh=0.0, test_nms_thresh=0.5)
        assert len(batched) == len(images)
        total = 0
        for i, (boxes, classes, scores) in enumerate(batched):
            ref_boxes, ref_classes, ref_scores = reference(images[i : i + 1], None, 0.0, 0.5)
            total += len(ref_boxes)
            torch.testing.assert_close(boxes, ref_boxes)
            torch.testing.assert_close(classes, ref_classes)
            torch.testing.assert_close(scores, ref_scores)
        assert total > 0
        # One image through `forward`: the reference's return format.
        single = fast(images[:1], None, 0.0, 0.5)
        assert isinstance(single, tuple) and len(single) == 3
        torch.testing.assert_close(single[0], batched[0][0])


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16])
def test_sampled_training_step_runs(autocast_dtype, make_detector):
    # Realistic (small) sample sizes: the losses are finite and reach every
    # trainable module; also under bf16 autocast.
    fast = FastFasterRCNN.from_reference(make_detector(), autocast_dtype=autocast_dtype)
    fast.train()
    images, gt = make_batch(seed=2)
    losses = fast(images, gt)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for part in (fast.backbone, fast.rpn, fast.cls_pred):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_missing_gt_boxes_in_training_mode(make_detector):
    fast = FastFasterRCNN.from_reference(make_detector()).train()
    with pytest.raises(ValueError, match="gt_boxes"):
        fast(torch.zeros(1, 3, 64, 64))


# ----------------------------------------------------------------- box ops
@pytest.mark.parametrize("spatial_scale, size", [(1 / 8, 28), (1 / 32, 7)])
def test_roi_align_separable_against_torchvision(spatial_scale, size):
    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 8, size, size + 3, generator=g, requires_grad=True)
    xy = torch.rand(60, 2, generator=g) * 260 - 20
    rois = torch.cat(
        [torch.randint(0, 3, (60, 1), generator=g).float(), xy, xy + torch.rand(60, 2, generator=g) * 150],
        dim=1,
    )
    rois[0, 1:] = torch.tensor([10.0, 10.0, 10.0, 30.0])  # zero width
    rois[1, 1:] = torch.tensor([0.0, 0.0, 224.0, 224.0])  # whole image
    rois[2, 1:] = torch.tensor([-40.0, -40.0, 300.0, 300.0])  # beyond the map
    rois[3, 1:] = torch.tensor([50.0, 50.0, 51.0, 51.0])  # sub-pixel
    expected = torchvision.ops.roi_align(features, rois, (7, 7), spatial_scale, -1, True)
    got = roi_align_separable(features, rois, (7, 7), spatial_scale)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn(expected.shape, generator=g)
    (expected_grad,) = torch.autograd.grad(expected, features, grad)
    (got_grad,) = torch.autograd.grad(got, features, grad)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_roi_align_separable_channels_last_and_empty():
    g = torch.Generator().manual_seed(6)
    features = torch.randn(2, 4, 14, 14, generator=g)
    rois = torch.tensor([[1.0, 8.0, 16.0, 120.0, 90.0], [0.0, 0.0, 0.0, 50.0, 60.0]])
    expected = torchvision.ops.roi_align(features, rois, (7, 7), 1 / 16, -1, True)
    channels_last = features.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(roi_align_separable(channels_last, rois, (7, 7), 1 / 16), expected)
    assert roi_align_separable(features, rois[:0], (7, 7), 1 / 16).shape == (0, 4, 7, 7)


# --------------------------------------------------------------- benchmark
def test_benchmark_smoke(tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/benchmark.py", "--quick", "--nms-boxes", "300",
         "--detectors", "fast,torchvision,backbone", "--fpn-channels", "16", "--threads", "1",
         "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for needle in ("fast", "torchvision", "backbone", "train", "infer", "/ backbone",
                   "of the backbone alone", "same indices: True"):
        assert needle in out.stdout, out.stdout
    with open(tmp_path / "bench.json") as f:
        figures = json.load(f)
    rows = {(r["detector"], r["mode"]): r for r in figures["rows"]}
    assert set(rows) == {(d, m) for d in ("fast", "torchvision", "backbone") for m in ("train", "infer")}
    assert rows[("backbone", "train")]["share_of_backbone"] == 1.0
    assert 0 < rows[("fast", "train")]["share_of_backbone"] < 10
    assert all(n["same_indices"] for n in figures["nms"]) and len(figures["nms"]) == 2


def test_gpu_check_dry_run(tmp_path):
    # `make gpu-check` cannot run in CI; its dry run (CPU, tiny sizes) runs
    # every step, so that the check does not rot between GPU sessions.
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert list(summary["steps"]) == ["tests", "notebook", "train", "inference", "benchmark"]
    assert all(step["status"] == "ok" for step in summary["steps"].values()), summary
    assert summary["steps"]["tests"]["passed"] >= 2 and summary["steps"]["notebook"]["device"] == "cpu"
    assert {r["detector"] for r in summary["steps"]["benchmark"]["rows"]} == {"fast", "torchvision", "backbone"}
    assert "## Benchmark" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("outer, own", [(True, None), (False, torch.bfloat16)])
def test_autocast_reaches_the_network(outer, own, make_detector):
    # The caller's autocast must not be switched off inside, and the
    # detector's own `autocast_dtype` must apply without one.
    fast = FastFasterRCNN.from_reference(make_detector(), autocast_dtype=own).eval()
    dtypes = []
    fast.cls_pred.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    images, _ = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=outer):
        fast.predict(images, 0.0, 0.5)
    assert dtypes == [torch.bfloat16]
