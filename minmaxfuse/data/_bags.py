"""Padding ragged bags and drawing fixed-size bags (PANTHER/MMP-style patch sampling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from minmaxfuse._checks import check_has_data, check_int, check_mask, check_tensor


class PaddedBags(NamedTuple):
    """Padded bags and their validity mask.

    Attributes
    ----------
    tokens : Tensor, shape (B, N, D)
        Bags stacked along the batch axis, zero-padded to the longest (or requested) length.
    mask : Tensor of bool, shape (B, N)
        ``True`` marks real instances, ``False`` padding.
    """

    tokens: Tensor
    mask: Tensor


def _check_bag_list(bags: object, name: str) -> list[Tensor]:
    if isinstance(bags, Tensor) or not isinstance(bags, Sequence) or len(bags) == 0:
        got = type(bags).__name__ if not isinstance(bags, Sequence) else "an empty sequence"
        raise TypeError(f"`{name}` must be a non-empty sequence of (N_i, D) tensors; got {got}.")
    out: list[Tensor] = []
    for i, b in enumerate(bags):
        check_tensor(b, f"{name}[{i}]")
        if b.ndim != 2:
            raise ValueError(f"`{name}[{i}]` must have shape (N_i, D); got {tuple(b.shape)}.")
        out.append(b)
    d0, dt0, dev0 = out[0].shape[1], out[0].dtype, out[0].device
    for i, b in enumerate(out[1:], start=1):
        if b.shape[1] != d0:
            raise ValueError(
                f"`{name}[{i}]` must have D = {d0} features like `{name}[0]`; got {tuple(b.shape)}."
            )
        if b.dtype != dt0 or b.device != dev0:
            raise ValueError(
                f"`{name}[{i}]` must have the dtype/device of `{name}[0]` ({dt0}, {dev0}); "
                f"got ({b.dtype}, {b.device})."
            )
    return out


def _check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"`generator` must be a torch.Generator or None; got {type(generator).__name__}. "
            "Seed one with torch.Generator().manual_seed(seed)."
        )
    return generator


def pad_bags(bags: Sequence[Tensor], *, length: int | None = None) -> PaddedBags:
    """Stack ragged bags ``(N_i, D)`` into one zero-padded batch with a validity mask.

    Parameters
    ----------
    bags : sequence of Tensor, each shape (N_i, D)
        One bag per patient; all share ``D``, dtype and device. ``N_i = 0`` is allowed (the row
        of the mask is then all ``False``; the layers reject such bags unless told otherwise).
    length : int, optional
        Pad to this many instances instead of ``max(N_i)``; must be ``>= max(N_i)``.

    Returns
    -------
    PaddedBags
        ``tokens (B, N, D)`` with zeros at padded positions and ``mask (B, N)`` bool.

    Raises
    ------
    TypeError
        If ``bags`` is not a non-empty sequence of tensors.
    ValueError
        If a bag is not 2-D, the feature sizes, dtypes or devices differ, or ``length`` is too
        small.

    See Also
    --------
    sample_bags : draw fixed-size bags, padding the small ones.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.data import pad_bags
    >>> x, mask = pad_bags([torch.ones(2, 3), torch.ones(4, 3)])
    >>> x.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 4, 3]), [2, 4])
    """
    items = _check_bag_list(bags, "bags")
    longest = max(b.shape[0] for b in items)
    if length is None:
        n = longest
    else:
        n = check_int(length, "length", minimum=0)
        if n < longest:
            raise ValueError(f"`length` must be >= the longest bag ({longest}); got {n}.")
    first = items[0]
    tokens = first.new_zeros((len(items), n, first.shape[1]))  # (B, N, D)
    mask = torch.zeros((len(items), n), dtype=torch.bool, device=first.device)  # (B, N)
    for i, b in enumerate(items):
        tokens[i, : b.shape[0]] = b
        mask[i, : b.shape[0]] = True
    return PaddedBags(tokens, mask)


def sample_bag(bag: Tensor, size: int, *, generator: torch.Generator | None = None) -> PaddedBags:
    r"""Draw a fixed-size bag: ``size`` instances without replacement, or zero-pad if fewer.

    This is the patch sampling of PANTHER/MMP that TTA trains with (``size = 4096``): a bag with
    more than ``size`` instances is subsampled uniformly without replacement; a smaller bag is
    kept whole (in its original order) and zero-padded, with a mask marking the real rows.

    Parameters
    ----------
    bag : Tensor, shape (N, D)
        All instances of one bag.
    size : int
        Number of rows of the output, ``>= 1``.
    generator : torch.Generator, optional
        Source of randomness (on the bag's device, or the CPU), for reproducible draws.

    Returns
    -------
    PaddedBags
        ``tokens (size, D)`` and ``mask (size,)`` (no batch axis here).

    Raises
    ------
    ValueError
        If ``bag`` is not 2-D or ``size < 1``.
    TypeError
        If ``generator`` is not a :class:`torch.Generator` or None.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.data import sample_bag
    >>> g = torch.Generator().manual_seed(0)
    >>> x, mask = sample_bag(torch.randn(10, 4), 6, generator=g)
    >>> x.shape, int(mask.sum())
    (torch.Size([6, 4]), 6)
    >>> x, mask = sample_bag(torch.randn(3, 4), 6, generator=g)
    >>> int(mask.sum())
    3
    """
    check_tensor(bag, "bag")
    if bag.ndim != 2:
        raise ValueError(f"`bag` must have shape (N, D); got {tuple(bag.shape)}.")
    size = check_int(size, "size", minimum=1)
    _check_generator(generator)
    n = bag.shape[0]
    if n > size:
        dev = generator.device if generator is not None else bag.device
        idx = torch.randperm(n, generator=generator, device=dev)[:size].to(bag.device)
        return PaddedBags(bag[idx], torch.ones(size, dtype=torch.bool, device=bag.device))
    tokens = bag.new_zeros((size, bag.shape[1]))
    tokens[:n] = bag
    mask = torch.arange(size, device=bag.device) < n
    return PaddedBags(tokens, mask)


def sample_bags(
    bags: Sequence[Tensor] | Tensor,
    size: int,
    *,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> PaddedBags:
    """Draw a fixed-size bag for every patient (see :func:`sample_bag`) and stack them.

    Parameters
    ----------
    bags : sequence of Tensor (N_i, D), or Tensor, shape (B, N, D)
        Ragged bags, or an already padded batch (then ``mask`` says which rows are real).
    size : int
        Instances per output bag.
    mask : Tensor of bool, shape (B, N), optional
        Validity mask of a padded ``bags`` tensor; ignored for a list.
    generator : torch.Generator, optional
        Source of randomness; bags are drawn in batch order, so a seeded generator makes the
        whole batch reproducible.

    Returns
    -------
    PaddedBags
        ``tokens (B, size, D)`` and ``mask (B, size)``.

    Raises
    ------
    TypeError, ValueError
        On malformed bags or mask (see :func:`pad_bags`), or a ``generator`` that is not a
        :class:`torch.Generator`. An empty padded batch ``(0, N, D)`` gives empty outputs.

    Examples
    --------
    >>> import torch
    >>> from minmaxfuse.data import sample_bags
    >>> g = torch.Generator().manual_seed(0)
    >>> x, mask = sample_bags([torch.randn(9, 2), torch.randn(2, 2)], 4, generator=g)
    >>> x.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 4, 2]), [4, 2])
    """
    size = check_int(size, "size", minimum=1)
    _check_generator(generator)
    if isinstance(bags, Tensor):
        if bags.ndim != 3:
            raise ValueError(f"`bags` must have shape (B, N, D); got {tuple(bags.shape)}.")
        if bags.shape[0] == 0:  # an empty batch stays empty (no bag to draw from)
            if mask is not None:
                check_mask(mask, tuple(bags.shape[:2]), "mask", bags)
            tokens = bags.new_zeros((0, size, bags.shape[2]))
            return PaddedBags(tokens, torch.zeros((0, size), dtype=torch.bool, device=bags.device))
        if mask is None:
            items = list(bags.unbind(0))
        else:
            check_mask(mask, tuple(bags.shape[:2]), "mask", bags)
            check_has_data(mask, "mask", "the valid rows of each bag are selected by value")
            items = [b[m] for b, m in zip(bags.unbind(0), mask.unbind(0))]
    else:
        items = _check_bag_list(bags, "bags")
    drawn = [sample_bag(b, size, generator=generator) for b in items]
    return PaddedBags(torch.stack([d.tokens for d in drawn]), torch.stack([d.mask for d in drawn]))
