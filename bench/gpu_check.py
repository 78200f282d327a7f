"""
One prepared check of the kit on a GPU (`make gpu-check`), meant to fit in
8 minutes on one H100 / H200 without internet access:

    tests       the CUDA-relevant tests: device placement (simulated and
                real CUDA), the fast path against the reference, NMS
    notebook    notebooks/05_faster_rcnn.ipynb executed on CUDA with the
                short schedule (KIT_FAST=1, hidden tests stripped)
    train       the fast path trained on the shapes data: a few hundred
                iterations at batch 128 with bf16 autocast (AdamW, cosine)
    inference   mAP@0.5 and images/s of that detector on the shapes val split
    benchmark   bench/benchmark.py --device cuda --batch-size 128 against
                torchvision (goals: >= 2,500 training and >= 5,000 inference
                images/s), the backbone-alone limit row, NMS timings

Every step runs under its own time limit and the whole check under a global
one; a failing step is recorded and the next one runs. The summary goes to
OUT/summary.json and OUT/summary.md (OUT: outputs/gpu_check).

    python bench/gpu_check.py                 # on the GPU machine
    python bench/gpu_check.py --dry-run       # CPU, tiny sizes: the check itself works
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from kit.presets import PRESETS  # noqa: E402

TEST_FILES = ["tests/test_device_placement.py", "tests/test_fast_path.py", "tests/test_nms_blocks.py"]


# ------------------------------------------------------------------ steps
def run_subprocess(cmd, timeout, env=None):
    """Run `cmd` from the repository root; returns (returncode, output)."""
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        return proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return "timeout", out


def step_tests(cfg, timeout):
    files = ["tests/test_device_placement.py"] if cfg.dry_run else TEST_FILES
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    # The dry run of this check is a test itself: not again from here.
    cmd += ["-k", "simulator" if cfg.dry_run else "not gpu_check_dry_run"]
    code, out = run_subprocess(cmd, timeout)
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    return {"ok": code == 0, "returncode": code, "result": summary, **counts,
            "tail": out[-2000:] if code != 0 else ""}


def step_notebook(cfg, timeout):
    import nbformat
    from nbclient import NotebookClient

    path = os.path.join(ROOT, "notebooks", "05_faster_rcnn.ipynb")
    nb = nbformat.read(path, as_version=4)
    hidden = re.compile(r"^### BEGIN HIDDEN TESTS\n.*?^### END HIDDEN TESTS\n?", re.M | re.S)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        cell.source = hidden.sub("", cell.source)
    if cfg.notebook_cells:  # the dry run executes the first cells only
        keep = code_cells[: cfg.notebook_cells]
        nb.cells = [c for c in nb.cells if c.cell_type != "code" or c in keep]
    os.environ["KIT_FAST"] = "1"
    start = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    device = re.search(r"device=(\w+)", text)
    out_path = os.path.join(cfg.out, "05_faster_rcnn.executed.ipynb")
    nbformat.write(nb, out_path)
    return {"ok": True, "cells_executed": sum(c.cell_type == "code" for c in nb.cells),
            "device": device.group(1) if device else None, "seconds": round(time.time() - start, 1),
            "executed_notebook": os.path.relpath(out_path, ROOT)}


def shapes_sets(cfg):
    import a4_helper as helper

    root = helper.ensure_shapes_dataset()
    train = helper.VOC2007DetectionTiny(root, "train", image_size=cfg.image_size, cache=True)
    val = helper.VOC2007DetectionTiny(root, "val", image_size=cfg.image_size, cache=True)
    return train, val


def step_train(cfg, timeout, state):
    import a4_helper as helper
    import demo
    from fast_detector import FastFasterRCNN

    device = torch.device(cfg.device)
    train, val = shapes_sets(cfg)
    helper.reset_seed(0)
    detector = FastFasterRCNN.from_reference(
        demo.build_detector(train.num_classes, image_size=cfg.image_size),
        autocast_dtype=torch.bfloat16 if device.type == "cuda" else None,
    )
    loader = torch.utils.data.DataLoader(
        demo.RandomFlips(train), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
        num_workers=0, generator=torch.Generator().manual_seed(0),
    )
    timings = []

    class Timed:  # wraps the loader: the time of each iteration, synchronised
        def __iter__(self):
            for batch in loader:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                timings.append(time.perf_counter())
                yield batch

        def __len__(self):
            return len(loader)

    start = time.time()
    history = helper.train_detector(
        detector, Timed(), learning_rate=cfg.lr, weight_decay=0.05, max_iters=cfg.iters,
        log_period=max(1, cfg.iters // 10), device=device, seed=0, warmup_iters=max(1, cfg.iters // 10),
        grad_clip=10.0, optimizer="adamw", schedule="cosine", progress=False,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.time() - start
    steady = timings[len(timings) // 4 :]  # after warm-up (allocator, cuDNN autotuning)
    ips = (cfg.batch_size * (len(steady) - 1) / (steady[-1] - steady[0])) if len(steady) > 2 else None
    state["detector"], state["val"] = detector, val
    return {"ok": True, "iters": cfg.iters, "batch_size": cfg.batch_size, "image_size": cfg.image_size,
            "bf16": device.type == "cuda", "seconds": round(total, 1),
            "train_images_per_s": round(ips, 1) if ips else None,
            "loss_first": round(history["loss"][0], 4), "loss_last": round(history["loss"][-1], 4),
            "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None}


def step_inference(cfg, timeout, state):
    import a4_helper as helper

    if "detector" not in state:
        return {"ok": False, "error": "no trained detector (the train step failed)"}
    device = torch.device(cfg.device)
    detector, val = state["detector"], state["val"]
    subset = torch.utils.data.Subset(val, range(min(cfg.val_images, len(val))))
    loader = torch.utils.data.DataLoader(subset, batch_size=cfg.batch_size)
    start = time.time()
    result = helper.inference_with_detector(detector, loader, val.class_names, score_thresh=0.05,
                                            nms_thresh=0.4, device=device, progress=False)
    eval_seconds = time.time() - start
    # Raw batched inference speed on one batch, repeated (no mAP bookkeeping).
    _, images, _ = next(iter(loader))
    images = images.to(device)
    detector.eval()
    with torch.no_grad():
        for _ in range(2):
            detector.predict(images, 0.05, 0.4)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, reps = time.perf_counter(), 3 if cfg.dry_run else 10
        for _ in range(reps):
            detector.predict(images, 0.05, 0.4)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ips = len(images) * reps / (time.perf_counter() - t0)
    return {"ok": True, "val_images": len(subset), "map50": round(result["map50"], 4),
            "per_class": {k: round(v, 4) for k, v in result["per_class"].items()},
            "eval_seconds": round(eval_seconds, 1), "infer_images_per_s": round(ips, 1),
            "batch_size": len(images)}


def step_benchmark(cfg, timeout):
    json_path = os.path.join(cfg.out, "benchmark.json")
    cmd = [sys.executable, "bench/benchmark.py", "--device", cfg.device, "--json", json_path]
    if cfg.dry_run:
        cmd += ["--quick", "--fpn-channels", "16", "--nms-boxes", "300", "--threads", "1",
                "--detectors", "fast,torchvision,backbone"]
    else:
        cmd += ["--batch-size", "128", "--detectors",
                "fast,fast+amp,torchvision,torchvision+amp,backbone,backbone+amp"]
    code, out = run_subprocess(cmd, timeout)
    with open(os.path.join(cfg.out, "benchmark.txt"), "w") as f:
        f.write(out)
    result = {"ok": code == 0, "returncode": code, "output": os.path.relpath(
        os.path.join(cfg.out, "benchmark.txt"), ROOT)}
    if code == 0 and os.path.exists(json_path):
        with open(json_path) as f:
            figures = json.load(f)
        result.update(rows=figures["rows"], targets=figures["targets"], nms=figures["nms"])
    else:
        result["tail"] = out[-2000:]
    return result


# ---------------------------------------------------------------- summary
def environment(cfg):
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda_available": torch.cuda.is_available(), "device": cfg.device, "dry_run": cfg.dry_run}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported())
    return env


def write_markdown(path, summary):
    lines = ["# GPU check", "", f"- when: {summary['started']}", f"- total: {summary['seconds']} s"]
    lines += [f"- {k}: {v}" for k, v in summary["environment"].items()]
    lines += ["", "| step | status | seconds | key figures |", "| --- | --- | --- | --- |"]
    keys = {"tests": ["result"], "notebook": ["cells_executed", "device"],
            "train": ["iters", "batch_size", "train_images_per_s", "loss_first", "loss_last", "peak_mib"],
            "inference": ["map50", "infer_images_per_s", "val_images"], "benchmark": []}
    for name, step in summary["steps"].items():
        figures = ", ".join(f"{k} {step[k]}" for k in keys.get(name, []) if step.get(k) is not None)
        lines.append(f"| {name} | {step['status']} | {step.get('step_seconds', '')} | "
                     f"{figures or step.get('error', '')} |")
    bench = summary["steps"].get("benchmark", {})
    if bench.get("rows"):
        lines += ["", "## Benchmark", "", "| detector | mode | images/s | / torchvision | / same flags | / backbone |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in bench["rows"]:
            fmt = lambda v, pct=False: "-" if v is None else (f"{100 * v:.0f} %" if pct else f"{v:.2f}x")
            lines.append(f"| {r['detector']} | {r['mode']} | {r['images_per_s']:.1f} | "
                         f"{fmt(r['vs_torchvision'])} | {fmt(r['vs_torchvision_same_flags'])} | "
                         f"{fmt(r['share_of_backbone'], True)} |")
        lines += [""] + [f"- {'met' if t['met'] else 'NOT met'}: {t['target']}" for t in bench["targets"]]
        lines += [f"- nms iou {n['iou']}: common.nms {n['common_nms_ms']:.2f} ms, torchvision "
                  f"{n['torchvision_ms']:.2f} ms, same indices {n['same_indices']}" for n in bench["nms"]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the check itself")
    p.add_argument("--out", default=os.path.join(ROOT, "outputs", "gpu_check"))
    p.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    p.add_argument("--steps", default="tests,notebook,train,inference,benchmark")
    p.add_argument("--budget", type=float, default=480, help="seconds for the whole check")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default 300)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128")
    p.add_argument("--image-size", type=int, default=PRESETS["demo"]["image_size"])
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--val-images", type=int, default=None, help="default: all 500")
    p.add_argument("--notebook-cells", type=int, default=None, help="execute only the first N code cells")
    cfg = p.parse_args(argv)
    if cfg.dry_run:
        cfg.device = cfg.device or "cpu"
        cfg.iters = cfg.iters or 2
        cfg.batch_size = cfg.batch_size or 2
        cfg.val_images = cfg.val_images or 4
        cfg.notebook_cells = cfg.notebook_cells or 3
    else:
        cfg.device = cfg.device or "cuda"
        cfg.iters = cfg.iters or 300
        cfg.batch_size = cfg.batch_size or 128
        cfg.val_images = cfg.val_images or 500
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on the GPU machine, or use --dry-run")
    os.makedirs(cfg.out, exist_ok=True)

    # Time limits per step (seconds), cut to what is left of the budget.
    limits = {"tests": 120, "notebook": 90, "train": 90, "inference": 30, "benchmark": 120}
    started, state, steps = time.time(), {}, {}
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": environment(cfg), "steps": steps}
    for name in [s.strip() for s in cfg.steps.split(",") if s.strip()]:
        left = cfg.budget - (time.time() - started)
        if left < 10:
            steps[name] = {"status": "skipped", "error": "global time budget spent"}
            continue
        timeout = min(limits[name], left)
        print(f"[gpu-check] {name} (limit {timeout:.0f} s) ...", flush=True)
        t0 = time.time()
        try:
            fn = {"tests": step_tests, "notebook": step_notebook, "benchmark": step_benchmark}.get(name)
            result = fn(cfg, timeout) if fn else {"train": step_train, "inference": step_inference}[name](
                cfg, timeout, state)
            status = "ok" if result.get("ok") else ("timeout" if result.get("returncode") == "timeout" else "failed")
        except Exception as exc:  # record and go on with the next step
            result, status = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}, "failed"
        result.update(status=status, step_seconds=round(time.time() - t0, 1))
        steps[name] = result
        print(f"[gpu-check] {name}: {status} in {result['step_seconds']} s", flush=True)
        if device_is_cuda(cfg):
            torch.cuda.empty_cache()
    summary["seconds"] = round(time.time() - started, 1)
    summary["ok"] = all(s["status"] == "ok" for s in steps.values())
    with open(os.path.join(cfg.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    write_markdown(os.path.join(cfg.out, "summary.md"), summary)
    print(f"[gpu-check] {'all steps ok' if summary['ok'] else 'some steps failed'}; "
          f"wrote {os.path.join(cfg.out, 'summary.json')} and summary.md ({summary['seconds']} s)")
    return 0 if summary["ok"] else 1


def device_is_cuda(cfg):
    return torch.device(cfg.device).type == "cuda"


if __name__ == "__main__":
    sys.exit(main())
