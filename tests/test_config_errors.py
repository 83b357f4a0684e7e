"""Bad user input: exit code 2, one message naming file, key and fix, and nothing written.

Every case runs through the command line (`autocompress.cli.app` in-process, with
typer's CliRunner) and through the Python API. A representative few also run the
installed `autocompress` entry point in separate processes, all started at once:
each such process spends several seconds importing torch, so running every case
that way would take minutes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from autocompress import (
    UserError,
    VerificationError,
    load_result,
    load_study_config,
    run_study,
    stored_front,
    verify,
)
from autocompress.cli import app
from tests.conftest import TINY_SPACE, autocompress_cli, tiny_study_dict, write_study

PASSWORD = "s3cretpw"
POSTGRES_URL = f"postgresql+psycopg://someuser:{PASSWORD}@127.0.0.1:1/nodb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Scenario:
    """One mistake: the command line that makes it, the same call in Python, the verdict."""

    args: list[str]
    api: Callable[[], Any]
    expect: list[str]  # each must be in the one-line message
    forbid: tuple[str, ...] = ()
    exit_code: int = 2
    error: type[UserError] = UserError
    may_create: frozenset[str] = frozenset()  # files the failed command may leave (none!)


# -- building bad inputs -------------------------------------------------------------------
def _study(folder: Path, mutate: Callable[[dict], None] | None = None, **top: Any) -> Path:
    study = tiny_study_dict(folder, **top)
    if mutate is not None:
        mutate(study)
    return write_study(folder, study)


def _data(study: dict, **values: Any) -> None:
    study["task"]["data"] = {"seed": 0, **values}


def _csv(folder: Path) -> Path:
    """200 applicants: numeric features, a string feature, a 0/1 label and a text rating."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "income": rng.normal(3000, 800, 200).round(2),
            "age": rng.integers(18, 80, 200),
            "months": rng.integers(6, 72, 200),
            "purpose": rng.choice(["car", "house", "education"], 200),
            "rating": rng.choice(["good", "bad"], 200),
            "default": rng.integers(0, 2, 200),
        }
    )
    path = folder / "applicants.csv"
    frame.to_csv(path, index=False)
    return path


def _space(**fields: Any) -> dict[str, Any]:
    return {**TINY_SPACE, **fields}


def _run(path: Path, *extra: str) -> list[str]:
    return ["run", str(path), *extra]


# -- the cases -----------------------------------------------------------------------------
def unknown_top_key(d: Path) -> Scenario:
    path = _study(d, n_trails=3)
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: n_trails: unknown key", "allowed keys: study_name, search_space", "n_trials"],
    )


def unknown_nested_key(d: Path) -> Scenario:
    path = _study(d, lambda s: s["task"]["data"].update(lable="creditability"))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: task.data.lable: unknown key", "allowed keys: path, label, positive_label"],
    )


def wrong_type_n_trials(d: Path) -> Scenario:
    path = _study(d, n_trials="many")
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: n_trials: ", "should be a valid integer", "(got 'many')"],
    )


def wrong_type_repeats(d: Path) -> Scenario:
    path = _study(d, lambda s: s["target"].update(repeats=1.5))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: target.repeats: ", "should be a valid integer", "(got 1.5)"],
    )


def onnxruntime_setting_on_torch_cuda(d: Path) -> Scenario:
    path = _study(d, lambda s: s["target"].update(runtime="torch-cuda", intra_op_threads=2))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [
            f"{path}: target.intra_op_threads: unknown key",
            "allowed keys: runtime, batch_size, warmup, repeats",
        ],
        forbid=("execution_provider",),
    )


def unknown_runtime(d: Path) -> Scenario:
    path = _study(d, lambda s: s["target"].update(runtime="tpu"))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: target.runtime: 'tpu' is not allowed", "'onnxruntime', 'torch-cuda'"],
    )


