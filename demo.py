"""
The kit's demo: train the reference Faster R-CNN from scratch on the embedded
shapes dataset, report mAP@0.5 per class on its val split, and draw figures.

    python demo.py --out outputs/demo        # 1,400 iterations, AdamW (make demo)
    make long                                # the longer schedule, SGD (see Makefile)

Everything is offline: the backbone starts from random weights
(`pretrained=False`) and the data is generated locally.
"""
import argparse
import json
import os
import sys
import time
from typing import Optional

# On a CPU shared with other jobs, OpenMP threads that spin while waiting
# slow training down several times; let them sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from kit import presets  # noqa: E402
from kit.anchors import fpn_anchors  # noqa: E402
from kit.data import GT_PADDING  # noqa: E402


def build_detector(num_classes: int, fpn_channels: Optional[int] = None,
                   image_size: Optional[int] = None):
    """
    The reference detector with settings for small images trained from
    scratch: the "demo" preset of `kit.presets` (why its anchors are what they
    are is written there). Anchors scale with `image_size` (shapes objects
    are sized relative to the image): 2.5 x stride at 160 px.

    Args:
        num_classes: number of object classes (without background).
        fpn_channels: width of the FPN and of both stems (default: the preset's, 48).
        image_size: size of the images (default: the preset's, 160 px).

    Returns:
        `FasterRCNN` built from `common.py` and `two_stage_detector.py`.
    """
    stem = {"stem_channels": [fpn_channels]} if fpn_channels else {}
    return presets.build_detector("demo", num_classes, image_size=image_size,
                                  fpn_channels=fpn_channels, rpn=stem, roi=stem)


class RandomFlips(torch.utils.data.Dataset):
    """
    `dataset` with random horizontal flips (probability 1/2) of the image
    and its GT boxes, and optionally vertical ones. Every shapes class is
    left-right symmetric, so a mirrored image is another valid one; triangles
    and stars always point up, so vertical flips make shapes that the val
    split never shows (they cost mAP in short runs: see bench/NOTES.md).

    Args:
        dataset: items `(path, image (3, S, S), gt_boxes (M, 5))`, GT padded
            with rows of `GT_PADDING` (-1), as `a4_helper.VOC2007DetectionTiny`
            returns them.
        seed: seed of the flips' random generator.
        vertical: also flip upside down with probability 1/2.
    """

    def __init__(self, dataset, seed: int = 0, vertical: bool = False):
        self.dataset = dataset
        self.vertical = vertical
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        path, image, gt = self.dataset[index]
        height, width = image.shape[-2:]
        flip_x, flip_y = (torch.rand(2, generator=self.generator) < 0.5).tolist()
        flip_y = flip_y and self.vertical
        gt = gt.clone()
        valid = gt[:, 4] != GT_PADDING
        if flip_x:
            image = image.flip(-1)
            gt[valid, 0], gt[valid, 2] = width - gt[valid, 2], width - gt[valid, 0]
        if flip_y:
            image = image.flip(-2)
            gt[valid, 1], gt[valid, 3] = height - gt[valid, 3], height - gt[valid, 1]
        return path, image, gt


@torch.no_grad()
def rpn_proposals(detector, image: torch.Tensor, topk: int = 20):
    """
    The RPN's proposals of one image `(3, H, W)` before and after its NMS:
    the `topk` of highest objectness over all FPN levels, each `(K, 4)`.

    After NMS: what `detector.rpn` hands the second stage (at most its
    `post_nms_topk` per level). Before NMS: the candidates its NMS starts
    from, made with the RPN's own pieces (its anchors, decoded with
    `rcnn_apply_deltas_to_anchors` and clamped to the image, then its
    `pre_nms_topk` per level).
    """
    from two_stage_detector import rcnn_apply_deltas_to_anchors

    rpn, strides = detector.rpn, detector.backbone.fpn_strides
    device = next(detector.parameters()).device
    detector.eval()
    feats = detector.backbone(image[None].to(device))
    proposals = rpn(feats, strides)["proposals"]
    logits, deltas = rpn.pred_net(feats)
    # The image size as the RPN sees it: its p3 map times the stride.
    width, height = (feats["p3"].shape[d] * strides["p3"] for d in (3, 2))
    _, anchors = fpn_anchors((width, height), strides, rpn.anchor_stride_scale,
                             rpn.anchor_aspect_ratios, device)
    before, after = [], []
    for level in anchors:
        boxes = rcnn_apply_deltas_to_anchors(deltas[level][0], anchors[level])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        scores, order = logits[level][0].topk(min(rpn.pre_nms_topk, len(boxes)))
        candidates = boxes[order]
        before.append((scores, candidates))
        # Every proposal the RPN kept is one of these candidates: its objectness.
        kept = proposals[level][0]
        after.append((scores[torch.cdist(kept, candidates, p=1).argmin(1)], kept))
    return _highest(before, topk), _highest(after, topk)


