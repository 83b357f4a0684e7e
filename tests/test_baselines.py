"""The LightGBM baseline: trained on a study's split, one ONNX file over the raw columns.

Real LightGBM, real onnxmltools conversion, real onnxruntime sessions. Parity is row by
row against the booster's own scoring, on frames built to break it: NaN, ±inf, values
beyond float32, unseen categories, empty strings, and numbers sitting exactly on (and
one float32 step above) every split threshold of the trained trees.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from autocompress.baselines.lightgbm import (
    JSON_FILE,
    ONNX_FILE,
    PARITY_ATOL,
    LightGBMBaseline,
    _float32_at_most,
    _thresholds_at_most_float32,
    fit_lightgbm,
)
from autocompress.tasks.data_files import resolve_data_file

CATEGORICAL = ["purpose", "region"]
NUMERIC = ["income", "loan_amount", "age", "balance"]


def session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def synthetic(rows: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Applicants: skewed money columns with gaps, a text category with empty cells, an
    integer-coded region with gaps, and two complete numerics (one of them signed)."""
    rng = np.random.default_rng(seed)
    purposes = np.array(["car", "furniture", "education", "business", "repairs", "holiday"])
    frame = pd.DataFrame(
        {
            "income": rng.lognormal(10.3, 0.8, rows),
            "purpose": rng.choice(purposes, rows, p=[0.3, 0.2, 0.15, 0.15, 0.12, 0.08]),
            "loan_amount": rng.lognormal(8.5, 1.1, rows),
            "region": rng.integers(1, 16, rows).astype("float64"),
            "age": rng.integers(18, 80, rows),
            "balance": rng.normal(0.0, 3000.0, rows),
        }
    )
    risk = (
        -1.0
        + 1.2 * (np.log(frame.loan_amount) - np.log(frame.income) + 1.8)
        - 0.03 * (frame.age - 45)
        - 0.0002 * frame.balance
        + frame.purpose.map({"business": 1.0, "holiday": 0.8, "education": -0.5}).fillna(0.0)
        + np.where(frame.region.isin([3, 7, 11]), 1.0, 0.0)
    )
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-risk))).astype(np.int64)
    frame.loc[rng.random(rows) < 0.10, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "loan_amount"] = np.nan
    frame.loc[rng.random(rows) < 0.06, "region"] = np.nan
    purpose = frame["purpose"].astype(object)
    purpose[rng.random(rows) < 0.05] = ""
    purpose[rng.random(rows) < 0.03] = None
    frame["purpose"] = purpose
    return frame, labels


def three_way(frame: pd.DataFrame, labels: np.ndarray, seed: int = 0):
    """60/20/20 stratified train / valid / test."""
    rest_x, test_x, rest_y, test_y = train_test_split(
        frame, labels, test_size=0.2, stratify=labels, random_state=seed
    )
    train_x, valid_x, train_y, valid_y = train_test_split(
        rest_x, rest_y, test_size=0.25, stratify=rest_y, random_state=seed
    )
    return train_x, train_y, valid_x, valid_y, test_x, test_y


@pytest.fixture(scope="module")
def synthetic_fit() -> tuple[LightGBMBaseline, pd.DataFrame, np.ndarray]:
    train_x, train_y, valid_x, valid_y, test_x, test_y = three_way(*synthetic())
    baseline = fit_lightgbm(train_x, train_y, valid_x, valid_y, CATEGORICAL, seed=0)
    return baseline, test_x, test_y


