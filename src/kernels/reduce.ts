/**
 * reduce: sum, mean, prod, max, min (torch.amax / amin), var, std, logsumexp and norm (the L2 norm,
 * torch.linalg.vector_norm) over some axes (default all), as torch computes them, in doubles.
 */
import { invalidArgument } from '../errors.js'
import { checkFlops, elementCount, formatShape, resolveAxis, stridedOffsets } from './shape.js'
import type { FloatArray, Limits } from './types.js'
import { begin, end, STREAM_CHUNK } from './wasm/runtime.js'

export const REDUCE_OPS = ['sum', 'mean', 'prod', 'max', 'min', 'var', 'std', 'logsumexp', 'norm'] as const
export type ReduceOp = typeof REDUCE_OPS[number]

export interface ReduceInfo {
  op: ReduceOp
  inShape: number[]
  inElements: number
  outShape: number[]
  outElements: number
  /** Per input dimension, the stride of the output element it falls into (0 along a reduced axis). */
  outStrides: number[]
  /**
   * The reduction as blocks [A, R, C] when its reduced axes are consecutive (axes of size 1 aside):
   * out[a·C + c] reduces x[(a·R + r)·C + c] over r < R. Null otherwise (then each element's output
   * index is looked up).
   */
  blocks: [number, number, number] | null
  /** Elements reduced into each output element. */
  count: number
  correction: number
  flops: number
}

export interface ReduceOperands { input: FloatArray, info: ReduceInfo }

export function reduceInfo (op: string, shape: number[], axis: number | number[] | undefined, keepdims: boolean, correction: number, limits: Limits): ReduceInfo {
  if (!(REDUCE_OPS as readonly string[]).includes(op)) {
    throw invalidArgument(`op must be one of ${REDUCE_OPS.join(', ')}; got ${JSON.stringify(op)}`)
  }
  const inElements = elementCount(shape, 'input', limits)
  const rank = shape.length
  const list = axis === undefined ? [...Array(rank).keys()] : Array.isArray(axis) ? axis : [axis]
  if (Array.isArray(axis) && axis.length === 0) throw invalidArgument('axis is an empty list: give at least one axis, or leave it out to reduce over all')
  const axes = list.map(a => resolveAxis(a, shape))
  for (const [i, a] of axes.entries()) {
    if (axes.indexOf(a) !== i) throw invalidArgument(`axis ${list[i]} is given twice (as ${list[axes.indexOf(a)]} and ${list[i]})`)
  }
  if (!(correction >= 0)) throw invalidArgument(`correction must be 0 or more; got ${correction}`)
  const reduced = (d: number): boolean => axes.includes(d)
  let count = 1
  for (let d = 0; d < rank; d++) if (reduced(d)) count *= shape[d]
  if ((op === 'max' || op === 'min') && count === 0) {
    const zero = axes.find(d => shape[d] === 0)
    throw invalidArgument(`${op} over an empty axis: axis ${zero} of input ${formatShape(shape)} has size 0`)
  }
  const outShape = keepdims ? shape.map((d, i) => reduced(i) ? 1 : d) : shape.filter((_, i) => !reduced(i))
  const outStrides = new Array<number>(rank).fill(0)
  let acc = 1
  for (let d = rank - 1; d >= 0; d--) {
    if (reduced(d)) continue
    outStrides[d] = acc
    acc *= shape[d]
  }
  const outElements = count === 0 ? elementCount(outShape, 'the result', limits) : inElements / count
  checkFlops(3 * inElements + outElements, `this ${op}`, limits)
  return {
    op: op as ReduceOp,
    inShape: shape,
    inElements,
    outShape,
    outElements,
    outStrides,
    blocks: blocksOf(shape, reduced),
    count,
    correction,
    flops: 3 * inElements + outElements
  }
}

