"""The metadata keys of a credit export's ONNX graph (`metadata_props`), JSON values,
and `read_metadata`, which reads them back without onnx.

Kept apart from `tabular_onnx`, which writes them, so that `export` (its metrics.json
repeats the class mapping and the threshold) reads them without importing the graph
builder and its preprocessing (pandas), nor onnx itself (over a second of imports,
nearly all of it ml_dtypes, for one small field of the file).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

THRESHOLD_KEY = "autocompress.threshold"
CALIBRATION_KEY = "autocompress.calibration"
PREPROCESSING_KEY = "autocompress.preprocessing"
CLASSES_KEY = "autocompress.classes"
DECISION_RULE_KEY = "autocompress.decision_rule"

# onnx.proto: ModelProto.metadata_props = 14 (StringStringEntryProto: key = 1, value = 2).
_METADATA_PROPS, _KEY, _VALUE = 14, 1, 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def read_metadata(model_path: Path) -> dict[str, str]:
    """`{prop.key: prop.value for prop in onnx.load(model_path).metadata_props}`, read
    from the protobuf wire format: the graph is skipped over, never parsed or loaded."""
    with model_path.open("rb") as stream:
        entries = [payload for _, payload in _length_fields(stream, {_METADATA_PROPS})]
    props = {}
    for entry in entries:
        fields = dict(_length_fields(io.BytesIO(entry), {_KEY, _VALUE}))
        props[fields.get(_KEY, b"").decode()] = fields.get(_VALUE, b"").decode()
    return props


def _length_fields(stream: BinaryIO, wanted: set[int]) -> Iterator[tuple[int, bytes]]:
    """The length-delimited fields numbered `wanted` of one message, in file order;
    every other field is skipped by its size."""
    while (tag := _varint(stream)) is not None:
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            _varint(stream)
        elif wire_type in (_FIXED64, _FIXED32):
            stream.seek(8 if wire_type == _FIXED64 else 4, os.SEEK_CUR)
        elif wire_type == _LENGTH:
            size = _varint(stream) or 0
            if number in wanted:
                payload = stream.read(size)
                if len(payload) < size:
                    raise ValueError("not an ONNX model: it ends inside a field")
                yield number, payload
            else:
                stream.seek(size, os.SEEK_CUR)
        else:  # groups (3, 4) are not in onnx.proto
            raise ValueError(f"not an ONNX model: field {number} has wire type {wire_type}")


def _varint(stream: BinaryIO) -> int | None:
    """The next base-128 varint; None at the end of the stream."""
    value = shift = 0
    while byte := stream.read(1):
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    if shift:
        raise ValueError("not an ONNX model: it ends inside a number")
    return None
