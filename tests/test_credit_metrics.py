"""Credit scores (ranking, calibration, the decision threshold) as first-class metrics:
hand-computed cases and sklearn agree with `credit_metrics` and `choose_threshold`; the
constraint table, the policies and the one-class check say what they do.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score
from typer.testing import CliRunner

from autocompress.changes import drops_and_constraints
from autocompress.cli import app
from autocompress.cli._common import console
from autocompress.cli.study import print_front
from autocompress.config import (
    CONSTRAINT_LIMITS,
    ConstraintsConfig,
    StudyConfig,
    load_study_config,
)
from autocompress.dashboard import constraint_label, infeasible_reason
from autocompress.errors import UserError
from autocompress.front import FrontMember
from autocompress.nightly import Contender, decide
from autocompress.policies import (
    BEST_METRICS,
    Best,
    ExplicitTrial,
    Fastest,
    parse_policy,
    policy_choices,
)
from autocompress.search import check_metrics_defined, directions
from autocompress.select import choose
from autocompress.tasks.metrics import (
    choose_threshold,
    classification_metrics,
    credit_metrics,
    expected_calibration_error,
    ks_statistic,
)
from tests.conftest import tiny_study_dict, write_study

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Four applicants: two bad (label 1) scored 0.4 and 0.35, two good scored 0.1 and 0.8.
P_BAD = np.array([0.1, 0.4, 0.35, 0.8])
LABELS = np.array([0, 1, 1, 0])


def random_scores(rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.3).astype(int)
    p_bad = np.clip(0.3 * labels + rng.random(rows) * 0.7, 0.0, 1.0)
    return p_bad, labels


# -- metrics -------------------------------------------------------------------------------
def test_credit_metrics_by_hand() -> None:
    m = credit_metrics(P_BAD, LABELS, threshold=0.35)
    # At 0.5 only 0.8 (good) is flagged: 1 of 4 right; bad-class F1 0; good-class F1
    # P 1/3 R 1/2 -> 0.4; macro 0.2.
    assert m["accuracy"] == pytest.approx(0.25)
    assert m["f1_positive"] == 0.0
    assert m["f1_macro"] == pytest.approx(0.2)
    assert m["f1"] == m["f1_macro"]
    # At 0.35 three are flagged (0.35, 0.4, 0.8): bad F1 2·2/(4+1) = 0.8, good F1 2/3.
    assert m["threshold"] == 0.35
    assert m["accuracy_at_threshold"] == pytest.approx(0.75)
    assert m["f1_at_threshold"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["positive_rate_at_threshold"] == pytest.approx(0.75)
    # Bad above good in 2 of 4 pairs; KS: at 0.35 TPR 1, FPR 1/2.
    assert m["roc_auc"] == pytest.approx(0.5)
    assert m["gini"] == pytest.approx(0.0)
    assert m["ks"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.1**2 + 0.6**2 + 0.65**2 + 0.8**2) / 4)
    # One row per bin: |y - p| averaged.
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.65 + 0.8) / 4)
    assert set(m) == {
        "accuracy",
        "f1_macro",
        "f1_positive",
        "f1",
        "accuracy_at_threshold",
        "f1_at_threshold",
        "threshold",
        "positive_rate_at_threshold",
        "roc_auc",
        "gini",
        "ks",
        "brier",
        "ece",
    }


def test_credit_metrics_agree_with_sklearn_and_scipy() -> None:
    p_bad, labels = random_scores()
    m = credit_metrics(p_bad, labels, threshold=0.3, f1_average="positive")
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, p_bad))
    assert m["gini"] == pytest.approx(2 * roc_auc_score(labels, p_bad) - 1)
    assert m["ks"] == pytest.approx(ks_2samp(p_bad[labels == 1], p_bad[labels == 0]).statistic)
    assert m["brier"] == pytest.approx(brier_score_loss(labels, p_bad))
    at_half, at_threshold = (p_bad >= 0.5).astype(int), (p_bad >= 0.3).astype(int)
    assert m["f1"] == m["f1_positive"] == pytest.approx(f1_score(labels, at_half))
    assert m["f1_macro"] == pytest.approx(f1_score(labels, at_half, average="macro"))
    assert m["f1_at_threshold"] == pytest.approx(f1_score(labels, at_threshold))
    assert m["accuracy_at_threshold"] == pytest.approx(np.mean(at_threshold == labels))


def test_ece_uses_ten_equal_width_bins() -> None:
    # Bin [0.1, 0.2): mean p 0.15, bad rate 0.5 (2 rows); bin [0.9, 1.0] holds 0.9 and 1.0.
    p_bad = np.array([0.12, 0.18, 0.9, 1.0])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(p_bad, labels) == pytest.approx(
        (2 * 0.35 + 2 * abs(1 - 0.95)) / 4
    )
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0


def test_ranking_scores_are_nan_with_one_class() -> None:
    m = credit_metrics(np.array([0.1, 0.7, 0.2]), np.array([0, 0, 0]), threshold=0.5)
    assert all(math.isnan(m[k]) for k in ("roc_auc", "gini", "ks"))
    assert m["brier"] == pytest.approx((0.01 + 0.49 + 0.04) / 3)
    assert math.isfinite(m["ece"])
    assert math.isnan(ks_statistic(np.array([0.3]), np.array([1])))


def test_multiclass_roc_auc_is_one_vs_rest_over_present_classes() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(60, 3))
    labels = rng.integers(0, 3, 60)
    full = classification_metrics(logits, labels)["roc_auc"]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert full == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))
    two = np.where(labels == 2, 0, labels)  # class 2 absent: defined over classes 0 and 1
    expected = np.mean([roc_auc_score(two == c, probabilities[:, c]) for c in (0, 1)])
    assert classification_metrics(logits, two)["roc_auc"] == pytest.approx(expected)
    assert math.isnan(classification_metrics(logits, np.zeros(60, dtype=int))["roc_auc"])


# -- the decision threshold ----------------------------------------------------------------
def test_max_f1_threshold_by_hand_and_ties_go_high() -> None:
    # F1 of the bad class: 0.1 -> 2/3, 0.35 -> 0.8, 0.4 -> 0.5, 0.8 -> 0.
    assert choose_threshold(P_BAD, LABELS, "max_f1", None) == 0.35
    # 0.1 and 0.7 both give F1 2/3 (all flagged: P 1/2 R 1; only 0.7: P 1 R 1/2).
    tied = choose_threshold(np.array([0.1, 0.3, 0.5, 0.7]), np.array([1, 0, 0, 1]), "max_f1", None)
    assert tied == 0.7


def test_max_f1_threshold_matches_brute_force_and_ignores_row_order() -> None:
    p_bad, labels = random_scores(seed=3)
    scores = {t: f1_score(labels, (p_bad >= t).astype(int)) for t in np.unique(p_bad)}
    best = max(scores.values())
    expected = max(t for t, s in scores.items() if math.isclose(s, best, abs_tol=1e-12))
    assert choose_threshold(p_bad, labels, "max_f1", None) == pytest.approx(expected)
    order = np.random.default_rng(4).permutation(len(p_bad))
    assert choose_threshold(p_bad[order], labels[order], "max_f1", None) == pytest.approx(expected)


def test_rate_rules_flag_at_most_the_share_with_the_smallest_threshold() -> None:
    p_bad = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    labels = np.zeros(5, dtype=int)
    t = choose_threshold(p_bad, labels, "bad_rate", 0.4)
    assert (p_bad >= t).sum() == 2 and 0.3 < t <= 0.4
    assert (p_bad >= np.nextafter(t, -np.inf)).sum() == 3  # any lower flags a third row
    assert choose_threshold(p_bad, labels, "approval_rate", 0.6) == t
    # Ties at the cut: flagging one of three equal scores is impossible, so none is.
    tied = np.array([0.5, 0.5, 0.5, 0.1])
    assert (tied >= choose_threshold(tied, np.zeros(4, dtype=int), "bad_rate", 0.5)).sum() == 0
    # float32 probabilities: the threshold holds in float32 too (as a graph compares it).
    p32 = np.array([0.1, 0.2, 0.3, 0.4, 0.5], dtype=np.float32)
    t32 = choose_threshold(p32, labels, "bad_rate", 0.4)
    assert (p32 >= np.float32(t32)).sum() == 2
    # 0.57 · 100 is 56.999... in floating point: still 57 rows.
    many = np.linspace(0.0, 1.0, 100)
    assert (many >= choose_threshold(many, np.zeros(100), "bad_rate", 0.57)).sum() == 57


def test_fixed_rule_and_refusals() -> None:
    assert choose_threshold(P_BAD, LABELS, "fixed", 0.23) == 0.23
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold(P_BAD, LABELS, "median", None)
    with pytest.raises(UserError, match="max_f1 needs at least one bad"):
        choose_threshold(P_BAD, np.zeros(4, dtype=int), "max_f1", None)


# -- objectives and constraints ------------------------------------------------------------
def test_directions_of_the_new_objectives() -> None:
    metrics = ["gini", "ks", "brier", "ece", "roc_auc"]
    assert directions(metrics) == ["maximize", "maximize", "minimize", "minimize", "maximize"]


TEACHER = {
    "accuracy": 0.80,
    "f1": 0.70,
    "roc_auc": 0.85,
    "gini": 0.70,
    "ks": 0.55,
    "brier": 0.15,
    "ece": 0.03,
    "threshold": 0.4,
}
STUDENT = {
    "accuracy": 0.79,
    "f1": 0.70,
    "roc_auc": 0.83,
    "gini": 0.66,
    "ks": 0.56,
    "brier": 0.16,
    "ece": 0.02,
    "threshold": 0.45,
}


def test_one_table_of_limits_covers_every_constraint_key() -> None:
    assert set(CONSTRAINT_LIMITS) == set(ConstraintsConfig.model_fields) - {"confidence"}
    limits = ConstraintsConfig(max_roc_auc_drop=0.01, max_brier_increase=0.02)
    assert [key for key, *_ in limits.limits()] == [
        "max_accuracy_drop",
        "max_roc_auc_drop",
        "max_brier_increase",
    ]


def test_drops_and_constraints_for_every_shared_score() -> None:
    limits = ConstraintsConfig(
        max_accuracy_drop=0.02, max_roc_auc_drop=0.01, max_ks_drop=0.0, max_brier_increase=0.02
    )
    drops, constraints = drops_and_constraints(limits, TEACHER, STUDENT)
    assert drops == pytest.approx(
        {
            "accuracy_drop": 0.01,
            "f1_drop": 0.0,
            "roc_auc_drop": 0.02,
            "gini_drop": 0.04,
            "ks_drop": -0.01,
            "brier_increase": 0.01,
            "ece_increase": -0.01,
        }
    )  # no threshold "drop": it is a setting, not a score
    assert constraints == pytest.approx(
        {
            "accuracy_drop": -0.01,
            "roc_auc_drop": 0.01,  # over its limit: infeasible
            "ks_drop": -0.01,
            "brier_increase": -0.01,
        }
    )
    assert infeasible_reason(constraints) == "roc_auc drop over its limit"
    assert infeasible_reason({"brier_increase": 0.1, "f1_drop": 0.2}) == (
        "brier increase and f1 drop over their limits"
    )
    assert constraint_label("ece_increase") == "ece increase − limit"


def test_text_scores_keep_their_drops_and_a_missing_limited_score_is_named() -> None:
    text = {"accuracy": 0.9, "f1": 0.8, "f1_macro": 0.8, "roc_auc": 0.95}
    drops, constraints = drops_and_constraints(ConstraintsConfig(), text, text)
    assert drops == {"accuracy_drop": 0.0, "f1_drop": 0.0, "f1_macro_drop": 0.0, "roc_auc_drop": 0}
    assert constraints == {"accuracy_drop": -0.02}
    with pytest.raises(UserError, match="constraints.max_ks_drop: the task reports no ks score"):
        drops_and_constraints(ConstraintsConfig(max_ks_drop=0.01), text, text)


def test_constraint_stop_message_names_every_limit(tmp_path: Path) -> None:
    study = tiny_study_dict(
        tmp_path, constraints={"max_accuracy_drop": None}, cost_control={"constraint_stop": True}
    )
    with pytest.raises(UserError) as raised:
        load_study_config(write_study(tmp_path, study))
    for key in CONSTRAINT_LIMITS:
        assert key in str(raised.value)
    study["constraints"] = {"max_accuracy_drop": None, "max_gini_drop": 0.02}
    assert load_study_config(write_study(tmp_path, study)).config.cost_control.constraint_stop


def test_new_limits_change_the_study_identity_only_when_set(tmp_path: Path) -> None:
    plain = load_study_config(write_study(tmp_path, tiny_study_dict(tmp_path))).config
    limited = tiny_study_dict(tmp_path, constraints={"max_accuracy_drop": 0.05, "max_ks_drop": 0.1})
    assert plain.identity_hash() != (
        load_study_config(write_study(tmp_path, limited)).config.identity_hash()
    )
    explicit = tiny_study_dict(
        tmp_path, constraints={"max_accuracy_drop": 0.05, "max_ks_drop": None}
    )
    assert plain.identity_hash() == (
        load_study_config(write_study(tmp_path, explicit)).config.identity_hash()
    )


def text_config(**overrides: Any) -> StudyConfig:
    raw = {
        "study_name": "text",
        "search_space": {"bits": 8},
        "task": {"kind": "text", "data": {"path": "phrases.csv"}},
        **overrides,
    }
    return StudyConfig.model_validate(raw)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"objectives": {"metrics": ["gini", "latency_p50_ms"]}}, "objectives.metrics: gini"),
        ({"constraints": {"max_brier_increase": 0.01}}, "constraints.max_brier_increase"),
        ({"export": {"policy": "best:ks"}}, "export.policy: best:ks"),
    ],
)
def test_credit_only_scores_are_refused_for_text_studies(overrides: dict, key: str) -> None:
    from autocompress.config import _check_consistency

    with pytest.raises(UserError, match=re.escape(f"study.yaml: {key}: ")) as raised:
        _check_consistency(text_config(**overrides), Path("study.yaml"))
    assert "only credit tasks report" in str(raised.value)
    _check_consistency(text_config(objectives={"metrics": ["roc_auc"]}), Path("study.yaml"))


# -- scores undefined on a split -----------------------------------------------------------
def test_check_metrics_defined_names_key_split_and_remedy(tmp_path: Path) -> None:
    study = tiny_study_dict(tmp_path, constraints={"max_roc_auc_drop": 0.02})
    config = load_study_config(write_study(tmp_path, study)).config
    both = np.array([0, 1, 0])
    check_metrics_defined(config, {"valid": both, "test": both})
    with pytest.raises(UserError) as raised:
        check_metrics_defined(config, {"valid": np.zeros(7, dtype=int), "test": both})
    assert str(raised.value) == (
        f"{tmp_path / 'study.yaml'}: constraints.max_roc_auc_drop needs both classes in the "
        "validation split; it has only class 0 (7 rows); use a larger task.data.valid_size "
        "or drop the constraint"
    )
    study = tiny_study_dict(tmp_path, objectives={"metrics": ["ks", "latency_p50_ms"]})
    config = load_study_config(write_study(tmp_path, study)).config
    with pytest.raises(UserError, match=r"objectives.metrics: ks needs both classes in the test"):
        check_metrics_defined(config, {"valid": both, "test": np.ones(4, dtype=int)})
    # Accuracy and Brier are defined on one class, but a one-class split cannot compare
    # students with the teacher (nor give intervals): refused, naming the split's size.
    study = tiny_study_dict(
        tmp_path, objectives={"metrics": ["accuracy", "brier"]}, export={"policy": "best:brier"}
    )
    config = load_study_config(write_study(tmp_path, study)).config
    with pytest.raises(UserError) as raised:
        check_metrics_defined(config, {"valid": both, "test": np.zeros(3, dtype=int)})
    assert str(raised.value) == (
        f"{tmp_path / 'study.yaml'}: task.data.test_size: the test split has only class 0 "
        "(3 rows); students are compared with the teacher on it, which needs both classes; "
        "use a larger task.data.test_size (or more rows)"
    )


def test_check_metrics_defined_for_policies_and_multiclass_text() -> None:
    config = text_config(export={"policy": "best:roc_auc"}, objectives={"metrics": ["f1"]})
    check_metrics_defined(config, {"valid": np.array([0, 2]), "test": np.array([1, 2, 2])})
    with pytest.raises(UserError) as raised:
        check_metrics_defined(config, {"valid": np.array([0, 2]), "test": np.array([2, 2])})
    assert str(raised.value) == (
        "export.policy: best:roc_auc needs at least two classes in the test split; it has "
        "only class 2 (2 rows); use a larger task.data.test_size or pick another policy"
    )


# -- policies ------------------------------------------------------------------------------
def test_parse_policy() -> None:
    assert isinstance(parse_policy("fastest"), Fastest) and parse_policy("fastest").selects_fastest
    accurate = parse_policy("most_accurate")
    assert isinstance(accurate, Best) and not accurate.selects_fastest
    assert (accurate.name, accurate.metric, accurate.direction) == (
        "most_accurate",
        "accuracy",
        "maximize",
    )
    assert parse_policy("best:brier").direction == "minimize"
    assert parse_policy("best:gini").direction == "maximize"
    named = parse_policy("trial:12")
    assert isinstance(named, ExplicitTrial) and named.number == 12 and not named.ranks
    with pytest.raises(UserError, match="nightly runs need a ranking policy"):
        parse_policy("trial:12", "export.policy", ranking=True)
    assert BEST_METRICS == ("accuracy", "f1", "roc_auc", "gini", "ks", "brier", "ece")
    for bad in ("best:nonsense", "best:latency_p50_ms", "best:", "trial:x", "slowest"):
        with pytest.raises(UserError, match="is not allowed; allowed values: fastest"):
            parse_policy(bad)
    with pytest.raises(UserError, match="for latency use fastest"):
        parse_policy("best:size_bytes")


def member(number: int, p50: float, noisy: bool = False, **scores: float) -> FrontMember:
    metrics = {"accuracy": 0.7, "latency_p50_ms": p50, "latency_noisy": noisy, **scores}
    return FrontMember(trial_number=number, params={}, metrics=metrics)


def test_best_roc_auc_picks_the_highest_auc_ties_by_lower_p50() -> None:
    front = [
        member(1, 0.30, roc_auc=0.80),
        member(2, 0.20, roc_auc=0.84),
        member(3, 0.10, roc_auc=0.84),
        member(4, 0.05, roc_auc=float("nan")),
    ]
    assert choose(front, "best:roc_auc").member.trial_number == 3
    assert choose(front, "best:roc_auc", latency_budget_ms=0.15).member.trial_number == 3
    with pytest.raises(UserError, match="no front trial within the budget has a roc_auc score"):
        choose(front, "best:roc_auc", latency_budget_ms=0.08)
    with pytest.raises(UserError, match="latency_budget_ms: no front trial runs within 0.01"):
        choose(front, "best:roc_auc", latency_budget_ms=0.01)
    noisy = [*front[:2], member(5, 0.25, noisy=True, roc_auc=0.9)]
    selection = choose(noisy, "best:roc_auc", latency_budget_ms=0.26)
    assert selection.member.trial_number == 5 and "noisy latency" in (selection.warning or "")


def test_best_brier_picks_the_lowest_and_most_accurate_is_best_accuracy() -> None:
    front = [
        member(1, 0.30, brier=0.14, accuracy=0.70),
        member(2, 0.20, brier=0.12, accuracy=0.75),
        member(3, 0.10, brier=0.18, accuracy=0.75),
    ]
    assert choose(front, "best:brier").member.trial_number == 2
    assert choose(front, "best:brier", latency_budget_ms=0.15).member.trial_number == 3
    assert choose(front, "most_accurate").member.trial_number == 3  # tie: lower p50
    assert choose(front, "best:accuracy").member.trial_number == 3
    assert choose(front, "fastest").member.trial_number == 3


def test_an_empty_front_names_every_limit() -> None:
    with pytest.raises(UserError) as raised:
        choose([], "best:ks")
    for key in CONSTRAINT_LIMITS:
        assert f"constraints.{key}" in str(raised.value)


@pytest.mark.parametrize("policy", ["best:nonsense", "best:latency_p50_ms"])
def test_study_file_with_a_bad_policy_exits_2(
    policy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, tiny_study_dict(tmp_path, export={"policy": policy}))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    message = ANSI.sub("", result.stderr).replace("\n", " ")
    assert f"{path}: export.policy: {policy!r} is not allowed; allowed values:" in message
    assert policy_choices() in re.sub(r"\s+", " ", message)
    assert not (tmp_path / "study.db").exists()


# -- nightly -------------------------------------------------------------------------------
def contender(p50: float, **scores: float) -> Contender:
    return Contender("x", {"accuracy": 0.75, **scores}, True, [p50] * 3)


@pytest.mark.parametrize(
    ("policy", "challenger", "champion", "replace", "why"),
    [
        (
            "best:roc_auc",
            contender(1.0, roc_auc=0.81),
            contender(0.5, roc_auc=0.80),
            True,
            "higher",
        ),
        (
            "best:roc_auc",
            contender(1.0, roc_auc=0.804),
            contender(1.0, roc_auc=0.80),
            False,
            "1/200",
        ),
        ("best:brier", contender(1.0, brier=0.12), contender(1.0, brier=0.13), True, "lower by"),
        ("best:brier", contender(1.0, brier=0.14), contender(1.0, brier=0.13), False, "not lower"),
        ("best:ks", contender(1.0, ks=float("nan")), contender(1.0, ks=0.3), False, "undefined"),
        ("best:accuracy", contender(1.0, accuracy=0.755), contender(1.0), True, "+1 of 200"),
    ],
)
def test_nightly_best_metric_decides_by_its_direction_beyond_one_row(
    policy: str, challenger: Contender, champion: Contender, replace: bool, why: str
) -> None:
    decision = decide(policy, challenger, champion, n_rows=200)
    assert decision.replace is replace and why in decision.reason
    with pytest.raises(UserError, match="nightly runs need a ranking policy"):
        decide("trial:3", challenger, champion, n_rows=200)
    over = decide(policy, challenger, champion, n_rows=200, latency_budget_ms=0.5)
    assert not over.replace and "budget" in over.reason


# -- front rows and the table --------------------------------------------------------------
def test_front_member_carries_every_change_versus_the_teacher() -> None:
    trial = optuna.trial.create_trial(
        values=[0.8],
        distributions={},
        params={},
        user_attrs={
            "metrics": {"accuracy": 0.8, "roc_auc": 0.84},
            "measurement": {"latency_p50_ms": 0.1},
            "accuracy_drop": 0.01,
            "f1_drop": 0.0,
            "roc_auc_drop": 0.02,
            "brier_increase": 0.003,
        },
    )
    metrics = FrontMember.from_trial(trial).metrics
    assert metrics["roc_auc_drop"] == 0.02 and metrics["brier_increase"] == 0.003
    assert metrics["accuracy_drop"] == 0.01
    old = optuna.trial.create_trial(values=[0.8], user_attrs={"metrics": {}, "measurement": {}})
    assert FrontMember.from_trial(old).metrics["f1_drop"] is None  # stored before: None as ever


def row(number: int, **scores: float) -> FrontMember:
    metrics = {
        "accuracy": 0.75,
        "f1": 0.7,
        "latency_p50_ms": 0.1 * number,
        "latency_p90_ms": 0.2 * number,
        "size_bytes": 2048,
        "num_parameters": 100,
        "recipe": "r",
        **scores,
    }
    return FrontMember(trial_number=number, params={}, metrics=metrics)


def printed(members: list[FrontMember]) -> str:
    with console.capture() as captured:
        print_front(members, None, "front")
    return captured.get()


def test_front_table_shows_auc_ks_brier_and_threshold_for_credit_studies() -> None:
    credit = [row(1, roc_auc=0.81, ks=0.45, brier=0.16, threshold=0.37), row(2, roc_auc=0.8)]
    table = printed(credit)
    for heading in ("AUC", "KS", "Brier", "threshold", "0.4500", "0.1600", "0.3700"):
        assert heading in table
    assert "—" in table  # trial 2 stored no KS
    text = printed([row(1, roc_auc=0.93)])
    assert "roc_auc" in text and "0.9300" in text and "Brier" not in text and "KS" not in text
