/**
 * The operation routes, one per entry of src/operations: schema (body, a 200 reply and the error
 * replies, all in the OpenAPI document), then decode -> shape checks -> one pool call -> encode.
 *
 * Two body formats, each a decoder into the value the body schema validates: JSON
 * (application/json) and safetensors files (application/octet-stream, src/tensor/safetensors.ts).
 * The reply's format follows Accept (406 when it allows neither); errors are always JSON.
 *
 * Bodies of WORKER_PARSE_MIN_BYTES or more are not parsed on the main thread: the route reads
 * them into one pooled buffer (./read-body.ts) and hands it to a worker, which parses, validates
 * (same schema, same Ajv options), decodes, computes and writes the reply over the body
 * (src/worker/request.ts). Parsing big tensors, numbers or base64 text, is much of a request's
 * work, and this way it uses every core. Smaller bodies are parsed and decoded here; from
 * SCAN_MIN_BYTES, numeric ones by the same WebAssembly row scanner as in the workers
 * (src/tensor/json.ts).
 */
import { Buffer } from 'node:buffer'
import type { Readable } from 'node:stream'
import { errorCodes, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchemaValidationError, type onRequestHookHandler } from 'fastify'
import { ApiError, bodyLooksLike, type ErrorCode, notAcceptableMessage } from '../../errors.js'
import { OPERATIONS, type OperationName, TENSOR_MAPS } from '../../operations/index.js'
import { bodySchema, type CommonBody, decoderFor, type Operation, type Prepared, replySpecOf } from '../../operations/spec.js'
import { OPERATION_SECURITY, operationReplies } from '../../openapi.js'
import { overloaded } from '../../plugins/pool.js'
import { compileBodyValidator } from '../../schemas/ajv.js'
import { formatSchemaErrors } from '../../schemas/validation.js'
import { buffers, MIN_POOLED_BYTES } from '../../tensor/buffers.js'
import { encodeReplyBody, replyBytesBound, type ReplyFormat, type ReplySpec } from '../../tensor/encode.js'
import { bareNonFinite, bareNonFiniteMessage, parseJsonBytes, SCAN_MIN_BYTES } from '../../tensor/json.js'
import { decodeSafetensorsBody, isFileBody } from '../../tensor/safetensors.js'
import type { BodyFormat } from '../../worker/request.js'
import { readBody } from './read-body.js'

/** A body left unparsed on the main thread, for a worker to parse: JSON, or a safetensors file. */
export class RawBody {
  constructor (readonly bytes: Uint8Array, readonly format: BodyFormat) {}
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The reply's format, negotiated from Accept when the request arrives. */
    replyFormat?: ReplyFormat
  }
}

export const JSON_TYPE = 'application/json'
export const BINARY_TYPE = 'application/octet-stream'

/** The quality an Accept header gives a media type (its most specific range); 1 without Accept. */
function quality (accept: string, type: string): number {
  let best = -1
  let q = 0
  for (const range of accept.split(',')) {
    const [media, ...params] = range.split(';')
    const m = media.trim().toLowerCase()
    const specificity = m === type ? 2 : m === type.slice(0, type.indexOf('/')) + '/*' ? 1 : m === '*/*' ? 0 : -1
    if (specificity <= best) continue
    best = specificity
    q = 1
    for (const p of params) {
      const [k, v] = p.split('=')
      if (k.trim().toLowerCase() === 'q') q = Number(v) >= 0 && Number(v) <= 1 ? Number(v) : 0
    }
  }
  return best < 0 ? 0 : q
}

/**
 * The reply's format: what Accept prefers, the request's own format on a tie (as with no Accept,
 * or *\/*), null when it allows neither (406).
 */
export function replyFormatOf (accept: string | undefined, binaryRequest: boolean): ReplyFormat | null {
  const own: ReplyFormat = binaryRequest ? 'safetensors' : 'json'
  if (accept === undefined || accept === '*/*' || accept === '') return own
  if (accept === JSON_TYPE) return 'json'
  const json = quality(accept, JSON_TYPE)
  const binary = quality(accept, BINARY_TYPE)
  if (json === 0 && binary === 0) return null
  return json === binary ? own : json > binary ? 'json' : 'safetensors'
}

/**
 * Whether the bulk of a body below WORKER_PARSE_MIN_BYTES is numbers, for the WebAssembly row
 * scanner, rather than the text of a long string (a base64 tensor), which JSON.parse copies at
 * memory speed: 256 bytes from the body (at a quarter, half and three quarters; two of the three)
 * hold a comma or a quote. (Performance only: both paths give the same answers.)
 */
function mostlyNumbers (body: Buffer): boolean {
  // (three samples, at a quarter, half and three quarters: one may fall where two base64 strings meet)
  let numeric = 0
  for (const at of [body.length >> 2, body.length >> 1, (3 * body.length) >> 2]) {
    const sample = body.subarray(at, at + 256)
    if (sample.includes(0x2c) || sample.includes(0x22)) numeric++
  }
  return numeric >= 2
}

