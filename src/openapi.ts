/**
 * The OpenAPI document: its header, the replies of the operation routes with their examples, and
 * what turns the routes' TypeBox schemas into named components (every schema with an `$id`:
 * Tensor and its forms, ResultTensor, Error, each operation's body and reply).
 */
import { type TSchema, Type } from 'typebox'
import { defaultConfig } from './config.js'
import { errorBody, internalMessage, isApiError, type ErrorBody, notAcceptableMessage, unsupportedMediaMessage } from './errors.js'
import { bodySchema, decoderFor, type Operation } from './operations/spec.js'
import { KEY_REQUIRED } from './plugins/auth.js'
import { overloaded, timeout } from './plugins/pool.js'
import { rateLimited } from './plugins/rate-limit.js'
import { compileBodyValidator } from './schemas/ajv.js'
import { ErrorSchema, TensorSchema } from './schemas/tensor.js'

/** The OpenAPI document's header; the paths come from the routes' schemas. */
export const openapiInfo = {
  openapi: '3.0.3',
  info: {
    title: 'Tensor service',
    description: 'Tensor operations over HTTP with NumPy and PyTorch semantics: matmul, dot, linear, conv2d and attention. ' +
      'Tensors are nested arrays, {shape, data, dtype} objects with flat or nested data, or base64 little-endian bytes. ' +
      'The strings "NaN", "Infinity" and "-Infinity" stand for those values.',
    version: '1.0.0',
    contact: { name: 'Tensor service maintainers' },
    license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' }
  },
  // open unless the service is started with API keys: the operations state their own requirement
  security: [],
  servers: [{
    url: '/',
    description: 'Production or local: the instance serving this document (Swagger UI sends requests to it)',
    'x-internal': false
  }],
  tags: [
    { name: 'operations', description: 'Tensor operations' },
    { name: 'service', description: 'Health, readiness and the API document' }
  ],
  components: {
    securitySchemes: {
      bearerAuth: {
        type: 'http' as const,
        scheme: 'bearer',
        description: 'An API key as a bearer token: `Authorization: Bearer <key>`. Needed when the service is started with ' +
          'API_KEYS or API_KEYS_FILE; without them the operations are open and the header is ignored.'
      },
      apiKeyHeader: {
        type: 'apiKey' as const,
        in: 'header',
        name: 'x-api-key',
        description: 'The same API key in its own header: `x-api-key: <key>`.'
      }
    }
  }
}

/** The operations' security requirement: either form of the API key. */
export const OPERATION_SECURITY: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { apiKeyHeader: [] }]

/** Integer headers, bounded as every integer of the document is. */
const count = (description: string): Record<string, unknown> =>
  ({ type: 'integer', format: 'int32', minimum: 0, maximum: 2147483647, description })

/** The headers of every reply of an operation: CORS's when CORS_ORIGINS is set, the rate limit's when RATE_LIMIT_MAX is. */
export const REPLY_HEADERS = {
  'Access-Control-Allow-Origin': {
    type: 'string',
    maxLength: 2048,
    description: 'The request\'s origin, or *, when CORS_ORIGINS is set and allows it'
  },
  'RateLimit-Limit': count('Requests allowed per window (only when RATE_LIMIT_MAX is set)'),
  'RateLimit-Remaining': count('Requests left in the current window (only when RATE_LIMIT_MAX is set)'),
  'RateLimit-Reset': count('Seconds until the window resets (only when RATE_LIMIT_MAX is set)')
}

export const RETRY_AFTER_HEADER = { 'Retry-After': count('Seconds to wait before retrying') }

export const WWW_AUTHENTICATE_HEADER = {
  'WWW-Authenticate': { type: 'string', maxLength: 200, pattern: '^Bearer ', description: 'The scheme to authenticate with: Bearer' }
}

