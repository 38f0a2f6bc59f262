/**
 * HTTP benchmark (npm run bench:http): our compiled service (build first) against the FastAPI + NumPy peer
 * (bench/peer/app.py, uvicorn with 2 workers), both on 127.0.0.1, measured in the same run with the same client:
 * autocannon at 8 and at 32 connections (with 8, the kernel often gives the peer's two processes an uneven share
 * of the connections; with 32 both stay busy), every reply read from the socket in full.
 *
 * A figure you can rerun: each case and connection count is measured in ROUNDS rounds, the two sides alternating
 * (ours first in even rounds, the peer first in odd ones), each measurement after a warm-up of sequential requests;
 * the table prints the median req/s of the rounds with their spread (lowest–highest) and the ratio of the medians.
 * Beside ours: each worker's utilisation during the run (the rate of tensor_worker_busy_seconds_total, scraped from
 * /metrics before and after) and the main thread's buffer pool.
 * Each side's answer to each case is checked once first (status 200, and the two results agree numerically).
 * With Debian's wrk installed, each safetensors case is also measured once per side with wrk (a second client,
 * 32 connections), in the same run.
 * A last row measures ours at 4×4 with LOG_LEVEL=info (the service's default; its log goes to /dev/null)
 * against LOG_LEVEL=warn (what the other rows use).
 *
 *   npm run build && npm run bench:http          # 5 s per side, round and connection count: about 8 min
 *   BENCH_SECONDS=10 BENCH_ROUNDS=5 npm run bench:http
 *   BENCH_CASES=base64 npm run bench:http        # only the cases whose name contains "base64"
 *   BENCH_CONNECTIONS=32 npm run bench:http      # one connection count
 *
 * The peer needs Debian's python3-numpy, libopenblas0-pthread, python3-fastapi, python3-uvicorn,
 * python3-uvloop and python3-httptools (see bench/peer.ts).
 */
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { PYTHON, peerEnv, startPeer } from './peer.js'
import { startService } from './serve.js'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONNECTIONS = (process.env.BENCH_CONNECTIONS ?? '8,32').split(',').map(Number)
/** Sequential requests to each side before each measurement, for at most this long. */
const WARMUP_MS = 500

