"""PIBD's classes, top-k selection, bottleneck and CLUB terms (examples/tta/peers/pibd.py).

The generic tests of every peer are in test_peers.py; these check what is specific to PIBD.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

from examples.tta.peers.pibd import PIBD, build, keep_counts, top_k_select
from minmaxfuse.survival import cox_ph_loss
from tests.examples.peer_fixtures import wsi_rna_infos as _infos
from tests.examples.peer_fixtures import wsi_rna_inputs as _inputs


def _model(seed: int = 0) -> PIBD:
    torch.manual_seed(seed)
    return build(_infos(), SimpleNamespace(dim=16, dropout=0.0), out_dim=1)


def _cohort(n: int = 20, seed: int = 0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    return SimpleNamespace(time=rng.uniform(1, 100, n), event=rng.random(n) < 0.6)


def _labels(b: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, generator=g) * 100 + 1, torch.rand(b, generator=g) < 0.6


def test_prepare_fits_the_bins_on_the_given_rows_only():
    data = _cohort()
    rows = np.arange(12)
    model = _model()
    assert float(model.prepared) == 0.0
    model.prepare(data, rows)
    t, e = data.time[rows], data.event[rows]
    expected = np.quantile(t[e], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(model.bin_edges.numpy(), expected, rtol=1e-6)
    assert float(model.prepared) == 1.0
    other = SimpleNamespace(time=data.time.copy(), event=data.event.copy())
    other.time[15] = 1e6  # a patient outside the fit rows
    other.event[17] = not other.event[17]
    again = _model()
    again.prepare(other, rows)
    assert torch.equal(again.bin_edges, model.bin_edges)
    inside = SimpleNamespace(time=data.time.copy(), event=data.event.copy())
    inside.time[np.flatnonzero(e)[0]] = 1e6  # an event of a fit row does move an edge
    moved = _model()
    moved.prepare(inside, rows)
    assert not torch.equal(moved.bin_edges, model.bin_edges)
    # the edges travel with the checkpoint
    fresh = _model(seed=3)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.bin_edges, model.bin_edges) and float(fresh.prepared) == 1.0


def test_classes_are_bin_times_censorship():
    model = _model()
    model.prepare(_cohort(), np.arange(20))
    edges = model.bin_edges.numpy()
    t, e = _labels(200)
    cls = model.classes(t, e)
    assert cls.dtype == torch.long and int(cls.min()) >= 0 and int(cls.max()) <= 7
    assert set(cls.tolist()) == set(range(8))
    for ti, ei, c in zip(t.tolist(), e.tolist(), cls.tolist()):
        b = int(np.searchsorted(edges, ti, side="left"))  # bins are (a, b]
        assert c == 2 * b + (0 if ei else 1)
    # a time on an edge falls in the lower bin
    on = torch.tensor([float(edges[1])])
    assert model.classes(on, torch.tensor([True])).item() == 2


def test_top_k_keeps_ceil_ratio_valid_tokens_and_never_padding():
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([10, 7, 3, 1, 0, 5])
    mask = torch.arange(10)[None] < lens[:, None]
    mask = mask[:, torch.randperm(10, generator=g)]  # valid tokens anywhere in the row
    scores = torch.randn(6, 10, generator=g)
    scores = torch.where(mask, scores, 1e4)  # padded tokens score best: must still be ignored
    for ratio in (0.5, 0.8):
        idx, keep = top_k_select(scores, mask, ratio)
        for b, n in enumerate(lens.tolist()):
            k = math.ceil(round(ratio * n, 9)) if n else 0
            assert int(keep[b].sum()) == k == int(keep_counts(mask[b : b + 1], ratio)[0])
            chosen = idx[b][keep[b]]
            assert bool(mask[b, chosen].all())
            best = scores[b][mask[b]].topk(k).values if k else torch.zeros(0)
            torch.testing.assert_close(scores[b, chosen], best)


def test_the_model_selects_valid_patches_only():
    model = _model().eval()
    lens = [9, 4, 1]
    inputs = _inputs(3, 9, lens)
    with torch.no_grad():
        out = model(inputs)
    (idx_c, keep_c), (idx_g, keep_g) = out["selected"]
    for b, n in enumerate(lens):
        assert int(keep_c[b].sum()) == math.ceil(0.5 * n)
        assert bool((idx_c[b][keep_c[b]] < n).all())
    assert bool((keep_g.sum(-1) == math.ceil(round(0.8 * 5, 9))).all())  # 5 rna tokens


def test_objective_terms_with_and_without_labels():
    model = _model()
    inputs = _inputs(6, 7, [7, 5, 3, 2, 6, 4])
    t, e = _labels(6)
    out = model(inputs)
    surv = cox_ph_loss(out["logits"][:, 0], t, e)
    _, unprepared = model.objective(surv, out, time=t, event=e)
    assert set(unprepared) == {"survival", "proxy", "club_mi", "club_learn"}
    model.prepare(_cohort(), np.arange(20))
    out = model(inputs)
    surv = cox_ph_loss(out["logits"][:, 0], t, e)
    total, terms = model.objective(surv, out, time=t, event=e)
    assert set(terms) == {"survival", "proxy", "proxy_nll", "kl", "club_mi", "club_learn"}
    assert all(bool(torch.isfinite(v)) for v in terms.values()) and bool(torch.isfinite(total))
    assert float(terms["kl"].detach()) >= 0 and float(terms["proxy_nll"].detach()) > 0
    w = {"survival": 1, "proxy": 1, "proxy_nll": 0.1, "kl": 0.01, "club_mi": 0.1}
    w["club_learn"] = 0.1
    torch.testing.assert_close(total, sum(w[k] * v for k, v in terms.items()))
    total2, free = model.objective(surv, out)  # no labels: label-free terms only
    assert set(free) == {"survival", "proxy", "club_mi", "club_learn"}
    assert bool(torch.isfinite(total2))


def test_club_learning_loss_trains_only_the_estimator_and_the_bound_only_the_encoders():
    model = _model()
    model.prepare(_cohort(), np.arange(20))
    t, e = _labels(5)

    def terms():
        out = model(_inputs(5, 6, [6, 5, 4, 3, 2]))
        surv = cox_ph_loss(out["logits"][:, 0], t, e)
        return model.objective(surv, out, time=t, event=e)[1]

    def grads(module):
        return [p.grad for p in module.parameters()]

    def nonzero(gs):
        return any(g is not None and bool(g.abs().sum() > 0) for g in gs)

    model.zero_grad(set_to_none=True)
    terms()["club_learn"].backward()
    assert nonzero(grads(model.club))
    others = [p.grad for n, p in model.named_parameters() if not n.startswith("club.")]
    assert not nonzero(others)
    model.zero_grad(set_to_none=True)
    terms()["club_mi"].backward()
    assert not nonzero(grads(model.club))
    assert nonzero(grads(model.encoders)) and nonzero(grads(model.specific))


def test_eval_is_deterministic_and_training_samples():
    model = _model()
    inputs = _inputs(4, 8, [8, 6, 3, 2])
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(inputs)
        torch.manual_seed(2)
        b = model(inputs)
    torch.testing.assert_close(a["logits"], b["logits"], rtol=0, atol=0)
    torch.testing.assert_close(a["code_mu"][0], b["code_mu"][0], rtol=0, atol=0)
    assert a["proxy_logits"][0].shape[0] == 1  # the mean, no draws
    model.train()  # dropout 0: only the code's sampling differs between two passes
    with torch.no_grad():
        c = model(inputs)
        d = model(inputs)
    assert c["proxy_logits"][0].shape[0] == 50
    assert not torch.allclose(c["logits"], d["logits"])
