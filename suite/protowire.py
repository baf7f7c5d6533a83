"""Protobuf's wire format, read with the standard library: just enough of ONNX's ModelProto and
TensorFlow's SavedModel to tell a model's inputs, outputs and size without installing either.

Field numbers are those of onnx/onnx.proto and tensorflow/core/protobuf/{saved_model,meta_graph}.proto
and tensorflow/core/framework/{tensor_shape,types}.proto. Unknown fields are skipped, as protobuf does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


class WireError(ValueError):
    """Bytes that are not the protobuf message they were read as."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: ints for varints, memoryviews otherwise."""
    pos, end = 0, len(buf)
    value: Any
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("field runs past the end of its message")
        yield number, wire, value


def message(buf: memoryview) -> dict[int, list[Any]]:
    """Every field of one message, by number, in order."""
    found: dict[int, list[Any]] = {}
    for number, _, value in fields(buf):
        found.setdefault(number, []).append(value)
    return found


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(values: list[Any]) -> list[int]:
    """A repeated integer field, packed (one length-delimited run) or not."""
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(_signed(value))
            continue
        pos = 0
        while pos < len(value):
            number, pos = _varint(value, pos)
            out.append(_signed(number))
    return out


def _text(values: list[Any], default: str = "") -> str:
    return bytes(values[-1]).decode("utf-8", errors="replace") if values else default


# --- ONNX ---------------------------------------------------------------------------------------

# TensorProto.DataType -> numpy dtype name
ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
}


@dataclass
class OnnxValue:
    name: str
    dtype: str
    dims: list[int | str]  # a fixed size, or the dimension's symbol ("?" when it has none)


@dataclass
class OnnxGraph:
    inputs: list[OnnxValue]
    outputs: list[OnnxValue]
    parameters: int  # elements of every initializer
    external_files: list[str]  # files the initializers' data lives in, relative to the model
    opsets: dict[str, int]
    producer: str
    ir_version: int
    nodes: int
    vocab: dict[str, int] = field(default_factory=dict)  # input -> rows of the table it indexes


def _dims(shape: memoryview) -> list[int | str]:
    dims: list[int | str] = []
    for dim in message(shape).get(1, []):
        d = message(dim)
        if 1 in d:
            dims.append(_signed(d[1][-1]))
        else:
            dims.append(_text(d.get(2, []), "?") or "?")
    return dims


def _value_info(buf: memoryview) -> OnnxValue:
    info = message(buf)
    name = _text(info.get(1, []))
    typ = message(info[2][-1]) if 2 in info else {}
    if 1 not in typ:  # a sequence, map or optional: no tensor to feed
        return OnnxValue(name, "non-tensor", [])
    tensor = message(typ[1][-1])
    dtype = ONNX_DTYPES.get(tensor.get(1, [0])[-1], "undefined")
    dims: list[int | str] = _dims(tensor[2][-1]) if 2 in tensor else ["?unranked"]
    return OnnxValue(name, dtype, dims)


def _initializer(buf: memoryview) -> tuple[str, list[int], str | None]:
    """(name, dims, external data file or None) of a TensorProto."""
    t = message(buf)
    external = None
    if t.get(14, [0])[-1] == 1:  # data_location EXTERNAL
        for entry in t.get(13, []):
            kv = message(entry)
            if _text(kv.get(1, [])) == "location":
                external = _text(kv.get(2, []))
    return _text(t.get(8, [])), _ints(t.get(1, [])), external


def _vocabularies(nodes: list[memoryview], inputs: set[str], tables: dict[str, list[int]]) -> dict[str, int]:
    """Integer inputs that index an embedding table (Gather, maybe through a Cast): the table's rows."""
    cast: dict[str, str] = {}
    gathers: list[tuple[str, str]] = []
    for raw in nodes:
        node = message(raw)
        op = _text(node.get(4, []))
        ins = [bytes(v).decode() for v in node.get(1, [])]
        outs = [bytes(v).decode() for v in node.get(2, [])]
        if op == "Cast" and ins and outs:
            cast[outs[0]] = ins[0]
        elif op == "Gather" and len(ins) >= 2:
            gathers.append((ins[0], ins[1]))
    found: dict[str, int] = {}
    for table, index in gathers:
        source = cast.get(index, index)
        dims = tables.get(table)
        if source in inputs and dims is not None and len(dims) == 2:
            found[source] = min(found.get(source, dims[0]), dims[0])
    return found


