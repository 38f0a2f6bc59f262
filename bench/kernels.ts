/**
 * Kernel benchmark (`npm run bench`): GFLOP/s of the kernels on one thread, beside NumPy on
 * OpenBLAS doing the same work in the same run (bench/numpy_kernels.py, one BLAS thread).
 *
 * Columns, each the median of several timed runs after a warm-up:
 * - "1 worker": the path a request takes. The operands are moved to a worker of a one-thread
 *   piscina pool running the service's worker entry (the native engine enabled, as in the
 *   service), computed there, and the result moved back; timed from `pool.run` to its answer.
 * - "engine": the same kernel call in this thread with the engine enabled: the engine itself.
 * - "wasm": the WebAssembly SIMD kernels in this thread (the engine off), the kernels before the
 *   engine; they still compute the tiny work the main thread does inline.
 * - "NumPy": bench/numpy_kernels.py, run once before and once after our runs; the better of the
 *   two is shown (a busy moment of a shared machine then does not favour us).
 *
 * The backward table times the gradient routes' kernels (every operand's gradient) through a
 * worker beside the forward kernel of the same shapes, both from the first table's run, and
 * NumPy's gradients written out by hand; GFLOP/s count a backward's work as twice its forward's.
 *
 * The einsum table sets einsum beside the matmul calls that do the same work, each in one worker:
 * attention scores `bhqd,bhkd->bhqk` against one matmul of q and kᵀ (kᵀ given transposed), and a
 * chain of three matrices against the two matmuls its plan makes, one after the other (the
 * intermediate moved back and forth, as a client calling /v1/matmul twice would have it).
 *
 * The last table times one large matmul over the whole pool (both workers' threads, as the service
 * gives an idle pool's cores to one request) against one worker's thread in the same two-worker
 * pool, runs alternating.
 *
 *   npm run bench              # needs Debian's python3-numpy and libopenblas0-pthread
 *   BENCH_CASES='^conv2d' npm run bench   # only the cases whose names match (and their forwards)
 */
import { spawnSync } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { Piscina } from 'piscina'
import { attention, attentionInfo } from '../src/kernels/attention.js'
import { conv2d, conv2dInfo } from '../src/kernels/conv2d.js'
import { binaryInfo } from '../src/kernels/binary.js'
import { einsumInfo, parseEinsum } from '../src/kernels/einsum.js'
import { layerNormInfo } from '../src/kernels/layer-norm.js'
import { matmul, matmulInfo } from '../src/kernels/matmul.js'
import { enableEngine } from '../src/kernels/ort/engine.js'
import { reduceInfo } from '../src/kernels/reduce.js'
import { product } from '../src/kernels/shape.js'
import { softmaxInfo } from '../src/kernels/softmax.js'
import { allocate, type DType, type FloatArray, type Limits } from '../src/kernels/types.js'
import { unaryInfo } from '../src/kernels/unary.js'
import type { BackwardTask } from '../src/operations/backward.js'
import { OPERATIONS, type OperationName } from '../src/operations/index.js'
import type { Operation } from '../src/operations/spec.js'
import { buffers } from '../src/tensor/buffers.js'
import { replyBytesBound, type ReplySpec } from '../src/tensor/encode.js'
import { type NumpyCase, numpyRun } from './numpy.js'
import { startTunables } from './serve.js'

// the worker path is measured in a process set up as `npm start` sets up the service's (its glibc
// allocator settings, read at start-up): without them, this process runs itself again with them
if (process.env.GLIBC_TUNABLES !== startTunables()) {
  const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit', env: { ...process.env, GLIBC_TUNABLES: startTunables() }
  })
  process.exit(again.status ?? 1)
}

const LIMITS: Limits = { maxElements: 1 << 26, maxFlops: 1e13 }
const WORKER = new URL('../src/worker/source-entry.mjs', import.meta.url).href

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

/**
 * Median ms of runs that take about `budgetMs` together (3 to 50 runs), after a warm-up of about
 * 300 ms. `prepare` makes each run's argument, untimed (a worker task's operands, copied to be moved).
 */
