/**
 * HTTP benchmark (npm run bench:http): starts the compiled service (build first) on 127.0.0.1
 * and measures req/s and p50/p99 of POST /v1/matmul with autocannon, 8 connections, for the
 * four cases the FastAPI + uvicorn (2 workers) + NumPy peer was measured on here with wrk.
 *
 *   npm run build && npm run bench:http          # 10 s per case
 *   BENCH_SECONDS=30 npm run bench:http
 */
import { once } from 'node:events'
import { cpus } from 'node:os'
import autocannon from 'autocannon'
import { startService } from './serve.js'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)

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

/** The peer's req/s (FastAPI + uvicorn 2 workers + NumPy, nested JSON, wrk 8 connections). */
const CASES = [
  { name: 'matmul 4x4 nested', body: { a: nested(4, 1), b: nested(4, 2) }, peer: 8600, target: 2 },
  { name: 'matmul 64x64 nested', body: { a: nested(64, 1), b: nested(64, 2) }, peer: 250, target: 2 },
  { name: 'matmul 256x256 nested', body: { a: nested(256, 1), b: nested(256, 2) }, peer: 15, target: 2 },
  { name: 'matmul 512x512 base64 f32', body: { a: base64f32(512, 1), b: base64f32(512, 2), encoding: 'base64' }, peer: 3.0, target: 20 }
]

const { base, server } = await startService()

const rows: string[] = []
for (const c of CASES) {
  const body = JSON.stringify(c.body)
  const check = await fetch(`${base}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  if (check.status !== 200) throw new Error(`${c.name}: ${check.status} ${await check.text()}`)
  await check.arrayBuffer()
  const r = await autocannon({
    url: `${base}/v1/matmul`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: 8,
    duration: SECONDS
  })
  const rps = r.requests.average
  const ratio = rps / c.peer
  rows.push(`| ${c.name} | ${(body.length / 1024).toFixed(0)} KiB | ${rps.toFixed(1)} | ${r.latency.p50} | ${r.latency.p99} | ${r.non2xx} | ${c.peer} | ${ratio.toFixed(2)}x | ${c.target}x ${ratio >= c.target ? 'met' : 'missed'} |`)
}
server.kill('SIGTERM')
await once(server, 'exit')

console.log(`\nHTTP, autocannon 8 connections, ${SECONDS} s per case; ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; client and server share the machine`)
console.log('| case | body | req/s | p50 ms | p99 ms | non-2xx | FastAPI peer req/s | ratio | target |')
console.log('|---|---|---|---|---|---|---|---|---|')
for (const r of rows) console.log(r)
