"""
Speed benchmark: this kit's Faster R-CNN against torchvision's, side by side.

Builds, in one process, the detectors below in the same configuration, the
"bench" preset of `kit/presets.py` (RegNet-X 400MF c3-c5 + FPN, 224 px images,
3 anchors per location of 8 x stride, 400 pre-NMS proposals per level and 300
post-NMS proposals per image, 7x7 RoI-Align), feeds all of them the same
random batches, and prints training and inference images/s, peak memory and
the ratios to torchvision. It also times the pure-PyTorch `common.nms` against
`torchvision.ops.nms` on 5,000 boxes.

    reference    `two_stage_detector.FasterRCNN`, run as the notebooks run it
                 (inference one image at a time: its `inference` takes B = 1)
    fast         `fast_detector.FastFasterRCNN`: the same modules and weights,
                 batched provided pipeline (what training uses by default)
    torchvision  `torchvision.models.detection.FasterRCNN` configured like ours
    backbone     the limit: `DetectorBackboneWithFPN` alone (RegNet-X 400MF +
                 FPN), forward and backward of a dummy loss on its features,
                 same batch and flags; no detector can be faster than this

Measurements of the detectors are interleaved (A B C, B C A, ...) and repeated,
and medians are reported, so that load from other processes on a shared
machine hits all of them alike.

Usage:
    python bench/benchmark.py                          # CPU, batch 8
    python bench/benchmark.py --device cuda --batch-size 128 --amp --channels-last
    python bench/benchmark.py --quick                  # CI smoke run
    python bench/benchmark.py --json outputs/bench.json    # also write the figures
"""
import argparse
import ctypes
import json
import gc
import os
import statistics
import sys
import threading
import time
from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models import feature_extraction
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import common  # noqa: E402
from common import DetectorBackboneWithFPN  # noqa: E402
from kit.presets import PRESETS, build_detector, preset_config  # noqa: E402
from kit.data import GT_PADDING  # noqa: E402

try:  # the batched fast path (absent in old checkouts)
    from fast_detector import FastFasterRCNN  # noqa: E402
except ImportError:  # pragma: no cover
    FastFasterRCNN = None

BENCH = PRESETS["bench"]
IMAGE_SIZE = BENCH["image_size"]
MAX_GT = 40  # GT rows per image, padded with GT_PADDING rows (the dataset's format)


# --------------------------------------------------------------- detectors
def overrides(cfg):
    """The command line's changes to the "bench" preset (`kit.presets`)."""
    c = cfg.fpn_channels
    return dict(fpn_channels=c,
                rpn={"stem_channels": [c] * cfg.rpn_stem_depth,
                     "batch_size_per_image": cfg.rpn_batch_per_image},
                roi={"stem_channels": [c] * cfg.roi_stem_depth,
                     "batch_size_per_image": cfg.roi_batch_per_image})


def build_reference(cfg):
    """This kit's `FasterRCNN` in the benchmark configuration."""
    return build_detector("bench", cfg.num_classes, **overrides(cfg))


class RegNetFPN(nn.Module):
    """
    RegNet-X 400MF c3-c5 + torchvision's `FeaturePyramidNetwork`, without the
    extra max-pool level that `BackboneWithFPN` would add (we use 3 levels).
    """

    def __init__(self, out_channels):
        super().__init__()
        self.body = feature_extraction.create_feature_extractor(
            torchvision.models.regnet_x_400mf(),
            return_nodes={
                "trunk_output.block2": "c3",
                "trunk_output.block3": "c4",
                "trunk_output.block4": "c5",
            },
        )
        with torch.no_grad():
            shapes = [v.shape[1] for v in self.body(torch.zeros(1, 3, 64, 64)).values()]
        self.fpn = FeaturePyramidNetwork(shapes, out_channels, extra_blocks=None)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def conv_stem(in_channels, stem_channels):
    layers = []
    for out_channels in stem_channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        in_channels = out_channels
    return layers