async function time<T> (fn: (arg: T) => Promise<ArrayLike<number>> | ArrayLike<number>, prepare: () => T, budgetMs = 600): Promise<number> {
  const w0 = performance.now()
  let warm = 0
  // (the engine needs some dozens of calls in a new thread before it runs at full speed)
  while (warm < 10 || (performance.now() - w0 < 300 && warm < 500)) { use(await fn(prepare())); warm++ }
  const per = (performance.now() - w0) / warm
  const runs = Math.max(3, Math.min(50, Math.round(budgetMs / per)))
  const ts: number[] = []
  for (let i = 0; i < runs; i++) {
    const arg = prepare()
    const t0 = performance.now()
    const r = await fn(arg)
    ts.push(performance.now() - t0)
    use(r)
  }
  return median(ts)
}
const none = (): null => null

/** One benchmark case: a task for the worker entry and the same call in this thread. */
interface Case {
  name: string
  flops: number
  numpy: NumpyCase
  /** The worker task's name and a fresh task with its transfer list (operands copied per run), and its result's length. */
  task: () => { name: OperationName, task: object, transfer: ArrayBuffer[], resultLength: number }
  /** The kernel in this thread. */
  local: () => ArrayLike<number>
  /** The target ratio to NumPy. */
  target: number
  /** For a backward case: its forward case (the target is then the ratio to the forward's GFLOP/s). */
  forward?: Case
}

/** A run's copy of an operand, in a buffer of this thread's pool, as a request's decoded operands are. */
function copy (x: FloatArray): FloatArray {
  const out = x instanceof Float64Array ? new Float64Array(buffers.take(x.byteLength), 0, x.length) : new Float32Array(buffers.take(x.byteLength), 0, x.length)
  out.set(x)
  return out
}

/** Runs a task on the worker entry as the pool does (src/plugins/pool.ts): its `run`, naming the operation. */
async function onWorker (pool: Piscina, operation: OperationName, task: object, transferList: ArrayBuffer[]): Promise<unknown> {
  ;(task as { operation?: OperationName }).operation = operation
  return await pool.run(task, { name: 'run', transferList })
}

/**
 * A task through the worker entry as the service runs it (src/routes/v1/operations.ts): the reply
 * written in the worker as a safetensors file into a buffer lent from this thread's pool, the
 * operand buffers moved in and back, both given back to the pool once the reply is read.
 */
async function runTask (pool: Piscina, { name, task, transfer, resultLength }: ReturnType<Case['task']>): Promise<ArrayLike<number>> {
  const t = task as { dtype: DType, reply?: ReplySpec, into?: ArrayBuffer, lent?: ArrayBuffer[] }
  t.reply = { format: 'safetensors', encoding: 'nested', outputs: [{ field: 'result', shape: [resultLength], length: resultLength }] }
  const into = buffers.take(replyBytesBound(t.dtype, t.reply))
  t.into = into
  t.lent = transfer
  const answer = await onWorker(pool, name, t, [...transfer, into]) as { bytes: Uint8Array, lent: ArrayBuffer[] }
  use(answer.bytes)
  for (const b of answer.lent) buffers.give(b)
  buffers.give(answer.bytes.buffer as ArrayBuffer)
  return answer.bytes
}

function matmulCase (dtype: DType, batch: number, m: number, k: number, n: number, target: number): Case {
  const aShape = batch > 0 ? [batch, m, k] : [m, k]
  const bShape = batch > 0 ? [batch, k, n] : [k, n]
  const info = matmulInfo(aShape, bShape, LIMITS)
  const name = batch > 0 ? `batched ${batch}x(${m}x${k}·${k}x${n}) ${dtype}` : `matmul ${m}x${k}·${k}x${n} ${dtype}`
  const a = random(dtype, info.B * m * k, 1)
  const b = random(dtype, info.B * k * n, 2)
  return {
    name,
    flops: info.flops,
    numpy: batch > 0 ? { name, kind: 'batched', dtype, batch, m, k, n } : { name, kind: 'matmul', dtype, m, k, n },
    task: () => {
      const t = { dtype, a: copy(a), b: copy(b), info }
      return { name: 'matmul', task: t, transfer: [t.a.buffer as ArrayBuffer, t.b.buffer as ArrayBuffer], resultLength: info.outElements }
    },
    local: () => matmul(allocate(dtype, info.outElements), a, b, info),
    target
  }
}

