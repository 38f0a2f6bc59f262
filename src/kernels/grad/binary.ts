/**
 * The gradients of binary (torch.autograd's formulas, element by element, then summed over the
 * dimensions where an operand broadcast):
 *   add: g, g   sub: g, -g   mul: g·b, g·a   div: g / b, -g·((a / b) / b)
 *   pow: 0 where b = 0 else g·(b·a^(b-1));  g·(0 where a = 0 and b >= 0 else a^b·ln a)
 *   maximum / minimum: g to the larger / smaller, g/2 to each side of a tie, g to both where
 *   either is NaN (torch's where(a == b, g/2, g) with the other side's positions filled with 0).
 * A float32 gradient that sums over a broadcast is summed in doubles, then rounded once.
 */
import { binary, type BinaryOperands, forEachRun, powC } from '../binary.js'
import type { FloatArray, GradArrays } from '../types.js'

/** The two gradients of one element: writes them to pair[0], pair[1]. */
type Pair = (x: number, y: number, g: number, pair: Float64Array) => void

const PAIRS = {
  add (_x, _y, g, p) { p[0] = g; p[1] = g },
  sub (_x, _y, g, p) { p[0] = g; p[1] = -g },
  mul (x, y, g, p) { p[0] = g * y; p[1] = g * x },
  div (x, y, g, p) { p[0] = g / y; p[1] = -g * ((x / y) / y) },
  pow (x, y, g, p) {
    p[0] = y === 0 ? 0 : g * (y * powC(x, y - 1))
    p[1] = g * (x === 0 && y >= 0 ? 0 : powC(x, y) * Math.log(x))
  },
  maximum (x, y, g, p) {
    if (x === y) { p[0] = g / 2; p[1] = g / 2 } else if (x < y) { p[0] = 0; p[1] = g } else if (x > y) { p[0] = g; p[1] = 0 } else { p[0] = g; p[1] = g }
  },
  minimum (x, y, g, p) {
    if (x === y) { p[0] = g / 2; p[1] = g / 2 } else if (x > y) { p[0] = 0; p[1] = g } else if (x < y) { p[0] = g; p[1] = 0 } else { p[0] = g; p[1] = g }
  }
} satisfies Record<BinaryOperands['info']['op'], Pair>

/** The array a gradient is summed in: itself, or doubles when a float32 gradient sums over a broadcast. */
function accumulator (grad: FloatArray | undefined, length: number, outElements: number): FloatArray | undefined {
  if (grad === undefined || grad instanceof Float64Array || length === outElements) return grad
  return new Float64Array(length)
}

export function binaryBackward (forward: BinaryOperands, g: FloatArray, outs: GradArrays<'a' | 'b'>): void {
  const { a, b, info } = forward
  if (outs.result !== undefined) binary(outs.result, a, b, info)
  const { a: da, b: db } = outs.grads
  const sumA = accumulator(da, info.aLength, info.outElements)
  const sumB = accumulator(db, info.bLength, info.outElements)
  const pair = PAIRS[info.op] as Pair
  const p = new Float64Array(2)
  forEachRun(info, (o, ia, ib, n, sa, sb) => {
    for (let j = 0; j < n; j++) {
      const i = ia + j * sa
      const k = ib + j * sb
      pair(a[i], b[k], g[o + j], p)
      if (sumA !== undefined) sumA[i] += p[0]
      if (sumB !== undefined) sumB[k] += p[1]
    }
  })
  if (da !== undefined && sumA !== da) da.set(sumA as FloatArray)
  if (db !== undefined && sumB !== db) db.set(sumB as FloatArray)
}
