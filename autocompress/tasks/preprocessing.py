"""The credit task's preprocessing: a small, versioned JSON step saved with every export.

It is plain data (category lists, means, scales), so a deployment can apply it
without autocompress; `TabularPreprocessor.transform` is the reference
implementation and the one the search itself uses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "autocompress.tabular-preprocessing/1"
FILE_NAME = "preprocessing.json"


@dataclass(frozen=True)
class TabularPreprocessor:
    """One-hot for categoricals (unknown category → all zeros), standardised numerics.

    Output columns: every numeric column in `numeric` order, then each categorical
    column's categories in `categories` order.
    """

    numeric: list[str]
    means: list[float]
    scales: list[float]
    categories: dict[str, list[str]]

    @classmethod
    def fit(cls, frame: pd.DataFrame, categorical: list[str]) -> TabularPreprocessor:
        numeric = [c for c in frame.columns if c not in categorical]
        values = frame[numeric].astype("float64")
        scales = values.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        return cls(
            numeric=numeric,
            means=[float(v) for v in values.mean().fillna(0.0)],
            scales=[float(v) for v in scales],
            categories={c: sorted(frame[c].astype(str).unique().tolist()) for c in categorical},
        )

    @property
    def output_dim(self) -> int:
        return len(self.numeric) + sum(len(v) for v in self.categories.values())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        numeric = frame[self.numeric].astype("float64").to_numpy()
        numeric = (numeric - np.array(self.means)) / np.array(self.scales)
        numeric = np.nan_to_num(numeric, nan=0.0)
        blocks = [numeric]
        for column, categories in self.categories.items():
            values = frame[column].astype(str).to_numpy()
            blocks.append((values[:, None] == np.array(categories)[None, :]).astype("float64"))
        return np.hstack(blocks).astype(np.float32)

    def save(self, folder: Path) -> Path:
        path = folder / FILE_NAME
        path.write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> TabularPreprocessor:
        payload = json.loads(Path(path).read_text())
        if payload.pop("format", None) != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        return cls(**payload)