function conv2dCase (dtype: DType, target: number): Case {
  const [N, C, H, W, K, kh, kw] = [1, 3, 224, 224, 16, 3, 3]
  const info = conv2dInfo([N, C, H, W], [K, C, kh, kw], null, { padding: 1 }, LIMITS)
  const x = random(dtype, N * C * H * W, 3)
  const f = random(dtype, K * C * kh * kw, 4)
  const name = `conv2d ${N}x${C}x${H}x${W}, ${K} filters ${kh}x${kw}, pad 1 ${dtype}`
  return {
    name,
    flops: info.flops,
    numpy: { name, kind: 'conv2d', dtype, N, C, H, W, K, kh, kw, pad: 1 },
    task: () => {
      const t = { dtype, input: copy(x), kernel: copy(f), bias: null, info }
      return { name: 'conv2d', task: t, transfer: [t.input.buffer as ArrayBuffer, t.kernel.buffer as ArrayBuffer], resultLength: info.outElements }
    },
    local: () => conv2d(allocate(dtype, info.outElements), x, f, null, info),
    target
  }
}

function attentionCase (dtype: DType, target: number): Case {
  const [B, L, E] = [8, 128, 64]
  const shape = [B, L, E]
  const info = attentionInfo(shape, shape, shape, null, null, {}, LIMITS)
  const q = random(dtype, B * L * E, 5)
  const k = random(dtype, B * L * E, 6)
  const v = random(dtype, B * L * E, 7)
  const name = `attention ${B}x${L}x${E} ${dtype}`
  return {
    name,
    flops: info.flops,
    numpy: { name, kind: 'attention', dtype, B, L, E },
    task: () => {
      const t = { dtype, query: copy(q), key: copy(k), value: copy(v), mask: null, info }
      return { name: 'attention', task: t, transfer: [t.query.buffer, t.key.buffer, t.value.buffer] as ArrayBuffer[], resultLength: B * L * E }
    },
    local: () => {
      const out = allocate(dtype, B * L * E)
      attention(out, null, q, k, v, null, info)
      return out
    },
    target
  }
}

/**
 * The backward of a forward case: every operand's gradient from a random output gradient, through
 * the worker entry's backward task. Its work is counted as twice the forward's.
 */
function backwardCase (f: Case, target: number): Case {
  const { name: fname, task: ftask } = f.task()
  const forward = ftask as { dtype: DType, info: { outElements?: number, outShape: number[] } } & Record<string, unknown>
  const operands = fname === 'matmul' ? ['a', 'b'] : fname === 'conv2d' ? ['input', 'kernel'] : ['query', 'key', 'value']
  const resultLength = forward.info.outShape.reduce((p, d) => p * d, 1)
  const g = random(forward.dtype, resultLength, 8)
  const make = (): BackwardTask => {
    const { task } = f.task()
    const t = task as Record<string, FloatArray>
    return {
      dtype: forward.dtype,
      forward: task as BackwardTask['forward'],
      g: copy(g),
      layout: operands.map(o => [`grads.${o}`, t[o].length]),
      info: { flops: 2 * f.flops }
    }
  }
  const name = `${fname}Backward` as OperationName
  return {
    name: `${f.name} backward`,
    flops: 2 * f.flops,
    numpy: { ...f.numpy, name: `${f.name} backward`, backward: true },
    task: () => {
      const t = make()
      const transfer = [t.g, ...operands.map(o => (t.forward as unknown as Record<string, FloatArray>)[o])].map(x => x.buffer as ArrayBuffer)
      return { name, task: t, transfer, resultLength: t.layout.reduce((n, [, length]) => n + length, 0) }
    },
    local: () => (OPERATIONS[name] as Operation).run(make()),
    target,
    forward: f
  }
}