def _highest(scored_boxes, topk: int) -> torch.Tensor:
    """The `topk` boxes of highest score of `[(scores (N,), boxes (N, 4)), ...]`, on the CPU."""
    scores = torch.cat([s for s, _ in scored_boxes])
    boxes = torch.cat([b for _, b in scored_boxes])
    return boxes[scores.argsort(descending=True)[:topk]].cpu()


def anchor_sizes(stride_scale: float, strides) -> str:
    """The anchor sizes of the FPN levels as a label, e.g. "64/128/256"."""
    return "/".join(f"{stride_scale * s:g}" for s in strides.values())


def draw_figures(detector, out: str, train_set, val_set, history, result, image_size: int):
    """Write the demo's PNG figures into `out` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import a4_helper as helper
    from two_stage_detector import RPN, rcnn_match_anchors_to_gt

    paths = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    if history is not None:
        save(helper.plot_losses(history), "losses.png")

    # Anchors and matches on real photographs.
    photos = helper.VOC2007DetectionTiny(helper.photos_dataset_dir(), split="photos",
                                         image_size=image_size)
    strides = detector.backbone.fpn_strides
    scale, ratios = detector.rpn.anchor_stride_scale, detector.rpn.anchor_aspect_ratios
    locations, anchors = fpn_anchors((image_size, image_size), strides, scale, ratios)
    _, image, gt = photos[photos.ids.index("astronaut")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, level in zip(axes, strides):
        # Aspect ratio 1.0 only: every len(ratios)-th anchor, offset by its index.
        level_anchors = anchors[level][ratios.index(1.0) :: len(ratios)]
        helper.draw_anchors(image, level_anchors, centers=locations[level], ax=ax,
                            max_anchors=12, title=f"{level}: stride {strides[level]}, "
                            f"{scale * strides[level]:g} px anchors (ratio 1, 12 shown)")
    save(fig, "anchors.png")

    # Matching on photos uses the course's VOC settings (the "course" preset:
    # 224 px images, anchors of 8 x stride = 64, 128, 256 px), made for
    # objects that fill much of the picture, as photographed objects do.
    course = presets.preset_config("course")
    course_rpn = RPN(course["fpn_channels"], **course["rpn"])
    photos_course = helper.VOC2007DetectionTiny(helper.photos_dataset_dir(), split="photos",
                                                image_size=course["image_size"])
    _, anchors_course = fpn_anchors((course["image_size"],) * 2, strides,
                                    course_rpn.anchor_stride_scale,
                                    course_rpn.anchor_aspect_ratios)
    all_anchors = torch.cat(list(anchors_course.values()))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, name in zip(axes, ["astronaut", "stereo_motorcycle", "chelsea"]):
        _, image, gt = photos_course[photos_course.ids.index(name)]
        matched = rcnn_match_anchors_to_gt(all_anchors, gt, course_rpn.anchor_iou_thresholds)
        helper.draw_matches(image, all_anchors, matched, gt, ax=ax,
                            title=f"{name}\n{anchor_sizes(course_rpn.anchor_stride_scale, strides)} "
                            f"px anchors, IoU {course_rpn.anchor_iou_thresholds}")
    save(fig, "matches.png")

    # The same on shapes images with the demo detector's anchors.
    all_anchors = torch.cat(list(anchors.values()))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, i in zip(axes, [1, 2, 3]):
        path, image, gt = val_set[i]
        matched = rcnn_match_anchors_to_gt(all_anchors, gt, detector.rpn.anchor_iou_thresholds)
        helper.draw_matches(image, all_anchors, matched, gt, ax=ax,
                            title=f"{os.path.basename(path)}\n"
                            f"{anchor_sizes(scale, strides)} px anchors, IoU "
                            f"{detector.rpn.anchor_iou_thresholds}")
    save(fig, "matches_shapes.png")

    # Proposals and detections of the trained detector on val images.
    _, image, gt = val_set[0]
    before, after = rpn_proposals(detector, image, topk=20)
    save(helper.draw_proposals(image, before, after, topk=20,
                               title="RPN proposals of the trained detector (val image 0)"),
         "proposals.png")

    fig, axes = plt.subplots(2, 4, figsize=(14, 7.4))
    for i, ax in enumerate(axes.flat):
        path, image, gt = val_set[i]
        pred = result["predictions"][i]
        keep = pred["scores"] >= 0.5
        boxes = torch.cat([pred["boxes"][keep], pred["labels"][keep, None].float(),
                           pred["scores"][keep, None]], dim=1)
        helper.detection_visualizer(image, val_set.class_names, gt_boxes=gt, pred_boxes=boxes,
                                    ax=ax, title=os.path.basename(path))
    fig.suptitle("val images: GT dashed white, detections with score >= 0.5 coloured by class")
    fig.tight_layout()
    save(fig, "detections.png")
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def default_processes(device, args) -> int:
    """
    Data-parallel training processes: on a CPU with two or more cores, two
    processes of one thread each train faster than one process of two
    threads (bench/NOTES.md, "The demo"); on a GPU, one.
    """
    if device.type != "cpu" or (os.cpu_count() or 1) < 2 or args.resume or args.batch_size % 2:
        return 1
    return 2 if _loopback_works() else 1


def _loopback_works() -> bool:
    """The processes exchange gradients over 127.0.0.1 (gloo): can we listen there?"""
    import socket

    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
        return True
    except OSError as error:
        print(f"Training in one process: no local TCP socket for data-parallel training ({error}).")
        return False


def _make_detector(args, num_classes: int, device):
    """The demo's detector, seeded, through the fast path unless --reference."""
    import a4_helper as helper

    helper.reset_seed(args.seed)
    detector = build_detector(num_classes, args.fpn_channels, args.image_size)
    if not args.reference:
        from fast_detector import FastFasterRCNN

        # Same weights and losses, faster second stage; bf16 autocast on GPU.
        detector = FastFasterRCNN.from_reference(
            detector, autocast_dtype=torch.bfloat16 if device.type == "cuda" else None
        )
    if args.init:
        state = torch.load(args.init, map_location="cpu", weights_only=False)
        detector.load_state_dict(state.get("model", state))
        print(f"Initialized from {args.init}")
    return detector