/** [A, R, C]: the kept axes before the reduced ones, the reduced ones, the kept ones after; null when the reduced axes (of size > 1) are not consecutive. */
function blocksOf (shape: number[], reduced: (d: number) => boolean): [number, number, number] | null {
  const sizes = [1, 1, 1]
  let part = 0
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue
    const r = reduced(d)
    if (part === 0 && r) part = 1
    else if (part === 1 && !r) part = 2
    else if (part === 2 && r) return null
    sizes[part] *= shape[d]
  }
  return [sizes[0], sizes[1], sizes[2]]
}

/** For every input element, in row-major order, the index of the output element it is reduced into. */
export function outputIndex (info: ReduceInfo): Int32Array {
  return stridedOffsets(info.inShape, info.outStrides)
}

/** max, or min, of each output's elements; NaN wins, as torch.amax and amin propagate it. */
export function extreme (out: Float64Array, x: FloatArray, map: Int32Array, max: boolean): void {
  out.fill(max ? -Infinity : Infinity)
  for (let i = 0; i < x.length; i++) {
    const v = x[i]
    const k = map[i]
    if (max ? v > out[k] : v < out[k]) out[k] = v
    else if (v !== v || v === 0) out[k] = extremeOf(out[k], v, max) // eslint-disable-line no-self-compare -- NaN
  }
}

/**
 * IEEE 754's maximum (or minimum) of the extreme so far and a value, as WebAssembly's f32.max gives
 * it: NaN when either is NaN, and +0 over −0 (minimum: −0 over +0), whatever their order.
 */
function extremeOf (m: number, v: number, max: boolean): number {
  if (max ? v > m : v < m) return v
  if (v !== v) return NaN // eslint-disable-line no-self-compare -- NaN
  // (+0 + −0 is +0; −(−m − v) is −0 when either is −0)
  if (v === 0 && m === 0) return max ? m + v : -(-m - v)
  return m
}

/** The mean of each output's elements. */
export function means (x: FloatArray, map: Int32Array, info: ReduceInfo): Float64Array {
  const m = new Float64Array(info.outElements)
  for (let i = 0; i < x.length; i++) m[map[i]] += x[i]
  for (let k = 0; k < m.length; k++) m[k] /= info.count
  return m
}

/**
 * The reduction in doubles, one value per output element (row-major), from the input and its
 * output index (`outputIndex`).
 */
export function reduceValues (x: FloatArray, map: Int32Array, info: ReduceInfo): Float64Array {
  const { op, count, outElements } = info
  const out = new Float64Array(outElements)
  switch (op) {
    case 'sum':
      for (let i = 0; i < x.length; i++) out[map[i]] += x[i]
      break
    case 'mean':
      return means(x, map, info)
    case 'prod':
      out.fill(1)
      for (let i = 0; i < x.length; i++) out[map[i]] *= x[i]
      break
    case 'max':
    case 'min':
      extreme(out, x, map, op === 'max')
      break
    case 'var':
    case 'std': {
      const m = means(x, map, info)
      for (let i = 0; i < x.length; i++) {
        const d = x[i] - m[map[i]]
        out[map[i]] += d * d
      }
      const n = Math.max(0, count - info.correction)
      for (let k = 0; k < outElements; k++) out[k] = op === 'std' ? Math.sqrt(out[k] / n) : out[k] / n
      break
    }
    case 'logsumexp': {
      // torch's: the max taken out where it is finite, so that ±Infinity and all -Infinity come out right
      const m = new Float64Array(outElements)
      extreme(m, x, map, true)
      for (let k = 0; k < outElements; k++) if (Math.abs(m[k]) === Infinity) m[k] = 0
      for (let i = 0; i < x.length; i++) out[map[i]] += Math.exp(x[i] - m[map[i]])
      for (let k = 0; k < outElements; k++) out[k] = Math.log(out[k]) + m[k]
      break
    }
    case 'norm':
      for (let i = 0; i < x.length; i++) out[map[i]] += x[i] * x[i]
      for (let k = 0; k < outElements; k++) out[k] = Math.sqrt(out[k])
      break
  }
  return out
}

