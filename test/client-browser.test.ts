/**
 * The TypeScript client in a browser (headless Chromium) against the live app: its sources,
 * transpiled as they are, run as ES modules in a page of the app's origin, with the browser's own
 * fetch, DataView and TextEncoder (no Node.js API). Big tensors go as safetensors files, small ones
 * as base64 JSON, float16 bits either way; an error is a TensorServiceError.
 * Skipped only when /usr/bin/chromium is missing outside CI.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { type Browser, chromium } from 'playwright-core'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { listen } from './helpers/bodies.js'
import { skipWithout } from './deploy/helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const skip = skipWithout(CHROMIUM)
const title = 'the TypeScript client in headless Chromium' +
  (skip ? ` - SKIPPED: no ${CHROMIUM} on this machine (apt-get install -y chromium); in CI it always runs` : '')

/** A client source file as the browser gets it: TypeScript transpiled to an ES module. */
function moduleOf (name: string): string {
  const source = readFileSync(new URL(`../client/src/${name.replace(/\.js$/, '.ts')}`, import.meta.url), 'utf8')
  return ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText
}

describe.skipIf(skip)(title, () => {
  let app: FastifyInstance
  let browser: Browser
  let origin = ''

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    origin = await listen(app)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
    await app?.close()
  })

  it('calls the service with files for big tensors and base64 JSON for small ones', async () => {
    const context = await browser.newContext()
    // the page and the client's modules are served at /client/ of the app's origin; the rest goes to the app
    await context.route('**/*', async (route) => {
      const url = new URL(route.request().url())
      if (url.origin !== origin) return await route.abort('blockedbyclient')
      if (url.pathname === '/client/') return await route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>client</title>' })
      if (url.pathname.startsWith('/client/')) return await route.fulfill({ contentType: 'text/javascript', body: moduleOf(url.pathname.slice('/client/'.length)) })
      await route.continue()
    })
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', e => errors.push(e.message))
    await page.goto(`${origin}/client/`)
    const out = await page.evaluate(async (baseUrl: string) => {
      // (the browser's own import(), which the test runner would otherwise rewrite)
      const load = new Function('url', 'return import(url)') as (url: string) => Promise<any> // eslint-disable-line no-new-func
      const { TensorClient, TensorServiceError, toHalf, fromHalf } = await load('/client/index.js')
      const types: string[] = []
      const recording = async (input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
        types.push(new Headers(init?.headers).get('content-type') ?? '')
        return await fetch(input, init)
      }
      const client = new TensorClient({ baseUrl, fetch: recording })
      const json = new TensorClient({ baseUrl, fetch: recording, binaryMinBytes: Infinity })
      const a = { shape: [128, 64], data: Float64Array.from({ length: 128 * 64 }, (_, i) => (i % 7) - 3) } // 64 KiB
      const b = { shape: [64, 2], data: Float64Array.from({ length: 128 }, (_, i) => i / 8) }
      const big = await client.matmul({ a, b })
      const same = await json.matmul({ a, b })
      const half = { shape: [2, 2], dtype: 'float16', data: toHalf([1, 2, 3, 4], 'float16') }
      const h = await client.matmul({ a: half, b: half })
      const hFile = await new TensorClient({ baseUrl, fetch: recording, binaryMinBytes: 0 }).matmul({ a: half, b: half })
      const grads = await client.einsumBackward({ equation: 'ij,jk->ik', operands: [a, b], gradOutput: { shape: [128, 2], data: new Float64Array(256).fill(1) }, wrt: [0] })
      const err = await client.matmul({ a, b: a }).catch((e: unknown) => e)
      return {
        types,
        big: { shape: big.result.shape, dtype: big.result.dtype, isF64: big.result.data instanceof Float64Array, data: Array.from(big.result.data as Float64Array) },
        same: Array.from(same.result.data as Float64Array),
        half: { dtype: h.result.dtype, isU16: h.result.data instanceof Uint16Array, values: Array.from(fromHalf(h.result.data, 'float16') as Float32Array), file: Array.from(hFile.result.data as Uint16Array), json: Array.from(h.result.data as Uint16Array) },
        grads: { first: grads.grads.operands[0]?.shape, second: grads.grads.operands[1] },
        error: { typed: err instanceof TensorServiceError, status: (err as { status?: number }).status, code: (err as { code?: string }).code }
      }
    }, origin)
    expect(errors).toEqual([])
    const file = 'application/octet-stream'
    expect(out.types).toEqual([file, 'application/json', 'application/json', file, file, file])
    expect(out.big).toMatchObject({ shape: [128, 2], dtype: 'float64', isF64: true })
    expect(out.big.data).toEqual(out.same)
    expect(out.big.data.slice(0, 2)).toEqual([...[0, 1].map(j => Array.from({ length: 64 }, (_, k) => ((k % 7) - 3) * ((k * 2 + j) / 8)).reduce((s, x) => s + x, 0))])
    expect(out.half).toMatchObject({ dtype: 'float16', isU16: true, values: [7, 10, 15, 22] })
    expect(out.half.file).toEqual(out.half.json)
    expect(out.grads).toEqual({ first: [128, 64], second: null })
    expect(out.error).toEqual({ typed: true, status: 400, code: 'SHAPE_MISMATCH' })
    await context.close()
  }, 60_000)
})
