"""Bad and empty data cells in the credit task's CSV (issue 11), on real files.

Each CSV is the embedded German credit data with a few cells changed. Refusals run
the installed `autocompress` entry point (all at once: start-up dominates) and must
answer with exit code 2 and one message naming the file, the column, the count and an
example line, leaving nothing behind. Empty cells are accepted: numeric ones are filled
with the recorded training mean, categorical ones become the "(missing)" category.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from autocompress.errors import UserError
from autocompress.tasks.credit import CreditTask
from autocompress.tasks.credit_config import DataConfig, TeacherConfig
from autocompress.tasks.data_files import resolve_data_file
from autocompress.tasks.preprocessing import (
    FORMAT,
    FORMAT_V1,
    MEDIAN_RULE,
    MISSING_CATEGORY,
    TabularPreprocessor,
)
from tests.conftest import autocompress_cli, tiny_study_dict, write_study

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LABEL = "creditability"


def german() -> pd.DataFrame:
    """The embedded German credit data, every cell as the text the file holds."""
    path = resolve_data_file("embedded:germancredit")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def text_columns() -> list[str]:
    """The German credit features that are text (auto-detected as categorical)."""
    frame = german()
    return [c for c in frame.columns if c != LABEL and not frame[c].str.isdigit().all()]


def write_csv(folder: Path, frame: pd.DataFrame, name: str = "applicants.csv") -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def line_of(row: int) -> int:
    """The CSV line of data row `row` (0-based): the header is line 1."""
    return row + 2


def build(path: Path, **data: object) -> CreditTask:
    config = DataConfig(path=str(path), label=LABEL, positive_label="bad", **data)
    return CreditTask(config, TeacherConfig(), where=lambda key: f"study.yaml: {key}")


def one_hot_block(pre: TabularPreprocessor, name: str) -> slice:
    """Where a categorical column's one-hot columns are in `transform`'s output."""
    start = len(pre.numeric)
    for column, categories in pre.categories.items():
        if column == name:
            return slice(start, start + len(categories))
        start += len(categories)
    raise KeyError(name)


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# -- refusals through the real entry point --------------------------------------------
@dataclass
class BadCells:
    column: str
    value: str
    rows: list[int]  # 0-based data rows that get `value`


REFUSED = {
    "inf": BadCells("duration_in_month", "inf", [3, 40, 41]),
    "minus_inf": BadCells("age_in_years", "-inf", [7]),
    "decimal_comma": BadCells("credit_amount", "12,5", [10]),
    "stray_text": BadCells("credit_amount", "unknown", [999]),
}


@pytest.fixture(scope="module")
def refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path, set[str], CompletedProcess[str]]]:
    prepared = {}
    for case, bad in REFUSED.items():
        folder = tmp_path_factory.mktemp(case)
        frame = german()
        frame.loc[bad.rows, bad.column] = bad.value
        csv_path = write_csv(folder, frame)
        study = tiny_study_dict(folder)
        study["task"]["data"]["path"] = str(csv_path)
        study_file = write_study(folder, study)
        prepared[case] = (folder, csv_path, files(folder), study_file)
    with ThreadPoolExecutor(max_workers=len(prepared)) as pool:
        running = {
            case: pool.submit(autocompress_cli, "run", str(study_file), "--n-trials", "1", cwd=d)
            for case, (d, _, _, study_file) in prepared.items()
        }
        return {case: (*prepared[case][:3], future.result()) for case, future in running.items()}


@pytest.mark.parametrize("case", REFUSED)
def test_bad_numeric_cells_are_refused_before_anything_is_written(
    case: str, refused: dict, fault_table
) -> None:
    folder, csv_path, before, process = refused[case]
    bad = REFUSED[case]
    stderr = ANSI.sub("", process.stderr)
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    message = lines[0]
    assert message.startswith("error: "), message
    count = f"{len(bad.rows)} bad cell{'s' if len(bad.rows) > 1 else ''}"
    for text in (
        "task.data.path",
        str(csv_path),
        f"column {bad.column!r} has {count}",
        f"line {line_of(bad.rows[0])}: {bad.value!r}",
        "fix or remove those rows",
        "task.data.categorical",
    ):
        assert text in message, f"{text!r} not in {message}"
    assert files(folder) == before, sorted(files(folder) - before)  # no db, runs/, exports
    fault_table.record(
        area="data cells",
        tried=f"{bad.value!r} in numeric column {bad.column} ({len(bad.rows)} rows)",
        result=f"exit 2: '{message}'; nothing written",
    )


# -- the same checks in-process: what is refused and what is not ------------------------
def test_stray_text_is_a_category_when_declared(tmp_path: Path, fault_table) -> None:
    frame = german()
    frame.loc[5, "credit_amount"] = "unknown"
    path = write_csv(tmp_path, frame)
    with pytest.raises(UserError) as refused:
        build(path)
    message = str(refused.value)
    assert f"{path}: " in message and "column 'credit_amount' has 1 bad cell" in message
    assert f"line {line_of(5)}: 'unknown'" in message

    task = build(path, categorical=[*text_columns(), "credit_amount"])
    assert len(task.preprocessor.categories["credit_amount"]) > 500  # what was asked for
    assert "credit_amount" not in task.preprocessor.numeric
    fault_table.record(
        area="data cells",
        tried="stray text 'unknown' in numeric column credit_amount, then declared categorical",
        result=f"UserError '{message}'; declared in task.data.categorical: one-hot encoded",
    )


def test_declared_categorical_list_still_checks_numeric_columns(
    tmp_path: Path, fault_table
) -> None:
    frame = german()
    frame.loc[[20, 30], "age_in_years"] = "n/a years"
    path = write_csv(tmp_path, frame)
    with pytest.raises(UserError) as refused:
        build(path, categorical=text_columns())
    message = str(refused.value)
    assert "column 'age_in_years' has 2 bad cells" in message
    assert f"line {line_of(20)}: 'n/a years'" in message
    fault_table.record(
        area="data cells",
        tried="text in numeric column age_in_years with task.data.categorical set",
        result=f"UserError '{message}'",
    )


def test_text_columns_are_still_categorical() -> None:
    path = resolve_data_file("embedded:germancredit")
    task = build(path)
    assert "purpose" in task.preprocessor.categories
    assert task.preprocessor.numeric == [
        "duration_in_month",
        "credit_amount",
        "installment_rate_in_percentage_of_disposable_income",
        "present_residence_since",
        "age_in_years",
        "number_of_existing_credits_at_this_bank",
        "number_of_people_being_liable_to_provide_maintenance_for",
    ]


def test_line_numbers_count_quoted_multiline_records(tmp_path: Path) -> None:
    frame = german()
    frame.loc[2, "purpose"] = "radio/\ntelevision"  # record 2 spans lines 4 and 5
    frame.loc[3, "duration_in_month"] = "inf"
    path = write_csv(tmp_path, frame)
    with pytest.raises(UserError, match=r"line 6: 'inf'"):
        build(path)


# -- empty cells are accepted and recorded ----------------------------------------------
def test_empty_numeric_cells_get_the_recorded_training_median(tmp_path: Path, fault_table) -> None:
    frame = german()
    rows = list(range(0, 1000, 50))
    frame.loc[rows, "duration_in_month"] = ""
    path = write_csv(tmp_path, frame)
    task = build(path)
    pre = task.preprocessor
    train = task.splits["train"][0]["duration_in_month"]
    assert train.isna().any(), "some empty cells are in the training split"
    payload = json.loads(pre.save(tmp_path).read_text())
    assert payload["format"] == FORMAT
    (step,) = [c for c in payload["numeric"] if c["column"] == "duration_in_month"]
    assert step["fill"] == {"value": pytest.approx(train.median()), "rule": MEDIAN_RULE}
    assert step["missing_indicator"]["added"], "auto: the column had empty training cells"
    assert "duration_in_month:missing" in pre.feature_names
    assert payload["missing_category"] == MISSING_CATEGORY

    loaded = TabularPreprocessor.load(tmp_path / "preprocessing.json")
    row = task.splits["test"][0].iloc[[0]].copy()
    filled = row.copy()
    row["duration_in_month"] = np.nan
    filled["duration_in_month"] = step["fill"]["value"]
    indicator = pre.feature_names.index("duration_in_month:missing")
    empty, given = loaded.transform(row), loaded.transform(filled)
    assert empty[0, indicator] == 1.0 and given[0, indicator] == 0.0
    others = [i for i in range(len(pre.feature_names)) if i != indicator]
    np.testing.assert_array_equal(empty[:, others], given[:, others])
    assert np.isfinite(task.core_feeds("train")["features"]).all()
    fault_table.record(
        area="data cells",
        tried=f"{len(rows)} empty cells in numeric column duration_in_month",
        result=f"accepted; preprocessing.json records fill {step['fill']['value']:.4f} "
        f"({step['fill']['rule']}) and a missing indicator; the graph applies both",
    )


def test_infinite_input_follows_the_declared_rule(tmp_path: Path) -> None:
    """±inf at scoring time is missing by default (`task.preprocessing.infinite`)."""
    task = build(resolve_data_file("embedded:germancredit"))
    row = task.splits["test"][0].iloc[[0]].copy()
    missing = row.copy()
    missing["credit_amount"] = np.nan
    for value in (np.inf, -np.inf):
        row["credit_amount"] = value
        np.testing.assert_array_equal(
            task.preprocessor.transform(row), task.preprocessor.transform(missing)
        )


def test_numeric_categories_match_however_pandas_reads_them(tmp_path: Path) -> None:
    column = "installment_rate_in_percentage_of_disposable_income"
    frame = german()
    frame.loc[list(range(0, 1000, 10)), column] = ""  # read as floats: 4.0, NaN
    path = write_csv(tmp_path, frame)
    task = build(path, categorical=[*text_columns(), column])
    pre = task.preprocessor
    assert pre.categories[column] == ["(missing)", "1", "2", "3", "4"]
    # A deployment's CSV without empty cells reads the column as integers.
    clean = pd.read_csv(resolve_data_file("embedded:germancredit")).drop(columns=[LABEL])
    assert clean[column].dtype.kind == "i"
    block = pre.transform(clean.head(50))[:, one_hot_block(pre, column)]
    assert (block.sum(axis=1) == 1).all() and (block[:, 0] == 0).all()


def test_v1_files_still_load_and_transform_as_before(tmp_path: Path) -> None:
    task = build(resolve_data_file("embedded:germancredit"))
    pre = task.preprocessor
    v1 = {
        "format": FORMAT_V1,
        "numeric": pre.numeric,
        "means": pre.means,
        "scales": pre.scales,
        "categories": pre.categories,
    }
    path = tmp_path / "preprocessing.json"
    path.write_text(json.dumps(v1))
    old = TabularPreprocessor.load(path)
    assert old.missing_category is None
    rows = task.splits["test"][0].head(20).copy()
    np.testing.assert_array_equal(old.transform(rows), pre.transform(rows))
    rows.loc[rows.index[0], "credit_amount"] = np.nan  # /1: empty numeric → 0 after scaling
    column = pre.numeric.index("credit_amount")
    assert old.transform(rows)[0, column] == 0.0
    (tmp_path / "again").mkdir()
    assert json.loads(old.save(tmp_path / "again").read_text())["format"] == FORMAT_V1


# -- the one study that runs: empty categorical cells --------------------------------------
def test_empty_categorical_cells_run_and_export_maps_them(tmp_path: Path, fault_table) -> None:
    frame = german()
    rows = list(range(0, 1000, 25))
    frame.loc[rows, "purpose"] = ""
    path = write_csv(tmp_path, frame)
    study = tiny_study_dict(tmp_path)
    study["task"]["data"]["path"] = str(path)
    study_file = write_study(tmp_path, study)
    process = autocompress_cli("run", str(study_file), "--n-trials", "1", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr

    (pre_file,) = (tmp_path / "exports").rglob("preprocessing.json")
    pre = TabularPreprocessor.load(pre_file)
    assert MISSING_CATEGORY in pre.categories["purpose"]
    applicants = pd.read_csv(path).drop(columns=[LABEL]).iloc[rows[:5] + [1, 2]]
    features = pre.transform(applicants)
    column = one_hot_block(pre, "purpose").start + pre.categories["purpose"].index(MISSING_CATEGORY)
    assert features[:5, column].tolist() == [1.0] * 5
    assert features[5:, column].tolist() == [0.0, 0.0]
    session = ort.InferenceSession(str(pre_file.parent / "model.onnx"))
    probabilities = session.run(None, pre.raw_feeds(applicants))[0]
    assert np.isfinite(probabilities).all()
    raw = {i.name: i.type for i in session.get_inputs()}
    assert raw["purpose"] == "tensor(string)", "the export takes the raw column"
    fault_table.record(
        area="data cells",
        tried=f"{len(rows)} empty cells in categorical column purpose",
        result=f"study ran (exit 0); export's preprocessing.json maps them to "
        f"{MISSING_CATEGORY!r}: {pre.categories['purpose'][:3]}...",
    )
