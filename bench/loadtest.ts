/**
 * Load test (npm run loadtest): starts the compiled service (dist/, build first), finds its
 * capacity on a 64x64 matmul, warms it up and then soaks it at ~70% of that, then bursts at 3x.
 * Prints status counts, shed counts, p50/p99 latency, the server's RSS at the start and end of
 * the soak and once more after 15 s idle (the warm-up lets the heaps reach their working size first: RSS grows some 50% in the
 * first minute under load and then holds, which is not a leak).
 * Exits 1 on any status other than 200/503, on connection errors, or on RSS growth over 10%
 * during the soak. Traffic goes to 127.0.0.1 only, bounded in time.
 *
 *   npm run loadtest                                      # 90 s warm-up, 300 s soak
 *   WARMUP_SECONDS=90 SOAK_SECONDS=60 npm run loadtest    # the CI version
 *   LOADTEST_CASE=base64-1024 npm run loadtest            # 1024x1024 float32 in base64 (8 MiB in, 4 out)
 *   LOADTEST_CASE=safetensors-1024 npm run loadtest       # the same as safetensors files, both ways
 */
import { once } from 'node:events'
import autocannon from 'autocannon'
import { startService } from './serve.js'

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 300)
/** At the same rate before the soak: V8's heaps and the allocator grow to their working size (measured: 40-60 s). */
const WARMUP_SECONDS = Number(process.env.WARMUP_SECONDS ?? 90)
const PROBE_SECONDS = 5
const BURST_SECONDS = 10

function matrix (n: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => ((i * 31 + j * 17) % 13) / 13 - 0.5))
}
function base64 (n: number): object {
  const data = Float32Array.from(matrix(n).flat())
  return { shape: [n, n], dtype: 'float32', data: Buffer.from(data.buffer).toString('base64') }
}
/** A safetensors file of two float32 n×n matrices a and b, laid out as safetensors.numpy.save writes it. */
function safetensors (n: number): Buffer {
  const data = Buffer.from(Float32Array.from(matrix(n).flat()).buffer)
  let header = JSON.stringify({
    a: { dtype: 'F32', shape: [n, n], data_offsets: [0, data.length] },
    b: { dtype: 'F32', shape: [n, n], data_offsets: [data.length, 2 * data.length] }
  })
  header += ' '.repeat((8 - header.length % 8) % 8)
  const size = Buffer.alloc(8)
  size.writeBigUInt64LE(BigInt(header.length))
  return Buffer.concat([size, Buffer.from(header), data, data])
}
const JSON_TYPE = { 'content-type': 'application/json' }
const FILE_TYPE = { 'content-type': 'application/octet-stream', accept: 'application/octet-stream' }
const CASES: Record<string, { label: string, body: () => string | Buffer, headers: Record<string, string> }> = {
  'nested-64': { label: 'matmul 64x64 nested JSON', body: () => JSON.stringify({ a: matrix(64), b: matrix(64) }), headers: JSON_TYPE },
  'base64-1024': { label: 'matmul 1024x1024 float32 base64', body: () => JSON.stringify({ a: base64(1024), b: base64(1024), encoding: 'base64' }), headers: JSON_TYPE },
  'safetensors-1024': { label: 'matmul 1024x1024 float32 safetensors, answered in safetensors', body: () => safetensors(1024), headers: FILE_TYPE }
}
const CASE = CASES[process.env.LOADTEST_CASE ?? 'nested-64']
if (CASE === undefined) throw new Error(`LOADTEST_CASE must be one of ${Object.keys(CASES).join(', ')}`)
const BODY = CASE.body()
/** After the burst, RSS is sampled once more after this long without requests (the buffer pools empty after 10 s idle). */
const IDLE_SECONDS = 15

// event-loop shedding on (it is off by default): the burst must be refused early, not left to time out
const { base, server } = await startService({ MAX_EVENT_LOOP_DELAY_MS: '200' })

async function rss (): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  return Number(/^process_resident_memory_bytes (\S+)$/m.exec(text)?.[1])
}

interface Phase { name: string, result: autocannon.Result }
const phases: Phase[] = []

