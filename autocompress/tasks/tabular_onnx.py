"""One ONNX file per credit export: raw applicant columns in, calibrated probabilities out.

`preprocessing_model` turns a /3 `TabularPreprocessor` into a graph from the raw columns
(as `TabularPreprocessor.raw_feeds` gives them) to "features", computing exactly what
`transform` computes: cells read as float32, the same float64 operations in the same
order, the features rounded to float32 once. `scoring_model` puts it in front of a core
model ("features" → "logits", at any precision) and a calibration and decision tail
behind it, so any onnxruntime binding can score a raw row with nothing else.

The numeric columns are concatenated once and handled as one [batch, n] block with
per-column constant vectors: ±inf and NaN by `IsInf`, `IsNaN` and one `Where` (two more
when a column clips infinities), clip and the log transforms on the whole block (the
identity where a column has neither), the quantile columns as one block (a segment index
per cell, then three `Gather`s from flat knot tables), then one `Sub` and one `Div`; the
indicators are picked from the missing mask by a 0/1 `MatMul`. Each categorical column
is an `ai.onnx.ml.OneHotEncoder` (zeros=1: an unseen category is all zeros) whose
empty-string category is "(missing)".
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from autocompress.tasks.graph_keys import CALIBRATION_KEY, PREPROCESSING_KEY, THRESHOLD_KEY
from autocompress.tasks.preprocessing import FEEDING, MISSING_CATEGORY, TabularPreprocessor

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3
MIN_OPSET = 13  # ReduceSum, Split and Unsqueeze with their axes as inputs
BATCH = "batch"
FEATURES = "features"
LOGITS = "logits"
PROBABILITIES = "probabilities"
LABEL = "label"
THRESHOLD = "post/threshold"
OUTPUTS_DOC = (
    'Outputs: "probabilities" [batch, 2] float32 = [1 - p, p], p = sigmoid(a * (logit1 - '
    'logit0) + b) the calibrated probability of class 1 (the bad class); "logits" [batch, '
    '2] the model\'s own; "label" [batch] int64 = p >= threshold. a, b and the threshold '
    f"are in the metadata ({CALIBRATION_KEY}, {THRESHOLD_KEY})."
)


class _Builder:
    """Nodes and constants of one graph; every name it makes starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, hint: str, value: object, dtype: type = np.float64) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        hint: str | None = None,
        outputs: int | list[str] = 1,
        domain: str = "",
        **attributes: object,
    ) -> str | list[str]:
        names = (
            outputs
            if isinstance(outputs, list)
            else [self.name(hint or op_type.lower()) for _ in range(outputs)]
        )
        self.nodes.append(
            helper.make_node(
                op_type,
                inputs,
                names,
                name=self.name(op_type),
                domain=domain,
                **attributes,
            )
        )
        return names[0] if len(names) == 1 else names


