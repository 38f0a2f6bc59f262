/**
 * Shape arithmetic shared by every operation: element counts checked against the limits,
 * broadcasting, and the offsets a broadcast batch maps to. Pure; throws the contract's errors.
 */
import { invalidArgument, shapeMismatch, tooLarge } from '../errors.js'
import type { Limits } from './types.js'

export const MAX_RANK = 8

export function formatShape (shape: readonly number[]): string {
  return `[${shape.join(',')}]`
}

/**
 * The element count of a shape, refused with TOO_LARGE when it passes `limits.maxElements`.
 * Exact for every shape whose dimensions are safe integers: the product stops growing
 * as soon as it passes the limit, so it never overflows.
 */
export function elementCount (shape: readonly number[], what: string, limits: Limits): number {
  if (shape.includes(0)) return 0
  let n = 1
  for (const d of shape) {
    n *= d
    if (n > limits.maxElements) {
      throw tooLarge(`${what} of shape ${formatShape(shape)} has more than ${limits.maxElements} elements (MAX_ELEMENTS)`)
    }
  }
  return n
}

/** Refuses with TOO_LARGE when an already computed count passes the element limit. */
export function checkElements (count: number, what: string, limits: Limits): void {
  if (!(count <= limits.maxElements)) {
    throw tooLarge(`${what} would have ${count} elements, more than ${limits.maxElements} (MAX_ELEMENTS)`)
  }
}

/** Refuses with TOO_LARGE when the work (2 x multiply-adds) passes `limits.maxFlops`. */
export function checkFlops (flops: number, what: string, limits: Limits): void {
  if (!(flops <= limits.maxFlops)) {
    throw tooLarge(`${what} needs ${flops.toExponential(3)} floating-point operations, more than ${limits.maxFlops} (MAX_FLOPS)`)
  }
}

/** Whether two shapes (or lists of labels) are equal, entry for entry. */
export function sameShape (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}

/** Product of dimensions, for shapes already checked by elementCount. */
export function product (shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Row-major strides of a shape, in elements. */
export function stridesOf (shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length)
  let acc = 1
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc
    acc *= shape[i]
  }
  return s
}

/**
 * NumPy broadcasting of several shapes (right-aligned; a dimension of 1 stretches).
 * Throws SHAPE_MISMATCH naming the operands, their shapes and the dimension at fault.
 */
export function broadcastShapes (shapes: ReadonlyArray<readonly number[]>, names: readonly string[], what = 'batch dimensions'): number[] {
  const rank = Math.max(0, ...shapes.map(s => s.length))
  const out = new Array<number>(rank).fill(1)
  const owner = new Array<number>(rank).fill(-1)
  for (let i = 0; i < shapes.length; i++) {
    const s = shapes[i]
    for (let j = 0; j < s.length; j++) {
      const axis = rank - s.length + j
      const d = s[j]
      if (d === 1) continue
      if (out[axis] === 1) {
        out[axis] = d
        owner[axis] = i
      } else if (out[axis] !== d) {
        const o = owner[axis]
        const fromEnd = rank - axis
        throw shapeMismatch(
          `${what} do not broadcast: ${names[o]} ${formatShape(shapes[o])} has ${out[axis]} and ` +
          `${names[i]} ${formatShape(s)} has ${d} at dimension -${fromEnd} (counted from the end)`
        )
      }
    }
  }
  return out
}

/**
 * The strides of `srcShape` right-aligned to a broadcast shape of `rank` dimensions: 0 along the
 * dimensions it lacks or has as 1 (where it is repeated).
 */
export function alignedStrides (srcShape: readonly number[], rank: number): number[] {
  const strides = new Array<number>(rank).fill(0)
  const full = stridesOf(srcShape)
  for (let j = 0; j < srcShape.length; j++) {
    if (srcShape[j] !== 1) strides[rank - srcShape.length + j] = full[j]
  }
  return strides
}

/** For each flat index into `shape`, in row-major order, the offset Σ index[d]·strides[d]. */
export function stridedOffsets (shape: readonly number[], strides: readonly number[]): Int32Array {
  const total = product(shape)
  const offsets = new Int32Array(total)
  const rank = shape.length
  const idx = new Array<number>(rank).fill(0)
  let off = 0
  for (let i = 0; i < total; i++) {
    offsets[i] = off
    for (let a = rank - 1; a >= 0; a--) {
      idx[a]++
      off += strides[a]
      if (idx[a] < shape[a]) break
      off -= strides[a] * idx[a]
      idx[a] = 0
    }
  }
  return offsets
}

/**
 * For each flat index into the broadcast shape `outShape`, the flat index into `srcShape`
 * (right-aligned, with dimensions of 1 repeated). `srcShape` must broadcast to `outShape`.
 */
export function broadcastOffsets (outShape: readonly number[], srcShape: readonly number[]): Int32Array {
  return stridedOffsets(outShape, alignedStrides(srcShape, outShape.length))
}

/**
 * An axis of `shape` (negative from the end) as an index; a rank-0 shape has the axes 0 and -1.
 * Out of range is INVALID_ARGUMENT.
 */
export function resolveAxis (axis: number, shape: readonly number[]): number {
  const r = Math.max(shape.length, 1)
  if (!(axis >= -r && axis < r)) throw invalidArgument(`axis ${axis} is out of range for input ${formatShape(shape)} (from ${-r} to ${r - 1})`)
  return axis < 0 ? axis + r : axis
}

/** A user-supplied option value, quoted for an error message. */
export function show (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(show).join(',')}]`
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'object' && v !== null) return JSON.stringify(v)
  return String(v)
}

export function isIntAtLeast (v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min
}

/** An int or a pair of ints, each at least `min`, as [vertical, horizontal]. */
export function pairOption (value: unknown, fallback: number, min: number, message: string): [number, number] {
  if (value === undefined) return [fallback, fallback]
  if (isIntAtLeast(value, min)) return [value, value]
  if (Array.isArray(value) && value.length === 2 && isIntAtLeast(value[0], min) && isIntAtLeast(value[1], min)) {
    return [value[0], value[1]]
  }
  throw invalidArgument(`${message}, got ${show(value)}`)
}