def build_torchvision(cfg):
    """torchvision's `FasterRCNN` configured like ours (see NOTES.md)."""
    bench = preset_config("bench", **overrides(cfg))
    c, rpn, roi = bench["fpn_channels"], bench["rpn"], bench["roi"]
    strides = list(common.FPN_STRIDES.values())
    anchor_generator = AnchorGenerator(
        sizes=tuple((rpn["anchor_stride_scale"] * s,) for s in strides),  # scale x stride
        aspect_ratios=(tuple(rpn["anchor_aspect_ratios"]),) * len(strides),  # h / w, as ours
    )
    low, high = rpn["anchor_iou_thresholds"]
    roi_low, roi_high = roi["proposal_iou_thresholds"]
    roi_h, roi_w = roi["roi_size"]
    return TorchvisionFasterRCNN(
        RegNetFPN(c),
        num_classes=None,  # given by box_predictor (20 classes + background)
        # Our batches are 224 px and already normalised: no resize, identity
        # normalisation (the transform still runs, as it does for every user).
        min_size=IMAGE_SIZE,
        max_size=IMAGE_SIZE,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchor_generator,
        rpn_head=RPNHead(c, len(rpn["anchor_aspect_ratios"]),
                         conv_depth=len(rpn["stem_channels"])),
        rpn_pre_nms_top_n_train=rpn["pre_nms_topk"],  # per level, like ours
        rpn_pre_nms_top_n_test=rpn["pre_nms_topk"],
        # Per image: ours is per level.
        rpn_post_nms_top_n_train=rpn["post_nms_topk"] * len(strides),
        rpn_post_nms_top_n_test=rpn["post_nms_topk"] * len(strides),
        rpn_nms_thresh=rpn["nms_thresh"],
        rpn_fg_iou_thresh=high,
        rpn_bg_iou_thresh=low,
        rpn_batch_size_per_image=rpn["batch_size_per_image"],
        rpn_positive_fraction=rpn["fg_fraction"],
        box_roi_pool=MultiScaleRoIAlign(["c3", "c4", "c5"], output_size=(roi_h, roi_w),
                                        sampling_ratio=-1),
        # Our second stage: a conv stem on the RoI features, then a linear
        # classifier (torchvision's predictor adds class-wise box regression).
        box_head=nn.Sequential(*conv_stem(c, roi["stem_channels"]), nn.Flatten()),
        box_predictor=FastRCNNPredictor(roi["stem_channels"][-1] * roi_h * roi_w,
                                        cfg.num_classes + 1),
        box_score_thresh=cfg.score_thresh,
        box_nms_thresh=cfg.nms_thresh,
        box_detections_per_img=100,
        box_fg_iou_thresh=roi_high,
        box_bg_iou_thresh=roi_low,
        box_batch_size_per_image=roi["batch_size_per_image"],
        box_positive_fraction=roi["fg_fraction"],
    )


# ----------------------------------------------------------------- batches
def random_batch(batch_size, num_classes, generator):
    """
    One batch in both formats: images `(B, 3, 224, 224)`, our GT `(B, 40, 5)`
    padded with -1, and torchvision's list of {"boxes", "labels"} targets.
    """
    images = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    gt = torch.full((batch_size, MAX_GT, 5), GT_PADDING)
    targets = []
    for i in range(batch_size):
        n = int(torch.randint(1, 7, (1,), generator=generator))
        xy = torch.rand(n, 2, generator=generator) * (IMAGE_SIZE - 40)
        wh = 16 + torch.rand(n, 2, generator=generator) * (IMAGE_SIZE - 16 - xy)
        boxes = torch.cat([xy, (xy + wh).clamp(max=IMAGE_SIZE)], dim=1)
        labels = torch.randint(0, num_classes, (n,), generator=generator)
        gt[i, :n, :4] = boxes
        gt[i, :n, 4] = labels.float()
        targets.append({"boxes": boxes, "labels": labels + 1})
    return images, gt, targets


# ---------------------------------------------------------------- memory
class PeakMemory:
    """
    Peak memory of one phase. CUDA: exact, from the caching allocator. CPU:
    growth of the process's resident set over its level at the start of the
    phase, sampled every 2 ms (freed heap is trimmed back first, so phases
    do not inherit each other's peaks; approximate).
    """

    def __init__(self, device):
        self.device = device
        self.peak = 0

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            self.base = self.peak = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
        self.mib = (self.peak - self.base) / 2**20


