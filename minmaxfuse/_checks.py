"""Private input validators shared by every public function.

Message format (house style): ```<arg>` <expectation>; got <actual>.`` with concrete numbers,
raised as the built-in :class:`ValueError` / :class:`TypeError` so that callers can use
``pytest.raises(..., match=...)``.

Two kinds of checks:

* metadata checks (rank, shape, dtype, device) read no tensor values and always run;
* value checks (NaN/Inf, negative masses, empty bags) read values, which forces a host/device
  synchronisation. They run by default and are skipped when :func:`set_value_checks` was called
  with ``False``, while :mod:`torch.compile` traces the code, or on ``meta`` tensors (which hold
  no values; see :func:`reads_values`).

Validators never change dtype or device of what they are given.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Reduction = Literal["none", "mean", "sum"]
_REDUCTIONS = ("none", "mean", "sum")
_VALUE_CHECKS = True


def set_value_checks(enabled: bool) -> bool:
    """Switch the value checks (NaN/Inf, negative masses, empty bags) on or off.

    Value checks read tensor values and therefore synchronise the host with the device. They are
    on by default; switch them off in a tuned training loop once the data pipeline is trusted.
    Metadata checks (shapes, dtypes, devices) always run.

    Parameters
    ----------
    enabled : bool
        ``True`` to run the value checks, ``False`` to skip them.

    Returns
    -------
    bool
        The previous setting, so that it can be restored.

    Examples
    --------
    >>> import minmaxfuse
    >>> previous = minmaxfuse.set_value_checks(False)
    >>> minmaxfuse.set_value_checks(previous)
    False
    """
    global _VALUE_CHECKS
    enabled = check_bool(enabled, "enabled")
    previous, _VALUE_CHECKS = _VALUE_CHECKS, enabled
    return previous


def value_checks_enabled() -> bool:
    """Whether value checks run now (off under ``torch.compile`` tracing).

    Returns
    -------
    bool
        ``True`` unless disabled by :func:`set_value_checks` or while compiling.

    Examples
    --------
    >>> import minmaxfuse
    >>> minmaxfuse.value_checks_enabled()
    True
    """
    if not _VALUE_CHECKS:
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling():
        return False
    return True


def reads_values(*tensors: Tensor | None) -> bool:
    """Whether value checks run now on these tensors.

    ``False`` when :func:`value_checks_enabled` is ``False`` or when a tensor is on the ``meta``
    device, which has no data to read (shape inference runs the metadata checks only).
    """
    if not value_checks_enabled():
        return False
    return not any(t is not None and t.device.type == "meta" for t in tensors)


def check_has_data(x: Tensor | None, name: str, why: str) -> None:
    """Raise a ValueError naming ``name`` if ``x`` is a ``meta`` tensor but values are needed."""
    if x is not None and x.device.type == "meta":
        raise ValueError(
            f"`{name}` must hold data ({why}); got a tensor on the meta device, which has none."
        )


def autocast_off(like: Tensor) -> contextlib.AbstractContextManager:
    """Context that disables autocast on the device of ``like`` (a no-op where there is none).

    ``torch.autocast`` raises for device types without autocast support (e.g. ``meta``, used
    for shape inference), so the numerics that must run in float32 use this instead.
    """
    try:
        return torch.autocast(like.device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------
# scalars and options


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {opts}; got {value!r}.")
    return value


def check_reduction(reduction: object) -> Reduction:
    """Validate a ``reduction`` option (``"none"``, ``"mean"`` or ``"sum"``)."""
    return check_choice(reduction, _REDUCTIONS, "reduction")  # type: ignore[return-value]


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, Tensor) and value.dtype == torch.bool
    )


def _type_name(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)} on {value.device.type}"
    return type(value).__name__


def _as_float(value: object, name: str) -> float:
    """A real scalar as a float: Python and numpy numbers, one-element real tensors; no bools."""
    if _is_bool(value):
        raise TypeError(f"`{name}` must be a real number, not a bool; got {value!r}.")
    if isinstance(value, Tensor):
        if value.numel() == 1 and not value.is_complex() and value.device.type != "meta":
            return float(value.detach())
        raise TypeError(f"`{name}` must be a real number; got {_type_name(value)}.")
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"`{name}` must be a real number; got {_type_name(value)}.")


def as_real(value: object, name: str) -> float:
    """Return ``value`` as a finite-or-not float (numbers.Real, numpy or 0-d tensor; no bool)."""
    return _as_float(value, name)


def as_int(value: object, name: str) -> int:
    """An integer scalar (Python, numpy or one-element integer tensor; no bools) as an int."""
    if _is_bool(value):
        raise TypeError(f"`{name}` must be an int, not a bool; got {value!r}.")
    if isinstance(value, Tensor):
        if value.numel() == 1 and not value.is_floating_point() and not value.is_complex():
            if value.device.type != "meta":
                return int(value.detach())
        raise TypeError(f"`{name}` must be an int; got {_type_name(value)}.")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"`{name}` must be an int; got {_type_name(value)}.") from None


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` as a bool if it is a real bool (``bool`` or ``numpy.bool_``)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"`{name}` must be a bool; got {type(value).__name__} {value!r}.")


def check_positive(value: object, name: str, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float if it is > 0 (and finite unless ``allow_inf``)."""
    v = _as_float(value, name)
    if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
        kind = "> 0" if allow_inf else "finite and > 0"
        raise ValueError(f"`{name}` must be {kind}; got {value!r}.")
    return v


