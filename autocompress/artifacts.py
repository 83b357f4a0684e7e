"""Where trial files (model, recipe, metrics) are kept: Optuna's file-system store,
with writes that are all-or-nothing.

Optuna's `FileSystemArtifactStore.write` copies straight into the final file, so a
full disk left a truncated `model.onnx` that a later export would hand out. Here a
file is copied beside its final name and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from optuna.artifacts import FileSystemArtifactStore

PARTIAL_SUFFIX = ".partial"


class AtomicArtifactStore(FileSystemArtifactStore):
    """`FileSystemArtifactStore` whose files appear whole or not at all."""

    def __init__(self, base_path: str | Path) -> None:
        super().__init__(base_path)
        self.base_path = Path(base_path)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        final = self._get_filepath(artifact_id)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        try:
            with open(partial, "wb") as handle:
                shutil.copyfileobj(content_body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
