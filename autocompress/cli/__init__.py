"""`autocompress` on the command line, one module per command group.

The heavy stack (torch, onnxruntime, optuna) is imported inside the commands that
need it, so `--help` and bad input answer in a moment.
"""

# Each module registers its commands (or sub-app) on `app`.
from autocompress.cli import dashboard, nightly, registry, signing, study  # noqa: F401
from autocompress.cli._common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
