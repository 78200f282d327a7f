"""
One check per graded TODO (one `### BEGIN SOLUTION` block each), by graded
file and concern:

- `checks_common.py`: common.py (FPN, location co-ordinates, NMS);
- `checks_boxes.py`: anchors, IoU, box deltas;
- `checks_rpn.py`: the RPN prediction network, `RPN.forward`, proposals;
- `checks_faster_rcnn.py`: the second stage, `FasterRCNN.forward`, inference;

`check_base.py` holds what they share (the `Check` interface, inputs, the
kit modules around a block, the device case); `oracles.py` independent
implementations for accepted variants and hints.
"""
from . import checks_boxes, checks_common, checks_faster_rcnn, checks_rpn  # noqa: F401 - they register
from .check_base import BLOCKS, CHECKS, DEVICE_CASE, Check  # noqa: F401

# The checks in the order of the files' solution blocks.
CHECK_NAMES = BLOCKS["common.py"] + BLOCKS["two_stage_detector.py"]
assert sorted(CHECKS) == sorted(CHECK_NAMES), sorted(set(CHECKS) ^ set(CHECK_NAMES))
for _name in CHECK_NAMES:
    CHECKS[_name] = CHECKS.pop(_name)
