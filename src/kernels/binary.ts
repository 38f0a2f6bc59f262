/**
 * binary: an elementwise operation of two tensors with NumPy broadcasting (torch.add, sub, mul,
 * div, pow, maximum, minimum), computed in the result dtype's kernel type.
 */
import { invalidArgument } from '../errors.js'
import { alignedStrides, broadcastShapes, checkFlops, elementCount } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { begin, end, STREAM_CHUNK } from './wasm/runtime.js'

export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'] as const
export type BinaryOp = typeof BINARY_OPS[number]

export interface BinaryInfo {
  op: BinaryOp
  aShape: number[]
  bShape: number[]
  outShape: number[]
  outElements: number
  aLength: number
  bLength: number
  /** Per dimension of the result, each operand's stride in elements (0 where it broadcasts). */
  aStrides: number[]
  bStrides: number[]
  flops: number
}

export interface BinaryOperands { a: FloatArray, b: FloatArray, info: BinaryInfo }

export function binaryInfo (op: string, aShape: number[], bShape: number[], limits: Limits): BinaryInfo {
  if (!(BINARY_OPS as readonly string[]).includes(op)) {
    throw invalidArgument(`op must be one of ${BINARY_OPS.join(', ')}; got ${JSON.stringify(op)}`)
  }
  const aLength = elementCount(aShape, 'a', limits)
  const bLength = elementCount(bShape, 'b', limits)
  const outShape = broadcastShapes([aShape, bShape], ['a', 'b'], 'the shapes of a and b')
  const outElements = elementCount(outShape, 'the result', limits)
  checkFlops(outElements, `this ${op}`, limits)
  return {
    op: op as BinaryOp,
    aShape,
    bShape,
    outShape,
    outElements,
    aLength,
    bLength,
    aStrides: alignedStrides(aShape, outShape.length),
    bStrides: alignedStrides(bShape, outShape.length),
    flops: outElements
  }
}

/** Whether the result is one run of forEachRun: operands of the result's length, or of one element. */
function oneRun ({ outElements, aLength, bLength }: BinaryInfo): boolean {
  return (aLength === outElements || aLength === 1) && (bLength === outElements || bLength === 1)
}

/** The length of forEachRun's runs. */
export function runLength (info: BinaryInfo): number {
  return oneRun(info) ? info.outElements : info.outShape[info.outShape.length - 1]
}

/**
 * Visits the result in row-major order, a run of `n` elements at a time: the run starts at `o` in
 * the result and at `ia`, `ib` in the operands, which advance by `sa`, `sb` (1, or 0 where an
 * operand broadcasts) along it. Same-shaped operands, or one of them a single element, are one run.
 */
export function forEachRun (info: BinaryInfo, run: (o: number, ia: number, ib: number, n: number, sa: number, sb: number) => void): void {
  const { outShape, outElements, aStrides, bStrides, aLength, bLength } = info
  if (outElements === 0) return
  if (oneRun(info)) {
    run(0, 0, 0, outElements, aLength === 1 ? 0 : 1, bLength === 1 ? 0 : 1)
    return
  }
  const rank = outShape.length
  const n = outShape[rank - 1]
  const sa = aStrides[rank - 1]
  const sb = bStrides[rank - 1]
  const idx = new Array<number>(rank).fill(0)
  let ia = 0
  let ib = 0
  for (let o = 0; o < outElements; o += n) {
    run(o, ia, ib, n, sa, sb)
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]++
      ia += aStrides[d]
      ib += bStrides[d]
      if (idx[d] < outShape[d]) break
      ia -= aStrides[d] * idx[d]
      ib -= bStrides[d] * idx[d]
      idx[d] = 0
    }
  }
}

/**
 * C's pow (torch.pow): as Math.pow, but 1 to any power and any number to the power 0 are 1, and
 * -1 to an infinite power is 1 (Math.pow gives NaN for `1 ** NaN`, `1 ** ±Infinity`, `(-1) ** ±Infinity`).
 */
export function powC (x: number, y: number): number {
  if (x === 1 || y === 0) return 1
  if (x === -1 && (y === Infinity || y === -Infinity)) return 1
  return Math.pow(x, y)
}

