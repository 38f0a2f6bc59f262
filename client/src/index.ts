/**
 * A typed client of the tensor service, for Node.js 20+ and browsers, with no dependency beyond
 * `fetch`. One method per operation route (`matmul`, `dot`, …, `matmulBackward`, …), typed by the
 * OpenAPI document the service's own schemas generate (./openapi.ts). Tensors go in and come back
 * as typed arrays with their shape, on the wire as base64 little-endian bytes, or, for big tensors,
 * as a safetensors file (./safetensors.ts).
 */
import { type components, OPERATION_ROUTES, type paths } from './openapi.js'
import { type FileDType, type FileTensor, readSafetensors, writeSafetensors } from './safetensors.js'

export type { components, paths } from './openapi.js'
export { OPERATION_ROUTES } from './openapi.js'
export { fromHalf, type HalfDType, toHalf } from './half.js'
export { GraphBuilder, GraphValue, NODE_ROUTES, type NodeArgs, type NodeRoute } from './graph.js'

type Schemas = components['schemas']
export type DType = Schemas['DType']
/** Float64Array, Float32Array, or the bits of float16 or bfloat16 values in a Uint16Array. */
export type TypedArray = Float32Array | Float64Array | Uint16Array

/** A tensor: its shape and its elements in row-major (C) order. */
export interface Tensor<T extends TypedArray = TypedArray> {
  shape: readonly number[]
  data: T
  /**
   * Required with Uint16Array data: `float16` or `bfloat16` (`toHalf` makes the bits from
   * numbers, `fromHalf` reads them). Otherwise that of the array, which it may repeat.
   */
  dtype?: DType
}

/** The fields of the operation bodies that hold tensors (einsum's `operands` a list of them). */
export const TENSOR_FIELDS: readonly string[] = ['a', 'b', 'input', 'weights', 'weight', 'bias', 'kernel', 'query', 'key', 'value', 'mask', 'target', 'gradOutput', 'operands']
const TENSOR_FIELD = new Set(TENSOR_FIELDS)
/**
 * The fields that are objects of tensors by names the user chose (the optimizer's), whose tensors a
 * safetensors file names `<field>.<name>` (the name may hold dots).
 */
export const TENSOR_MAPS: readonly string[] = [
  'params', 'grads', 'state.momentumBuffer', 'state.expAvg', 'state.expAvgSq',
  'inputs', 'update.state.momentumBuffer', 'update.state.expAvg', 'update.state.expAvgSq'
]
/** Whether a field holds such objects (`state`, `update`): its other entries go to `__metadata__` as `state.step`. */
const holdsMaps = (field: string): boolean => TENSOR_MAPS.some(m => m.startsWith(`${field}.`))
/** Those of a reply: its `grads` are named by the operands (`grads.a`, einsum's `grads.operands.0`, which nest). */
const REPLY_MAPS = TENSOR_MAPS.filter(m => m !== 'grads')

/** The default of `binaryMinBytes`: 64 KiB. */
export const BINARY_MIN_BYTES = 65536

/** An operand: a typed tensor, or any of the wire forms (nested arrays, a number, an object form). */
export type TensorInput = Tensor | Schemas['Tensor']

/** A route of the service that computes (`/v1/matmul`, `/v1/matmul/backward`, …). */
export type OperationRoute = (typeof OPERATION_ROUTES)[number]

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never
export type WireBody<R extends OperationRoute> = Json<NonNullable<paths[R]['post']['requestBody']>>
export type WireReply<R extends OperationRoute> = Json<paths[R]['post']['responses'][200]>

