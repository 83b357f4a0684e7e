"""The credit task's preprocessing: a small, versioned JSON step saved with every export.

It is plain data (category lists, fitted numbers and the rules that chose them), so a
deployment can apply it without autocompress; `TabularPreprocessor.transform` is the
reference implementation and the one the search itself uses. `tabular_onnx` builds the
same steps into an ONNX graph that takes the raw columns.

Format `autocompress.tabular-preprocessing/3` (written now). Per numeric column, in
this order (the cell is read as float32, the arithmetic is float64, the feature is
rounded to float32 once at the end; the graph does the same):

1. infinite cells: `missing` makes ±inf missing; `clip` replaces +inf/-inf with the
   largest/smallest finite training value;
2. missing indicator: 1.0 where the cell is missing (NaN), for the columns that get one;
3. impute: a missing cell becomes the fill value (training median or mean, or a constant);
4. transform: `none`; `log1p` = log(1 + max(x, 0)); `signed_log1p` = sign(x)·log(1 + |x|);
   `clip` to training quantiles; `quantile` = the training CDF, piecewise linear between
   knots (np.interp over `knots` and `levels`, clamped outside the knots);
5. standardise: (x - mean) / scale, the mean and population std of the training values
   after steps 1-4.

Categorical columns are one-hot in the stored category order; an empty cell (NaN, None
or "") is the category "(missing)", numbers are named by value ("2", never "2.0"), and
an unseen category encodes as all zeros. The features are the numeric columns, then the
missing indicators, then the one-hot blocks.

`/2` added to `/1` what happens to empty cells (`fill`: the training mean; categorical
empties become "(missing)"). `/1` and `/2` files still load and transform exactly as
before (they refuse infinite values).
"""

from __future__ import annotations

import fnmatch
import json
import math
import numbers
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from autocompress.errors import UserError
from autocompress.tasks.credit_config import ColumnPreprocessing, PreprocessingConfig

FORMAT = "autocompress.tabular-preprocessing/3"
FORMAT_V2 = "autocompress.tabular-preprocessing/2"
FORMAT_V1 = "autocompress.tabular-preprocessing/1"
FILE_NAME = "preprocessing.json"
MISSING_CATEGORY = "(missing)"
MEAN_RULE = "mean of the training split"
MEDIAN_RULE = "median of the training split"
CONSTANT_RULE = "constant"
NO_VALUES_RULE = "0: the training split has no values in this column"
TRANSFORMS = ("none", "log1p", "signed_log1p", "clip", "quantile")
FEEDING = (
    "One input per raw column, named as the column, shape [batch, 1]: numeric columns "
    "float32 (NaN for an empty cell; +inf/-inf allowed), categorical columns strings, "
    'with "" for an empty cell and numbers written as integers when whole (2, not 2.0).'
)
_F32 = np.float32
DEFAULT_SETTINGS = PreprocessingConfig()


def category_name(value: object, missing: str = MISSING_CATEGORY) -> str:
    """The category a cell belongs to: empty → `missing`; 2 and 2.0 are both "2".

    A categorical column of numbers is read as integers, or as floats when a cell is
    empty, so numbers are named by value, not by how pandas happened to store them.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return missing
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def _category_v3(value: object) -> str:
    """/3: as `category_name`, and an empty string is missing too."""
    if isinstance(value, str) and value == "":
        return MISSING_CATEGORY
    return category_name(value)


def _f32(value: float) -> float:
    """`value` rounded to float32, as the shortest decimal that reads back the same."""
    return float(str(_F32(value)))


def _numeric_cells(series: pd.Series, column: str) -> np.ndarray:
    """A numeric column as float64: empty → NaN, numbers written as text converted."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
    except (ValueError, TypeError) as error:
        raise ValueError(f"numeric column {column!r}: {error}") from None


