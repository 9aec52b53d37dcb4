"""Training recipes: named sets of defaults for the flags that depend on the data.

A flag given on the command line always wins; a recipe only fills the flags left unset.

* ``small-cohort`` (the default for real tables): what a few hundred patients need. A small token
  size, early stopping and an average of five models trained on inner folds of the training
  fold (``examples/RESULTS.md`` has the ablation behind every value).
* ``tta``: the schedule of the authors' code (arXiv 2511.18089): 256-d tokens, 32 prototypes,
  30 epochs with 15 of warm-up, the transported mass ramped over 10 epochs, batch 32, lr 1e-4,
  one model per fold.
* ``synthetic``: a quick demonstration on the generated cohort (the default without
  ``--cohort-csv``).
"""

from __future__ import annotations

# a value may be a function of the already filled arguments (the warm-up follows --epochs)
RECIPES: dict[str, dict[str, object]] = {
    "small-cohort": {
        "dim": 64,
        "prototypes": 32,
        "dropout": 0.3,
        "epochs": 30,
        "lr": 1e-3,
        "warmup_epochs": 1.0,
        "ramp_epochs": 3.0,
        "batch_size": 64,
        "weight_decay": 1e-5,
        "bag_size": 4096,
        "patience": 8,
        "ensemble": 5,
        "ensemble_select": "member",
        "apart_negatives": "anchors",
    },
    "tta": {
        "dim": 256,
        "prototypes": 32,
        "dropout": 0.3,
        "epochs": 30,
        "lr": 1e-4,
        "warmup_epochs": lambda args: 0.5 * args.epochs,  # TTA: 15 of 30
        "ramp_epochs": 10.0,
        "batch_size": 32,
        "weight_decay": 1e-5,
        "bag_size": 4096,
        "patience": 0,
        "ensemble": 1,
        "ensemble_select": "member",
        "apart_negatives": "anchors",
    },
    "synthetic": {
        "dim": 64,
        "prototypes": 16,
        "dropout": 0.3,
        "epochs": 5,
        "lr": 2e-3,
        "warmup_epochs": lambda args: 0.1 * args.epochs,
        "ramp_epochs": 2.0,
        "batch_size": 32,
        "weight_decay": 1e-5,
        "bag_size": 64,
        "patience": 0,
        "ensemble": 1,
        "ensemble_select": "member",
        "apart_negatives": "anchors",
    },
}

RECIPE_FLAGS = tuple(RECIPES["tta"])


def recipe_name(requested: str | None, synthetic: bool) -> str:
    """``auto`` (or None) means ``synthetic`` without a cohort table, else ``small-cohort``."""
    if requested in (None, "auto"):
        return "synthetic" if synthetic else "small-cohort"
    return requested


def apply_recipe(args, synthetic: bool) -> list[str]:
    """Fill every recipe flag left unset (None) in ``args``; returns the flags it filled."""
    name = recipe_name(getattr(args, "recipe", None), synthetic)
    args.recipe = name
    filled = []
    for key, value in RECIPES[name].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value(args) if callable(value) else value)
            filled.append(key)
    return filled
