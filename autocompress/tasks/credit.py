"""Credit-risk classification on tabular data: German credit by default, Taiwan at scale.

The teacher is an MLP over one-hot categoricals and transformed, standardised numerics
(`task.preprocessing`: imputation, missing indicators, log1p/quantile/clip), fitted on
the training split only. Training-file cells must be empty or finite numbers (checked
when the task is built, before a study or cache is written).

What is measured and exported is one ONNX graph from the raw applicant columns to
calibrated probabilities and a decision (`tabular_onnx.scoring_model`): the student's
graph at its precision, the preprocessing in front of it, and behind it a Platt
calibration and the threshold of `task.decision`, both fitted on the validation split.
Class 1 is the positive, risky ("bad") class.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from autocompress.config import StudyConfig
from autocompress.errors import Unsupported, UserError
from autocompress.models import MLPClassifier
from autocompress.tasks.base import Task
from autocompress.tasks.credit_config import (
    DataConfig,
    DecisionConfig,
    PreprocessingConfig,
    TeacherConfig,
)
from autocompress.tasks.data_files import file_sha256, resolve_data_file
from autocompress.tasks.graph_keys import CLASSES_KEY, DECISION_RULE_KEY, THRESHOLD_KEY
from autocompress.tasks.metrics import Predictions, choose_threshold, credit_metrics
from autocompress.tasks.preprocessing import TabularPreprocessor
from autocompress.tasks.resampled import credit_resampled
from autocompress.tasks.tabular_onnx import scoring_model, set_threshold
from autocompress.training import FitSettings, fit

if TYPE_CHECKING:
    import onnxruntime as ort

    from autocompress.recipe import Recipe
    from autocompress.targets.base import Runnable

INPUT_NAME = "features"
OUTPUT_NAME = "logits"
# Operators whose output for one row depends on the other rows of the batch
# (onnxruntime's dynamic int8 computes one activation scale per batch).
BATCH_WIDE_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


class CreditTask(Task):
    """Binary default prediction; label 1 is the positive (risky) class."""

    def __init__(
        self,
        data: DataConfig,
        teacher: TeacherConfig,
        f1_average: str = "macro",
        where: Callable[[str], str] = str,
        preprocessing: PreprocessingConfig | None = None,
        decision: DecisionConfig | None = None,
    ) -> None:
        """`where` names a key in messages (`StudyConfig.where`: `FILE: key.path`)."""
        self.data_config = data
        self.teacher_config = teacher
        self.preprocessing_config = preprocessing or PreprocessingConfig()
        self.decision = decision or DecisionConfig()
        self.f1_average = f1_average
        self.where = where
        self._variants: dict[str, CreditTask] = {}
        self.seed = data.seed
        self.data_file = resolve_data_file(data.path, key=where("task.data.path"))
        frame = _read_csv(self.data_file, where)
        features, labels, self.class_names = _split_label(frame, data, self.data_file, where)
        features, categorical = _column_kinds(features, data, self.data_file, where)
        self.splits = _stratified_splits(features, labels, data, where)
        self.preprocessor = TabularPreprocessor.fit(
            self.splits["train"][0], categorical, self.preprocessing_config, where
        )
        self._arrays = {
            name: self.preprocessor.transform(x) for name, (x, _) in self.splits.items()
        }
        self._raw = {name: self.preprocessor.raw_feeds(x) for name, (x, _) in self.splits.items()}
        counts = np.bincount(self.labels("train"), minlength=2).astype(np.float32)
        self._class_weights = torch.from_numpy(counts.sum() / (len(counts) * counts))
        self._teacher_logits: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: StudyConfig) -> CreditTask:
        task = config.task
        return cls(
            task.data,
            task.teacher,
            config.objectives.f1_average,
            config.where,
            task.preprocessing,
            task.decision,
        )

    def for_recipe(self, recipe: Recipe) -> CreditTask:
        """This task, or (for a `numeric_transform` other than `declared`) the same data
        with that transform on `task.preprocessing.searched_columns`; built once each."""
        transform = recipe.numeric_transform
        searched = self.preprocessing_config.searched_columns
        if transform == "declared" or not searched:
            return self
        if transform not in self._variants:
            # The searched patterns come first: the first matching `columns` key wins.
            chosen = {pattern: {"transform": transform} for pattern in searched}
            declared = self.preprocessing_config.model_dump()["columns"]
            columns = {**chosen, **{k: v for k, v in declared.items() if k not in chosen}}
            preprocessing = PreprocessingConfig.model_validate(
                {**self.preprocessing_config.model_dump(), "columns": columns}
            )
            try:
                self._variants[transform] = CreditTask(
                    self.data_config,
                    self.teacher_config,
                    self.f1_average,
                    self.where,
                    preprocessing,
                    self.decision,
                )
            except UserError as error:  # e.g. log1p on a searched column with negatives
                raise Unsupported(
                    f"numeric_transform {transform} does not fit the searched columns: {error}"
                ) from None
        return self._variants[transform]

    # -- data and teacher ------------------------------------------------------------
    def fingerprint(self) -> str:
        payload = json.dumps(
            {
                "data_sha256": file_sha256(self.data_file),
                "data": self.data_config.model_dump(exclude={"path"}),
                "teacher": self.teacher_config.model_dump(),
                "preprocessing": self.preprocessing_config.model_dump(),
                "validation_score": "roc_auc",
                "torch": torch.__version__,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    cache_prefix = "credit"
    pruned_units = "hidden units of every hidden layer"
    model_class = MLPClassifier

    def _save_teacher(self, teacher: nn.Module, folder: Path) -> None:
        teacher.save_pretrained(folder)

    def _load_teacher(self, folder: Path) -> nn.Module:
        return self.model_class.from_pretrained(folder)

    def _train_teacher(self) -> MLPClassifier:
        settings = self.teacher_config
        torch.manual_seed(self.seed)
        model = MLPClassifier(
            self.preprocessor.output_dim, list(settings.hidden_sizes), 2, settings.dropout
        )
        inputs, labels = self.train_tensors()
        fit(
            model,
            inputs,
            labels,
            loss_fn=lambda logits, y, _: self.label_loss(logits, y),
            score_fn=self.validation_score,
            settings=self.fit_settings(settings.epochs),
            batch_order=self.batch_order,
            progress="credit teacher epoch",
        )
        return model

    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-weighted cross-entropy: defaults are the minority class that matters."""
        return F.cross_entropy(logits, labels, weight=self._class_weights)

    def fit_settings(self, epochs: int) -> FitSettings:
        return FitSettings.of(self.teacher_config, epochs, self.seed)

    def train_tensors(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        return (torch.from_numpy(self._arrays["train"]),), torch.from_numpy(self.labels("train"))

    def teacher_logits(self) -> torch.Tensor:
        if self._teacher_logits is None:
            if self._teacher is None:
                raise RuntimeError("teacher() must be called before teacher_logits()")
            with torch.no_grad():
                self._teacher_logits = self._teacher(torch.from_numpy(self._arrays["train"]))
        return self._teacher_logits

    validation_metric = "roc_auc"

    def validation_score(self, model: nn.Module) -> float:
        """ROC AUC on the validation split: ranking is what a credit model is judged by,
        and it needs no threshold while the model is still training."""
        with torch.no_grad():
            logits = model(torch.from_numpy(self._arrays["valid"])).numpy()
        return float(roc_auc_score(self.labels("valid"), logits[:, 1] - logits[:, 0]))

    # -- inputs for the passes ---------------------------------------------------------
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(self._arrays["train"][:8]),)

    # -- ONNX side ---------------------------------------------------------------------
    def export_onnx(self, model: nn.Module, path: Path) -> None:
        model.eval()
        torch.onnx.export(
            model,
            self.example_inputs(),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )

    raw_inputs = True

    def feeds(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        """The raw applicant columns, one input per column (what the exported graph takes)."""
        return {name: values[:limit] for name, values in self._raw[split].items()}

    def core_feeds(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        return {INPUT_NAME: self._arrays[split][:limit]}

    def wrap_onnx(
        self, core: Path, path: Path, open_session: Callable[[Path], ort.InferenceSession]
    ) -> None:
        """Preprocessing in front of the student's graph, calibration and the decision
        threshold behind it; both fitted on the validation split with this very core
        (its precision included), then the threshold chosen on the whole graph's output."""
        core_model = onnx.load(str(core))
        batch_wide = sorted({n.op_type for n in core_model.graph.node} & BATCH_WIDE_OPS)
        if batch_wide:
            raise Unsupported(
                f"the student's graph scales activations over the whole batch "
                f"({', '.join(batch_wide)}, e.g. dynamic int8): an applicant's score would "
                "depend on the other rows scored with it; use int8_mode static, or 16/32 bits"
            )
        core_logits = open_session(core).run(None, self.core_feeds("valid"))[0]
        calibration = platt_calibration(core_logits, self.labels("valid"))
        model = scoring_model(
            core_model,
            self.preprocessor,
            calibration,
            0.5,
            metadata=self.graph_metadata(),
        )
        onnx.save(model, str(path))
        p_bad = open_session(path).run(None, self.feeds("valid"))[0][:, 1]
        decision = self.decision
        set_threshold(
            model, choose_threshold(p_bad, self.labels("valid"), decision.rule, decision.value)
        )
        onnx.save(model, str(path))

    def graph_metadata(self) -> dict[str, str]:
        """What a service reading the graph needs to know, stored inside it."""
        return {
            "autocompress.task": "credit",
            CLASSES_KEY: json.dumps(self.class_names),
            "autocompress.positive_class": "1",
            DECISION_RULE_KEY: json.dumps(self.decision.model_dump()),
            "autocompress.inputs": json.dumps(self.preprocessor.input_columns),
        }

    def predict(self, runnable: Runnable, split: str) -> Predictions:
        """The bad-class probability of every row, with the graph's own decision
        threshold (0.5 for a graph that carries none)."""
        p_bad = np.asarray(runnable.run(self.feeds(split)), dtype=np.float64)[:, 1]
        metadata = getattr(runnable, "metadata", {}) or {}
        return Predictions(p_bad, float(metadata.get(THRESHOLD_KEY, 0.5)))

    def score(self, predictions: Predictions, split: str) -> dict[str, float]:
        """Ranking (AUC, Gini, KS), calibration (Brier, ECE) and decisions at 0.5 and at
        the threshold."""
        return credit_metrics(
            predictions.values, self.labels(split), predictions.threshold, self.f1_average
        )

    def resampled_scores(
        self, predictions: Predictions, split: str, index: np.ndarray, names: Iterable[str]
    ) -> dict[str, np.ndarray]:
        return credit_resampled(
            predictions.values,
            self.labels(split),
            predictions.threshold,
            index,
            self.f1_average,
            names,
        )

    def labels(self, split: str) -> np.ndarray:
        return self.splits[split][1]

    def write_extras(self, folder: Path) -> list[str]:
        return [self.preprocessor.save(folder).name]


def _read_csv(path: Path, where: Callable[[str], str] = str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{where('task.data.path')}: {path} is not a readable CSV file: {first}; "
            "give a comma-separated file with a header row"
        ) from None
    except OSError as error:
        raise UserError(
            f"{where('task.data.path')}: cannot read {path}: {error.strerror}"
        ) from None
    if frame.empty:
        raise UserError(f"{where('task.data.path')}: {path} has no rows; give a file with data")
    return frame


def _split_label(
    frame: pd.DataFrame, data: DataConfig, path: Path, where: Callable[[str], str] = str
) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """Features, 0/1 labels, and what each class is in the file ({"0": "good", "1": "bad"})."""
    columns = list(frame.columns)
    if data.label not in frame.columns:
        raise UserError(
            f"{where('task.data.label')}: column {data.label!r} is not in {path}; "
            f"columns are: {', '.join(columns)}"
        )
    missing = [c for c in data.drop_columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"{where('task.data.drop_columns')}: {missing} not in {path}; "
            f"columns are: {', '.join(columns)}"
        )
    raw = frame[data.label]
    if raw.isna().any():
        raise UserError(
            f"{where('task.data.label')}: column {data.label!r} in {path} has "
            f"{int(raw.isna().sum())} empty values; remove those rows"
        )
    values = sorted(raw.astype(str).unique().tolist())
    if len(values) != 2:
        raise UserError(
            f"{where('task.data.label')}: the credit task is binary, but {data.label!r} has "
            f"{len(values)} distinct values ({values[:10]}); pick a binary label"
        )
    if data.positive_label is not None:
        if str(data.positive_label) not in values:
            raise UserError(
                f"{where('task.data.positive_label')}: {data.positive_label!r} is not a "
                f"value of column {data.label!r} in {path}; allowed values: {values}"
            )
        labels = (raw.astype(str) == str(data.positive_label)).astype(np.int64).to_numpy()
        negative = next(v for v in values if v != str(data.positive_label))
        class_names = {"0": negative, "1": str(data.positive_label)}
    elif pd.api.types.is_numeric_dtype(raw) and set(raw.unique()) <= {0, 1}:
        labels = raw.astype(np.int64).to_numpy()
        class_names = {"0": "0", "1": "1"}
    else:
        kind = "not 0/1" if pd.api.types.is_numeric_dtype(raw) else "non-numeric"
        raise UserError(
            f"{where('task.data.label')}: column {data.label!r} in {path} is {kind} "
            f"(values: {values}); set task.data.positive_label to the value that marks "
            "the positive (risky) class, or use a 0/1 label"
        )
    features = frame.drop(columns=[data.label, *data.drop_columns])
    return features, labels, class_names


# A text column is numeric with a few bad cells when at least this share of its
# non-empty cells are numbers; below it, it is a categorical (text) column.
MOSTLY_NUMERIC = 0.9
_SHOWN_COLUMNS = 3


def _column_kinds(
    features: pd.DataFrame, data: DataConfig, path: Path, where: Callable[[str], str] = str
) -> tuple[pd.DataFrame, list[str]]:
    """The features (a text column whose cells are all numbers becomes floats), and
    the categorical columns; refuses bad cells before anything is written.

    Columns in `task.data.categorical` are categories whatever they hold. Any other
    column is numeric if pandas read it as numbers, or if at least `MOSTLY_NUMERIC` of
    its non-empty cells are numbers; every cell of a numeric column must then be empty
    or a finite number (one `UserError` names the bad ones). Other text columns are
    categorical when `task.data.categorical` is unset, and refused when it is set.
    """
    declared = data.categorical
    if declared is not None:
        missing = [c for c in declared if c not in features.columns]
        if missing:
            raise UserError(
                f"{where('task.data.categorical')}: {missing} not feature columns of {path}; "
                f"columns are: {', '.join(features.columns)}"
            )
    features = features.copy()
    text: list[str] = []
    bad: dict[str, pd.Index] = {}  # column -> index labels of its bad cells
    for column in features.columns:
        if declared is not None and column in declared:
            continue
        values = features[column]
        if pd.api.types.is_numeric_dtype(values):
            if pd.api.types.is_float_dtype(values):
                infinite = np.isinf(values.to_numpy(dtype="float64"))
                if infinite.any():
                    bad[column] = values.index[infinite]
            continue
        present = values.notna()
        numbers = pd.to_numeric(values[present], errors="coerce")
        if present.any() and numbers.notna().mean() >= MOSTLY_NUMERIC:
            floats = numbers.to_numpy(dtype="float64", na_value=np.nan)
            wrong = ~np.isfinite(floats)  # not a number, or infinite
            if wrong.any():
                bad[column] = numbers.index[wrong]
            else:  # all numbers, in a form pandas did not read as such (e.g. " 12")
                features[column] = pd.Series(np.nan, index=values.index, dtype="float64")
                features.loc[numbers.index, column] = floats
        else:
            text.append(column)
    if bad:
        raise UserError(_bad_cells_message(bad, features, path, where))
    if declared is None:
        return features, text
    if text:
        raise UserError(
            f"{where('task.data.categorical')}: columns {text} of {path} are not "
            "numeric; add them to task.data.categorical or drop them with "
            "task.data.drop_columns"
        )
    return features, list(declared)


def _bad_cells_message(
    bad: dict[str, pd.Index], features: pd.DataFrame, path: Path, where: Callable[[str], str]
) -> str:
    lines, header, records = _csv_records(path, len(features))
    parts = []
    for column, rows in list(bad.items())[:_SHOWN_COLUMNS]:
        first = int(rows[0])
        line = lines[first] if lines else first + 2
        value = features[column].loc[first]
        if records and column in header:
            record = records[first]
            position = header.index(column)
            value = record[position] if position < len(record) else value
        count = f"{len(rows)} bad cell{'s' if len(rows) > 1 else ''}"
        parts.append(f"column {column!r} has {count} (e.g. line {line}: {str(value)!r})")
    if len(bad) > _SHOWN_COLUMNS:
        parts.append(f"and {len(bad) - _SHOWN_COLUMNS} more columns")
    return (
        f"{where('task.data.path')}: {path}: numeric cells that are not finite numbers: "
        f"{', '.join(parts)}; fix or remove those rows (write numbers like 1234.5, "
        "or leave the cell empty), or list the column in task.data.categorical if it "
        "is really a category"
    )


def _csv_records(path: Path, rows: int) -> tuple[list[int], list[str], list[list[str]]]:
    """Each data record's first line (the header is line 1), the header and the records.

    Read again with the csv module, only to word a message; empty ([], if the file is
    read differently than pandas read it) when its records do not match pandas's rows.
    """
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            starts, records, end = [], [], 0
            for record in reader:
                start, end = end + 1, reader.line_num
                if record:  # pandas skips blank lines
                    starts.append(start)
                    records.append(record)
    except (OSError, csv.Error):
        return [], [], []
    if len(records) != rows + 1:
        return [], [], []
    return starts[1:], records[0], records[1:]


def _stratified_splits(
    features: pd.DataFrame, labels: np.ndarray, data: DataConfig, where: Callable[[str], str] = str
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """train / valid (early stopping) / test (reported metrics only), stratified, seeded."""
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 10:
        raise UserError(
            f"{where('task.data.label')}: each class needs at least 10 rows to split into "
            f"train, valid and test (rows per class: {counts.tolist()})"
        )
    rest_x, test_x, rest_y, test_y = train_test_split(
        features, labels, test_size=data.test_size, stratify=labels, random_state=data.seed
    )
    valid_share = data.valid_size / (1.0 - data.test_size)
    train_x, valid_x, train_y, valid_y = train_test_split(
        rest_x, rest_y, test_size=valid_share, stratify=rest_y, random_state=data.seed
    )
    return {"train": (train_x, train_y), "valid": (valid_x, valid_y), "test": (test_x, test_y)}


def platt_calibration(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a·(logit₁ − logit₀) + b), fitted on `labels` (Platt scaling).

    Class-weighted training inflates the bad class's scores; one monotone map fixes the
    probabilities without touching the ranking (AUC and KS are unchanged).
    """
    margin = (logits[:, 1] - logits[:, 0]).astype(np.float64).reshape(-1, 1)
    fitted = LogisticRegression(C=100.0).fit(margin, labels)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
