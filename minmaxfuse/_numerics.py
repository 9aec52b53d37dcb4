"""Private numerical helpers shared by the layers, losses and diagnostics."""

from __future__ import annotations

import torch
from torch import Tensor


def l2_normalize(x: Tensor, dim: int = -1) -> Tensor:
    """``x / ||x||`` along ``dim``, exact for any finite scale; zero vectors stay zero.

    The vector is first divided by its largest absolute entry (held constant for autograd: the
    result does not depend on it), so that the squared norm neither overflows (entries above
    about 1.8e19 in float32) nor underflows (below about 1e-19), and no ``eps`` clamp changes
    the direction of a small vector.
    """
    if x.shape[dim] == 0:  # no features: nothing to normalise
        return x
    s = x.detach().abs().amax(dim=dim, keepdim=True)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    y = x / torch.where(s > 0, s, one)
    n = torch.linalg.vector_norm(y, dim=dim, keepdim=True)
    return y / torch.where(n > 0, n, one)
