/**
 * Explain mode: `"explain": true` on matmul, dot, linear, conv2d and attention. Every explanation
 * is checked against the request's own operands, read here from the nested arrays the test sent
 * (so a wrong index or a transposed operand in the service shows), and for consistency: its
 * products summed, plus the bias, through the activation, give the element's value within the
 * dtype's rounding, and the value is the result's element exactly. Random shapes and values in
 * every dtype; the limits; JSON replies only; the same explanation from a worker.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { EXPLAIN_MAX_ELEMENTS, EXPLAIN_MAX_PRODUCTS } from '../src/operations/explain.js'
import { expectError, nested, post } from './helpers/bodies.js'
import { writeFile } from './helpers/safetensors.js'

type Num = number | string
interface Entry {
  index: number[]
  products?: Array<[Num, Num]>
  channels?: Array<{ channel: number, products: Array<[Num, Num]>, sum: Num }>
  bias?: Num
  preActivation?: Num
  activation?: string
  row?: Num[]
  scores?: Array<{ key: number, products: Array<[Num, Num]>, value: Num }>
  weights?: Num[]
  value: Num
  text: string
}

const DTYPES = ['float64', 'float32', 'float16', 'bfloat16'] as const
type DType = typeof DTYPES[number]
/** Relative tolerance of a sum recomputed in float64 against the dtype's result. */
const RTOL: Record<DType, number> = { float64: 1e-12, float32: 1e-5, float16: 4e-3, bfloat16: 3e-2 }

const num = (x: Num): number => typeof x === 'number' ? x : Number(x) // ("NaN", "Infinity", "-Infinity")
/** Values exactly representable in every dtype (multiples of 1/8 in [-4, 4)). */
const small = (rand: () => number): number => Math.floor(rand() * 64 - 32) / 8

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)
/** x rounded to bfloat16 (to nearest, ties to even). */
function bf16 (x: number): number {
  f32[0] = x
  u32[0] = ((u32[0] + 0x7fff + ((u32[0] >>> 16) & 1)) >>> 16) << 16
  return f32[0]
}

/**
 * The numbers of an explanation as the values they stand for: a bfloat16 prints in the fewest
 * digits that read back to it (-2.125 as -2.12), so it is read back to bfloat16 before comparing.
 */
function values<T> (x: T, dtype: DType): T {
  if (Array.isArray(x)) return x.map(v => values(v, dtype)) as T
  return (typeof x === 'number' && dtype === 'bfloat16' ? bf16(x) : x) as T
}

function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function matrix (rows: number, cols: number, rand: () => number): number[][] {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => small(rand)))
}

function flat (data: unknown): Num[] {
  return Array.isArray(data) ? data.flatMap(flat) : [data as Num]
}

function unravel (f: number, shape: number[]): number[] {
  const index = new Array<number>(shape.length)
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = f % shape[d]
    f = Math.floor(f / shape[d])
  }
  return index
}

/** |got - want| within the dtype's rounding of a sum whose terms' magnitudes add up to `scale`. */
function close (got: number, want: number, scale: number, dtype: DType, what: string): void {
  if (Number.isNaN(want)) {
    expect(Number.isNaN(got), what).toBe(true)
    return
  }
  expect(Math.abs(got - want), `${what}: ${got} against ${want}`).toBeLessThanOrEqual(RTOL[dtype] * Math.max(scale, Math.abs(want), 1e-300))
}

const ACT: Record<string, (z: number) => number> = {
  relu: z => Math.max(0, z),
  sigmoid: z => 1 / (1 + Math.exp(-z)),
  tanh: Math.tanh,
  gelu: z => 0.5 * z * (1 + erf(z / Math.SQRT2))
}