def split_thresholds(booster: lgb.Booster) -> dict[int, set[float]]:
    """Feature index -> the float64 thresholds of its numeric splits."""
    found: dict[int, set[float]] = {}
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            if node["decision_type"] == "<=":
                found.setdefault(node["split_feature"], set()).add(float(node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    return found


def hard_rows(baseline: LightGBMBaseline, like: pd.DataFrame) -> pd.DataFrame:
    """Rows built to break the conversion, each starting from a real applicant."""
    rng = np.random.default_rng(1)
    base = like.iloc[rng.integers(0, len(like), 4000)].reset_index(drop=True).copy()
    rows = []
    # Every numeric threshold, hit exactly and one float32 step above and below.
    for index, thresholds in split_thresholds(baseline.booster).items():
        column = baseline.features[index]
        for t in sorted(thresholds):
            at = np.float32(_float32_at_most(t))
            for value in (at, np.nextafter(at, np.float32(np.inf)), np.nextafter(at, -np.inf)):
                rows.append({column: float(value)})
    specials = [np.nan, np.inf, -np.inf, 1e39, -1e39, 0.0, -0.0]
    for column in baseline.numeric:
        rows += [{column: v} for v in specials]
    unseen = {"purpose": ["martian", "", None, np.nan, " car", "CAR"], "region": [99, 0, -1, 2.5]}
    for column, values in unseen.items():
        if column in baseline.features:
            rows += [{column: v} for v in values]
    rows.append({c: np.nan for c in baseline.numeric} | {c: "" for c in baseline.categorical})
    assert len(rows) <= len(base)
    kinds = {c: object for c in baseline.categorical} | {c: "float64" for c in baseline.numeric}
    base = base.iloc[: len(rows)].astype(kinds)
    for i, changes in enumerate(rows):
        for column, value in changes.items():
            base.at[i, column] = value
    return base


def test_synthetic_parity_on_hard_rows(synthetic_fit):
    baseline, test_x, _ = synthetic_fit
    tree_modes = {
        mode.decode()
        for node in baseline.onnx_model.graph.node
        if node.op_type == "TreeEnsembleClassifier"
        for attr in node.attribute
        if attr.name == "nodes_modes"
        for mode in attr.strings
    }
    assert "BRANCH_EQ" in tree_modes, "no native categorical split was learned"
    used = {baseline.features[i] for i in split_thresholds(baseline.booster)}
    assert {"income", "loan_amount", "age", "balance"} <= used

    frame = pd.concat([test_x.reset_index(drop=True), hard_rows(baseline, test_x)])
    expected = baseline.predict_proba(frame)
    probabilities, label = session(baseline.onnx_model).run(None, baseline.raw_feeds(frame))
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(frame), 2)
    diff = np.abs(probabilities.astype(np.float64) - expected).max(axis=1)
    assert (diff <= PARITY_ATOL).all(), f"{(diff > PARITY_ATOL).sum()} of {len(frame)} rows"
    np.testing.assert_array_equal(label, (expected[:, 1] >= 0.5).astype(np.int64))
    assert label.dtype == np.int64 and label.shape == (len(frame),)


def test_unseen_and_missing_categories_score_as_lightgbm_does(synthetic_fit):
    """LightGBM's own pandas path (its stored categories, anything else NaN) decides."""
    baseline, test_x, _ = synthetic_fit
    rows = test_x.iloc[:50].reset_index(drop=True)
    variants = {
        "missing": {"purpose": "", "region": np.nan},
        "none": {"purpose": None, "region": None},
        "unseen": {"purpose": "martian", "region": 99.0},
    }
    scores = {}
    for name, cells in variants.items():
        frame = rows.astype({"purpose": object, "region": object}).assign(**cells)
        scores[name] = baseline.predict_proba(frame)[:, 1]
        onnx_bad = session(baseline.onnx_model).run(None, baseline.raw_feeds(frame))[0][:, 1]
        np.testing.assert_allclose(onnx_bad, scores[name], atol=PARITY_ATOL, rtol=0)
        # LightGBM itself: category columns holding whatever the cells hold; it maps
        # them onto the training categories stored in the booster.
        own = pd.DataFrame(
            {
                f"f{i}": (
                    pd.Categorical(frame[c].map(lambda v: "" if v is None else str(v)))
                    if c == "purpose"
                    else pd.Categorical(frame[c].map(lambda v: None if pd.isna(v) else str(int(v))))
                    if c == "region"
                    else frame[c].astype("float32")
                )
                for i, c in enumerate(baseline.features)
            }
        )
        np.testing.assert_array_equal(baseline.booster.predict(own), scores[name])
    np.testing.assert_array_equal(scores["missing"], scores["unseen"])
    np.testing.assert_array_equal(scores["missing"], scores["none"])


def test_thresholds_round_down_to_float32():
    """float32 x <= t exactly when x <= the rounded threshold, for every float32 x."""
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1e4, 2000), rng.lognormal(8, 3, 2000), [1e300, 1e-35]])
    for t in values:
        low = np.float32(_float32_at_most(t))
        assert float(low) <= t
        with np.errstate(over="ignore"):
            above = np.nextafter(low, np.float32(np.inf))
        assert float(above) > t
    assert _float32_at_most(1e300) == float(np.finfo(np.float32).max)
    # Nothing finite lies below -1e300 in float32: -FLT_MAX, off by that one value.
    assert _float32_at_most(-1e300) == -float(np.finfo(np.float32).max)


