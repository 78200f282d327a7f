"""
The kit's provided code, one concept per module (`a4_helper` gathers the
public names in one namespace):

- `kit.data`: datasets, seeds, devices;
- `kit.training`: the training loop;
- `kit.evaluation`: detections and mAP;
- `kit.figures`: pictures;
- `kit.anchors`: anchors of the FPN levels for an image size (your TODOs);
- `kit.presets`: the detector configurations, and a detector built from one;
- `kit.checking`: the one comparison rule of the self-checks and the grader;
- `kit.todos`: the list of the TODOs, for the self-checks.
"""