def raw_column_feeds(
    frame: pd.DataFrame,
    columns: list[str],
    categorical: Collection[str],
    missing_category: str = MISSING_CATEGORY,
) -> dict[str, np.ndarray]:
    """The raw-row convention every credit graph takes (ours and the baselines'): one
    [N, 1] input per column; numeric float32 (NaN for an empty cell, ±inf kept, numbers
    written as text converted); categorical str, "" for an empty cell (or one named
    `missing_category`), numbers named by value (`category_name`)."""
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"the frame has no column {', '.join(map(repr, absent))}")
    feeds: dict[str, np.ndarray] = {}
    for column in columns:
        if column in categorical:
            names = [category_name(v, "") for v in frame[column].tolist()]
            cells = ["" if n == missing_category else n for n in names]
            feeds[column] = np.array(cells, dtype=object).reshape(-1, 1)
        else:
            feeds[column] = _as_float32(_numeric_cells(frame[column], column)).reshape(-1, 1)
    return feeds


def _as_float32(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32's range is ±inf, as in the graph
        return values.astype(np.float32)


@dataclass(frozen=True)
class NumericColumn:
    """Everything fitted for one numeric column of a /3 file (see the module docstring)."""

    name: str
    settings: str  # the study key whose settings apply
    infinite: str  # "missing" | "clip"
    infinite_low: float | None  # clip: what -inf becomes
    infinite_high: float | None  # clip: what +inf becomes
    indicator: bool
    indicator_rule: str
    fill: float
    fill_rule: str
    transform: str
    clip_low: float | None = None
    clip_high: float | None = None
    clip_quantiles: list[float] | None = None
    knots: list[float] | None = None
    levels: list[float] | None = None
    mean: float = 0.0
    scale: float = 1.0

    @property
    def indicator_name(self) -> str:
        return f"{self.name}:missing"

    def describe(self) -> str:
        """One line of plain ASCII saying what happens to a cell of this column."""
        if self.infinite == "clip":
            infinite = f"+inf -> {self.infinite_high:g}, -inf -> {self.infinite_low:g}"
        else:
            infinite = "+/-inf is missing"
        indicator = f"; indicator {self.indicator_name!r}" if self.indicator else ""
        if self.transform == "clip":
            transform = f"clip to [{self.clip_low:g}, {self.clip_high:g}]; "
        elif self.transform == "quantile":
            transform = f"training CDF over {len(self.knots or [])} knots; "
        else:
            transform = {
                "none": "",
                "log1p": "log(1 + max(x, 0)); ",
                "signed_log1p": "sign(x) * log(1 + |x|); ",
            }[self.transform]
        return (
            f"{infinite}; missing -> {self.fill:g} ({self.fill_rule}){indicator}; "
            f"{transform}standardised with mean {self.mean:g}, scale {self.scale:g}"
        )

    def to_dict(self) -> dict:
        infinite: dict = {"rule": self.infinite}
        if self.infinite == "clip":
            infinite.update(low=self.infinite_low, high=self.infinite_high)
        transform: dict = {"kind": self.transform}
        if self.transform == "clip":
            transform.update(quantiles=self.clip_quantiles, low=self.clip_low, high=self.clip_high)
        if self.transform == "quantile":
            transform.update(knots=self.knots, levels=self.levels)
        return {
            "column": self.name,
            "description": self.describe(),
            "settings": self.settings,
            "infinite": infinite,
            "missing_indicator": {"added": self.indicator, "rule": self.indicator_rule},
            "fill": {"value": self.fill, "rule": self.fill_rule},
            "transform": transform,
            "mean": self.mean,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, payload: dict) -> NumericColumn:
        infinite, transform = payload["infinite"], payload["transform"]
        column = cls(
            name=payload["column"],
            settings=payload["settings"],
            infinite=infinite["rule"],
            infinite_low=infinite.get("low"),
            infinite_high=infinite.get("high"),
            indicator=payload["missing_indicator"]["added"],
            indicator_rule=payload["missing_indicator"]["rule"],
            fill=payload["fill"]["value"],
            fill_rule=payload["fill"]["rule"],
            transform=transform["kind"],
            clip_low=transform.get("low"),
            clip_high=transform.get("high"),
            clip_quantiles=transform.get("quantiles"),
            knots=transform.get("knots"),
            levels=transform.get("levels"),
            mean=payload["mean"],
            scale=payload["scale"],
        )
        column.check()
        return column

    def check(self) -> None:
        """Refuse a hand-edited column the pipeline cannot apply."""
        numbers_ = [self.fill, self.mean, self.scale]
        if self.infinite not in ("missing", "clip") or self.transform not in TRANSFORMS:
            raise ValueError(f"column {self.name!r}: unknown infinite rule or transform")
        if self.infinite == "clip":
            numbers_ += [self.infinite_low, self.infinite_high]
        if self.transform == "clip":
            numbers_ += [self.clip_low, self.clip_high]
        if self.transform == "quantile":
            knots, levels = self.knots or [], self.levels or []
            if not knots or len(knots) != len(levels) or np.any(np.diff(knots) <= 0):
                raise ValueError(
                    f"column {self.name!r}: quantile needs increasing knots, one level each"
                )
            numbers_ += [*knots, *levels]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers_):
            raise ValueError(f"column {self.name!r}: every fitted number must be finite")
        if self.scale == 0:
            raise ValueError(f"column {self.name!r}: scale must not be 0")


