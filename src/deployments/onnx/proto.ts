// A minimal encoder for the subset of onnx.proto (ONNX IR) that our exporter writes:
// ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto.
// Field numbers follow https://github.com/onnx/onnx/blob/main/onnx/onnx.proto.
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

export const TensorDataType = {
  FLOAT: 1,
  INT32: 6,
  INT64: 7,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
} as const;
export type TensorDataTypeId = (typeof TensorDataType)[keyof typeof TensorDataType];

export type AttributeValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'string'; value: string };

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  dataType: TensorDataTypeId;
  /** Little-endian raw bytes of the tensor (absent when it is `external`). */
  raw?: Uint8Array;
  /** Where the bytes are instead: a region of an external data blob given at session creation. */
  external?: { location: string; offset: number; length: number };
}

/** A dimension: a fixed size or a symbolic name. */
export type OnnxDim = number | string;

export interface OnnxValueInfo {
  name: string;
  elemType: TensorDataTypeId;
  shape: OnnxDim[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetVersion: number;
  producerName: string;
  graph: OnnxGraph;
  /** Opsets of other domains the nodes use (e.g. com.microsoft contrib operators). */
  domainOpsets?: { domain: string; version: number }[];
}

const LEN = WireType.LengthDelimited;
const VARINT = WireType.Varint;
const ATTR_TYPE = { float: 1, int: 2, string: 3, ints: 7 } as const;

function writeAttribute(w: BinaryWriter, name: string, a: AttributeValue): void {
  w.tag(1, LEN).string(name);
  switch (a.kind) {
    case 'float':
      w.tag(2, WireType.Bit32).float(a.value);
      break;
    case 'int':
      w.tag(3, VARINT).int64(a.value);
      break;
    case 'string':
      w.tag(4, LEN).bytes(new TextEncoder().encode(a.value));
      break;
    case 'ints':
      for (const v of a.value) w.tag(8, VARINT).int64(v);
      break;
  }
  w.tag(20, VARINT).int32(ATTR_TYPE[a.kind]);
}

function writeNode(w: BinaryWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.tag(1, LEN).string(i);
  for (const o of n.outputs) w.tag(2, LEN).string(o);
  if (n.name) w.tag(3, LEN).string(n.name);
  w.tag(4, LEN).string(n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) {
    w.tag(5, LEN).fork();
    writeAttribute(w, k, v);
    w.join();
  }
  if (n.domain) w.tag(7, LEN).string(n.domain);
}

function writeTensor(w: BinaryWriter, t: OnnxTensor): void {
  for (const d of t.dims) w.tag(1, VARINT).int64(d);
  w.tag(2, VARINT).int32(t.dataType);
  w.tag(8, LEN).string(t.name);
  if (t.raw) w.tag(9, LEN).bytes(t.raw);
  if (t.external) {
    const { location, offset, length } = t.external;
    for (const [key, value] of [
      ['location', location],
      ['offset', String(offset)],
      ['length', String(length)],
    ] as const)
      w.tag(13, LEN).fork().tag(1, LEN).string(key).tag(2, LEN).string(value).join();
    w.tag(14, VARINT).int32(1); // data_location: EXTERNAL
  }
}

function writeValueInfo(w: BinaryWriter, v: OnnxValueInfo): void {
  w.tag(1, LEN).string(v.name);
  w.tag(2, LEN).fork(); // TypeProto
  w.tag(1, LEN).fork(); // TypeProto.Tensor
  w.tag(1, VARINT).int32(v.elemType);
  w.tag(2, LEN).fork(); // TensorShapeProto
  for (const d of v.shape) {
    w.tag(1, LEN).fork();
    if (typeof d === 'number') w.tag(1, VARINT).int64(d);
    else w.tag(2, LEN).string(d);
    w.join();
  }
  w.join().join().join();
}

/** Serialises a model to ONNX protobuf bytes. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, VARINT).int64(m.irVersion);
  w.tag(2, LEN).string(m.producerName);
  w.tag(7, LEN).fork();
  const g = m.graph;
  for (const n of g.nodes) {
    w.tag(1, LEN).fork();
    writeNode(w, n);
    w.join();
  }
  w.tag(2, LEN).string(g.name);
  for (const t of g.initializers) {
    w.tag(5, LEN).fork();
    writeTensor(w, t);
    w.join();
  }
  for (const v of g.inputs) {
    w.tag(11, LEN).fork();
    writeValueInfo(w, v);
    w.join();
  }
  for (const v of g.outputs) {
    w.tag(12, LEN).fork();
    writeValueInfo(w, v);
    w.join();
  }
  w.join();
  for (const o of [{ domain: '', version: m.opsetVersion }, ...(m.domainOpsets ?? [])]) {
    w.tag(8, LEN).fork();
    w.tag(1, LEN).string(o.domain);
    w.tag(2, VARINT).int64(o.version);
    w.join();
  }
  return w.finish();
}

export function int64Tensor(name: string, values: number[], dims = [values.length]): OnnxTensor {
  const a = BigInt64Array.from(values.map((v) => BigInt(v)));
  return { name, dims, dataType: TensorDataType.INT64, raw: new Uint8Array(a.buffer) };
}

export function floatTensor(name: string, data: Float32Array, dims: number[]): OnnxTensor {
  return {
    name,
    dims,
    dataType: TensorDataType.FLOAT,
    raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}
