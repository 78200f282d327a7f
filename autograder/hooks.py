"""
Child-side helpers: run a piece of student code with the other TODOs replaced
by the reference ones, and read or replace local variables at the provided
(non-TODO) lines of a student's method.
"""
import inspect
import sys
import types
from typing import Callable, Dict, Optional

import torch


class GraderError(Exception):
    """A problem the grader reports as the check's feedback (not a crash)."""


class StopRun(BaseException):
    """Raised by a line hook to stop the student's method once captured."""


def find_line(fn, text: str) -> int:
    """
    Absolute line number of the first line of `fn`'s source whose stripped
    text starts with `text`. These are provided lines outside the TODO blocks.
    """
    fn = inspect.unwrap(fn)
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError) as error:
        raise GraderError(f"cannot read the source of {fn.__qualname__}: {error}")
    for offset, line in enumerate(lines):
        if line.strip().startswith(text):
            return start + offset
    raise GraderError(
        f"the provided line `{text}` is missing from {fn.__qualname__}; keep the "
        "code outside the TODO blocks as it was released."
    )


class LineHooks:
    """
    While active, call `actions[lineno](frame)` each time a frame of `fn`
    reaches line `lineno` (before the line runs), and `on_exception(frame)`
    when an exception passes through such a frame. Changes an action makes
    to `frame.f_locals` are written back to the frame.
    """

    def __init__(self, fn, actions: Dict[int, Callable], on_exception: Optional[Callable] = None,
                 skips=()):
        self.code = inspect.unwrap(fn).__code__
        self.actions = actions
        self.on_exception = on_exception
        # (after, target, on_jump): the first line run strictly between the
        # provided lines `after` and `target` jumps to `target`, after
        # `on_jump(frame)` has set what the skipped block should have computed.
        self.skips = list(skips)

    def _global(self, frame, event, arg):
        if frame.f_code is self.code:
            return self._local
        return None

    def _local(self, frame, event, arg):
        if event == "line":
            for after, target, on_jump in self.skips:
                if after < frame.f_lineno < target:
                    on_jump(frame)
                    frame.f_lineno = target
                    break
            if frame.f_lineno in self.actions:
                self.actions[frame.f_lineno](frame)
        elif event == "exception" and self.on_exception is not None:
            self.on_exception(frame)
        return self._local

    def __enter__(self):
        self._old = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._old)
        return False


def raised_between(error: BaseException, fn, after: int, before: int) -> bool:
    """Did `error` come out of lines `after < line < before` of `fn`?"""
    code = inspect.unwrap(fn).__code__
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code and after < tb.tb_lineno < before:
            return True
        tb = tb.tb_next
    return False


def set_locals(frame, **values):
    """Replace local variables of a traced frame (from inside a trace hook)."""
    frame.f_locals.update(values)
    if sys.version_info < (3, 13):
        import ctypes

        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def deterministic_sample_rpn_training(gt_boxes, num_samples, fg_fraction):
    """
    `sample_rpn_training` with a fixed generator: same contract as the
    provided helper, same result on every run (grading replaces the helper).
    """
    foreground = (gt_boxes[:, 4] >= 0).nonzero().squeeze(1)
    background = (gt_boxes[:, 4] == -1).nonzero().squeeze(1)
    num_fg = min(int(num_samples * fg_fraction), foreground.numel())
    num_bg = num_samples - num_fg
    gen = torch.Generator().manual_seed(0)
    perm1 = torch.randperm(foreground.numel(), generator=gen)[:num_fg].to(foreground.device)
    perm2 = torch.randperm(background.numel(), generator=gen)[:num_bg].to(background.device)
    return foreground[perm1], background[perm2]


# Module-level functions that student code calls: all are replaced by the
# reference (or the deterministic sampler) except the one being graded.
TSD_FUNCTIONS = [
    "generate_fpn_anchors", "iou", "rcnn_match_anchors_to_gt",
    "rcnn_get_deltas_from_anchors", "rcnn_apply_deltas_to_anchors",
    "mix_gt_with_proposals",
]
COMMON_FUNCTIONS = ["get_fpn_location_coords", "nms", "class_spec_nms"]