/** Fastify's error for a body that is not JSON; for a bare NaN or infinity, or a body that plainly is something else, one that says so. */
function invalidJson (bare: { token: string, at: number } | null, looks: string | null): FastifyError {
  const err = new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY()
  if (bare !== null) err.message = bareNonFiniteMessage(bare)
  else if (looks !== null) err.message = `Body is not valid JSON: ${looks}`
  return err
}

/** The error Fastify's validator raises for a body that fails its schema (wrapValidationError). */
function validationError (errors: Parameters<typeof formatSchemaErrors>[0]): FastifyError {
  return Object.assign(new Error(formatSchemaErrors(errors, 'body')), {
    statusCode: 400,
    code: 'FST_ERR_VALIDATION',
    validation: errors,
    validationContext: 'body'
  }) as unknown as FastifyError
}

export default async function operationRoutes (app: FastifyInstance): Promise<void> {
  const { config } = app
  // (encapsulated: this parser and this validator compiler apply to the operation routes only)
  app.decorateRequest('replyFormat', undefined)
  const parseJson = app.getDefaultJsonParser('error', 'error')
  /**
   * A parser over the body read into a buffer of the pool (./read-body.ts). A body parsed here goes
   * back to the pool once parsed (what was parsed from it holds copies); a RawBody's buffer moves
   * to a worker and comes back with the answer.
   */
  const fromPool = (parse: (request: FastifyRequest, bytes: Buffer, done: (err: Error | null, value?: unknown) => void) => void) =>
    (request: FastifyRequest, payload: unknown, done: (err: Error | null, value?: unknown) => void): void => {
      readBody(request, payload as Readable, config.bodyLimitBytes, (err, bytes) => {
        if (err !== null || bytes === undefined) {
          done(err)
          return
        }
        parse(request, bytes, (err, value) => {
          if (!(value instanceof RawBody)) buffers.give(bytes.buffer as ArrayBuffer)
          done(err, value)
        })
      })
    }
  app.addContentTypeParser('application/json', fromPool((request, bytes, done) => {
    // large bodies, of numbers or of base64 text, are parsed in a worker: a body of megabytes is
    // a string of megabytes, which V8 maps, faults in and later collects on the parsing thread
    // (512² base64 matmuls: 46 req/s parsed in the workers, 36 on the main thread, in one sitting)
    if (config.workerParseMinBytes > 0 && bytes.length >= config.workerParseMinBytes) {
      done(null, new RawBody(bytes, 'json'))
      return
    }
    if (bytes.length >= SCAN_MIN_BYTES && mostlyNumbers(bytes)) {
      // the rows of numbers converted in WebAssembly: the value (and the failures) of Fastify's parser
      let value: unknown
      try {
        value = parseJsonBytes(bytes)
      } catch {
        done(invalidJson(bareNonFinite(bytes), bodyLooksLike(bytes, 'json')), undefined)
        return
      }
      done(null, value)
      return
    }
    parseJson(request, bytes as unknown as string, (err, value) => { // (it takes a Buffer as well)
      done((err as FastifyError | null)?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? invalidJson(bareNonFinite(bytes), bodyLooksLike(bytes, 'json')) : err, value)
    })
  }))
  // the replies are JSON the encoder wrote (src/tensor/encode.ts), or errors of four fields: the
  // response schemas are the document's, and the components they share are not compiled
  app.setSerializerCompiler(() => (data) => JSON.stringify(data))
  // Fastify's validator with the service's Ajv options, letting raw bodies through to the worker
  app.setValidatorCompiler(({ schema }) => {
    const validate = compileBodyValidator(schema as Parameters<typeof compileBodyValidator>[0])
    const check = (data: unknown): boolean => {
      if (data instanceof RawBody) return true
      const ok = validate(data)
      check.errors = validate.errors as FastifySchemaValidationError[] | null | undefined
      return ok
    }
    check.errors = null as FastifySchemaValidationError[] | null | undefined
    return check
  })

  // safetensors files: read here, or from WORKER_PARSE_MIN_BYTES in a worker
  app.addContentTypeParser(BINARY_TYPE, fromPool((request, bytes, done) => {
    if (config.workerParseMinBytes > 0 && bytes.length >= config.workerParseMinBytes) {
      done(null, new RawBody(bytes, 'safetensors'))
      return
    }
    let value: unknown
    try {
      // (copied out of the body, which goes back to the pool)
      value = decodeSafetensorsBody(bytes, app.limits, false, TENSOR_MAPS)
    } catch (err) {
      done(err as FastifyError, undefined)
      return
    }
    done(null, value)
  }))

  /**
   * Computes a prepared task on the pool (or inline) and gives the reply's body. A worker encodes
   * the reply (the encoding shares the pool's cores) into a buffer lent from this thread's pool,
   * sized from the shapes, and gives back the operands' buffers with it; an inline computation
   * gives its result, encoded here.
   */
  async function computePrepared (name: OperationName, prepared: Prepared, replySpec: ReplySpec, reply: FastifyReply): Promise<Buffer | string> {
    // (added to the task in place: spreading the task into a new object took 0.7 µs)
    const task: Prepared['task'] & { reply?: ReplySpec, into?: ArrayBuffer, lent?: ArrayBuffer[] } = prepared.task
    task.reply = replySpec
    task.lent = prepared.transfer
    const bound = replyBytesBound(prepared.task.dtype, replySpec)
    const into = bound >= MIN_POOLED_BYTES ? buffers.take(bound) : undefined
    task.into = into
    const result = await app.compute(name, task, into === undefined ? prepared.transfer : [...prepared.transfer, into], reply)
    if (result instanceof Float32Array || result instanceof Float64Array) { // computed inline: nothing moved
      buffers.give(into)
      const body = encodeReplyBody(result, prepared.task.dtype, replySpec)
      return typeof body === 'string' ? body : pooledReply(body, reply)
    }
    const answer = result as { bytes: Uint8Array, lent: ArrayBuffer[] }
    for (const b of answer.lent) buffers.give(b)
    return pooledReply(answer.bytes, reply)
  }

  /** The reply's bytes as a Buffer over their pooled memory, given back once the socket has written them. */
  function pooledReply (bytes: Uint8Array, reply: FastifyReply): Buffer {
    if (bytes.buffer.byteLength >= MIN_POOLED_BYTES) reply.raw.once('finish', () => buffers.give(bytes.buffer as ArrayBuffer))
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  /** The size of each operation's last reply from a worker, by reply format: the buffer lent for its next. */
  const lastReplyBytes = new Map<ReplyFormat, Map<string, number>>([['json', new Map()], ['safetensors', new Map()]])

  const beforeBody: onRequestHookHandler[] = []
  if (app.rateLimitHook !== undefined) beforeBody.push(app.rateLimitHook)
  if (app.authEnabled) beforeBody.push(app.requireApiKey)

  for (const [name, spec] of Object.entries(OPERATIONS) as Array<[OperationName, Operation]>) {
    app.post(`/v1/${spec.path ?? spec.name}`, {
      schema: {
        tags: ['operations'],
        operationId: spec.name,
        summary: spec.summary,
        description: spec.description,
        body: bodySchema(spec),
        security: OPERATION_SECURITY,
        response: operationReplies(spec)
      },
      // before the body is even parsed: the rate limit (RATE_LIMIT_MAX), the API key (API_KEYS),
      // and at capacity the refusal (under overload, refusing must stay cheaper than the work;
      // the admission in app.compute still decides for admitted requests)
      onRequest: [...beforeBody, (request, reply, done) => {
        if (app.poolFull()) {
          app.metrics.shed.inc({ reason: 'queue' })
          done(overloaded(config))
          return
        }
        const type = request.headers['content-type']
        const format = replyFormatOf(request.headers.accept, type !== undefined && type.startsWith(BINARY_TYPE))
        if (format === null) {
          done(new ApiError('NOT_ACCEPTABLE', notAcceptableMessage(String(request.headers.accept))))
          return
        }
        request.replyFormat = format
        done()
      }]
    }, async (request, reply) => {
      const format = request.replyFormat ?? 'json'
      reply.type(format === 'json' ? 'application/json; charset=utf-8' : BINARY_TYPE)
      if (request.body instanceof RawBody) {
        // a reply larger than the body (conv2d's, often) is written into a buffer lent for it, sized
        // as this operation's last reply in this format, rather than into a fresh one in the worker
        const bodyBytes = request.body.bytes
        const seen = lastReplyBytes.get(format)?.get(spec.name)
        const outcome = await app.computeRequest({
          op: name,
          body: bodyBytes,
          format: request.body.format,
          reply: format,
          limits: app.limits,
          splitMinFlops: config.splitMinFlops,
          into: seen !== undefined && seen > bodyBytes.buffer.byteLength ? buffers.take(seen) : undefined
        }, reply)
        for (const b of outcome.lent ?? []) buffers.give(b)
        switch (outcome.kind) {
          case 'reply':
            request.shapes = outcome.shapes
            lastReplyBytes.get(format)?.set(spec.name, outcome.bytes.byteLength)
            return pooledReply(outcome.bytes, reply)
          case 'prepared':
            request.shapes = outcome.shapes
            return await computePrepared(name, outcome.prepared, outcome.reply, reply)
          case 'invalid-json':
            throw invalidJson(outcome.bare, outcome.looks)
          case 'schema':
            throw validationError(outcome.errors)
          case 'api':
            request.shapes = outcome.shapes
            throw new ApiError(outcome.code as ErrorCode, outcome.message)
        }
      }
      const body = request.body as CommonBody
      const shapes: Record<string, number[]> = {}
      request.shapes = shapes
      const prepared = spec.prepare(body, decoderFor(app.limits, shapes, isFileBody(body)))
      return await computePrepared(name, prepared, replySpecOf(body, prepared, format, app.limits), reply)
    })
  }
}