def check_nonnegative(value: object, name: str) -> float:
    """Return ``value`` as a float if it is finite and >= 0."""
    v = _as_float(value, name)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"`{name}` must be finite and >= 0; got {value!r}.")
    return v


def check_in_range(
    value: object,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the given interval."""
    v = _as_float(value, name)
    ok_low = v > low if low_open else v >= low
    ok_high = v < high if high_open else v <= high
    if math.isnan(v) or not (ok_low and ok_high):
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ValueError(f"`{name}` must be in {lb}{low}, {high}{rb}; got {value!r}.")
    return v


def check_int(value: object, name: str, *, minimum: int = 1, maximum: int = 2**63 - 1) -> int:
    """Return ``value`` as an int if it is an integer in ``[minimum, maximum]`` (no bools).

    Python ints, numpy integers (anything with ``__index__``) and one-element integer tensors
    are accepted, as in scikit-learn and POT. The default ``maximum`` is the int64 limit of
    tensor sizes and counts.
    """
    v = as_int(value, name)
    if v < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {v}.")
    if v > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}; got {v}.")
    return v


# --------------------------------------------------------------------------------------------
# tensors


def check_tensor(x: object, name: str) -> Tensor:
    """Raise a TypeError unless ``x`` is a :class:`torch.Tensor`."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor; got {type(x).__name__}.")
    return x


def check_float(x: object, name: str) -> Tensor:
    """Raise unless ``x`` is a floating-point tensor."""
    x = check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor; got dtype {x.dtype}.")
    return x


def check_ndim(x: Tensor, ndim: int, name: str, letters: str) -> Tensor:
    """Raise unless ``x`` has ``ndim`` dimensions; ``letters`` names them, e.g. ``"B, N, D"``."""
    if x.ndim != ndim:
        raise ValueError(f"`{name}` must have shape ({letters}); got {tuple(x.shape)}.")
    return x


def check_shape(x: Tensor, shape: tuple[int, ...], name: str, letters: str | None = None) -> Tensor:
    """Raise unless ``x.shape == shape`` (``letters`` documents the expected axes)."""
    if tuple(x.shape) != tuple(shape):
        what = f"({letters}) = {tuple(shape)}" if letters else f"{tuple(shape)}"
        raise ValueError(f"`{name}` must have shape {what}; got {tuple(x.shape)}.")
    return x


def check_same_device(tensors: Iterable[tuple[str, Tensor | None]]) -> None:
    """Raise unless every given tensor lives on the same device as the first."""
    first: tuple[str, Tensor] | None = None
    for name, t in tensors:
        if t is None:
            continue
        if first is None:
            first = (name, t)
        elif t.device != first[1].device:
            raise ValueError(
                f"`{name}` must be on the same device as `{first[0]}` ({first[1].device}); "
                f"got {t.device}."
            )