const CASES: Case[] = []
for (const dtype of ['float32', 'float64'] as const) {
  for (const n of [256, 512, 1024]) CASES.push(matmulCase(dtype, 0, n, n, n, 0.8))
}
for (const dtype of ['float32', 'float64'] as const) CASES.push(matmulCase(dtype, 64, 64, 64, 64, 0.8))
for (const dtype of ['float32', 'float64'] as const) CASES.push(conv2dCase(dtype, 0.7))
for (const dtype of ['float32', 'float64'] as const) CASES.push(attentionCase(dtype, 0.7))
for (const f of CASES.filter(c => /^matmul (512|1024)x|^conv2d|^attention/.test(c.name))) CASES.push(backwardCase(f, 0.7))

/** einsum in a worker, and the matmul tasks of the same work one after the other in the same worker. */
interface EinsumCase {
  name: string
  flops: number
  numpy: NumpyCase
  einsum: () => { name: OperationName, task: object, transfer: ArrayBuffer[] }
  matmuls: (pool: Piscina) => Promise<ArrayLike<number>>
}

function einsumCase (dtype: DType, equation: string, shapes: number[][], name: string): EinsumCase {
  const info = einsumInfo(parseEinsum(equation, shapes), LIMITS)
  const operands = shapes.map((s, i) => random(dtype, s.reduce((x, y) => x * y, 1), 10 + i))
  return {
    name: `${name} ${dtype}`,
    flops: info.flops,
    numpy: { name: `${name} ${dtype}`, kind: 'einsum', dtype, equation, shapes, flops: info.flops },
    einsum: () => {
      const t = { dtype, operands: operands.map(copy), info: { flops: info.flops, programs: info.programs, outElements: info.outElements } }
      return { name: 'einsum', task: t, transfer: t.operands.map(o => o.buffer as ArrayBuffer) }
    },
    matmuls: async () => { throw new Error('set below') }
  }
}

/** bhqd,bhkd->bhqk beside matmul(q [b,h,q,d], kᵀ [b,h,d,k]). */
function scoresCase (dtype: DType): EinsumCase {
  const [b, h, L, d] = [2, 4, 128, 64]
  const c = einsumCase(dtype, 'bhqd,bhkd->bhqk', [[b, h, L, d], [b, h, L, d]], `bhqd,bhkd->bhqk ${b}x${h}x${L}x${d}`)
  const info = matmulInfo([b, h, L, d], [b, h, d, L], LIMITS)
  const q = random(dtype, b * h * L * d, 10)
  const kt = random(dtype, b * h * L * d, 11)
  c.matmuls = async (pool) => {
    const t = { dtype, a: copy(q), b: copy(kt), info }
    return await onWorker(pool, 'matmul', t, [t.a.buffer as ArrayBuffer, t.b.buffer as ArrayBuffer]) as FloatArray
  }
  return c
}

/** ij,jk,kl->il beside the two matmuls of its plan ((ij,jk) first, then with kl). */
function chainCase (dtype: DType): EinsumCase {
  const [i, j, k, l] = [256, 512, 256, 512]
  const c = einsumCase(dtype, 'ij,jk,kl->il', [[i, j], [j, k], [k, l]], `ij,jk,kl->il ${i}x${j}·${j}x${k}·${k}x${l}`)
  const first = matmulInfo([i, j], [j, k], LIMITS)
  const second = matmulInfo([i, k], [k, l], LIMITS)
  if (first.flops + second.flops !== c.flops) throw new Error('the chain\'s plan is not the two matmuls timed beside it')
  const [A, B, C] = [random(dtype, i * j, 10), random(dtype, j * k, 11), random(dtype, k * l, 12)]
  c.matmuls = async (pool) => {
    const t1 = { dtype, a: copy(A), b: copy(B), info: first }
    const t2 = { dtype, b: copy(C), info: second }
    const ab = await onWorker(pool, 'matmul', t1, [t1.a.buffer as ArrayBuffer, t1.b.buffer as ArrayBuffer]) as FloatArray
    return await onWorker(pool, 'matmul', { ...t2, a: ab }, [ab.buffer as ArrayBuffer, t2.b.buffer as ArrayBuffer]) as FloatArray
  }
  return c
}