/**
 * The fewest elements in a block of several columns worth the column kernels: they take a block at a
 * time (a few calls each), so many small blocks stay on the loops.
 */
const BLOCK_MIN = 4096

/**
 * Σ (x − center)^power over each block (power 1 or 2; center: each output's value to subtract, or
 * none), into out. Rows (C = 1) are summed with four accumulators.
 */
function blockSums (out: Float64Array, x: FloatArray, [A, R, C]: [number, number, number], power: 1 | 2, center: Float64Array | null): void {
  if (C === 1 && x instanceof Float32Array) {
    rowSumsF32(out, x, A, R, power, center)
    return
  }
  if (C === 1) {
    for (let a = 0; a < A; a++) {
      const m = center === null ? 0 : center[a]
      const o = a * R
      const end4 = o + (R & ~3)
      let s0 = 0
      let s1 = 0
      let s2 = 0
      let s3 = 0
      let i = o
      if (power === 1) {
        for (; i < end4; i += 4) {
          s0 += x[i] - m
          s1 += x[i + 1] - m
          s2 += x[i + 2] - m
          s3 += x[i + 3] - m
        }
        for (; i < o + R; i++) s0 += x[i] - m
      } else {
        for (; i < end4; i += 4) {
          const d0 = x[i] - m
          const d1 = x[i + 1] - m
          const d2 = x[i + 2] - m
          const d3 = x[i + 3] - m
          s0 += d0 * d0
          s1 += d1 * d1
          s2 += d2 * d2
          s3 += d3 * d3
        }
        for (; i < o + R; i++) {
          const d = x[i] - m
          s0 += d * d
        }
      }
      out[a] = (s0 + s1) + (s2 + s3)
    }
    return
  }
  if (x instanceof Float32Array && R * C >= BLOCK_MIN) {
    colSumsF32(out, x, A, R, C, power, center)
    return
  }
  out.fill(0)
  for (let a = 0; a < A; a++) {
    const k = a * C
    for (let r = 0; r < R; r++) {
      const i = (a * R + r) * C
      if (center === null && power === 1) {
        for (let c = 0; c < C; c++) out[k + c] += x[i + c]
      } else if (center === null) {
        for (let c = 0; c < C; c++) out[k + c] += x[i + c] * x[i + c]
      } else {
        for (let c = 0; c < C; c++) {
          const d = x[i + c] - center[k + c]
          out[k + c] += power === 1 ? d : d * d
        }
      }
    }
  }
}

/**
 * blockSums of float32 rows on the WebAssembly SIMD kernel (asm/kernels.ts, rowSumsF32): the same
 * four accumulators in the same order, so the same sums, about three times faster. The rows go
 * through the kernel's memory a chunk (STREAM_CHUNK) at a time; a longer row in pieces.
 */
function rowSumsF32 (out: Float64Array, x: Float32Array, A: number, R: number, power: 1 | 2, center: Float64Array | null): void {
  // (rows of nothing sum to 0, as the loops' (0 + 0) + (0 + 0))
  if (R === 0) {
    out.fill(0, 0, A)
    return
  }
  const [rows, piece] = rowChunkShape(A, R)
  const ws = begin()
  try {
    const px = ws.alloc(rows * piece, 4)
    const pacc = ws.alloc(4 * rows, 8)
    const pm = center === null ? 0 : ws.alloc(rows, 8)
    ws.commit()
    const acc = ws.f64(pacc, 4 * rows)
    const m = center === null ? null : ws.f64(pm, rows)
    rowChunks(x, A, R, ws.f32(px, rows * piece), (a, count, n, j) => {
      if (j === 0) {
        acc.fill(0)
        if (m !== null && center !== null) m.set(center.subarray(a, a + count))
      }
      ws.x.rowSumsF32(count, n, px, power, pm, pacc)
      if (j + n === R) for (let r = 0; r < count; r++) out[a + r] = (acc[4 * r] + acc[4 * r + 1]) + (acc[4 * r + 2] + acc[4 * r + 3])
    })
  } finally {
    end()
  }
}

