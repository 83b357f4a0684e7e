"""The settings of a text task (`task: {kind: text, ...}` in a study file).

Light: pydantic only, read with every study file; the task itself is `text.py`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from autocompress.config_base import Fraction, Strict


class TextModelConfig(Strict):
    path: str = "embedded:all-minilm-l6-v2"
    max_seq_length: Annotated[int, Field(ge=8)] = 64
    reinit_head: bool = False


class TextDataConfig(Strict):
    path: str
    test_path: str | None = None
    format: Literal["csv", "phrasebank"] = "csv"
    encoding: str = "utf-8"
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | None = None
    deduplicate: bool = True
    max_train_rows: Annotated[int, Field(ge=20)] | None = None
    test_size: Fraction = 0.2
    # The search and the selection judge students here: 0.2 so that, on a few thousand
    # sentences, a 1-point change is not lost in the split's own noise.
    valid_size: Fraction = 0.2
    seed: int = 0


class OptimizerConfig(Strict):
    """How students are fine-tuned; how many epochs is the recipe's `finetune_epochs`."""

    batch_size: Annotated[int, Field(gt=0)] = 32
    learning_rate: Annotated[float, Field(gt=0.0)] = 1e-4
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    patience: Annotated[int, Field(gt=0)] = 1


class FinetuneConfig(OptimizerConfig):
    """How students are fine-tuned: students train longer than the teacher, so the rate
    warms up over the first 6% of steps and then decays linearly to zero, as in
    transformers' Trainer (`constant` keeps it fixed)."""

    lr_schedule: Literal["linear", "constant"] = "linear"


class FitConfig(OptimizerConfig):
    """How the teacher is fine-tuned (once per study)."""

    epochs: Annotated[int, Field(gt=0)] = 3
    learning_rate: Annotated[float, Field(gt=0.0)] = 5e-5


class TextTaskConfig(Strict):
    kind: Literal["text"]
    scores_bad_class: ClassVar[bool] = False
    # What its recipe fields may need (`FieldSpec.needs`): a BERT student (its layers,
    # its hidden states, its FFN pruned apart from heads and hidden size) and rows of
    # words that augmentation can alter (`augment_word_prob`).
    offers: ClassVar[frozenset[str]] = frozenset(
        {"Prunable", "PrunableFFN", "Layered", "HiddenStates", "WordAugmentation"}
    )
    model: TextModelConfig = TextModelConfig()
    data: TextDataConfig
    teacher: FitConfig = FitConfig()
    finetune: FinetuneConfig = FinetuneConfig()