/** A safetensors file, as the request or the 200 reply of an operation. */
const SAFETENSORS_FILE = {
  type: 'string',
  format: 'binary',
  maxLength: 2147483647,
  description: 'A safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, ' +
    'a JSON header {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}}, then the tensors\' little-endian bytes. ' +
    'Request: the tensor fields are the file\'s tensors by name (einsum operands as operands.0, operands.1, …), dtypes F64, F32, F16, BF16 ' +
    '(BOOL for an attention mask); every other field is a __metadata__ entry, read as JSON when it parses as JSON, else as the ' +
    'string. Reply (Accept: application/octet-stream, or a file request without Accept): the JSON reply\'s tensors by field ' +
    'name (result, weights, grads.<name>).'
}

/**
 * The document with the binary form of every operation: safetensors files as the request body
 * (application/octet-stream) and as the 200 reply, beside JSON (the routes' schemas describe the
 * JSON form, which a file meets once decoded).
 */
export function withBinaryBodies<T> (doc: T): T {
  const paths = (doc as { paths?: Record<string, Record<string, any>> }).paths ?? {}
  for (const methods of Object.values(paths)) {
    const op = methods.post
    if (op === undefined || !(op.tags as string[] | undefined)?.includes('operations')) continue
    if (op.requestBody?.content !== undefined) op.requestBody.content['application/octet-stream'] = { schema: SAFETENSORS_FILE }
    const ok = op.responses?.['200']
    if (ok?.content !== undefined) ok.content['application/octet-stream'] = { schema: SAFETENSORS_FILE }
  }
  return doc
}

const { maxElements, maxFlops } = defaultConfig()
/** The limits the examples are computed with: the defaults. */
const EXAMPLE_LIMITS = { maxElements, maxFlops }

/**
 * The error the service gives for a body that passes the schema: its prepare step's, rendered as
 * the service renders it (undefined for a body the schema refuses or the operation accepts).
 */
function prepareError (spec: Operation, body: object): ErrorBody | undefined {
  if (!compileBodyValidator(bodySchema(spec))(body)) return undefined
  try {
    spec.prepare(body, decoderFor(EXAMPLE_LIMITS, {}))
  } catch (err) {
    if (isApiError(err)) return errorBody(err.statusCode, err.code, err.message)
    throw err
  }
  return undefined
}

/** The example body with its first tensor operand (the first of a list of them, for einsum) replaced. */
function withFirstTensor (spec: Operation, tensor: unknown): object {
  const body: Record<string, unknown> = { ...spec.example }
  const properties = spec.body.properties as Record<string, { $id?: string, items?: { $id?: string }, patternProperties?: Record<string, { $id?: string }> }>
  const tensorId = (TensorSchema as { $id?: string }).$id
  for (const key of Object.keys(body)) {
    // (an object of named tensors, the optimizer's params: its first entry)
    const named = Object.values(properties[key]?.patternProperties ?? {})[0]
    if (named?.$id === tensorId && typeof body[key] === 'object' && body[key] !== null) {
      const first = Object.keys(body[key] as object)[0]
      body[key] = { ...(body[key] as object), [first]: tensor }
      return body
    }
    if (properties[key]?.$id === tensorId) {
      body[key] = tensor
      return body
    }
    if (properties[key]?.items?.$id === tensorId && Array.isArray(body[key])) {
      body[key] = [tensor, ...(body[key] as unknown[]).slice(1)]
      return body
    }
  }
  return body
}

/**
 * The bodies of an operation's error replies: each one the service's answer to a request (the
 * 400 and 413 ones computed here by the operation's own checks, with the default limits; the
 * others with the settings their description names). test/openapi.test.ts replays them.
 */