/** Rows per chunk, and values per piece of a row, for rowChunks over A rows of R > 0 values. */
function rowChunkShape (A: number, R: number): [number, number] {
  return [Math.min(Math.max(1, Math.floor(STREAM_CHUNK / R)), A), Math.min(R, STREAM_CHUNK)]
}

/**
 * Copies A float32 rows of R > 0 values into `chunk` (rowChunkShape's size) as many whole rows as it
 * holds, calling visit(a, count, R, 0) for rows a.. a + count − 1; a row longer than STREAM_CHUNK
 * goes alone in pieces of STREAM_CHUNK values (a multiple of 4), visit(a, 1, n, j) for its values j..
 * j + n − 1.
 */
function rowChunks (x: Float32Array, A: number, R: number, chunk: Float32Array, visit: (a: number, count: number, n: number, j: number) => void): void {
  if (R <= STREAM_CHUNK) {
    const rows = chunk.length / R
    for (let a = 0; a < A; a += rows) {
      const count = Math.min(rows, A - a)
      chunk.set(x.subarray(a * R, (a + count) * R))
      visit(a, count, R, 0)
    }
    return
  }
  for (let a = 0; a < A; a++) {
    for (let j = 0; j < R; j += STREAM_CHUNK) {
      const n = Math.min(STREAM_CHUNK, R - j)
      chunk.set(x.subarray(a * R + j, a * R + j + n))
      visit(a, 1, n, j)
    }
  }
}

/**
 * Runs a column kernel over blocks of several float32 columns: each block's columns up to
 * STREAM_CHUNK (`w`, the accumulators' count) at a time, `start(k, cw)` before the rows of outputs
 * k.. k + cw − 1, their rows copied into `chunk` as many as it holds (`rows`), `run(count, cw)` after
 * each copy, `finish(k, cw)` after the last.
 */
function columnChunks (
  x: Float32Array, A: number, R: number, C: number, w: number, rows: number, chunk: Float32Array,
  start: (k: number, cw: number) => void, run: (count: number, cw: number) => void, finish: (k: number, cw: number) => void
): void {
  for (let a = 0; a < A; a++) {
    for (let c0 = 0; c0 < C; c0 += w) {
      const cw = Math.min(w, C - c0)
      const k = a * C + c0
      start(k, cw)
      for (let r0 = 0; r0 < R; r0 += rows) {
        const count = Math.min(rows, R - r0)
        const first = (a * R + r0) * C
        if (cw === C) chunk.set(x.subarray(first, first + count * C))
        else for (let r = 0; r < count; r++) chunk.set(x.subarray(first + r * C + c0, first + r * C + c0 + cw), r * cw)
        run(count, cw)
      }
      finish(k, cw)
    }
  }
}

/** The accumulators (w) and rows per chunk of columnChunks over blocks of R rows of C columns. */
function columnChunkShape (R: number, C: number): [number, number] {
  const w = Math.min(C, STREAM_CHUNK)
  return [w, Math.max(1, Math.min(R, Math.floor(STREAM_CHUNK / w)))]
}

/**
 * blockSums of float32 blocks of several columns (C > 1) on the WebAssembly SIMD kernel (asm/kernels.ts,
 * colSumsF32): each output's sum row after row, as the loops add them. Columns go through the
 * kernel's memory up to STREAM_CHUNK at a time, with as many rows as fit in a chunk.
 */
