"""Scalar schedules for loss weights and curricula (warm-up, ramps, the TTA mass ramp)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from minmaxfuse._checks import as_int, as_real, check_int, check_positive


def _as_step(step: object) -> int:
    step = as_int(step, "step")
    if step < 0:
        raise ValueError(f"`step` must be >= 0; got {step}.")
    return step


def _real(value: object, name: str) -> float:
    try:
        v = as_real(value, name)
    except TypeError:
        raise ValueError(f"`{name}` must be a finite real number; got {value!r}.") from None
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be a finite real number; got {value!r}.")
    return v


def _nonneg(value: object, name: str) -> float:
    v = _real(value, name)
    if v < 0:
        raise ValueError(
            f"`{name}` must be >= 0 (schedules give loss weights and masses); got {value!r}."
        )
    return v


def mass_ramp(
    progress: float, *, start: float = 0.1, end: float = 1.0, sharpness: float = 5.0
) -> float:
    r"""TTA's transported-mass curriculum :math:`\rho(t)` at training progress ``t``.

    .. math:: \rho(t) = \rho_0 + (\rho_1 - \rho_0)\, e^{-s (1 - t)^2},
              \qquad t = \min(\max(\mathrm{progress}, 0), 1),

    with :math:`\rho_0` = ``start``, :math:`\rho_1` = ``end`` and :math:`s` = ``sharpness``.
    TTA uses :math:`\rho_0 = 0.1`, :math:`\rho_1 = 1`, :math:`s = 5` and
    :math:`t = \mathrm{step} / (10 \cdot \mathrm{iters\_per\_epoch})`: ρ rises from about 0.106
    at the first step to 1 after ten epochs (0.137 at epoch 2, 0.358 at epoch 5, 0.84 at epoch 8).
    Note that the curve does not start exactly at ``start`` (:math:`e^{-s} > 0`) but ends
    exactly at ``end``.

    Parameters
    ----------
    progress : float
        Fraction of the ramp done; clipped to [0, 1].
    start : float, default 0.1
        :math:`\rho_0`.
    end : float, default 1.0
        :math:`\rho_1`.
    sharpness : float, default 5.0
        :math:`s > 0`.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If a value is not finite, ``start`` or ``end`` is outside [0, 1] (a mass fraction), or
        ``sharpness <= 0``.

    See Also
    --------
    SigmoidRamp : the same curve as a step schedule for :class:`MinMaxObjective`.

    Examples
    --------
    >>> from minmaxfuse.losses import mass_ramp
    >>> round(mass_ramp(0.0), 4), round(mass_ramp(0.5), 4), mass_ramp(1.0)
    (0.1061, 0.3579, 1.0)
    """
    t = min(max(_real(progress, "progress"), 0.0), 1.0)
    s = check_positive(sharpness, "sharpness")
    a, b = _real(start, "start"), _real(end, "end")
    for name, v in (("start", a), ("end", b)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"`{name}` must be a mass fraction in [0, 1]; got {v!r}.")
    return a + (b - a) * math.exp(-s * (1.0 - t) ** 2)


class Schedule:
    """Base class of step schedules: ``schedule(step) -> float``; stateless and picklable.

    Subclasses are frozen dataclasses; the step counter lives in :class:`MinMaxObjective` (or
    in the caller), so a schedule never needs its own ``state_dict``. The built-in schedules
    take values in ``[min(start, end), max(start, end)]`` and reject negative ``start``,
    ``end`` or ``value`` (they are loss weights and masses); :meth:`bounds` returns that range.
    """

    def bounds(self) -> tuple[float, float] | None:
        """``(low, high)`` over all steps, or ``None`` when unknown (custom schedules)."""
        return None

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        """Value at ``step`` (an int >= 0)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """A constant value (the default schedule of every term).

    Parameters
    ----------
    value : float, default 1.0

    Examples
    --------
    >>> from minmaxfuse.losses import Constant
    >>> Constant(0.5)(1000)
    0.5
    """

    value: float = 1.0

    def __post_init__(self) -> None:
        # stored as a Python float (numpy scalars or huge ints would overflow in arithmetic)
        object.__setattr__(self, "value", _nonneg(self.value, "value"))

    def bounds(self) -> tuple[float, float]:
        """``(value, value)``."""
        return float(self.value), float(self.value)

    def __call__(self, step: int) -> float:
        """Return ``value``."""
        _as_step(step)
        return float(self.value)


