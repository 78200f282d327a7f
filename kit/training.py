"""
Training: `train_detector`, the loop the notebooks and the demo share.
"""
import math
import os
import random
from typing import Dict, List, Optional

import numpy as np
import torch

from .data import auto_device, reset_seed


def _infinite(loader):
    while True:
        for batch in loader:
            yield batch


def train_detector(
    detector: torch.nn.Module,
    train_loader,
    learning_rate: float = 5e-3,
    weight_decay: float = 1e-4,
    max_iters: int = 5000,
    log_period: int = 20,
    device=None,
    amp: bool = False,
    checkpoint_path: Optional[str] = None,
    checkpoint_period: int = 500,
    seed: Optional[int] = 0,
    warmup_iters: int = 0,
    grad_clip: Optional[float] = None,
    progress: bool = True,
    optimizer: str = "sgd",
    schedule: str = "step",
) -> Dict[str, List[float]]:
    """
    Train a detector as in the course: SGD (momentum 0.9) with the learning
    rate divided by 10 at 60% and 90% of `max_iters` (the defaults), or
    AdamW and a cosine schedule (what the demo uses for short runs).

    Args:
        detector: a module whose `forward(images, gt_boxes)` returns a dict
            of scalar losses in training mode.
        train_loader: yields `(image_paths, images (B, 3, S, S), gt_boxes
            (B, 40, 5))`; it is cycled for `max_iters` iterations.
        learning_rate, weight_decay: SGD hyperparameters.
        max_iters: total iterations (also the end of the LR schedule).
        log_period: iterations between updates of the progress bar.
        device: "cuda", "cpu", ...; None picks CUDA when available.
        amp: mixed precision (float16 autocast and gradient scaling), CUDA only.
        checkpoint_path: if given, save model/optimizer/scheduler/history
            there every `checkpoint_period` iterations and at the end; if the
            file exists, training resumes from it (the data order restarts).
        seed: passed to `reset_seed` before training (None: leave RNGs alone).
        warmup_iters: linear learning-rate warm-up iterations (0: none).
        grad_clip: clip the gradient norm to this value (None: no clipping).
        progress: show a tqdm progress bar with the latest losses.
        optimizer: "sgd" (momentum 0.9) or "adamw" (betas 0.9, 0.999).
        schedule: "step" (divide by 10 at 60% and 90% of `max_iters`) or
            "cosine" (from `learning_rate` down to 0 at `max_iters`); the
            warm-up applies to both.

    Returns:
        history: dict of lists, one entry per iteration: "iter", "loss"
        (total), one key per loss of the detector (e.g. "loss_rpn_obj",
        "loss_rpn_box", "loss_cls") and "lr".

    Raises:
        FloatingPointError: when the loss becomes NaN or infinite.
    """
    from tqdm.auto import tqdm

    device = auto_device(device)
    if seed is not None:
        reset_seed(seed)
    use_amp = bool(amp) and device.type == "cuda"
    if amp and not use_amp:
        print("train_detector: amp=True needs a CUDA device; training in float32.")
    detector.to(device)
    params = [p for p in detector.parameters() if p.requires_grad]
    if optimizer not in ("sgd", "adamw") or schedule not in ("step", "cosine"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', schedule 'step' or 'cosine'; "
                         f"got {optimizer!r}, {schedule!r}")
    if optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    milestones = [int(0.6 * max_iters), int(0.9 * max_iters)]

    def lr_factor(it: int) -> float:
        if schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * min(it / max(max_iters, 1), 1.0)))
        else:
            factor = 0.1 ** sum(it >= m for m in milestones)
        if warmup_iters > 0 and it < warmup_iters:
            factor *= (it + 1) / warmup_iters
        return factor

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: Dict[str, List[float]] = {"iter": [], "loss": [], "lr": []}
    start_iter = 0
    if checkpoint_path and os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        detector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        start_iter = state["iter"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        print(f"Resumed from {checkpoint_path} at iteration {start_iter}.")

    def save(it: int):
        if checkpoint_path:
            os.makedirs(os.path.dirname(os.path.abspath(checkpoint_path)), exist_ok=True)
            state = {"model": detector.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "history": history, "iter": it,
                     "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}}
            torch.save(state, checkpoint_path + ".tmp")
            os.replace(checkpoint_path + ".tmp", checkpoint_path)

    detector.train()
    batches = _infinite(train_loader)
    bar = tqdm(range(start_iter, max_iters), initial=start_iter, total=max_iters,
               disable=not progress, desc="train", dynamic_ncols=True)
    for it in bar:
        _, images, gt_boxes = next(batches)
        images = images.to(device, non_blocking=True)
        gt_boxes = gt_boxes.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            losses = detector(images, gt_boxes)
        total = sum(losses.values())
        if not torch.isfinite(total):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise FloatingPointError(
                f"Loss is {total.item()} at iteration {it} ({values}). Training stopped: "
                "lower the learning rate, add warm-up (warmup_iters) or gradient clipping "
                "(grad_clip), and check that no GT box has zero width or height."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
        history["iter"].append(it)
        history["loss"].append(total.item())
        history["lr"].append(optimizer.param_groups[0]["lr"])
        for key, value in losses.items():
            history.setdefault(key, []).append(value.item())
        scheduler.step()
        if it % log_period == 0 or it == max_iters - 1:
            bar.set_postfix({k.replace("loss_", ""): f"{history[k][-1]:.3f}"
                             for k in ["loss", *losses]}, refresh=False)
            if not progress:
                print(f"[iter {it}/{max_iters}] " + " ".join(
                    f"{k}: {history[k][-1]:.3f}" for k in ["loss", *losses]), flush=True)
        if checkpoint_path and (it + 1) % checkpoint_period == 0:
            save(it + 1)
    bar.close()
    if start_iter < max_iters:
        save(max_iters)
    return history