def constraint_stop_without_limit(d: Path) -> Scenario:
    def mutate(study: dict) -> None:
        study["cost_control"] = {"constraint_stop": True}
        study["constraints"] = {"max_f1_drop": None, "max_accuracy_drop": None}

    path = _study(d, mutate)
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: cost_control.constraint_stop: true needs a limit in constraints"],
    )


def grace_period_within_a_beat(d: Path) -> Scenario:
    path = _study(d, workers={"heartbeat_interval_s": 30, "grace_period_s": 20})
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: workers.grace_period_s: 20 must be longer than", "(30)"],
    )


def autocast_not_a_mode(d: Path) -> Scenario:
    path = _study(d, workers={"autocast": "fast"})
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: workers.autocast: ", "'off', 'bf16' or 'auto'", "(got 'fast')"],
    )


def n_trials_option_zero(d: Path) -> Scenario:
    path = _study(d)
    return Scenario(
        _run(path, "--n-trials", "0"),
        lambda: run_study(path, n_trials=0),
        [f"{path}: n_trials (from --n-trials): ", "greater than or equal to 1", "(got 0)"],
    )


# Impossible search spaces: (field, value, key under the space, what the message says).
BAD_SPACES = {
    "low-above-high": (
        "kd_temperature",
        {"low": 4.0, "high": 1.0},
        "kd_temperature",
        ["empty search range (low 4.0 > high 1.0)", "make low <= high"],
    ),
    "empty-choices": (
        "bits",
        {"choices": []},
        "bits.choices",
        ["empty search range", "give a non-empty list"],
    ),
    "bits-not-allowed": (
        "bits",
        {"choices": [32, 12]},
        "bits.choices",
        ["12 is not allowed", "allowed values: [32, 16, 8, 4]"],
    ),
    "pruning-ratio-above-1": (
        "pruning_ratio",
        {"low": 0.0, "high": 1.5},
        "pruning_ratio.high",
        ["1.5 is outside the allowed range [0.0, 0.95]"],
    ),
}


def _bad_space_inline(name: str) -> Callable[[Path], Scenario]:
    field, value, key, says = BAD_SPACES[name]

    def scenario(d: Path) -> Scenario:
        path = _study(d, search_space=_space(**{field: value}))
        return Scenario(
            _run(path), lambda: load_study_config(path), [f"{path}: search_space.{key}: ", *says]
        )

    return scenario


def _bad_space_file(name: str) -> Callable[[Path], Scenario]:
    field, value, key, says = BAD_SPACES[name]

    def scenario(d: Path) -> Scenario:
        space = d / "space.yaml"
        space.write_text(yaml.safe_dump(_space(**{field: value})))
        path = _study(d, search_space="space.yaml")  # relative to the study file
        return Scenario(_run(path), lambda: load_study_config(path), [f"{space}: {key}: ", *says])

    return scenario


def search_space_file_missing(d: Path) -> Scenario:
    path = _study(d, search_space="spaces/credit.yaml")
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: search_space: file not found: {d / 'spaces' / 'credit.yaml'}", "fix the path"],
    )


def data_file_missing(d: Path) -> Scenario:
    path = _study(d, lambda s: _data(s, path="data/applicants.csv", label="default"))
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: task.data.path: data file not found: {d / 'data' / 'applicants.csv'}",
            "fix the path",
        ],
    )


def data_option_missing(d: Path) -> Scenario:
    path = _study(d)  # the study's own data (embedded) is fine; --data is not
    return Scenario(
        _run(path, "--data", "missing.csv"),  # relative to the current folder (d)
        lambda: run_study(path, data="missing.csv"),
        [
            f"{path}: task.data.path (from --data): data file not found: {d / 'missing.csv'}",
            "fix the path",
        ],
    )


def label_column_missing(d: Path) -> Scenario:
    csv = _csv(d)
    path = _study(d, lambda s: _data(s, path=csv.name, label="defaulted"))
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: task.data.label: column 'defaulted' is not in {csv}",
            "columns are: income, age, months, purpose, rating, default",
        ],
    )