def _numeric_block(graph: _Builder, pre: TabularPreprocessor) -> tuple[str, str | None]:
    """The standardised numeric columns [batch, n] and the indicators, if any."""
    plan = pre.numeric_plan()
    count = len(pre.numeric)
    quantile = plan.quantile
    # Quantile columns first, so each group is one contiguous slice of the block.
    order = quantile + [j for j in range(count) if j not in quantile]

    def vector(values: np.ndarray, hint: str, columns: list[int] | None = None) -> str:
        chosen = values[order if columns is None else columns]
        return graph.const(hint, chosen, chosen.dtype.type)

    x = (
        graph.op("Concat", [pre.numeric[j] for j in order], "numeric", axis=1)
        if count > 1
        else pre.numeric[0]
    )
    x = graph.op("Cast", [x], "numeric", to=TensorProto.DOUBLE)
    if any(s.infinite == "clip" for s in pre.steps or []):
        positive = graph.op("IsInf", [x], "pos_inf", detect_negative=0)
        x = graph.op("Where", [positive, vector(plan.on_pos_inf, "on_pos_inf"), x], "finite")
        negative = graph.op("IsInf", [x], "neg_inf", detect_positive=0)
        x = graph.op("Where", [negative, vector(plan.on_neg_inf, "on_neg_inf"), x], "finite")
        missing = graph.op("IsNaN", [x], "missing")
    else:  # ±inf is missing in every column
        missing = graph.op("Or", [graph.op("IsNaN", [x]), graph.op("IsInf", [x])], "missing")
    x = graph.op("Where", [missing, vector(plan.fill, "fill"), x], "imputed")

    q = len(quantile)
    rest = [j for j in order if j not in quantile]
    if 0 < q < count:
        sizes = graph.const("split", [q, count - q], np.int64)
        x_q, x_e = graph.op("Split", [x, sizes], outputs=2, axis=1)
    else:
        x_q, x_e = (x, None) if q else (None, x)

    if x_e is not None:
        if any(plan.clip_high[rest] < np.inf):
            x_e = graph.op("Min", [x_e, vector(plan.clip_high, "clip_high", rest)])
            x_e = graph.op("Max", [x_e, vector(plan.clip_low, "clip_low", rest)], "clipped")
        if plan.log[rest].any():
            one = graph.const("one", 1.0)
            logs = graph.op("Log", [graph.op("Add", [graph.op("Abs", [x_e]), one])])
            sign = graph.op("Sign", [x_e])
            factor = graph.op("Max", [sign, vector(plan.sign_floor, "sign_floor", rest)])
            logs = graph.op("Mul", [logs, factor], "logs")
            x_e = (
                logs
                if plan.log[rest].all()
                else graph.op("Where", [vector(plan.log, "log_mask", rest), logs, x_e])
            )

    if x_q is not None:
        tables = plan.tables
        assert tables is not None
        t = graph.op("Max", [x_q, graph.const("first_knot", tables.first)])
        t = graph.op("Min", [t, graph.const("last_knot", tables.last)], "clamped")
        segment = graph.const("offsets", tables.offsets, np.int64)
        if tables.inner.shape[1]:
            cell = graph.op("Unsqueeze", [t, graph.const("axis", [2], np.int64)])
            above = graph.op("GreaterOrEqual", [cell, graph.const("inner_knots", tables.inner)])
            # Summed as float (exact for whole numbers this small): much faster than int64.
            counts = graph.op(
                "ReduceSum",
                [
                    graph.op("Cast", [above], to=TensorProto.FLOAT),
                    graph.const("axis", [2], np.int64),
                ],
                keepdims=0,
            )
            counts = graph.op("Cast", [counts], "segment", to=TensorProto.INT64)
            segment = graph.op("Add", [counts, segment], "segment")
        start, level, slope = (
            graph.op("Gather", [graph.const(hint, table), segment], hint, axis=0)
            for hint, table in (
                ("start", tables.start),
                ("level", tables.level),
                ("slope", tables.slope),
            )
        )
        offset = graph.op("Mul", [slope, graph.op("Sub", [t, start])])
        x_q = graph.op("Add", [level, offset], "quantile")

    x = (
        graph.op("Concat", [x_q, x_e], axis=1)
        if x_q is not None and x_e is not None
        else x_q or x_e
    )
    x = graph.op("Sub", [x, vector(plan.mean, "mean")])
    x = graph.op("Div", [x, vector(plan.scale, "scale")], "standardised")
    x = graph.op("Cast", [x], "standardised", to=TensorProto.FLOAT)
    position = {j: p for p, j in enumerate(order)}
    if order != sorted(order):
        back = graph.const("numeric_order", [position[j] for j in range(count)], np.int64)
        x = graph.op("Gather", [x, back], "standardised", axis=1)
    indicators = None
    if plan.indicators:
        rows = [position[j] for j in plan.indicators]
        indicators = graph.op("Cast", [missing], "indicators", to=TensorProto.FLOAT)
        if rows != list(range(count)):  # pick the columns: a 0/1 matrix is exact, and
            select = np.zeros((count, len(rows)), dtype=np.float32)  # faster than Gather
            select[rows, range(len(rows))] = 1.0
            indicators = graph.op("MatMul", [indicators, graph.const("select", select, np.float32)])
    return x, indicators