function colSumsF32 (out: Float64Array, x: Float32Array, A: number, R: number, C: number, power: 1 | 2, center: Float64Array | null): void {
  const [w, rows] = columnChunkShape(R, C)
  const ws = begin()
  try {
    const px = ws.alloc(rows * w, 4)
    const pacc = ws.alloc(w, 8)
    const pm = center === null ? 0 : ws.alloc(w, 8)
    ws.commit()
    const acc = ws.f64(pacc, w)
    const m = center === null ? null : ws.f64(pm, w)
    columnChunks(x, A, R, C, w, rows, ws.f32(px, rows * w),
      (k, cw) => {
        acc.fill(0)
        if (m !== null && center !== null) m.set(center.subarray(k, k + cw))
      },
      (count, cw) => ws.x.colSumsF32(count, cw, px, power, pm, pacc),
      (k, cw) => out.set(acc.subarray(0, cw), k))
  } finally {
    end()
  }
}

/** Each block's max (or min): a NaN found is the result, as torch.amax gives it. */
function blockExtremes (out: Float64Array, x: FloatArray, [A, R, C]: [number, number, number], max: boolean): void {
  if (C === 1 && x instanceof Float32Array) {
    rowExtremesF32(out, x, A, R, max)
    return
  }
  if (C === 1) {
    for (let a = 0; a < A; a++) {
      let m = max ? -Infinity : Infinity
      for (let i = a * R, end = i + R; i < end; i++) {
        const v = x[i]
        if (max ? v > m : v < m) m = v
        else if (v !== v || v === 0) { // eslint-disable-line no-self-compare -- NaN
          m = extremeOf(m, v, max)
          if (m !== m) break // eslint-disable-line no-self-compare -- a NaN ends the row
        }
      }
      out[a] = m
    }
    return
  }
  if (x instanceof Float32Array && R * C >= BLOCK_MIN) {
    colExtremesF32(out, x, A, R, C, max)
    return
  }
  out.fill(max ? -Infinity : Infinity)
  for (let a = 0; a < A; a++) {
    for (let r = 0; r < R; r++) {
      const i = (a * R + r) * C
      const k = a * C
      for (let c = 0; c < C; c++) {
        const v = x[i + c]
        const m = out[k + c]
        if (max ? v > m : v < m) out[k + c] = v
        else if (v !== v || v === 0) out[k + c] = extremeOf(m, v, max) // eslint-disable-line no-self-compare -- NaN
      }
    }
  }
}

/**
 * Each float32 row's max (or min) on the WebAssembly SIMD kernel (asm/kernels.ts, rowExtremesF32),
 * with extremeOf's rules; rows a chunk (STREAM_CHUNK) at a time, a longer row in pieces.
 */
function rowExtremesF32 (out: Float64Array, x: Float32Array, A: number, R: number, max: boolean): void {
  // (an empty row's, as the loops': logsumexp takes the max of an empty axis)
  if (R === 0) {
    out.fill(max ? -Infinity : Infinity, 0, A)
    return
  }
  const [rows, piece] = rowChunkShape(A, R)
  const ws = begin()
  try {
    const px = ws.alloc(rows * piece, 4)
    const pout = ws.alloc(rows, 8)
    ws.commit()
    const found = ws.f64(pout, rows)
    rowChunks(x, A, R, ws.f32(px, rows * piece), (a, count, n, j) => {
      ws.x.rowExtremesF32(count, n, px, max ? 1 : 0, pout)
      if (j === 0) out.set(found.subarray(0, count), a)
      else out[a] = extremeOf(out[a], found[0], max)
    })
  } finally {
    end()
  }
}

/**
 * blockExtremes of float32 blocks of several columns (C > 1) on the WebAssembly SIMD kernel (asm/kernels.ts,
 * colExtremesF32): columns up to STREAM_CHUNK at a time, with as many rows as fit in a chunk, folded
 * into float32 running extremes (a float32 maximum is exact).
 */
