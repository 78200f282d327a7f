"""
Compare a submission's outputs with the reference outputs and say what differs.

Runs in the grading parent only (the child never sees the expected values).
Tensors are compared by the rule the notebooks' self-checks use
(`kit.checking.tensor_problems`): same shape, same dtype, `torch.isclose`.
"""
import math
from typing import Any, List

import torch

from kit.checking import tensor_problems

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


def compare_tensors(got: torch.Tensor, exp: torch.Tensor, where: str, atol: float, rtol: float) -> List[str]:
    """The kit's one comparison rule for tensors (shape, dtype, tolerance); see `kit.checking`."""
    return tensor_problems(got, exp, where, atol, rtol)


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
