"""Shared helpers of the hardening tests: the public API, derived from ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

MODULES = ["minmaxfuse"] + [
    f"minmaxfuse.{m}"
    for m in ("ot", "layers", "losses", "survival", "diagnostics", "data", "distributed")
]

# CPU everywhere; the CUDA copies carry the ``gpu`` marker and skip without a device
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def public_callables() -> dict[str, object]:
    """Every callable named in an ``__all__`` (modules themselves excluded), by short name."""
    out: dict[str, object] = {}
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            assert out.get(name, obj) is obj, f"two public objects named {name!r}"
            out[name] = obj
    return out


def float_tensors(out: object) -> list[torch.Tensor]:
    """Floating-point tensors found in a (nested) result: tensor, tuple, list or NamedTuple."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in float_tensors(o)]
    return []


def all_tensors(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in all_tensors(o)]
    return []
