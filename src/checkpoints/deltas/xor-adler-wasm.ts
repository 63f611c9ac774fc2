// out = a XOR b with the Adler-32 of out, as a WebAssembly SIMD kernel (about 4x the fused
// JavaScript loop in adler32.ts): the step of applying an arc_v2 delta that runs on the
// main thread while zstd inflates the next tensors on libuv's pool.
//
// The module is assembled here, byte by byte, so that nothing is built or downloaded. It owns
// two pages of memory: CHUNK bytes of `a` at 0, of `b` at CHUNK, the result at 2·CHUNK. The
// caller copies chunks in and out (memcpy of L2-sized blocks; the kernel itself never sees JS
// memory). xa(n, adler) processes n ≤ CHUNK bytes and returns the running checksum.
//
// Per 16-byte block v (bytes x0..x15), with A the running byte sum and B the sum of A:
//   B += 16·A + Σ (16 − j)·xj      A += Σ xj
// kept as four-lane partial sums: vA (bytes so far), vP (Σ of vA before each block: the
// 16·A terms) and vW (the weighted sums, via i32x4.dot_i16x8_s). After the blocks of one call:
//   A' = A + ΣvA      B' = B + 16·(K·A + ΣvP) + ΣvW      (K blocks)
// then both modulo 65521, and a scalar loop for the last n mod 16 bytes. A call's lanes stay
// below 2^32: at most 2048 blocks of 4 bytes of 255 per lane.

const CHUNK = 32768;
const MOD = 65521;

/** Unsigned and signed LEB128. */
const uleb = (v: number): number[] => {
  const out: number[] = [];
  do {
    const byte = v & 0x7f;
    v >>>= 7;
    out.push(v ? byte | 0x80 : byte);
  } while (v);
  return out;
};
const sleb = (v: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && !(byte & 0x40)) || (v === -1 && byte & 0x40);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
};

const I32 = 0x7f;
const I64 = 0x7e;
const V128 = 0x7b;
// locals: params n, start; then i, end, byte (i32), a, b (i64), v, vA, vP, vW (v128)
const [N, START, I, END, BYTE, A, B, V, VA, VP, VW] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

// Core opcodes used below: 0x02 block, 0x03 loop, 0x0b end, 0x0c br, 0x0d br_if,
// 0x2d i32.load8_u, 0x3a i32.store8, 0x4f i32.ge_u, 0x6a i32.add, 0x71 i32.and, 0x72 i32.or,
// 0x73 i32.xor, 0x74 i32.shl, 0x76 i32.shr_u, 0x7c i64.add, 0x7e i64.mul, 0x82 i64.rem_u,
// 0xa7 i32.wrap_i64, 0xad i64.extend_i32_u. SIMD ones (0xfd prefix) are named constants.
const get = (l: number) => [0x20, l];
const set = (l: number) => [0x21, l];
const i32 = (v: number) => [0x41, ...sleb(v)];
const i64 = (v: number) => [0x42, ...sleb(v)];
const simd = (op: number) => [0xfd, ...uleb(op)];
const mem = (offset: number) => [0, ...uleb(offset)]; // align hint 1, offset
const [ADD32, DOT, EXT_LO_U, EXT_HI_U, PAIR8_U, PAIR16_U, XOR, LANE] = [
  0xae, 0xba, 0x89, 0x8a, 0x7d, 0x7f, 0x51, 0x1b,
];
const v128Const = (lanes16: number[]) => [
  ...simd(0x0c),
  ...lanes16.flatMap((x) => [x & 0xff, x >>> 8]),
];
/** Σ of the four u32 lanes of a v128 local, as i64. */
const hsum = (l: number) =>
  [0, 1, 2, 3].flatMap((lane) => [
    ...get(l),
    ...simd(LANE),
    lane,
    0xad, // i64.extend_i32_u
    ...(lane ? [0x7c] : []), // i64.add
  ]);

