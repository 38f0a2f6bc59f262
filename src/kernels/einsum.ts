/**
 * numpy.einsum: the equation parsed against the operands' shapes (`parseEinsum`), a contraction
 * plan made from the shapes alone and checked against the limits (`einsumInfo`,
 * `einsumBackwardInfo`), and the plan's execution over typed arrays (`einsum`).
 *
 * A plan is a list of steps over numbered buffers:
 * - `strided`: one loop over an operand through arbitrary strides, which takes diagonals
 *   (a repeated subscript), sums subscripts away and transposes, in one pass;
 * - `gemm`: a pairwise contraction as one batched matrix product [B,m,k]·[B,k,n] on the matmul
 *   kernel (the native engine for large work), with either operand stored transposed.
 * Operands are contracted two at a time, in a greedy order that keeps the intermediates small
 * (the pair whose result is smallest against its operands first, as opt_einsum's greedy strategy).
 * An axis of size 1 broadcasts, so it is dropped from its operand before planning; a subscript
 * found in one operand only and not in the output is summed away before any product.
 */
import { invalidArgument, shapeMismatch } from '../errors.js'
import { dot as dotKernel } from './dot.js'
import { productT } from './grad/common.js'
import { checkElements, checkFlops, elementCount, formatShape, sameShape, stridesOf } from './shape.js'
import { allocate, type DType, type FloatArray, type Limits } from './types.js'

export const MAX_OPERANDS = 8
/** Labels: the char codes of a-z and A-Z; the dimensions an ellipsis covers are ELLIPSIS + j. */
const ELLIPSIS = 256

/** An equation read against its operands' shapes: a label per axis, and each label's size. */
export interface EinsumSpec {
  equation: string
  /** Per operand, the label of each axis. */
  inputs: number[][]
  shapes: number[][]
  /** The result's labels, in order. */
  output: number[]
  outShape: number[]
  /** Size of each label (broadcast: the size other than 1, where there is one). */
  sizes: Record<number, number>
}

function labelName (l: number): string {
  return l >= ELLIPSIS ? `... dimension ${l - ELLIPSIS}` : `'${String.fromCharCode(l)}'`
}

function isLetter (c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
}

interface Term { labels: number[], positions: number[], ellipsis: number, start: number, end: number }

/**
 * Reads the equation against the operands' shapes, with numpy.einsum's rules. Throws
 * INVALID_ARGUMENT for a malformed equation (saying where: positions count from 0) or a wrong
 * number of operands, SHAPE_MISMATCH when an operand's rank or a subscript's sizes disagree.
 */
