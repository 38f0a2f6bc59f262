/**
 * The WebAssembly SIMD kernels (asm/kernels.ts, compiled into ./kernels.ts by `npm run build:wasm`)
 * and the linear memory they work in. Pure: no node:* imports; the module is compiled and
 * instantiated synchronously from the embedded bytes on first use, once per thread.
 *
 * A kernel call takes the workspace (`begin`), lays out its buffers in it with `alloc` (64-byte
 * aligned, from the module's heap base up; nothing is freed, the next call starts over), grows the
 * memory once with `commit`, copies its operands in, runs, copies the result out, and calls `end`.
 * The worker runs one task at a time, so one workspace per thread is enough. Memory is kept for the
 * next call, unless a call needed more than RETAIN_BYTES: then the instance is dropped (the garbage
 * collector frees its memory) and the next call instantiates again from the compiled module, which
 * keeps its optimized code.
 */
import { KERNELS_WASM_BASE64 } from './kernels.js'

type Ptr = number

/** The module's exports (addresses are byte offsets, counts and strides in elements). */
export interface KernelExports {
  memory: { buffer: ArrayBuffer, grow: (pages: number) => number }
  heapBase: () => Ptr
  workBytes: () => number
  tapBytes: (depth: number) => number
  gemmF32: GemmFn
  gemmF64: GemmFn
  gemmBatchF32: GemmBatchFn
  gemmBatchF64: GemmBatchFn
  conv2dF32: Conv2dFn
  conv2dF64: Conv2dFn
  attentionF32: AttentionFn
  attentionF64: AttentionFn
  dotF32: (n: number, a: Ptr, b: Ptr) => number
  dotF64: (n: number, a: Ptr, b: Ptr) => number
  /** o = op(x) over n float32 (o may be x); op 0 neg, 1 abs, 2 sqrt, 3 square, 4 reciprocal, 5 relu. */
  unaryF32: (op: number, n: number, x: Ptr, o: Ptr) => void
  /** o = a op b over n float32 (o may be a or b); op 0 add, 1 sub, 2 mul, 3 div. */
  binaryF32: (op: number, n: number, a: Ptr, b: Ptr, o: Ptr) => void
  /** Adds each row's Σ (x − center[r])^power (center 0: none) to its four float64 accumulators at acc. */
  rowSumsF32: (rows: number, n: number, x: Ptr, power: number, center: Ptr, acc: Ptr) => void
  /** Adds (x[r,c] − center[c])^power (center 0: none) over rows x w float32 to the float64 accumulators acc[c]. */
  colSumsF32: (rows: number, w: number, x: Ptr, power: number, center: Ptr, acc: Ptr) => void
  /** Each row's maximum (max 1) or minimum by f32.max / f32.min, as float64 at out[r]. */
  rowExtremesF32: (rows: number, n: number, x: Ptr, max: number, out: Ptr) => void
  /** Folds rows x w float32 into the float32 running maximum (max 1) or minimum of each column at acc[c]. */
  colExtremesF32: (rows: number, w: number, x: Ptr, max: number, acc: Ptr) => void
  /** layer_norm of rows x n float32 at x into o (o may be x); w and b n float32 each, or 0 when absent. */
  layerNormF32: (rows: number, n: number, x: Ptr, w: Ptr, b: Ptr, eps: number, o: Ptr) => void
  /** rows x inner float64 at src as JSON text at dst (rows back to back, row r ending at ends[r]); returns the bytes. */
  formatRowsF64: (src: Ptr, rows: number, inner: number, dst: Ptr, ends: Ptr) => number
  /** The rows of numbers of a JSON text: values to `values`, (start, end, first value, count) i32 quadruples to `rows`; returns the rows. */
  scanRows: (text: Ptr, len: number, values: Ptr, maxValues: number, rows: Ptr, maxRows: number,
    spans: Ptr, spanTable: Ptr, maxSpans: number, minSpan: number, maxSpan: number) => number
  /** The base64 spans the last scanRows decoded: (start, end, byte offset, bytes) i32 quadruples in its spanTable. */
  spansFound: () => number
}

/** C (= or += when acc = 1) A·B: A m x k with element strides (rsa, csa), B k x n (rsb, csb), C row stride ldc. */
type GemmFn = (m: number, n: number, k: number, a: Ptr, rsa: number, csa: number, b: Ptr, rsb: number, csb: number,
  c: Ptr, ldc: number, acc: number, work: Ptr) => void
type GemmBatchFn = (batches: number, m: number, n: number, k: number, a: Ptr, aOffsets: Ptr, b: Ptr, bOffsets: Ptr, c: Ptr, work: Ptr) => void
type Conv2dFn = (nhwc: number, N: number, C: number, H: number, W: number, K: number, kh: number, kw: number,
  OH: number, OW: number, sh: number, sw: number, dh: number, dw: number, padTop: number, padLeft: number,
  groups: number, input: Ptr, kernel: Ptr, bias: Ptr, out: Ptr, work: Ptr, taps: Ptr, planar: Ptr) => void