// biome-ignore format: an assembly listing, one instruction (opcode and immediates) per group
function body(): number[] {
  const blocks = [
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(I), ...get(END), 0x4f, 0x0d, 1, // i >= end: br_if out
    ...get(I), ...simd(0x00), ...mem(0), // v = a[i..] ^ b[i..]
    ...get(I), ...simd(0x00), ...mem(CHUNK),
    ...simd(XOR), ...set(V),
    ...get(I), ...get(V), ...simd(0x0b), ...mem(2 * CHUNK), // out[i..] = v
    ...get(VP), ...get(VA), ...simd(ADD32), ...set(VP), // vP += vA
    ...get(VA), ...get(V), ...simd(PAIR8_U), ...simd(PAIR16_U), ...simd(ADD32), ...set(VA),
    ...get(VW), // vW += Σ (16 − j)·xj
    ...get(V), ...simd(EXT_LO_U), ...v128Const([16, 15, 14, 13, 12, 11, 10, 9]), ...simd(DOT),
    ...simd(ADD32),
    ...get(V), ...simd(EXT_HI_U), ...v128Const([8, 7, 6, 5, 4, 3, 2, 1]), ...simd(DOT),
    ...simd(ADD32), ...set(VW),
    ...get(I), ...i32(16), 0x6a, ...set(I), // i += 16
    0x0c, 0, 0x0b, 0x0b, // br loop, end, end
  ];
  const fold = [
    // b += 16·(K·a + ΣvP) + ΣvW; a += ΣvA
    ...get(B),
    ...get(END), ...i32(4), 0x76, 0xad, ...get(A), 0x7e, // K·a
    ...hsum(VP), 0x7c, ...i64(16), 0x7e, 0x7c,
    ...hsum(VW), 0x7c, ...set(B),
    ...get(A), ...hsum(VA), 0x7c, ...set(A),
  ];
  const tail = [
    0x02, 0x40, 0x03, 0x40,
    ...get(I), ...get(N), 0x4f, 0x0d, 1,
    ...get(I), 0x2d, ...mem(0), ...get(I), 0x2d, ...mem(CHUNK), 0x73, ...set(BYTE),
    ...get(I), ...get(BYTE), 0x3a, ...mem(2 * CHUNK),
    ...get(A), ...get(BYTE), 0xad, 0x7c, ...set(A), // a += byte
    ...get(B), ...get(A), 0x7c, ...set(B), // b += a
    ...get(I), ...i32(1), 0x6a, ...set(I),
    0x0c, 0, 0x0b, 0x0b,
  ];
  const mod = (l: number) => [...get(l), ...i64(MOD), 0x82, ...set(l)];
  return [
    ...get(START), ...i32(0xffff), 0x71, 0xad, ...set(A), // a = start & 0xffff
    ...get(START), ...i32(16), 0x76, 0xad, ...set(B), // b = start >>> 16
    ...get(N), ...i32(-16), 0x71, ...set(END), // end = n & ~15
    ...blocks, ...fold, ...mod(A), ...mod(B),
    ...tail, ...mod(A), ...mod(B),
    ...get(B), 0xa7, ...i32(16), 0x74, ...get(A), 0xa7, 0x72, // (b << 16) | a
    0x0b,
  ];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];

/** The module's bytes. */
export function xorAdlerModule(): Uint8Array {
  const locals = [3, 3, I32, 2, I64, 4, V128];
  const code = [...locals, ...body()];
  // biome-ignore format: one section per line
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    ...section(1, [1, 0x60, 2, I32, I32, 1, I32]), // type: (i32 n, i32 adler) -> i32
    ...section(3, [1, 0]), // one function of that type
    ...section(5, [1, 0x00, 2]), // one memory, two pages
    ...section(7, [2, ...name('mem'), 0x02, 0, ...name('xa'), 0x00, 0]), // exports
    ...section(10, [1, ...uleb(code.length), ...code]),
  ]);
}

interface Kernel {
  mem: Uint8Array;
  xa: (n: number, start: number) => number;
}

/** The slice of the WebAssembly global used here (our TypeScript libs do not declare it). */
interface Wasm {
  Module: new (bytes: Uint8Array) => unknown;
  Instance: new (module: unknown) => { exports: unknown };
}

let kernel: Kernel | null | undefined;

/** The instantiated kernel, or null where WebAssembly SIMD is unavailable. */
function instance(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const wasm = (globalThis as { WebAssembly?: Wasm }).WebAssembly;
    if (!wasm) throw new Error('no WebAssembly');
    const inst = new wasm.Instance(new wasm.Module(xorAdlerModule()));
    const ex = inst.exports as { mem: { buffer: ArrayBuffer }; xa: Kernel['xa'] };
    kernel = { mem: new Uint8Array(ex.mem.buffer), xa: ex.xa };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** out = a XOR b and Adler-32 of out through the SIMD kernel; null when it is unavailable. */
export function xorAdler32Simd(out: Uint8Array, a: Uint8Array, b: Uint8Array): number | null {
  const k = instance();
  if (!k) return null;
  const n = out.length;
  let sum = 1;
  for (let o = 0; o < n; o += CHUNK) {
    const c = Math.min(CHUNK, n - o);
    k.mem.set(a.subarray(o, o + c), 0);
    k.mem.set(b.subarray(o, o + c), CHUNK);
    sum = k.xa(c, sum);
    out.set(k.mem.subarray(2 * CHUNK, 2 * CHUNK + c), o);
  }
  return sum >>> 0;
}
