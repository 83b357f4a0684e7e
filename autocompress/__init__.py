"""autocompress: AutoML compression search for financial ML models.

Optuna explores pruning ratios, bit-widths and distillation settings; every
trial is scored on accuracy, F1 and latency measured on the target; the Pareto
front lives in SQL; the selected configuration is exported with a manifest.
"""

__version__ = "0.1.0"

# Public names, imported on first use (PEP 562) so the CLI starts without torch.
_EXPORTS = {
    "Recipe": "autocompress.recipe",
    "StudyConfig": "autocompress.config",
    "StudyResult": "autocompress.api",
    "Registry": "autocompress.registry",
    "UserError": "autocompress.errors",
    "VerificationError": "autocompress.errors",
    "export_selected": "autocompress.api",
    "load_result": "autocompress.api",
    "load_study_config": "autocompress.config",
    "run_study": "autocompress.api",
    "stored_front": "autocompress.api",
    "verify": "autocompress.manifest",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autocompress' has no attribute {name!r}")
