/**
 * The operation routes, one per entry of src/operations: schema (body, a 200 reply and the error
 * replies, all in the OpenAPI document), then decode -> shape checks -> one pool call -> encode.
 *
 * Bodies of WORKER_PARSE_MIN_BYTES or more whose bulk is numbers are not parsed on the main
 * thread: the route hands the raw bytes to a worker, which parses, validates (same schema, same
 * Ajv options), decodes, computes and encodes (src/worker/request.ts). Parsing the numbers of big
 * tensors is much of a request's work, and this way it uses every core. Smaller bodies, and
 * base64 ones (cheap to parse), are parsed and decoded here; from SCAN_MIN_BYTES, numeric ones by the
 * same WebAssembly row scanner as in the workers (src/tensor/json.ts).
 */
import { Buffer } from 'node:buffer'
import { errorCodes, type FastifyError, type FastifyInstance, type FastifyReply, type FastifySchemaValidationError, type onRequestHookHandler } from 'fastify'
import { ApiError, type ErrorCode } from '../../errors.js'
import type { FloatArray } from '../../kernels/types.js'
import { OPERATIONS } from '../../operations/index.js'
import { bodySchema, type CommonBody, decoderFor, type Operation, type Prepared, replySpecOf } from '../../operations/spec.js'
import { OPERATION_SECURITY, operationReplies } from '../../openapi.js'
import { overloaded } from '../../plugins/pool.js'
import { compileBodyValidator } from '../../schemas/ajv.js'
import { formatSchemaErrors } from '../../schemas/validation.js'
import { encodeReply, type ReplySpec } from '../../tensor/encode.js'
import { bareNonFinite, bareNonFiniteMessage, parseJsonBytes, SCAN_MIN_BYTES } from '../../tensor/json.js'

/** A JSON body left unparsed on the main thread, for a worker to parse. */
export class RawJson {
  constructor (readonly bytes: Uint8Array) {}
}

/** The bytes in a buffer of their own, so that they can move to a worker. */
function ownBytes (body: Buffer): Uint8Array {
  if (body.byteOffset === 0 && body.buffer.byteLength === body.byteLength) return body
  return new Uint8Array(body)
}

/**
 * Whether the bulk of a body is numbers, which are costly to parse, rather than the text of a
 * long string (a base64 tensor), which JSON.parse copies at memory speed: 256 bytes from the
 * middle of the body hold a comma or a quote. Base64 bodies stay on the main thread, so the
 * workers keep their time for the kernels. (Performance only: both paths give the same answers.)
 */
function mostlyNumbers (body: Buffer): boolean {
  const mid = body.length >> 1
  const sample = body.subarray(mid, mid + 256)
  return sample.includes(0x2c) || sample.includes(0x22)
}

/** Fastify's error for a body that is not JSON; for a bare NaN or infinity, one that says what to send instead. */
function invalidJson (bare: { token: string, at: number } | null): FastifyError {
  const err = new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY()
  if (bare !== null) err.message = bareNonFiniteMessage(bare)
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
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer
    const large = config.workerParseMinBytes > 0 && bytes.length >= config.workerParseMinBytes
    if ((large || bytes.length >= SCAN_MIN_BYTES) && mostlyNumbers(bytes)) {
      if (large) {
        done(null, new RawJson(ownBytes(bytes)))
        return
      }
      // the rows of numbers converted in WebAssembly: the value (and the failures) of Fastify's parser
      let value: unknown
      try {
        value = parseJsonBytes(bytes)
      } catch {
        done(invalidJson(bareNonFinite(bytes)), undefined)
        return
      }
      done(null, value)
      return
    }
    parseJson(request, bytes as unknown as string, (err, value) => { // (it takes a Buffer as well)
      done((err as FastifyError | null)?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? invalidJson(bareNonFinite(bytes)) : err, value)
    })
  })
  // the replies are JSON the encoder wrote (src/tensor/encode.ts), or errors of four fields: the
  // response schemas are the document's, and the components they share are not compiled
  app.setSerializerCompiler(() => (data) => JSON.stringify(data))
  // Fastify's validator with the service's Ajv options, letting raw bodies through to the worker
  app.setValidatorCompiler(({ schema }) => {
    const validate = compileBodyValidator(schema as Parameters<typeof compileBodyValidator>[0])
    const check = (data: unknown): boolean => {
      if (data instanceof RawJson) return true
      const ok = validate(data)
      check.errors = validate.errors as FastifySchemaValidationError[] | null | undefined
      return ok
    }
    check.errors = null as FastifySchemaValidationError[] | null | undefined
    return check
  })

  /** Computes a prepared task on the pool (or inline) and gives the reply's JSON. */
  async function computePrepared (spec: Operation, prepared: Prepared, replySpec: ReplySpec, reply: FastifyReply): Promise<Buffer | string> {
    // a worker answers with the reply's JSON bytes (the encoding shares the pool's cores); inline
    // and split computations give the result buffer, encoded here
    // (the reply spec is added to the task in place: spreading the task into a new object took 0.7 µs)
    const task: Prepared['task'] & { reply?: ReplySpec } = prepared.task
    task.reply = replySpec
    const result = await app.compute(spec.name, task, prepared.transfer, reply)
    return result instanceof Uint8Array
      ? Buffer.from(result.buffer, result.byteOffset, result.byteLength)
      : encodeReply(result as FloatArray, prepared.task.dtype, replySpec)
  }

  const beforeBody: onRequestHookHandler[] = []
  if (app.rateLimitHook !== undefined) beforeBody.push(app.rateLimitHook)
  if (app.authEnabled) beforeBody.push(app.requireApiKey)

  for (const spec of Object.values(OPERATIONS) as Operation[]) {
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
        } else {
          done()
        }
      }]
    }, async (request, reply) => {
      reply.type('application/json; charset=utf-8')
      if (request.body instanceof RawJson) {
        const outcome = await app.computeRequest({
          op: spec.name,
          body: request.body.bytes,
          limits: app.limits,
          splitMinFlops: config.splitMinFlops
        }, reply)
        switch (outcome.kind) {
          case 'reply':
            request.shapes = outcome.shapes
            return Buffer.from(outcome.json.buffer, outcome.json.byteOffset, outcome.json.byteLength)
          case 'prepared':
            request.shapes = outcome.shapes
            return await computePrepared(spec, outcome.prepared, outcome.reply, reply)
          case 'invalid-json':
            throw invalidJson(outcome.bare)
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
      const prepared = spec.prepare(body, decoderFor(app.limits, shapes))
      return await computePrepared(spec, prepared, replySpecOf(body, prepared), reply)
    })
  }
}