# ------------------------------------------------------------ run steps
class Runner:
    """Train / inference steps of one detector on the shared batches."""

    def __init__(self, name, model, cfg, device, amp=False, channels_last=False):
        self.name, self.model, self.cfg, self.device = name, model, cfg, device
        self.kind = name.split("+")[0]  # "reference", "fast" or "torchvision"
        self.amp, self.channels_last = amp, channels_last
        self.model.to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4
        )

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def inputs(self, batch):
        images, gt, targets = batch
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, gt, targets

    def train_step(self, batch):
        images, gt, targets = self.inputs(batch)
        self.model.train()
        with self.autocast():
            if self.kind == "torchvision":
                losses = self.model(list(images), targets)
            elif self.kind == "backbone":
                losses = {"dummy": self.backbone_loss(images)}
            else:
                losses = self.model(images, gt)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def backbone_loss(self, images):
        # A dummy loss that reads every FPN level: the backward pass then
        # costs what it costs inside a detector.
        return sum(f.float().mean() for f in self.model(images).values())

    @torch.no_grad()
    def infer_step(self, batch):
        images, _, _ = self.inputs(batch)
        self.model.eval()
        kw = dict(test_score_thresh=self.cfg.score_thresh, test_nms_thresh=self.cfg.nms_thresh)
        with self.autocast():
            if self.kind == "torchvision":
                return self.model(list(images))
            if self.kind == "backbone":
                return self.model(images)
            if self.kind == "reference":  # its `inference` takes one image
                return [self.model(images[i : i + 1], **kw) for i in range(len(images))]
            return self.model(images, **kw)

    def timed(self, step, batches):
        """
        Images per second of wall-clock time, images per second of this
        process's CPU time (less sensitive to other processes on a shared
        machine), and peak memory (MiB) of `step` over `batches`.
        """
        with PeakMemory(self.device) as mem:
            sync(self.device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                step(batch)
            sync(self.device)
            elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        images = sum(len(b[0]) for b in batches)
        return images / elapsed, images / elapsed_cpu, mem.mib


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def to_device(batch, device):
    images, gt, targets = batch
    images = images.to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return images, gt.to(device), targets


# ------------------------------------------------------------------- nms
def time_fn(fn, repeats, device):
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_nms(device, num_boxes=5000, repeats=5):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(num_boxes, 2, generator=g) * IMAGE_SIZE * 0.8
    wh = 1 + torch.rand(num_boxes, 2, generator=g) * IMAGE_SIZE * 0.5
    boxes = torch.cat([xy, xy + wh], dim=1).to(device)
    scores = torch.rand(num_boxes, generator=g).to(device)
    rows = []
    for thr in (0.5, 0.7):
        common.nms(boxes, scores, thr)  # warm-up
        torchvision.ops.nms(boxes, scores, thr)
        t_ours, keep_ours = time_fn(lambda: common.nms(boxes, scores, thr), repeats, device)
        t_tv, keep_tv = time_fn(lambda: torchvision.ops.nms(boxes, scores, thr), repeats, device)
        same = torch.equal(keep_ours.cpu(), keep_tv.cpu())
        rows.append((thr, t_ours, t_tv, len(keep_tv), same))
    return rows


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when present)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 on CPU, 128 on CUDA")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations per detector and mode")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians reported)")
    p.add_argument(
        "--detectors",
        default="reference,fast,fast+amp,torchvision,torchvision+amp,backbone,backbone+amp",
        help="comma-separated; suffixes: '+amp' bf16 autocast and channels-last, '+cl' channels-last only",
    )
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for every detector")
    p.add_argument("--channels-last", action="store_true", help="channels-last for every detector")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    # Changes to the "bench" preset (kit/presets.py); the defaults are its values.
    p.add_argument("--fpn-channels", type=int, default=BENCH["fpn_channels"])
    p.add_argument("--rpn-stem-depth", type=int, default=len(BENCH["rpn"]["stem_channels"]))
    p.add_argument("--roi-stem-depth", type=int, default=len(BENCH["roi"]["stem_channels"]))
    p.add_argument("--rpn-batch-per-image", type=int, default=BENCH["rpn"]["batch_size_per_image"])
    p.add_argument("--roi-batch-per-image", type=int, default=BENCH["roi"]["batch_size_per_image"])
    p.add_argument("--num-classes", type=int, default=20)
    p.add_argument("--score-thresh", type=float, default=0.05)
    p.add_argument("--nms-thresh", type=float, default=0.5)
    p.add_argument("--nms-boxes", type=int, default=5000, help="0 skips the NMS timing")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 2, 1 warm-up, 1 iter, 1 repeat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(cfg.device)
    if cfg.batch_size is None:
        cfg.batch_size = 128 if device.type == "cuda" else 8
    if cfg.quick:
        cfg.batch_size, cfg.warmup, cfg.iters, cfg.repeats = min(cfg.batch_size, 2), 1, 1, 1
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    names = [n.strip() for n in cfg.detectors.split(",") if n.strip()]
    if FastFasterRCNN is None:
        names = [n for n in names if not n.startswith("fast")]
    modes = [m.strip() for m in cfg.modes.split(",") if m.strip()]

    print(f"device: {device} ({device_name(device)}), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, threads {torch.get_num_threads()}")
    print(f"batch {cfg.batch_size}, warm-up {cfg.warmup}, {cfg.iters} iters x {cfg.repeats} "
          f"repeats, amp(bf16) {cfg.amp}, channels_last {cfg.channels_last}")

    builders = {
        "reference": build_reference,
        # Precision and memory format come from the flags, as for the others.
        "fast": lambda c: FastFasterRCNN.from_reference(build_reference(c), channels_last=False),
        "torchvision": build_torchvision,
        "backbone": lambda c: DetectorBackboneWithFPN(c.fpn_channels, pretrained=False),
    }
    runners = {}
    for name in names:
        kind, _, flags = name.partition("+")
        if kind not in builders or flags not in ("", "amp", "cl"):
            raise SystemExit(
                f"unknown detector {name!r}: use reference, fast, torchvision or backbone, optionally "
                "with '+amp' (bf16 autocast and channels-last) or '+cl' (channels-last)"
            )
        torch.manual_seed(cfg.seed)
        amp = cfg.amp or flags == "amp"
        channels_last = cfg.channels_last or flags in ("amp", "cl")
        runners[name] = Runner(name, builders[kind](cfg), cfg, device, amp, channels_last)

    g = torch.Generator().manual_seed(cfg.seed)
    n_batches = max(cfg.warmup, cfg.iters)
    batches = [
        to_device(random_batch(cfg.batch_size, cfg.num_classes, g), device)
        for _ in range(n_batches)
    ]

    results = {(n, m): [] for n in names for m in modes}
    cpu_results = {(n, m): [] for n in names for m in modes}
    peaks = {(n, m): 0.0 for n in names for m in modes}
    for mode in modes:
        for name in names:  # warm-up
            r = runners[name]
            step = r.train_step if mode == "train" else r.infer_step
            for batch in batches[: cfg.warmup]:
                step(batch)
        for rep in range(cfg.repeats):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                r = runners[name]
                step = r.train_step if mode == "train" else r.infer_step
                ips, ips_cpu, mib = r.timed(step, batches[: cfg.iters])
                results[(name, mode)].append(ips)
                cpu_results[(name, mode)].append(ips_cpu)
                peaks[(name, mode)] = max(peaks[(name, mode)], mib)

    print()
    def median(name, mode):
        return statistics.median(results[(name, mode)]) if (name, mode) in results else None

    def cpu_median(name, mode):
        vals = cpu_results.get((name, mode))
        return statistics.median(vals) if vals else None

    print(f"{'detector':<16} {'mode':<6} {'images/s':>9} {'min..max':>15} {'img/CPU-s':>10} "
          f"{'peak MiB':>9} {'/ torchvision':>14} {'/ same flags':>13} {'/ backbone':>11}")
    rows = []
    for mode in modes:
        tv = median("torchvision", mode)
        for name in names:
            vals = results[(name, mode)]
            med = statistics.median(vals)
            flags = name[len(runners[name].kind):]
            twin = median("torchvision" + flags, mode)
            limit = median("backbone" + flags, mode)
            cpu = cpu_median(name, mode)
            print(f"{name:<16} {mode:<6} {med:>9.1f} {min(vals):>7.1f}..{max(vals):<6.1f} "
                  f"{cpu:>10.1f} {peaks[(name, mode)]:>9.0f} {fmt_ratio(med, tv):>14} "
                  f"{fmt_ratio(med, twin):>13} {fmt_ratio(med, limit, percent=True):>11}")
            rows.append({
                "detector": name, "mode": mode, "images_per_s": med, "min": min(vals), "max": max(vals),
                "images_per_cpu_s": cpu, "peak_mib": peaks[(name, mode)],
                "vs_torchvision": med / tv if tv else None, "vs_torchvision_same_flags": med / twin if twin else None,
                "share_of_backbone": med / limit if limit else None,
                "share_of_backbone_cpu_s": cpu / cpu_median("backbone" + flags, mode)
                if cpu_median("backbone" + flags, mode) else None,
            })
    print("(images/s: wall clock, median of the repeats; img/CPU-s: per second of this process's")
    print(" CPU time; ratios use images/s: '/ torchvision' to torchvision's plain fp32 run,")
    print(" '/ same flags' to torchvision with the same precision and memory format, '/ backbone'")
    print(" the share of the backbone-alone throughput (the limit row) with the same flags)")
    targets = print_targets(device, cfg, names, median, cpu_median)
    print()

    nms_rows = []
    if cfg.nms_boxes:
        print()
        print(f"nms on {cfg.nms_boxes} random boxes ({device.type}):")
        for thr, t_ours, t_tv, kept, same in bench_nms(device, cfg.nms_boxes):
            print(f"  iou {thr}: common.nms {t_ours * 1e3:8.2f} ms, torchvision.ops.nms "
                  f"{t_tv * 1e3:7.2f} ms, ratio {t_ours / t_tv:6.1f}x, kept {kept}, "
                  f"same indices: {same}")
            nms_rows.append({"iou": thr, "common_nms_ms": t_ours * 1e3, "torchvision_ms": t_tv * 1e3,
                             "kept": kept, "same_indices": same})
        print("  target: common.nms within 3x of torchvision.ops.nms on GPU")

    if cfg.json:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.json)), exist_ok=True)
        with open(cfg.json, "w") as f:
            json.dump({"device": str(device), "device_name": device_name(device),
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "batch_size": cfg.batch_size, "rows": rows, "targets": targets,
                       "nms": nms_rows}, f, indent=2)
        print(f"wrote {cfg.json}")


