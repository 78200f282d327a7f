"""
The comparison rule of the kit, shared by the notebooks' self-checks
(`notebooks/nbtools.py`) and the grader (`autograder/compare.py`), so that a
self-check that says OK and the grader agree.

The rule for a tensor `got` against an expected tensor `expected`:

1. the shapes are equal;
2. the dtypes are equal: a float64 result where float32 is expected is a
   mismatch (the detector runs in float32; a float64 tensor in the middle of
   it either fails or silently doubles the memory);
3. bool and integer values are equal exactly; floating values satisfy
   `torch.isclose(got, expected, atol, rtol)` entry by entry, and NaN is
   accepted only where the expected value is NaN.

When the expected value is not a tensor (a number, a list of numbers, a
shape) there is no dtype to match: both sides are compared as float64 values
under rule 3.
"""
from typing import List

import torch

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


def _fmt_index(flat_idx: int, shape) -> str:
    idx = []
    for size in reversed(shape):
        idx.append(flat_idx % size)
        flat_idx //= size
    return "[" + ", ".join(map(str, reversed(idx))) + "]"


def tensor_problems(got: torch.Tensor, expected: torch.Tensor, where: str = "output",
                    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                    check_dtype: bool = True) -> List[str]:
    """
    Compare two tensors under the kit's rule (see the module docstring).

    Args:
        got: the tensor under test.
        expected: the reference tensor.
        where: name of the value in the messages.
        atol, rtol: tolerances of `torch.isclose` for floating values.
        check_dtype: False only when the expected values have no dtype of
            their own (numbers or lists turned into tensors).

    Returns:
        A list of human-readable problems; empty when `got` matches.
    """
    if tuple(got.shape) != tuple(expected.shape):
        return [f"{where}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"]
    if check_dtype and got.dtype != expected.dtype:
        return [f"{where}: dtype {got.dtype}, expected {expected.dtype}"]
    if expected.numel() == 0:
        return []
    got, expected = got.detach().cpu(), expected.detach().cpu()
    if not check_dtype:
        got, expected = got.double(), expected.double()
    if expected.dtype == torch.bool or not expected.is_floating_point():
        bad = got != expected
    else:
        got_nan, exp_nan = torch.isnan(got), torch.isnan(expected)
        if (got_nan & ~exp_nan).any():
            n = int((got_nan & ~exp_nan).sum())
            first = int((got_nan & ~exp_nan).flatten().nonzero()[0])
            return [f"{where}: {n} of {expected.numel()} entries are NaN (first at "
                    f"{_fmt_index(first, expected.shape)}); expected finite values"]
        bad = ~torch.isclose(got, expected, atol=atol, rtol=rtol, equal_nan=True)
    if not bad.any():
        return []
    n_bad = int(bad.sum())
    first = int(bad.flatten().nonzero()[0])
    g, e = got.flatten()[first].item(), expected.flatten()[first].item()
    msg = (f"{where}: {n_bad} of {expected.numel()} entries differ; first at "
           f"{_fmt_index(first, expected.shape)}: got {g:.6g}, expected {e:.6g}")
    if expected.is_floating_point():
        finite = torch.isfinite(got) & torch.isfinite(expected)
        if finite.any():
            diff = (got - expected).abs()[finite].max().item()
            msg += f" (max abs difference {diff:.4g})"
    return [msg]


def value_problems(got, expected, where: str = "output", atol: float = DEFAULT_ATOL,
                   rtol: float = DEFAULT_RTOL) -> List[str]:
    """
    Compare `got` with an expected tensor, number, shape or nested list of
    numbers under the kit's rule (see the module docstring).

    Returns:
        A list of human-readable problems; empty when `got` matches.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return [f"{where}: got {type(got).__name__}, expected a tensor of shape "
                    f"{tuple(expected.shape)} and dtype {expected.dtype}"]
        return tensor_problems(got, expected, where, atol, rtol)
    try:
        exp_t = torch.as_tensor(list(expected) if isinstance(expected, torch.Size) else expected,
                                dtype=torch.float64)
        if isinstance(got, torch.Tensor):
            got_t = got.detach().cpu().double()
        else:
            got_t = torch.as_tensor(list(got) if isinstance(got, torch.Size) else got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        return [f"{where}: cannot read {type(got).__name__} as numbers ({error})"]
    return tensor_problems(got_t, exp_t, where, atol, rtol, check_dtype=False)
