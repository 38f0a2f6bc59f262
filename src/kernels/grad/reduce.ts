/**
 * The gradients of reduce, torch.autograd's formulas, each output's gradient g spread back over the
 * elements reduced into it (y: the reduction):
 *   sum g; mean g/N; prod g·Π of the others (from prefix and suffix products, so zeros are right);
 *   max, min (g/(the number of elements equal to y))·[x = y], so a slice whose y is NaN gets NaN; var g·2(x - mean)/max(0, N - correction); std g·(x - mean)/(max(0, N - correction)·y),
 *   0 where y = 0; logsumexp g·e^(x - y); norm g·x/y, 0 where y = 0.
 */
import { means, outputIndex, reduction, type ReduceOperands } from '../reduce.js'
import type { FloatArray, GradArrays } from '../types.js'

/** Each element's product of the others in its output's group, in row-major order of the group. */
function othersProduct (x: FloatArray, map: Int32Array, outElements: number): Float64Array {
  const prefix = new Float64Array(x.length)
  const run = new Float64Array(outElements).fill(1)
  for (let i = 0; i < x.length; i++) {
    prefix[i] = run[map[i]]
    run[map[i]] *= x[i]
  }
  run.fill(1)
  for (let i = x.length - 1; i >= 0; i--) {
    prefix[i] *= run[map[i]]
    run[map[i]] *= x[i]
  }
  return prefix
}

export function reduceBackward (forward: ReduceOperands, g: FloatArray, outs: GradArrays<'input'>): void {
  const { input: x, info } = forward
  const map = outputIndex(info)
  const y = reduction(x, info, map)
  if (outs.result !== undefined) outs.result.set(y)
  const dx = outs.grads.input
  if (dx === undefined) return
  const n = x.length
  switch (info.op) {
    case 'sum':
      for (let i = 0; i < n; i++) dx[i] = g[map[i]]
      break
    case 'mean':
      for (let i = 0; i < n; i++) dx[i] = g[map[i]] / info.count
      break
    case 'prod': {
      const others = othersProduct(x, map, info.outElements)
      for (let i = 0; i < n; i++) dx[i] = g[map[i]] * others[i]
      break
    }
    case 'max':
    case 'min': {
      const ties = new Float64Array(info.outElements)
      for (let i = 0; i < n; i++) if (x[i] === y[map[i]]) ties[map[i]]++
      // torch's (g / count)·[x = y]: a NaN result has no element equal to it, and g/0 · 0 makes its slice NaN
      for (let i = 0; i < n; i++) dx[i] = (g[map[i]] / ties[map[i]]) * (x[i] === y[map[i]] ? 1 : 0)
      break
    }
    case 'var':
    case 'std': {
      const m = means(x, map, info)
      const d = Math.max(0, info.count - info.correction)
      for (let i = 0; i < n; i++) {
        const k = map[i]
        if (info.op === 'var') dx[i] = g[k] * 2 * (x[i] - m[k]) / d
        else dx[i] = y[k] === 0 ? 0 : (g[k] / (2 * y[k])) * 2 * (x[i] - m[k]) / d
      }
      break
    }
    case 'logsumexp':
      for (let i = 0; i < n; i++) dx[i] = g[map[i]] * Math.exp(x[i] - y[map[i]])
      break
    case 'norm':
      for (let i = 0; i < n; i++) dx[i] = y[map[i]] === 0 ? 0 : g[map[i]] * x[i] / y[map[i]]
      break
  }
}
