"""LightGBM reference model for credit studies: trained on the study's split, one ONNX file.

Banks already run gradient-boosted trees, so a credit study shows what LightGBM reaches
on the same split and the same target next to the compressed MLPs. `fit_lightgbm`
trains it (early stopping on the validation AUC), converts it with onnxmltools and puts
a raw-input front before the trees, so the ONNX file takes the applicant columns exactly
as our own exported graph does:

* one input per feature column, named as the column, shape [batch, 1];
* numeric columns float32, NaN = missing (±inf allowed);
* categorical columns strings: `category_name(value, "")`, "" = missing.

Outputs: "probabilities" [batch, 2] float32 = [P(good), P(bad)], then "label" [batch]
int64 = P(bad) >= 0.5.

How the graph stays equal to LightGBM's own scoring, row by row:

* Categoricals use LightGBM's native categorical splits. The booster is trained on a
  pandas `category` column (categories: the training split's, sorted), so LightGBM
  itself maps cells to codes when scoring, and an unseen or missing category becomes
  NaN, which every categorical split sends right. onnxmltools unfolds each split's
  category set into a chain of BRANCH_EQ nodes; the front maps strings to the same codes
  with an ai.onnx.ml LabelEncoder and anything else to -1, which equals no category, so
  it goes right too.
* LightGBM compares a float64 value with a float64 threshold; ONNX trees compare float32
  with float32. For float32 inputs `x <= t` holds exactly when `x <= t32`, with t32 the
  largest float32 not above t, so the converted copy of the booster has every numeric
  threshold rounded down to float32 that way (rounding to nearest would flip values that
  sit between t and its nearest float32). The booster itself scores the same float32
  values (`predict_proba` casts numerics to float32, and training does too), so the
  booster and the graph see the same numbers. ±inf needs nothing special: it compares
  like any value, and thresholds beyond float32 (LightGBM's ±1e300) round to ±FLT_MAX.
* A column that had no missing values in training has LightGBM's missing type "None":
  LightGBM scores NaN there as 0.0. The front does the same (IsNaN → 0) for those
  columns; columns with missing type "NaN" pass NaN on to the trees, which follow
  LightGBM's default directions.

`fit_lightgbm` checks the ONNX graph against the booster on the validation split before
returning (max difference recorded in `parity_max_abs_diff`).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper

from autocompress.atomic import write_atomically
from autocompress.tasks.preprocessing import category_name, raw_column_feeds

FORMAT = "autocompress.lightgbm-baseline/1"
ONNX_FILE = "model.onnx"
JSON_FILE = "baseline.json"
PROBABILITIES = "probabilities"
LABEL = "label"
MISSING = ""  # a missing categorical cell in the raw feeds
LABEL_THRESHOLD = 0.5
PARITY_ATOL = 1e-5
# onnxmltools 1.16's LightGBM converter refuses target_opset above 15; it emits the
# lowest opsets its operators need (ai.onnx 9, ai.onnx.ml 1) and the front uses those.
CONVERTER_TARGET_OPSET = 15

NUM_BOOST_ROUND = 1000
# German credit's 200 validation rows: its AUC is noisy, 50 rounds stopped at 3 trees once.
EARLY_STOPPING_ROUNDS = 100
# What a credit data scientist starts from: small learning rate, many rounds with early
# stopping on the validation AUC, row and column subsampling, a little L2.
# LightGBM's canonical names, so a `params` override replaces them rather than aliasing.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "auc",
    "boosting": "gbdt",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "max_depth": -1,
    "min_data_in_leaf": 20,
    "min_sum_hessian_in_leaf": 1e-3,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "max_cat_to_onehot": 4,
    "min_data_per_group": 20,  # LightGBM's 100 keeps small studies from splitting categories
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "verbosity": -1,
    "deterministic": True,
    "force_col_wise": True,
}
# Settings the conversion cannot carry faithfully (or that are not this baseline).
_REFUSED = {
    "objective": lambda v: not str(v).startswith("binary"),
    "boosting": lambda v: v != "gbdt",
    "linear_tree": bool,
    "zero_as_missing": bool,
}
_CATEGORICAL_MASK = 1  # LightGBM decision_type bit 0: categorical split


@dataclass
class LightGBMBaseline:
    """A trained LightGBM model and its ONNX graph over the raw applicant columns."""

    booster: lgb.Booster
    onnx_model: onnx.ModelProto
    features: list[str]  # raw columns, in the booster's feature order
    categories: dict[str, list[str]]  # categorical column -> training categories (code order)
    params: dict[str, Any]
    best_iteration: int
    train_seconds: float
    convert_seconds: float = 0.0
    nan_as_zero: list[str] = field(default_factory=list)  # LightGBM missing type "None"
    parity_max_abs_diff: float | None = None  # ONNX vs booster on the validation split

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.features if c in self.categories]

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.features if c not in self.categories]

    @property
    def num_trees(self) -> int:
        return int(self.booster.num_trees())

    # -- scoring ------------------------------------------------------------------------
    def raw_feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The ONNX inputs for `frame`: float32 [n, 1] per numeric column, str [n, 1] per
        categorical one ("" for an empty cell)."""
        _require_columns(frame, self.features)
        return raw_column_feeds(frame, self.features, set(self.categories))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """[P(good), P(bad)] per row, scored by the booster itself (float64) on the same
        float32 values and category codes the ONNX graph receives."""
        _require_columns(frame, self.features)
        bad = self.booster.predict(
            _booster_frame(frame, self.features, self.categories),
            num_threads=int(self.params.get("num_threads", 1)),
        )
        bad = np.asarray(bad, dtype=np.float64)
        return np.column_stack([1.0 - bad, bad])

    # -- files --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The JSON written next to the ONNX file (plain data, no pickle)."""
        import onnxmltools

        gains = self.booster.feature_importance(importance_type="gain")
        splits = self.booster.feature_importance(importance_type="split")
        return {
            "format": FORMAT,
            "model": "lightgbm",
            "onnx_file": ONNX_FILE,
            "params": self.params,
            "num_boost_round": NUM_BOOST_ROUND,
            "early_stopping": {
                "rounds": EARLY_STOPPING_ROUNDS,
                "metric": "auc",
                "split": "valid",
            },
            "best_iteration": self.best_iteration,
            "num_trees": self.num_trees,
            "train_seconds": round(self.train_seconds, 4),
            "convert_seconds": round(self.convert_seconds, 4),
            "features": self.features,
            "numeric": {
                "columns": self.numeric,
                "dtype": "float32",
                "missing": "NaN",
                "nan_as_zero": self.nan_as_zero,
                "thresholds": "largest float32 <= LightGBM's float64 threshold",
            },
            "categorical": {
                "handling": "lightgbm-native",
                "encoding": "ai.onnx.ml LabelEncoder: training category -> its index, "
                "anything else (unseen, empty) -> -1",
                "missing": MISSING,
                "categories": self.categories,
            },
            "outputs": {
                PROBABILITIES: "[P(good), P(bad)] float32",
                LABEL: f"int64, 1 when P(bad) >= {LABEL_THRESHOLD}",
            },
            "opsets": {o.domain or "ai.onnx": o.version for o in self.onnx_model.opset_import},
            "parity_max_abs_diff_valid": self.parity_max_abs_diff,
            "feature_importance": {
                c: {"gain": float(g), "splits": int(s)}
                for c, g, s in zip(self.features, gains, splits, strict=True)
            },
            "versions": {
                "lightgbm": lgb.__version__,
                "onnxmltools": onnxmltools.__version__,
                "onnx": onnx.__version__,
            },
        }

    def save(self, folder: Path) -> list[str]:
        """Write `model.onnx` and `baseline.json` into `folder`; return their names."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / ONNX_FILE, self.onnx_model.SerializeToString())
        text = json.dumps(self.describe(), indent=2, allow_nan=False, default=_plain) + "\n"
        write_atomically(folder / JSON_FILE, text.encode())
        return [ONNX_FILE, JSON_FILE]


def fit_lightgbm(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    categorical: list[str],
    seed: int = 0,
    threads: int = 1,
    params: dict | None = None,
) -> LightGBMBaseline:
    """Train LightGBM on `train`, stop early on `valid`'s AUC, convert it to ONNX.

    `categorical` names the categorical columns; every other column of `train` is
    numeric. `params` overrides `DEFAULT_PARAMS` (aliases such as `min_child_samples`
    are read as LightGBM's main names); the seed and the thread count come from the
    arguments, and `deterministic` and the AUC metric are always on.
    """
    features = list(train.columns)
    _check_inputs(train, y_train, valid, y_valid, categorical, features)
    settings = {**DEFAULT_PARAMS, **_main_names(params or {})}
    settings.update(seed=int(seed), num_threads=int(threads), deterministic=True, metric="auc")
    for key, bad in _REFUSED.items():
        if key in settings and bad(settings[key]):
            raise ValueError(f"params[{key!r}]={settings[key]!r} is not supported here")

    categories = {}
    for column in categorical:
        names = {category_name(v, MISSING) for v in train[column].tolist()} - {MISSING}
        if not names:
            raise ValueError(f"categorical column {column!r} is empty in the training split")
        categories[column] = sorted(names)
    train_frame = _booster_frame(train, features, categories, finite=True)
    valid_frame = _booster_frame(valid, features, categories, finite=True)

    train_set = lgb.Dataset(train_frame, label=np.asarray(y_train), free_raw_data=True)
    valid_set = lgb.Dataset(valid_frame, label=np.asarray(y_valid), reference=train_set)
    started = time.perf_counter()
    trained = lgb.train(
        settings,
        train_set,
        num_boost_round=NUM_BOOST_ROUND,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    train_seconds = time.perf_counter() - started
    best = int(trained.best_iteration) or int(trained.current_iteration())
    # Keep only the trees up to the best iteration: the booster and the graph agree.
    booster = lgb.Booster(model_str=trained.model_to_string(num_iteration=best))

    started = time.perf_counter()
    nan_as_zero = _nan_as_zero_columns(booster, features, set(categories))
    onnx_model = _to_onnx(booster, features, categories, nan_as_zero)
    baseline = LightGBMBaseline(
        booster=booster,
        onnx_model=onnx_model,
        features=features,
        categories=categories,
        params=settings,
        best_iteration=best,
        train_seconds=train_seconds,
        nan_as_zero=nan_as_zero,
    )
    baseline.parity_max_abs_diff = _check_parity(baseline, valid)
    baseline.convert_seconds = time.perf_counter() - started
    return baseline


# -- inputs ---------------------------------------------------------------------------
def _main_names(params: dict) -> dict:
    """`params` under LightGBM's main names. LightGBM keeps the main name when a default
    and an alias of it are both given (min_data_in_leaf and min_child_samples), so an
    override by alias would be ignored, its warning hidden by verbosity -1."""
    try:  # the alias table LightGBM's own Python package uses (LGBM_DumpParamAliases)
        table = lgb.basic._ConfigAliases._get_all_param_aliases()
    except AttributeError:  # pragma: no cover - a LightGBM without it: names as given
        table = {}
    main = {alias: name for name, aliases in table.items() for alias in aliases}
    result: dict = {}
    for key, value in params.items():
        name = main.get(key, key)
        if name in result:
            raise ValueError(f"params set {name!r} twice (as {key!r} and an alias)")
        result[name] = value
    return result


def _check_inputs(
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame,
    y_valid: np.ndarray,
    categorical: list[str],
    features: list[str],
) -> None:
    if not all(isinstance(c, str) for c in features) or len(set(features)) != len(features):
        raise ValueError("feature column names must be unique strings (the ONNX input names)")
    taken = sorted({PROBABILITIES, LABEL} & set(features))
    if taken:
        raise ValueError(f"columns {taken} clash with the ONNX outputs; rename them")
    unknown = sorted(set(categorical) - set(features))
    if unknown:
        raise ValueError(f"categorical columns {unknown} are not columns of the training frame")
    _require_columns(valid, features)
    for name, frame, labels in (("train", train, y_train), ("valid", valid, y_valid)):
        labels = np.asarray(labels)
        if labels.shape != (len(frame),):
            raise ValueError(f"y_{name} must have one label per row of {name}")
        if set(np.unique(labels).tolist()) != {0, 1}:
            raise ValueError(f"y_{name} must hold both 0 (good) and 1 (bad), and nothing else")


def _require_columns(frame: pd.DataFrame, features: list[str]) -> None:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing}")


def _float32(series: pd.Series, column: str, finite: bool = False) -> np.ndarray:
    try:
        values = series.astype("float64").to_numpy()
    except (TypeError, ValueError) as error:
        raise ValueError(f"numeric column {column!r} holds non-numbers: {error}") from None
    with np.errstate(over="ignore"):  # beyond float32's range becomes ±inf, as in the graph
        values = values.astype(np.float32)
    if finite and np.isinf(values).any():
        raise ValueError(
            f"numeric column {column!r} holds infinite values (or values beyond float32) "
            "in a training split; fix those rows"
        )
    return values


def _booster_frame(
    frame: pd.DataFrame,
    features: list[str],
    categories: dict[str, list[str]],
    finite: bool = False,
) -> pd.DataFrame:
    """What the booster sees: float32 numerics, `category` columns with the training
    categories (anything else, and empty cells, become NaN: LightGBM's own rule)."""
    columns: dict[str, Any] = {}
    for i, column in enumerate(features):
        key = f"f{i}"  # LightGBM refuses some characters in feature names
        if column in categories:
            known = set(categories[column])
            names = [category_name(v, MISSING) for v in frame[column].tolist()]
            columns[key] = pd.Categorical(
                [n if n in known else None for n in names], categories=categories[column]
            )
        else:
            columns[key] = _float32(frame[column], column, finite=finite)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


# -- conversion -----------------------------------------------------------------------
def _nan_as_zero_columns(
    booster: lgb.Booster, features: list[str], categorical: set[str]
) -> list[str]:
    """Numeric columns whose splits have missing type "None" (LightGBM: NaN → 0.0)."""
    kinds: dict[int, set[str]] = {}
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        if node["decision_type"] != "==":
            kinds.setdefault(node["split_feature"], set()).add(node["missing_type"])
        stack += [node["left_child"], node["right_child"]]
    result = []
    for index, seen in sorted(kinds.items()):
        if features[index] in categorical:
            continue
        if "Zero" in seen or len(seen) > 1:
            raise ValueError(
                f"column {features[index]!r}: LightGBM missing types {sorted(seen)} "
                "cannot be reproduced by the ONNX front"
            )
        if seen == {"None"}:
            result.append(features[index])
    return result


def _float32_at_most(value: float) -> float:
    """The largest float32 not above `value` (so float32 x <= value iff x <= result)."""
    with np.errstate(over="ignore"):
        nearest = np.float32(value)
    if float(nearest) > value:
        nearest = np.nextafter(nearest, np.float32(-np.inf))
    if np.isinf(nearest):  # below -FLT_MAX: only -inf is below, keep the finite bound
        nearest = np.float32(-np.finfo(np.float32).max)
    return float(nearest)


def _thresholds_at_most_float32(model_text: str) -> str:
    """LightGBM's model text with every numeric split threshold rounded down to float32
    (categorical splits keep theirs: there it is an index into a category bitset).

    The text is a header, one block per tree ("Tree=" up to the next tree or "end of
    trees"), then a trailer; the header's `tree_sizes` gives each block's length in
    bytes, so it is recomputed for the rewritten blocks.
    """
    starts = [m.start() for m in re.finditer(r"^Tree=", model_text, flags=re.M)]
    if not starts:
        return model_text
    end = model_text.index("end of trees", starts[-1])
    header, trailer = model_text[: starts[0]], model_text[end:]
    blocks = [model_text[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    rewritten = [_round_block(block) for block in blocks]
    sizes = " ".join(str(len(block.encode())) for block in rewritten)
    header, count = re.subn(r"^tree_sizes=.*$", f"tree_sizes={sizes}", header, flags=re.M)
    if count != 1:
        raise RuntimeError("unexpected LightGBM model text: no single tree_sizes line")
    return header + "".join(rewritten) + trailer


def _round_block(block: str) -> str:
    fields = dict(re.findall(r"^(threshold|decision_type)=(.*)$", block, flags=re.M))
    if not fields.get("threshold"):  # a tree that is a single leaf: "threshold=" is empty
        return block
    kinds = fields["decision_type"].split(" ")
    thresholds = fields["threshold"].split(" ")
    rounded = [
        t if int(k) & _CATEGORICAL_MASK else repr(_float32_at_most(float(t)))
        for t, k in zip(thresholds, kinds, strict=True)
    ]
    line = "threshold=" + " ".join(rounded)
    return re.sub(r"^threshold=.*$", lambda _: line, block, count=1, flags=re.M)


def _front(
    features: list[str],
    categories: dict[str, list[str]],
    nan_as_zero: list[str],
    opsets: list[onnx.OperatorSetIdProto],
    ir_version: int,
    output: str,
) -> onnx.ModelProto:
    """Raw columns → the [batch, features] float tensor the trees read."""
    inputs, nodes, values = [], [], []
    zero = "front/zero"
    for i, column in enumerate(features):
        value = f"front/{i}/value"
        if column in categories:
            inputs.append(helper.make_tensor_value_info(column, TensorProto.STRING, ["batch", 1]))
            code = f"front/{i}/code"
            nodes.append(
                helper.make_node(
                    "LabelEncoder",
                    [column],
                    [code],
                    domain="ai.onnx.ml",
                    name=f"front/{i}/encode",
                    classes_strings=categories[column],
                    default_int64=-1,
                )
            )
            nodes.append(
                helper.make_node(
                    "Cast", [code], [value], to=TensorProto.FLOAT, name=f"front/{i}/cast"
                )
            )
        else:
            inputs.append(helper.make_tensor_value_info(column, TensorProto.FLOAT, ["batch", 1]))
            if column in nan_as_zero:
                isnan = f"front/{i}/isnan"
                nodes.append(helper.make_node("IsNaN", [column], [isnan], name=isnan))
                nodes.append(
                    helper.make_node(
                        "Where", [isnan, zero, column], [value], name=f"front/{i}/nan_as_zero"
                    )
                )
            else:
                value = column  # straight into the Concat
        values.append(value)
    nodes.append(helper.make_node("Concat", values, [output], axis=1, name="front/concat"))
    graph = helper.make_graph(
        nodes,
        "raw_applicant_columns",
        inputs,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", len(features)])],
        initializer=[helper.make_tensor(zero, TensorProto.FLOAT, [], [0.0])],
    )
    return helper.make_model(graph, opset_imports=list(opsets), ir_version=ir_version)


def _tail(probabilities: str, opsets, ir_version: int) -> onnx.ModelProto:
    """The trees' [P(good), P(bad)] → outputs "probabilities", "label" (P(bad) >= 0.5)."""
    nodes = [
        helper.make_node("Identity", [probabilities], [PROBABILITIES], name="tail/probabilities"),
        helper.make_node("Gather", [PROBABILITIES, "tail/one"], ["tail/bad"], axis=1),
        helper.make_node("Less", ["tail/bad", "tail/threshold"], ["tail/below"]),
        helper.make_node("Not", ["tail/below"], ["tail/flag"]),
        helper.make_node("Cast", ["tail/flag"], [LABEL], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        "label_at_threshold",
        [helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, ["batch", 2])],
        [
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["batch"]),
        ],
        initializer=[
            helper.make_tensor("tail/one", TensorProto.INT64, [], [1]),
            helper.make_tensor("tail/threshold", TensorProto.FLOAT, [], [LABEL_THRESHOLD]),
        ],
    )
    return helper.make_model(graph, opset_imports=list(opsets), ir_version=ir_version)


def _to_onnx(
    booster: lgb.Booster,
    features: list[str],
    categories: dict[str, list[str]],
    nan_as_zero: list[str],
) -> onnx.ModelProto:
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    rounded = lgb.Booster(model_str=_thresholds_at_most_float32(booster.model_to_string()))
    trees = convert_lightgbm(
        rounded,
        name="lightgbm",
        initial_types=[("input", FloatTensorType([None, len(features)]))],
        zipmap=False,
        target_opset=CONVERTER_TARGET_OPSET,
    )
    trees = onnx.compose.add_prefix(trees, "gbm/")
    (tree_input,) = [i.name for i in trees.graph.input]
    (tree_probabilities,) = [o.name for o in trees.graph.output if o.name.endswith("probabilities")]
    reserved = {n for n in features if n.startswith(("front/", "gbm/", "tail/"))}
    if reserved:
        raise ValueError(f"columns {sorted(reserved)} clash with the graph's internal names")

    opsets = list(trees.opset_import)
    front = _front(features, categories, nan_as_zero, opsets, trees.ir_version, "front/features")
    model = onnx.compose.merge_models(front, trees, io_map=[("front/features", tree_input)])
    model = onnx.compose.merge_models(
        model,
        _tail(tree_probabilities, opsets, trees.ir_version),
        io_map=[(tree_probabilities, tree_probabilities)],
        outputs=[PROBABILITIES, LABEL],
    )
    # merge_models lists each model's opsets again; one entry per domain is enough.
    imports = {(o.domain, o.version) for o in model.opset_import}
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(imports))
    model.graph.name = "lightgbm_baseline"
    model.producer_name = "autocompress"
    model.doc_string = (
        "LightGBM baseline over raw applicant columns; outputs probabilities "
        f"[P(good), P(bad)] and label (P(bad) >= {LABEL_THRESHOLD})."
    )
    helper.set_model_props(model, {"autocompress.baseline": "lightgbm"})
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_parity(baseline: LightGBMBaseline, frame: pd.DataFrame) -> float:
    """Max |ONNX − booster| probability on `frame`; raise past `PARITY_ATOL`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        baseline.onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    got = session.run([PROBABILITIES], baseline.raw_feeds(frame))[0]
    diff = float(np.abs(got.astype(np.float64) - baseline.predict_proba(frame)).max())
    if not math.isfinite(diff) or diff > PARITY_ATOL:
        raise RuntimeError(
            f"the ONNX graph differs from the booster by {diff:.3g} on the validation "
            f"split (limit {PARITY_ATOL}); the conversion is not trustworthy"
        )
    return diff


def _plain(value: Any) -> Any:
    """numpy scalars in `params` (JSON has no numpy types)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON data")


__all__ = ["DEFAULT_PARAMS", "LightGBMBaseline", "fit_lightgbm"]
