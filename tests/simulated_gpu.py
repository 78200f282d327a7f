"""
A simulated GPU for tests on machines without one.

Inside `SimulatedGPU()`, tensors live in CPU memory as usual, but each one is
either *on the simulated GPU* (tagged) or *on the host* (untagged), and the
mode enforces CUDA's placement rules between the two:

- tagged tensors report `device == cuda:0` (`is_cuda` True), so code that
  follows its inputs (`torch.zeros(..., device=x.device)`, `x.new_zeros`,
  `torch.zeros_like(x)`, `.to(x.device)`) creates tagged tensors, and code
  that takes the GPU branches (`device.type == "cuda"`) takes them;
- `.to("cuda")`, `.cuda()` and factories given a CUDA device create tagged
  tensors; factories without a device, or with the CPU, create host tensors,
  as they would on a real machine with a GPU;
- an operation that mixes tagged tensors with host tensors of one or more
  dimensions raises `DeviceMismatchError` (host 0-dim tensors mix, as CUDA
  allows), and so does `.numpy()` of a tagged tensor;
- results of operations on tagged tensors are tagged; gradients and `.data`
  of tagged tensors are tagged.

So a tensor created on the wrong device (a constant without `device=`, a
`torch.arange(n)` used with CUDA data) fails a test on CPU-only CI instead of
on a student's GPU. The arithmetic itself runs on the CPU, so results equal
CPU results. What it cannot find: CUDA-only kernel differences, memory,
speed, and code that reads `torch.cuda.is_available()` (still False).

Usage:
    with SimulatedGPU() as gpu:
        model.to("cuda")                   # parameters and buffers tagged
        images = images.to("cuda")
        out = model(images)                # raises on wrong-device tensors
        assert gpu.is_on_gpu(out)
"""
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

__all__ = ["SimulatedGPU", "DeviceMismatchError"]

_TAG = "_on_simulated_gpu"
_FAKE = torch.device("cuda", 0)
_CPU = torch.device("cpu")


class DeviceMismatchError(RuntimeError):
    """An operation mixed simulated-GPU tensors with host tensors."""


def _tagged(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _TAG, False)


def _tag(t, on_gpu: bool):
    if isinstance(t, torch.Tensor):
        try:
            setattr(t, _TAG, on_gpu)
        except (AttributeError, RuntimeError):  # pragma: no cover - exotic tensor types
            pass
    return t


def _device_kind(value):
    """'gpu' / 'host' for a device-like value, None for anything else."""
    if isinstance(value, torch.device):
        return "gpu" if value.type == "cuda" else "host"
    if isinstance(value, str):
        try:
            return "gpu" if torch.device(value).type == "cuda" else "host"
        except RuntimeError:
            return None
    return None


def _getter_of(func, name):
    descriptor = getattr(torch.Tensor, name)
    return getattr(func, "__self__", None) is descriptor and func.__name__ == "__get__"


def _setter_of(func, name):
    descriptor = getattr(torch.Tensor, name)
    return getattr(func, "__self__", None) is descriptor and func.__name__ == "__set__"


# Functions allowed to take tensors from both sides (cross-device copies, and
# the check `Module.to` makes before replacing a parameter's data).
_MOVERS = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu, torch.Tensor.cuda,
           torch._has_compatible_shallow_copy_type}


class SimulatedGPU(TorchFunctionMode):
    """Enforce CUDA placement rules on CPU tensors; see the module docstring."""

    @staticmethod
    def is_on_gpu(tensor) -> bool:
        return _tagged(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Attributes that say where a tensor is.
        if _getter_of(func, "device"):
            return _FAKE if _tagged(args[0]) else func(*args)
        if _getter_of(func, "is_cuda"):
            return _tagged(args[0])
        if _getter_of(func, "is_cpu"):
            return not _tagged(args[0])
        if _getter_of(func, "grad") or _getter_of(func, "data"):
            out = func(*args)
            return _tag(out, _tagged(args[0])) if out is not None else None
        if _setter_of(func, "grad") and args[1] is not None and _tagged(args[0]) != _tagged(args[1]):
            raise DeviceMismatchError("assigned a .grad on the other device than its tensor")
        if _setter_of(func, "data"):
            func(*args)
            _tag(args[0], _tagged(args[1]))
            return None
        if func is torch.Tensor.get_device:
            return 0 if _tagged(args[0]) else -1
        if func is torch.Tensor.numpy and _tagged(args[0]):
            raise DeviceMismatchError("can't convert a cuda tensor to numpy: call .cpu() first")

        # Where the result goes: an explicit device, else the inputs'.
        target = None
        if func is torch.Tensor.cuda:  # never the real one
            func, target, args, kwargs = torch.Tensor.to, "gpu", args[:1], {}
        elif func is torch.Tensor.cpu:
            target = "host"
        if "device" in kwargs and _device_kind(kwargs["device"]) is not None:
            target = _device_kind(kwargs["device"])
            kwargs = dict(kwargs, device=_CPU)
        if func is torch.Tensor.to:
            for i, value in enumerate(args[1:], start=1):
                kind = _device_kind(value)
                if kind is not None:
                    target = kind
                    args = args[:i] + (_CPU,) + args[i + 1 :]
                elif isinstance(value, torch.Tensor):  # .to(other): other's device
                    target = "gpu" if _tagged(value) else "host"

        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_gpu = [t for t in tensors if _tagged(t)]
        if func not in _MOVERS and on_gpu:
            host = [t for t in tensors if not _tagged(t) and t.dim() > 0]
            if host:
                name = getattr(func, "__name__", str(func))
                raise DeviceMismatchError(
                    f"{name}: expected all tensors to be on the same device, but found tensors on "
                    f"cuda:0 and cpu (host shapes {[tuple(t.shape) for t in host]})"
                )
        if target is None:
            target = "gpu" if on_gpu else "host"

        out = func(*args, **kwargs)
        if func in _MOVERS and out is args[0] and _tagged(out) != (target == "gpu"):
            # A CPU-to-CPU `.to` returns its input; a move between devices is a copy.
            with torch._C.DisableTorchFunction():
                out = out.clone()

        def tag(value):
            return _tag(value, target == "gpu") if isinstance(value, torch.Tensor) else value

        if isinstance(out, torch.Tensor):
            return tag(out)
        if isinstance(out, tuple) and hasattr(out, "_fields") or type(out).__module__ == "torch.return_types":
            return type(out)([tag(v) for v in out])
        if isinstance(out, (list, tuple)):
            return tree_map(tag, out)
        return out
