"""
`kit.presets`: each preset builds the detector its users had written by hand
(the expected values are written out here, not read back from `PRESETS`),
overrides replace what they name, and an unknown name says the choices.
"""
import pytest

from kit import presets
from two_stage_detector import FasterRCNN


def _stem(module):
    """Output channels of the 3x3 convs of a stem (an `nn.Sequential`)."""
    return [m.out_channels for m in module if hasattr(m, "kernel_size") and m.kernel_size == (3, 3)]


def _check(detector, fpn_channels, rpn_stem, rpn_attrs, roi_stem, roi_attrs, num_classes):
    assert isinstance(detector, FasterRCNN)
    assert detector.backbone.out_channels == fpn_channels
    assert _stem(detector.rpn.pred_net.stem_rpn) == rpn_stem
    for name, value in rpn_attrs.items():
        assert getattr(detector.rpn, name) == pytest.approx(value), name
    assert _stem(detector.cls_pred) == roi_stem
    assert detector.num_classes == num_classes
    for name, value in roi_attrs.items():
        assert getattr(detector, name) == pytest.approx(value), name


# RPN and FasterRCNN constructor defaults, where a preset keeps them.
RPN_DEFAULTS = dict(anchor_stride_scale=8, anchor_aspect_ratios=[0.5, 1.0, 2.0],
                    anchor_iou_thresholds=(0.3, 0.6), nms_thresh=0.7, fg_fraction=0.5)
ROI_DEFAULTS = dict(roi_size=(7, 7), fg_fraction=0.25, proposal_iou_thresholds=(0.5, 0.5))


def test_course():
    detector = presets.build_detector("course", num_classes=20)
    _check(detector, 64, [64],
           dict(RPN_DEFAULTS, batch_size_per_image=16, pre_nms_topk=500, post_nms_topk=200),
           [64], dict(ROI_DEFAULTS, batch_size_per_image=32), 20)


DEMO_RPN = dict(batch_size_per_image=64, anchor_aspect_ratios=[1 / 3, 0.5, 1.0, 2.0, 3.0],
                anchor_iou_thresholds=(0.3, 0.4), nms_thresh=0.7, pre_nms_topk=200,
                post_nms_topk=30, fg_fraction=0.5)


@pytest.mark.parametrize("image_size, scale", [(None, 2.5), (160, 2.5), (224, 3.5), (320, 5.0)])
def test_demo_anchors_scale_with_the_image_size(image_size, scale):
    detector = presets.build_detector("demo", num_classes=6, image_size=image_size)
    _check(detector, 48, [48], dict(DEMO_RPN, anchor_stride_scale=scale), [48],
           dict(ROI_DEFAULTS, batch_size_per_image=64), 6)


def test_bench():
    detector = presets.build_detector("bench", num_classes=20)
    _check(detector, 64, [64],
           dict(RPN_DEFAULTS, batch_size_per_image=256, pre_nms_topk=400, post_nms_topk=100),
           [64, 64], dict(ROI_DEFAULTS, batch_size_per_image=128), 20)


def test_tiny():
    detector = presets.build_detector("tiny", num_classes=5)
    _check(detector, 16, [16],
           dict(RPN_DEFAULTS, batch_size_per_image=16, anchor_stride_scale=3, pre_nms_topk=60,
                post_nms_topk=20),
           [16], dict(ROI_DEFAULTS, batch_size_per_image=32), 5)


def test_overrides_replace_what_they_name_and_leave_the_preset_alone():
    detector = presets.build_detector(
        "tiny", num_classes=3, image_size=64, fpn_channels=8,
        rpn={"stem_channels": [8, 8], "post_nms_topk": 10},
        roi={"stem_channels": [8], "batch_size_per_image": 16})
    _check(detector, 8, [8, 8],
           dict(RPN_DEFAULTS, batch_size_per_image=16, anchor_stride_scale=2, pre_nms_topk=60,
                post_nms_topk=10),
           [8], dict(ROI_DEFAULTS, batch_size_per_image=16), 3)
    # An anchor size given outright is not scaled again.
    cfg = presets.preset_config("demo", image_size=320, rpn={"anchor_stride_scale": 4})
    assert cfg["rpn"]["anchor_stride_scale"] == 4 and cfg["image_size"] == 320
    # The presets themselves did not change.
    assert presets.PRESETS["tiny"]["fpn_channels"] == 16
    assert presets.PRESETS["tiny"]["rpn"]["post_nms_topk"] == 20
    assert presets.PRESETS["demo"]["rpn"]["anchor_stride_scale"] == 2.5


def test_other_image_size_for_default_anchors_asks_for_a_scale():
    with pytest.raises(ValueError, match="default anchors.*anchor_stride_scale"):
        presets.preset_config("course", image_size=160)
    assert presets.preset_config("course", image_size=224)["rpn"] == presets.PRESETS["course"]["rpn"]
    cfg = presets.preset_config("course", image_size=160, rpn={"anchor_stride_scale": 6})
    assert cfg["rpn"]["anchor_stride_scale"] == 6 and cfg["image_size"] == 160


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="'voc'.*course, demo, bench, tiny"):
        presets.build_detector("voc", num_classes=20)


def test_importable_without_the_graded_files():
    import subprocess
    import sys

    # With `common` and `two_stage_detector` unimportable, the module still
    # imports (the release's stubs may not run yet).
    code = ("import sys; sys.modules['common'] = None; sys.modules['two_stage_detector'] = None; "
            "import kit.presets as p; print(sorted(p.PRESETS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "course" in out.stdout