def fmt_ratio(value, reference, percent=False):
    if not reference:
        return "-"
    return f"{100 * value / reference:.0f} %" if percent else f"{value / reference:.2f}x"


def print_targets(device, cfg, names, median, cpu_median):
    """
    The speed goals (goals, not assertions) against this run; returns them
    as a list of dicts for the JSON output.
    """
    targets = []

    def report(text, value, goal):
        met = value is not None and value >= goal
        print(f"target: {text} -> {'met' if met else 'not met'}")
        targets.append({"target": text, "value": value, "goal": goal, "met": met})

    fast = [n for n in names if n.startswith("fast")]
    if not fast:
        return targets
    best = {m: max(fast, key=lambda n: median(n, m) or 0) for m in ("train", "infer")}
    if device.type == "cuda":
        for mode, goal in (("train", 2500), ("infer", 5000)):
            got = median(best[mode], mode)
            if got:
                note = "" if cfg.batch_size == 128 else f", measured at batch {cfg.batch_size}"
                report(f"(H100 class, batch 128) {mode} >= {goal} img/s: {best[mode]} {got:.0f} img/s{note}",
                       got, goal)
        return targets
    for mode in ("train", "infer"):
        # Same flags: each fast variant against torchvision with its flags.
        pairs = [(n, "torchvision" + n[len("fast"):]) for n in fast]
        pairs = [(n, t) for n, t in pairs if median(t, mode) and median(n, mode)]
        if pairs:
            name, twin = max(pairs, key=lambda p: median(p[0], mode) / median(p[1], mode))
            wall = median(name, mode) / median(twin, mode)
            cpu = cpu_median(name, mode) / cpu_median(twin, mode)
            report(f"(CPU) {mode} >= 2x torchvision, same flags: {name} / {twin} {wall:.2f}x wall clock, "
                   f"{cpu:.2f}x per CPU second", min(wall, cpu), 2.0)
        limits = [(n, "backbone" + n[len("fast"):]) for n in fast]
        limits = [(n, b) for n, b in limits if median(b, mode) and median(n, mode)]
        if limits:
            name, limit = max(limits, key=lambda p: median(p[0], mode) / median(p[1], mode))
            wall = median(name, mode) / median(limit, mode)
            cpu = cpu_median(name, mode) / cpu_median(limit, mode)
            report(f"(CPU) {mode} >= 70 % of the backbone alone: {name} {100 * wall:.0f} % wall clock, "
                   f"{100 * cpu:.0f} % per CPU second", min(wall, cpu), 0.7)
    return targets


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        return f"{model}, {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return "cpu"


if __name__ == "__main__":
    main()