const EINSUM_CASES: EinsumCase[] = []
for (const dtype of ['float32', 'float64'] as const) EINSUM_CASES.push(scoresCase(dtype), chainCase(dtype))

/** An elementwise case in float32, measured in GB/s: the operands read and the result written, per call. */
interface StreamCase { name: string, bytes: number, numpy: NumpyCase, task: Case['task'], local: () => ArrayLike<number> }

function binaryCase (op: 'add' | 'mul', aShape: number[], bShape: number[]): StreamCase {
  const dtype = 'float32'
  const info = binaryInfo(op, aShape, bShape, LIMITS)
  const a = random(dtype, product(aShape), 20)
  const b = random(dtype, product(bShape), 21)
  const name = `binary ${op} ${aShape.join('x')} with ${bShape.join('x')} float32`
  const bytes = 4 * (a.length + b.length + info.outElements)
  return {
    name,
    bytes,
    numpy: { name, kind: 'elementwise', dtype, op, shapes: [aShape, bShape], bytes },
    task: () => {
      const t = { dtype, a: copy(a), b: copy(b), info }
      return { name: 'binary', task: t, transfer: [t.a.buffer as ArrayBuffer, t.b.buffer as ArrayBuffer], resultLength: info.outElements }
    },
    local: () => (OPERATIONS.binary as Operation).run({ dtype, a, b, info } as never)
  }
}

function unaryCase (op: 'exp' | 'relu', n: number): StreamCase {
  const dtype = 'float32'
  const info = unaryInfo(op, [n], LIMITS)
  const x = random(dtype, n, 22)
  const name = `unary ${op} ${n} float32`
  return {
    name,
    bytes: 8 * n,
    numpy: { name, kind: 'elementwise', dtype, op, shapes: [[n]], bytes: 8 * n },
    task: () => {
      const t = { dtype, input: copy(x), info }
      return { name: 'unary', task: t, transfer: [t.input.buffer as ArrayBuffer], resultLength: n }
    },
    local: () => (OPERATIONS.unary as Operation).run({ dtype, input: x, info } as never)
  }
}

/** softmax, and layer_norm with weight and bias, over the last axis of [1024,1024] float32. */
function rowCase (op: 'softmax' | 'layer_norm'): StreamCase {
  const dtype = 'float32'
  const shape = [1024, 1024]
  const n = 1 << 20
  const x = random(dtype, n, 23)
  const w = random(dtype, 1024, 24)
  const b = random(dtype, 1024, 25)
  const name = `${op} 1024x1024 over the last axis float32`
  const numpy: NumpyCase = { name, kind: 'elementwise', dtype, op, shapes: [shape], bytes: 8 * n }
  if (op === 'softmax') {
    const info = softmaxInfo(shape, -1, false, LIMITS)
    return {
      name,
      bytes: 8 * n,
      numpy,
      task: () => {
        const t = { dtype, input: copy(x), info }
        return { name: 'softmax', task: t, transfer: [t.input.buffer as ArrayBuffer], resultLength: n }
      },
      local: () => (OPERATIONS.softmax as Operation).run({ dtype, input: x, info } as never)
    }
  }
  const info = layerNormInfo(shape, [1024], [1024], [1024], 1e-5, LIMITS)
  return {
    name,
    bytes: 8 * n,
    numpy,
    task: () => {
      const t = { dtype, input: copy(x), weight: copy(w), bias: copy(b), info }
      return { name: 'layer_norm', task: t, transfer: [t.input.buffer, t.weight.buffer, t.bias.buffer] as ArrayBuffer[], resultLength: n }
    },
    local: () => (OPERATIONS.layer_norm as Operation).run({ dtype, input: x, weight: w, bias: b, info } as never)
  }
}

