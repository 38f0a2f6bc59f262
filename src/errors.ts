/**
 * The error codes of the public contract, each with its HTTP status.
 * Pure: kernels' shape checks throw these, the app's error handler renders them.
 */
export type ErrorCode =
  | 'INVALID_TENSOR'
  | 'SHAPE_MISMATCH'
  | 'INVALID_ARGUMENT'
  | 'TOO_LARGE'
  | 'NOT_FOUND'
  /** The Accept header allows neither JSON nor safetensors. */
  | 'NOT_ACCEPTABLE'
  /** A Content-Encoding the service does not decode. */
  | 'UNSUPPORTED_ENCODING'
  /** A compressed body that does not decompress. */
  | 'INVALID_ENCODING'
  | 'UNAUTHORIZED'
  | 'RATE_LIMITED'
  | 'OVERLOADED'
  | 'TIMEOUT'
  | 'INTERNAL'
  /** The client closed its connection before its answer; nobody receives this (nginx's 499). */
  | 'CANCELLED'

export const STATUS: Record<ErrorCode, number> = {
  INVALID_TENSOR: 400,
  SHAPE_MISMATCH: 400,
  INVALID_ARGUMENT: 400,
  TOO_LARGE: 413,
  NOT_FOUND: 404,
  NOT_ACCEPTABLE: 406,
  UNSUPPORTED_ENCODING: 415,
  INVALID_ENCODING: 400,
  UNAUTHORIZED: 401,
  RATE_LIMITED: 429,
  OVERLOADED: 503,
  TIMEOUT: 504,
  INTERNAL: 500,
  CANCELLED: 499
}

export const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

/** The JSON body of every error reply. */
export interface ErrorBody { statusCode: number, code: string, error: string, message: string }

export function errorBody (statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_TEXT[statusCode] ?? 'Error', message }
}

/** The message of a 415: the body's type, and what to send instead. */
export const unsupportedMediaMessage = (contentType: string): string =>
  `unsupported content-type ${JSON.stringify(contentType)}: send the body as application/json, or a safetensors file as application/octet-stream`

/** The message of a 406: the Accept header, and the formats the service writes. */
export const notAcceptableMessage = (accept: string): string =>
  `Accept ${JSON.stringify(accept.slice(0, 100))} allows neither application/json nor application/octet-stream (safetensors)`

/** The message of an internal error: the request id alone. */
export const internalMessage = (requestId: string): string => `internal error (request id ${requestId})`

/** 413 for a body over BODY_LIMIT_BYTES, as Fastify's error, with the limit and the setting named. */
export function bodyTooLarge (limit: number, what = 'the body'): Error & { statusCode: number, code: string } {
  return Object.assign(new Error(`${what} is over the limit of ${limit} bytes (BODY_LIMIT_BYTES)`), {
    statusCode: 413,
    code: 'FST_ERR_CTP_BODY_TOO_LARGE'
  })
}

/**
 * What a body that failed to parse looks like instead, when it plainly is something else: gzip
 * sent without Content-Encoding, JSON sent as a file, a file sent as JSON. null when nothing says.
 */
export function bodyLooksLike (bytes: Uint8Array, sentAs: 'json' | 'safetensors'): string | null {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    return 'the body looks gzip-compressed (it starts with the bytes 1f 8b): send it with Content-Encoding: gzip, or uncompressed'
  }
  let i = 0
  while (i < bytes.length && i < 64 && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++
  if (sentAs === 'safetensors' && (bytes[i] === 0x7b || bytes[i] === 0x5b)) {
    return 'the body looks like JSON, but was sent as application/octet-stream (a safetensors file): send JSON with Content-Type: application/json'
  }
  if (sentAs === 'json' && bytes.length >= 9 && bytes[8] === 0x7b && bytes[6] === 0 && bytes[7] === 0) {
    return 'the body looks like a safetensors file (an 8-byte header length, then "{"), but was sent as application/json: send files with Content-Type: application/octet-stream'
  }
  return null
}

export class ApiError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number

  constructor (code: ErrorCode, message: string) {
    super(message)
    this.name = 'ApiError'
    this.code = code
    this.statusCode = STATUS[code]
  }
}

export const invalidTensor = (message: string): ApiError => new ApiError('INVALID_TENSOR', message)
export const shapeMismatch = (message: string): ApiError => new ApiError('SHAPE_MISMATCH', message)
export const invalidArgument = (message: string): ApiError => new ApiError('INVALID_ARGUMENT', message)
export const tooLarge = (message: string): ApiError => new ApiError('TOO_LARGE', message)

/** True for an error thrown by this module's helpers (also after a structured clone, which keeps only fields). */
export function isApiError (err: unknown): err is ApiError {
  return err instanceof ApiError ||
    (typeof err === 'object' && err !== null && typeof (err as ApiError).code === 'string' &&
      (err as ApiError).code in STATUS && typeof (err as ApiError).message === 'string')
}