export function errorExamples (spec: Operation): Record<number, ErrorBody> {
  const { ragged, huge } = errorRequests(spec)
  const examples: Record<number, ErrorBody | undefined> = {
    400: prepareError(spec, ragged),
    413: prepareError(spec, huge),
    401: errorBody(401, 'UNAUTHORIZED', KEY_REQUIRED),
    406: errorBody(406, 'NOT_ACCEPTABLE', notAcceptableMessage('text/html')),
    415: errorBody(415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', unsupportedMediaMessage('text/plain')),
    429: fromApiError(rateLimited(100, 60000, '1 minute')),
    500: errorBody(500, 'INTERNAL', internalMessage('4f6c1d0e-8a55-4c1b-9d52-2b7c0e3f9a61')),
    503: fromApiError(overloaded({ workers: 4, maxQueue: 64 })),
    504: fromApiError(timeout({ taskTimeoutMs: 30000 }))
  }
  return Object.fromEntries(Object.entries(examples).filter(([, e]) => e !== undefined)) as Record<number, ErrorBody>
}

/** The requests of the 400 and 413 examples: the operation's example with its first tensor ragged, or too large. */
export function errorRequests (spec: Operation): { ragged: object, huge: object } {
  return {
    ragged: withFirstTensor(spec, [[1, 2], [3]]),
    huge: withFirstTensor(spec, { shape: [65536, 65536], dtype: 'float32', data: '' })
  }
}

function fromApiError (err: { statusCode: number, code: string, message: string }): ErrorBody {
  return errorBody(err.statusCode, err.code, err.message)
}

const ERROR_REPLIES: Record<number, { description: string, headers: Record<string, unknown> }> = {
  400: { headers: REPLY_HEADERS, description: 'Invalid JSON, a body that fails the schema, a malformed tensor or safetensors file (INVALID_TENSOR), operands that do not go together (SHAPE_MISMATCH), an option out of range (INVALID_ARGUMENT), or a compressed body that does not decompress (INVALID_ENCODING)' },
  401: { headers: { ...WWW_AUTHENTICATE_HEADER, ...REPLY_HEADERS }, description: 'No API key, or a wrong one (UNAUTHORIZED); only when the service is started with API_KEYS or API_KEYS_FILE' },
  406: { headers: REPLY_HEADERS, description: 'Accept allows neither application/json nor application/octet-stream (NOT_ACCEPTABLE)' },
  413: { headers: REPLY_HEADERS, description: 'Body (decompressed) over BODY_LIMIT_BYTES, or a tensor over MAX_ELEMENTS, work over MAX_FLOPS or a JSON reply over MAX_JSON_REPLY_BYTES (TOO_LARGE); refused before computing' },
  415: { headers: REPLY_HEADERS, description: 'The body is neither application/json nor application/octet-stream (a safetensors file), or its Content-Encoding is not gzip, deflate or br (UNSUPPORTED_ENCODING)' },
  429: { headers: { ...RETRY_AFTER_HEADER, ...REPLY_HEADERS }, description: 'Over RATE_LIMIT_MAX requests in RATE_LIMIT_WINDOW_MS from this API key, or from this address without keys (RATE_LIMITED); retry after the Retry-After header. The example: RATE_LIMIT_MAX=100' },
  500: { headers: REPLY_HEADERS, description: 'Internal error: the message carries only the request id' },
  503: { headers: { ...RETRY_AFTER_HEADER, ...REPLY_HEADERS }, description: 'The work queue is full (OVERLOADED); retry after the Retry-After header. The example: WORKERS=4' },
  504: { headers: REPLY_HEADERS, description: 'The computation ran past TASK_TIMEOUT_MS and was stopped (TIMEOUT)' }
}

/** A reply's schema: a component, with the reply's description, headers and example. */
function replyOf (component: TSchema, reply: { description: string, headers: Record<string, unknown> }, example: unknown): TSchema {
  return Type.Unsafe({ allOf: [component], ...reply, ...(example === undefined ? {} : { examples: [example] }) })
}

/** The replies of an operation route: its 200 with the reply to its example, and every error with a real one. */
export function operationReplies (spec: Operation): Record<number, TSchema> {
  const examples = errorExamples(spec)
  const replies: Record<number, TSchema> = {
    200: replyOf(spec.reply, { description: (spec.reply as { description?: string }).description ?? 'The result tensor', headers: REPLY_HEADERS }, spec.exampleReply)
  }
  for (const [status, reply] of Object.entries(ERROR_REPLIES)) {
    replies[Number(status)] = replyOf(ErrorSchema, reply, examples[Number(status)])
  }
  return replies
}

/**
 * The document's last step: a schema that is one component and nothing else (a route's body or
 * reply, written `allOf: [component]` so that the component is named) becomes a plain reference,
 * and the reply headers, the same on every operation, become components referenced by name.
 */
export function referenceComponents<T extends object> (doc: T): T {
  const headers: Record<string, unknown> = {}
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null) return
    for (const [key, value] of Object.entries(node)) {
      if (key === 'schema' && isComponentOnly(value)) (node as Record<string, unknown>)[key] = { $ref: value.allOf[0].$ref }
      else if (key === 'headers' && typeof value === 'object' && value !== null && 'description' in node) referenceHeaders(value as Record<string, unknown>, headers)
      else visit(value)
    }
  }
  visit((doc as { paths?: unknown }).paths)
  const components = (doc as { components?: Record<string, unknown> }).components
  if (components !== undefined && Object.keys(headers).length > 0) components.headers = headers
  return doc
}