/** B batches; q/k/v/mask offsets are i32 element-offset tables; weights at s + t·sStride, output at o + t·Lq·Ev. */
type AttentionFn = (B: number, Lq: number, Lk: number, E: number, Ev: number, q: Ptr, qOffsets: Ptr, k: Ptr, kOffsets: Ptr,
  v: Ptr, vOffsets: Ptr, scale: number, causal: number, maskKind: number, mask: Ptr, mOffsets: Ptr, mRow: number,
  mCol: number, s: Ptr, sStride: number, o: Ptr, work: Ptr) => void

/** The slice of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: unknown }
}

/**
 * float32 problems smaller than this many multiply-adds run on the float64 kernels (their result
 * rounded to float32 at the end): that costs microseconds, and tiny products, whose few outputs can
 * cancel far below their terms, then agree with a double-precision reference to the last bit
 * rather than to float32's accumulated rounding. Larger ones accumulate in float32, as NumPy does.
 */
export const F32_MIN_MACS = 1 << 16

/** Whether a problem with this output and this many multiply-adds computes in float32. */
export function computesInF32 (out: ArrayLike<number>, macs: number): boolean {
  return out instanceof Float32Array && macs >= F32_MIN_MACS
}

/**
 * Elements per call of the streaming kernels (elementwise, layer_norm): an operand goes through the
 * module's memory a chunk at a time (128 KiB of float32), so that a chunk copied in is still in
 * cache when it is computed and copied out, and a call's memory stays small whatever the tensor's
 * size. Copied whole, a 4 MB operand is read from memory three times; in chunks, once.
 */
export const STREAM_CHUNK = 1 << 15

const PAGE = 65536
const ALIGN = 64
/** Memory kept between calls; a call that needed more drops the instance afterwards. */
export const RETAIN_BYTES = 64 * 1024 * 1024

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

/** Standard padded base64 to bytes (no Buffer, no atob). */
export function decodeBase64 (text: string): Uint8Array {
  const lookup = new Uint8Array(128)
  for (let i = 0; i < B64.length; i++) lookup[B64.charCodeAt(i)] = i
  let len = text.length
  while (len > 0 && text[len - 1] === '=') len--
  const out = new Uint8Array((len * 3) >> 2)
  let o = 0
  let acc = 0
  let bits = 0
  for (let i = 0; i < len; i++) {
    acc = (acc << 6) | lookup[text.charCodeAt(i)]
    bits += 6
    if (bits >= 8) {
      bits -= 8
      out[o++] = (acc >> bits) & 0xff
    }
  }
  return out
}

let compiled: object | null = null
let instance: KernelExports | null = null
/** The end of the memory the instance's calls have written. */
let highWater = 0

function kernels (): KernelExports {
  if (instance === null) {
    const api = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly
    compiled ??= new api.Module(decodeBase64(KERNELS_WASM_BASE64))
    const abort = (): never => { throw new Error('wasm kernel aborted') }
    instance = new api.Instance(compiled, { env: { abort } }).exports as KernelExports
  }
  return instance
}

/** The per-thread workspace in the module's memory. */
export class Workspace {
  readonly x: KernelExports
  private top: number

  constructor (x: KernelExports) {
    this.x = x
    this.top = x.heapBase()
  }

  /** Reserves count elements of `bytes` bytes each; returns the (aligned) address. */
  alloc (count: number, bytes: number): Ptr {
    const p = Math.ceil(this.top / ALIGN) * ALIGN
    this.top = p + count * bytes
    return p
  }

  /** The GEMM scratch every kernel call needs. */
  allocWork (): Ptr {
    return this.alloc(this.x.workBytes(), 1)
  }

  /**
   * Grows the memory to hold everything allocated so far (before any view is taken). `touched`:
   * the end of what the call will write (default: all of it; see used).
   */
  commit (touched = this.top): void {
    const have = this.x.memory.buffer.byteLength
    if (this.top > have) this.x.memory.grow(Math.ceil((this.top - have) / PAGE))
    this.used(touched)
  }

  /**
   * Records that the call wrote up to address p: a call that reserves more than it writes (the JSON
   * scan's tables) tells what it wrote, and only memory written counts against RETAIN_BYTES (pages
   * never written take no memory).
   */
  used (p: Ptr): void {
    if (p > highWater) highWater = p
  }

  get bytes (): number {
    return this.top
  }

  f32 (p: Ptr, length: number): Float32Array {
    return new Float32Array(this.x.memory.buffer, p, length)
  }

  f64 (p: Ptr, length: number): Float64Array {
    return new Float64Array(this.x.memory.buffer, p, length)
  }

  /** A view of `length` elements at p: float32 when `single`, else float64. */
  view (single: boolean, p: Ptr, length: number): Float32Array | Float64Array {
    return single ? this.f32(p, length) : this.f64(p, length)
  }

  i32 (p: Ptr, length: number): Int32Array {
    return new Int32Array(this.x.memory.buffer, p, length)
  }

  u8 (p: Ptr, length: number): Uint8Array {
    return new Uint8Array(this.x.memory.buffer, p, length)
  }
}

/** Starts a kernel call: a fresh workspace over the (possibly re-created) module instance. */
export function begin (): Workspace {
  return new Workspace(kernels())
}

/** Ends a kernel call: drops the instance if its calls have written more than RETAIN_BYTES of its memory. */
export function end (): void {
  if (instance !== null && highWater > RETAIN_BYTES) {
    instance = null
    highWater = 0
  }
}