/** A reduction of [1024,1024] float32 over one axis: the input read and the result written. */
function reduceCase (op: 'sum' | 'max', axis: number): StreamCase {
  const dtype = 'float32'
  const shape = [1024, 1024]
  const n = 1 << 20
  const x = random(dtype, n, 26)
  const info = reduceInfo(op, shape, axis, false, 1, LIMITS)
  const name = `reduce ${op} 1024x1024 over axis ${axis} float32`
  const bytes = 4 * (n + info.outElements)
  return {
    name,
    bytes,
    numpy: { name, kind: 'elementwise', dtype, op, shapes: [shape], bytes, axis },
    task: () => {
      const t = { dtype, input: copy(x), info }
      return { name: 'reduce', task: t, transfer: [t.input.buffer as ArrayBuffer], resultLength: info.outElements }
    },
    local: () => (OPERATIONS.reduce as Operation).run({ dtype, input: x, info } as never)
  }
}

const STREAM_CASES: StreamCase[] = [
  binaryCase('add', [1024, 1024], [1024, 1024]),
  binaryCase('mul', [1024, 1024], [1024]),
  unaryCase('exp', 1 << 20),
  unaryCase('relu', 1 << 20),
  rowCase('softmax'),
  rowCase('layer_norm'),
  reduceCase('sum', 1),
  reduceCase('sum', 0),
  reduceCase('max', 1)
]

// BENCH_CASES (a regular expression) keeps the cases whose names match, and a matching backward's forward
const only = process.env.BENCH_CASES === undefined ? null : new RegExp(process.env.BENCH_CASES)
if (only !== null) {
  const keep = CASES.filter(c => only.test(c.name) || CASES.some(b => b.forward === c && only.test(b.name)))
  CASES.splice(0, CASES.length, ...keep)
  EINSUM_CASES.splice(0, EINSUM_CASES.length, ...EINSUM_CASES.filter(c => only.test(c.name)))
  STREAM_CASES.splice(0, STREAM_CASES.length, ...STREAM_CASES.filter(c => only.test(c.name)))
}

const numpyCases = [...CASES.map(c => c.numpy), ...EINSUM_CASES.map(c => c.numpy), ...STREAM_CASES.map(c => c.numpy)]
const before = await numpyRun(numpyCases)

const one = new Piscina({ filename: WORKER, minThreads: 1, maxThreads: 1 })
// (its modules loaded before the first case's warm-up starts)
await one.run(null, { name: 'ping' })
// (its modules loaded before the first case's warm-up starts)
const gf = (flops: number, ms: number): number => flops / ms / 1e6
// Every case through the worker first, then the kernels in this thread: those allocate a new
// result per call (as NumPy does), and the collector frees them on background threads for a while
// after; a worker case measured next to them shared the two cores with it and ran 2 to 8 times slower.
const workerTimes = new Map<Case | StreamCase, number>()
for (const c of CASES) workerTimes.set(c, await time(async (run) => await runTask(one, run), c.task))
const einsumTimings = new Map<EinsumCase, number[]>()
for (const c of EINSUM_CASES) {
  const e: number[] = []
  const m: number[] = []
  // alternating, so that a busy moment of the machine falls on both
  for (let r = 0; r < 3; r++) {
    e.push(await time(async ({ name, task, transfer }) => await onWorker(one, name, task, transfer) as FloatArray, c.einsum, 400))
    m.push(await time(async () => await c.matmuls(one), none, 400))
  }
  einsumTimings.set(c, [median(e), median(m)])
}
for (const c of STREAM_CASES) workerTimes.set(c, await time(async (run) => await runTask(one, run), c.task))
const timings = new Map<Case, number[]>()
for (const c of CASES) {
  enableEngine()
  const engine = await time(c.local, none)
  enableEngine(Infinity)
  const wasm = await time(c.local, none)
  timings.set(c, [workerTimes.get(c) ?? NaN, engine, wasm])
}
const streamTimings = new Map<StreamCase, number[]>()
for (const c of STREAM_CASES) streamTimings.set(c, [workerTimes.get(c) ?? NaN, await time(c.local, none)])
await one.close()
const after = await numpyRun(numpyCases)

