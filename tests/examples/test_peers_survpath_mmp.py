"""SurvPath's attention pattern and MMP's prototypes and transport (examples/tta/peers).

The generic tests of every peer are in test_peers.py; these check what is specific to the two.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from examples.tta.batches import ModalityInfo
from examples.tta.peers.survpath import SurvPath, full_attention

HP = SimpleNamespace(dim=16, dropout=0.0, prototypes=4)


def _infos(in_dim: int = 8) -> list[ModalityInfo]:
    valid = np.ones((5, 3), dtype=bool)
    valid[1, 2] = valid[3, 1:] = False
    rna = ModalityInfo("rna", "grouped", valid=valid, token_names=[f"p{i}" for i in range(5)])
    return [ModalityInfo("wsi", "bag", in_dim=in_dim), rna]


def _inputs(b: int, n: int, lens: list[int], in_dim: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, in_dim, generator=g)
    mask = torch.arange(n)[None] < torch.tensor(lens)[:, None]
    x = torch.where(mask[..., None], x, 1e3)  # padded patches hold garbage
    rna = torch.randn(b, 5, 3, generator=g) * torch.as_tensor(_infos()[1].valid)
    return {"wsi": (x, mask), "rna": (rna, None)}


# ---------------------------------------------------------------------------- SurvPath


def test_survpath_attention_pattern():
    torch.manual_seed(0)
    model = SurvPath(_infos(), dim=16, dropout=0.0, heads=2).eval()
    lens = [7, 3, 1]
    inputs = _inputs(3, 7, lens)
    with torch.no_grad():
        w_p, w_h = model(inputs)["attn"]
    g, n = 5, 7
    assert w_p.shape == (3, g, g + n) and w_h.shape == (3, n, g)
    full = full_attention((w_p, w_h))
    assert full.shape == (3, g + n, g + n)
    # patch queries never attend to patches
    assert torch.equal(full[:, g:, g:], torch.zeros(3, n, n))
    # patch rows sum to one over the pathways
    torch.testing.assert_close(w_h.sum(-1), torch.ones(3, n))
    for i, k in enumerate(lens):
        # pathway rows sum to one over the pathways and the valid patches only
        torch.testing.assert_close(w_p[i, :, : g + k].sum(-1), torch.ones(g))
        assert torch.equal(full[i, :, g + k :], torch.zeros(g + n, n - k))  # padded: no weight
        assert (w_p[i, :, :g] > 0).all() and (w_p[i, :, g : g + k] > 0).all()


def test_survpath_patch_outputs_ignore_other_patches_as_keys():
    """A patch's attention row depends on its own query and the pathway keys only."""
    torch.manual_seed(0)
    model = SurvPath(_infos(), dim=16, dropout=0.0).eval()
    a = _inputs(1, 6, [6])
    x, mask = a["wsi"]
    x2 = x.clone()
    x2[0, 4] += 3.0
    b = {"wsi": (x2, mask), "rna": a["rna"]}
    with torch.no_grad():
        wa = model(a)["attn"][1]
        wb = model(b)["attn"][1]
    keep = [0, 1, 2, 3, 5]
    torch.testing.assert_close(wa[:, keep], wb[:, keep])
    assert not torch.allclose(wa[:, 4], wb[:, 4])
