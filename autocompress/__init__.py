"""autocompress: AutoML compression search for financial ML models.

Optuna explores pruning ratios, bit-widths and distillation settings; every
trial is scored on accuracy, F1 and latency measured on the target; the Pareto
front lives in SQL; the selected configuration is exported with a manifest.
"""

__version__ = "0.1.0"

from autocompress.api import StudyResult, export_selected, load_result, run_study, stored_front  # noqa: E402
from autocompress.config import StudyConfig, load_study_config  # noqa: E402
from autocompress.errors import UserError, VerificationError  # noqa: E402
from autocompress.export import verify  # noqa: E402
from autocompress.recipe import Recipe  # noqa: E402

__all__ = [
    "Recipe",
    "StudyConfig",
    "StudyResult",
    "UserError",
    "VerificationError",
    "export_selected",
    "load_result",
    "load_study_config",
    "run_study",
    "stored_front",
    "verify",
    "__version__",
]