/** torch.maximum: NaN when either is NaN; on a tie (0 and -0 too), a. */
export function maximumOf (x: number, y: number): number {
  return x !== x || y !== y ? NaN : x < y ? y : x // eslint-disable-line no-self-compare -- NaN tests
}

/** torch.minimum: NaN when either is NaN; on a tie (0 and -0 too), a. */
export function minimumOf (x: number, y: number): number {
  return x !== x || y !== y ? NaN : y < x ? y : x // eslint-disable-line no-self-compare -- NaN tests
}

type Run = (out: FloatArray, a: FloatArray, b: FloatArray, o: number, ia: number, ib: number, n: number, sa: number, sb: number) => void

/** Each operation's loop over one run (one loop per operation: no call per element). */
const RUNS: Record<BinaryOp, Run> = {
  add (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa] + b[ib + j * sb] },
  sub (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa] - b[ib + j * sb] },
  mul (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa] * b[ib + j * sb] },
  div (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa] / b[ib + j * sb] },
  pow (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = powC(a[ia + j * sa], b[ib + j * sb]) },
  maximum (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = maximumOf(a[ia + j * sa], b[ib + j * sb]) },
  minimum (out, a, b, o, ia, ib, n, sa, sb) { for (let j = 0; j < n; j++) out[o + j] = minimumOf(a[ia + j * sa], b[ib + j * sb]) }
}

/**
 * Fills out (info.outElements long) with op(a, b) broadcast. Each value is computed in doubles and
 * stored into out's type: for add, sub, mul, div, maximum and minimum that is the correctly rounded
 * float32 result, as float32 arithmetic gives it.
 */
export function binary (out: FloatArray, a: FloatArray, b: FloatArray, info: BinaryInfo): FloatArray {
  const loop = RUNS[info.op]
  forEachRun(info, (o, ia, ib, n, sa, sb) => loop(out, a, b, o, ia, ib, n, sa, sb))
  return out
}

/**
 * The operations the WebAssembly SIMD kernel computes in float32 (asm/kernels.ts, binaryF32), by its
 * code: correctly rounded, so the same values as the loops above.
 */
const WASM_BINARY: Partial<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 }

/** Whether binaryF32 computes this operation. */
export function hasBinaryF32 (op: BinaryOp): boolean {
  return WASM_BINARY[op] !== undefined
}

/**
 * binary of float32 operands on the WebAssembly SIMD kernel, for the operations of hasBinaryF32:
 * the result a chunk (STREAM_CHUNK) at a time, each operand's runs copied into the kernel's memory
 * (a broadcast value filled in), computed there in place and copied out. Each run costs a copy
 * call, so runs of a few elements are better left to the loops (runLength).
 */
export function binaryF32 (out: Float32Array, a: Float32Array, b: Float32Array, info: BinaryInfo): Float32Array {
  const code = WASM_BINARY[info.op]
  if (code === undefined) throw new Error(`no float32 kernel for ${info.op}`)
  const size = Math.min(info.outElements, STREAM_CHUNK)
  if (size === 0) return out
  const ws = begin()
  try {
    const pa = ws.alloc(size, 4)
    const pb = ws.alloc(size, 4)
    ws.commit()
    const ca = ws.f32(pa, size)
    const cb = ws.f32(pb, size)
    // the chunk holds `filled` elements of the result from `start` on (runs are consecutive in it)
    let start = 0
    let filled = 0
    const flush = (): void => {
      ws.x.binaryF32(code, filled, pa, pb, pa)
      out.set(filled === size ? ca : ca.subarray(0, filled), start)
      start += filled
      filled = 0
    }
    forEachRun(info, (_o, ia, ib, n, sa, sb) => {
      for (let j = 0; j < n;) {
        const take = Math.min(n - j, size - filled)
        if (sa === 1) ca.set(a.subarray(ia + j, ia + j + take), filled)
        else ca.fill(a[ia], filled, filled + take)
        if (sb === 1) cb.set(b.subarray(ib + j, ib + j + take), filled)
        else cb.fill(b[ib], filled, filled + take)
        filled += take
        j += take
        if (filled === size) flush()
      }
    })
    if (filled > 0) flush()
  } finally {
    end()
  }
  return out
}