@dataclass(frozen=True)
class QuantileTables:
    """The quantile columns' knots as flat tables, shared by numpy and the ONNX graph.

    Column j's segment s spans knots[j, s]..knots[j, s+1]; `segment = offsets[j] + s`
    indexes `start`, `level` and `slope` (`segments` entries per column, padded). The
    segment of t (x clamped to [first, last]) is the number of `inner` knots <= t; the
    value is level + slope · (t - start).
    """

    first: np.ndarray  # [q]
    last: np.ndarray  # [q]
    inner: np.ndarray  # [q, segments - 1], +inf padded
    offsets: np.ndarray  # [q] int64
    start: np.ndarray  # [q * segments]
    level: np.ndarray
    slope: np.ndarray

    @classmethod
    def of(cls, columns: list[NumericColumn]) -> QuantileTables:
        segments = max(max(len(c.knots or []) - 1, 1) for c in columns)
        first, last = [], []
        inner = np.full((len(columns), segments - 1), np.inf)
        start = np.zeros((len(columns), segments))
        level = np.zeros_like(start)
        slope = np.zeros_like(start)
        for j, column in enumerate(columns):
            knots = np.array(column.knots, dtype=np.float64)
            levels = np.array(column.levels, dtype=np.float64)
            first.append(knots[0])
            last.append(knots[-1])
            inner[j, : max(len(knots) - 2, 0)] = knots[1:-1]
            start[j, :] = knots[-1]
            level[j, :] = levels[-1]
            start[j, : max(len(knots) - 1, 1)] = knots[: max(len(knots) - 1, 1)]
            level[j, : max(len(knots) - 1, 1)] = levels[: max(len(knots) - 1, 1)]
            if len(knots) > 1:
                slope[j, : len(knots) - 1] = np.diff(levels) / np.diff(knots)
        return cls(
            first=np.array(first, dtype=np.float64),
            last=np.array(last, dtype=np.float64),
            inner=inner,
            offsets=np.arange(len(columns), dtype=np.int64) * segments,
            start=start.ravel(),
            level=level.ravel(),
            slope=slope.ravel(),
        )

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The graph's arithmetic in numpy, float64 [N, q] in and out."""
        t = np.minimum(np.maximum(x, self.first), self.last)
        segment = (t[:, :, None] >= self.inner[None, :, :]).astype(np.int64).sum(axis=2)
        segment = segment + self.offsets
        return self.level[segment] + self.slope[segment] * (t - self.start[segment])


