"""Model families autocompress can rebuild from a shape spec (no pickle, ever).

Each family says what it can do by implementing the small protocols in
`capabilities` as methods (`Prunable`, `Layered`, `HiddenStates`; `Specified` for
every student): passes ask the model, never the task. `MLPClassifier` (credit) is
prunable; `bert.TextClassifier` (text) is all four. `bert` is imported on use
(it pulls in transformers).
"""

from autocompress.models.capabilities import (
    HiddenStates,
    Layered,
    Prunable,
    Specified,
    require,
)
from autocompress.models.mlp import MLPClassifier

__all__ = ["HiddenStates", "Layered", "MLPClassifier", "Prunable", "Specified", "require"]
