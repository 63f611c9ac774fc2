/**
 * The plain `tinker` client sends forward_backward (and forward, as forward_only) as a
 * protobuf body. It is decoded here into the same JSON-shaped body the Fireworks SDK sends,
 * so both take one path through validation and translation (wire.ts). Forward results go
 * back in protobuf to a client that accepts it (the plain client accepts nothing else); the
 * trainer's batched tensors are already in the wire's layout, so they are passed through.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  DType,
  ForwardBackwardOutputSchema,
  ForwardBackwardRequestSchema,
  type Tensor,
} from '../../../gen/temper/tinkerwire/v1/tinker_wire_pb.js';
import type { ForwardBackwardOutput as TrainerOutput } from '../../../trainer/index.js';
import { invalid } from '../../http/errors.js';

export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';

/** An exact, aligned copy (a Node Buffer's slice shares the pool's larger buffer). */
function aligned(bytes: Uint8Array): ArrayBuffer {
  return new Uint8Array(bytes).buffer;
}

function values(bytes: Uint8Array, dtype: DType, what: string): number[] {
  const size = dtype === DType.INT64 ? 8 : dtype === DType.BFLOAT16 ? 2 : 4;
  if (bytes.byteLength % size !== 0)
    throw invalid(`${what}: ${bytes.byteLength} bytes is not a whole number of elements`);
  switch (dtype) {
    case DType.FLOAT32:
      return Array.from(new Float32Array(aligned(bytes)));
    case DType.INT32:
      return Array.from(new Int32Array(aligned(bytes)));
    case DType.INT64:
      return Array.from(new BigInt64Array(aligned(bytes)), Number);
    case DType.BFLOAT16: {
      // bfloat16 is the top half of a float32.
      const half = new Uint16Array(aligned(bytes));
      const wide = new Uint32Array(half.length);
      for (let i = 0; i < half.length; i++) wide[i] = half[i]! << 16;
      return Array.from(new Float32Array(wide.buffer));
    }
    default:
      throw invalid(`${what}: dtype is not set`);
  }
}

const DTYPE_NAME: Partial<Record<DType, string>> = {
  [DType.FLOAT32]: 'float32',
  [DType.INT32]: 'int32',
  [DType.INT64]: 'int64',
  [DType.BFLOAT16]: 'float32',
};

function tensorJson(t: Tensor, what: string): Record<string, unknown> {
  const shape = t.shape.map(Number);
  const dtype = DTYPE_NAME[t.dtype];
  if (!dtype) throw invalid(`${what}: dtype is not set`);
  if (t.encoding.case === 'sparseCsr') {
    const s = t.encoding.value;
    return {
      data: values(s.values, t.dtype, what),
      dtype,
      shape,
      sparse_crow_indices: values(s.crowIndices, DType.INT64, `${what}.crow_indices`),
      sparse_col_indices: values(s.colIndices, DType.INT64, `${what}.col_indices`),
    };
  }
  const data = values(t.encoding.value ?? new Uint8Array(), t.dtype, what);
  return { data, dtype, ...(shape.length ? { shape } : {}) };
}

/** The op (`forward` or `forward_backward`) and its body in the JSON form. */
export function decodeForwardBackward(bytes: Uint8Array): {
  op: 'forward' | 'forward_backward';
  body: Record<string, unknown>;
} {
  let msg: ReturnType<typeof fromBinary<typeof ForwardBackwardRequestSchema>>;
  try {
    msg = fromBinary(ForwardBackwardRequestSchema, bytes);
  } catch (err) {
    throw invalid(`body is not a ForwardBackwardRequest: ${(err as Error).message}`);
  }
  const data = msg.data.map((d, i) => ({
    model_input: {
      chunks: d.modelInput.map((c, j) => {
        if (c.chunk.case !== 'encodedText')
          throw invalid(
            `data[${i}].model_input.chunks[${j}]: only encoded_text chunks are supported (got ${c.chunk.case ?? 'an empty chunk'})`,
          );
        return {
          type: 'encoded_text',
          tokens: values(c.chunk.value.tokens, DType.INT32, `data[${i}].tokens`),
        };
      }),
    },
    loss_fn_inputs: Object.fromEntries(
      Object.entries(d.lossFnInputs).map(([k, t]) => [
        k,
        tensorJson(t, `data[${i}].loss_fn_inputs.${k}`),
      ]),
    ),
  }));
  const config: Record<string, number | string> = { ...msg.lossFnConfig };
  for (const [k, v] of Object.entries(msg.lossFnConfigV2))
    if (v.value.case) config[k] = v.value.value;
  const input = { data, loss_fn: msg.lossFn, loss_fn_config: config };
  return msg.forwardOnly
    ? { op: 'forward', body: { model_id: msg.modelId, seq_id: msg.seqId, forward_input: input } }
    : {
        op: 'forward_backward',
        body: { model_id: msg.modelId, seq_id: msg.seqId, forward_backward_input: input },
      };
}

/** The trainer's forward output as the wire's protobuf ForwardBackwardOutput. */
export function encodeForwardOutput(out: TrainerOutput | undefined): Uint8Array {
  const fields = Object.fromEntries(
    Object.entries(out?.lossFnOutputs ?? {}).map(([k, b]) => [
      k,
      // Same dtype numbering (float32 1, int64 2, int32 3, bfloat16 4) and byte layout.
      {
        data: b.data,
        offsets: b.offsets,
        dtype: b.dtype as number,
        trailingShape: b.trailingShape,
      },
    ]),
  );
  return toBinary(
    ForwardBackwardOutputSchema,
    create(ForwardBackwardOutputSchema, {
      lossFnOutputType: out?.lossFnOutputType || 'ArrayRecord',
      lossFnOutputs: [{ typeTag: 'ArrayRecord', fields, numDatums: out?.numDatums ?? 0n }],
      metrics: { ...(out?.metrics ?? {}) },
    }),
  );
}