/** erf to about 1e-14: its Maclaurin series below 3, erfc's continued fraction from 3. */
function erf (x: number): number {
  const ax = Math.abs(x)
  if (ax < 3) {
    let term = ax
    let total = ax
    for (let n = 1; n < 80; n++) {
      term *= -ax * ax / n
      total += term / (2 * n + 1)
    }
    return Math.sign(x) * total * 2 / Math.sqrt(Math.PI)
  }
  let k = ax
  for (let n = 80; n >= 1; n--) k = ax + (n / 2) / k
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * k))
}

/** The text's last `= value`: the element's value as the reply prints it. */
function textValue (text: string): string {
  const head = text.split(', weights = ')[0].split(', where ')[0]
  return head.slice(head.lastIndexOf(' = ') + 3)
}

let app: FastifyInstance
let inWorker: FastifyInstance

beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1 })
  // every body parsed, computed and explained in a worker
  inWorker = await buildApp({ logLevel: 'silent', workers: 1, workerParseMinBytes: 1, inlineMaxFlops: 0 })
})
afterAll(async () => { await Promise.all([app?.close(), inWorker?.close()]) })

async function explained (url: string, body: object, on = app): Promise<{ result: { shape: number[], dtype: DType, data: unknown }, explanation: Entry[] }> {
  const res = await post(on, url, { ...body, explain: true })
  expect(res.statusCode, res.body).toBe(200)
  const reply = res.json()
  const values = flat(reply.result.data)
  expect(reply.explanation).toHaveLength(values.length)
  reply.explanation.forEach((e: Entry, f: number) => {
    expect(e.index, `element ${f}`).toEqual(unravel(f, reply.result.shape))
    // the value is the result's element, printed as the result prints it
    expect(e.value, `element ${f}`).toEqual(values[f])
    expect(textValue(e.text)).toBe(String(values[f]))
  })
  return reply
}

/** Σ a·b in float64 and Σ |a·b|. */
function sum (pairs: Array<[Num, Num]>): [number, number] {
  let s = 0
  let m = 0
  for (const [a, b] of pairs) {
    s += num(a) * num(b)
    m += Math.abs(num(a) * num(b))
  }
  return [s, m]
}

function textOf (pairs: Array<[Num, Num]>): string {
  return pairs.length === 0 ? '0' : pairs.map(([a, b]) => `${a}*${b}`).join(' + ')
}

