"""The settings of a credit task (`task: {kind: credit, ...}` in a study file).

Light: pydantic only, read with every study file; the task itself is `credit.py`.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from autocompress.config_base import Fraction, Strict


class DataConfig(Strict):
    path: str
    label: str
    positive_label: str | int | None = None
    categorical: list[str] | None = None
    drop_columns: list[str] = []
    test_size: Fraction = 0.2
    valid_size: Fraction = 0.2
    seed: int = 0


class TeacherConfig(Strict):
    hidden_sizes: list[Annotated[int, Field(gt=0)]] = [512, 512, 256]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    epochs: Annotated[int, Field(gt=0)] = 60
    batch_size: Annotated[int, Field(gt=0)] = 64
    learning_rate: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    patience: Annotated[int, Field(gt=0)] = 10


ImputeRule = Literal["median", "mean", "constant"]
# none; log1p (values below 0 count as 0; refused when training has them); signed_log1p
# (sign(x)·log1p(|x|), for money columns that go negative); clip (winsorise at
# `clip_quantiles` of training); quantile (the training CDF, piecewise linear).
NumericTransform = Literal["none", "log1p", "signed_log1p", "clip", "quantile"]


class ColumnPreprocessing(Strict):
    """Overrides for the numeric columns a `task.preprocessing.columns` key names."""

    impute: ImputeRule | None = None
    fill_value: float | None = None
    transform: NumericTransform | None = None
    missing_indicator: bool | None = None


class PreprocessingConfig(Strict):
    """How raw numeric cells become model inputs; the exported graph applies the same.

    Missing cells (empty, NaN, and ±inf when `infinite` is `missing`) are imputed by
    `impute` (the training median by default; `constant` uses `fill_value`). A 0/1
    indicator column is added for columns that had missing cells in training (`auto`),
    for every numeric column (`always`) or never. `columns` maps column names or glob
    patterns (`BILL_AMT*`) to overrides; the first matching key wins.
    """

    impute: ImputeRule = "median"
    fill_value: float = 0.0
    missing_indicator: Literal["auto", "always", "never"] = "auto"
    infinite: Literal["missing", "clip"] = "missing"
    transform: NumericTransform = "none"
    clip_quantiles: tuple[
        Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]
    ] = (0.005, 0.995)
    quantile_knots: Annotated[int, Field(ge=3, le=1000)] = 64
    columns: dict[str, ColumnPreprocessing] = {}
    # Numeric columns (names or globs) whose transform the sampler may choose: the
    # search space's `numeric_transform` field; `declared` keeps the settings above.
    searched_columns: list[str] = []

    @model_validator(mode="after")
    def _ordered_quantiles(self) -> PreprocessingConfig:
        low, high = self.clip_quantiles
        if not low < high:
            raise ValueError(
                f"clip_quantiles must be [low, high] with low < high, got {low}, {high}"
            )
        if not math.isfinite(self.fill_value):
            raise ValueError("fill_value must be a finite number")
        return self


class DecisionConfig(Strict):
    """Where the exported graph puts the decision threshold on the bad-class probability,
    chosen on the validation split: `max_f1` (F1 of the bad class), `bad_rate` (flag
    this share of applicants), `approval_rate` (approve this share) or `fixed`."""

    rule: Literal["max_f1", "bad_rate", "approval_rate", "fixed"] = "max_f1"
    value: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None

    @model_validator(mode="after")
    def _value_when_needed(self) -> DecisionConfig:
        if self.rule != "max_f1" and self.value is None:
            raise ValueError(f"rule {self.rule!r} needs a value between 0 and 1 (exclusive)")
        if self.rule == "max_f1" and self.value is not None:
            raise ValueError("rule 'max_f1' takes no value; remove it or pick another rule")
        return self


class CreditTaskConfig(Strict):
    kind: Literal["credit"]
    # Two classes, the second the bad one: its probability is scored (brier, ece, ks, gini).
    scores_bad_class: ClassVar[bool] = True
    # What its recipe fields may need (`FieldSpec.needs`): an MLP student (`Prunable`
    # only: no layers to drop, no hidden states) and numeric columns whose transform the
    # search may choose (`numeric_transform`, with `preprocessing.searched_columns`).
    offers: ClassVar[frozenset[str]] = frozenset({"Prunable", "NumericTransforms"})
    data: DataConfig
    teacher: TeacherConfig = TeacherConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    decision: DecisionConfig = DecisionConfig()
    # The models a bank would use instead, trained on the same split and measured on the
    # same target once per study: reference rows in `front`, the report and the dashboard.
    baselines: list[Literal["lightgbm", "logistic_regression"]] = [
        "lightgbm",
        "logistic_regression",
    ]
