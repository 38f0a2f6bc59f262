/**
 * The gradients of unary, torch.autograd's formulas element by element (y is the forward result):
 *   neg -g; abs g·sgn(x) (0 at 0 and at NaN, as torch's); exp g·y; log g/x; sqrt g/(2y); square g·(2x); reciprocal -g·(y·y);
 *   sin g·cos x; cos g·(-sin x); tanh g·(1 - y²); sigmoid g·(1 - y)·y; relu 0 where y <= 0 else g;
 *   gelu g·(Φ(x) + x·φ(x)); silu g·s·(1 + x·(1 - s)) with s = sigmoid(x);
 *   softplus g where x > 20 else g·e^x/(e^x + 1); erf g·(2/√π)·e^(-x²).
 */
import { erfc } from '../erf.js'
import type { FloatArray, GradArrays } from '../types.js'
import { sigmoidOf, unary, type UnaryOp, type UnaryOperands } from '../unary.js'

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI)
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI)

/** torch.sgn of a real number as abs's gradient uses it: -1, 0 or 1, and 0 for NaN. */
function sgn (x: number): number {
  return x > 0 ? 1 : x < 0 ? -1 : 0
}

/** The gradient of one element from x, the forward value y and g. */
const GRADS: Record<UnaryOp, (x: number, y: number, g: number) => number> = {
  neg: (_x, _y, g) => -g,
  abs: (x, _y, g) => g * sgn(x),
  exp: (_x, y, g) => g * y,
  log: (x, _y, g) => g / x,
  sqrt: (_x, y, g) => g / (2 * y),
  square: (x, _y, g) => g * (2 * x),
  reciprocal: (_x, y, g) => -g * (y * y),
  sin: (x, _y, g) => g * Math.cos(x),
  cos: (x, _y, g) => g * -Math.sin(x),
  tanh: (_x, y, g) => g * (1 - y * y),
  sigmoid: (_x, y, g) => g * (1 - y) * y,
  relu: (_x, y, g) => y <= 0 ? 0 : g,
  gelu: (x, _y, g) => g * (0.5 * erfc(-x * Math.SQRT1_2) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x)),
  silu: (x, _y, g) => {
    const s = sigmoidOf(x)
    return g * s * (1 + x * (1 - s))
  },
  softplus: (x, _y, g) => {
    if (x > 20) return g
    const z = Math.exp(x)
    return g * z / (z + 1)
  },
  erf: (x, _y, g) => g * TWO_OVER_SQRT_PI * Math.exp(-x * x)
}

export function unaryBackward (forward: UnaryOperands, g: FloatArray, outs: GradArrays<'input'>): void {
  const { input, info } = forward
  const n = info.outElements
  // the forward values in doubles (the gradient formulas that use y take it as computed, not rounded)
  const y = new Float64Array(n)
  unary(y, input, info)
  if (outs.result !== undefined) outs.result.set(y)
  const dx = outs.grads.input
  if (dx === undefined) return
  const grad = GRADS[info.op]
  for (let i = 0; i < n; i++) dx[i] = grad(input[i], y[i], g[i])
}