async function run (name: string, seconds: number, connections: number, overallRate?: number): Promise<autocannon.Result> {
  const result = await autocannon({
    url: `${base}/v1/matmul`,
    method: 'POST',
    headers: CASE.headers,
    body: BODY,
    connections,
    duration: seconds,
    ...(overallRate === undefined ? {} : { overallRate: Math.max(1, Math.round(overallRate)) })
  })
  phases.push({ name, result })
  return result
}

const rssBoot = await rss()
const probe = await run('capacity', PROBE_SECONDS, 8)
const capacity = probe.requests.average
/**
 * Runs a phase while sampling the server's RSS every 2 s; resolves with the mean of the samples
 * taken in the phase's second half (the level it holds, not one garbage collection's high or low).
 */
async function heldRss (phase: Promise<unknown>): Promise<number> {
  const samples: number[] = []
  const state = { done: false }
  phase.then(() => { state.done = true }, () => { state.done = true })
  while (!state.done) {
    await new Promise(resolve => setTimeout(resolve, 2000))
    samples.push(await rss())
  }
  await phase
  const tail = samples.slice(Math.floor(samples.length / 2))
  return tail.reduce((s, x) => s + x, 0) / tail.length
}
// drift = the level RSS holds late in the soak against the level late in the warm-up: a leak
// raises it; garbage collection's swings (±10% from one sample to the next) average out
const rssStart = await heldRss(run('warm-up 70%', WARMUP_SECONDS, 16, capacity * 0.7))
const rssEnd = await heldRss(run('soak 70%', SOAK_SECONDS, 16, capacity * 0.7))
await run('burst 3x', BURST_SECONDS, 256, capacity * 3)
await new Promise(resolve => setTimeout(resolve, IDLE_SECONDS * 1000))
const rssIdle = await rss()

server.kill('SIGTERM')
const [exitCode] = await once(server, 'exit')

const mb = (b: number) => (b / 2 ** 20).toFixed(1)
console.log(`\n${CASE.label}, ${base}, server WORKERS=${process.env.WORKERS ?? 'default'}, MAX_EVENT_LOOP_DELAY_MS=${process.env.MAX_EVENT_LOOP_DELAY_MS ?? '200'}`)
console.log(`capacity (closed loop, 8 connections): ${capacity.toFixed(0)} req/s`)
console.log('| phase | offered req/s | done | 200 | 503 shed | other | conn errors | timeouts | p50 ms | p99 ms |')
console.log('|---|---|---|---|---|---|---|---|---|---|')
let bad = 0
for (const { name, result } of phases) {
  const codes = (result as unknown as { statusCodeStats: Record<string, { count: number }> }).statusCodeStats ?? {}
  const count = (c: string) => codes[c]?.count ?? 0
  const other = Object.entries(codes).filter(([c]) => c !== '200' && c !== '503').reduce((s, [, v]) => s + v.count, 0)
  bad += other + result.errors + result.timeouts
  const offered = name === 'capacity' ? 'closed loop' : (name.startsWith('burst') ? (capacity * 3) : (capacity * 0.7)).toFixed(0)
  console.log(`| ${name} | ${offered} | ${result.requests.total} | ${count('200')} | ${count('503')} | ${other} | ${result.errors} | ${result.timeouts} | ${result.latency.p50} | ${result.latency.p99} |`)
}
const growth = (rssEnd - rssStart) / rssStart
console.log(`RSS: ${mb(rssBoot)} MiB at start; held ${mb(rssStart)} MiB late in the ${WARMUP_SECONDS} s warm-up, ${mb(rssEnd)} MiB late in the ${SOAK_SECONDS} s soak (${(growth * 100).toFixed(1)}%; means of 2 s samples over each phase's second half)`)
console.log(`RSS ${IDLE_SECONDS} s after the burst, idle: ${mb(rssIdle)} MiB`)
console.log(`server exit code after SIGTERM: ${exitCode}`)

const failures: string[] = []
if (bad > 0) failures.push(`${bad} answers other than 200/503, connection errors or timeouts`)
if (growth > 0.10) failures.push(`RSS grew ${(growth * 100).toFixed(1)}% during the soak (limit 10%)`)
if (exitCode !== 0) failures.push(`the server exited with ${exitCode} after SIGTERM`)
if (failures.length > 0) {
  console.log(`loadtest: FAILED: ${failures.join('; ')}`)
  process.exit(1)
}
console.log('loadtest: passed')
