/**
 * HTTP compression, both ways, with node:zlib (its asynchronous calls run on libuv's threads, off
 * the event loop).
 * - Replies of COMPRESS_MIN_BYTES or more are compressed as Accept-Encoding asks: br, gzip or
 *   deflate (the first the client weighs highest, br before gzip before deflate on a tie), at fast
 *   levels: tensors' numbers compress little more at slow ones.
 * - Request bodies with Content-Encoding gzip, deflate or br are decompressed as they arrive;
 *   BODY_LIMIT_BYTES applies to the decompressed bytes too, and decompression stops as soon as
 *   they pass it (a zip bomb costs what its first BODY_LIMIT_BYTES cost). A body that does not
 *   decompress is a 400 INVALID_ENCODING; any other Content-Encoding a 415 UNSUPPORTED_ENCODING.
 */
import { Buffer } from 'node:buffer'
import { PassThrough, type Readable } from 'node:stream'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ApiError, bodyTooLarge } from '../errors.js'

type Coding = 'br' | 'gzip' | 'deflate'

const compressors: Record<Coding, (data: Buffer) => Promise<Buffer>> = {
  br: (data) => brotli(data, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 4,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length
    }
  }),
  gzip: (data) => gzip(data, { level: 1 }),
  deflate: (data) => deflate(data, { level: 1 })
}
const brotli = promisify(zlib.brotliCompress)
const gzip = promisify(zlib.gzip)
const deflate = promisify(zlib.deflate)

const PREFERENCE: Coding[] = ['br', 'gzip', 'deflate']

/** The coding Accept-Encoding weighs highest (q > 0), or null for none (identity). */
export function replyCoding (acceptEncoding: string | undefined): Coding | null {
  if (acceptEncoding === undefined || acceptEncoding === '') return null
  const q: Partial<Record<string, number>> = {}
  for (const item of acceptEncoding.split(',')) {
    const [name, ...params] = item.split(';')
    let weight = 1
    for (const p of params) {
      const [k, v] = p.split('=')
      if (k.trim().toLowerCase() === 'q') weight = Number(v) >= 0 && Number(v) <= 1 ? Number(v) : 0
    }
    q[name.trim().toLowerCase()] = weight
  }
  let best: Coding | null = null
  let bestQ = 0
  for (const c of PREFERENCE) {
    const w = q[c] ?? (c === 'gzip' ? q['x-gzip'] : undefined) ?? q['*'] ?? 0
    if (w > bestQ) {
      best = c
      bestQ = w
    }
  }
  return best
}

/** The decompressor of a Content-Encoding; undefined for identity; null for one not supported. */
function decompressor (encoding: string): (() => zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress) | undefined | null {
  switch (encoding.trim().toLowerCase()) {
    case '':
    case 'identity': return undefined
    case 'gzip':
    case 'x-gzip': return () => zlib.createGunzip()
    case 'deflate': return () => zlib.createInflate()
    case 'br': return () => zlib.createBrotliDecompress()
    default: return null
  }
}

/**
 * The decompressed body as Fastify reads it: `receivedEncodedLength` counts the bytes received
 * (checked against Content-Length), and past `limit` decompressed bytes the work stops.
 */
function inflated (raw: Readable, make: () => zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress, encoding: string, limit: number): Readable {
  const inflate = make()
  const out = Object.assign(new PassThrough(), { receivedEncodedLength: 0 })
  let produced = 0
  const stop = (err: Error): void => {
    raw.unpipe(inflate)
    inflate.destroy()
    out.destroy(err)
  }
  raw.on('data', (chunk: Buffer) => { out.receivedEncodedLength += chunk.length })
  raw.on('error', (err) => stop(err))
  inflate.on('data', (chunk: Buffer) => {
    produced += chunk.length
    if (produced > limit) {
      stop(bodyTooLarge(limit, 'the body, decompressed,'))
      return
    }
    if (!out.write(chunk)) {
      inflate.pause()
      out.once('drain', () => inflate.resume())
    }
  })
  inflate.on('end', () => out.end())
  inflate.on('error', (err: Error) => {
    stop(new ApiError('INVALID_ENCODING', `the body is not valid ${encoding}: ${err.message}`))
  })
  raw.pipe(inflate)
  return out
}

async function compressPlugin (app: FastifyInstance): Promise<void> {
  const { bodyLimitBytes, compressMinBytes } = app.config

  app.addHook('preParsing', (request, reply, payload, done) => {
    const encoding = request.headers['content-encoding']
    if (encoding === undefined) {
      done(null, payload)
      return
    }
    const make = decompressor(encoding)
    if (make === undefined) {
      done(null, payload)
      return
    }
    if (make === null) {
      done(new ApiError('UNSUPPORTED_ENCODING', `Content-Encoding ${JSON.stringify(encoding.slice(0, 100))} is not supported: send the body as it is, or in gzip, deflate or br`), payload)
      return
    }
    done(null, inflated(payload, make, encoding.trim().toLowerCase(), bodyLimitBytes))
  })

  if (compressMinBytes === 0) return
  app.addHook('onSend', (request, reply, payload, done) => {
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : Buffer.isBuffer(payload) ? payload.length : -1
    if (size < compressMinBytes || reply.hasHeader('content-encoding')) {
      done(null, payload)
      return
    }
    const vary = reply.getHeader('vary')
    reply.header('vary', vary === undefined ? 'accept-encoding' : `${String(vary)}, accept-encoding`)
    const coding = replyCoding(request.headers['accept-encoding'])
    if (coding === null) {
      done(null, payload)
      return
    }
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload as Buffer
    compressors[coding](data).then((compressed) => {
      reply.header('content-encoding', coding)
      reply.removeHeader('content-length')
      done(null, compressed)
    }, (err: Error) => done(err))
  })
}

export default fp(compressPlugin, { name: 'compress' })
