"""User errors of ``examples/tta_tcga.py`` and their exit codes (examples/README.md, "Exit codes").

Every user error ends the run with one line ``ERROR: <message>`` on stderr and the exit code
of its class; ``cli.main`` maps the classes below (and those of ``data`` / ``train``) to codes.
"""

from __future__ import annotations

EXIT_USAGE = 2  # a flag value or a combination of flags is invalid (as argparse itself uses)
EXIT_NONFINITE = 3  # a non-finite loss stopped the run
EXIT_FEATURES = 4  # a slide's feature file (or --features-dir) is missing or unreadable
EXIT_HOOK = 5  # stopped by the --interrupt-after testing hook
EXIT_TABLE = 6  # a table is missing, truncated, unparsable, or has bad columns / values
EXIT_PROTOCOL = 7  # no events, overlapping or foreign splits, a degenerate fold
EXIT_STATE = 8  # a saved --resume file is unreadable
EXIT_SIGINT = 130  # interrupted (Ctrl-C / SIGINT)


class UsageError(ValueError):
    """A flag value, or a combination of flags, that the example refuses (exit 2)."""


class ProtocolError(ValueError):
    """The data cannot support the protocol: no events, bad splits, degenerate folds (exit 7)."""


class ResumeStateError(RuntimeError):
    """A file saved for ``--resume`` cannot be read (exit 8)."""
