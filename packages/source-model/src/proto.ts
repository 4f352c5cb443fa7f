/**
 * The protobuf codec this package reads and edits ONNX models with: core's shared one (also used by
 * formats' ONNX export and backend-cpu's fast path), re-exported under the names this package's
 * modules import.
 *
 * @module
 */
export {
  concatBytes,
  encodeBytesField,
  encodeStringField,
  encodeVarintField,
  fieldString,
  ProtoError,
  type ProtoField,
  readFields,
  repeatedVarints,
  WIRE_I32,
  WIRE_I64,
  WIRE_LEN,
  WIRE_VARINT,
} from '@dictlearn/core';