const fmt = (x: number): string => x.toFixed(1)
/** The floor for the worker path against the engine alone: 0.9 for matmul from 512², 0.6 at 256², 0.8 for the rest. */
const engineTarget = (name: string): number => /^matmul 256x/.test(name) ? 0.6 : /^matmul/.test(name) ? 0.9 : 0.8
/** Bytes a task moves: its operands in, its reply back. */
const movedBytes = (c: Case): number => {
  const { task, transfer, resultLength } = c.task()
  const bytes = transfer.reduce((n, b) => n + b.byteLength, 0) + resultLength * ((task as { dtype: DType }).dtype === 'float64' ? 8 : 4)
  for (const b of transfer) buffers.give(b)
  return bytes
}
const table: string[] = []
const backwardTable: string[] = []
for (const c of CASES) {
  const [worker, engine, wasm] = timings.get(c) ?? [NaN, NaN, NaN]
  const np = Math.max(before.results.get(c.name)?.gflops ?? 0, after.results.get(c.name)?.gflops ?? 0)
  const vsEngine = engine / worker
  const overheadUs = 1000 * (worker - engine)
  const mb = movedBytes(c) / 1e6
  const engineCols = `${vsEngine.toFixed(2)}x | ${engineTarget(c.name)}x ${vsEngine >= engineTarget(c.name) ? 'met' : 'missed'} | ${overheadUs.toFixed(0)} | ${mb.toFixed(1)} | ${(overheadUs / mb).toFixed(0)}`
  if (c.forward !== undefined) {
    const fw = gf(c.forward.flops, timings.get(c.forward)?.[0] ?? NaN)
    const bw = gf(c.flops, worker)
    const ratio = bw / fw
    backwardTable.push(`| ${c.name} | ${(c.flops / 1e6).toFixed(1)} | ${fmt(fw)} | ${fmt(bw)} | ${fmt(gf(c.flops, engine))} | ${engineCols} | ${ratio.toFixed(2)}x | ${c.target}x ${ratio >= c.target ? 'met' : 'missed'} | ${fmt(np)} | ${(bw / np).toFixed(2)}x |`)
    continue
  }
  const ratio = gf(c.flops, worker) / np
  const npTarget = /^batched.*float32/.test(c.name) ? ' (0.6x)' : ''
  table.push(`| ${c.name} | ${(c.flops / 1e6).toFixed(1)} | ${fmt(gf(c.flops, worker))} | ${fmt(gf(c.flops, engine))} | ${engineCols} | ${fmt(gf(c.flops, wasm))} | ${fmt(np)} | ${ratio.toFixed(2)}x${npTarget} |`)
}

const einsumTable: string[] = []
for (const c of EINSUM_CASES) {
  const [e, m] = einsumTimings.get(c) ?? [NaN, NaN]
  const np = Math.max(before.results.get(c.name)?.gflops ?? 0, after.results.get(c.name)?.gflops ?? 0)
  const ratio = m / e
  einsumTable.push(`| ${c.name} | ${(c.flops / 1e6).toFixed(1)} | ${fmt(gf(c.flops, e))} | ${fmt(gf(c.flops, m))} | ${ratio.toFixed(2)}x | ${fmt(np)} | 0.9x ${ratio >= 0.9 ? 'met' : 'missed'} |`)
}

