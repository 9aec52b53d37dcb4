"""PIBD: prototypical information bottlenecking and disentangling.

Zhang, Xu, Chen, Xie and Chen, "Prototypical Information Bottlenecking and Disentangling for
Multimodal Cancer Survival Prediction", ICLR 2024; follows https://github.com/zylbuaa/PIBD
(a prototypical information bottleneck per modality, then a disentangling transformer).

1. Classes. :meth:`PIBD.prepare` sees the training rows only: the three inner edges of four
   time bins are the quartiles of their event (uncensored) times (of all their times when none
   is an event), kept as a buffer so checkpoints carry them. A patient's class is
   ``2 * bin + c`` with ``c = 1`` when censored: 4 bins x censorship = 8 classes, one Gaussian
   *proxy* per class and modality (learnable mean and log-variance in ``D``).
2. Prototypical information bottleneck, per modality (the context tokens and the concatenated
   guide tokens). Every valid token is scored by its largest cosine similarity to the
   modality's proxy means; the ``ceil(ratio * valid)`` best tokens are kept (``ratio`` 0.5 for
   the context, 0.8 for the guides; at least one when any is valid, none of a modality without
   a valid token). The indices come from the detached scores (a hard top-k) and the tokens are
   gathered, so the gradient reaches the kept tokens. The mean of the kept tokens gives a
   Gaussian code ``N(mu, diag(exp(logvar)))`` (two linear heads): in training ``samples`` = 50
   reparameterised draws, the first of which is the code passed on; in eval the mean (no
   sampling). The bottleneck terms are the proxy NLL (``alpha`` = 0.1: cross-entropy of the
   class logits ``log N(z; proxy_c)``, so the code is pulled to its patient's class proxy and
   away from the others, averaged over the draws) and the KL of the code's Gaussian to the
   patient's class proxy (``beta`` = 0.01), each summed over the two modalities; a patient
   without a valid token of a modality is left out of that modality's terms.
3. Proxy loss (``gamma`` = 1, label-free): the proxies of different classes are kept apart,
   the mean over class pairs of ``relu(cos(mean_c, mean_c'))`` per modality (zero once the
   proxy means are pairwise orthogonal or opposed).
4. Disentangling. The two codes, each followed by its modality's kept tokens, form one
   sequence through a :class:`~examples.tta.peers._base.TransformerLayer`; each modality's
   outputs (its code and kept tokens) are averaged into ``r_m``, which two linear heads split
   into a modality-specific part ``s_m`` and a shared part ``c_m``. The risk head reads
   ``[s_context, s_guides, (c_context + c_guides) / 2]``. The mutual information between the
   two specific parts is penalised with a CLUB estimator (Cheng et al., "CLUB: A Contrastive
   Log-ratio Upper Bound of Mutual Information", ICML 2020): a variational network
   ``q(s_guides | s_context)`` (Gaussian, log-variance bounded by ``tanh`` as in CLUB's code)
   is trained by its own negative log-likelihood on detached inputs (the learning loss trains
   only ``q``), and the upper bound ``E[log q(y_i | x_i)] - E_{i,j}[log q(y_j | x_i)]`` is
   computed with ``q``'s parameters detached (it trains only the encoders). Both enter with
   ``sigma`` = 0.1.

Total loss ``survival + gamma * proxy + alpha * proxy_nll + beta * kl + sigma * (club_mi +
club_learn)``; the two label terms are present only when the batch's labels are given and
:meth:`PIBD.prepare` has fitted the bins (otherwise only the survival and label-free terms).

Roles (see :mod:`examples.tta.peers`): the context modality (``wsi`` when present) gives the
patch-like tokens; the tokens of every other modality, concatenated, are the genomic tokens.

Simplifications and deviations from the repository:

* tokens come from the shared encoders of the comparison, not PIBD's patch projection and
  per-group SNNs; the Gaussian is put on the mean of the kept tokens (one code per modality
  and patient) rather than on every instance;
* the instance score is the cosine similarity to the nearest proxy mean, the same in training
  and eval (it does not use the patient's label); the selection is a hard top-k on detached
  scores, so the proxies are not trained through the selection;
* every log-density, KL and CLUB term is averaged over the ``D`` feature dimensions instead of
  summed (the weights 0.1 / 0.01 / 1 / 0.1 are then on a scale that does not grow with
  ``--dim``); proxy log-variances and code log-variances are clamped to ``[-6, 6]``;
* the proxy loss is this module's separation term (described above), not the repository's;
* the disentangling module is one shared transformer layer and two linear heads per modality
  with CLUB on the specific parts only; PIBD's guidance of the disentangling by the joint
  prototypical distribution of both modalities is not reproduced, there is no extra loss on
  the shared parts and no separate optimiser for the estimator (one optimiser, gradients
  routed by detaching);
* trained with the comparison's shared survival loss, optimiser, schedule and batches, not
  PIBD's NLL with Adam at 5e-4 on batches of 32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from minmaxfuse.losses import MinMaxObjective

from ..encoders import masked_mean
from ._base import PeerModel, TransformerLayer, risk_head

MIN_MODALITIES = 2
N_BINS = 4
N_CLASSES = 2 * N_BINS
_LOGVAR = 6.0


def keep_counts(mask: Tensor, ratio: float) -> Tensor:
    """Tokens kept per row: ``ceil(ratio * valid)``, at least 1 when a row has a valid one."""
    n = mask.sum(-1).to(torch.float64)
    k = torch.ceil(n * ratio - 1e-9).long()
    return torch.where(n > 0, k.clamp(1), 0)


def top_k_select(scores: Tensor, mask: Tensor, ratio: float) -> tuple[Tensor, Tensor]:
    """Indices ``(B, K)`` of the best-scored valid tokens and the mask of the kept slots.

    ``scores`` (B, N) are detached; row ``b`` keeps :func:`keep_counts` tokens, all valid,
    sorted by decreasing score; ``K`` is the largest count of the batch (at least 1).
    """
    k = keep_counts(mask, ratio)
    kmax = max(int(k.max()), 1) if k.numel() else 1
    s = scores.detach().masked_fill(~mask, -math.inf)
    idx = s.topk(kmax, dim=-1).indices
    keep = torch.arange(kmax, device=idx.device) < k.unsqueeze(-1)
    return idx, keep


def gaussian_logpdf(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mean, diag(exp(logvar)))`` averaged over the last dimension (no constant)."""
    return -0.5 * ((z - mean).pow(2) * torch.exp(-logvar) + logvar).mean(-1)


