"""Reading and splitting labelled sentences: CSV files or PhraseBank-style `sentence@label`.

Kept apart from the model side so data mistakes are found (and reported with the
file and key) before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from autocompress.errors import UserError
from autocompress.tasks.data_files import resolve_data_file
from autocompress.tasks.text_config import TextDataConfig

Where = Callable[[str], str]


@dataclass(frozen=True)
class TextSplits:
    """Sentences and integer labels per split, and the label names in id order."""

    texts: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    label_names: list[str]
    files: list[Path]


def load_text_splits(data: TextDataConfig, where: Where) -> TextSplits:
    """Read, check, deduplicate and split; the test split is never trained or early-stopped on."""
    train_file = resolve_data_file(data.path, key=where("task.data.path"))
    frame = _read(train_file, data, where, "task.data.path")
    files = [train_file]
    if data.test_path is not None:
        test_file = resolve_data_file(data.test_path, key=where("task.data.test_path"))
        test_frame = _read(test_file, data, where, "task.data.test_path")
        files.append(test_file)
    else:
        test_frame = None

    names = _label_names(frame, test_frame, data, where)
    frame = _encode(frame, names, data, where, train_file)
    if data.deduplicate:
        frame = frame.drop_duplicates(subset="text", keep="first")
    if test_frame is not None:
        test_frame = _encode(test_frame, names, data, where, files[-1])
        if data.deduplicate:
            test_frame = test_frame.drop_duplicates(subset="text", keep="first")
            test_frame = test_frame[~test_frame["text"].isin(set(frame["text"]))]
        rest, test = frame, test_frame
    else:
        rest, test = _split(frame, data.test_size, data.seed, where)
    train, valid = _split(
        rest, data.valid_size / (1.0 - (0 if data.test_path else data.test_size)), data.seed, where
    )
    if data.max_train_rows is not None and len(train) > data.max_train_rows:
        train, _ = _split(train, 1.0 - data.max_train_rows / len(train), data.seed, where)
    splits = {"train": train, "valid": valid, "test": test}
    return TextSplits(
        texts={k: v["text"].tolist() for k, v in splits.items()},
        labels={k: v["label"].to_numpy(dtype=np.int64, copy=True) for k, v in splits.items()},
        label_names=names,
        files=files,
    )


def _read(path: Path, data: TextDataConfig, where: Where, key: str) -> pd.DataFrame:
    try:
        if data.format == "phrasebank":
            lines = path.read_text(encoding=data.encoding).splitlines()
            rows = [line.rsplit("@", 1) for line in lines if line.strip()]
            bad = [i + 1 for i, row in enumerate(rows) if len(row) != 2]
            if bad:
                raise UserError(
                    f"{where(key)}: {path} lines {bad[:5]} have no '@label' at the "
                    "end; PhraseBank lines are `sentence@label`"
                )
            frame = pd.DataFrame(rows, columns=[data.text_column, data.label_column])
        else:
            frame = pd.read_csv(path, encoding=data.encoding)
    except UnicodeDecodeError as error:
        raise UserError(
            f"{where('task.data.encoding')}: {path} is not {data.encoding} "
            f"({error.reason} at byte {error.start}); set the file's encoding, "
            "e.g. latin-1"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(f"{where(key)}: {path} is not a readable CSV file: {first}") from None
    for column_key, column in (
        ("task.data.text_column", data.text_column),
        ("task.data.label_column", data.label_column),
    ):
        if column not in frame.columns:
            raise UserError(
                f"{where(column_key)}: column {column!r} is not in {path}; "
                f"columns are: {', '.join(map(str, frame.columns))}"
            )
    texts = frame[data.text_column]
    empty = frame.index[texts.isna() | (texts.astype(str).str.strip() == "")].tolist()
    if empty:
        raise UserError(
            f"{where('task.data.text_column')}: {len(empty)} empty texts in "
            f"{path} (rows {[i + 2 for i in empty[:5]]}, counting the header as "
            "row 1); remove or fill them"
        )
    return pd.DataFrame({"text": texts.astype(str).str.strip(), "label": frame[data.label_column]})


def _label_names(
    frame: pd.DataFrame, test: pd.DataFrame | None, data: TextDataConfig, where: Where
) -> list[str]:
    values = pd.concat([frame["label"], test["label"]]) if test is not None else frame["label"]
    if data.label_names is not None:
        return list(data.label_names)
    if pd.api.types.is_integer_dtype(values):
        found = sorted(int(v) for v in values.unique())
        if found != list(range(len(found))):
            raise UserError(
                f"{where('task.data.label_column')}: integer labels must be 0..K-1, "
                f"found {found[:10]}; or name them with task.data.label_names"
            )
        return [str(v) for v in found]
    return sorted(str(v) for v in values.unique())


def _encode(
    frame: pd.DataFrame, names: list[str], data: TextDataConfig, where: Where, path: Path
) -> pd.DataFrame:
    labels = frame["label"]
    if pd.api.types.is_integer_dtype(labels):
        bad = sorted({int(v) for v in labels if not 0 <= int(v) < len(names)})
        ids = labels.astype(np.int64)
    else:
        lookup = {name: i for i, name in enumerate(names)}
        bad = sorted({str(v) for v in labels if str(v) not in lookup})
        ids = labels.astype(str).map(lookup)
    if bad:
        raise UserError(
            f"{where('task.data.label_names')}: labels {bad[:10]} in {path} are not "
            f"in the label set {names}"
        )
    if len(names) < 2:
        raise UserError(f"{where('task.data.label_column')}: only one label ({names}) in {path}")
    return pd.DataFrame({"text": frame["text"], "label": ids.astype(np.int64)})


def _split(
    frame: pd.DataFrame, share: float, seed: int, where: Where
) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = frame["label"].value_counts()
    if counts.min() < 4:
        raise UserError(
            f"{where('task.data.path')}: label {counts.idxmin()} has only "
            f"{counts.min()} rows after deduplication; each label needs at least 4 "
            "to split into train, valid and test"
        )
    first, second = train_test_split(
        frame, test_size=share, stratify=frame["label"], random_state=seed
    )
    return first, second
