"""A plain MLP classifier that saves as safetensors plus a shape spec.

Structured pruning changes the hidden widths, so the spec is read back from the
layers themselves: a pruned student reloads without guessing. Of the capabilities in
`autocompress.models.capabilities` it has `Specified` and `Prunable`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "model.safetensors"


class MLPClassifier(nn.Module):
    """Linear → ReLU → Dropout blocks, then a linear head producing logits."""

    def __init__(
        self, input_dim: int, hidden_sizes: list[int], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dropout = dropout
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features))

    @property
    def spec(self) -> dict:
        """The shape of this model as it is now (after pruning, the pruned widths)."""
        linears = [m for m in self.body if isinstance(m, nn.Linear)]
        return {
            "family": "mlp",
            "input_dim": (linears[0] if linears else self.head).in_features,
            "hidden_sizes": [m.out_features for m in linears],
            "num_classes": self.head.out_features,
            "dropout": self.dropout,
        }

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- capabilities (`autocompress.models.capabilities`): Prunable only ---------------
    # No layers to drop, no hidden states to distil, no FFN to prune apart: passes asking
    # for those refuse.
    def protected_layers(self) -> list[nn.Module]:
        """The head stays whole: its outputs are the classes."""
        return [self.head]

    def pruning_options(self, ratio: float) -> dict:
        """No extra `MetaPruner` options: every hidden Linear by the same ratio."""
        return {}

    def after_pruning(self, pruner: object) -> None:
        """Nothing to bring in line: `spec` reads the widths from the layers."""

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
        (folder / SPEC_FILE).write_text(json.dumps(self.spec, indent=2))

    @classmethod
    def from_spec(cls, spec: dict) -> MLPClassifier:
        return cls(spec["input_dim"], spec["hidden_sizes"], spec["num_classes"], spec["dropout"])

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> MLPClassifier:
        folder = Path(folder)
        model = cls.from_spec(json.loads((folder / SPEC_FILE).read_text()))
        model.load_state_dict(load_file(folder / WEIGHTS_FILE))
        return model.eval()
