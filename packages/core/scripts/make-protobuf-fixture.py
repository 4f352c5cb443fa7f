#!/usr/bin/env python3
"""Writes src/io/fixtures/protobuf.json: protobuf bytes serialised by the `onnx` package (Google's
protobuf runtime), the independent reference for core's protobuf codec and ONNX writer.

- `varints`: an AttributeProto with only `i` set (field 3, int64), for values at the edges the
  codec must get right: 0, 127/128, 2^31, 2^32, 2^53-1, -1, -2^31, -2^63 (negatives are 10 bytes).
- `packed`: a TensorProto with only `int64_data` (field 7, declared `[packed = true]` in onnx.proto),
  so the bytes are one length-delimited field holding every varint.
- `models`: whole ModelProtos built with onnx.helper, each paired with the spec object the
  TypeScript writer takes; the test encodes the spec and compares byte for byte.

Run: .venv/bin/python packages/core/scripts/make-protobuf-fixture.py   (needs onnx, numpy)
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

out = {"onnx": onnx.__version__, "varints": [], "packed": [], "models": []}

for v in [0, 1, 127, 128, 300, 2**31 - 1, 2**31, 2**32, 2**53 - 1, -1, -2, -(2**31), -(2**53 - 1), -(2**63)]:
    a = onnx.AttributeProto()
    a.i = v
    out["varints"].append({"value": str(v), "hex": a.SerializeToString().hex()})

for vals in [[1, 2, 3], [0, 300, -1, 2**40]]:
    t = onnx.TensorProto()
    t.int64_data.extend(vals)
    out["packed"].append({"field": 7, "values": [str(v) for v in vals], "hex": t.SerializeToString().hex()})


def value_spec(name, elem, dims):
    return {"name": name, "elemType": elem, "dims": dims}


# 1. The fast path's batched MatMul with a sequence output, attributes of every kind and a domain.
nodes = [
    helper.make_node("SequenceEmpty", [], ["S"], dtype=TensorProto.FLOAT),
    helper.make_node("Transpose", ["A"], ["At"], perm=[0, 2, 1]),
    helper.make_node("FusedMatMul", ["At", "B"], ["C"], name="fmm", domain="com.microsoft", alpha=0.5),
]
seq = helper.make_tensor_sequence_value_info("S", TensorProto.FLOAT, None)
g = helper.make_graph(
    nodes,
    "matmul_batched_tn",
    [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["batch", "k", "m"]),
     helper.make_tensor_value_info("B", TensorProto.FLOAT, ["batch", "k", 5])],
    [seq, helper.make_tensor_value_info("C", TensorProto.FLOAT, ["batch", "m", 5])],
)
m = helper.make_model(g, producer_name="@dictlearn/backend-cpu",
                      opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
m.ir_version = 8
m.ClearField("producer_version")
out["models"].append({
    "spec": {
        "irVersion": 8,
        "opsets": [{"domain": "", "version": 17}, {"domain": "com.microsoft", "version": 1}],
        "producerName": "@dictlearn/backend-cpu",
        "graphName": "matmul_batched_tn",
        "nodes": [
            {"opType": "SequenceEmpty", "inputs": [], "outputs": ["S"],
             "attributes": [{"name": "dtype", "kind": "int", "value": 1}]},
            {"opType": "Transpose", "inputs": ["A"], "outputs": ["At"],
             "attributes": [{"name": "perm", "kind": "ints", "value": [0, 2, 1]}]},
            {"opType": "FusedMatMul", "inputs": ["At", "B"], "outputs": ["C"], "name": "fmm",
             "domain": "com.microsoft", "attributes": [{"name": "alpha", "kind": "float", "value": 0.5}]},
        ],
        "inputs": [value_spec("A", 1, ["batch", "k", "m"]), value_spec("B", 1, ["batch", "k", 5])],
        "outputs": [{"name": "S", "elemType": 1, "sequence": True}, value_spec("C", 1, ["batch", "m", 5])],
    },
    "hex": m.SerializeToString().hex(),
})

# 2. A dictionary-export-like graph with float32, int32 and int64 initializers (raw_data), a scalar,
#    and a negative attribute (TopK axis = -1, a 10-byte varint).
w = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) / 4
inits = [
    helper.make_tensor("W", TensorProto.FLOAT, [2, 3], w.tobytes(), raw=True),
    helper.make_tensor("zero", TensorProto.FLOAT, [], np.float32(0).tobytes(), raw=True),
    helper.make_tensor("k", TensorProto.INT64, [1], np.array([2], dtype=np.int64).tobytes(), raw=True),
    helper.make_tensor("ids", TensorProto.INT32, [2], np.array([-7, 9], dtype=np.int32).tobytes(), raw=True),
]
nodes = [
    helper.make_node("MatMul", ["x", "W"], ["mm"], name="MatMul_0"),
    helper.make_node("TopK", ["mm", "k"], ["v", "i"], name="TopK_1", axis=-1),
]
g = helper.make_graph(nodes, "dictlearn_topk_encode",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                      [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", 2])],
                      initializer=inits)
m = helper.make_model(g, producer_name="dictlearn", opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
out["models"].append({
    "spec": {
        "irVersion": 8,
        "opsets": [{"domain": "", "version": 17}],
        "producerName": "dictlearn",
        "graphName": "dictlearn_topk_encode",
        "nodes": [
            {"opType": "MatMul", "inputs": ["x", "W"], "outputs": ["mm"], "name": "MatMul_0"},
            {"opType": "TopK", "inputs": ["mm", "k"], "outputs": ["v", "i"], "name": "TopK_1",
             "attributes": [{"name": "axis", "kind": "int", "value": -1}]},
        ],
        "initializers": [
            {"name": "W", "dims": [2, 3], "float32": [float(v) for v in w.ravel()]},
            {"name": "zero", "dims": [], "float32": [0.0]},
            {"name": "k", "dims": [1], "int64": ["2"]},
            {"name": "ids", "dims": [2], "int32": [-7, 9]},
        ],
        "inputs": [value_spec("x", 1, ["batch", 2])],
        "outputs": [value_spec("v", 1, ["batch", 2])],
    },
    "hex": m.SerializeToString().hex(),
})

path = os.path.join(os.path.dirname(__file__), "..", "src", "io", "fixtures", "protobuf.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"wrote {os.path.normpath(path)}")
