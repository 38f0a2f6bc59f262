/**
 * Kernel benchmark: GFLOP/s of the plain TypeScript reference kernels, the kernels the worker
 * runs (src/kernels/*.ts, WebAssembly SIMD), and @tensorflow/tfjs-backend-wasm (XNNPACK), all on
 * one thread of this process. Run with `npm run bench`; prints one table.
 *
 * Each cell is the median of several timed runs after a warm-up (which also lets V8 tier the
 * WebAssembly up from Liftoff to TurboFan); every result feeds a checksum printed at the end, so
 * nothing can be optimized away. The new kernel's and tfjs's runs alternate, so that a busy
 * moment of a shared machine hits both alike (their ratio is the steadier number). The reference
 * is skipped ("—") where one run would take more than ~5 s; it gets fewer runs (down to one)
 * where they would take more than that together.
 *
 * Our kernels are timed as the worker calls them: operands copied into the module's memory,
 * computed, the result copied out into a fresh typed array. tfjs is timed from tensors already
 * on its backend to the result read back with dataSync().
 *
 * "whole pool" times the service's split path for one matmul (src/worker/tasks.ts splitMatmul):
 * operands copied into shared memory, the rows shared among all the cores' worker threads, the
 * result read from shared memory — what one large request gets from an otherwise idle pool.
 * "1 worker" times the same path with one share, in one worker thread, alternating with it.
 */