def _one_hot_block(graph: _Builder, pre: TabularPreprocessor) -> str:
    """Every categorical column's one-hot block, side by side: [batch, sum of categories]."""
    blocks = [
        graph.op(
            "OneHotEncoder",
            [column],
            f"one_hot_{len(categories)}",
            domain=ML_DOMAIN,
            cats_strings=["" if c == MISSING_CATEGORY else c for c in categories],
            zeros=1,
        )
        for column, categories in pre.categories.items()
    ]  # each [batch, 1, categories]
    joined = graph.op("Concat", blocks, axis=2) if len(blocks) > 1 else blocks[0]
    return graph.op("Flatten", [joined], "one_hot", axis=1)


def _check_names(pre: TabularPreprocessor, taken: set[str]) -> None:
    clash = sorted(set(pre.input_columns) & taken)
    clash += [c for c in pre.input_columns if c.startswith(("pre/", "post/"))]
    if clash:
        raise ValueError(
            f"raw column name(s) {clash} clash with names the scoring graph uses; "
            "rename those columns"
        )


def preprocessing_model(
    pre: TabularPreprocessor, opset: int = 17, ml_opset: int = ML_OPSET
) -> onnx.ModelProto:
    """Raw columns (see `TabularPreprocessor.raw_feeds`) → "features" [batch, D] float32."""
    if pre.steps is None:
        raise ValueError(
            f"an ONNX preprocessing graph needs a /3 preprocessing file; this is {pre.format}: "
            "refit the preprocessing"
        )
    if opset < MIN_OPSET:
        raise ValueError(f"the preprocessing graph needs ai.onnx opset {MIN_OPSET} or later")
    _check_names(pre, {FEATURES})
    graph = _Builder("pre/")
    blocks: list[str] = []
    if pre.numeric:
        numeric, indicators = _numeric_block(graph, pre)
        blocks += [numeric] + ([indicators] if indicators else [])
    if pre.categories:
        blocks.append(_one_hot_block(graph, pre))
    if not blocks:
        raise ValueError("the preprocessing has no columns")
    if len(blocks) > 1:
        graph.op("Concat", blocks, outputs=[FEATURES], axis=1)
    else:
        graph.op("Identity", blocks, outputs=[FEATURES])
    inputs = [
        helper.make_tensor_value_info(
            column,
            TensorProto.STRING if column in pre.categories else TensorProto.FLOAT,
            [BATCH, 1],
        )
        for column in pre.input_columns
    ]
    output = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [BATCH, pre.output_dim])
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ml_opset)]
    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "autocompress_preprocessing", inputs, [output], graph.initializers
        ),
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="autocompress",
        doc_string=f"Raw applicant columns to model features. {FEEDING}",
    )
    onnx.checker.check_model(model)
    return model


