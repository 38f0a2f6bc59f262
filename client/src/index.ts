/**
 * A typed client of the tensor service, for Node.js 20+ and browsers, with no dependency beyond
 * `fetch`. One method per operation route (`matmul`, `dot`, …, `matmulBackward`, …), typed by the
 * OpenAPI document the service's own schemas generate (./openapi.ts). Tensors go in and come back
 * as typed arrays with their shape, on the wire as base64 little-endian bytes.
 */
import { type components, OPERATION_ROUTES, type paths } from './openapi.js'

export type { components, paths } from './openapi.js'
export { OPERATION_ROUTES } from './openapi.js'

type Schemas = components['schemas']
export type DType = Schemas['DType']
export type TypedArray = Float32Array | Float64Array

/** A tensor: its shape and its elements in row-major (C) order. */
export interface Tensor<T extends TypedArray = TypedArray> {
  shape: readonly number[]
  data: T
}

/** An operand: a typed tensor, or any of the wire forms (nested arrays, a number, an object form). */
export type TensorInput = Tensor | Schemas['Tensor']

/** A route of the service that computes (`/v1/matmul`, `/v1/matmul/backward`, …). */
export type OperationRoute = (typeof OPERATION_ROUTES)[number]

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never
export type WireBody<R extends OperationRoute> = Json<NonNullable<paths[R]['post']['requestBody']>>
export type WireReply<R extends OperationRoute> = Json<paths[R]['post']['responses'][200]>

/** A body field that holds a tensor takes a typed tensor as well; `encoding` is the client's own. */
type Arg<V> = [Schemas['Tensor']] extends [V]
  ? V | Tensor
  : V extends ReadonlyArray<infer E> ? ([Schemas['Tensor']] extends [E] ? ReadonlyArray<E | Tensor> : V) : V
export type Args<R extends OperationRoute> = { [K in keyof Omit<WireBody<R>, 'encoding'>]: Arg<WireBody<R>[K]> }

/** A reply with each result tensor (and each gradient) as a typed tensor. */
export type Decoded<T> = T extends Schemas['ResultTensor']
  ? Tensor & { dtype: DType }
  : T extends ReadonlyArray<infer E> ? Array<Decoded<E>> : T extends object ? { [K in keyof T]: Decoded<T[K]> } : T
export type Reply<R extends OperationRoute> = Decoded<WireReply<R>>

/** `/v1/matmul` → `matmul`, `/v1/matmul/backward` → `matmulBackward`. */
type MethodName<R extends string> = R extends `/v1/${infer Op}/${infer Rest}` ? `${Op}${Capitalize<Rest>}` : R extends `/v1/${infer Op}` ? Op : never
export function methodName (route: string): string {
  return route.slice('/v1/'.length).split('/').map((w, i) => i === 0 ? w : w.charAt(0).toUpperCase() + w.slice(1)).join('')
}

export interface CallOptions {
  signal?: AbortSignal
  /** Sent as `x-request-id` (the service echoes it; otherwise it makes one). */
  requestId?: string
}

type Methods = { [R in OperationRoute as MethodName<R>]: (args: Args<R>, options?: CallOptions) => Promise<Reply<R>> }

export interface ClientOptions {
  /** The service's origin, e.g. `http://127.0.0.1:3000`. */
  baseUrl: string
  /** An API key, sent as `Authorization: Bearer <key>`. */
  apiKey?: string
  /** How many times a 503 is retried after its Retry-After (default 2). */
  maxRetries?: number
  /** The longest wait before a retry, in ms, whatever Retry-After says (default 30000). */
  maxRetryDelayMs?: number
  fetch?: typeof fetch
}

/** An error reply of the service. */
export class TensorServiceError extends Error {
  override readonly name = 'TensorServiceError'
  constructor (
    readonly status: number,
    /** The service's error code: INVALID_TENSOR, SHAPE_MISMATCH, TOO_LARGE, OVERLOADED, … */
    readonly code: string,
    message: string,
    /** The `x-request-id` of the reply, to find the request in the service's log. */
    readonly requestId: string | undefined
  ) {
    super(message)
  }
}

export interface TensorClient extends Methods {}

export class TensorClient {
  readonly #options: Required<Omit<ClientOptions, 'apiKey'>> & { apiKey?: string }

