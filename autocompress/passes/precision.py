"""The recipe's bit-width: its fields, and the ONNX pass that applies it (`Precision`).

On the ONNX graph (FP32 in, the recipe's precision out): 32 copies; 16 converts
weights and compute to float16 (inputs and outputs stay float32); 8 is onnxruntime
int8, dynamic or static QDQ with calibration data; 4 is weight-only int4
(`MatMulNBits`). Nothing falls back silently: a graph the chosen precision cannot
quantize raises `Unsupported`. The torch-cuda target reads the same fields and applies
them with bitsandbytes instead (`passes/bnb.py`).

onnx and onnxruntime are imported when a graph is converted: reading a study file
reads this pass's fields, and needs neither.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autocompress.errors import Unsupported
from autocompress.passes.base import OnnxPass
from autocompress.recipe import FieldSpec

if TYPE_CHECKING:
    import onnx

    from autocompress.passes.base import Calibration
    from autocompress.recipe import Recipe

BIT_WIDTHS = (32, 16, 8, 4)
INT8_MODES = ("dynamic", "static")
BNB_4BIT_TYPES = ("nf4", "fp4")
STATIC_INT8_OPS = ["MatMul", "Gemm"]


class Precision(OnnxPass):
    """The recipe's bit-width on the exported graph (`apply_precision`)."""

    name = "precision"
    fields = {
        "bits": FieldSpec(int, choices=BIT_WIDTHS, default=32),
        "int8_mode": FieldSpec(
            str, choices=INT8_MODES, active=lambda p: p.get("bits") == 8, default="dynamic"
        ),
        "per_channel": FieldSpec(
            bool, choices=(True, False), active=lambda p: p.get("bits") == 8, default=False
        ),
        "int4_block_size": FieldSpec(
            int, choices=(16, 32, 64, 128), active=lambda p: p.get("bits") == 4, default=32
        ),
        "bnb_4bit_type": FieldSpec(
            str,
            choices=BNB_4BIT_TYPES,
            active=lambda p: p.get("bits") == 4,
            runtimes=("torch-cuda",),
            note="bitsandbytes 4-bit data type: normal float (nf4) or float (fp4)",
            default="nf4",
        ),
    }

    def describe(self, recipe: Recipe) -> str:
        return recipe.precision

    def step(self, recipe: Recipe, pruned_units: str | None = None) -> str:
        return f"precision: {recipe.precision}"

    def apply(
        self, source: Path, destination: Path, recipe: Recipe, calibration: Calibration
    ) -> None:
        apply_precision(source, destination, recipe, calibration)


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizers log per-tensor INFO lines and advice on the root logger."""
    root = logging.getLogger()
    level = root.level
    # Importing the int4 quantizer runs `logging.basicConfig(level=INFO)`, which would
    # undo the setLevel below on first use: import it before silencing.
    import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401

    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def apply_precision(
    source: Path, destination: Path, recipe: Recipe, calibration: list[dict[str, np.ndarray]]
) -> None:
    """Write `source` (FP32 ONNX) at `recipe.bits` precision to `destination`."""
    with _quiet_quantizer():
        _apply(source, destination, recipe, calibration)


def _apply(
    source: Path, destination: Path, recipe: Recipe, calibration: list[dict[str, np.ndarray]]
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if recipe.bits == 32:
        shutil.copyfile(source, destination)
    elif recipe.bits == 16:
        _to_float16(source, destination)
    elif recipe.bits == 8 and recipe.int8_mode == "dynamic":
        quantize_dynamic(
            source, destination, weight_type=QuantType.QInt8, per_channel=recipe.per_channel
        )
    elif recipe.bits == 8:
        quantize_static(
            source,
            destination,
            _feed_reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Only the matrix products. By default every Add/Where/Softmax is wrapped
            # too, and a transformer's additive attention mask (0 or float32 min) then
            # calibrates to an infinite scale, which wrecks the logits.
            op_types_to_quantize=STATIC_INT8_OPS,
        )
    elif recipe.bits == 4:
        _to_int4_weight_only(source, destination, recipe.int4_block_size)
    else:
        raise Unsupported(f"bits={recipe.bits} is not a known precision")


def _feed_reader(feeds: list[dict[str, np.ndarray]]) -> object:
    """The calibration batches as onnxruntime's static quantizer reads them."""
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return FeedReader()


def _to_float16(source: Path, destination: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(source), keep_io_types=True))
    # The converter appends the input/output Casts at the end of the node list; the
    # ONNX spec (and runtimes other than onnxruntime) require topological order.
    model.topological_sort()
    onnx.save(model.model, destination)


def _to_int4_weight_only(source: Path, destination: Path, block_size: int) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = gemm_to_matmul(onnx.load(source))
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True)
    quantizer.process()
    quantized = quantizer.model.model
    if not any(node.op_type == "MatMulNBits" for node in quantized.graph.node):
        raise Unsupported("int4 weight-only quantization found no MatMul weights to quantize")
    onnx.save(quantized, destination)


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite `Gemm(X, W, b)` as `MatMul(X, Wᵀ) + b`.

    Linear layers export as Gemm, but onnxruntime's weight-only quantizer handles
    only MatMul; this is an exact rewrite, not an approximation.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        rewritable = (
            node.op_type == "Gemm"
            and node.input[1] in weights
            and attrs.get("transA", 0) == 0
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
        )
        if not rewritable:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}_for_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(
            helper.make_node(
                "MatMul", [node.input[0], weight_name], [product], name=f"{node.name}_MatMul"
            )
        )
        if has_bias:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"
                )
            )
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model