function values (n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (((i * 7919 + seed * 104729) % 2003) / 2003) - 0.5)
}
function nested (n: number, seed: number): number[][] {
  const v = values(n * n, seed)
  return Array.from({ length: n }, (_, i) => v.slice(i * n, (i + 1) * n))
}
function base64f32 (n: number, seed: number): object {
  const data = Float32Array.from(values(n * n, seed))
  return { shape: [n, n], dtype: 'float32', data: Buffer.from(data.buffer).toString('base64') }
}
function nestedCase (n: number, target: number): Case {
  return { name: `matmul ${n}×${n} nested`, route: 'matmul', body: JSON.stringify({ a: nested(n, 1), b: nested(n, 2) }), dtype: 'float64', target, form: 'json' }
}
function base64Case (n: number, target: number): Case {
  const body = JSON.stringify({ a: base64f32(n, 1), b: base64f32(n, 2), encoding: 'base64' })
  return { name: `matmul ${n}×${n} base64 float32`, route: 'matmul', body, dtype: 'float32', target, form: 'json' }
}
/** Float32 tensors of the given shapes, from seeds 1, 2, … in order. */
function tensorsOf (shapes: Record<string, number[]>): Record<string, { shape: number[], data: Float32Array }> {
  return Object.fromEntries(Object.entries(shapes).map(([name, shape], i) =>
    [name, { shape, data: Float32Array.from(values(shape.reduce((p, d) => p * d, 1), i + 1)) }]))
}
/** conv2d 1×3×224×224 with 16 filters 3×3, padding 1, or attention 8×128×64 (float32), in base64 JSON or a file. */
function otherCase (route: 'conv2d' | 'attention', form: 'json' | 'safetensors', target: number): Case {
  const tensors = route === 'conv2d'
    ? tensorsOf({ input: [1, 3, 224, 224], kernel: [16, 3, 3, 3] })
    : tensorsOf({ query: [8, 128, 64], key: [8, 128, 64], value: [8, 128, 64] })
  const options: Record<string, number> = route === 'conv2d' ? { padding: 1 } : {}
  const what = route === 'conv2d' ? 'conv2d 1×3×224×224, 16 filters 3×3, pad 1' : 'attention 8×128×64'
  if (form === 'safetensors') {
    return { name: `${what} safetensors float32`, route, body: safetensorsFile(tensors, options), dtype: 'float32', target, form }
  }
  const body: Record<string, unknown> = { ...options, encoding: 'base64' }
  for (const [name, t] of Object.entries(tensors)) body[name] = { shape: t.shape, dtype: 'float32', data: Buffer.from(t.data.buffer).toString('base64') }
  return { name: `${what} base64 float32`, route, body: JSON.stringify(body), dtype: 'float32', target, form }
}
/** A safetensors file of float32 or float64 tensors (options as __metadata__), as safetensors.numpy.save lays it out. */
function safetensorsFile (tensors: Record<string, { shape: number[], data: Float32Array | Float64Array }>, metadata: Record<string, unknown> = {}): Buffer {
  const header: Record<string, object> = {}
  if (Object.keys(metadata).length > 0) header.__metadata__ = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, JSON.stringify(v)]))
  let at = 0
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.data instanceof Float64Array ? 'F64' : 'F32', shape: t.shape, data_offsets: [at, at + t.data.byteLength] }
    at += t.data.byteLength
  }
  let text = JSON.stringify(header)
  text += ' '.repeat((8 - (text.length % 8)) % 8)
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(text.length))
  return Buffer.concat([length, Buffer.from(text), ...Object.values(tensors).map(t => Buffer.from(t.data.buffer))])
}
function safetensorsCase (n: number, target: number, dtype: 'float32' | 'float64' = 'float32'): Case {
  const Typed = dtype === 'float32' ? Float32Array : Float64Array
  const body = safetensorsFile({ a: { shape: [n, n], data: Typed.from(values(n * n, 1)) }, b: { shape: [n, n], data: Typed.from(values(n * n, 2)) } })
  return { name: `matmul ${n}×${n} safetensors ${dtype}`, route: 'matmul', body, dtype, target, form: 'safetensors' }
}

interface Case { name: string, route: 'matmul' | 'conv2d' | 'attention', body: string | Buffer, dtype: 'float64' | 'float32', target: number, form: 'json' | 'safetensors' }

/** The request headers of a case: a file is posted as application/octet-stream and answered with one. */
function headersOf (c: Case): Record<string, string> {
  return c.form === 'safetensors'
    ? { 'content-type': 'application/octet-stream', accept: 'application/octet-stream' }
    : { 'content-type': 'application/json' }
}

/** BENCH_CASES: comma-separated parts of case names to run (default: all), e.g. `base64` or `4×4,64×64`. */
const ONLY = (process.env.BENCH_CASES ?? '').split(',').filter(s => s !== '')
const CASES: Case[] = [
  nestedCase(4, 1.3),
  nestedCase(64, 2),
  nestedCase(256, 2),
  base64Case(512, 1.3),
  safetensorsCase(512, 1.5),
  safetensorsCase(512, 1.5, 'float64'),
  base64Case(1024, 1.3),
  safetensorsCase(1024, 1.5),
  safetensorsCase(1024, 1.5, 'float64'),
  otherCase('conv2d', 'json', 1.5),
  otherCase('conv2d', 'safetensors', 1.5),
  otherCase('attention', 'json', 1.5),
  otherCase('attention', 'safetensors', 1.5)
].filter(c => ONLY.length === 0 || ONLY.some(s => c.name.includes(s)))

interface Answer { shape: number[], values: ArrayLike<number> }

function flatten (x: unknown, out: number[]): number[] {
  if (Array.isArray(x)) for (const v of x) flatten(v, out)
  else out.push(x as number)
  return out
}