export function parseEinsum (equation: string, shapes: number[][]): EinsumSpec {
  const q = JSON.stringify(equation)
  const bad = (pos: number, what: string): never => {
    throw invalidArgument(`equation ${q}, position ${pos}: ${what}`)
  }
  const terms: Term[] = [{ labels: [], positions: [], ellipsis: -1, start: 0, end: equation.length }]
  let out: Term | null = null
  let term = terms[0]
  for (let i = 0; i < equation.length; i++) {
    const c = equation.charCodeAt(i)
    if (c === 32) continue
    if (isLetter(c)) {
      term.labels.push(c)
      term.positions.push(i)
    } else if (c === 44) { // ,
      if (out !== null) bad(i, 'a \',\' in the output: the output is one list of subscripts')
      term.end = i
      term = { labels: [], positions: [], ellipsis: -1, start: i + 1, end: equation.length }
      terms.push(term)
    } else if (c === 45) { // -
      if (equation.charCodeAt(i + 1) !== 62) bad(i, 'a \'-\' that does not begin \'->\'')
      if (out !== null) bad(i, '\'->\' appears a second time')
      term.end = i
      out = { labels: [], positions: [], ellipsis: -1, start: i + 2, end: equation.length }
      term = out
      i++
    } else if (c === 62) { // >
      bad(i, 'a \'>\' without the \'-\' of \'->\'')
    } else if (c === 46) { // .
      if (equation.charCodeAt(i + 1) !== 46 || equation.charCodeAt(i + 2) !== 46) bad(i, 'a \'.\' that is not part of an ellipsis \'...\'')
      if (term.ellipsis >= 0) bad(i, `a second ellipsis '...' in ${term === out ? 'the output' : `operand ${terms.indexOf(term)}'s subscripts`}`)
      term.ellipsis = term.labels.length
      i += 2
    } else {
      const cp = equation.codePointAt(i) as number
      bad(i, `${JSON.stringify(String.fromCodePoint(cp))} is not a subscript: subscripts are the letters a-z and A-Z (and '...', ',', '->', spaces)`)
    }
  }
  if (terms.length !== shapes.length) {
    throw invalidArgument(`equation ${q} has subscripts for ${terms.length} operand${terms.length === 1 ? '' : 's'}, but ${shapes.length} operand${shapes.length === 1 ? ' was' : 's were'} given`)
  }

  // the axes of each operand, the ellipsis's right-aligned
  const axes: number[][] = []
  let ellRank = 0
  for (const [k, t] of terms.entries()) {
    const shape = shapes[k]
    const sub = equation.slice(t.start, t.end).trim()
    if (t.ellipsis < 0 ? t.labels.length !== shape.length : t.labels.length > shape.length) {
      throw shapeMismatch(`equation ${q}: operand ${k} has shape ${formatShape(shape)} (rank ${shape.length}), but its subscripts ` +
        `${JSON.stringify(sub)} name ${t.ellipsis < 0 ? '' : 'at least '}${t.labels.length} dimension${t.labels.length === 1 ? '' : 's'}`)
    }
    const e = t.ellipsis < 0 ? 0 : shape.length - t.labels.length
    ellRank = Math.max(ellRank, e)
    axes.push([])
  }
  for (const [k, t] of terms.entries()) {
    const e = shapes[k].length - t.labels.length
    const ell = t.ellipsis < 0 ? [] : Array.from({ length: e }, (_, j) => ELLIPSIS + ellRank - e + j)
    axes[k] = t.ellipsis < 0 ? [...t.labels] : [...t.labels.slice(0, t.ellipsis), ...ell, ...t.labels.slice(t.ellipsis)]
  }

  // each label's size: equal within an operand, equal or 1 across operands
  const sizes: Record<number, number> = {}
  const from: Record<number, number> = {}
  for (const [k, ax] of axes.entries()) {
    const own: Record<number, number> = {}
    for (const [j, l] of ax.entries()) {
      const d = shapes[k][j]
      if (own[l] !== undefined && own[l] !== d) {
        throw shapeMismatch(`equation ${q}: subscript ${labelName(l)} is repeated in operand ${k} ${formatShape(shapes[k])} with sizes ` +
          `${own[l]} and ${d}; a repeated subscript (a diagonal) needs equal sizes`)
      }
      own[l] = d
      const g = sizes[l]
      if (g === undefined || g === 1) {
        if (g === undefined || d !== 1) { sizes[l] = d; from[l] = k }
      } else if (d !== 1 && d !== g) {
        const o = from[l]
        throw shapeMismatch(`equation ${q}: subscript ${labelName(l)} has size ${g} in operand ${o} ${formatShape(shapes[o])} and size ${d} ` +
          `in operand ${k} ${formatShape(shapes[k])}; sizes must agree or be 1`)
      }
    }
  }

  let output: number[]
  if (out === null) {
    const count: Record<number, number> = {}
    for (const t of terms) for (const l of t.labels) count[l] = (count[l] ?? 0) + 1
    const once = Object.keys(count).map(Number).filter(l => count[l] === 1).sort((x, y) => x - y)
    output = [...Array.from({ length: ellRank }, (_, j) => ELLIPSIS + j), ...once]
  } else {
    const o: Term = out
    const seen = new Set<number>()
    for (const [j, l] of o.labels.entries()) {
      if (seen.has(l)) bad(o.positions[j], `subscript '${String.fromCharCode(l)}' is repeated in the output`)
      if (sizes[l] === undefined) bad(o.positions[j], `subscript '${String.fromCharCode(l)}' of the output appears in no operand`)
      seen.add(l)
    }
    if (o.ellipsis < 0 && ellRank > 0) {
      throw invalidArgument(`equation ${q}: the operands' '...' cover ${ellRank} dimension${ellRank === 1 ? '' : 's'}, but the output has no '...' for them`)
    }
    const ell = Array.from({ length: ellRank }, (_, j) => ELLIPSIS + j)
    output = o.ellipsis < 0 ? [...o.labels] : [...o.labels.slice(0, o.ellipsis), ...ell, ...o.labels.slice(o.ellipsis)]
  }
  return { equation, inputs: axes, shapes, output, outShape: output.map(l => sizes[l]), sizes }
}

// ------------------------------------------------------------------------------------ plans

/** Buffer numbers: the program's inputs first, then one per step; OUT is the program's output. */
const OUT = -1

export interface StridedStep {
  kind: 'strided'
  src: number
  dst: number
  dstLength: number
  /** Zero the destination first (it is not written everywhere: a diagonal). */
  zero: boolean
  dims: number[]
  srcStrides: number[]
  dstStrides: number[]
  sumDims: number[]
  sumStrides: number[]
}

/** dst [batches,m,n] = a·b with a [batches,m,k] (or [batches,k,m] when transA) and b [batches,k,n] (or [batches,n,k]). */
export interface GemmStep {
  kind: 'gemm'
  a: number
  b: number
  dst: number
  batches: number
  m: number
  k: number
  n: number
  transA: boolean
  transB: boolean
}

export type Step = StridedStep | GemmStep

export interface Program {
  /** The task's tensors this program reads, as its buffers 0, 1, …. */
  inputs: number[]
  steps: Step[]
  outLength: number
}

/** A tensor during planning: its buffer and the labels of its axes in memory order (contiguous). */
interface PTensor { slot: number, labels: number[] }

class Planner {
  readonly steps: Step[] = []
  flops = 0
  private next: number

  constructor (nInputs: number, readonly sizes: Record<number, number>, readonly limits: Limits, readonly what: string) {
    this.next = nInputs
  }

  size (labels: readonly number[]): number {
    let n = 1
    for (const l of labels) n *= this.sizes[l]
    return n
  }

  private checked (labels: readonly number[]): number {
    let n = 1
    for (const l of labels) {
      n *= this.sizes[l]
      if (n > this.limits.maxElements) checkElements(this.size(labels), `${this.what}: an intermediate result (${describe(labels, this.sizes)})`, this.limits)
    }
    return n
  }

  strided (src: number, srcStrides: Record<number, number>, keep: number[], sum: number[], dst = this.next++, dstStrides?: number[], dstLength?: number, zero = false): number {
    const length = dstLength ?? this.checked(keep)
    this.flops += this.size(keep) * this.size(sum)
    this.steps.push({
      kind: 'strided',
      src,
      dst,
      dstLength: length,
      zero,
      dims: keep.map(l => this.sizes[l]),
      srcStrides: keep.map(l => srcStrides[l] ?? 0),
      dstStrides: dstStrides ?? stridesOf(keep.map(l => this.sizes[l])),
      sumDims: sum.map(l => this.sizes[l]),
      sumStrides: sum.map(l => srcStrides[l] ?? 0)
    })
    return dst
  }

  /** A tensor with its axes in the given order (a copy unless they already are). */
  arrange (t: PTensor, order: number[]): PTensor {
    if (sameShape(t.labels, order)) return t
    return { slot: this.strided(t.slot, contiguousStrides(t.labels, this.sizes), order, []), labels: order }
  }

  gemm (a: PTensor, b: PTensor, batch: number[], m: number[], k: number[], n: number[]): PTensor {
    const labels = [...batch, ...m, ...n]
    this.checked(labels)
    const [B, M, K, N] = [this.size(batch), this.size(m), this.size(k), this.size(n)]
    this.flops += 2 * B * M * K * N
    const transA = sameShape(a.labels, [...batch, ...k, ...m]) && !sameShape(a.labels, [...batch, ...m, ...k])
    const transB = sameShape(b.labels, [...batch, ...n, ...k]) && !sameShape(b.labels, [...batch, ...k, ...n])
    const dst = this.next++
    this.steps.push({ kind: 'gemm', a: a.slot, b: b.slot, dst, batches: B, m: M, k: K, n: N, transA, transB })
    return { slot: dst, labels }
  }

  /** Makes the last step write the program's output, when it made `t`. */
  retarget (t: PTensor): boolean {
    const last = this.steps[this.steps.length - 1]
    if (last === undefined || last.dst !== t.slot) return false
    last.dst = OUT
    return true
  }
}

function contiguousStrides (labels: readonly number[], sizes: Record<number, number>): Record<number, number> {
  const s = stridesOf(labels.map(l => sizes[l]))
  const out: Record<number, number> = {}
  labels.forEach((l, i) => { out[l] = s[i] })
  return out
}

function describe (labels: readonly number[], sizes: Record<number, number>): string {
  const names = labels.map(l => l >= ELLIPSIS ? '.' : String.fromCharCode(l)).join('')
  return `subscripts ${JSON.stringify(names)}, shape ${formatShape(labels.map(l => sizes[l]))}`
}

/** An operand as the planner sees it: the label of each axis and its shape. */
interface Operand { axes: number[], shape: number[] }

/**
 * Plans the contraction of `operands` (buffers 0..n-1 of the program) into the labels `output`,
 * and returns where the result is, with its labels in memory order: the last product is laid out
 * in the order of `output` where it can be.
 */
function contract (p: Planner, operands: Operand[], output: number[]): PTensor {
  const outSet = new Set(output)
  // every axis of size 1 broadcasts: drop it, and merge the strides of a repeated label
  const raw = operands.map((o, slot) => {
    const strides = stridesOf(o.shape)
    const st: Record<number, number> = {}
    const labels: number[] = []
    let repeated = false
    o.axes.forEach((l, j) => {
      if (o.shape[j] === 1) return
      if (st[l] === undefined) { st[l] = 0; labels.push(l) } else repeated = true
      st[l] += strides[j]
    })
    return { slot, labels, strides: st, repeated }
  })
  const uses = (l: number, except: number): boolean => outSet.has(l) || raw.some((r, i) => i !== except && r.labels.includes(l))
  let live: PTensor[] = raw.map((r, i) => {
    const keep = r.labels.filter(l => uses(l, i))
    if (!r.repeated && keep.length === r.labels.length) return { slot: r.slot, labels: r.labels }
    const sum = r.labels.filter(l => !uses(l, i))
    return { slot: p.strided(r.slot, r.strides, keep, sum), labels: keep }
  })
  const finalOrder = output.filter(l => p.sizes[l] !== 1)
  while (live.length > 1) {
    // the pair to contract: sharing a label, smallest result against its operands
    let best: [number, number] = [0, 1]
    let bestKey: [number, number, number] = [Infinity, Infinity, Infinity]
    for (let i = 0; i < live.length; i++) {
      for (let j = i + 1; j < live.length; j++) {
        const keep = resultLabels(live, i, j, outSet)
        const shares = live[i].labels.some(l => live[j].labels.includes(l))
        const r = p.size(keep)
        const key: [number, number, number] = [shares ? 0 : 1, shares ? r - p.size(live[i].labels) - p.size(live[j].labels) : r, r]
        if (key[0] < bestKey[0] || (key[0] === bestKey[0] && (key[1] < bestKey[1] || (key[1] === bestKey[1] && key[2] < bestKey[2])))) {
          best = [i, j]
          bestKey = key
        }
      }
    }
    const [i, j] = best
    const keep = resultLabels(live, i, j, outSet)
    const last = live.length === 2
    const t = pair(p, live[i], live[j], keep, last ? finalOrder : null)
    live = [...live.filter((_, x) => x !== i && x !== j), t]
  }
  return live[0]
}

function resultLabels (live: PTensor[], i: number, j: number, outSet: Set<number>): number[] {
  const labels = [...live[i].labels, ...live[j].labels.filter(l => !live[i].labels.includes(l))]
  return labels.filter(l => outSet.has(l) || live.some((t, x) => x !== i && x !== j && t.labels.includes(l)))
}

/** Whether `order` is the blocks x, y, z one after the other (each in any inner order); if so, their inner orders. */
function blocks (order: number[], ...sets: number[][]): number[][] | null {
  const out: number[][] = []
  let at = 0
  for (const s of sets) {
    const part = order.slice(at, at + s.length)
    if (!part.every(l => s.includes(l))) return null
    out.push(part)
    at += s.length
  }
  return at === order.length ? out : null
}

/** One pairwise contraction as a batched matrix product, with as few copies as the layouts allow. */
function pair (p: Planner, x: PTensor, y: PTensor, keep: number[], finalOrder: number[] | null): PTensor {
  // labels found in one operand only and not kept are summed first
  const reduce = (t: PTensor, other: PTensor): PTensor => {
    const needed = t.labels.filter(l => keep.includes(l) || other.labels.includes(l))
    if (needed.length === t.labels.length) return t
    const sum = t.labels.filter(l => !needed.includes(l))
    return { slot: p.strided(t.slot, contiguousStrides(t.labels, p.sizes), needed, sum), labels: needed }
  }
  let a = reduce(x, y)
  let b = reduce(y, a)
  let batch = a.labels.filter(l => b.labels.includes(l) && keep.includes(l))
  const con = a.labels.filter(l => b.labels.includes(l) && !keep.includes(l))
  let m = a.labels.filter(l => !b.labels.includes(l))
  let n = b.labels.filter(l => !a.labels.includes(l))
  if (finalOrder !== null) {
    const straight = blocks(finalOrder, batch, m, n)
    const swapped = straight === null ? blocks(finalOrder, batch, n, m) : null
    if (swapped !== null) {
      [a, b] = [b, a];
      [batch, m, n] = swapped
    } else if (straight !== null) {
      [batch, m, n] = straight
    }
  }
  // the order of the summed labels: a's or b's, whichever needs fewer elements copied
  const cost = (k: number[]): number =>
    (fits(a.labels, batch, m, k) ? 0 : p.size(a.labels)) + (fits(b.labels, batch, k, n) ? 0 : p.size(b.labels))
  const kA = a.labels.filter(l => con.includes(l))
  const kB = b.labels.filter(l => con.includes(l))
  const k = cost(kB) < cost(kA) ? kB : kA
  if (!fits(a.labels, batch, m, k)) a = p.arrange(a, [...batch, ...m, ...k])
  if (!fits(b.labels, batch, k, n)) b = p.arrange(b, [...batch, ...k, ...n])
  return p.gemm(a, b, batch, m, k, n)
}

/** Whether labels are [batch, x, y] or [batch, y, x]: a matrix stored plainly or transposed. */
function fits (labels: number[], batch: number[], x: number[], y: number[]): boolean {
  return sameShape(labels, [...batch, ...x, ...y]) || sameShape(labels, [...batch, ...y, ...x])
}

/**
 * Plans a contraction into the program's output laid out in the order `output` (labels of size
 * 1 take no room), and returns the program. An empty operand leaves the output all zeros.
 */
function program (inputs: number[], operands: Operand[], output: number[], p: Planner, finish?: (t: PTensor) => void, outLength = p.size(output)): Program {
  // an empty operand: every sum has no terms
  if (!operands.some(o => o.shape.includes(0))) {
    const t = contract(p, operands, output)
    if (finish !== undefined) finish(t)
    else {
      const order = output.filter(l => p.sizes[l] !== 1)
      if (!sameShape(t.labels, order) || t.slot < operands.length || !p.retarget(t)) {
        p.strided(t.slot, contiguousStrides(t.labels, p.sizes), order, [], OUT, undefined, outLength)
      }
    }
  }
  return { inputs, steps: p.steps, outLength }
}

export interface EinsumInfo {
  spec: EinsumSpec
  programs: Program[]
  outShape: number[]
  outElements: number
  flops: number
}

/** The forward plan, checked against the limits: every intermediate, the result and the work. */
export function einsumInfo (spec: EinsumSpec, limits: Limits): EinsumInfo {
  const outElements = elementCount(spec.outShape, 'the result', limits)
  const p = new Planner(spec.inputs.length, spec.sizes, limits, 'this einsum')
  const prog = program(spec.inputs.map((_, i) => i), spec.inputs.map((axes, i) => ({ axes, shape: spec.shapes[i] })), spec.output, p)
  checkFlops(p.flops, 'this einsum', limits)
  return { spec, programs: [prog], outShape: spec.outShape, outElements, flops: p.flops }
}

/**
 * The gradient of Σ gradOutput·einsum(operands) with respect to each operand in `wrt`, as
 * programs over the task's tensors [...operands, gradOutput], one after the other in the output
 * buffer (each gradient has its operand's shape), then the forward result when `withResult`.
 * The gradient of operand i is itself an einsum, of gradOutput and the other operands into the
 * labels of operand i; what it cannot name is filled in: a label only in operand i is constant
 * along (broadcast), an axis of size 1 that broadcast in the forward gets the sum (the einsum
 * sums it), and a repeated label (a diagonal) gets zeros off the diagonal.
 */
export function einsumBackwardInfo (spec: EinsumSpec, wrt: number[], withResult: boolean, limits: Limits): EinsumInfo & { grads: Array<{ operand: number, shape: number[], length: number }> } {
  const n = spec.inputs.length
  const outElements = elementCount(spec.outShape, 'the result', limits)
  const programs: Program[] = []
  const grads: Array<{ operand: number, shape: number[], length: number }> = []
  let flops = 0
  for (const i of wrt) {
    const shape = spec.shapes[i]
    const length = elementCount(shape, `the gradient of operand ${i}`, limits)
    const others = [...Array(n).keys()].filter(j => j !== i)
    const operands: Operand[] = [
      { axes: spec.output, shape: spec.outShape },
      ...others.map(j => ({ axes: spec.inputs[j], shape: spec.shapes[j] }))
    ]
    const own = spec.inputs[i]
    const ownStrides = stridesOf(shape)
    // the labels of operand i's axes that are not broadcast (size 1), once each
    const labels: number[] = []
    const dstStrides: Record<number, number> = {}
    let repeated = false
    own.forEach((l, j) => {
      if (shape[j] === 1) return
      if (dstStrides[l] === undefined) { dstStrides[l] = 0; labels.push(l) } else repeated = true
      dstStrides[l] += ownStrides[j]
    })
    const available = new Set(operands.flatMap(o => o.axes.filter((_, j) => o.shape[j] !== 1)))
    const gl = labels.filter(l => available.has(l))
    const p = new Planner(operands.length, spec.sizes, limits, `the gradient of operand ${i}`)
    programs.push(program([n, ...others], operands, gl, p, (t) => {
      // G (labels t.labels) spread over operand i's shape
      const g = contiguousStrides(t.labels, spec.sizes)
      p.strided(t.slot, g, labels, [], OUT, labels.map(l => dstStrides[l]), length, repeated)
    }, length))
    grads.push({ operand: i, shape, length })
    flops += p.flops
  }
  if (withResult) {
    const f = einsumInfo(spec, limits)
    programs.push(f.programs[0])
    flops += f.flops
  }
  checkFlops(flops, 'this einsum\'s gradient', limits)
  return { spec, programs, outShape: spec.outShape, outElements, flops, grads }
}

// ---------------------------------------------------------------------------------- running

/** Runs the programs over `tensors`, each writing the next piece of `out` (zeros where nothing is written). */
export function einsum (out: FloatArray, tensors: FloatArray[], programs: Program[], dtype: DType): FloatArray {
  let offset = 0
  for (const prog of programs) {
    const dst = out.subarray(offset, offset + prog.outLength)
    offset += prog.outLength
    const slots: Array<FloatArray | null> = prog.inputs.map(i => tensors[i])
    const lastUse = new Map<number, number>()
    prog.steps.forEach((s, i) => {
      if (s.kind === 'strided') lastUse.set(s.src, i)
      else { lastUse.set(s.a, i); lastUse.set(s.b, i) }
    })
    for (const [i, s] of prog.steps.entries()) {
      const target = s.dst === OUT ? dst : allocate(dtype, s.kind === 'strided' ? s.dstLength : s.batches * s.m * s.n)
      if (s.kind === 'strided') {
        if (s.zero) target.fill(0)
        strided(target, slots[s.src] as FloatArray, s)
      } else {
        gemmStep(target, slots[s.a] as FloatArray, slots[s.b] as FloatArray, s)
      }
      if (s.dst !== OUT) slots[s.dst] = target
      // intermediates no longer needed are let go
      for (const [slot, at] of lastUse) if (at === i && slot >= prog.inputs.length) slots[slot] = null
    }
  }
  return out
}

/**
 * dst[Σ i·dstStrides] = Σ over the summed dims of src[Σ i·srcStrides + Σ j·sumStrides], for every
 * index i of dims; sums in float64, stored once.
 */
function strided (dst: FloatArray, src: FloatArray, s: StridedStep): void {
  const { dims, srcStrides, dstStrides, sumDims, sumStrides } = s
  const rank = dims.length
  let total = 1
  for (const d of dims) total *= d
  let sumTotal = 1
  for (const d of sumDims) sumTotal *= d
  if (total === 0) return
  // the innermost kept dimension runs in a plain loop
  const inner = rank > 0 ? dims[rank - 1] : 1
  const si = rank > 0 ? srcStrides[rank - 1] : 0
  const di = rank > 0 ? dstStrides[rank - 1] : 0
  const outer = total / inner
  const idx = new Array<number>(Math.max(0, rank - 1)).fill(0)
  let so = 0
  let dO = 0
  const sr = sumDims.length
  const sumIdx = new Array<number>(sr).fill(0)
  for (let o = 0; o < outer; o++) {
    if (sumTotal === 1) {
      for (let x = 0; x < inner; x++) dst[dO + x * di] = src[so + x * si]
    } else {
      for (let x = 0; x < inner; x++) {
        let acc = 0
        let off = so + x * si
        if (sr === 1) {
          // one summed dimension (a row sum, a trace): a plain loop
          const st = sumStrides[0]
          for (let t = 0; t < sumTotal; t++, off += st) acc += src[off]
        } else if (sumTotal > 0) {
          sumIdx.fill(0)
          for (let t = 0; t < sumTotal; t++) {
            acc += src[off]
            for (let a = sr - 1; a >= 0; a--) {
              off += sumStrides[a]
              if (++sumIdx[a] < sumDims[a]) break
              off -= sumStrides[a] * sumDims[a]
              sumIdx[a] = 0
            }
          }
        }
        dst[dO + x * di] = acc
      }
    }
    for (let a = rank - 2; a >= 0; a--) {
      so += srcStrides[a]
      dO += dstStrides[a]
      if (++idx[a] < dims[a]) break
      so -= srcStrides[a] * dims[a]
      dO -= dstStrides[a] * dims[a]
      idx[a] = 0
    }
  }
}

function gemmStep (out: FloatArray, a: FloatArray, b: FloatArray, s: GemmStep): void {
  const { batches: B, m, k, n } = s
  if (B * m * n === 0) return
  if (m * k * n === 1) {
    for (let t = 0; t < B; t++) out[t] = a[t] * b[t]
    return
  }
  if (B === 1 && m === 1 && n === 1) {
    dotKernel(out, a, b, { length: k, outShape: [], outElements: 1, flops: 2 * k })
    return
  }
  productT(out, 0, a, 0, s.transA, b, 0, s.transB, B, m, k, n)
}