@dataclass(frozen=True)
class NumericPlan:
    """Per-column constant vectors for the numeric block, in `numeric` order (float64)."""

    on_pos_inf: np.ndarray  # what +inf becomes (NaN: missing)
    on_neg_inf: np.ndarray
    fill: np.ndarray
    clip_low: np.ndarray  # -inf for columns without `clip`
    clip_high: np.ndarray
    log: np.ndarray  # bool: log1p or signed_log1p
    sign_floor: np.ndarray  # 0 for log1p (x < 0 → 0), -1 for signed_log1p
    quantile: list[int]  # positions of the quantile columns
    tables: QuantileTables | None
    mean: np.ndarray
    scale: np.ndarray
    indicators: list[int]  # positions of the columns with an indicator

    @classmethod
    def of(cls, columns: list[NumericColumn]) -> NumericPlan:
        def vector(values: list) -> np.ndarray:
            return np.array(values, dtype=np.float64).reshape(len(columns))

        quantile = [j for j, c in enumerate(columns) if c.transform == "quantile"]
        clip = [c.infinite == "clip" for c in columns]
        return cls(
            on_pos_inf=vector(
                [c.infinite_high if k else np.nan for c, k in zip(columns, clip, strict=True)]
            ),
            on_neg_inf=vector(
                [c.infinite_low if k else np.nan for c, k in zip(columns, clip, strict=True)]
            ),
            fill=vector([c.fill for c in columns]),
            clip_low=vector([c.clip_low if c.transform == "clip" else -np.inf for c in columns]),
            clip_high=vector([c.clip_high if c.transform == "clip" else np.inf for c in columns]),
            log=np.array([c.transform in ("log1p", "signed_log1p") for c in columns], dtype=bool),
            sign_floor=vector([-1.0 if c.transform == "signed_log1p" else 0.0 for c in columns]),
            quantile=quantile,
            tables=QuantileTables.of([columns[j] for j in quantile]) if quantile else None,
            mean=vector([c.mean for c in columns]),
            scale=vector([c.scale for c in columns]),
            indicators=[j for j, c in enumerate(columns) if c.indicator],
        )

    def infinite(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isposinf(x), self.on_pos_inf, x)
        return np.where(np.isneginf(x), self.on_neg_inf, x)

    def elementwise(self, x: np.ndarray) -> np.ndarray:
        """clip and the log transforms; the identity for every other column."""
        x = np.maximum(np.minimum(x, self.clip_high), self.clip_low)
        if self.log.any():
            logs = np.log(np.abs(x) + 1.0) * np.maximum(np.sign(x), self.sign_floor)
            x = np.where(self.log, logs, x)
        return x

    def prepared(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1-4 on float32 [N, n] cells: float64 values and the missing mask."""
        x = self.infinite(x.astype(np.float32).astype(np.float64))
        missing = np.isnan(x)
        x = np.where(missing, self.fill, x)
        x = self.elementwise(x)
        if self.tables is not None:
            x[:, self.quantile] = self.tables.apply(x[:, self.quantile])
        return x, missing

    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [N, n] cells → float32 (standardised [N, n], indicators [N, n_indicators]).

        The cells are read as float32 (as the graph's inputs are), the steps run in
        float64 and the result is rounded to float32 once.
        """
        x, missing = self.prepared(x)
        standardised = (x - self.mean) / self.scale
        return standardised.astype(np.float32), missing[:, self.indicators].astype(np.float32)


# -- fitting /3 ------------------------------------------------------------------------
def _matches(key: str, column: str) -> bool:
    return key == column or fnmatch.fnmatchcase(column, key)


def _column_settings(
    numeric: list[str],
    categorical: list[str],
    settings: PreprocessingConfig,
    where: Callable[[str], str],
) -> dict[str, tuple[str, ColumnPreprocessing | None]]:
    """Per numeric column: the key its settings come from and its overrides, if any."""
    place = where("task.preprocessing.columns")
    for key in settings.columns:
        if any(_matches(key, c) for c in numeric):
            continue
        named = [c for c in categorical if _matches(key, c)]
        if named:
            raise UserError(
                f"{place}: key {key!r} names only categorical columns ({', '.join(named)}); "
                "these settings apply to numeric columns: remove the key, or drop the "
                "column from task.data.categorical"
            )
        raise UserError(
            f"{place}: key {key!r} matches no numeric column; numeric columns are: "
            f"{', '.join(numeric) or '(none)'}. Use a column name or a glob such as 'BILL_*'"
        )
    chosen: dict[str, tuple[str, ColumnPreprocessing | None]] = {}
    for column in numeric:
        key = next((k for k in settings.columns if _matches(k, column)), None)
        chosen[column] = (
            ("task.preprocessing", None)
            if key is None
            else (f"task.preprocessing.columns[{key!r}]", settings.columns[key])
        )
    return chosen


def _fit_column(
    name: str,
    cells: np.ndarray,
    settings: PreprocessingConfig,
    key: str,
    override: ColumnPreprocessing | None,
    where: Callable[[str], str],
) -> NumericColumn:
    """Fit one numeric column on its float32 training cells."""
    own = override or ColumnPreprocessing()
    impute = own.impute or settings.impute
    transform = own.transform or settings.transform
    fill_value = settings.fill_value if own.fill_value is None else own.fill_value
    if own.fill_value is not None and impute != "constant":
        raise UserError(
            f"{where(key + '.fill_value')}: fill_value is used only with impute 'constant' "
            f"(column {name!r} is imputed with the {impute}): add impute: constant or "
            "remove fill_value"
        )

    finite = cells[np.isfinite(cells)].astype(np.float64)
    low = high = None
    if settings.infinite == "clip":
        low, high = (_f32(finite.min()), _f32(finite.max())) if finite.size else (0.0, 0.0)
    plan = NumericPlan.of(
        [NumericColumn(name, key, settings.infinite, low, high, False, "", 0.0, "", "none")]
    )
    x = plan.infinite(cells[:, None])[:, 0]
    missing = int(np.isnan(x).sum())
    present = x[~np.isnan(x)].astype(np.float64)

    if own.missing_indicator is not None:
        indicator = own.missing_indicator
        indicator_rule = f"{key}.missing_indicator: {str(indicator).lower()}"
    elif settings.missing_indicator == "auto":
        indicator = missing > 0
        indicator_rule = (
            f"auto: {missing} of {len(x)} training cells are missing"
            if indicator
            else "auto: the training split has no missing cells"
        )
    else:
        indicator = settings.missing_indicator == "always"
        indicator_rule = settings.missing_indicator

    if impute == "constant":
        fill, fill_rule = _f32(fill_value), CONSTANT_RULE
    elif present.size == 0:
        fill, fill_rule = 0.0, NO_VALUES_RULE
    elif impute == "median":
        fill, fill_rule = _f32(np.median(present)), MEDIAN_RULE
    else:
        fill, fill_rule = _f32(present.mean()), MEAN_RULE

    fitted: dict = {}
    transform_key = key + ".transform" if own.transform else "task.preprocessing.transform"
    if transform == "log1p" and (negatives := int((present < 0).sum())):
        raise UserError(
            f"{where(transform_key)}: log1p for column {name!r}, whose training values "
            f"include {negatives} negative{'s' if negatives > 1 else ''} (minimum "
            f"{present.min():g}); log1p would count them all as 0: use transform "
            "signed_log1p or clip for this column"
        )
    values = present if present.size else np.array([fill], dtype=np.float64)
    if transform == "clip":
        quantiles = list(settings.clip_quantiles)
        low_q, high_q = np.quantile(values, quantiles)
        fitted = {
            "clip_low": _f32(low_q),
            "clip_high": _f32(high_q),
            "clip_quantiles": quantiles,
        }
    elif transform == "quantile":
        knots, levels = _quantile_knots(values, settings.quantile_knots)
        fitted = {"knots": knots, "levels": levels}

    column = NumericColumn(
        name=name,
        settings=key,
        infinite=settings.infinite,
        infinite_low=low,
        infinite_high=high,
        indicator=bool(indicator),
        indicator_rule=indicator_rule,
        fill=fill,
        fill_rule=fill_rule,
        transform=transform,
        **fitted,
    )
    transformed = NumericPlan.of([column]).prepared(cells[:, None])[0][:, 0]
    mean = _f32(transformed.mean()) if transformed.size else 0.0
    scale = _f32(transformed.std(ddof=0)) if transformed.size else 0.0
    return replace(column, mean=mean, scale=scale if scale > 0 else 1.0)


def _quantile_knots(values: np.ndarray, count: int) -> tuple[list[float], list[float]]:
    """Knots at `count` evenly spaced levels; a knot several levels share gets their mean."""
    levels = np.linspace(0.0, 1.0, count)
    knots = np.array([_f32(k) for k in np.quantile(values, levels)])
    unique, inverse = np.unique(knots, return_inverse=True)
    merged = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return [float(k) for k in unique], [_f32(level) for level in merged]


@dataclass(frozen=True)
class TabularPreprocessor:
    """One-hot for categoricals (unknown category → all zeros), standardised numerics.

    Output columns: every numeric column in `numeric` order, then (/3) the missing
    indicators, then each categorical column's categories in `categories` order.

    `/3` files carry `steps` (a `NumericColumn` per numeric column) and `columns` (the
    raw columns, in the training frame's order); `means`, `scales` and `fill` repeat
    the steps' numbers. Without `steps`, an empty numeric cell is replaced with
    `fill[column]["value"]` before standardising and infinite cells are refused (/2);
    `missing_category` None marks a /1 file, whose rules (categories named by `str`,
    empty numerics become the mean) are kept as they were.
    """

    numeric: list[str]
    means: list[float]
    scales: list[float]
    categories: dict[str, list[str]]
    fill: dict[str, dict] = field(default_factory=dict)
    missing_category: str | None = MISSING_CATEGORY
    steps: list[NumericColumn] | None = None
    columns: list[str] | None = None

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        categorical: list[str],
        settings: PreprocessingConfig = DEFAULT_SETTINGS,
        where: Callable[[str], str] = str,
    ) -> TabularPreprocessor:
        """Fit on the training split; `where(key)` names a study key in messages."""
        numeric = [c for c in frame.columns if c not in categorical]
        chosen = _column_settings(numeric, list(categorical), settings, where)
        steps = [
            _fit_column(
                c,
                _as_float32(_numeric_cells(frame[c], c)),
                settings,
                *chosen[c],
                where,
            )
            for c in numeric
        ]
        return cls._of_steps(
            steps,
            categories={
                c: sorted({_category_v3(v) for v in frame[c].tolist()}) for c in categorical
            },
            columns=[str(c) for c in frame.columns],
        )

    @classmethod
    def _of_steps(
        cls, steps: list[NumericColumn], categories: dict[str, list[str]], columns: list[str]
    ) -> TabularPreprocessor:
        return cls(
            numeric=[s.name for s in steps],
            means=[s.mean for s in steps],
            scales=[s.scale for s in steps],
            categories=categories,
            fill={s.name: {"value": s.fill, "rule": s.fill_rule} for s in steps},
            steps=steps,
            columns=columns,
        )

    # -- what the features are -------------------------------------------------------
    @property
    def format(self) -> str:
        if self.missing_category is None:
            return FORMAT_V1
        return FORMAT if self.steps is not None else FORMAT_V2

    @property
    def input_columns(self) -> list[str]:
        """The raw columns `raw_feeds` gives (and the ONNX graph takes), in frame order."""
        if self.columns is not None:
            return list(self.columns)
        return [*self.numeric, *self.categories]

    @property
    def indicator_columns(self) -> list[str]:
        return [s.name for s in self.steps or [] if s.indicator]

    @property
    def feature_names(self) -> list[str]:
        return [
            *self.numeric,
            *(s.indicator_name for s in self.steps or [] if s.indicator),
            *(f"{c}={v}" for c, values in self.categories.items() for v in values),
        ]

    @property
    def output_dim(self) -> int:
        return (
            len(self.numeric)
            + len(self.indicator_columns)
            + sum(len(v) for v in self.categories.values())
        )

    def numeric_plan(self) -> NumericPlan:
        if self.steps is None:
            raise ValueError(f"a {self.format} file has no /3 steps; refit to get them")
        return NumericPlan.of(self.steps)

    # -- applying it -----------------------------------------------------------------
    def raw_feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The ONNX graph's inputs for `frame`: one [N, 1] array per raw column.

        Numeric columns are float32 (NaN for an empty cell, ±inf kept, numbers written as
        text converted); categorical columns are object arrays of str, with "" for an
        empty cell (a scoring service passes "" for a missing categorical value) and
        numbers named by value (`category_name`: 2 and 2.0 are both "2").
        """
        return raw_column_feeds(
            frame, self.input_columns, set(self.categories), self.missing_category or ""
        )

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """float32 [N, output_dim]: the reference for the ONNX graph's "features"."""
        if self.steps is None:
            return self._transform_v2(frame)
        feeds = self.raw_feeds(frame)
        rows = len(frame)
        cells = (
            np.hstack([feeds[c] for c in self.numeric])
            if self.numeric
            else np.zeros((rows, 0), dtype=np.float32)
        )
        standardised, indicators = self.numeric_plan().features(cells)
        blocks = [standardised, indicators]
        for column, categories in self.categories.items():
            values = np.where(feeds[column][:, 0] == "", MISSING_CATEGORY, feeds[column][:, 0])
            blocks.append((values[:, None] == np.array(categories)[None, :]).astype(np.float32))
        return np.hstack(blocks).astype(np.float32)

    def _fill_values(self) -> np.ndarray:
        if self.missing_category is None:  # /1: empty numerics became 0 after scaling
            return np.array(self.means, dtype="float64")
        return np.array([self.fill[c]["value"] for c in self.numeric], dtype="float64")

    def _transform_v2(self, frame: pd.DataFrame) -> np.ndarray:
        """/1 and /2, exactly as those formats did it (float64, infinite refused)."""
        numeric = frame[self.numeric].astype("float64").to_numpy()
        if np.isinf(numeric).any():
            bad = [c for c, col in zip(self.numeric, numeric.T, strict=True) if np.isinf(col).any()]
            raise ValueError(f"infinite values in numeric columns {bad}; fix those rows")
        numeric = np.where(np.isnan(numeric), self._fill_values()[None, :], numeric)
        numeric = (numeric - np.array(self.means)) / np.array(self.scales)
        blocks = [numeric]
        for column, categories in self.categories.items():
            if self.missing_category is None:
                values = frame[column].astype(str).to_numpy()
            else:
                values = np.array(
                    [category_name(v, self.missing_category) for v in frame[column].tolist()],
                    dtype=object,
                )
            blocks.append((values[:, None] == np.array(categories)[None, :]).astype("float64"))
        return np.hstack(blocks).astype(np.float32)

    # -- the file --------------------------------------------------------------------
    def to_dict(self) -> dict:
        payload = {
            "numeric": self.numeric,
            "means": self.means,
            "scales": self.scales,
            "categories": self.categories,
        }
        if self.missing_category is None:
            return {"format": FORMAT_V1, **payload}
        if self.steps is None:
            return {
                "format": FORMAT_V2,
                **payload,
                "fill": self.fill,
                "missing_category": self.missing_category,
            }
        return {
            "format": FORMAT,
            "description": (
                "Per numeric column: infinite rule, missing indicator (1.0 where missing), "
                "impute, transform, then (x - mean) / scale; cells read as float32, "
                "arithmetic in float64, features rounded to float32. Categorical "
                "columns: one-hot in `categories` order; empty is "
                f"{self.missing_category!r}, unseen is all zeros. Features: numeric, "
                f"then indicators, then one-hot (`features`). ONNX inputs: {FEEDING}"
            ),
            "inputs": self.input_columns,
            "features": self.feature_names,
            "missing_category": self.missing_category,
            "numeric": [s.to_dict() for s in self.steps],
            "categorical": [
                {
                    "column": column,
                    "description": f"one-hot over {len(values)} categories; empty is "
                    f"{self.missing_category!r}; unseen is all zeros",
                    "categories": values,
                }
                for column, values in self.categories.items()
            ],
        }

    def save(self, folder: Path) -> Path:
        path = folder / FILE_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> TabularPreprocessor:
        payload = json.loads(Path(path).read_text())
        kind = payload.pop("format", None)
        if kind == FORMAT_V1:
            return cls(**payload, missing_category=None)
        if kind == FORMAT:
            return cls._load_v3(payload, path)
        if kind != FORMAT_V2:
            raise ValueError(f"{path}: not a {FORMAT} (or /2, /1) file")
        fills = payload["fill"]
        if set(fills) != set(payload["numeric"]) or not all(
            isinstance(f.get("value"), (int, float)) and math.isfinite(f["value"])
            for f in fills.values()
        ):
            raise ValueError(f"{path}: 'fill' needs a finite value for every numeric column")
        return cls(**payload)

    @classmethod
    def _load_v3(cls, payload: dict, path: Path) -> TabularPreprocessor:
        try:
            steps = [NumericColumn.from_dict(c) for c in payload["numeric"]]
            categories = {c["column"]: list(c["categories"]) for c in payload["categorical"]}
            columns = list(payload["inputs"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: a /3 file needs the key {error}") from None
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        if payload.get("missing_category") != MISSING_CATEGORY:
            raise ValueError(f"{path}: missing_category must be {MISSING_CATEGORY!r}")
        named = [s.name for s in steps] + list(categories)
        if sorted(named) != sorted(columns):
            raise ValueError(f"{path}: 'inputs' must list every numeric and categorical column")
        return cls._of_steps(steps, categories, columns)
