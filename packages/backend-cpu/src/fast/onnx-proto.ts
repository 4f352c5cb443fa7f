/**
 * The ONNX model encoder the fast path builds its MatMul models with (in memory, instead of shipping
 * `.onnx` files or depending on protobufjs and the onnx schema for a few hundred bytes of output).
 * It is core's shared writer (`encodeOnnxModel`, also used by formats' ONNX export), under the names
 * this package has always used.
 *
 * @module
 */
export {
  encodeOnnxModel as encodeModel,
  ONNX_FLOAT,
  type OnnxAttributeSpec as AttributeSpec,
  type OnnxModelSpec as ModelSpec,
  type OnnxNodeSpec as NodeSpec,
  type OnnxValueSpec as ValueSpec,
} from '@dictlearn/core';