def scoring_model(
    core: onnx.ModelProto,
    pre: TabularPreprocessor,
    calibration: tuple[float, float] = (1.0, 0.0),
    threshold: float = 0.5,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Raw columns → "probabilities", "logits", "label", around `core` ("features" → "logits").

    p = sigmoid(a * (logit1 - logit0) + b) with (a, b) = `calibration`, computed as a
    softmax over a * logits + [0, b]; "label" is p >= `threshold` (as float32; change it
    later with `set_threshold`).
    """
    a, b = (float(v) for v in calibration)
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(threshold)):
        raise ValueError(f"calibration {calibration} and threshold {threshold} must be finite")
    opsets = {o.domain or "": o.version for o in core.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset is None:
        raise ValueError("the core model imports no ai.onnx opset")
    if [i.name for i in core.graph.input if i.name not in _initializer_names(core)] != [
        FEATURES
    ] or LOGITS not in [o.name for o in core.graph.output]:
        raise ValueError(f'the core model must take "{FEATURES}" and give "{LOGITS}"')
    (features,) = [i for i in core.graph.input if i.name == FEATURES]
    dims = features.type.tensor_type.shape.dim
    if features.type.tensor_type.HasField("shape") and (
        len(dims) != 2 or (dims[1].HasField("dim_value") and dims[1].dim_value != pre.output_dim)
    ):
        raise ValueError(
            f"the core model takes features of shape {[d.dim_value or d.dim_param for d in dims]}"
            f"; the preprocessing gives [batch, {pre.output_dim}]"
        )
    _check_names(pre, _value_names(core) | {PROBABILITIES, LABEL})

    front = preprocessing_model(pre, opset, opsets.get(ML_DOMAIN, ML_OPSET))
    model = onnx.ModelProto()
    model.CopyFrom(core)
    ir_version = max(model.ir_version, front.ir_version)
    model.ir_version = front.ir_version = ir_version
    core_props = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    merged = compose.merge_models(
        front,
        model,
        io_map=[(FEATURES, FEATURES)],
        outputs=[LOGITS],
        name="autocompress_scoring",
        producer_name="autocompress",
        producer_version="3",
        doc_string="",
    )

    tail = _Builder("post/")
    scores = LOGITS
    if (a, b) != (1.0, 0.0):
        scores = tail.op("Mul", [scores, tail.const("calibration_a", a, np.float32)])
        shift = tail.const("calibration_b", [0.0, b], np.float32)
        scores = tail.op("Add", [scores, shift], "calibrated")
    tail.op("Softmax", [scores], outputs=[PROBABILITIES], axis=1)
    p = tail.op("Gather", [PROBABILITIES, tail.const("class_1", 1, np.int64)], "p", axis=1)
    tail.initializers.append(numpy_helper.from_array(np.float32(threshold), THRESHOLD))
    decided = tail.op("GreaterOrEqual", [p, THRESHOLD], "decided")
    tail.op("Cast", [decided], outputs=[LABEL], to=TensorProto.INT64)

    graph = merged.graph
    graph.node.extend(tail.nodes)
    graph.initializer.extend(tail.initializers)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [BATCH, 2]),
            helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [BATCH, 2]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, [BATCH]),
        ]
    )
    if ML_DOMAIN not in {o.domain for o in merged.opset_import}:
        merged.opset_import.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    _dedupe_opsets(merged)
    merged.doc_string = (
        f"Credit scoring from raw applicant columns. {FEEDING} {OUTPUTS_DOC} "
        f"The preprocessing (format /3) is in the metadata under {PREPROCESSING_KEY}."
    )
    props = {
        **core_props,
        **(metadata or {}),
        PREPROCESSING_KEY: json.dumps(pre.to_dict()),
        CALIBRATION_KEY: json.dumps(
            {"a": a, "b": b, "p": "sigmoid(a * (logits[1] - logits[0]) + b)"}
        ),
        THRESHOLD_KEY: json.dumps(float(threshold)),
    }
    helper.set_model_props(merged, props)
    onnx.checker.check_model(merged)
    return merged


def set_threshold(model: onnx.ModelProto, threshold: float) -> None:
    """Change the threshold "label" uses (p >= threshold), in place, without rebuilding."""
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == THRESHOLD:
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(np.float32(threshold), THRESHOLD)
            )
            break
    else:
        raise ValueError("not a scoring model: it has no stored threshold")
    props = {p.key: p.value for p in model.metadata_props}
    props[THRESHOLD_KEY] = json.dumps(float(threshold))
    helper.set_model_props(model, props)


def stored_threshold(model: onnx.ModelProto) -> float:
    """The threshold a scoring model's "label" uses."""
    for tensor in model.graph.initializer:
        if tensor.name == THRESHOLD:
            return float(numpy_helper.to_array(tensor))
    raise ValueError("not a scoring model: it has no stored threshold")


def _initializer_names(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def _value_names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    names |= _initializer_names(model)
    names |= {n for node in graph.node for n in [*node.input, *node.output]}
    return names - {""}


def _dedupe_opsets(model: onnx.ModelProto) -> None:
    """merge_models lists each graph's opset imports; keep one per domain."""
    seen: dict[str, int] = {}
    for opset in model.opset_import:
        seen.setdefault(opset.domain, opset.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in seen.items())