import { cpus, loadavg } from 'node:os'
import * as tf from '@tensorflow/tfjs-core'
import { getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm'
import { attention, attentionInfo } from '../src/kernels/attention.js'
import { conv2d, conv2dInfo } from '../src/kernels/conv2d.js'
import { matmul, matmulInfo } from '../src/kernels/matmul.js'
import { attentionReference } from '../src/kernels/reference/attention.js'
import { conv2dReference } from '../src/kernels/reference/conv2d.js'
import { matmulReference } from '../src/kernels/reference/matmul.js'
import { allocate, type DType, type FloatArray, type Limits } from '../src/kernels/types.js'
import { splitMatmul } from '../src/worker/tasks.js'
import { Piscina } from 'piscina'

const LIMITS: Limits = { maxElements: 1 << 26, maxFlops: 1e13 }
const RUNS = 5
const REF_BUDGET_MS = 5000

let checksum = 0
function use (x: ArrayLike<number>): void {
  checksum += (x[0] ?? 0) + (x[x.length >> 1] ?? 0) + (x[x.length - 1] ?? 0)
}

function random (dtype: DType, n: number, seed: number): FloatArray {
  const out = allocate(dtype, n)
  let s = seed >>> 0
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = s / 2147483648 - 1
  }
  return out
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

/** Median milliseconds of `runs` timed calls after `warm` untimed ones. */
function time (fn: () => ArrayLike<number>, runs: number, warm: number): number {
  for (let i = 0; i < warm; i++) use(fn())
  const ts: number[] = []
  while (ts.length < runs) {
    const t0 = performance.now()
    const r = fn()
    ts.push(performance.now() - t0)
    use(r)
  }
  return median(ts)
}

function warmUp (fn: () => ArrayLike<number>): void {
  const t0 = performance.now()
  let n = 0
  while (n < 3 || (performance.now() - t0 < 300 && n < 50)) { use(fn()); n++ }
}

/** A tfjs result read back as a typed array (the tensor freed). */
function tfRun (make: () => tf.Tensor): () => ArrayLike<number> {
  return () => {
    const t = make()
    const d = t.dataSync()
    t.dispose()
    return d
  }
}

/**
 * Median milliseconds of the new kernel and of tfjs (null: no tfjs for this row), after a warm-up
 * of each (long enough for V8 to tier the WebAssembly up to TurboFan). Their timed runs alternate,
 * so that a busy moment of the machine hits both alike: at least RUNS each, more (up to 41) while
 * they fit in ~2 s.
 */
function timeFastAndTf (fast: () => ArrayLike<number>, tfjs: (() => ArrayLike<number>) | null): [number, number | null] {
  warmUp(fast)
  if (tfjs !== null) warmUp(tfjs)
  const tf: number[] = []
  const ours: number[] = []
  const start = performance.now()
  const once = (fn: () => ArrayLike<number>, into: number[]): void => {
    const t0 = performance.now()
    const r = fn()
    into.push(performance.now() - t0)
    use(r)
  }
  while (ours.length < RUNS || (ours.length < 41 && performance.now() - start < 2000)) {
    once(fast, ours)
    if (tfjs !== null) once(tfjs, tf)
  }
  return [median(ours), tfjs === null ? null : median(tf)]
}

/** The reference: skipped when one run would pass the budget, fewer runs when all would. */
let refRate = 0.5e9 // FLOP/s guess, updated after every measured row
function timeReference (flops: number, fn: () => ArrayLike<number>): number | null {
  const guess = flops / refRate * 1000
  if (guess > REF_BUDGET_MS) return null
  const runs = Math.max(1, Math.min(RUNS, Math.floor(REF_BUDGET_MS / guess / 2)))
  const ms = time(fn, runs, runs >= 3 ? 1 : 0)
  refRate = flops / ms * 1000
  return ms
}

interface Row { name: string, flops: number, ref: number | null, fast: number, tfjs: number | null, pool?: () => Promise<{ one: number, all: number }> }
const rows: Row[] = []

function matmulRow (name: string, dtype: DType, batch: number, m: number, k: number, n: number): void {
  const aShape = batch > 1 ? [batch, m, k] : [m, k]
  const bShape = batch > 1 ? [batch, k, n] : [k, n]
  const info = matmulInfo(aShape, bShape, LIMITS)
  const a = random(dtype, batch * m * k, 1)
  const b = random(dtype, batch * k * n, 2)
  const ref = timeReference(info.flops, () => matmulReference(allocate(dtype, info.outElements), a, b, info))
  const run = (): FloatArray => matmul(allocate(dtype, info.outElements), a, b, info)
  const pool = async (): Promise<{ one: number, all: number }> => await timePool(dtype, a, b, info)
  if (dtype === 'float64') {
    rows.push({ name, flops: info.flops, ref, fast: timeFastAndTf(run, null)[0], tfjs: null, pool })
    return
  }
  const ta = tf.tensor(a as Float32Array, aShape, 'float32')
  const tb = tf.tensor(b as Float32Array, bShape, 'float32')
  const [fast, tfjs] = timeFastAndTf(run, tfRun(() => tf.matMul(ta, tb)))
  ta.dispose()
  tb.dispose()
  rows.push({ name, flops: info.flops, ref, fast, tfjs, pool })
}

const workerPool = new Piscina({
  filename: new URL('../src/worker/source-entry.mjs', import.meta.url).href,
  minThreads: cpus().length,
  maxThreads: cpus().length
})

/**
 * Median ms of one matmul in one worker thread and split over every worker thread, as the pool
 * runs a large request: both through the same split path (one share, or one per thread), after
 * the same warm-up, their runs alternating, so that the ratio compares like with like.
 */
async function timePool (dtype: DType, a: FloatArray, b: FloatArray, info: ReturnType<typeof matmulInfo>): Promise<{ one: number, all: number }> {
  const once = async (parts: number): Promise<number> => {
    const t0 = performance.now()
    const { tasks, out } = splitMatmul({ dtype, a, b, info }, parts)
    await Promise.all(tasks.map(async t => await workerPool.run(t, { name: 'matmulRows' })))
    const ms = performance.now() - t0
    use(out)
    return ms
  }
  // warm-up: every thread's module tiers up from Liftoff to TurboFan (the first large call in a
  // fresh thread runs several times slower); one-share runs go to either thread
  const threads = workerPool.threads.length
  const warmUntil = performance.now() + 3000
  for (let i = 0; i < 5 || performance.now() < warmUntil; i++) {
    await once(threads)
    await Promise.all(Array.from({ length: threads }, async () => await once(1)))
  }
  const one: number[] = []
  const all: number[] = []
  for (let i = 0; i < RUNS; i++) {
    one.push(await once(1))
    all.push(await once(threads))
  }
  return { one: median(one), all: median(all) }
}

function conv2dRow (name: string, layout: 'NCHW' | 'NHWC'): void {
  const [N, C, H, W, K, kh, kw] = [1, 3, 224, 224, 16, 3, 3]
  const nchw = layout === 'NCHW'
  const xShape = nchw ? [N, C, H, W] : [N, H, W, C]
  const fShape = nchw ? [K, C, kh, kw] : [kh, kw, C, K]
  const info = conv2dInfo(xShape, fShape, null, { padding: 1, layout }, LIMITS)
  const x = random('float32', N * C * H * W, 3)
  const f = random('float32', K * C * kh * kw, 4)
  const ref = timeReference(info.flops, () => conv2dReference(allocate('float32', info.outElements), x, f, null, info))
  // tfjs-wasm convolves NHWC only: the same sizes, laid out [1,224,224,3] with a [3,3,3,16] filter
  const tx = tf.tensor4d(random('float32', N * C * H * W, 3) as Float32Array, [N, H, W, C])
  const tw = tf.tensor4d(random('float32', K * C * kh * kw, 4) as Float32Array, [kh, kw, C, K])
  const [fast, tfjs] = timeFastAndTf(() => conv2d(allocate('float32', info.outElements), x, f, null, info),
    tfRun(() => tf.conv2d(tx, tw, 1, [[0, 0], [1, 1], [1, 1], [0, 0]])))
  tx.dispose()
  tw.dispose()
  rows.push({ name, flops: info.flops, ref, fast, tfjs })
}

function attentionRow (name: string, heads: number, L: number, E: number): void {
  const shape = [heads, L, E]
  const info = attentionInfo(shape, shape, shape, null, null, {}, LIMITS)
  const q = random('float32', heads * L * E, 5)
  const k = random('float32', heads * L * E, 6)
  const v = random('float32', heads * L * E, 7)
  const outN = heads * L * E
  const ref = timeReference(info.flops, () => {
    const out = allocate('float32', outN)
    attentionReference(out, null, q, k, v, null, info)
    return out
  })
  const tq = tf.tensor3d(q as Float32Array, [heads, L, E])
  const tk = tf.tensor3d(k as Float32Array, [heads, L, E])
  const tv = tf.tensor3d(v as Float32Array, [heads, L, E])
  const [fast, tfjs] = timeFastAndTf(() => {
    const out = allocate('float32', outN)
    attention(out, null, q, k, v, null, info)
    return out
  }, tfRun(() => tf.tidy(() => {
    const scores = tf.mul(tf.matMul(tq, tk, false, true), info.scale)
    return tf.matMul(tf.softmax(scores), tv)
  })))
  tq.dispose()
  tk.dispose()
  tv.dispose()
  rows.push({ name, flops: info.flops, ref, fast, tfjs })
}

setThreadsCount(1)
await tf.setBackend('wasm')
await tf.ready()

for (const dtype of ['float32', 'float64'] as const) {
  for (const n of [64, 128, 256, 512, 1024]) matmulRow(`matmul ${n}x${n}x${n} ${dtype}`, dtype, 1, n, n, n)
}
matmulRow('batched matmul 64x(64x64x64) float32', 'float32', 64, 64, 64, 64)
conv2dRow('conv2d 1x3x224x224 * 16x3x3x3 pad 1 NCHW float32', 'NCHW')
conv2dRow('conv2d 1x224x224x3 * 3x3x3x16 pad 1 NHWC float32', 'NHWC')
attentionRow('attention 8x(128x64) Lq=Lk=128 float32', 8, 128, 64)

const gf = (flops: number, ms: number | null): string => ms === null ? '—' : (flops / ms / 1e6).toFixed(2)
const poolMs = new Map<Row, { one: number, all: number }>()
for (const r of rows) if (r.pool !== undefined) poolMs.set(r, await r.pool())
await workerPool.close()
const header = ['kernel', 'reference TS', 'new (1 thread)', '1 worker', `whole pool (${cpus().length} workers)`, 'pool/1 worker', 'tfjs-wasm', 'new/tfjs']
const table = rows.map(r => [
  r.name,
  gf(r.flops, r.ref),
  gf(r.flops, r.fast),
  gf(r.flops, poolMs.get(r)?.one ?? null),
  gf(r.flops, poolMs.get(r)?.all ?? null),
  poolMs.has(r) ? (poolMs.get(r)!.one / poolMs.get(r)!.all).toFixed(2) + 'x' : '—',
  gf(r.flops, r.tfjs),
  r.tfjs === null ? '—' : (r.tfjs / r.fast).toFixed(2) + 'x'
])
const widths = header.map((h, i) => Math.max(h.length, ...table.map(t => t[i].length)))
const line = (cells: string[]): string => '| ' + cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(' | ') + ' |'

console.log(`GFLOP/s, median of ${RUNS}-41 runs (new and tfjs alternating, as many as fit in ~2 s; the reference 1-${RUNS} runs in ~${REF_BUDGET_MS / 1000} s) after warm-up; load average ${loadavg()[0].toFixed(1)}; ${cpus()[0].model}, ${cpus().length} cores; node ${process.version}; ` +
  `one thread (tfjs-wasm ${tf.version_core} XNNPACK, SIMD ${String(tf.env().getBool('WASM_HAS_SIMD_SUPPORT'))}, threads ${getThreadsCount()})`)
console.log(line(header))
console.log('|' + widths.map((w, i) => i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':').join('|') + '|')
for (const t of table) console.log(line(t))
console.log(`(checksum ${checksum.toPrecision(6)}; tfjs-wasm has no float64; its conv2d rows both run NHWC; "1 worker" and "whole pool": one matmul through the pool's split path, in one share or split by rows among the worker threads, copies into shared memory included, their runs alternating)`)