def isolate(student_tsd: types.ModuleType, student_common, ref_tsd, ref_common, keep=()):
    """Point the student's modules at the reference implementations of every
    other TODO function (and the deterministic sampler)."""
    for name in TSD_FUNCTIONS:
        if name not in keep and hasattr(ref_tsd, name):
            setattr(student_tsd, name, getattr(ref_tsd, name))
    student_tsd.sample_rpn_training = deterministic_sample_rpn_training
    for name in COMMON_FUNCTIONS:
        if name in keep or not hasattr(ref_common, name):
            continue
        setattr(student_tsd, name, getattr(ref_common, name))
        if student_common is not None:
            setattr(student_common, name, getattr(ref_common, name))
    # A student who wrote `import common` / `common.nms(...)`:
    if isinstance(getattr(student_tsd, "common", None), types.ModuleType):
        for name in COMMON_FUNCTIONS:
            if name not in keep and hasattr(ref_common, name):
                setattr(student_tsd.common, name, getattr(ref_common, name))


def raised_in_lines(error: BaseException, fn, first: int, last: int) -> bool:
    """Did `error` come out of lines `first..last` (inclusive) of `fn`?"""
    return raised_between(error, fn, first - 1, last + 1)


def first_code_line(fn, first: int, last: int):
    """The first line of `fn` in `first..last` that holds code (not a comment
    or a blank line), or None."""
    fn = inspect.unwrap(fn)
    lines, start = inspect.getsourcelines(fn)
    for offset, line in enumerate(lines):
        lineno = start + offset
        s = line.strip()
        if first <= lineno <= last and s and not s.startswith("#"):
            return lineno
    return None


class IndexRecorder:
    """
    While active, record the indices with which the watched tensors (by
    storage) are indexed along their first dimension: `x[idx]`, `x[mask]`,
    `x.index_select(0, idx)`. Grading a loss on the anchors the student's own
    sampler drew needs them.
    """

    def __init__(self):
        self.watched = set()
        self.indices = []
        self.repeated = False
        self._mode = None

    def watch(self, *tensors):
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.watched.add(t.untyped_storage().data_ptr())

    def _record(self, tensor, index):
        if isinstance(index, tuple):
            index = index[0] if index else None
        if isinstance(index, list):
            try:
                index = torch.as_tensor(index)
            except (TypeError, ValueError):
                return
        if not isinstance(index, torch.Tensor) or index.dim() != 1:
            return
        if index.dtype == torch.bool:
            if len(index) != len(tensor):
                return
            index = index.nonzero().squeeze(1)
        elif index.dtype in (torch.int64, torch.int32, torch.int16, torch.int8):
            index = index.long()
            index = torch.where(index < 0, index + len(tensor), index)
        else:
            return
        if index.numel() and index.unique().numel() != index.numel():
            self.repeated = True
        self.indices.append(index.detach().cpu())

    def sampled(self):
        """Sorted union of the recorded indices, or None."""
        if not self.indices:
            return None
        return torch.cat(self.indices).unique()

    def __enter__(self):
        from torch.overrides import TorchFunctionMode

        recorder = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                try:
                    if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 1 and \
                            args[0].device.type != "meta" and \
                            args[0].untyped_storage().data_ptr() in recorder.watched:
                        if func is torch.Tensor.__getitem__ and len(args) > 1:
                            recorder._record(args[0], args[1])
                        elif func in (torch.Tensor.index_select, torch.index_select):
                            dim = args[1] if len(args) > 1 else kwargs.get("dim")
                            index = args[2] if len(args) > 2 else kwargs.get("index")
                            if dim == 0:
                                recorder._record(args[0], index)
                except Exception:  # noqa: BLE001 - recording never breaks the student's code
                    pass
                return func(*args, **kwargs)

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        return False
