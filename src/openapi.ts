/** The OpenAPI document's header; the paths come from the routes' schemas. */
export const openapiInfo = {
  openapi: '3.0.3',
  info: {
    title: 'Tensor service',
    description: 'Tensor operations over HTTP with NumPy and PyTorch semantics: matmul, dot, linear, conv2d and attention. ' +
      'Tensors are nested arrays, {shape, data, dtype} objects with flat or nested data, or base64 little-endian bytes. ' +
      'The strings "NaN", "Infinity" and "-Infinity" stand for those values.',
    version: '1.0.0',
    contact: { name: 'Tensor service maintainers' }
  },
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

/** The committed form of the document: stable two-space JSON with a final newline. */
export function openapiText (doc: unknown): string {
  return JSON.stringify(doc, null, 2) + '\n'
}