/** A body field that holds a tensor (at any depth: the optimizer's `params`) takes a typed tensor as well; `encoding` is the client's own. */
type Arg<V> = [Schemas['Tensor']] extends [V]
  ? V | Tensor
  : V extends ReadonlyArray<infer E> ? ([Schemas['Tensor']] extends [E] ? ReadonlyArray<E | Tensor> : V)
    : V extends object ? { [K in keyof V]: Arg<V[K]> } : V
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
  /**
   * A request whose typed tensors hold this many bytes or more in all (default 65536, 64 KiB) goes
   * as a safetensors file and asks for a file back, when every tensor field holds a typed tensor;
   * others go as base64 JSON. `0`: always a file (with typed tensors); `Infinity`: always JSON.
   */
  binaryMinBytes?: number
  /**
   * Ask for compressed replies (default false: `Accept-Encoding: identity`). Tensors' bytes compress
   * little, and compressing an 800 KB reply took longer than the request's computation (27 ms against
   * 7 ms for a whole MLP training step); worth it on a slow link only. Browsers choose this themselves.
   */
  compressReplies?: boolean
  fetch?: typeof fetch
}

/** An error reply of the service. */
export class TensorServiceError extends Error {
  override readonly name = 'TensorServiceError'
  constructor (
    /** The reply's HTTP status; 0 when the service could not be reached (code UNREACHABLE). */
    readonly status: number,
    /** The service's error code: INVALID_TENSOR, SHAPE_MISMATCH, TOO_LARGE, OVERLOADED, …; UNREACHABLE with no reply. */
    readonly code: string,
    message: string,
    /** The `x-request-id` of the reply, to find the request in the service's log. */
    readonly requestId: string | undefined,
    options?: { cause?: unknown }
  ) {
    super(message, options)
  }
}

export interface TensorClient extends Methods {}

export class TensorClient {
  readonly #options: Required<Omit<ClientOptions, 'apiKey'>> & { apiKey?: string }

  constructor (options: ClientOptions) {
    this.#options = { maxRetries: 2, maxRetryDelayMs: 30000, binaryMinBytes: BINARY_MIN_BYTES, compressReplies: false, fetch: globalThis.fetch.bind(globalThis), ...options, baseUrl: options.baseUrl.replace(/\/+$/, '') }
    for (const route of OPERATION_ROUTES) {
      Object.defineProperty(this, methodName(route), {
        value: async (args: Args<typeof route>, options?: CallOptions) => await this.call(route, args, options)
      })
    }
  }