function colExtremesF32 (out: Float64Array, x: Float32Array, A: number, R: number, C: number, max: boolean): void {
  const [w, rows] = columnChunkShape(R, C)
  const ws = begin()
  try {
    const px = ws.alloc(rows * w, 4)
    const pacc = ws.alloc(w, 4)
    ws.commit()
    const acc = ws.f32(pacc, w)
    columnChunks(x, A, R, C, w, rows, ws.f32(px, rows * w),
      () => acc.fill(max ? -Infinity : Infinity),
      (count, cw) => ws.x.colExtremesF32(count, cw, px, max ? 1 : 0, pacc),
      (k, cw) => out.set(acc.subarray(0, cw), k))
  } finally {
    end()
  }
}

/** Each block's product, in order. */
function blockProducts (out: Float64Array, x: FloatArray, [A, R, C]: [number, number, number]): void {
  out.fill(1)
  for (let a = 0; a < A; a++) {
    for (let r = 0; r < R; r++) {
      const i = (a * R + r) * C
      const k = a * C
      for (let c = 0; c < C; c++) out[k + c] *= x[i + c]
    }
  }
}

/** Σ e^(x − m) over each block, m each output's. */
function blockExpSums (out: Float64Array, x: FloatArray, [A, R, C]: [number, number, number], m: Float64Array): void {
  if (C === 1) {
    for (let a = 0; a < A; a++) {
      const ma = m[a]
      let sum = 0
      for (let i = a * R, end = i + R; i < end; i++) sum += Math.exp(x[i] - ma)
      out[a] = sum
    }
    return
  }
  out.fill(0)
  for (let a = 0; a < A; a++) {
    for (let r = 0; r < R; r++) {
      const i = (a * R + r) * C
      const k = a * C
      for (let c = 0; c < C; c++) out[k + c] += Math.exp(x[i + c] - m[k + c])
    }
  }
}

/** The reduction in doubles over blocks (info.blocks): as reduceValues gives it, without an index per element. */
function reduceBlockValues (x: FloatArray, info: ReduceInfo, blocks: [number, number, number]): Float64Array {
  const { op, count, outElements } = info
  const out = new Float64Array(outElements)
  switch (op) {
    case 'sum':
    case 'mean':
      blockSums(out, x, blocks, 1, null)
      if (op === 'mean') for (let k = 0; k < outElements; k++) out[k] /= count
      break
    case 'prod':
      blockProducts(out, x, blocks)
      break
    case 'max':
    case 'min':
      blockExtremes(out, x, blocks, op === 'max')
      break
    case 'var':
    case 'std': {
      const m = new Float64Array(outElements)
      blockSums(m, x, blocks, 1, null)
      for (let k = 0; k < outElements; k++) m[k] /= count
      blockSums(out, x, blocks, 2, m)
      const n = Math.max(0, count - info.correction)
      for (let k = 0; k < outElements; k++) out[k] = op === 'std' ? Math.sqrt(out[k] / n) : out[k] / n
      break
    }
    case 'logsumexp': {
      const m = new Float64Array(outElements)
      blockExtremes(m, x, blocks, true)
      for (let k = 0; k < outElements; k++) if (Math.abs(m[k]) === Infinity) m[k] = 0
      blockExpSums(out, x, blocks, m)
      for (let k = 0; k < outElements; k++) out[k] = Math.log(out[k]) + m[k]
      break
    }
    case 'norm':
      blockSums(out, x, blocks, 2, null)
      for (let k = 0; k < outElements; k++) out[k] = Math.sqrt(out[k])
      break
  }
  return out
}

/**
 * The reduction in doubles: over blocks where the reduced axes are consecutive (info.blocks), else
 * through each element's output index (`map`, outputIndex, made here when not given).
 */
export function reduction (x: FloatArray, info: ReduceInfo, map?: Int32Array): Float64Array {
  if (info.blocks !== null) return reduceBlockValues(x, info, info.blocks)
  return reduceValues(x, map ?? outputIndex(info), info)
}

/** Fills out (info.outElements long) with the reduction, stored in out's type. */
export function reduce (out: FloatArray, x: FloatArray, info: ReduceInfo): FloatArray {
  out.set(reduction(x, info))
  return out
}
