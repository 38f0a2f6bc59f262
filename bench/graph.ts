/**
 * One training step of a 2-layer MLP (batch 64, 784 → 128 → 10, float32, cross-entropy, SGD) as one
 * `POST /v1/graph` request, beside the six single-route requests that do the same work (two
 * `linear`, `loss/backward` with the result, two `linear/backward`, `optimizer/step`), through the
 * typed client (safetensors for big tensors, every reply read), against the compiled service
 * (`npm run build` first). Latency: one client, steps back to back, median and 90th percentile;
 * throughput: steps per second with 4 clients at once. Both paths start from the same weights and
 * must reach the same loss. BENCH_SECONDS sets each measurement's length (default 4).
 */
import { cpus } from 'node:os'
import { GraphBuilder, type Tensor, TensorClient } from '../client/src/index.js'
import { startService } from './serve.js'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4)
const [B, IN, HID, OUT] = [64, 784, 128, 10]

let seed = 1
const rand = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 * 2 - 1 }
const f32 = (shape: number[], scale: number): Tensor<Float32Array> => ({ shape, data: Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, () => rand() * scale) })
const x = f32([B, IN], 1)
const y: Tensor<Float32Array> = { shape: [B], data: Float32Array.from({ length: B }, (_, i) => i % OUT) }
const start = { W1: f32([IN, HID], 0.05), b1: f32([HID], 0), W2: f32([HID, OUT], 0.1), b2: f32([OUT], 0) }
type Params = Record<'W1' | 'b1' | 'W2' | 'b2', Tensor>
const LR = 0.1

/** One step as one graph request: the loss before the step, the new parameters. */
async function graphStep (client: TensorClient, p: Params): Promise<[number, Params]> {
  const g = new GraphBuilder()
  const [xi, yi] = [g.input('x', x), g.input('y', y)]
  const [W1, b1, W2, b2] = (['W1', 'b1', 'W2', 'b2'] as const).map(n => g.input(n, p[n]))
  const h = g.linear({ input: xi, weights: W1, bias: b1, activation: 'relu' })
  const z = g.linear({ input: h, weights: W2, bias: b2 })
  const loss = g.loss({ kind: 'cross_entropy', input: z, target: yi })
  const reply = await client.graph(g.body({ outputs: [loss], gradients: { of: loss, wrt: [W1, b1, W2, b2] }, update: { optimizer: 'sgd', lr: LR } }))
  return [reply.outputs[loss.name].data[0], reply.params as Params]
}

/** The same step as six single-route requests. */
async function routesStep (client: TensorClient, p: Params): Promise<[number, Params]> {
  const layer1 = { input: x, weights: p.W1, bias: p.b1, activation: 'relu' as const }
  const h = (await client.linear(layer1)).result
  const layer2 = { input: h, weights: p.W2, bias: p.b2 }
  const z = (await client.linear(layer2)).result
  const l = await client.lossBackward({ kind: 'cross_entropy', input: z, target: y, gradOutput: 1, returnResult: true })
  const g2 = (await client.linearBackward({ ...layer2, gradOutput: l.grads.input as Tensor })).grads
  const g1 = (await client.linearBackward({ ...layer1, gradOutput: g2.input as Tensor, wrt: ['weights', 'bias'] })).grads
  const stepped = await client.optimizerStep({
    optimizer: 'sgd',
    lr: LR,
    params: p,
    grads: { W1: g1.weights as Tensor, b1: g1.bias as Tensor, W2: g2.weights as Tensor, b2: g2.bias as Tensor }
  })
  return [(l.result as Tensor).data[0], stepped.params as Params]
}

type Step = (client: TensorClient, p: Params) => Promise<[number, Params]>

/** Steps back to back for SECONDS: each step's latency, in ms. */
async function latencies (step: Step, client: TensorClient): Promise<number[]> {
  let p: Params = start
  for (let i = 0; i < 5; i++) p = (await step(client, p))[1]
  const ts: number[] = []
  const end = performance.now() + SECONDS * 1000
  while (performance.now() < end) {
    const t0 = performance.now()
    p = (await step(client, p))[1]
    ts.push(performance.now() - t0)
  }
  return ts.sort((a, b) => a - b)
}

/** Steps per second with `clients` clients stepping at once. */
async function throughput (step: Step, client: TensorClient, clients: number): Promise<number> {
  let done = 0
  const end = performance.now() + SECONDS * 1000
  await Promise.all(Array.from({ length: clients }, async () => {
    let p: Params = start
    while (performance.now() < end) {
      p = (await step(client, p))[1]
      done++
    }
  }))
  return done / SECONDS
}

const { base, server } = await startService()
try {
  const client = new TensorClient({ baseUrl: base })
  // the same three steps both ways reach the same loss
  let [pg, pr]: [Params, Params] = [start, start]
  const losses: Array<[number, number]> = []
  for (let i = 0; i < 3; i++) {
    const [lg, ng] = await graphStep(client, pg)
    const [lr, nr] = await routesStep(client, pr)
    losses.push([lg, lr])
    pg = ng
    pr = nr
  }
  for (const [lg, lr] of losses) if (Math.abs(lg - lr) > 1e-4 * Math.abs(lr)) throw new Error(`the two paths differ: loss ${lg} against ${lr}`)
  const rows: string[] = []
  const q = (ts: number[], f: number): number => ts[Math.min(ts.length - 1, Math.floor(f * ts.length))]
  const [gl, rl] = [await latencies(graphStep, client), await latencies(routesStep, client)]
  const [gt, rt] = [await throughput(graphStep, client, 4), await throughput(routesStep, client, 4)]
  rows.push(`| one graph request | ${q(gl, 0.5).toFixed(2)} | ${q(gl, 0.9).toFixed(2)} | ${gt.toFixed(1)} |`)
  rows.push(`| six single-route requests | ${q(rl, 0.5).toFixed(2)} | ${q(rl, 0.9).toFixed(2)} | ${rt.toFixed(1)} |`)
  console.log(`\nA 2-layer MLP training step (batch ${B}, ${IN}→${HID}→${OUT}, float32, cross-entropy, SGD) through the typed client; ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`)
  console.log(`losses of the first three steps, graph / routes: ${losses.map(([a, b]) => `${a.toFixed(5)} / ${b.toFixed(5)}`).join(', ')}`)
  console.log('| path | latency median ms | latency p90 ms | steps/s, 4 clients |')
  console.log('|---|---|---|---|')
  for (const r of rows) console.log(r)
  const speedup = q(rl, 0.5) / q(gl, 0.5)
  console.log(`graph / routes: ${speedup.toFixed(2)}x faster per step (median latency), ${(gt / rt).toFixed(2)}x the throughput; target 2x ${speedup >= 2 ? 'met' : 'missed'}`)
} finally {
  server.kill()
}
