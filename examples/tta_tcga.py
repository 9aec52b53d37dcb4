"""Train and cross-validate the TTA ("Together, Then Apart") survival model on TCGA features.

Run ``python examples/tta_tcga.py`` for a quick 5-fold run on a synthetic TCGA-like cohort, or
``python examples/tta_tcga.py --help`` for real data (cohort tables, splits, WSI features).
See ``examples/README.md`` for the commands and measured results.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tta.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