/** Each header of a reply as a reference to the one component of its name (inline if its definition differs). */
function referenceHeaders (replyHeaders: Record<string, unknown>, components: Record<string, unknown>): void {
  for (const [name, header] of Object.entries(replyHeaders)) {
    const known = components[name]
    if (known !== undefined && JSON.stringify(known) !== JSON.stringify(header)) continue
    components[name] = header
    replyHeaders[name] = { $ref: `#/components/headers/${name}` }
  }
}

function isComponentOnly (schema: unknown): schema is { allOf: [{ $ref: string }] } {
  if (typeof schema !== 'object' || schema === null) return false
  const { allOf, ...rest } = schema as { allOf?: unknown }
  return Array.isArray(allOf) && allOf.length === 1 && typeof allOf[0]?.$ref === 'string' &&
    Object.keys(rest).every(k => k === 'description' || k === 'example')
}

/** @fastify/swagger's options: components named by their `$id`. */
export const swaggerOptions = {
  openapi: openapiInfo,
  refResolver: {
    buildLocalReference: (json: { $id?: unknown }, _base: unknown, _fragment: unknown, i: number): string =>
      typeof json.$id === 'string' ? json.$id : `def-${i}`
  },
  transformObject: ({ openapiObject }: { openapiObject: object }) => withBinaryBodies(referenceComponents(openapiObject))
}

/** The committed form of the document: stable two-space JSON with a final newline. */
export function openapiText (doc: unknown): string {
  return JSON.stringify(doc, null, 2) + '\n'
}

/**
 * Swagger UI's plugins (their source is written into the page, so each is self-contained): the
 * spec's download, and the examples of request and reply bodies laid out with an array of plain
 * values (a matrix row) on one line, rather than one number per line (Swagger UI's own
 * JSON.stringify(example, null, 2)): `[[1,2],[3,4]]` prints one row per line.
 */
export const swaggerUiPlugins = [
  function DownloadUrl (system: unknown): unknown {
    return (globalThis as unknown as { SwaggerUIBundle: { plugins: { DownloadUrl: (s: unknown) => unknown } } }).SwaggerUIBundle.plugins.DownloadUrl(system)
  },
  function CompactExamples (): unknown {
    // (methods, not named functions: a bundler may wrap a named function in a helper the page lacks)
    const layout = {
      json (value: unknown, indent: string): string {
        const inner = indent + '  '
        if (Array.isArray(value)) {
          if (value.every(v => v === null || typeof v !== 'object')) return '[' + value.map(v => JSON.stringify(v)).join(', ') + ']'
          return '[\n' + value.map(v => inner + this.json(v, inner)).join(',\n') + '\n' + indent + ']'
        }
        if (value !== null && typeof value === 'object') {
          const entries = Object.entries(value)
          if (entries.length === 0) return '{}'
          return '{\n' + entries.map(([k, v]) => inner + JSON.stringify(k) + ': ' + this.json(v, inner)).join(',\n') + '\n' + indent + '}'
        }
        return JSON.stringify(value)
      }
    }
    return {
      afterLoad (system: { fn: { getSampleSchema: (...args: any[]) => unknown } }) {
        const original = system.fn.getSampleSchema
        system.fn.getSampleSchema = (schema: unknown, contentType: unknown, config: unknown, example?: { toJS?: () => unknown }) => {
          if (example === undefined || example === null || !/json/.test(String(contentType))) return original(schema, contentType, config, example)
          return layout.json(typeof example.toJS === 'function' ? example.toJS() : example, '')
        }
      }
    }
  }
]