def test_rounded_booster_scores_float32_inputs_identically(synthetic_fit):
    baseline, test_x, _ = synthetic_fit
    text = baseline.booster.model_to_string()
    rounded = lgb.Booster(model_str=_thresholds_at_most_float32(text))
    assert rounded.pandas_categorical == baseline.booster.pandas_categorical
    frame = hard_rows(baseline, test_x)
    from autocompress.baselines.lightgbm import _booster_frame

    seen = _booster_frame(frame, baseline.features, baseline.categories)
    np.testing.assert_array_equal(rounded.predict(seen), baseline.booster.predict(seen))
    changed = text.count("threshold=") and text != _thresholds_at_most_float32(text)
    assert changed


def test_save_writes_one_onnx_file_and_a_description(synthetic_fit, tmp_path: Path):
    baseline, test_x, _ = synthetic_fit
    names = baseline.save(tmp_path / "lightgbm")
    assert names == [ONNX_FILE, JSON_FILE]
    assert sorted(p.name for p in (tmp_path / "lightgbm").iterdir()) == sorted(names)
    loaded = session(str(tmp_path / "lightgbm" / ONNX_FILE))
    inputs = {i.name: (i.type, i.shape) for i in loaded.get_inputs()}
    assert list(inputs) == list(test_x.columns)
    for column in NUMERIC:
        assert inputs[column][0] == "tensor(float)" and inputs[column][1][1] == 1
    for column in CATEGORICAL:
        assert inputs[column][0] == "tensor(string)" and inputs[column][1][1] == 1
    assert [o.name for o in loaded.get_outputs()] == ["probabilities", "label"]
    got = loaded.run(["probabilities"], baseline.raw_feeds(test_x))[0]
    np.testing.assert_allclose(got, baseline.predict_proba(test_x), atol=PARITY_ATOL, rtol=0)

    about = json.loads((tmp_path / "lightgbm" / JSON_FILE).read_text())
    assert about["best_iteration"] == baseline.best_iteration == baseline.num_trees
    assert about["params"]["learning_rate"] == 0.05 and about["params"]["deterministic"]
    assert about["categorical"]["handling"] == "lightgbm-native"
    assert about["categorical"]["categories"]["region"][:3] == ["1", "10", "11"]
    assert set(about["versions"]) == {"lightgbm", "onnxmltools", "onnx"}
    assert "age" in about["numeric"]["nan_as_zero"]  # no gaps in training: NaN scores as 0
    assert about["parity_max_abs_diff_valid"] <= PARITY_ATOL