def label_not_numeric(d: Path) -> Scenario:
    csv = _csv(d)
    path = _study(d, lambda s: _data(s, path=csv.name, label="rating"))
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: task.data.label: column 'rating' in {csv} is non-numeric",
            "['bad', 'good']",
            "set task.data.positive_label",
        ],
    )


def positive_label_not_a_value(d: Path) -> Scenario:
    csv = _csv(d)
    path = _study(d, lambda s: _data(s, path=csv.name, label="rating", positive_label="risky"))
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: task.data.positive_label: 'risky' is not a value of column 'rating'",
            "allowed values: ['bad', 'good']",
        ],
    )


def postgres_unreachable(d: Path) -> Scenario:
    path = _study(d, storage=POSTGRES_URL)
    return Scenario(
        _run(path),
        lambda: run_study(path),
        ["storage: cannot reach database postgresql+psycopg://someuser:***@127.0.0.1:1/nodb"],
        forbid=(PASSWORD,),
    )


def sqlite_folder_impossible(d: Path) -> Scenario:
    (d / "plain-file").write_text("not a folder\n")
    url = f"sqlite:///{d / 'plain-file' / 'runs' / 'study.db'}"
    path = _study(d, storage=url)
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [f"storage: cannot create the folder for {url}", "--storage"],
    )


def study_file_missing(d: Path) -> Scenario:
    path = d / "studies" / "missing.yaml"
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: study file not found; check the path"],
    )


def study_not_a_mapping(d: Path) -> Scenario:
    path = d / "study.yaml"
    path.write_text("- study_name: tiny\n- n_trials: 4\n")
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: expected a mapping of `key: value` lines at the top level, got a list"],
    )


def study_invalid_yaml(d: Path) -> Scenario:
    path = d / "study.yaml"
    path.write_text("study_name: tiny\nsearch_space: [pruning_ratio\nn_trials: 4\n")
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: not valid YAML at line ", "fix the syntax"],
    )


def verify_without_manifest(d: Path) -> Scenario:
    folder = d / "not-an-export"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not really a model")
    return Scenario(
        ["verify", str(folder)],
        lambda: verify(folder),
        [f"{folder}: no manifest.json; this is not an autocompress export"],
        exit_code=1,
        error=VerificationError,
    )


def _never_run(d: Path) -> tuple[Path, list[str]]:
    path = _study(d)
    url = f"sqlite:///{d / 'study.db'}"
    return path, [f"no study named 'tiny' in {url}", f"run it first with `autocompress run {path}`"]


# Opening an SQLite URL creates the (empty) database file: see the report on api._load_existing.
OPENS_DB = frozenset({"study.db"})


def front_never_run(d: Path) -> Scenario:
    path, says = _never_run(d)
    return Scenario(["front", str(path)], lambda: stored_front(path), says, may_create=OPENS_DB)


def export_never_run(d: Path) -> Scenario:
    path, says = _never_run(d)
    return Scenario(
        ["export", str(path), "--out", str(d / "out")],
        lambda: load_result(path).export(d / "out"),
        says,
        may_create=OPENS_DB,
    )


def log1p_on_negative_values(d: Path) -> Scenario:
    csv = _csv(d)
    frame = pd.read_csv(csv)
    frame["balance"] = frame["income"] - 3000  # about half the applicants are below 0
    frame.to_csv(csv, index=False)

    def declare(study: dict) -> None:
        _data(study, path=csv.name, label="default")
        study["task"]["preprocessing"] = {"columns": {"bal*": {"transform": "log1p"}}}

    path = _study(d, declare)
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: task.preprocessing.columns['bal*'].transform: log1p for column 'balance'",
            "negative",
            "use transform signed_log1p or clip",
        ],
    )


def decision_value_outside_zero_one(d: Path) -> Scenario:
    path = _study(d, lambda s: s["task"].update(decision={"rule": "bad_rate", "value": 1.5}))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: task.decision.value: ", "less than 1", "(got 1.5)"],
    )


