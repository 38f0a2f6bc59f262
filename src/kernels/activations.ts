/** Element-wise activations and the row softmax, in place over a typed array. */
import { erfc } from './erf.js'
import type { FloatArray } from './types.js'

export const ACTIVATIONS = ['none', 'relu', 'sigmoid', 'tanh', 'gelu', 'softmax'] as const
export type Activation = typeof ACTIVATIONS[number]

const SQRT1_2 = Math.SQRT1_2

export function relu (x: FloatArray): void {
  // x < 0 ? 0 : x keeps NaN as NaN, as torch.relu does
  for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] = 0
}

export function sigmoid (x: FloatArray): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]
    if (v >= 0) {
      x[i] = 1 / (1 + Math.exp(-v))
    } else {
      const e = Math.exp(v) // never overflows for v < 0
      x[i] = e / (1 + e)
    }
  }
}

export function tanh (x: FloatArray): void {
  for (let i = 0; i < x.length; i++) x[i] = Math.tanh(x[i])
}

/** Exact GELU, x·Φ(x) = x/2·erfc(-x/√2): erfc keeps full relative accuracy in the far negative tail. */
export function gelu (x: FloatArray): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]
    x[i] = 0.5 * v * erfc(-v * SQRT1_2)
  }
}

/**
 * Numerically stable softmax over consecutive rows of length n (rows·n = x.length).
 * A row whose entries are all -Infinity becomes zeros (no key to attend to); NaN propagates.
 */
export function softmaxRows (x: FloatArray, rows: number, n: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n
    let max = -Infinity
    let nan = false
    for (let j = 0; j < n; j++) {
      const v = x[o + j]
      if (v > max) max = v
      else if (v !== v) nan = true // eslint-disable-line no-self-compare
    }
    if (nan) {
      for (let j = 0; j < n; j++) x[o + j] = NaN
      continue
    }
    if (max === -Infinity) {
      for (let j = 0; j < n; j++) x[o + j] = 0
      continue
    }
    let sum = 0
    for (let j = 0; j < n; j++) {
      const e = Math.exp(x[o + j] - max)
      x[o + j] = e
      sum += e
    }
    const inv = 1 / sum
    for (let j = 0; j < n; j++) x[o + j] *= inv
  }
}

export function applyActivation (x: FloatArray, activation: Activation, rows: number, n: number): void {
  switch (activation) {
    case 'none': return
    case 'relu': return relu(x)
    case 'sigmoid': return sigmoid(x)
    case 'tanh': return tanh(x)
    case 'gelu': return gelu(x)
    case 'softmax': return softmaxRows(x, rows, n)
  }
}
