"""Peer fusion models for the comparison table, as ``--method`` names.

Every peer is a small module of this package that exposes ``build(infos, args, *, out_dim)``,
``MIN_MODALITIES`` and a module docstring citing its paper and the repository it follows. All
peers share the reference model's token encoders (:mod:`examples.tta.encoders`), its survival
loss, folds, validation carve, checkpoint rule and ensemble, so the table compares fusion
designs and nothing else.

Roles. Most peers fuse a *context* bag (the whole-slide patches) with *guide* tokens (genomic
groups). :func:`~examples.tta.peers._base.roles` gives the context role to the ``wsi`` modality
when it is present, else to the first modality of ``--modalities`` (the omics-only variant:
e.g. the 50 RNA pathway tokens play the patches and the CNV family or clinical tokens the
genomic queries); every other modality is a guide.
"""

from __future__ import annotations

import importlib

# method name -> module of this package
PEERS: dict[str, str] = {
    "abmil": "abmil",
    "mcat": "mcat",
    "motcat": "motcat",
    "survpath": "survpath",
    "mmp": "mmp",
    "cmta": "cmta",
    "pibd": "pibd",
}


def peer_names() -> list[str]:
    """Method names of the peers, in table order."""
    return list(PEERS)


def _module(name: str):
    return importlib.import_module(f".{PEERS[name]}", __name__)


def min_modalities(name: str) -> int:
    """Fewest modalities the peer ``name`` can fuse."""
    return int(_module(name).MIN_MODALITIES)


def build_peer(name: str, infos, args, *, out_dim: int):
    """The peer model ``name`` for the modalities ``infos`` with the CLI hyper-parameters."""
    return _module(name).build(infos, args, out_dim=out_dim)