const streamTable: string[] = []
for (const c of STREAM_CASES) {
  const [worker, local] = streamTimings.get(c) ?? [NaN, NaN]
  const np = Math.max(before.results.get(c.name)?.gflops ?? 0, after.results.get(c.name)?.gflops ?? 0)
  const gbs = (ms: number): number => c.bytes / ms / 1e6
  const ratio = gbs(worker) / np
  streamTable.push(`| ${c.name} | ${(c.bytes / 1e6).toFixed(1)} | ${fmt(gbs(worker))} | ${fmt(gbs(local))} | ${fmt(np)} | ${ratio.toFixed(2)}x | 0.7x ${ratio >= 0.7 ? 'met' : 'missed'} |`)
}

// one 1024x1024 matmul on both workers' threads vs one worker's, in the same two-worker pool
const pool = new Piscina({ filename: WORKER, minThreads: 2, maxThreads: 2 })
await Promise.all([0, 1].map(async () => await pool.run(null, { name: 'ping' })))
const whole: string[] = []
for (const dtype of only === null || only.test('matmul 1024³') ? ['float32', 'float64'] as const : []) {
  const c = matmulCase(dtype, 0, 1024, 1024, 1024, 0)
  const runWith = (threads: number) => async ({ name, task, transfer }: ReturnType<Case['task']>) =>
    await onWorker(pool, name, { ...task, threads }, transfer) as FloatArray
  const ones: number[] = []
  const boths: number[] = []
  for (let r = 0; r < 3; r++) {
    ones.push(await time(runWith(1), c.task, 400))
    boths.push(await time(runWith(2), c.task, 400))
  }
  const [t1, t2] = [median(ones), median(boths)]
  whole.push(`| matmul 1024³ ${dtype} | ${fmt(gf(c.flops, t1))} | ${fmt(gf(c.flops, t2))} | ${(t1 / t2).toFixed(2)}x | 1.7x ${t1 / t2 >= 1.7 ? 'met' : 'missed'} |`)
}
await pool.close()

const blas = after.blas
console.log(`\nKernels, GFLOP/s on one thread; ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load ${loadavg()[0].toFixed(2)}; NumPy: ${blas}`)
console.log('"1 worker": as the service runs a task (operands moved in from pooled buffers, the reply written there as a safetensors file into a lent buffer, all moved back);')
console.log('"engine": the same kernel in this thread. Overhead: the worker path\'s time beyond the engine\'s, per task and per MB moved (operands in, result out).')
console.log('| case | MFLOP | 1 worker | engine | worker / engine | target | overhead µs | MB moved | µs/MB | wasm | NumPy | 1 worker / NumPy |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const r of table) console.log(r)
console.log('\nBackward (every operand\'s gradient), GFLOP/s through 1 worker counting twice the forward\'s work, beside the engine alone and the forward of the same shapes')
console.log('| case | MFLOP | forward | backward | engine | worker / engine | target | overhead µs | MB moved | µs/MB | backward / forward | target | NumPy backward | backward / NumPy |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const r of backwardTable) console.log(r)
console.log('\neinsum beside the matmul calls doing the same work, GFLOP/s in one worker; NumPy: np.einsum(optimize=True)')
console.log('| case | MFLOP | einsum | matmul calls | einsum / matmul | NumPy einsum | target |')
console.log('|---|---|---|---|---|---|---|')
for (const r of einsumTable) console.log(r)
console.log('\nElementwise, row operations and reductions, GB/s (operands read and result written, per call): through 1 worker as the service runs a task, the run step in this thread (the engine off there: exp on the loops), NumPy (a new result array per call)')
console.log('| case | MB moved | 1 worker | this thread | NumPy | 1 worker / NumPy | target |')
console.log('|---|---|---|---|---|---|---|')
for (const r of streamTable) console.log(r)
console.log('\nOne matmul over the whole pool (2 workers): GFLOP/s on one worker\'s thread, on both workers\' threads')
console.log('| case | 1 thread | whole pool | speed-up | target |')
console.log('|---|---|---|---|---|')
for (const r of whole) console.log(r)
console.log(`\n(checksum ${checksum.toPrecision(6)})`)