def read_onnx(data: bytes) -> OnnxGraph:
    """The graph's interface and size; WireError when the bytes are not an ONNX model."""
    model = message(memoryview(data))
    if 7 not in model:
        raise WireError("no graph in it")
    graph = message(model[7][-1])
    tables: dict[str, list[int]] = {}
    parameters, external = 0, []
    for raw in graph.get(5, []):
        name, dims, location = _initializer(raw)
        tables[name] = dims
        parameters += math.prod(dims)
        if location and location not in external:
            external.append(location)
    inputs = [v for v in (_value_info(raw) for raw in graph.get(11, [])) if v.name not in tables]
    outputs = [_value_info(raw) for raw in graph.get(12, [])]
    nodes = graph.get(1, [])
    if not outputs or not nodes:
        raise WireError("its graph has no nodes or no outputs")
    opsets = {}
    for raw in model.get(8, []):
        op = message(raw)
        opsets[_text(op.get(1, [])) or "ai.onnx"] = op.get(2, [0])[-1]
    int_inputs = {v.name for v in inputs if v.dtype.startswith(("int", "uint"))}
    return OnnxGraph(
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
        external_files=external,
        opsets=opsets,
        producer=" ".join(p for p in (_text(model.get(2, [])), _text(model.get(3, []))) if p),
        ir_version=model.get(1, [0])[-1],
        nodes=len(nodes),
        vocab=_vocabularies(nodes, int_inputs, tables) if int_inputs else {},
    )


# --- TensorFlow SavedModel ------------------------------------------------------------------------

# tensorflow DataType -> numpy dtype name
TF_DTYPES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}


@dataclass
class TfSignature:
    name: str
    inputs: list[OnnxValue]  # same shape of record as ONNX's: name, dtype, dims
    outputs: list[OnnxValue]


def _tensor_info(key: str, buf: memoryview) -> OnnxValue:
    info = message(buf)
    dtype = TF_DTYPES.get(info.get(2, [0])[-1], "undefined")
    dims: list[int | str] = ["?unranked"]
    if 3 in info:
        shape = message(info[3][-1])
        if not shape.get(3, [0])[-1]:
            dims = []
            for raw in shape.get(2, []):
                d = message(raw)
                size = _signed(d.get(1, [0])[-1]) if 1 in d else -1
                dims.append(size if size >= 0 else (_text(d.get(2, []), "?") or "?"))
    return OnnxValue(key, dtype, dims)


def _map(entries: list[memoryview]) -> list[tuple[str, memoryview]]:
    out = []
    for raw in entries:
        entry = message(raw)
        if 2 in entry:
            out.append((_text(entry.get(1, [])), entry[2][-1]))
    return out


def read_saved_model(data: bytes) -> TfSignature:
    """The serving signature of a saved_model.pb (tag "serve", key "serving_default" or the first)."""
    saved = message(memoryview(data))
    graphs = saved.get(2, [])
    if not graphs:
        raise WireError("no meta graph in it")
    chosen = None
    for raw in graphs:
        meta = message(raw)
        tags = [bytes(t).decode() for t in message(meta[1][-1]).get(4, [])] if 1 in meta else []
        if "serve" in tags or chosen is None:
            chosen = meta
    assert chosen is not None
    signatures = dict(_map(chosen.get(5, [])))
    signatures.pop("__saved_model_init_op", None)
    if not signatures:
        raise WireError("no serving signature in it (save it with tf.saved_model.save or model.export)")
    name = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    sig = message(signatures[name])
    inputs = [_tensor_info(k, v) for k, v in _map(sig.get(1, []))]
    outputs = [_tensor_info(k, v) for k, v in _map(sig.get(2, []))]
    return TfSignature(name, sorted(inputs, key=lambda v: v.name), sorted(outputs, key=lambda v: v.name))