def auc_on_a_one_class_validation_split(d: Path) -> Scenario:
    """10 defaulters in 400 rows and a 2% validation split: no defaulter in it."""
    rng = np.random.default_rng(0)
    csv = d / "rare.csv"
    pd.DataFrame(
        {
            "income": rng.normal(3000, 800, 400).round(2),
            "age": rng.integers(18, 80, 400),
            "default": [1] * 10 + [0] * 390,
        }
    ).to_csv(csv, index=False)

    def declare(study: dict) -> None:
        _data(study, path=csv.name, label="default", valid_size=0.02)
        study["constraints"] = {"max_accuracy_drop": None, "max_roc_auc_drop": 0.02}

    path = _study(d, declare)
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: constraints.max_roc_auc_drop needs both classes in the validation split",
            "only class 0 (8 rows)",
            "use a larger task.data.valid_size",
        ],
    )


def one_class_test_split_without_ranking_scores(d: Path) -> Scenario:
    """No ranking score anywhere, but a test split with no defaulter: the held-out
    comparison with the teacher (and its intervals) needs both classes."""
    rng = np.random.default_rng(0)
    csv = d / "rare.csv"
    pd.DataFrame(
        {
            "income": rng.normal(3000, 800, 400).round(2),
            "age": rng.integers(18, 80, 400),
            "default": [1] * 10 + [0] * 390,
        }
    ).to_csv(csv, index=False)

    def declare(study: dict) -> None:
        _data(study, path=csv.name, label="default", test_size=0.02, valid_size=0.3)
        study["objectives"] = {"metrics": ["accuracy", "latency_p50_ms"]}

    path = _study(d, declare)
    return Scenario(
        _run(path),
        lambda: run_study(path),
        [
            f"{path}: task.data.test_size: the test split has only class 0 (8 rows)",
            "needs both classes",
            "use a larger task.data.test_size",
        ],
    )


def interval_level_outside_zero_one(d: Path) -> Scenario:
    path = _study(d, intervals={"confidence": 1.5})
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: intervals.confidence: ", "less than 1", "(got 1.5)"],
    )


def constraint_confidence_zero(d: Path) -> Scenario:
    path = _study(d, lambda s: s["constraints"].update(confidence=0))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: constraints.confidence: ", "greater than 0", "(got 0)"],
    )


def seeds_zero(d: Path) -> Scenario:
    path = _study(d, lambda s: s["export"].update(seeds=0))
    return Scenario(
        _run(path),
        lambda: load_study_config(path),
        [f"{path}: export.seeds: ", "greater than or equal to 1", "(got 0)"],
    )


CASES: dict[str, Callable[[Path], Scenario]] = {
    "unknown-top-key": unknown_top_key,
    "unknown-nested-key": unknown_nested_key,
    "wrong-type-n-trials": wrong_type_n_trials,
    "wrong-type-repeats": wrong_type_repeats,
    "onnxruntime-setting-on-torch-cuda": onnxruntime_setting_on_torch_cuda,
    "unknown-runtime": unknown_runtime,
    "n-trials-option-zero": n_trials_option_zero,
    "constraint-stop-without-limit": constraint_stop_without_limit,
    "grace-period-within-a-beat": grace_period_within_a_beat,
    "autocast-not-a-mode": autocast_not_a_mode,
    **{f"space-inline-{name}": _bad_space_inline(name) for name in BAD_SPACES},
    **{f"space-file-{name}": _bad_space_file(name) for name in BAD_SPACES},
    "space-file-missing": search_space_file_missing,
    "data-file-missing": data_file_missing,
    "data-option-missing": data_option_missing,
    "label-column-missing": label_column_missing,
    "label-not-numeric": label_not_numeric,
    "positive-label-not-a-value": positive_label_not_a_value,
    "log1p-on-negative-values": log1p_on_negative_values,
    "decision-value-outside-zero-one": decision_value_outside_zero_one,
    "auc-on-a-one-class-validation-split": auc_on_a_one_class_validation_split,
    "one-class-test-split": one_class_test_split_without_ranking_scores,
    "interval-level-outside-zero-one": interval_level_outside_zero_one,
    "constraint-confidence-zero": constraint_confidence_zero,
    "seeds-zero": seeds_zero,
    "postgres-unreachable": postgres_unreachable,
    "sqlite-folder-impossible": sqlite_folder_impossible,
    "study-file-missing": study_file_missing,
    "study-not-a-mapping": study_not_a_mapping,
    "study-invalid-yaml": study_invalid_yaml,
    "verify-without-manifest": verify_without_manifest,
    "front-never-run": front_never_run,
    "export-never-run": export_never_run,
}
# Through the installed entry point too: a config error, a data error from an option,
# the password that must not leak, and the one exit code that is not 2.
IN_SEPARATE_PROCESSES = (
    "unknown-nested-key",
    "data-option-missing",
    "postgres-unreachable",
    "verify-without-manifest",
)