def check_params_dtype(x: Tensor, name: str, param: Tensor, owner: str) -> Tensor:
    """Raise unless ``x`` has the device and dtype of a module's parameters.

    Autocast lets the dtype differ; the device must always match (a CPU module fed CUDA or
    meta tensors would fail deep inside a matmul with a message that names no argument).
    """
    if x.device != param.device:
        raise ValueError(
            f"`{name}` must be on the device of the {owner} parameters ({param.device}); got "
            f"{x.device}. Move the module with `.to({str(x.device)!r})` or the input to "
            f"{str(param.device)!r}."
        )
    if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"`{name}` must have the dtype of the {owner} parameters ({param.dtype}); got "
            f"{x.dtype}. Convert the module with `.to({x.dtype})` or run under torch.autocast."
        )
    return x


def check_mask(mask: Tensor | None, shape: tuple[int, ...], name: str, like: Tensor) -> Tensor:
    """Validate a bool mask of the given shape, or build an all-True one if ``mask`` is None."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=like.device)
    check_tensor(mask, name)
    if mask.dtype != torch.bool:
        raise TypeError(f"`{name}` must be a bool tensor (True = valid); got dtype {mask.dtype}.")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}; got {tuple(mask.shape)}.")
    if mask.device != like.device:
        raise ValueError(f"`{name}` must be on device {like.device}; got {mask.device}.")
    return mask


def check_finite(x: Tensor, name: str, mask: Tensor | None = None) -> Tensor:
    """Raise if ``x`` (restricted to ``mask`` where given) holds NaN or Inf (a value check)."""
    if not reads_values(x, mask):
        return x
    vals = x if mask is None else x[mask]
    if vals.numel() and not bool(torch.isfinite(vals).all()):
        where = " in valid (unmasked) entries" if mask is not None else ""
        raise ValueError(f"`{name}` must be finite; got NaN or Inf{where}.")
    return x


def check_nonnegative_values(x: Tensor, name: str, mask: Tensor | None = None) -> Tensor:
    """Raise if ``x`` (restricted to ``mask`` where given) has a negative entry (a value check)."""
    if not reads_values(x, mask):
        return x
    vals = x if mask is None else x[mask]
    if vals.numel():
        low = vals.min()
        if bool(low < 0):
            raise ValueError(f"`{name}` must be nonnegative; got a minimum of {float(low):.4g}.")
    return x


def check_nonempty_bags(mask: Tensor, name: str) -> Tensor:
    """Raise if a row of a ``(B, N)`` mask has no valid entry (a value check)."""
    if not reads_values(mask) or mask.numel() == 0:
        return mask
    empty = (~mask.any(dim=-1)).nonzero().flatten()
    if empty.numel():
        idx = empty[:5].tolist()
        raise ValueError(
            f"`{name}` must have at least one valid entry per bag; got empty bags at batch "
            f"indices {idx}. Drop them when collating."
        )
    return mask


def check_bags(
    x: object, mask: Tensor | None, *, name: str, mask_name: str | None = None
) -> Tensor:
    """Validate padded bags ``x (B, N, D)`` and their mask; return the (possibly built) mask."""
    x = check_float(x, name)
    check_ndim(x, 3, name, "B, N, D")
    mname = mask_name or f"{name}_mask"
    m = check_mask(mask, tuple(x.shape[:2]), mname, x)
    check_nonempty_bags(m, name)
    check_finite(x, name, m)
    return m


def reduce_loss(loss: Tensor, reduction: Reduction, weight: Tensor | None = None) -> Tensor:
    """Apply ``reduction`` to a per-sample loss ``(B,)``, optionally weighted."""
    if weight is not None:
        check_shape(weight, tuple(loss.shape), "weight", "B")
        loss = loss * weight
        if reduction == "mean":
            return loss.sum() / weight.sum().clamp_min(torch.finfo(loss.dtype).tiny)
    if reduction == "mean":
        # an empty batch (B = 0) gives a graph-connected zero, not the NaN of an empty mean
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss
