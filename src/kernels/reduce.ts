/**
 * reduce: sum, mean, prod, max, min (torch.amax / amin), var, std, logsumexp and norm (the L2 norm,
 * torch.linalg.vector_norm) over some axes (default all), as torch computes them, in doubles.
 */
import { invalidArgument } from '../errors.js'
import { checkFlops, elementCount, formatShape, resolveAxis, stridedOffsets } from './shape.js'
import type { FloatArray, Limits } from './types.js'

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
  return { op: op as ReduceOp, inShape: shape, inElements, outShape, outElements, outStrides, count, correction, flops: 3 * inElements + outElements }
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
    const cur = out[k]
    if (cur !== cur) continue // eslint-disable-line no-self-compare -- a NaN found stays
    if (v !== v || (max ? v > cur : v < cur)) out[k] = v // eslint-disable-line no-self-compare -- NaN
  }
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

/** Fills out (info.outElements long) with the reduction, stored in out's type. */
export function reduce (out: FloatArray, x: FloatArray, info: ReduceInfo): FloatArray {
  out.set(reduceValues(x, outputIndex(info), info))
  return out
}
