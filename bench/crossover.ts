/**
 * Where the pool's thresholds come from (npm run bench:crossover):
 * 1. inline vs worker: the median latency of one matmul request through the app (app.inject,
 *    base64 float32 in and out), computed inline on the main thread or in a worker, for growing
 *    sizes: below the crossover the worker's round trip costs more than the computation.
 * 2. whole pool vs one worker: one large matmul on the threads of every idle worker (the engine's
 *    intra-op threads) against one worker's thread
 *    against one worker.
 */
import type { FastifyInstance } from 'fastify'
import { cpus } from 'node:os'
import { buildApp } from '../src/app.js'

function body (n: number): string {
  const x = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 2003) / 2003 - 0.5)
  const t = { shape: [n, n], dtype: 'float32', data: Buffer.from(x.buffer).toString('base64') }
  return JSON.stringify({ a: t, b: t, encoding: 'base64' })
}

async function median (app: FastifyInstance, payload: string, runs: number): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < runs + 5; i++) {
    const t0 = performance.now()
    const res = await app.inject({ method: 'POST', url: '/v1/matmul', payload, headers: { 'content-type': 'application/json' } })
    const t = performance.now() - t0
    if (res.statusCode !== 200) throw new Error(res.body)
    if (i >= 5) times.push(t)
  }
  times.sort((x, y) => x - y)
  return times[Math.floor(times.length / 2)]
}

const inline = await buildApp({ logLevel: 'silent', workers: 1, inlineMaxFlops: Infinity, splitMinFlops: 0 })
const worker = await buildApp({ logLevel: 'silent', workers: 1, inlineMaxFlops: 0, splitMinFlops: 0 })
await Promise.all([inline.ready(), worker.ready()])
console.log(`${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`)
console.log('\n| matmul n×n f32 | flops | inline µs | worker µs | faster |')
console.log('|---|---|---|---|---|')
for (const n of [2, 4, 8, 16, 24, 32, 48, 64, 96, 128]) {
  const payload = body(n)
  const runs = n <= 32 ? 400 : 100
  const a = await median(inline, payload, runs)
  const w = await median(worker, payload, runs)
  console.log(`| ${n} | ${(2 * n ** 3).toExponential(1)} | ${(a * 1000).toFixed(0)} | ${(w * 1000).toFixed(0)} | ${a <= w ? 'inline' : 'worker'} |`)
}
await Promise.all([inline.close(), worker.close()])

const one = await buildApp({ logLevel: 'silent', workers: 2, inlineMaxFlops: 0, splitMinFlops: 0 })
const all = await buildApp({ logLevel: 'silent', workers: 2, inlineMaxFlops: 0, splitMinFlops: 1 })
await Promise.all([one.ready(), all.ready()])
console.log('\n| matmul n×n f32 | flops | one worker ms | whole pool ms | speed-up |')
console.log('|---|---|---|---|---|')
for (const n of [128, 192, 256, 384, 512, 1024]) {
  const payload = body(n)
  const runs = n >= 512 ? 7 : 25
  const s = await median(one, payload, runs)
  const p = await median(all, payload, runs)
  console.log(`| ${n} | ${(2 * n ** 3).toExponential(1)} | ${s.toFixed(2)} | ${p.toFixed(2)} | ${(s / p).toFixed(2)}x |`)
}
await Promise.all([one.close(), all.close()])
