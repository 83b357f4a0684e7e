"""The full compression configuration of one trial.

A `Recipe` is plain data made from a trial's params. It is written as
`config.yaml` in every export, and is enough (with the teacher) to rebuild the
same model. `RECIPE_FIELDS` is the single description of what a search space may
name, with the values each field allows and when it is active.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

IMPORTANCE_CRITERIA = ("l1", "l2", "lamp", "taylor", "random")
BIT_WIDTHS = (32, 16, 8, 4)
INT8_MODES = ("dynamic", "static")
BNB_4BIT_TYPES = ("nf4", "fp4")
# For the columns a credit study lists in `task.preprocessing.searched_columns`:
# `declared` keeps the study's own transform; any other replaces it (see config.py).
NUMERIC_TRANSFORMS = ("declared", "none", "log1p", "signed_log1p", "clip", "quantile")


@dataclass(frozen=True)
class Recipe:
    """One point of the search space; defaults are the identity (the teacher itself)."""

    pruning_ratio: float = 0.0
    ffn_pruning_ratio: float | None = None
    pruning_importance: str = "l2"
    finetune_epochs: int = 0
    kd_temperature: float = 1.0
    kd_alpha: float = 0.0
    hidden_distill_weight: float = 0.0
    augment_word_prob: float = 0.0
    bits: int = 32
    int8_mode: str = "dynamic"
    per_channel: bool = False
    int4_block_size: int = 32
    layer_keep_ratio: float = 1.0
    bnb_4bit_type: str = "nf4"
    numeric_transform: str = "declared"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def describe(self) -> str:
        """A one-line summary of what the pass chain does, for tables and notes."""
        parts = []
        if self.numeric_transform != "declared":
            parts.append(f"{self.numeric_transform} inputs")
        if self.layer_keep_ratio < 1.0:
            parts.append(f"keep {self.layer_keep_ratio:.0%} layers")
        if self.prunes:
            ffn = "" if self.ffn_pruning_ratio is None else f" FFN {self.ffn_pruning_ratio:.0%}"
            parts.append(f"prune {self.pruning_ratio:.0%}{ffn} ({self.pruning_importance})")
        if self.finetune_epochs > 0:
            kd = f"KD T={self.kd_temperature:.1f} a={self.kd_alpha:.2f}" if self.distils else "FT"
            if self.hidden_distill_weight > 0:
                kd += f" +hid {self.hidden_distill_weight:.2g}"
            if self.augment_word_prob > 0:
                kd += f" +aug {self.augment_word_prob:.2g}"
            parts.append(f"{kd} {self.finetune_epochs}ep")
        parts.append(self.precision)
        return ", ".join(parts)

    @property
    def prunes(self) -> bool:
        """Whether structured pruning removes anything (all widths, or the FFN alone)."""
        return self.pruning_ratio > 0 or (self.ffn_pruning_ratio or 0.0) > 0

    @property
    def distils(self) -> bool:
        """Whether fine-tuning learns from the teacher (soft targets, states or altered rows)."""
        return self.kd_alpha > 0 or self.hidden_distill_weight > 0 or self.augment_word_prob > 0

    @property
    def precision(self) -> str:
        """The bit-width in a few words, e.g. `int8 static per-ch`."""
        if self.bits == 8:
            return f"int8 {self.int8_mode}{' per-ch' if self.per_channel else ''}"
        return {32: "fp32", 16: "fp16", 4: f"int4 w/o b{self.int4_block_size}"}[self.bits]

    def pass_chain(self, pruned_units: str | None = None) -> list[str]:
        """What each pass does to the teacher, in order, for notes and reports.

        `pruned_units` is what structured pruning removes in the model at hand, as its
        task words it (an MLP: "hidden units"); without it, the step says what it
        removes in each kind of model."""
        steps = []
        if self.numeric_transform != "declared":
            steps.append(
                f"inputs: {self.numeric_transform} for the searched numeric columns, from a "
                "teacher trained on those inputs"
            )
        if self.layer_keep_ratio < 1.0:
            steps.append(
                f"layer drop: keep {self.layer_keep_ratio:.0%} of the layers, evenly spaced"
            )
        if self.prunes:
            where = pruned_units or "hidden units in an MLP; heads/FFN/hidden in a transformer"
            if self.ffn_pruning_ratio is not None:
                where = f"heads/hidden; {self.ffn_pruning_ratio:.0%} of the FFN channels"
            steps.append(
                f"structured pruning: remove {self.pruning_ratio:.0%} of the channels "
                f"({where}), ranked by {self.pruning_importance}"
            )
        if self.finetune_epochs == 0:
            steps.append("no fine-tuning")
        elif self.distils:
            extras = [
                f"hidden-state matching weight {self.hidden_distill_weight:g}"
                if self.hidden_distill_weight > 0
                else "",
                f"half of each batch with {self.augment_word_prob:.0%} of its words replaced "
                "and scored by the teacher"
                if self.augment_word_prob > 0
                else "",
            ]
            steps.append(
                f"distillation from the teacher: {self.finetune_epochs} epoch(s), "
                f"T={self.kd_temperature:.2f}, alpha={self.kd_alpha:.2f}"
                + "".join(f", {extra}" for extra in extras if extra)
            )
        else:
            steps.append(f"fine-tuning on the labels: {self.finetune_epochs} epoch(s)")
        steps.append(f"precision: {self.precision}")
        return steps


@dataclass(frozen=True)
class FieldSpec:
    """What a search space may say about one recipe field."""

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    active: Callable[[Mapping[str, Any]], bool] = lambda params: True
    tasks: tuple[str, ...] | None = None  # None: every registered task kind
    runtimes: tuple[str, ...] | None = None  # None: every registered target runtime
    note: str = ""


def _fine_tunes(params: Mapping[str, Any]) -> bool:
    """Active only when the recipe fine-tunes (the distillation fields)."""
    return params.get("finetune_epochs", 0) > 0


RECIPE_FIELDS: dict[str, FieldSpec] = {
    "layer_keep_ratio": FieldSpec(
        float, 0.1, 1.0, tasks=("text",), note="share of encoder layers kept, evenly spaced"
    ),
    "pruning_ratio": FieldSpec(float, 0.0, 0.95, note="fraction of channels removed"),
    "ffn_pruning_ratio": FieldSpec(
        float,
        0.0,
        0.95,
        tasks=("text",),
        note="fraction of FFN channels removed; pruning_ratio then prunes heads and hidden "
        "size only (unset: pruning_ratio prunes all three)",
    ),
    "pruning_importance": FieldSpec(
        str,
        choices=IMPORTANCE_CRITERIA,
        active=lambda p: Recipe.from_dict(p).prunes,
    ),
    "finetune_epochs": FieldSpec(int, 0, 500),
    "kd_temperature": FieldSpec(float, 1.0, 50.0, active=_fine_tunes),
    "kd_alpha": FieldSpec(float, 0.0, 1.0, active=_fine_tunes),
    "hidden_distill_weight": FieldSpec(
        float,
        0.0,
        10.0,
        active=_fine_tunes,
        tasks=("text",),
        note="weight of the MSE between student and teacher hidden states, added to the KD loss",
    ),
    "augment_word_prob": FieldSpec(
        float,
        0.0,
        0.8,
        active=_fine_tunes,
        tasks=("text",),
        note="chance that each whole word of an augmented row is replaced by an embedding "
        "neighbour; the teacher scores those rows (0 = no augmentation)",
    ),
    "bits": FieldSpec(int, choices=BIT_WIDTHS),
    "int8_mode": FieldSpec(str, choices=INT8_MODES, active=lambda p: p.get("bits") == 8),
    "per_channel": FieldSpec(bool, choices=(True, False), active=lambda p: p.get("bits") == 8),
    "int4_block_size": FieldSpec(
        int, choices=(16, 32, 64, 128), active=lambda p: p.get("bits") == 4
    ),
    "numeric_transform": FieldSpec(
        str,
        choices=NUMERIC_TRANSFORMS,
        tasks=("credit",),
        note="transform of the columns in task.preprocessing.searched_columns; `declared` "
        "keeps the study's; another trains (once, then cached) a teacher on those inputs, "
        "and the student starts from it",
    ),
    "bnb_4bit_type": FieldSpec(
        str,
        choices=BNB_4BIT_TYPES,
        active=lambda p: p.get("bits") == 4,
        runtimes=("torch-cuda",),
        note="bitsandbytes 4-bit data type: normal float (nf4) or float (fp4)",
    ),
}
