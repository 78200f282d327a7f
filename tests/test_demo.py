"""
`demo.py`: its anchor settings cover the shapes objects, and a two-iteration
run writes every file the README lists.
"""
import json
import os

import pytest
import torch
from torchvision.ops import box_iou

import a4_helper as helper
import demo
from common import FPN_STRIDES
from kit.anchors import fpn_anchors


def _coverage(gt_per_image, image_size, stride_scale, aspect_ratios, fg_thresh):
    """Fraction of GT boxes with at least one anchor of IoU >= fg_thresh."""
    _, anchors = fpn_anchors((image_size, image_size), FPN_STRIDES, stride_scale, aspect_ratios)
    anchors = torch.cat(list(anchors.values()))
    best = torch.cat([box_iou(gt, anchors).max(dim=1).values for gt in gt_per_image])
    return (best >= fg_thresh).float().mean().item()


def test_demo_anchors_give_almost_every_object_a_foreground_anchor(tmp_path):
    # The matching has no "best anchor per object" rule: an object without any
    # anchor above the foreground threshold is never taught as foreground.
    root = helper.ensure_shapes_dataset(str(tmp_path), num_train=1, num_val=150, workers=1)
    val = helper.VOC2007DetectionTiny(root, "val", image_size=160)
    gts = [gt[gt[:, 4] >= 0, :4] for gt in (val[i][2] for i in range(len(val)))]
    rpn = demo.build_detector(num_classes=6).rpn
    ours = _coverage(gts, 160, rpn.anchor_stride_scale, rpn.anchor_aspect_ratios,
                     rpn.anchor_iou_thresholds[1])
    course = _coverage(gts, 160, 3, [0.5, 1.0, 2.0], 0.5)  # the settings before
    assert sum(len(g) for g in gts) > 300
    assert ours >= 0.96, ours
    assert course < 0.92 and ours > course + 0.05, (ours, course)

    # At 224 px (the longer schedule's second cycle) the anchors grow with the
    # objects and cover them as well.
    val = helper.VOC2007DetectionTiny(root, "val", image_size=224)
    gts = [gt[gt[:, 4] >= 0, :4] for gt in (val[i][2] for i in range(len(val)))]
    rpn = demo.build_detector(num_classes=6, image_size=224).rpn
    assert rpn.anchor_stride_scale == 3.5
    assert _coverage(gts, 224, rpn.anchor_stride_scale, rpn.anchor_aspect_ratios,
                     rpn.anchor_iou_thresholds[1]) >= 0.96
    assert _coverage(gts, 224, 2.5, rpn.anchor_aspect_ratios, 0.4) < 0.96  # fixed 20/40/80 px


def test_demo_runs_and_writes_its_files(tmp_path):
    out = str(tmp_path / "demo")
    # Two data-parallel training processes on a CPU with 2 cores or more (the default).
    demo.main(["--iters", "2", "--batch-size", "2", "--out", out, "--device", "cpu",
               "--val-images", "32"])
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["iters"] == 2 and metrics["train_images"] == 2000
    assert metrics["processes"] == (2 if (os.cpu_count() or 1) >= 2 else 1)
    assert 0.0 <= metrics["map50"] <= 1.0
    assert set(metrics["per_class"]) == {"circle", "square", "triangle", "diamond", "star", "cross"}
    for name in ["losses", "anchors", "matches", "matches_shapes", "proposals", "detections"]:
        assert os.path.getsize(os.path.join(out, name + ".png")) > 10_000, name
    checkpoint = os.path.join(out, "detector.pt")
    assert os.path.exists(checkpoint)

    # The second cycle of the longer schedule starts from those weights.
    out2 = str(tmp_path / "demo2")
    demo.main(["--iters", "1", "--batch-size", "2", "--out", out2, "--device", "cpu", "--processes", "1",
               "--init", checkpoint, "--lr", "0", "--val-images", "32"])  # lr 0: the weights stay as loaded
    first = torch.load(checkpoint, weights_only=False)["model"]
    second = torch.load(os.path.join(out2, "detector.pt"), weights_only=False)["model"]
    for name, value in first.items():
        if "running" not in name and "num_batches" not in name:  # batch-norm statistics move
            torch.testing.assert_close(second[name], value, msg=name)

    # --iters 0 only evaluates the given weights (into the same folder, which
    # keeps them) and reports the same mAP as the run that wrote them.
    demo.main(["--iters", "0", "--out", out, "--device", "cpu", "--init", checkpoint,
               "--val-images", "32"])
    with open(os.path.join(out, "metrics.json")) as f:
        again = json.load(f)
    assert again["map50"] == pytest.approx(metrics["map50"]) and again["iters"] == 0
    assert os.path.exists(checkpoint)
    with pytest.raises(SystemExit):
        demo.main(["--iters", "0", "--out", out])


@pytest.mark.parametrize("flags, message", [
    (["--processes", "3", "--batch-size", "16"], "does not split into 3 processes"),
    (["--processes", "2", "--resume"], "--resume continues in one process"),
    (["--processes", "2", "--device", "cuda"], "on a GPU train in one process"),
])
def test_demo_refuses_process_settings_it_cannot_honour(flags, message, capsys):
    with pytest.raises(SystemExit):
        demo.main(flags)
    assert message in capsys.readouterr().err


def test_demo_trains_in_one_process_without_a_local_socket(monkeypatch, capsys):
    import argparse
    import socket

    args = argparse.Namespace(resume=False, batch_size=16)
    cpu = torch.device("cpu")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert demo.default_processes(cpu, args) == 2
    assert demo.default_processes(torch.device("cuda"), args) == 1

    def refuse(*a, **k):
        raise PermissionError("sockets are not allowed here")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    assert demo.default_processes(cpu, args) == 1
    assert "no local TCP socket" in capsys.readouterr().out