  /**
   * Calls an operation route: typed tensors go as base64 JSON (big ones as a safetensors file), the
   * reply's tensors come back as typed arrays.
   */
  async call<R extends OperationRoute> (route: R, args: Args<R>, options: CallOptions = {}): Promise<Reply<R>> {
    const file = fileOf(args, this.#options.binaryMinBytes)
    const type = file === undefined ? 'application/json' : 'application/octet-stream'
    const body = file ?? jsonOf(args)
    const headers: Record<string, string> = { 'content-type': type, accept: type }
    // (fetch asks for gzip, deflate and br unless told otherwise)
    if (!this.#options.compressReplies) headers['accept-encoding'] = 'identity'
    if (this.#options.apiKey !== undefined) headers.authorization = `Bearer ${this.#options.apiKey}`
    if (options.requestId !== undefined) headers['x-request-id'] = options.requestId
    const url = this.#options.baseUrl + route
    for (let attempt = 0; ; attempt++) {
      let res: Response
      try {
        res = await this.#options.fetch(url, { method: 'POST', headers, body, signal: options.signal })
      } catch (err) {
        // an abort stays an abort; a service that cannot be reached is said so, with its URL
        if (options.signal?.aborted === true || (err as Error).name === 'AbortError') throw err
        const cause = (err as { cause?: { code?: string, message?: string } }).cause
        throw new TensorServiceError(0, 'UNREACHABLE', `cannot reach the tensor service at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, undefined, { cause: err })
      }
      if (res.ok) {
        const reply = isFile(res) ? fromFile(new Uint8Array(await res.arrayBuffer())) : fromWire(await res.json())
        return withOperands(route, args, reply) as Reply<R>
      }
      const error = await errorOf(res)
      if (res.status !== 503 || attempt >= this.#options.maxRetries) throw error
      await sleep(Math.min(retryAfterMs(res.headers.get('retry-after')), this.#options.maxRetryDelayMs), options.signal)
    }
  }
}

function isTensor (value: unknown): value is Tensor {
  return typeof value === 'object' && value !== null && 'data' in value && 'shape' in value &&
    (value.data instanceof Float32Array || value.data instanceof Float64Array || value.data instanceof Uint16Array)
}

/** A typed tensor's dtype: that of its array, or the 16-bit dtype it names for Uint16Array bits. */
function dtypeOf (t: Tensor): DType {
  const own = t.data instanceof Float64Array ? 'float64' : t.data instanceof Float32Array ? 'float32' : undefined
  if (own !== undefined && (t.dtype === undefined || t.dtype === own)) return own
  if (own === undefined && (t.dtype === 'float16' || t.dtype === 'bfloat16')) return t.dtype
  throw new TypeError(own === undefined
    ? `a tensor of Uint16Array data needs dtype "float16" or "bfloat16", not ${JSON.stringify(t.dtype)}`
    : `a tensor of ${t.data.constructor.name} data has dtype ${own}, not ${JSON.stringify(t.dtype)}`)
}

/** The JSON body: typed tensors as base64, replies asked for in base64. */
function jsonOf (args: object): string {
  const body: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(args)) {
    body[key] = Array.isArray(value) && value.some(isTensor) ? value.map(toWire) : toWire(value)
  }
  body.encoding = 'base64'
  return JSON.stringify(body)
}

function toWire (value: unknown): unknown {
  if (isTensor(value)) return { shape: [...value.shape], dtype: dtypeOf(value), data: toBase64(littleEndian(value.data)) }
  // (objects of named tensors, the optimizer's params and state, at any depth)
  if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]))
  return value
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}

/** A typed array of a tensor's little-endian bytes (which it may keep). */
function arrayOf (dtype: DType, bytes: Uint8Array): TypedArray {
  const size = dtype === 'float64' ? 8 : dtype === 'float32' ? 4 : 2
  const own = bytes.byteOffset % size === 0 ? bytes : bytes.slice()
  const { buffer, byteOffset } = own
  const count = own.byteLength / size
  switch (dtype) {
    case 'float64': return littleEndian(new Float64Array(buffer, byteOffset, count))
    case 'float32': return littleEndian(new Float32Array(buffer, byteOffset, count))
    case 'float16':
    case 'bfloat16': return littleEndian(new Uint16Array(buffer, byteOffset, count))
    default: throw new Error(`the service sent a tensor of dtype ${JSON.stringify(dtype)}`)
  }
}

/** Every result tensor of a reply (at any depth: `grads`) as a typed tensor. */
function fromWire (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromWire)
  if (typeof value !== 'object' || value === null) return value
  const v = value as Record<string, unknown>
  if (Array.isArray(v.shape) && typeof v.dtype === 'string' && typeof v.data === 'string') {
    return { shape: v.shape, dtype: v.dtype, data: arrayOf(v.dtype as DType, fromBase64(v.data)) }
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromWire(x)]))
}

const FILE_DTYPES: Record<DType, FileDType> = { float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16' }
const DTYPES: Partial<Record<FileDType, DType>> = { F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16' }

/**
 * The safetensors file of a request whose typed tensors hold `minBytes` or more in all, when every
 * tensor field holds a typed tensor: the tensors by field name (einsum's operands as `operands.0`,
 * …), every other field in `__metadata__` (a string as itself unless it reads as JSON, others as JSON).
 */
function fileOf (args: object, minBytes: number): Uint8Array<ArrayBuffer> | undefined {
  const tensors: Array<[string, Tensor]> = []
  const metadata: Record<string, string> = {}
  const fields = Object.entries(args)
  for (const [key, value] of fields) {
    if (value === undefined || key === 'encoding') continue
    if (TENSOR_FIELD.has(key)) {
      const items: unknown[] = key === 'operands' && Array.isArray(value) ? value : [value]
      if (!items.every(isTensor)) return undefined
      items.forEach((t, i) => tensors.push([key === 'operands' ? `${key}.${i}` : key, t]))
    } else if (TENSOR_MAPS.includes(key)) {
      if (!isPlainObject(value) || !Object.values(value).every(isTensor)) return undefined
      for (const [name, t] of Object.entries(value)) tensors.push([`${key}.${name}`, t as Tensor])
    } else if (holdsMaps(key) && isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) fields.push([`${key}.${k}`, v])
    } else if (holdsTensor(value)) {
      return undefined // (a typed tensor elsewhere, a graph's gradOutput: JSON)
    } else {
      metadata[key] = typeof value === 'string' && !readsAsJson(value) ? value : JSON.stringify(value)
    }
  }
  if (tensors.reduce((sum, [, t]) => sum + t.data.byteLength, 0) < minBytes) return undefined
  return writeSafetensors(tensors.map(([name, t]): [string, FileTensor] => {
    const data = littleEndian(t.data)
    return [name, { dtype: FILE_DTYPES[dtypeOf(t)], shape: t.shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }]
  }), metadata)
}

/** Whether a typed tensor is anywhere in a value. */
function holdsTensor (value: unknown): boolean {
  if (isTensor(value)) return true
  if (Array.isArray(value)) return value.some(holdsTensor)
  return isPlainObject(value) && Object.values(value).some(holdsTensor)
}

function readsAsJson (s: string): boolean {
  try {
    JSON.parse(s)
    return true
  } catch {
    return false
  }
}

function isFile (res: Response): boolean {
  return (res.headers.get('content-type') ?? '').startsWith('application/octet-stream')
}

/**
 * The reply a safetensors file stands for: `result`, `weights`, `grads.<name>`, `grads.operands.<i>`,
 * `params.<name>` as typed tensors in their fields, and `__metadata__`'s numbers (`state.step`).
 */
function fromFile (bytes: Uint8Array): Record<string, unknown> {
  const reply: Record<string, unknown> = {}
  const set = (path: string[], value: unknown): void => {
    let node = reply
    for (const key of path.slice(0, -1)) {
      if (!Object.hasOwn(node, key)) Object.defineProperty(node, key, { value: {}, enumerable: true, writable: true, configurable: true })
      node = node[key] as Record<string, unknown>
    }
    Object.defineProperty(node, path[path.length - 1], { value, enumerable: true, writable: true, configurable: true })
  }
  const file = readSafetensors(bytes)
  for (const [name, t] of file.tensors) {
    const dtype = DTYPES[t.dtype]
    if (dtype === undefined) throw new Error(`the service sent tensor ${name} of dtype ${t.dtype}`)
    // (a name under a map holds the user's name whole, dots and all)
    const map = REPLY_MAPS.filter(m => name.startsWith(`${m}.`)).sort((x, y) => y.length - x.length)[0]
    set(map === undefined ? name.split('.') : [...map.split('.'), name.slice(map.length + 1)], { shape: [...t.shape], dtype, data: arrayOf(dtype, t.bytes) })
  }
  for (const [key, value] of Object.entries(file.metadata)) set(key.split('.'), Number(value))
  return reply
}

/** einsum's gradients as a list, one per operand, `null` where not asked for (a file has no tensor for those). */
function withOperands (route: OperationRoute, args: object, reply: unknown): unknown {
  if (route !== '/v1/einsum/backward') return reply
  const grads = (reply as { grads?: { operands?: unknown } }).grads
  if (grads === undefined || Array.isArray(grads.operands)) return reply
  const given = (grads.operands ?? {}) as Record<string, unknown>
  const count = (args as { operands?: unknown[] }).operands?.length ?? 0
  grads.operands = Array.from({ length: count }, (_, i) => given[i] ?? null)
  return reply
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
