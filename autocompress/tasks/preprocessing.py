"""The credit task's preprocessing: a small, versioned JSON step saved with every export.

It is plain data (category lists, means, scales, fill values), so a deployment can
apply it without autocompress; `TabularPreprocessor.transform` is the reference
implementation and the one the search itself uses.

Format `autocompress.tabular-preprocessing/2` (written now) adds to /1 what happens to
empty cells: `fill` gives, per numeric column, the value an empty cell is replaced with
and the rule that chose it at fit time; `missing_category` is the category an empty
categorical cell becomes. `/1` files still load and transform exactly as before.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "autocompress.tabular-preprocessing/2"
FORMAT_V1 = "autocompress.tabular-preprocessing/1"
FILE_NAME = "preprocessing.json"
MISSING_CATEGORY = "(missing)"
MEAN_RULE = "mean of the training split"
NO_VALUES_RULE = "0: the training split has no values in this column"


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


@dataclass(frozen=True)
class TabularPreprocessor:
    """One-hot for categoricals (unknown category → all zeros), standardised numerics.

    Output columns: every numeric column in `numeric` order, then each categorical
    column's categories in `categories` order. An empty numeric cell is replaced with
    `fill[column]["value"]` before standardising; an empty categorical cell is the
    category `missing_category`. `missing_category` None marks a /1 file, whose rules
    (categories named by `str`, empty numerics become the mean) are kept as they were.
    """

    numeric: list[str]
    means: list[float]
    scales: list[float]
    categories: dict[str, list[str]]
    fill: dict[str, dict] = field(default_factory=dict)
    missing_category: str | None = MISSING_CATEGORY

    @classmethod
    def fit(cls, frame: pd.DataFrame, categorical: list[str]) -> TabularPreprocessor:
        numeric = [c for c in frame.columns if c not in categorical]
        values = frame[numeric].astype("float64")
        if not np.isfinite(values.fillna(0.0).to_numpy()).all():
            raise ValueError("numeric columns hold infinite values; refuse them before fit")
        scales = values.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        means = values.mean()
        fill = {
            c: {"value": float(means[c]), "rule": MEAN_RULE}
            if pd.notna(means[c])
            else {"value": 0.0, "rule": NO_VALUES_RULE}
            for c in numeric
        }
        return cls(
            numeric=numeric,
            means=[float(v) for v in means.fillna(0.0)],
            scales=[float(v) for v in scales],
            categories={
                c: sorted({category_name(v) for v in frame[c].tolist()}) for c in categorical
            },
            fill=fill,
        )

    @property
    def output_dim(self) -> int:
        return len(self.numeric) + sum(len(v) for v in self.categories.values())

    def _fill_values(self) -> np.ndarray:
        if self.missing_category is None:  # /1: empty numerics became 0 after scaling
            return np.array(self.means, dtype="float64")
        return np.array([self.fill[c]["value"] for c in self.numeric], dtype="float64")

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
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

    def to_dict(self) -> dict:
        payload = {
            "numeric": self.numeric,
            "means": self.means,
            "scales": self.scales,
            "categories": self.categories,
        }
        if self.missing_category is None:
            return {"format": FORMAT_V1, **payload}
        return {
            "format": FORMAT,
            **payload,
            "fill": self.fill,
            "missing_category": self.missing_category,
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
        if kind != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} (or /1) file")
        fills = payload["fill"]
        if set(fills) != set(payload["numeric"]) or not all(
            isinstance(f.get("value"), (int, float)) and math.isfinite(f["value"])
            for f in fills.values()
        ):
            raise ValueError(f"{path}: 'fill' needs a finite value for every numeric column")
        return cls(**payload)