  constructor (options: ClientOptions) {
    this.#options = { maxRetries: 2, maxRetryDelayMs: 30000, fetch: globalThis.fetch.bind(globalThis), ...options, baseUrl: options.baseUrl.replace(/\/+$/, '') }
    for (const route of OPERATION_ROUTES) {
      Object.defineProperty(this, methodName(route), {
        value: async (args: Args<typeof route>, options?: CallOptions) => await this.call(route, args, options)
      })
    }
  }

  /** Calls an operation route: typed tensors go as base64, the reply's tensors come back as typed arrays. */
  async call<R extends OperationRoute> (route: R, args: Args<R>, options: CallOptions = {}): Promise<Reply<R>> {
    const body: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(args)) {
      body[key] = Array.isArray(value) && value.some(isTensor) ? value.map(toWire) : toWire(value)
    }
    body.encoding = 'base64'
    const text = JSON.stringify(body)
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
    if (this.#options.apiKey !== undefined) headers.authorization = `Bearer ${this.#options.apiKey}`
    if (options.requestId !== undefined) headers['x-request-id'] = options.requestId
    for (let attempt = 0; ; attempt++) {
      const res = await this.#options.fetch(this.#options.baseUrl + route, { method: 'POST', headers, body: text, signal: options.signal })
      if (res.ok) return fromWire(await res.json()) as Reply<R>
      const error = await errorOf(res)
      if (res.status !== 503 || attempt >= this.#options.maxRetries) throw error
      await sleep(Math.min(retryAfterMs(res.headers.get('retry-after')), this.#options.maxRetryDelayMs), options.signal)
    }
  }
}

function isTensor (value: unknown): value is Tensor {
  return typeof value === 'object' && value !== null && 'data' in value && 'shape' in value &&
    (value.data instanceof Float32Array || value.data instanceof Float64Array)
}

function toWire (value: unknown): unknown {
  if (!isTensor(value)) return value
  const dtype: DType = value.data instanceof Float32Array ? 'float32' : 'float64'
  return { shape: [...value.shape], dtype, data: toBase64(littleEndian(value.data)) }
}

/** Every result tensor of a reply (at any depth: `grads`) as a typed tensor. */
function fromWire (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromWire)
  if (typeof value !== 'object' || value === null) return value
  const v = value as Record<string, unknown>
  if (Array.isArray(v.shape) && typeof v.dtype === 'string' && typeof v.data === 'string') {
    const bytes = fromBase64(v.data)
    const data = v.dtype === 'float32' ? new Float32Array(bytes.buffer) : new Float64Array(bytes.buffer)
    return { shape: v.shape, dtype: v.dtype, data: littleEndian(data) }
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromWire(x)]))
}

async function errorOf (res: Response): Promise<TensorServiceError> {
  const requestId = res.headers.get('x-request-id') ?? undefined
  let body: { code?: unknown, message?: unknown } = {}
  try {
    const parsed: unknown = await res.json()
    if (typeof parsed === 'object' && parsed !== null) body = parsed
  } catch {} // (not JSON: a proxy's page)
  return new TensorServiceError(res.status, typeof body.code === 'string' ? body.code : `HTTP_${res.status}`,
    typeof body.message === 'string' ? body.message : res.statusText, requestId)
}

/** Retry-After in seconds or as an HTTP date; 1 s when absent or unreadable. */
function retryAfterMs (header: string | null): number {
  if (header === null) return 1000
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const date = Date.parse(header)
  return Number.isNaN(date) ? 1000 : Math.max(0, date - Date.now())
}

async function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const done = (): void => { signal?.removeEventListener('abort', abort); resolve() }
    const timer = setTimeout(done, ms)
    const abort = (): void => { clearTimeout(timer); reject(signal?.reason) }
    signal?.addEventListener('abort', abort, { once: true })
  })
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** The array's bytes in little-endian order (a copy on a big-endian machine; the array itself otherwise). */
function littleEndian<T extends TypedArray> (data: T): T {
  if (LITTLE_ENDIAN) return data
  const copy = data.slice() as T
  const bytes = new Uint8Array(copy.buffer)
  const size = copy.BYTES_PER_ELEMENT
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse()
  return copy
}

function toBase64 (data: TypedArray): string {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

function fromBase64 (text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