/** POSTs the case once; throws unless the answer is 200 with a result of the case's dtype. */
async function answer (side: string, base: string, c: Case): Promise<Answer> {
  const res = await fetch(`${base}/v1/${c.route}`, { method: 'POST', headers: headersOf(c), body: c.body })
  if (c.form === 'safetensors' && res.status === 200) {
    const file = Buffer.from(await res.arrayBuffer())
    const n = Number(file.readBigUInt64LE(0))
    const { result } = JSON.parse(file.subarray(8, 8 + n).toString()) as { result: { dtype: string, shape: number[], data_offsets: [number, number] } }
    const expected = c.dtype === 'float32' ? 'F32' : 'F64'
    if (result.dtype !== expected) throw new Error(`${c.name}, ${side}: dtype ${result.dtype}, expected ${expected}`)
    const data = Uint8Array.from(file.subarray(8 + n + result.data_offsets[0], 8 + n + result.data_offsets[1])).buffer
    return { shape: result.shape, values: c.dtype === 'float32' ? new Float32Array(data) : new Float64Array(data) }
  }
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${c.name}, ${side}: status ${res.status}: ${text.slice(0, 300)}`)
  const { result } = JSON.parse(text) as { result: { shape: number[], dtype: string, data: unknown } }
  if (result.dtype !== c.dtype) throw new Error(`${c.name}, ${side}: dtype ${result.dtype}, expected ${c.dtype}`)
  if (c.dtype === 'float32') {
    const bytes = Buffer.from(result.data as string, 'base64')
    return { shape: result.shape, values: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) }
  }
  return { shape: result.shape, values: flatten(result.data, []) }
}

/**
 * Throws unless the shapes are equal and every value agrees within rtol (1e-4 for float32, 1e-9 for float64),
 * relative to the larger of the two values and of the largest magnitude in the result (sums that cancel to near 0
 * are compared at the result's scale).
 */
function agree (c: Case, ours: Answer, peer: Answer): void {
  if (ours.shape.join('×') !== peer.shape.join('×')) throw new Error(`${c.name}: shape ${ours.shape.join('×')} (ours) vs ${peer.shape.join('×')} (peer)`)
  const n = ours.shape.reduce((p, d) => p * d, 1)
  if (ours.values.length !== n || peer.values.length !== n) throw new Error(`${c.name}: ${ours.values.length} values (ours), ${peer.values.length} (peer), shape holds ${n}`)
  const rtol = c.dtype === 'float32' ? 1e-4 : 1e-9
  let scale = 0
  for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(peer.values[i]))
  for (let i = 0; i < n; i++) {
    const x = ours.values[i]
    const y = peer.values[i]
    if (!(Math.abs(x - y) <= rtol * Math.max(Math.abs(x), Math.abs(y), scale))) {
      throw new Error(`${c.name}: value ${i} is ${x} (ours) vs ${y} (peer), beyond relative tolerance ${rtol}`)
    }
  }
}

interface Run { rps: number, p50: number, p99: number, problems: string, utilisation?: number[] }

/** Each worker's busy seconds (tensor_worker_busy_seconds_total) from /metrics; empty for the peer. */
async function busySeconds (base: string): Promise<Map<string, number>> {
  const text = await fetch(`${base}/metrics`).then(async r => r.ok ? await r.text() : '', () => '')
  const out = new Map<string, number>()
  for (const m of text.matchAll(/^tensor_worker_busy_seconds_total\{worker="(\d+)"\} ([0-9.e+-]+)$/gm)) out.set(m[1], Number(m[2]))
  return out
}

async function measure (base: string, c: Case, connections: number): Promise<Run> {
  const post = async (): Promise<void> => {
    await fetch(`${base}/v1/${c.route}`, { method: 'POST', headers: headersOf(c), body: c.body }).then(r => r.arrayBuffer())
  }
  for (const start = Date.now(); Date.now() - start < WARMUP_MS;) await post()
  const busy0 = await busySeconds(base)
  const t0 = performance.now()
  const r = await autocannon({
    url: `${base}/v1/${c.route}`,
    method: 'POST',
    headers: headersOf(c),
    body: c.body,
    connections,
    duration: SECONDS,
    timeout: 30,
    // autocannon appends every reply chunk to a string (pipelinedRequestsQueue.js), decoding binary replies as
    // UTF-8 on the cores the servers share; nothing here reads the bodies, so they are dropped as they come
    setupClient: (client) => { (client as unknown as { pipelinedRequests: { addBody: () => void } }).pipelinedRequests.addBody = () => {} }
  })
  const wall = (performance.now() - t0) / 1000
  const busy1 = await busySeconds(base)
  // (every worker that ran part of the load: autocannon stops with requests in flight, whose tasks
  // are stopped, which replaces their workers, before or during the next run; a stopped worker's
  // total stays reported, and one started since counts from 0)
  const utilisation = [...busy1].map(([w, s]) => (s - (busy0.get(w) ?? 0)) / wall).filter(u => u >= 0.01).sort((x, y) => y - x)
  // Requests autocannon left in flight are still being computed: one more answer lets the queue drain
  // before the other side is measured.
  await post()
  const problems = [
    r.non2xx > 0 ? `${r.non2xx} non-2xx` : '',
    r.errors > 0 ? `${r.errors} errors` : '',
    r.timeouts > 0 ? `${r.timeouts} timeouts` : ''
  ].filter(p => p !== '').join(', ')
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, problems, utilisation }
}

/** req/s of one wrk run (Debian's wrk, if installed): a second client, which reads every reply in full. */
function wrk (base: string, c: Case, connections: number): number | null {
  if (spawnSync('wrk', ['--version']).error !== undefined) return null
  const dir = mkdtempSync(join(tmpdir(), 'bench-wrk-'))
  try {
    writeFileSync(join(dir, 'body'), c.body)
    const headers = Object.entries(headersOf(c)).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join('\n')
    writeFileSync(join(dir, 'post.lua'), `wrk.method = "POST"\n${headers}\nlocal f = io.open(${JSON.stringify(join(dir, 'body'))}, "rb")\nwrk.body = f:read("*a")\nf:close()\n`)
    const r = spawnSync('wrk', ['-t', '2', '-c', String(connections), '-d', `${SECONDS}s`, '--timeout', '30s', '-s', join(dir, 'post.lua'), `${base}/v1/${c.route}`], { encoding: 'utf8' })
    const m = /Requests\/sec:\s+([0-9.]+)/.exec(r.stdout)
    return m === null ? null : Number(m[1])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const rps = (x: number): string => x >= 100 ? x.toFixed(0) : x.toFixed(1)
const spread = (xs: number[]): string => `${rps(Math.min(...xs))}–${rps(Math.max(...xs))}`

/** The row of one case at one connection count: medians of the rounds, their spread, the workers' utilisation. */
function row (name: string, body: string | Buffer, connections: number, ours: Run[], peer: Run[], target?: number): string {
  const o = median(ours.map(r => r.rps))
  const p = median(peer.map(r => r.rps))
  const ratio = p > 0 ? o / p : Infinity
  const verdict = target === undefined ? '—' : ratio >= target ? 'met' : 'missed'
  const problems = [...ours.map(r => r.problems !== '' ? `ours: ${r.problems}` : ''), ...peer.map(r => r.problems !== '' ? `peer: ${r.problems}` : '')]
    .filter(x => x !== '').join('; ')
  const pick = (runs: Run[], x: number): Run => runs.find(r => r.rps === x) ?? runs[0]
  // each worker's share of the run (the busiest first), in the round with the median rate
  const util = (pick(ours, o).utilisation ?? []).map(u => `${(100 * u).toFixed(0)}%`).join(' / ') || '—'
  return `| ${name} | ${connections} | ${(Buffer.byteLength(body) / 1024).toFixed(1)} | ${rps(o)} (${spread(ours.map(r => r.rps))}) | ` +
    `${pick(ours, o).p50} / ${pick(ours, o).p99} | ${util} | ${rps(p)} (${spread(peer.map(r => r.rps))}) | ${pick(peer, p).p50} / ${pick(peer, p).p99} | ` +
    `${ratio.toFixed(2)}× | ${target === undefined ? '—' : `${target}×`} | ${verdict}${problems !== '' ? ` (${problems})` : ''} |`
}

const versions = spawnSync(PYTHON, ['-c',
  'import fastapi, numpy, uvicorn, sys; print(f"Python {sys.version.split()[0]}, FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, NumPy {numpy.__version__}")'
], { encoding: 'utf8', env: peerEnv() }).stdout.trim()

const ours = await startService()
const peer = await startPeer()
const rows: string[] = []
const wrkRows: string[] = []
const ourRates = new Map<string, number>()
try {
  for (const c of CASES) agree(c, await answer('ours', ours.base, c), await answer('peer', peer.base, c))
  for (const c of CASES) {
    for (const connections of CONNECTIONS) {
      const o: Run[] = []
      const p: Run[] = []
      for (let round = 0; round < ROUNDS; round++) {
        // alternating, so that a busy moment of the machine falls on both sides
        if (round % 2 === 0) {
          o.push(await measure(ours.base, c, connections))
          p.push(await measure(peer.base, c, connections))
        } else {
          p.push(await measure(peer.base, c, connections))
          o.push(await measure(ours.base, c, connections))
        }
      }
      ourRates.set(`${c.name}/${connections}`, median(o.map(r => r.rps)))
      rows.push(row(c.name, c.body, connections, o, p, c.target))
      console.error(rows.at(-1))
    }
    if (c.form === 'safetensors') {
      const wo = wrk(ours.base, c, 32)
      const wp = wrk(peer.base, c, 32)
      if (wo !== null && wp !== null) wrkRows.push(`| ${c.name} | 32 | ${rps(wo)} | ${rps(wp)} | ${(wo / wp).toFixed(2)}× |`)
    }
  }
  const small = CASES.find(c => c.name.includes('4×4'))
  if (small !== undefined) {
    const info = await startService({ LOG_LEVEL: 'info' }, { stdout: 'ignore' })
    try {
      await answer('ours, LOG_LEVEL=info', info.base, small)
      const i: Run[] = []
      const w: Run[] = []
      for (let round = 0; round < ROUNDS; round++) {
        i.push(await measure(info.base, small, 8))
        w.push(await measure(ours.base, small, 8))
      }
      rows.push(row(`${small.name}, ours LOG_LEVEL=info (in the ours columns) vs warn (in the peer columns)`, small.body, 8, i, w))
    } finally {
      info.server.kill('SIGTERM')
      await once(info.server, 'exit')
    }
  }
} finally {
  ours.server.kill('SIGTERM')
  await once(ours.server, 'exit')
  await peer.stop()
}

const cpu = cpus()
console.log(`\nautocannon, ${SECONDS} s per side, round and connection count, ${ROUNDS} rounds alternating; ` +
  `${cpu.length} cores, ${cpu[0]?.model ?? 'unknown CPU'}, node ${process.version}`)
console.log(`Peer: bench/peer/app.py, ${versions}; 2 uvicorn workers, uvloop, httptools, no access log, OPENBLAS_NUM_THREADS=1`)
console.log('Client and both servers share the machine: the client\'s CPU is taken from the servers\'.')
console.log('req/s: the median of the rounds (lowest–highest). Ratio: ours ÷ peer, medians. Workers: each worker\'s busy share of the run (median).')
console.log('A note after met/missed counts non-2xx answers, errors and timeouts.\n')
console.log('| case | connections | body KiB | ours req/s | ours p50 / p99 ms | workers busy | peer req/s | peer p50 / p99 ms | ratio | target | met/missed |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|')
for (const r of rows) console.log(r)
if (wrkRows.length > 0) {
  console.log(`\nThe same with wrk (a second client; ${SECONDS} s, one run per side)\n`)
  console.log('| case | connections | ours req/s | peer req/s | ratio |')
  console.log('|---|---|---|---|---|')
  for (const r of wrkRows) console.log(r)
}
for (const n of [512, 1024]) {
  for (const connections of CONNECTIONS) {
    const file = ourRates.get(`matmul ${n}×${n} safetensors float32/${connections}`)
    const b64 = ourRates.get(`matmul ${n}×${n} base64 float32/${connections}`)
    if (file !== undefined && b64 !== undefined) console.log(`\nours at ${n}×${n} float32, ${connections} connections: safetensors ${file.toFixed(1)} req/s, base64 JSON ${b64.toFixed(1)} req/s: ${(file / b64).toFixed(2)}×`)
  }
}
