"""A whole study, end to end, on real SQLite, real onnxruntime and the real German credit data."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sklearn.metrics import roc_auc_score
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from autocompress import UserError, load_result, load_study_config, run_study, verify
from autocompress.api import StudyResult
from autocompress.dashboard import named_constraints
from autocompress.models import MLPClassifier
from autocompress.store.schema import ExportRecord, FrontSnapshot
from autocompress.tasks import build_task
from tests.conftest import autocompress_cli, tiny_study_dict, write_study

N_TRIALS = 6


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("study")


@pytest.fixture(scope="module")
def result(study_dir: Path) -> StudyResult:
    path = write_study(study_dir, tiny_study_dict(study_dir, n_trials=N_TRIALS))
    return run_study(path)


@pytest.fixture(scope="module")
def study_file(result: StudyResult) -> Path:
    return result.loaded.source


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_teacher_is_trial_zero_and_uncompressed(result: StudyResult) -> None:
    teacher = result.study.trials[0]
    assert teacher.user_attrs["role"] == "teacher"
    assert teacher.state == TrialState.COMPLETE
    assert teacher.user_attrs["recipe"]["pruning_ratio"] == 0.0
    assert teacher.user_attrs["recipe"]["bits"] == 32
    assert teacher.user_attrs["accuracy_drop"] == pytest.approx(0.0)
    teacher_spec = result.study.user_attrs["autocompress:teacher"]["spec"]
    assert teacher.user_attrs["student_spec"] == teacher_spec
    assert (
        teacher.user_attrs["num_parameters"]
        == MLPClassifier.from_spec(teacher_spec).num_parameters()
    )
    teachers = [t for t in result.study.trials if t.user_attrs.get("role") == "teacher"]
    assert len(teachers) == 1


def test_every_trial_records_metrics_latency_and_constraint(result: StudyResult) -> None:
    trials = complete(result.study)
    assert len(trials) >= 3
    for trial in trials:
        metrics, measurement = trial.user_attrs["metrics"], trial.user_attrs["measurement"]
        assert set(metrics) >= {"accuracy", "f1", "f1_macro", "f1_positive", "roc_auc"}
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert measurement["repeats"] == 5 and measurement["batch_size"] == 32
        assert 0 < measurement["latency_p50_ms"] <= measurement["latency_p90_ms"]
        assert measurement["size_bytes"] > 0
        limit = trial.user_attrs["accuracy_drop"] - 0.05
        assert named_constraints(trial) == pytest.approx({"accuracy_drop": limit})
        # One list that Optuna and optuna-dashboard both read as feasibility.
        assert list(trial.constraints.values()) == pytest.approx([limit])
        assert trial.values == [metrics["accuracy"], metrics["f1"], measurement["latency_p50_ms"]]
        assert set(trial.user_attrs["artifacts"]) == {"model.onnx", "preprocessing.json"}


def test_objective_names_are_set_for_the_dashboard(result: StudyResult) -> None:
    assert result.study.metric_names == ["accuracy", "f1", "latency_p50_ms"]


def test_front_matches_optuna_best_trials(result: StudyResult) -> None:
    ours = sorted(m.trial_number for m in result.front)
    assert ours == sorted(t.number for t in result.study.best_trials)
    assert ours, "a front is never empty once the teacher completed"


def test_a_snapshot_is_stored_after_every_completed_trial(result: StudyResult) -> None:
    engine = create_engine(result.loaded.config.storage_url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(FrontSnapshot))
    assert count == len(complete(result.study))


def test_front_read_by_a_separate_process_matches_best_trials(
    result: StudyResult, study_file: Path
) -> None:
    process = autocompress_cli("front", str(study_file), "--json", cwd=study_file.parent)
    assert process.returncode == 0, process.stderr
    members = json.loads(process.stdout)
    fresh = optuna.load_study(study_name="tiny", storage=result.loaded.config.storage_url)
    best = {t.number: t for t in fresh.best_trials}
    assert sorted(m["trial_number"] for m in members) == sorted(best)
    for member in members:
        trial = best[member["trial_number"]]
        assert member["metrics"]["accuracy"] == trial.values[0]
        assert member["metrics"]["latency_p50_ms"] == trial.values[2]

    table = autocompress_cli("front", str(study_file), cwd=study_file.parent)
    assert table.returncode == 0 and "teacher" in table.stdout


def test_export_writes_a_verifiable_folder(result: StudyResult, study_dir: Path) -> None:
    out = result.export(study_dir / "export-fastest", policy="fastest")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "manifest.json",
        "metrics.json",
        "model.onnx",
        "preprocessing.json",
    ]
    assert verify(out) == 4
    config = yaml.safe_load((out / "config.yaml").read_text())
    chosen = config["study"]["trial_number"]
    fastest = min(result.front, key=lambda m: m.metrics["latency_p50_ms"])
    assert chosen == fastest.trial_number
    assert config["recipe"] == result.study.trials[chosen].user_attrs["recipe"]
    assert config["student_spec"]["hidden_sizes"]
    assert (
        config["study"]["teacher"]["fingerprint"]
        == result.study.user_attrs["autocompress:teacher"]["fingerprint"]
    )
    assert not list(study_dir.glob(".export-fastest*")), "no staging folder left behind"
    engine = create_engine(result.loaded.config.storage_url)
    with Session(engine) as session:
        paths = session.scalars(select(ExportRecord.path)).all()
    assert str(out.resolve()) in paths


def test_exported_graph_scores_raw_rows_as_recorded(result: StudyResult, study_dir: Path) -> None:
    """The export alone (raw columns in, probabilities out) reproduces its recorded scores."""
    out = result.export(study_dir / "export-check", policy="fastest")
    written = json.loads((out / "metrics.json").read_text())
    task = build_task(load_study_config(result.loaded.source).config)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == task.preprocessor.input_columns
    assert [o.name for o in session.get_outputs()] == ["probabilities", "logits", "label"]
    threshold = float(session.get_modelmeta().custom_metadata_map["autocompress.threshold"])
    # The validation scores chose it; the test scores are held out and only reported.
    for split, recorded in (
        ("valid", written["metrics"]),
        ("test", written["held_out"]["metrics"]),
    ):
        probabilities, _, decision = session.run(None, task.feeds(split))
        labels = task.labels(split)
        assert roc_auc_score(labels, probabilities[:, 1]) == pytest.approx(recorded["roc_auc"])
        assert threshold == pytest.approx(recorded["threshold"])
        assert np.array_equal(decision, (probabilities[:, 1] >= threshold).astype(np.int64))
        assert np.mean(decision == labels) == pytest.approx(recorded["accuracy_at_threshold"])
    assert written["held_out"]["rows"] == len(task.labels("test"))
    classes = json.loads((out / "metrics.json").read_text())["classes"]
    assert classes == {"0": "good", "1": "bad"}
    assert json.loads(session.get_modelmeta().custom_metadata_map["autocompress.classes"]) == (
        classes
    )


def test_policies_select_what_they_promise(result: StudyResult, study_dir: Path) -> None:
    out = result.export(study_dir / "export-accurate", policy="most_accurate")
    chosen = yaml.safe_load((out / "config.yaml").read_text())["study"]["trial_number"]
    assert result.study.trials[chosen].values[0] == max(m.metrics["accuracy"] for m in result.front)

    last = complete(result.study)[-1].number
    out = result.export(study_dir / "export-explicit", policy=f"trial:{last}")
    assert yaml.safe_load((out / "config.yaml").read_text())["study"]["trial_number"] == last

    with pytest.raises(UserError, match="has no trial 999"):
        result.export(study_dir / "export-missing", policy="trial:999")
    assert not (study_dir / "export-missing").exists()
    with pytest.raises(UserError, match="not allowed"):
        result.export(study_dir / "export-bad", policy="slowest")


def test_verify_fails_loudly_on_tampering(result: StudyResult, study_dir: Path) -> None:
    out = result.export(study_dir / "export-tamper", policy="fastest")
    ok = autocompress_cli("verify", str(out))
    assert ok.returncode == 0 and "OK" in ok.stdout

    model = out / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    (out / "extra.txt").write_text("not from the export")
    (out / "metrics.json").unlink()
    bad = autocompress_cli("verify", str(out))
    assert bad.returncode == 1
    assert "changed: model.onnx" in bad.stderr
    assert "missing: metrics.json" in bad.stderr
    assert "not in manifest: extra.txt" in bad.stderr


def test_export_refuses_to_overwrite_without_being_asked(
    result: StudyResult, study_file: Path, study_dir: Path
) -> None:
    out = study_dir / "export-existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    process = autocompress_cli("export", str(study_file), "--out", str(out), cwd=study_dir)
    assert process.returncode == 2
    assert "not an autocompress export (keep.txt)" in process.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    # --overwrite replaces an empty folder or an earlier export, never a user's files.
    command = (
        "export",
        str(study_file),
        "--out",
        str(out),
        "--overwrite",
        "--policy",
        "most_accurate",
    )
    process = autocompress_cli(*command, cwd=study_dir)
    assert process.returncode == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    process = autocompress_cli(*command, cwd=study_dir)
    assert process.returncode == 0, process.stderr
    assert verify(out) == 4


def test_resume_continues_the_same_study(result: StudyResult, study_file: Path) -> None:
    before = len(result.study.trials)
    resumed = run_study(study_file, n_trials=2)
    assert resumed.study.study_name == "tiny"
    assert len(resumed.study.trials) == before + 2
    assert sum(t.user_attrs.get("role") == "teacher" for t in resumed.study.trials) == 1
    assert load_result(study_file).study.trials[-1].number == before + 1


def test_resume_with_a_different_search_space_is_refused(
    study_dir: Path, result: StudyResult
) -> None:
    changed = tiny_study_dict(study_dir)
    changed["search_space"] = {"pruning_ratio": {"low": 0.1, "high": 0.2}}
    path = write_study(study_dir, changed, "changed.yaml")
    before = len(result.study.trials)
    with pytest.raises(UserError, match="different task, search space"):
        run_study(path, n_trials=1)
    assert len(load_result(path).study.trials) == before


def test_a_study_measured_on_another_machine_is_not_resumed(tmp_path: Path) -> None:
    path = write_study(tmp_path, tiny_study_dict(tmp_path, n_trials=1))
    study = run_study(path).study
    elsewhere = {**study.user_attrs["autocompress:machine"], "cpu_model": "Some Other CPU"}
    study.set_user_attr("autocompress:machine", elsewhere)
    with pytest.raises(UserError, match=r"another machine or runtime \(differs in: cpu_model\)"):
        run_study(path, n_trials=1)
    assert len(load_result(path).study.trials) == 1


def test_recipes_the_target_cannot_run_are_pruned_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autocompress.targets import onnxruntime as target_module

    refused = dict(target_module.PRECISIONS)
    refused["CPUExecutionProvider"] = {"fp32"}
    monkeypatch.setattr(target_module, "PRECISIONS", refused)
    monkeypatch.chdir(tmp_path)
    study = tiny_study_dict(tmp_path, n_trials=3)
    study["search_space"] = {"pruning_ratio": {"low": 0.1, "high": 0.5}, "bits": {"choices": [8]}}
    outcome = run_study(write_study(tmp_path, study))
    trials = outcome.study.trials
    assert trials[0].state == TrialState.COMPLETE  # the teacher runs in fp32
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 2
    for trial in pruned:
        assert "no kernels for int8-" in trial.user_attrs["pruned_reason"]
    assert [m.trial_number for m in outcome.front] == [0]


def test_cli_run_prints_the_front_and_the_export_path(tmp_path: Path) -> None:
    path = write_study(tmp_path, tiny_study_dict(tmp_path, n_trials=3, study_name="cli"))
    process = autocompress_cli("run", str(path), "--n-trials", "2", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert "Pareto front of cli" in process.stdout
    assert "(teacher" in process.stdout
    assert re.search(r"trial 0: fp32: accuracy 0\.\d{3}, f1 0\.\d{3}, p50 ", process.stdout)
    for baseline in ("lightgbm", "logistic_regress"):  # the column may cut the name short
        assert re.search(rf"\(reference\)\s*│\s*{baseline}", process.stdout), (
            "credit studies show what a bank would use instead"
        )
    export_dir = tmp_path / "exports" / "cli"
    assert str(export_dir) in process.stdout.replace("\n", "")
    assert verify(export_dir) == 4
    assert len(load_result(path).study.trials) == 2


def test_warm_start_recipes_run_right_after_the_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    hand_recipe = {
        "pruning_ratio": 0.5,
        "pruning_importance": "l2",
        "finetune_epochs": 2,
        "kd_temperature": 2.0,
        "kd_alpha": 0.5,
        "bits": 8,
        "int8_mode": "static",
        "per_channel": False,
    }
    study = tiny_study_dict(tmp_path, n_trials=2, warm_start=[hand_recipe])
    trials = run_study(write_study(tmp_path, study)).study.trials
    assert trials[0].user_attrs["role"] == "teacher"
    assert trials[1].user_attrs["role"] == "warm_start"
    assert trials[1].params == hand_recipe


def test_a_warm_start_that_leaves_fields_to_the_sampler_is_named(tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # the package logger may not propagate (CLI runs)
    full = {"pruning_ratio": 0.5, "pruning_importance": "l2", "finetune_epochs": 2}
    full |= {"kd_temperature": 2.0, "kd_alpha": 0.5, "bits": 32}  # int8 fields inactive
    partial = {k: v for k, v in full.items() if k not in ("kd_alpha", "pruning_importance")}
    logger = logging.getLogger("autocompress")
    logger.addHandler(handler)
    try:
        for recipe in (full, partial):
            load_study_config(write_study(tmp_path, tiny_study_dict(tmp_path, warm_start=[recipe])))
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(messages) == 1, messages  # the full recipe is not named
    assert messages[0].endswith(
        "warm_start[0]: pruning_importance, kd_alpha not given; the sampler chooses them "
        "for this recipe"
    ), messages


@pytest.mark.parametrize(
    ("recipe", "match"),
    [
        ({"bits": 2}, r"warm_start\[0\]\.bits: 2 is not allowed"),
        ({"pruning_ratio": 0.95}, r"warm_start\[0\]\.pruning_ratio: 0.95 is outside the search"),
        ({"layer_keep_ratio": 0.5}, r"warm_start\[0\]\.layer_keep_ratio: not a searched field"),
    ],
)
def test_warm_start_recipes_must_lie_in_the_search_space(
    tmp_path: Path, recipe: dict, match: str
) -> None:
    path = write_study(tmp_path, tiny_study_dict(tmp_path, warm_start=[recipe]))
    with pytest.raises(UserError, match=match):
        load_study_config(path)


def test_progress_lines_are_printed_once_after_the_int4_quantizer_is_imported() -> None:
    """onnxruntime's int4 quantizer calls logging.basicConfig when imported; our lines
    must not then be printed a second time through the root logger."""
    script = (
        "import logging\n"
        "from autocompress.cli.study import log_progress_messages\n"
        "log_progress_messages()\n"
        "import onnxruntime.quantization.matmul_nbits_quantizer\n"
        "logging.getLogger('autocompress').info('trial 3 epoch 1/8: validation score 0.5')\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    output = process.stdout + process.stderr
    assert output.count("trial 3 epoch 1/8") == 1, output
