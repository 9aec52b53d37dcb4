"""One token per scalar feature, for tabular modalities (clinical variables, CNV values, panels)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minmaxfuse._checks import (
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_mask,
    check_ndim,
    check_params_dtype,
)

_MISSING = ("learned", "zero")


class FeatureTokenizer(nn.Module):
    r"""Turn each scalar feature of a table into its own token (the FT-Transformer tokenizer).

    A patient with feature values :math:`x \in \mathbb{R}^F` gets :math:`F` tokens

    .. math::

        t_j = x_j \, W_j + b_j \in \mathbb{R}^D, \qquad j = 1, \dots, F,

    with a learned direction :math:`W_j` and offset :math:`b_j` per feature (Gorishniy et al.,
    2021). The tokens can go wherever patch or pathway tokens go: into
    :class:`~minmaxfuse.layers.PrototypeUOTAlign` as one more modality, or into any attention
    block. This is what makes a handful of clinical variables, a vector of copy-number values
    or an immunohistochemistry panel a modality without hand-written encoders.

    Parameters
    ----------
    num_features : int
        ``F >= 1``, the number of columns of the table.
    dim : int
        Token size ``D >= 1``.
    bias : bool, default True
        Learn the per-feature offsets :math:`b_j`. Without them a feature's token only scales
        along :math:`W_j`, so a cosine-similarity layer downstream would see just its sign.
    missing : {"learned", "zero"}, default "learned"
        Token of a missing entry (``mask`` False): ``"learned"`` uses a learned per-feature
        token :math:`e_j` ("value unknown" is information, e.g. a test not ordered);
        ``"zero"`` uses the zero vector. Either way the value itself never enters the maths, so a
        NaN there does not reach the output or any gradient.

    Attributes
    ----------
    weight : Parameter, shape (F, D)
        :math:`W_j` (row ``j``), initialised :math:`\mathcal{U}(-1/\sqrt{D}, 1/\sqrt{D})`.
    bias : Parameter, shape (F, D) or None
        :math:`b_j`, same initialisation.
    missing_token : Parameter, shape (F, D) or None
        :math:`e_j` (``missing="learned"`` only), same initialisation.

    Raises
    ------
    ValueError, TypeError
        On illegal hyper-parameters.

    See Also
    --------
    PrototypeUOTAlign : pass the tokenizer's output as one modality (and ``mask`` as its mask).

    Notes
    -----
    Inputs should be on a common scale (z-scored on the training data, or 0/1 indicators), as
    for any linear layer. With ``missing="learned"`` and the mask passed on to the alignment
    layer too, a missing value can be treated either as an informative token (keep the mask all
    True downstream) or as absent (pass the mask): the tokenizer supports both.

    References
    ----------
    .. [1] Y. Gorishniy, I. Rubachev, V. Khrulkov and A. Babenko, "Revisiting deep learning
       models for tabular data", NeurIPS 2021 (arXiv 2106.11959).

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.layers import FeatureTokenizer
    >>> tok = FeatureTokenizer(3, 8)                       # age, sex, stage -> 3 tokens of size 8
    >>> x = torch.tensor([[0.5, 1.0, float("nan")], [-1.2, 0.0, 2.0]])
    >>> mask = ~torch.isnan(x)                             # True = observed
    >>> tok(x, mask).shape
    torch.Size([2, 3, 8])
    >>> bool(torch.isfinite(tok(x, mask)).all())
    True
    """

    def __init__(
        self, num_features: int, dim: int, *, bias: bool = True, missing: str = "learned"
    ) -> None:
        super().__init__()
        self.num_features = check_int(num_features, "num_features", minimum=1)
        self.dim = check_int(dim, "dim", minimum=1)
        if not isinstance(bias, bool):
            raise TypeError(f"`bias` must be a bool; got {type(bias).__name__}.")
        self.missing = check_choice(missing, _MISSING, "missing")
        bound = 1.0 / math.sqrt(self.dim)

        def init() -> nn.Parameter:
            return nn.Parameter(torch.empty(self.num_features, self.dim).uniform_(-bound, bound))

        self.weight = init()
        self.bias = init() if bias else None
        self.missing_token = init() if self.missing == "learned" else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Tokens of a batch of table rows.

        Parameters
        ----------
        x : Tensor, shape (B, F)
            Feature values; entries where ``mask`` is False are ignored (they may be NaN).
        mask : Tensor of bool, shape (B, F), optional
            True where a value is observed. Default: every value is observed (then ``x`` must be
            finite).

        Returns
        -------
        Tensor, shape (B, F, D)
            ``tokens[b, j]`` is :math:`x_{bj} W_j + b_j`, or the missing token where
            ``mask[b, j]`` is False.

        Raises
        ------
        ValueError, TypeError
            On a wrong shape, dtype or device, or NaN/Inf in an observed entry.
        """
        check_float(x, "x")
        check_ndim(x, 2, "x", "B, F")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"`x` must have shape (B, F) with F = num_features = {self.num_features}; "
                f"got {tuple(x.shape)}."
            )
        check_params_dtype(x, "x", self.weight, "FeatureTokenizer")
        m = check_mask(mask, tuple(x.shape), "mask", x)
        check_finite(x, "x", m if mask is not None else None)
        w = self.weight.to(x.dtype)
        xs = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))  # (B, F)
        tokens = xs.unsqueeze(-1) * w  # (B, F, D)
        if self.bias is not None:
            tokens = tokens + self.bias.to(x.dtype)
        if mask is None:
            return tokens
        if self.missing_token is not None:
            fill = self.missing_token.to(x.dtype).expand_as(tokens)
        else:
            fill = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(m.unsqueeze(-1), tokens, fill)

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, dim={self.dim}, "
            f"bias={self.bias is not None}, missing={self.missing!r}"
        )
