"""A second device on a CPU-only machine, for testing device discipline without a GPU.

torch's Python PrivateUse1 backend gives a device type of its own, ``privateuseone``. A tensor
"on" it is a wrapper subclass holding a CPU tensor; while :func:`simulated_device` is active, a
dispatch mode runs every op on the CPU and refuses what a CUDA GPU refuses: an op that mixes a
tensor on the device with a CPU tensor (CPU 0-dim scalars, CPU index tensors and cross-device
copies are allowed, as on CUDA). ``tensor.device`` says ``privateuseone:0``, factories with
``device=`` land there, ``.cpu()`` comes back.

``Module.to(device)`` keeps every Parameter object and swaps its contents (torch does that for a
traceable wrapper subclass with ``torch.utils.swap_tensors``), which is what a CUDA move does
with ``param.data``: whatever held a parameter before the move holds the moved one, and whatever
was *derived* from it before the move (a mask, a snapshot) is still on the CPU. A ``meta`` move
would instead make new Parameter objects and hide that bug.

The arithmetic is the CPU's own kernels. ``HOST_READS`` counts the ops that bring a device value to
the host (``.item()``, ``.cpu()``, ``bool(tensor)``): on a GPU each one waits for the queued work.
"""
from __future__ import annotations

import contextlib
import functools

import torch
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_leaves, tree_map_only

DEVICE_TYPE = "simgpu"

# ops that may take CPU tensors beside device tensors on CUDA too
_CROSS_DEVICE_OK = {"aten::copy_", "aten::_to_copy", "aten::index.Tensor", "aten::index_put_", "aten::index_put",
                    "aten::_index_put_impl_", "aten::_has_compatible_shallow_copy_type"}


HOST_READS: list[str] = []  # one entry per device-to-host read, the op's name


class DeviceMixError(RuntimeError):
    """What CUDA raises for an op whose tensors are on two devices."""


@functools.cache
def device() -> torch.device:
    """Register the backend once per process and return its device."""
    from torch.utils.backend_registration import _DummyBackendModule, _setup_privateuseone_for_python_backend

    class Backend(_DummyBackendModule):
        def get_amp_supported_dtype(self):  # torch.autocast asks a custom backend for this
            return [torch.float16, torch.bfloat16]

    _setup_privateuseone_for_python_backend(rename=DEVICE_TYPE, backend_module=Backend())
    return torch.device(DEVICE_TYPE, 0)


class OnDevice(torch.Tensor):
    """A tensor on the simulated device: metadata says ``privateuseone:0``, ``elem`` holds the values."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                  storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                  layout=elem.layout, device=device(),
                                                  requires_grad=elem.requires_grad)
        out.elem = elem
        return out

    def __repr__(self) -> str:
        return f"OnDevice({self.elem!r})"

    def __tensor_flatten__(self):
        return ["elem"], None

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return OnDevice(inner["elem"])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        with _Placement():
            return func(*args, **(kwargs or {}))


def _on_device(value) -> bool:
    return value is not None and torch.device(value).type == DEVICE_TYPE


class _Placement(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on = any(isinstance(t, OnDevice) for t in tensors)
        name = func._schema.name
        if on and name not in _CROSS_DEVICE_OK:
            host = [t for t in tensors if not isinstance(t, OnDevice) and t.dim() > 0]
            if host:
                raise DeviceMixError(f"{func}: expected all tensors to be on the same device, but found at least "
                                     f"two devices, {device()} and cpu (a CPU tensor of shape "
                                     f"{tuple(host[0].shape)})")
        if name == "aten::index.Tensor" and not isinstance(args[0], OnDevice) and on:
            raise DeviceMixError(f"{func}: indices should be either on cpu or on the same device as the "
                                 "indexed tensor (cpu)")
        target = kwargs.get("device")
        wrap = on if target is None else _on_device(target)
        if target is not None and wrap:
            kwargs = {**kwargs, "device": torch.device("cpu")}
        out = func(*tree_map_only(OnDevice, lambda t: t.elem, args), **tree_map_only(OnDevice, lambda t: t.elem, kwargs))
        if on and (not wrap or any(isinstance(x, (bool, int, float)) for x in tree_leaves(out))):
            HOST_READS.append(name)
        if not wrap:
            return out
        out = tree_map_only(torch.Tensor, lambda t: t if isinstance(t, OnDevice) else OnDevice(t), out)
        return return_and_correct_aliasing(func, args, kwargs, out)


@contextlib.contextmanager
def simulated_device():
    """Within the block, ``device()`` behaves as an accelerator beside the CPU (see the module doc)."""
    device()
    with _Placement():
        yield device()
