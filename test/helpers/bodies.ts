/**
 * Request bodies and response checks for the HTTP-level tests: tensors in the object form with
 * base64 data (compact for big operands), nested arrays of a given shape, bodies that keep a
 * worker busy for a while, and the contract's checks on every error response.
 */
import { Buffer } from 'node:buffer'
import type { FastifyInstance } from 'fastify'
import { expect } from 'vitest'

export type DType = 'float32' | 'float64'

export interface ObjectTensor {
  shape: number[]
  dtype: DType
  data: string
}

/** The parts of an injected (or supertest) response these tests read. */
export interface Reply {
  statusCode: number
  headers: Record<string, string | string[] | number | undefined>
  body: string
}

export function elements (shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1)
}

/**
 * A tensor in the object form with base64 data; element i is `fill(i)`
 * (default: small values that keep softmax and sums finite).
 */
export function base64Tensor (shape: number[], dtype: DType = 'float64', fill: (i: number) => number = i => ((i % 7) - 3) / 8): ObjectTensor {
  const n = elements(shape)
  const values = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n)
  for (let i = 0; i < n; i++) values[i] = fill(i)
  return { shape, dtype, data: Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64') }
}

/** Nested arrays of the given shape (rank >= 1) whose leaves are `fill(flat index)`. */
export function nested (shape: readonly number[], fill: (i: number) => unknown = () => 1): unknown[] {
  let next = 0
  const build = (axis: number): unknown[] => {
    const out: unknown[] = []
    for (let j = 0; j < shape[axis]; j++) out.push(axis === shape.length - 1 ? fill(next++) : build(axis + 1))
    return out
  }
  return build(0)
}

/** POSTs a JSON value (or an already serialized body) to a route. */
export async function post (app: FastifyInstance, url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply & { json: () => any }> {
  const payload = typeof body === 'string' ? body : JSON.stringify(body)
  return await app.inject({
    method: 'POST',
    url,
    payload,
    headers: { 'content-type': 'application/json', ...headers }
  })
}

const ERROR_KEYS = ['code', 'error', 'message', 'statusCode']

/**
 * The contract's checks on an error response: the status, a JSON body with exactly
 * statusCode/code/error/message (statusCode = the HTTP status), a code among `codes`, no stack
 * trace or source path, and an x-request-id header. Returns the parsed body.
 */
export function expectError (res: Reply, status: number, codes: string | readonly string[]): { statusCode: number, code: string, error: string, message: string } {
  const allowed = typeof codes === 'string' ? [codes] : codes
  expect(res.statusCode, res.body.slice(0, 500)).toBe(status)
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/)
  const body = JSON.parse(res.body) as Record<string, unknown>
  expect(Object.keys(body).sort()).toEqual(ERROR_KEYS)
  expect(body.statusCode).toBe(status)
  expect(typeof body.code).toBe('string')
  expect(typeof body.error).toBe('string')
  expect((body.error as string).length).toBeGreaterThan(0)
  expect(typeof body.message).toBe('string')
  expect((body.message as string).length).toBeGreaterThan(0)
  expect(allowed, `code ${String(body.code)}: ${String(body.message)}`).toContain(body.code)
  expect(res.body).not.toMatch(/\n\s+at /)
  expect(res.body).not.toMatch(/\s+at .*:\d+:\d+/)
  expect(res.body).not.toMatch(/\/src\/|\/node_modules\/|file:\/\/|\.ts:\d/)
  const id = res.headers['x-request-id']
  expect(typeof id).toBe('string')
  expect((id as string).length).toBeGreaterThan(0)
  return body as { statusCode: number, code: string, error: string, message: string }
}

/** Resolves once `check()` holds, polling every few milliseconds; rejects after `timeoutMs`. */
export async function waitFor (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

/** Listens on a free loopback port; returns the origin (`http://127.0.0.1:<port>`). */
export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return `http://127.0.0.1:${address.port}`
}
