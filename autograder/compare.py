"""
Compare a submission's outputs with the reference outputs and say what differs.

Runs in the grading parent only (the child never sees the expected values).
"""
import math
from typing import Any, List

import torch

MAX_PROBLEMS = 4


def describe(value: Any) -> str:
    """Short description of a value: type, and shape/dtype for tensors."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, dict):
        return f"dict with keys {sorted(map(str, value))}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    if value is None:
        return "None"
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        return value[1:-1]  # a marker from the child, e.g. "<function object>"
    return f"{type(value).__name__} {value!r}"[:120]


def _fmt_index(flat_idx: int, shape) -> str:
    idx = []
    for size in reversed(shape):
        idx.append(flat_idx % size)
        flat_idx //= size
    return "[" + ", ".join(map(str, reversed(idx))) + "]"


def compare_tensors(got: torch.Tensor, exp: torch.Tensor, where: str, atol: float, rtol: float) -> List[str]:
    if tuple(got.shape) != tuple(exp.shape):
        return [f"{where}: shape {tuple(got.shape)}, expected {tuple(exp.shape)}"]
    if got.dtype != exp.dtype:
        return [f"{where}: dtype {got.dtype}, expected {exp.dtype}"]
    if exp.numel() == 0:
        return []
    if exp.dtype == torch.bool or not exp.is_floating_point():
        bad = got != exp
    else:
        got_nan, exp_nan = torch.isnan(got), torch.isnan(exp)
        if (got_nan & ~exp_nan).any():
            n = int((got_nan & ~exp_nan).sum())
            first = int((got_nan & ~exp_nan).flatten().nonzero()[0])
            return [f"{where}: {n} of {exp.numel()} entries are NaN (first at "
                    f"{_fmt_index(first, exp.shape)}); expected finite values"]
        bad = ~torch.isclose(got, exp, atol=atol, rtol=rtol, equal_nan=True)
    if not bad.any():
        return []
    n_bad = int(bad.sum())
    first = int(bad.flatten().nonzero()[0])
    g, e = got.flatten()[first].item(), exp.flatten()[first].item()
    msg = (f"{where}: {n_bad} of {exp.numel()} entries differ; first at "
           f"{_fmt_index(first, exp.shape)}: got {g:.6g}, expected {e:.6g}")
    if exp.is_floating_point():
        finite = torch.isfinite(got) & torch.isfinite(exp)
        if finite.any():
            diff = (got - exp).abs()[finite].max().item()
            msg += f" (max abs difference {diff:.4g})"
    return [msg]


def compare(got: Any, exp: Any, where: str = "output", atol: float = 1e-4, rtol: float = 1e-4) -> List[str]:
    """
    Recursively compare `got` with `exp` (tensors, dicts, lists, tuples,
    numbers). Returns a list of human-readable problems (empty: equal).
    """
    if isinstance(exp, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return [f"{where}: got {describe(got)}, expected a {describe(exp)}"]
        return compare_tensors(got, exp, where, atol, rtol)
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            return [f"{where}: got {describe(got)}, expected a {describe(exp)}"]
        if set(map(str, got)) != set(map(str, exp)):
            return [f"{where}: keys {sorted(map(str, got))}, expected {sorted(map(str, exp))}"]
        problems = []
        for key in exp:
            problems += compare(got[key], exp[key], f"{where}[{key!r}]", atol, rtol)
            if len(problems) >= MAX_PROBLEMS:
                break
        return problems
    if isinstance(exp, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return [f"{where}: got {describe(got)}, expected a {describe(exp)}"]
        if len(got) != len(exp):
            return [f"{where}: length {len(got)}, expected {len(exp)}"]
        problems = []
        for i, (g, e) in enumerate(zip(got, exp)):
            problems += compare(g, e, f"{where}[{i}]", atol, rtol)
            if len(problems) >= MAX_PROBLEMS:
                break
        return problems
    if isinstance(exp, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return [f"{where}: got {describe(got)}, expected a number close to {exp:.6g}"]
        if math.isnan(got) and not math.isnan(exp):
            return [f"{where}: got NaN, expected {exp:.6g}"]
        if not math.isclose(got, exp, rel_tol=rtol, abs_tol=atol):
            return [f"{where}: got {got:.6g}, expected {exp:.6g}"]
        return []
    if got != exp:
        return [f"{where}: got {describe(got)}, expected {describe(exp)}"]
    return []


def matches(got: Any, exp: Any, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    try:
        return not compare(got, exp, atol=atol, rtol=rtol)
    except Exception:
        return False