describe('explain: every element against the operands sent', () => {
  it('the seed\'s example, exactly', async () => {
    const reply = await explained('/v1/matmul', { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] })
    expect(reply.explanation.map(e => e.text)).toEqual([
      'C[0,0] = 1*5 + 2*7 = 19', 'C[0,1] = 1*6 + 2*8 = 22', 'C[1,0] = 3*5 + 4*7 = 43', 'C[1,1] = 3*6 + 4*8 = 50'
    ])
    const relu = await explained('/v1/linear', { input: [[0.5, -1]], weights: [[1, 2], [2, 1]], bias: [0.1, 0.2], activation: 'relu' })
    expect(relu.explanation[0].text).toBe('out[0,0] = relu(0.5*1 + -1*2 + 0.1) = 0')
  })

  for (const dtype of DTYPES) {
    it(`matmul, batched and broadcast, ${dtype}`, async () => {
      const rand = rng(11)
      for (let trial = 0; trial < 6; trial++) {
        const [m, k, n] = [1 + Math.floor(rand() * 4), 1 + Math.floor(rand() * 5), 1 + Math.floor(rand() * 4)]
        const a = [0, 1].map(() => matrix(m, k, rand))
        const b = matrix(k, n, rand)
        const reply = await explained('/v1/matmul', { a, b, dtype })
        for (const e of reply.explanation) {
          const [p, i, j] = e.index
          expect(values(e.products, dtype)).toEqual(a[p][i].map((x, t) => [x, b[t][j]]))
          const [s, scale] = sum(e.products!)
          close(num(e.value), s, scale, dtype, e.text)
          expect(e.text).toBe(`C[${p},${i},${j}] = ${textOf(e.products!)} = ${e.value}`)
        }
      }
    })

    it(`dot, ${dtype}`, async () => {
      const rand = rng(12)
      const a = Array.from({ length: 7 }, () => small(rand))
      const b = Array.from({ length: 7 }, () => small(rand))
      const [e] = (await explained('/v1/dot', { a, b, dtype })).explanation
      expect(values(e.products, dtype)).toEqual(a.map((x, t) => [x, b[t]]))
      expect(e.text).toBe(`a·b = ${textOf(e.products!)} = ${e.value}`)
      close(num(e.value), ...sum(e.products!), dtype, e.text)
    })

    it(`linear with every activation, ${dtype}`, async () => {
      const rand = rng(13)
      for (const activation of ['none', 'relu', 'sigmoid', 'tanh', 'gelu', 'softmax']) {
        const input = matrix(3, 4, rand)
        const weights = matrix(4, 3, rand)
        const bias = [small(rand), small(rand), small(rand)]
        const reply = await explained('/v1/linear', { input, weights, bias, activation, dtype })
        for (const e of reply.explanation) {
          const [r, j] = e.index
          expect(values(e.products, dtype)).toEqual(input[r].map((x, t) => [x, weights[t][j]]))
          expect(values(e.bias, dtype)).toBe(bias[j])
          const [s, scale] = sum(e.products!)
          const z = s + bias[j]
          if (activation === 'none') {
            close(num(e.value), z, scale, dtype, e.text)
            expect(e.text).toBe(`out[${r},${j}] = ${textOf(e.products!)} + ${e.bias} = ${e.value}`)
            continue
          }
          expect(e.activation).toBe(activation)
          close(num(e.preActivation!), z, scale, dtype, `${e.text} (pre-activation)`)
          if (activation === 'softmax') {
            const row = e.row!.map(num)
            const top = Math.max(...row)
            const total = row.reduce((t, x) => t + Math.exp(x - top), 0)
            close(num(e.value), Math.exp(row[j] - top) / total, 1, dtype, e.text)
            expect(e.text.startsWith(`out[${r},${j}] = softmax([${e.row!.join(', ')}])[${j}] = ${e.value}, where `)).toBe(true)
          } else {
            // the activation of the rounded pre-activation, within the dtype's rounding once more
            close(num(e.value), ACT[activation](num(e.preActivation!)), Math.max(1, Math.abs(z)), dtype, e.text)
            expect(e.text).toBe(`out[${r},${j}] = ${activation}(${textOf(e.products!)} + ${e.bias}) = ${e.value}`)
          }
        }
      }
    })

    it(`conv2d: stride, padding, dilation, groups, both layouts, ${dtype}`, async () => {
      const rand = rng(14)
      const cases = [
        { N: 1, C: 2, H: 4, W: 5, K: 2, kh: 2, kw: 3, stride: 1, padding: 0, dilation: 1, groups: 1 },
        { N: 2, C: 2, H: 5, W: 4, K: 2, kh: 3, kw: 2, stride: 2, padding: 1, dilation: 1, groups: 2 },
        { N: 1, C: 1, H: 5, W: 5, K: 3, kh: 2, kw: 2, stride: 1, padding: 1, dilation: 2, groups: 1 }
      ]
      for (const c of cases) {
        for (const layout of ['NCHW', 'NHWC'] as const) {
          // x[n][ch][y][x] and w[k][ci][ky][kx], sent in the layout's order
          const x = Array.from({ length: c.N }, () => Array.from({ length: c.C }, () => matrix(c.H, c.W, rand)))
          const cg = c.C / c.groups
          const w = Array.from({ length: c.K }, () => Array.from({ length: cg }, () => matrix(c.kh, c.kw, rand)))
          const bias = Array.from({ length: c.K }, () => small(rand))
          const input = layout === 'NCHW' ? x : x.map(img => Array.from({ length: c.H }, (_, y) => Array.from({ length: c.W }, (_, xx) => img.map(ch => ch[y][xx]))))
          const kernel = layout === 'NCHW' ? w : Array.from({ length: c.kh }, (_, ky) => Array.from({ length: c.kw }, (_, kx) => Array.from({ length: cg }, (_, ci) => w.map(k => k[ci][ky][kx]))))
          const reply = await explained('/v1/conv2d', { input, kernel, bias, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups, layout, dtype })
          for (const e of reply.explanation) {
            const [n, k, oy, ox] = layout === 'NCHW' ? e.index : [e.index[0], e.index[3], e.index[1], e.index[2]]
            const group = Math.floor(k / (c.K / c.groups))
            let total = bias[k]
            let scale = Math.abs(bias[k])
            expect(e.channels!.map(ch => ch.channel)).toEqual(Array.from({ length: cg }, (_, ci) => group * cg + ci))
            e.channels!.forEach((ch, ci) => {
              const want: Array<[number, number]> = []
              for (let ky = 0; ky < c.kh; ky++) {
                for (let kx = 0; kx < c.kw; kx++) {
                  const y = oy * c.stride - c.padding + ky * c.dilation
                  const xx = ox * c.stride - c.padding + kx * c.dilation
                  if (y >= 0 && y < c.H && xx >= 0 && xx < c.W) want.push([x[n][ch.channel][y][xx], w[k][ci][ky][kx]])
                }
              }
              expect(values(ch.products, dtype), e.text).toEqual(want)
              const [s, m] = sum(ch.products)
              close(num(ch.sum), s, m, dtype, `${e.text} (channel ${ch.channel})`)
              total += s
              scale += m
            })
            expect(values(e.bias, dtype)).toBe(bias[k])
            close(num(e.value), total, scale, dtype, e.text)
            const terms = [...e.channels!.map(ch => `(${textOf(ch.products)})`), String(e.bias)].join(' + ')
            expect(e.text).toBe(`out[${e.index.join(',')}] = ${terms} = ${[...e.channels!.map(ch => ch.sum), e.bias].join(' + ')} = ${e.value}`)
          }
        }
      }
    })

    it(`attention: causal, a boolean and a numeric mask, batches, ${dtype}`, async () => {
      const rand = rng(15)
      const bodies = [
        { query: matrix(3, 2, rand), key: matrix(4, 2, rand), value: matrix(4, 3, rand) },
        { query: matrix(3, 2, rand), key: matrix(3, 2, rand), value: matrix(3, 2, rand), causal: true },
        { query: matrix(2, 3, rand), key: matrix(3, 3, rand), value: matrix(3, 2, rand), mask: [[true, false, true], [false, false, false]], scale: 0.5 },
        { query: [matrix(2, 2, rand), matrix(2, 2, rand)], key: matrix(3, 2, rand), value: matrix(3, 1, rand), mask: [[0, -1, 0.5]] }
      ]
      for (const body of bodies) {
        const reply = await explained('/v1/attention', { ...body, dtype })
        const batched = Array.isArray((body.query as unknown[][])[0][0])
        for (const e of reply.explanation) {
          const [b, i, j] = batched ? e.index : [0, ...e.index]
          const q = (batched ? (body.query as number[][][])[b] : body.query as number[][])[i]
          const E = q.length
          const scale = (body as { scale?: number }).scale ?? 1 / Math.sqrt(E)
          const masks = (body as { mask?: unknown[][] }).mask
          const want = body.key.map((k, t) => {
            const m = masks === undefined ? 0 : masks[masks.length === 1 ? 0 : i][t]
            const hidden = ((body as { causal?: boolean }).causal === true && t > i) || m === false
            return { hidden, products: q.map((x, d) => [x, k[d]]) as Array<[number, number]>, add: typeof m === 'number' ? m : 0 }
          })
          expect(values(e.scores!.map(s => s.products), dtype)).toEqual(want.map(w => w.products))
          const scores = e.scores!.map((s, t) => {
            const [dot, m] = sum(s.products)
            if (want[t].hidden) expect(s.value).toBe('-Infinity')
            else close(num(s.value), dot * scale + want[t].add, m * Math.abs(scale) + Math.abs(want[t].add), dtype, `${e.text} (score ${t})`)
            return num(s.value)
          })
          const top = Math.max(...scores)
          const exps = scores.map(s => top === -Infinity ? 0 : Math.exp(s - top))
          const total = exps.reduce((x, y) => x + y, 0)
          e.weights!.forEach((wt, t) => close(num(wt), top === -Infinity ? 0 : exps[t] / total, 1, dtype, `${e.text} (weight ${t})`))
          const weightSum = e.weights!.reduce<number>((x, y) => x + num(y), 0)
          close(weightSum, top === -Infinity ? 0 : 1, 1, dtype, `${e.text} (weights sum)`)
          expect(values(e.products!.map(p => p[1]), dtype)).toEqual(body.value.map(row => row[j]))
          expect(e.products!.map(p => p[0])).toEqual(e.weights)
          const [s, m] = sum(e.products!)
          close(num(e.value), s, m, dtype, e.text)
        }
      }
    })
  }

  it('NaN and the infinities print as the reply prints them', async () => {
    const reply = await explained('/v1/matmul', { a: [['NaN', 1], ['Infinity', 0]], b: [[1], [2]] })
    expect(reply.explanation.map(e => e.text)).toEqual(['C[0,0] = NaN*1 + 1*2 = NaN', 'C[1,0] = Infinity*1 + 0*2 = Infinity'])
    expect(reply.explanation[0].products).toEqual([['NaN', 1], [1, 2]])
  })

  it('a 1-D operand, an empty sum and a rank-0 result', async () => {
    expect((await explained('/v1/matmul', { a: [1, 2], b: [[3], [4]] })).explanation.map(e => e.text)).toEqual(['C[0] = 1*3 + 2*4 = 11'])
    expect((await explained('/v1/matmul', { a: [1, 2], b: [3, 4] })).explanation.map(e => e.text)).toEqual(['C = 1*3 + 2*4 = 11'])
    expect((await explained('/v1/matmul', { a: { shape: [1, 0], data: [] }, b: { shape: [0, 2], data: [] } })).explanation.map(e => e.text))
      .toEqual(['C[0,0] = 0 = 0', 'C[0,1] = 0 = 0'])
  })

  it('without explain, or explain: false, the reply has no explanation', async () => {
    for (const explain of [undefined, false]) {
      const res = await post(app, '/v1/matmul', { a: [[1]], b: [[2]], explain })
      expect(Object.keys(res.json())).toEqual(['result'])
    }
  })
})

