/**
 * einsum for the tests, independent of src/kernels/einsum.ts: random equations built label by
 * label (and written out as text), and a plain reference that loops over the whole index space.
 */

/** A case by its labels: per operand the label of each axis ('.0', '.1', … for the dimensions under '...'). */
export interface EinsumCase {
  operands: string[][]
  output: string[]
  shapes: number[][]
  equation: string
}

/** Each label's size: the size of any of its axes other than 1, else 1. */
export function labelSizes (c: Pick<EinsumCase, 'operands' | 'shapes'>): Map<string, number> {
  const sizes = new Map<string, number>()
  c.operands.forEach((axes, k) => axes.forEach((l, j) => {
    const d = c.shapes[k][j]
    if (!sizes.has(l) || sizes.get(l) === 1) sizes.set(l, d)
  }))
  return sizes
}

/**
 * out[output labels] = Σ over every other label of Π operands[k][its labels], by visiting every
 * point of the index space of all the labels (an axis of size 1 is read at 0). Sums in float64.
 */
export function einsumReference (c: Pick<EinsumCase, 'operands' | 'output' | 'shapes'>, data: ArrayLike<number>[]): Float64Array {
  const sizes = labelSizes(c)
  const labels = [...sizes.keys()]
  const pos = new Map(labels.map((l, i) => [l, i]))
  const outShape = c.output.map(l => sizes.get(l) as number)
  const out = new Float64Array(outShape.reduce((x, y) => x * y, 1))
  const total = labels.reduce((n, l) => n * (sizes.get(l) as number), 1)
  const idx = new Array<number>(labels.length).fill(0)
  const offset = (axes: string[], shape: number[]): number => {
    let o = 0
    for (let j = 0; j < axes.length; j++) o = o * shape[j] + (shape[j] === 1 ? 0 : idx[pos.get(axes[j]) as number])
    return o
  }
  for (let t = 0; t < total; t++) {
    let v = 1
    for (let k = 0; k < c.operands.length; k++) v *= data[k][offset(c.operands[k], c.shapes[k])]
    out[offset(c.output, outShape)] += v
    for (let a = labels.length - 1; a >= 0; a--) {
      if (++idx[a] < (sizes.get(labels[a]) as number)) break
      idx[a] = 0
    }
  }
  return out
}

/** The equation's text for the labels: a run of '.j' labels is written '...'; spaces where `space` says. */
function term (axes: string[]): string {
  let s = ''
  let inEllipsis = false
  for (const l of axes) {
    if (l.startsWith('.')) {
      if (!inEllipsis) s += '...'
      inEllipsis = true
    } else {
      s += l
    }
  }
  return s
}

/** mulberry32 */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const LETTERS = 'abcdeXY'

/**
 * A random valid equation over small random shapes: 1 to `maxOperands` operands of rank 0 to 4,
 * repeated subscripts (diagonals), sizes 0 to 4 with some axes of size 1 that broadcast, an
 * ellipsis in some operands at any position (some with fewer dimensions under it than others),
 * explicit or implicit output; at most `maxPoints` points in the whole index space.
 */
export function randomCase (seed: number, maxOperands = 4, maxPoints = 4096): EinsumCase {
  const r = rng(seed)
  const int = (n: number): number => Math.floor(r() * n)
  for (;;) {
    const size = new Map<string, number>()
    for (const l of LETTERS) size.set(l, r() < 0.06 ? 0 : 1 + int(4))
    const ellRank = r() < 0.3 ? 1 + int(2) : 0
    const ellSizes = Array.from({ length: ellRank }, () => 1 + int(3))
    const n = 1 + int(maxOperands)
    const operands: string[][] = []
    const shapes: number[][] = []
    for (let k = 0; k < n; k++) {
      const rank = int(4)
      const letters = Array.from({ length: rank }, () => LETTERS[int(r() < 0.5 ? 3 : LETTERS.length)])
      const axes = [...letters]
      if (ellRank > 0 && r() < 0.6) {
        const e = int(ellRank + 1)
        const at = int(letters.length + 1)
        axes.splice(at, 0, ...Array.from({ length: e }, (_, j) => `.${ellRank - e + j}`))
      }
      operands.push(axes)
      // an axis of size 1 broadcasts (not under a repeated label, whose sizes must be equal)
      shapes.push(axes.map(l => {
        if (l.startsWith('.')) return r() < 0.2 ? 1 : ellSizes[Number(l.slice(1))]
        const repeated = axes.filter(x => x === l).length > 1
        return !repeated && r() < 0.15 ? 1 : size.get(l) as number
      }))
    }
    const count = new Map<string, number>()
    for (const axes of operands) for (const l of axes) if (!l.startsWith('.')) count.set(l, (count.get(l) ?? 0) + 1)
    const used = [...count.keys()]
    // the dimensions under '...': as many as the operand with the most has
    const under = operands.flat().filter(l => l.startsWith('.')).map(l => Number(l.slice(1)))
    const lo = under.length > 0 ? Math.min(...under) : ellRank
    const ell = Array.from({ length: ellRank - lo }, (_, j) => `.${lo + j}`)
    let output: string[]
    let arrow: string
    if (r() < 0.3) {
      output = [...ell, ...used.filter(l => count.get(l) === 1).sort()]
      arrow = ''
    } else {
      const letters = used.filter(() => r() < 0.5).sort(() => r() - 0.5)
      const at = int(letters.length + 1)
      output = [...letters.slice(0, at), ...ell, ...letters.slice(at)]
      arrow = '->' + (ell.length > 0 ? term([...letters.slice(0, at), '.', ...letters.slice(at)]) : letters.join(''))
    }
    const text = operands.map(term)
    const c = { operands, output, shapes, equation: '' }
    const sizes = labelSizes(c)
    const points = [...sizes.values()].reduce((x, y) => x * y, 1)
    if (points > maxPoints) continue
    let eq = text.join(',') + arrow
    if (r() < 0.2) eq = ` ${eq.replaceAll(',', ' , ').replace('->', ' -> ')} `
    c.equation = eq
    return c
  }
}