# -- the verdict ---------------------------------------------------------------------------
def _files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*")}


def assert_one_clear_message(
    scenario: Scenario, exit_code: int, stderr: str, stdout: str = ""
) -> str:
    stderr = ANSI.sub("", stderr)
    assert exit_code == scenario.exit_code, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one message line, got:\n{stderr}"
    assert lines[0].startswith("error: "), stderr
    for text in scenario.expect:
        assert text in lines[0], f"{text!r} not in message:\n{lines[0]}"
    for text in scenario.forbid:
        assert text not in stderr and text not in stdout
    return lines[0]


def assert_nothing_left(folder: Path, before: set[str], scenario: Scenario) -> None:
    left = _files(folder) - before
    assert left <= scenario.may_create, f"left behind: {sorted(left)}"
    db = folder / "study.db"  # the storage `tiny_study_dict` configures
    if db.exists():
        assert optuna.get_all_study_names(storage=f"sqlite:///{db}") == []
    assert not (folder / "exports").exists()
    assert not (folder / "out").exists()


# -- the tests -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_command_line_rejects_bad_input(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = CASES[case](tmp_path)
    before = _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, scenario.args)
    assert isinstance(result.exception, SystemExit), result.exc_info  # not a crash
    assert_one_clear_message(scenario, result.exit_code, result.stderr, result.stdout)
    assert_nothing_left(tmp_path, before, scenario)


@pytest.mark.parametrize("case", CASES)
def test_python_api_raises_user_error(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = CASES[case](tmp_path)
    before = _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as raised:
        scenario.api()
    assert type(raised.value) is scenario.error
    assert raised.value.exit_code == scenario.exit_code
    message = str(raised.value)
    assert "\n" not in message
    for text in scenario.expect:
        assert text in message
    for text in scenario.forbid:
        assert text not in message
    assert_nothing_left(tmp_path, before, scenario)


@pytest.fixture(scope="module")
def separate_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, set[str], Scenario, CompletedProcess[str]]]:
    """The real entry point for a few cases, all processes at once (start-up dominates)."""
    prepared = {}
    for case in IN_SEPARATE_PROCESSES:
        folder = tmp_path_factory.mktemp(case)
        scenario = CASES[case](folder)
        prepared[case] = (folder, _files(folder), scenario)
    with ThreadPoolExecutor(max_workers=len(prepared)) as pool:
        running = {
            case: pool.submit(autocompress_cli, *scenario.args, cwd=folder)
            for case, (folder, _, scenario) in prepared.items()
        }
        return {case: (*prepared[case], future.result()) for case, future in running.items()}


@pytest.mark.parametrize("case", IN_SEPARATE_PROCESSES)
def test_entry_point_rejects_bad_input(
    case: str, separate_processes: dict[str, tuple[Path, set[str], Scenario, CompletedProcess]]
) -> None:
    folder, before, scenario, process = separate_processes[case]
    assert_one_clear_message(scenario, process.returncode, process.stderr, process.stdout)
    assert_nothing_left(folder, before, scenario)


def test_message_keeps_square_brackets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "[prod]" / "study.yaml"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert f"{path}: study file not found" in result.stderr