describe('explain: limits and formats', () => {
  it(`at most ${EXPLAIN_MAX_ELEMENTS} result elements and ${EXPLAIN_MAX_PRODUCTS} products an element, for each operation`, async () => {
    const ones = (shape: number[]): unknown => nested(shape, () => 1)
    const atLimit: Array<[string, object, object]> = [
      ['/v1/matmul', { a: ones([16, 64]), b: ones([64, 16]) }, { a: ones([16, 65]), b: ones([65, 16]) }],
      ['/v1/matmul', { a: ones([16, 1]), b: ones([1, 16]) }, { a: ones([17, 1]), b: ones([1, 16]) }],
      ['/v1/dot', { a: ones([64]), b: ones([64]) }, { a: ones([65]), b: ones([65]) }],
      ['/v1/linear', { input: ones([4, 64]), weights: ones([64, 64]) }, { input: ones([5, 64]), weights: ones([64, 64]) }],
      ['/v1/conv2d', { input: ones([1, 4, 8, 8]), kernel: ones([4, 4, 4, 4]), padding: 'same' }, { input: ones([1, 5, 8, 8]), kernel: ones([4, 5, 4, 4]), padding: 'same' }],
      ['/v1/attention', { query: ones([16, 3]), key: ones([16, 3]), value: ones([16, 16]) }, { query: ones([16, 3]), key: ones([17, 3]), value: ones([17, 16]) }]
    ]
    for (const [url, ok, over] of atLimit) {
      const res = await post(app, url, { ...ok, explain: true })
      expect(res.statusCode, `${url}: ${res.body}`).toBe(200)
      const err = expectError(await post(app, url, { ...over, explain: true }), 400, 'INVALID_ARGUMENT')
      expect(err.message).toMatch(/^explain is for small inputs: /)
      expect(err.message).toMatch(new RegExp(`over (${EXPLAIN_MAX_ELEMENTS}|${EXPLAIN_MAX_PRODUCTS})$`))
      // without explain, the same body is computed
      expect((await post(app, url, over)).statusCode).toBe(200)
    }
  })

  it('JSON replies only: a safetensors reply is refused; a safetensors body with a JSON reply is explained', async () => {
    const err = expectError(await post(app, '/v1/matmul', { a: [[1]], b: [[2]], explain: true }, { accept: 'application/octet-stream' }), 400, 'INVALID_ARGUMENT')
    expect(err.message).toMatch(/JSON replies only/)
    const file = writeFile({ a: { dtype: 'F64', shape: [1, 2], values: [1, 2] }, b: { dtype: 'F64', shape: [2, 1], values: [3, 4] } }, { explain: 'true' })
    for (const on of [app, inWorker]) {
      const refused = await on.inject({ method: 'POST', url: '/v1/matmul', payload: file, headers: { 'content-type': 'application/octet-stream' } })
      expectError(refused as never, 400, 'INVALID_ARGUMENT')
      const res = await on.inject({ method: 'POST', url: '/v1/matmul', payload: file, headers: { 'content-type': 'application/octet-stream', accept: 'application/json' } })
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json().explanation.map((e: Entry) => e.text)).toEqual(['C[0,0] = 1*3 + 2*4 = 11'])
    }
  })

  it('a worker writes the same reply, byte for byte, as the main thread', async () => {
    const bodies: Array<[string, object]> = [
      ['/v1/matmul', { a: [[1.5, 2], [3, 4]], b: [[5, 6], [7, 8.25]], dtype: 'float32' }],
      ['/v1/linear', { input: [[1, 2, 3]], weights: [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], bias: [0.5, -0.5], activation: 'softmax' }],
      ['/v1/conv2d', { input: [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]], kernel: [[[[1, 0], [0, -1]]]], padding: 1, dtype: 'bfloat16' }],
      ['/v1/attention', { query: [[1, 0], [0, 1]], key: [[1, 0], [0, 1], [1, 1]], value: [[1, 2], [3, 4], [5, 6]], causal: true, returnWeights: true, dtype: 'float16' }]
    ]
    for (const [url, body] of bodies) {
      const here = await post(app, url, { ...body, explain: true })
      const there = await post(inWorker, url, { ...body, explain: true })
      expect(here.statusCode, here.body).toBe(200)
      expect(there.body, url).toBe(here.body)
    }
  })

  it('backward routes and graph nodes take no explain', async () => {
    expectError(await post(app, '/v1/matmul/backward', { a: [[1]], b: [[2]], gradOutput: [[1]], explain: true }), 400, 'FST_ERR_VALIDATION')
    const graph = {
      inputs: { a: [[1]], b: [[2]] },
      nodes: [{ name: 'c', operation: 'matmul', a: 'a', b: 'b', explain: true }],
      outputs: ['c']
    }
    const err = expectError(await post(app, '/v1/graph', graph), 400, ['FST_ERR_VALIDATION', 'INVALID_ARGUMENT'])
    expect(err.message).toMatch(/explain/)
  })
})