def test_german_credit_baseline():
    frame = pd.read_csv(resolve_data_file("embedded:germancredit"))
    labels = (frame.pop("creditability") == "bad").astype(np.int64).to_numpy()
    categorical = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    assert len(categorical) == 13 and len(frame.columns) == 20
    train_x, train_y, valid_x, valid_y, test_x, test_y = three_way(frame, labels)
    baseline = fit_lightgbm(train_x, train_y, valid_x, valid_y, categorical, seed=0)
    assert 0 < baseline.best_iteration <= 1000 and baseline.train_seconds > 0

    expected = baseline.predict_proba(test_x)
    assert roc_auc_score(test_y, expected[:, 1]) > 0.7

    numeric = [c for c in frame.columns if c not in categorical]
    kinds = {c: object for c in categorical} | {c: "float64" for c in numeric}
    mangled = test_x.reset_index(drop=True).astype(kinds)
    mangled.loc[0:40, categorical[0]] = "never seen"
    mangled.loc[20:60, categorical[1]] = ""
    mangled.loc[50:90, "credit_amount"] = np.nan
    mangled.loc[80:100, "duration_in_month"] = np.inf
    mangled.loc[95:110, "age_in_years"] = -np.inf
    for rows in (test_x, mangled):
        probabilities = session(baseline.onnx_model).run(None, baseline.raw_feeds(rows))[0]
        np.testing.assert_allclose(
            probabilities, baseline.predict_proba(rows), atol=PARITY_ATOL, rtol=0
        )

    again = fit_lightgbm(train_x, train_y, valid_x, valid_y, categorical, seed=0)
    assert again.booster.model_to_string() == baseline.booster.model_to_string()
    assert again.onnx_model.SerializeToString() == baseline.onnx_model.SerializeToString()


def test_columns_with_nothing_to_learn_give_single_leaf_trees(tmp_path: Path):
    frame, labels = synthetic(rows=400)
    frame = frame.assign(income=1000.0, purpose="car", region=7, age=30)
    frame = frame.assign(loan_amount=np.nan, balance=0.0)
    train_x, train_y, valid_x, valid_y, test_x, _ = three_way(frame, labels)
    baseline = fit_lightgbm(train_x, train_y, valid_x, valid_y, CATEGORICAL)
    assert baseline.num_trees == baseline.best_iteration == 1
    assert "threshold=\n" in baseline.booster.model_to_string()
    got = session(baseline.onnx_model).run(None, baseline.raw_feeds(test_x))[0]
    np.testing.assert_allclose(got, baseline.predict_proba(test_x), atol=PARITY_ATOL, rtol=0)
    np.testing.assert_allclose(got[:, 1], train_y.mean(), atol=1e-6)
    assert baseline.save(tmp_path) == [ONNX_FILE, JSON_FILE]


def test_params_by_alias_override_the_defaults():
    frame, labels = synthetic(rows=400)
    train_x, train_y, valid_x, valid_y, _, _ = three_way(frame, labels)
    params = {"min_child_samples": 50, "colsample_bytree": 0.5, "metric": "binary_logloss"}
    baseline = fit_lightgbm(
        train_x, train_y, valid_x, valid_y, CATEGORICAL, seed=3, threads=2, params=params
    )
    used = baseline.params
    assert used["min_data_in_leaf"] == 50 and used["feature_fraction"] == 0.5
    assert "min_child_samples" not in used and "colsample_bytree" not in used
    assert used["metric"] == "auc" and used["seed"] == 3 and used["num_threads"] == 2
    text = baseline.booster.model_to_string()
    assert "[min_data_in_leaf: 50]" in text and "[feature_fraction: 0.5]" in text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"params": {"objective": "regression"}}, "objective"),
        ({"params": {"zero_as_missing": True}}, "zero_as_missing"),
        ({"categorical": ["purpose", "nope"]}, "nope"),
        ({"train_inf": True}, "infinite"),
        ({"empty_region": True}, "'region' is empty"),
        ({"params": {"min_child_samples": 5, "min_data": 9}}, "twice"),
    ],
)
def test_refusals(change: dict, words: str):
    frame, labels = synthetic(rows=400)
    train_x, train_y, valid_x, valid_y, _, _ = three_way(frame, labels)
    if change.pop("train_inf", False):
        train_x = train_x.copy()
        train_x.iloc[3, train_x.columns.get_loc("income")] = np.inf
    if change.pop("empty_region", False):
        train_x = train_x.assign(region=np.nan)
    arguments = {"categorical": CATEGORICAL, **change}
    with pytest.raises(ValueError, match=words):
        fit_lightgbm(train_x, train_y, valid_x, valid_y, **arguments)