def _train(detector, args, train_set, device, checkpoint, rank: int = 0, processes: int = 1):
    """
    `train_detector` on this process's share of the train split: every
    `processes`-th image from `rank` on, `args.batch_size // processes` per
    iteration. Only rank 0 shows progress and writes the checkpoint.
    """
    import a4_helper as helper

    share = train_set if processes == 1 else torch.utils.data.Subset(
        train_set, range(rank, len(train_set), processes))
    seed = args.seed + rank
    loader = torch.utils.data.DataLoader(
        RandomFlips(share, seed, vertical=args.vertical_flips) if args.flips else share,
        batch_size=args.batch_size // processes, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return helper.train_detector(
        detector, loader, learning_rate=args.lr, weight_decay=args.weight_decay,
        max_iters=args.iters, log_period=10, device=device, amp=device.type == "cuda",
        checkpoint_path=checkpoint if rank == 0 else None, seed=seed, progress=rank == 0,
        warmup_iters=min(50, args.iters // 5) if args.warmup is None else args.warmup,
        grad_clip=args.grad_clip or None, optimizer=args.optimizer, schedule=args.schedule,
    )


class _Unwrapped(torch.nn.Module):
    """
    A `DistributedDataParallel` module whose `state_dict` is that of the
    module inside, so that checkpoints load into the plain detector.
    """

    def __init__(self, ddp):
        super().__init__()
        self.ddp = ddp

    def forward(self, *args, **kwargs):
        return self.ddp(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.ddp.module.state_dict(*args, **kwargs)


def _train_process(rank: int, processes: int, args, device):
    """One of the data-parallel training processes (`torch.multiprocessing.spawn`)."""
    import tempfile

    import torch.distributed as dist

    import a4_helper as helper

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    if rank > 0:  # one progress report: rank 0's
        sys.stdout = open(os.devnull, "w")
    rendezvous = os.path.join(tempfile.gettempdir(), f"demo-ddp-{os.getppid()}")
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=processes)
    try:
        train_set = helper.VOC2007DetectionTiny(
            helper.ensure_shapes_dataset(num_train=args.train_images), "train",
            image_size=args.image_size, cache=True)
        detector = _make_detector(args, train_set.num_classes, device)
        ddp = torch.nn.parallel.DistributedDataParallel(detector)  # averages the gradients
        _train(_Unwrapped(ddp), args, train_set, device, os.path.join(args.out, "detector.pt"),
               rank=rank, processes=processes)
    finally:
        dist.destroy_process_group()
        if rank == 0 and os.path.exists(rendezvous):
            os.remove(rendezvous)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/demo", help="folder for figures, metrics, checkpoint")
    parser.add_argument("--iters", type=int, default=1400,
                        help="training iterations (0 with --init: only evaluate and draw)")
    parser.add_argument("--image-size", type=int, default=presets.PRESETS["demo"]["image_size"])
    parser.add_argument("--batch-size", type=int, default=16)
    # The defaults are the short demo's recipe (see bench/NOTES.md, "The demo");
    # `make long` gives the course's SGD recipe explicitly.
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="adamw")
    parser.add_argument("--schedule", choices=["step", "cosine"], default="cosine",
                        help="step: /10 at 60%% and 90%% of --iters; cosine: down to 0 at --iters")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, default=None,
                        help="linear warm-up iterations (default: min(50, iters / 5))")
    parser.add_argument("--grad-clip", type=float, default=10.0,
                        help="clip the gradient norm to this (0: no clipping)")
    parser.add_argument("--flips", action=argparse.BooleanOptionalAction, default=True,
                        help="random horizontal flips of the training images")
    parser.add_argument("--vertical-flips", action=argparse.BooleanOptionalAction, default=False,
                        help="with --flips, also random vertical flips")
    parser.add_argument("--val-images", type=int, default=None,
                        help="evaluate on the first N val images only (default: all 500)")
    parser.add_argument("--fpn-channels", type=int, default=presets.PRESETS["demo"]["fpn_channels"])
    parser.add_argument("--train-images", type=int, default=2000,
                        help="size of the generated train split; more than the default 2,000 keeps a "
                             "long schedule from overfitting (the val split stays the same 500 images)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--processes", type=int, default=None,
                        help="data-parallel training processes, each with --batch-size / N images "
                             "per iteration (default: 2 on a CPU with 2 or more cores, else 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/detector.pt")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="start from the weights of this checkpoint (a detector.pt written by "
                             "an earlier run) with a fresh optimizer and learning-rate schedule")
    parser.add_argument("--test-nms-thresh", type=float, default=0.4,
                        help="class-wise NMS threshold of the evaluation (see README)")
    parser.add_argument("--ignore-difficult", action=argparse.BooleanOptionalAction, default=True,
                        help="ignore detections of difficult objects, as the VOC devkit does "
                             "(--no-ignore-difficult counts them as false positives)")
    parser.add_argument("--reference", action="store_true",
                        help="train the plain reference FasterRCNN instead of the batched fast path "
                             "(fast_detector.FastFasterRCNN: same modules, losses and detections)")
    args = parser.parse_args(argv)
    if args.iters == 0 and not args.init:
        parser.error("--iters 0 only evaluates: give the weights with --init CHECKPOINT")
    if args.processes is not None and args.processes > 1:
        if args.batch_size % args.processes:
            parser.error(f"--batch-size {args.batch_size} does not split into {args.processes} processes")
        if args.resume:
            parser.error("--resume continues in one process: add --processes 1")
        if (args.device or "cpu") != "cpu":
            parser.error("--processes is for training on CPU cores; on a GPU train in one process")

    import a4_helper as helper

    start, start_cpu = time.time(), cpu_seconds()
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"Device: {device}; torch threads: {torch.get_num_threads()}")
    dataset_dir = helper.ensure_shapes_dataset()
    train_dir = helper.ensure_shapes_dataset(num_train=args.train_images)
    train_set = helper.VOC2007DetectionTiny(train_dir, "train", image_size=args.image_size, cache=True)
    val_set = helper.VOC2007DetectionTiny(dataset_dir, "val", image_size=args.image_size, cache=True)
    print(f"Data: {len(train_set)} train / {len(val_set)} val images, classes {train_set.class_names} "
          f"({time.time() - start:.0f} s so far)")

    processes = args.processes or default_processes(device, args)
    checkpoint = os.path.join(args.out, "detector.pt")
    if args.iters > 0 and not args.resume and os.path.exists(checkpoint):
        os.remove(checkpoint)
    history = None
    if args.iters > 0 and processes > 1:
        print(f"Training in {processes} data-parallel processes of "
              f"{max(1, (os.cpu_count() or 1) // processes)} thread(s), "
              f"{args.batch_size // processes} images each per iteration")
        torch.multiprocessing.spawn(_train_process, args=(processes, args, device), nprocs=processes)
        detector = _make_detector(args, train_set.num_classes, device)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        detector.load_state_dict(state["model"])
        history = state["history"]
    else:
        detector = _make_detector(args, train_set.num_classes, device)
        if args.iters > 0:
            history = _train(detector, args, train_set, device, checkpoint)
    train_time = time.time() - start
    train_cpu = cpu_seconds() - start_cpu

    eval_set = val_set
    if args.val_images is not None:
        eval_set = torch.utils.data.Subset(val_set, range(min(args.val_images, len(val_set))))
    val_loader = torch.utils.data.DataLoader(eval_set, batch_size=16)
    result = helper.inference_with_detector(detector, val_loader, val_set.class_names,
                                            score_thresh=0.05, nms_thresh=args.test_nms_thresh,
                                            device=device, ignore_difficult=args.ignore_difficult)
    print(f"\nmAP@0.5 on the shapes val split ({result['num_images']} images, "
          "COCO-style 101-point interpolated AP; "
          + (f"{result['num_ignored']} detections of difficult objects ignored):"
             if args.ignore_difficult else "detections of difficult objects count as false "
             "positives):"))
    print(helper.format_ap_table(result, val_set.class_names))

    paths = draw_figures(detector, args.out, train_set, val_set, history, result, args.image_size)
    metrics = {"map50": result["map50"], "per_class": result["per_class"], "iters": args.iters,
               "image_size": args.image_size, "batch_size": args.batch_size, "lr": args.lr,
               "optimizer": args.optimizer, "schedule": args.schedule, "flips": args.flips,
               "vertical_flips": args.vertical_flips,
               "train_images": len(train_set), "init": args.init,
               "test_nms_thresh": args.test_nms_thresh, "ignore_difficult": args.ignore_difficult,
               "num_ignored": result["num_ignored"],
               "device": str(device), "torch_threads": torch.get_num_threads(),
               "processes": processes,
               "train_seconds": round(train_time, 1),
               # CPU time of this process: a measure of the work that other
               # processes on a shared machine hardly affect.
               "train_cpu_seconds": round(train_cpu, 1),
               "total_seconds": round(time.time() - start, 1)}
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"\nWrote {', '.join(paths + [os.path.join(args.out, 'metrics.json')])}")
    print(f"Total time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
