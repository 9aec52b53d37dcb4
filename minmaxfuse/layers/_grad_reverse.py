"""Gradient reversal: identity forward, negated (scaled) gradient backward."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from minmaxfuse._checks import check_nonnegative, check_tensor


class _GradReverseFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, *, scale: float = 1.0) -> Tensor:
    r"""Identity in the forward pass; multiplies the gradient by ``-scale`` in the backward pass.

    Placing it between a feature extractor :math:`f_\theta` and a critic :math:`h_\psi` turns
    one minimisation of :math:`L(h_\psi(f_\theta(x)))` into the two-player game

    .. math:: \min_\psi \max_\theta\ L(h_\psi(f_\theta(x))),

    (Ganin & Lempitsky 2015): the critic descends :math:`L`, the extractor ascends
    ``scale`` times it. This is how a *true* adversarial max player is built with
    :class:`~minmaxfuse.losses.MinMaxObjective`, which itself only sums signed terms.

    Parameters
    ----------
    x : Tensor
        Any tensor.
    scale : float, default 1.0
        :math:`\lambda \ge 0`, the strength of the reversed gradient.

    Returns
    -------
    Tensor
        ``x`` (a view, same values, shape, dtype and device).

    Raises
    ------
    TypeError, ValueError
        If ``x`` is not a tensor or ``scale`` is negative or not finite.

    References
    ----------
    .. [1] Ganin, Lempitsky (2015). Unsupervised domain adaptation by backpropagation. ICML.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.layers import grad_reverse
    >>> x = torch.ones(3, requires_grad=True)
    >>> grad_reverse(x, scale=0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
    """
    check_tensor(x, "x")
    lam = check_nonnegative(scale, "scale")
    return _GradReverseFn.apply(x, lam)


class GradReverse(nn.Module):
    """Module form of :func:`grad_reverse` (see it for the maths).

    Parameters
    ----------
    scale : float, default 1.0
        Strength of the reversed gradient; may be changed between steps (e.g. ramped with a
        :class:`~minmaxfuse.losses.Schedule`).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.layers import GradReverse
    >>> x = torch.ones(2, requires_grad=True)
    >>> GradReverse(2.0)(x).sum().backward()
    >>> x.grad
    tensor([-2., -2.])
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = check_nonnegative(scale, "scale")

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x``; its gradient is reversed and scaled."""
        return grad_reverse(x, scale=self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
