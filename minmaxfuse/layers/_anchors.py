"""The Apart stage's modality anchors and per-modality attention refiners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from minmaxfuse._checks import (
    check_bool,
    check_finite,
    check_float,
    check_in_range,
    check_int,
    check_ndim,
    check_params_dtype,
    check_same_device,
)


class AnchorOutput(NamedTuple):
    """Output of :class:`ModalityAnchors`.

    Attributes
    ----------
    tokens : list of Tensor, each shape (B, K_m, D)
        Refined prototype tokens of every modality (the anchor position removed).
    pooled : Tensor, shape (B, A, D)
        Mean over the ``K_m`` refined tokens, one vector per modality.
    anchors : Tensor, shape (A, D)
        The learnable anchors (the parameter itself, so gradients reach it).
    """

    tokens: list[Tensor]
    pooled: Tensor
    anchors: Tensor


class _LayerNorm(nn.LayerNorm):
    """LayerNorm that stays finite for tokens of any finite scale.

    A token whose largest entry exceeds ``2**32`` is first divided by that entry times
    ``2**-16`` (held constant for autograd), so that its variance cannot overflow (float32
    overflows for entries above about 1.8e19); LayerNorm is invariant to that scale up to its
    ``eps``, whose effect on such a token is below ``1e-14`` relative. Other tokens are
    untouched (bit-identical to :class:`torch.nn.LayerNorm`); the parameters and state dict are
    those of :class:`torch.nn.LayerNorm`.
    """

    def forward(self, x: Tensor) -> Tensor:
        s = x.detach().abs().amax(dim=-1, keepdim=True)  # (..., 1)
        big = s > 2.0**32
        x = torch.where(big, x / torch.where(big, s * 2.0**-16, torch.ones_like(s)), x)
        return super().forward(x)


class _Attention(nn.Module):
    """Multi-head self-attention without biases; optional output projection."""

    def __init__(self, dim: int, heads: int, dropout: float, out_proj: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim) if out_proj else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (B, H, N, d)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)  # (B, H, N, N)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.out(y)


class _RefineBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.norm1 = _LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout, out_proj=residual)
        self.ff = nn.Sequential(
            _LayerNorm(dim),
            nn.Linear(dim, dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.residual:
            x = x + self.attn(self.norm1(x))
            return x + self.ff(x)
        return self.ff(self.attn(self.norm1(x)))


class ModalityAnchors(nn.Module):
    r"""Learnable modality anchors refined with each modality's prototype tokens (TTA's Apart).

    For modality :math:`m` with prototype tokens :math:`T_m \in \mathbb{R}^{K_m \times D}` and
    anchor :math:`a_m \in \mathbb{R}^D`, the sequence :math:`[T_m; a_m]` goes through that
    modality's own stack of ``refine_layers`` attention blocks and a final LayerNorm; the anchor
    position is then dropped, leaving refined tokens :math:`\hat T_m`, and
    :math:`\bar s_m = \frac{1}{K_m}\sum_k \hat T_m[k]` is the pooled vector (fed to
    :class:`~minmaxfuse.losses.DistinctContrastive` with the anchors).

    Works for any number of modalities ``A`` and any ``K_m`` (they may differ). Attention runs
    over the ``K_m + 1`` tokens of each patient independently, so the output of a patient
    does not depend on the rest of the batch, and permuting the prototype tokens permutes the
    refined tokens the same way (no positional encoding).

    Parameters
    ----------
    num_modalities : int
        ``A >= 1``.
    dim : int
        Token size ``D`` (divisible by ``heads``).
    refine_layers : int, default 1
        Blocks per modality (TTA: 1).
    heads : int, default 1
        Attention heads (TTA: 1).
    dropout : float in [0, 1), default 0.0
        Dropout on attention weights and inside the feed-forward (TTA: 0.3 in the FF).
    residual : bool, default True
        ``True``: standard pre-LN residual block,
        ``x + Attn(LN(x))`` then ``x + FF(x)`` (FF = LN → Linear → GELU → Dropout → Linear),
        with an output projection. ``False``: TTA's block, ``FF(Attn(LN(x)))`` with no
        residual and no output projection.

    Raises
    ------
    ValueError, TypeError
        On illegal hyper-parameters.

    Notes
    -----
    Deviation from the authors' code: the default ``residual=True`` adds residual connections
    and an output projection to TTA's single-head block (a deliberate, documented deviation);
    without them the anchor's information reaches the other tokens only through attention
    and the block cannot represent the identity. ``residual=False`` reproduces TTA. The
    anchors are initialised ``randn`` as in TTA.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.layers import ModalityAnchors
    >>> layer = ModalityAnchors(2, 16)
    >>> out = layer([torch.randn(3, 8, 16), torch.randn(3, 8, 16)])
    >>> [t.shape for t in out.tokens], out.pooled.shape, out.anchors.shape
    ([torch.Size([3, 8, 16]), torch.Size([3, 8, 16])], torch.Size([3, 2, 16]), torch.Size([2, 16]))
    """

    def __init__(
        self,
        num_modalities: int,
        dim: int,
        *,
        refine_layers: int = 1,
        heads: int = 1,
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.num_modalities = check_int(num_modalities, "num_modalities", minimum=1)
        self.dim = check_int(dim, "dim", minimum=1)
        self.refine_layers = check_int(refine_layers, "refine_layers", minimum=0)
        self.heads = check_int(heads, "heads", minimum=1)
        if dim % heads:
            raise ValueError(f"`heads` must divide `dim` = {dim}; got {heads}.")
        self.dropout = check_in_range(dropout, "dropout", 0.0, 1.0, high_open=True)
        self.residual = check_bool(residual, "residual")
        self.anchors = nn.Parameter(torch.randn(self.num_modalities, self.dim))
        self.refiners = nn.ModuleList(
            nn.Sequential(
                *[_RefineBlock(dim, heads, self.dropout, residual) for _ in range(refine_layers)],
                _LayerNorm(dim),
            )
            for _ in range(self.num_modalities)
        )

    def forward(self, prototype_tokens: Sequence[Tensor]) -> AnchorOutput:
        """Append each anchor to its modality's tokens, refine, drop the anchor, pool.

        Parameters
        ----------
        prototype_tokens : sequence of Tensor, each shape (B, K_m, D)
            One tensor per modality (e.g. ``PrototypeUOTAlign(...).prototype_tokens``).

        Returns
        -------
        AnchorOutput
            ``tokens`` (list of (B, K_m, D)), ``pooled`` (B, A, D), ``anchors`` (A, D).

        Raises
        ------
        ValueError, TypeError
            On a wrong number of modalities, wrong ranks, mismatched ``B`` or ``D``, NaN/Inf.
        """
        if isinstance(prototype_tokens, Tensor) or not isinstance(prototype_tokens, Sequence):
            raise TypeError(
                "`prototype_tokens` must be a sequence of (B, K_m, D) tensors; got "
                f"{type(prototype_tokens).__name__}."
            )
        if len(prototype_tokens) != self.num_modalities:
            raise ValueError(
                f"`prototype_tokens` must hold one tensor per modality "
                f"(num_modalities = {self.num_modalities}); got {len(prototype_tokens)}."
            )
        b = None
        for m, t in enumerate(prototype_tokens):
            name = f"prototype_tokens[{m}]"
            check_float(t, name)
            check_ndim(t, 3, name, "B, K, D")
            if t.shape[-1] != self.dim or t.shape[1] == 0 or (b is not None and t.shape[0] != b):
                raise ValueError(
                    f"`{name}` must have shape (B, K, D) with K >= 1, D = {self.dim}"
                    + (f" and B = {b}" if b is not None else "")
                    + f"; got {tuple(t.shape)}."
                )
            b = t.shape[0]
            check_params_dtype(t, name, self.anchors, "ModalityAnchors")
            check_same_device([("prototype_tokens[0]", prototype_tokens[0]), (name, t)])
            check_finite(t, name)
        tokens: list[Tensor] = []
        pooled: list[Tensor] = []
        for m, t in enumerate(prototype_tokens):
            anchor = self.anchors[m].to(t.dtype).expand(t.shape[0], 1, self.dim)  # (B, 1, D)
            seq = torch.cat([t, anchor], dim=1)  # (B, K + 1, D)
            refined = self.refiners[m](seq)[:, :-1]  # (B, K, D)
            tokens.append(refined)
            pooled.append(refined.mean(dim=1))
        return AnchorOutput(tokens, torch.stack(pooled, dim=1), self.anchors)

    def extra_repr(self) -> str:
        return (
            f"num_modalities={self.num_modalities}, dim={self.dim}, "
            f"refine_layers={self.refine_layers}, heads={self.heads}, dropout={self.dropout}, "
            f"residual={self.residual}"
        )