@dataclass(frozen=True)
class _Ramp(Schedule):
    start: float = 0.0
    end: float = 1.0
    steps: int = 1000
    delay: int = 0

    def __post_init__(self) -> None:
        # stored as Python floats / ints (numpy scalars or huge ints would overflow in arithmetic)
        object.__setattr__(self, "start", _nonneg(self.start, "start"))
        object.__setattr__(self, "end", _nonneg(self.end, "end"))
        object.__setattr__(self, "steps", check_int(self.steps, "steps", minimum=1))
        object.__setattr__(self, "delay", check_int(self.delay, "delay", minimum=0))

    def bounds(self) -> tuple[float, float]:
        """``(min(start, end), max(start, end))``: every ramp stays between its ends."""
        return float(min(self.start, self.end)), float(max(self.start, self.end))

    def progress(self, step: int) -> float:
        """Fraction of the ramp done at ``step``, in [0, 1]."""
        s = _as_step(step)
        return min(max((s - self.delay) / self.steps, 0.0), 1.0)

    def shape(self, t: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        """Value at ``step``: ``start`` up to ``delay``, then the ramp, then ``end``."""
        t = self.progress(step)
        return float(self.start + (self.end - self.start) * self.shape(t))


@dataclass(frozen=True)
class Linear(_Ramp):
    r"""Linear warm-up from ``start`` to ``end`` over ``steps`` steps after ``delay`` steps.

    .. math:: v(s) = v_0 + (v_1 - v_0)\, t, \qquad t = \mathrm{clip}((s - d)/S, 0, 1).

    Parameters
    ----------
    start, end : float >= 0, default 0.0, 1.0
    steps : int, default 1000
        Length :math:`S \geq 1` of the ramp.
    delay : int, default 0
        Steps :math:`d` spent at ``start`` before the ramp begins.

    Examples
    --------
    >>> from minmaxfuse.losses import Linear
    >>> s = Linear(0.0, 1.0, steps=10, delay=5)
    >>> s(0), s(10), s(15), s(99)
    (0.0, 0.5, 1.0, 1.0)
    """

    def shape(self, t: float) -> float:
        """Identity."""
        return t


@dataclass(frozen=True)
class Cosine(_Ramp):
    r"""Half-cosine ramp from ``start`` to ``end`` (smooth at both ends).

    .. math:: v(s) = v_0 + (v_1 - v_0)\, \tfrac12 (1 - \cos \pi t).

    Use ``start=1, end=0`` for a cosine decay. Parameters as in :class:`Linear`.

    Examples
    --------
    >>> from minmaxfuse.losses import Cosine
    >>> s = Cosine(0.0, 2.0, steps=4)
    >>> s(0), s(2), s(4)
    (0.0, 1.0, 2.0)
    """

    def shape(self, t: float) -> float:
        """Half cosine."""
        return 0.5 * (1.0 - math.cos(math.pi * t))


@dataclass(frozen=True)
class SigmoidRamp(_Ramp):
    r"""TTA's ramp (:func:`mass_ramp`) as a step schedule.

    .. math:: v(s) = v_0 + (v_1 - v_0)\, e^{-5 (1 - t)^2}.

    With ``start=0.1, end=1.0, steps=10 * iters_per_epoch`` it is TTA's mass curriculum ρ.
    As in TTA, the value at step 0 is :math:`v_0 + (v_1 - v_0) e^{-5}` (0.106 for the
    defaults), not exactly ``start``; it reaches ``end`` exactly at ``delay + steps``.
    Parameters as in :class:`Linear`, defaults ``start=0.1, end=1.0``.

    Examples
    --------
    >>> from minmaxfuse.losses import SigmoidRamp
    >>> s = SigmoidRamp(steps=100)
    >>> round(s(0), 4), round(s(50), 4), s(100)
    (0.1061, 0.3579, 1.0)
    """

    start: float = 0.1
    end: float = 1.0

    def shape(self, t: float) -> float:
        """The sigmoid-like ramp."""
        return math.exp(-5.0 * (1.0 - t) ** 2)


def check_schedule(value: object, name: str) -> Schedule:
    """Return a :class:`Schedule` (numbers become :class:`Constant`)."""
    if isinstance(value, Schedule):
        return value
    try:
        v = as_real(value, name)
    except TypeError:
        raise TypeError(
            f"`{name}` must be a number or a Schedule; got {type(value).__name__}."
        ) from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"`{name}` must be >= 0 and finite; got {value!r}.")
    return Constant(v)
