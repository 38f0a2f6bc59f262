/** unary: an elementwise function of one tensor, as torch computes it (torch.neg, abs, exp, …). */
import { invalidArgument } from '../errors.js'
import { erf, erfc } from './erf.js'
import { checkFlops, elementCount } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { begin, end, STREAM_CHUNK } from './wasm/runtime.js'

export const UNARY_OPS = [
  'neg', 'abs', 'exp', 'log', 'sqrt', 'square', 'reciprocal', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'gelu', 'silu', 'softplus', 'erf'
] as const
export type UnaryOp = typeof UNARY_OPS[number]

export interface UnaryInfo { op: UnaryOp, outShape: number[], outElements: number, flops: number }
export interface UnaryOperands { input: FloatArray, info: UnaryInfo }

export function unaryInfo (op: string, shape: number[], limits: Limits): UnaryInfo {
  if (!(UNARY_OPS as readonly string[]).includes(op)) {
    throw invalidArgument(`op must be one of ${UNARY_OPS.join(', ')}; got ${JSON.stringify(op)}`)
  }
  const outElements = elementCount(shape, 'input', limits)
  checkFlops(outElements, `this ${op}`, limits)
  return { op: op as UnaryOp, outShape: shape, outElements, flops: outElements }
}

/** The logistic function, without overflow on either side. */
export function sigmoidOf (v: number): number {
  if (v >= 0) return 1 / (1 + Math.exp(-v))
  const e = Math.exp(v)
  return e / (1 + e)
}

/** torch's softplus (beta 1, threshold 20): x above 20, else log(1 + e^x). */
export function softplusOf (v: number): number {
  return v > 20 ? v : Math.log1p(Math.exp(v))
}

type Loop = (out: FloatArray, x: FloatArray, n: number) => void

/** Each function's loop (one loop per function: no call per element for the arithmetic ones). */
const LOOPS: Record<UnaryOp, Loop> = {
  neg (out, x, n) { for (let i = 0; i < n; i++) out[i] = -x[i] },
  abs (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]) },
  exp (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]) },
  log (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.log(x[i]) },
  sqrt (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]) },
  square (out, x, n) { for (let i = 0; i < n; i++) out[i] = x[i] * x[i] },
  reciprocal (out, x, n) { for (let i = 0; i < n; i++) out[i] = 1 / x[i] },
  sin (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.sin(x[i]) },
  cos (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.cos(x[i]) },
  tanh (out, x, n) { for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]) },
  sigmoid (out, x, n) { for (let i = 0; i < n; i++) out[i] = sigmoidOf(x[i]) },
  // x < 0 ? 0 : x keeps NaN, as torch.relu does
  relu (out, x, n) { for (let i = 0; i < n; i++) out[i] = x[i] < 0 ? 0 : x[i] },
  // exact GELU as x/2·erfc(-x/√2), as linear's gelu (docs/choices.md)
  gelu (out, x, n) { for (let i = 0; i < n; i++) out[i] = 0.5 * x[i] * erfc(-x[i] * Math.SQRT1_2) },
  // x / (1 + e^-x), as torch writes it (so silu(-∞) is NaN, as torch's)
  silu (out, x, n) { for (let i = 0; i < n; i++) out[i] = x[i] / (1 + Math.exp(-x[i])) },
  softplus (out, x, n) { for (let i = 0; i < n; i++) out[i] = softplusOf(x[i]) },
  erf (out, x, n) { for (let i = 0; i < n; i++) out[i] = erf(x[i]) }
}

/** Fills out (info.outElements long) with op(x), each value computed in doubles and stored in out's type. */
export function unary (out: FloatArray, x: FloatArray, info: UnaryInfo): FloatArray {
  LOOPS[info.op](out, x, info.outElements)
  return out
}

/**
 * The functions the WebAssembly SIMD kernel computes in float32 (asm/kernels.ts, unaryF32), by its
 * code: each one correctly rounded operation, so the same values as the loops above.
 */
const WASM_UNARY: Partial<Record<UnaryOp, number>> = { neg: 0, abs: 1, sqrt: 2, square: 3, reciprocal: 4, relu: 5 }

/** Whether unaryF32 computes this function. */
export function hasUnaryF32 (op: UnaryOp): boolean {
  return WASM_UNARY[op] !== undefined
}

/**
 * unary of float32 data on the WebAssembly SIMD kernel, for the functions of hasUnaryF32: a chunk
 * (STREAM_CHUNK) at a time through the kernel's memory, in place there.
 */
export function unaryF32 (out: Float32Array, x: Float32Array, info: UnaryInfo): Float32Array {
  const code = WASM_UNARY[info.op]
  if (code === undefined) throw new Error(`no float32 kernel for ${info.op}`)
  const n = info.outElements
  if (n === 0) return out
  const ws = begin()
  try {
    const p = ws.alloc(Math.min(n, STREAM_CHUNK), 4)
    ws.commit()
    const chunk = ws.f32(p, Math.min(n, STREAM_CHUNK))
    for (let i = 0; i < n; i += STREAM_CHUNK) {
      const count = Math.min(STREAM_CHUNK, n - i)
      chunk.set(x.subarray(i, i + count))
      ws.x.unaryF32(code, count, p, p)
      out.set(count === chunk.length ? chunk : chunk.subarray(0, count), i)
    }
  } finally {
    end()
  }
  return out
}
