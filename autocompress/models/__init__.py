"""Model families autocompress can rebuild from a shape spec (no pickle, ever).

Each family says what it can do by implementing the small protocols in
`capabilities` as methods (`Prunable`, `PrunableFFN`, `Layered`, `HiddenStates`;
`Specified` for every student): passes ask the model, never the task. `MLPClassifier`
is `Prunable`; `bert.TextClassifier` is all of them. `bert` is imported on use
(it pulls in transformers).
"""

from autocompress.models.capabilities import (
    HiddenStates,
    Layered,
    Prunable,
    PrunableFFN,
    Specified,
    require,
)
from autocompress.models.mlp import MLPClassifier

__all__ = [
    "HiddenStates",
    "Layered",
    "MLPClassifier",
    "Prunable",
    "PrunableFFN",
    "Specified",
    "require",
]