def gaussian_kl(mu: Tensor, logvar: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """``KL(N(mu, e^logvar) || N(mu_p, e^logvar_p))`` averaged over the last dimension."""
    ratio = torch.exp(logvar - logvar_p)
    return 0.5 * (ratio + (mu - mu_p).pow(2) * torch.exp(-logvar_p) - 1 - (logvar - logvar_p)).mean(
        -1
    )


class ProxyBottleneck(nn.Module):
    """One modality's Gaussian class proxies, token selection and stochastic code."""

    def __init__(self, dim: int, ratio: float, *, classes: int = N_CLASSES) -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.proxy_mean = nn.Parameter(torch.randn(classes, dim))
        self.proxy_logvar = nn.Parameter(torch.zeros(classes, dim))
        self.mu = nn.Linear(dim, dim)
        self.logvar = nn.Linear(dim, dim)

    def proxies(self) -> tuple[Tensor, Tensor]:
        """Proxy means and clamped log-variances, each ``(C, D)``."""
        return self.proxy_mean, self.proxy_logvar.clamp(-_LOGVAR, _LOGVAR)

    def scores(self, x: Tensor) -> Tensor:
        """Largest cosine similarity of every token ``x`` (B, N, D) to a proxy mean: (B, N)."""
        sim = F.normalize(x, dim=-1) @ F.normalize(self.proxy_mean, dim=-1).t()
        return sim.amax(-1)

    def select(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Kept tokens ``(B, K, D)`` (zero in unused slots), their mask and indices."""
        idx, keep = top_k_select(self.scores(x).detach(), mask, self.ratio)
        picked = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return torch.where(keep.unsqueeze(-1), picked, 0.0), keep, idx

    def code(self, kept: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """Gaussian code ``(mu, logvar)`` (B, D) of the mean kept token."""
        e = masked_mean(kept, keep)
        return self.mu(e), self.logvar(e).clamp(-_LOGVAR, _LOGVAR)

    def class_logits(self, z: Tensor) -> Tensor:
        """``log N(z; proxy_c)`` for every class: ``z`` (..., D) -> (..., C)."""
        mean, logvar = self.proxies()
        return gaussian_logpdf(z.unsqueeze(-2), mean, logvar)

    def separation(self) -> Tensor:
        """Mean over class pairs of ``relu(cos(mean_c, mean_c'))``."""
        m = F.normalize(self.proxy_mean, dim=-1)
        cos = m @ m.t()
        c = cos.shape[0]
        off = ~torch.eye(c, dtype=torch.bool, device=cos.device)
        return cos[off].clamp_min(0).mean()


class CLUB(nn.Module):
    """CLUB estimator: a Gaussian ``q(y | x)`` and the contrastive log-ratio upper bound."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or dim
        self.mu = nn.Sequential(nn.Linear(dim, h), nn.ReLU(), nn.Linear(h, dim))
        self.logvar = nn.Sequential(nn.Linear(dim, h), nn.ReLU(), nn.Linear(h, dim), nn.Tanh())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of ``q(y | x)``, each (B, D)."""
        return self.mu(x), self.logvar(x)

    def learning_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """``-E log q(y | x)`` on detached inputs: its gradient reaches ``q`` only."""
        mu, logvar = self(x.detach())
        return -gaussian_logpdf(y.detach(), mu, logvar).mean()

    def mi_upper(self, x: Tensor, y: Tensor) -> Tensor:
        """``E_i log q(y_i|x_i) - E_{i,j} log q(y_j|x_i)`` with ``q`` frozen (inputs trained)."""
        frozen = {n: p.detach() for n, p in self.named_parameters()}
        mu, logvar = functional_call(self, frozen, (x,))
        positive = -0.5 * ((y - mu).pow(2) * torch.exp(-logvar)).mean(-1)  # (B,)
        diff = y.unsqueeze(0) - mu.unsqueeze(1)  # (B_i, B_j, D)
        negative = -0.5 * (diff.pow(2) * torch.exp(-logvar).unsqueeze(1)).mean(-1).mean(-1)
        return (positive - negative).mean()


class PIBD(PeerModel):
    """Proxy bottleneck and top-k selection per modality, a disentangling transformer, CLUB."""

    uses_labels = True

    def __init__(
        self,
        infos,
        *,
        out_dim: int = 1,
        dim: int = 256,
        dropout: float = 0.25,
        ratio_context: float = 0.5,
        ratio_guides: float = 0.8,
        samples: int = 50,
        layers: int = 1,
        alpha: float = 0.1,
        beta: float = 0.01,
        gamma: float = 1.0,
        sigma: float = 0.1,
    ) -> None:
        super().__init__(infos, dim=dim, dropout=dropout)
        self.samples = int(samples)
        self.pib = nn.ModuleList(
            [ProxyBottleneck(dim, ratio_context), ProxyBottleneck(dim, ratio_guides)]
        )
        self.fusion = nn.ModuleList(TransformerLayer(dim, dropout=dropout) for _ in range(layers))
        self.specific = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.shared = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.club = CLUB(dim)
        self.head = risk_head(3 * dim, dim, out_dim, dropout)
        self.register_buffer("bin_edges", torch.zeros(N_BINS - 1))
        self.register_buffer("prepared", torch.zeros(()))
        self.objective_fn = MinMaxObjective(
            {
                "survival": 1.0,
                "proxy": gamma,
                "proxy_nll": alpha,
                "kl": beta,
                "club_mi": sigma,
                "club_learn": sigma,
            }
        )

    # ------------------------------------------------------------------ classes
    @torch.no_grad()
    def prepare(self, data, rows: np.ndarray) -> None:
        """Time-bin edges: quartiles of the event times of the training ``rows`` only."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        t = np.asarray(data.time, dtype=np.float64)[rows]
        e = np.asarray(data.event, dtype=bool)[rows]
        ref = t[e] if e.any() else t
        edges = np.quantile(ref, [q / N_BINS for q in range(1, N_BINS)])
        self.bin_edges.copy_(torch.as_tensor(edges, dtype=self.bin_edges.dtype))
        self.prepared.fill_(1.0)

    def classes(self, time: Tensor, event: Tensor) -> Tensor:
        """Class ``2 * bin + censored`` in ``0..7`` of every patient (bins are ``(a, b]``)."""
        edges = self.bin_edges.to(device=time.device, dtype=time.dtype)
        bins = torch.bucketize(time, edges)
        return 2 * bins + (~event.bool()).long()

    # ------------------------------------------------------------------ forward
    def forward(self, inputs, *, progress=None, present=None, chunk: int = 0) -> dict:
        """Risk logits, the selections, the codes and their proxy logits, the specific parts."""
        tokens, masks = self.encode(inputs, present, chunk)
        ctx, ctx_mask, guides, guides_mask = self.split(tokens, masks)
        sides = [(ctx, ctx_mask), (guides, guides_mask)]
        seq, seq_mask, spans = [], [], []
        mus, logvars, logits, has, selected = [], [], [], [], []
        start = 0
        for pib, (x, mask) in zip(self.pib, sides):
            kept, keep, idx = pib.select(x, mask)
            mu, logvar = pib.code(kept, keep)
            if self.training:
                eps = torch.randn(
                    (max(self.samples, 1), *mu.shape), device=mu.device, dtype=mu.dtype
                )
                draws = mu + eps * torch.exp(0.5 * logvar)  # (S, B, D)
                z = draws[0]
            else:
                draws = mu.unsqueeze(0)
                z = mu
            mus.append(mu)
            logvars.append(logvar)
            logits.append(pib.class_logits(draws))  # (S, B, C)
            has.append(mask.any(-1))
            selected.append((idx, keep))
            seq += [z.unsqueeze(1), kept]
            code_mask = torch.ones_like(keep[:, :1])
            seq_mask += [code_mask, keep]
            span = 1 + kept.shape[1]
            spans.append((start, start + span))
            start += span
        h = torch.cat(seq, 1)
        hm = torch.cat(seq_mask, 1)
        for layer in self.fusion:
            h = layer(h, hm)
        spec, shar = [], []
        for m, (a, b) in enumerate(spans):
            r = masked_mean(h[:, a:b], hm[:, a:b])
            spec.append(self.specific[m](r))
            shar.append(self.shared[m](r))
        fused = torch.cat([spec[0], spec[1], 0.5 * (shar[0] + shar[1])], -1)
        return {
            "logits": self.head(fused),
            "selected": tuple(selected),
            "code_mu": tuple(mus),
            "code_logvar": tuple(logvars),
            "proxy_logits": tuple(logits),
            "has": tuple(has),
            "specific": tuple(spec),
        }

    # ------------------------------------------------------------------ objective
    def bottleneck_terms(self, out: dict, cls: Tensor) -> tuple[Tensor, Tensor]:
        """Proxy NLL and KL to the class proxy, summed over the two modalities."""
        nll, kl = [], []
        for pib, lg, mu, logvar, has in zip(
            self.pib, out["proxy_logits"], out["code_mu"], out["code_logvar"], out["has"]
        ):
            lg, mu, logvar = lg.float(), mu.float(), logvar.float()
            w = has.to(mu.dtype)
            denom = w.sum().clamp_min(1)
            s = lg.shape[0]
            ce = F.cross_entropy(
                lg.reshape(-1, lg.shape[-1]), cls.repeat(s), reduction="none"
            ).view(s, -1)
            nll.append((ce.mean(0) * w).sum() / denom)
            pmean, plogvar = pib.proxies()
            kl.append((gaussian_kl(mu, logvar, pmean[cls], plogvar[cls]) * w).sum() / denom)
        return torch.stack(nll).sum(), torch.stack(kl).sum()

    def objective(
        self,
        survival: Tensor,
        out: dict,
        time: Tensor | None = None,
        event: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Survival + proxy separation + CLUB terms; the IB terms only with labels and bins."""
        proxy = torch.stack([p.separation() for p in self.pib]).sum()
        x, y = (s.float() for s in out["specific"])  # the forward may run under autocast
        terms: dict[str, Tensor | None] = {
            "survival": survival,
            "proxy": proxy.to(survival.dtype),
            "proxy_nll": None,
            "kl": None,
            "club_mi": self.club.mi_upper(x, y).to(survival.dtype),
            "club_learn": self.club.learning_loss(x, y).to(survival.dtype),
        }
        if time is not None and event is not None and bool(self.prepared > 0):
            cls = self.classes(time, event).to(out["code_mu"][0].device)
            nll, kl = self.bottleneck_terms(out, cls)
            terms["proxy_nll"] = nll.to(survival.dtype)
            terms["kl"] = kl.to(survival.dtype)
        comp = self.objective_fn.forward_components(terms)
        self.objective_fn.step()
        return comp.total, dict(comp.raw)


def build(infos, args, *, out_dim: int) -> PIBD:
    """PIBD with ``--dim`` and ``--dropout`` (the paper's ratios, samples and loss weights)."""
    return PIBD(infos, out_dim=out_dim, dim=args.dim, dropout=args.dropout)
