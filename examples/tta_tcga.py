"""Train and cross-validate the TTA ("Together, Then Apart") survival model on TCGA features.

Run ``python examples/tta_tcga.py`` for a quick 5-fold run on SYNTHETIC data (a generated
TCGA-like cohort, not TCGA), or ``python examples/tta_tcga.py --help`` for real data (cohort
tables, splits, WSI features). See ``examples/README.md`` for the commands, measured results and
exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__":
    try:
        from tta.cli import main
    except KeyboardInterrupt:  # Ctrl-C while torch is still importing: nothing to resume yet
        print("ERROR: interrupted before the run started", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
