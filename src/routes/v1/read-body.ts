/**
 * A request body read into one buffer of this thread's pool (src/tensor/buffers.ts): sized by
 * Content-Length when the body arrives as sent, grown by doubling when its length is not known
 * (chunked, or inflated from Content-Encoding). Fastify's own reader collects the socket's chunks
 * and then concatenates them into a fresh buffer of the body's size; for a body of megabytes
 * that fresh buffer cost more than the product computed from it.
 *
 * The same rules as Fastify's reader: over the body limit (by Content-Length before reading, or
 * counted while reading, decoded or not) is 413 FST_ERR_CTP_BODY_TOO_LARGE, naming the limit; a body whose length
 * differs from its Content-Length is 400 FST_ERR_CTP_INVALID_CONTENT_LENGTH.
 */
import { Buffer } from 'node:buffer'
import type { Readable } from 'node:stream'
import { errorCodes, type FastifyRequest } from 'fastify'
import { bodyTooLarge } from '../../errors.js'
import { buffers } from '../../tensor/buffers.js'

type Payload = Readable & { receivedEncodedLength?: number }

export function readBody (request: FastifyRequest, payload: Payload, limit: number, done: (err: Error | null, body?: Buffer) => void): void {
  const declared = Number(request.headers['content-length'])
  const known = Number.isSafeInteger(declared) && declared >= 0
  if (known && declared > limit) {
    done(bodyTooLarge(limit, `the body (Content-Length ${declared})`))
    return
  }
  // a decompressed body may be larger than its Content-Length: then it grows as it comes
  const exact = known && (payload as unknown) === request.raw
  let buffer = buffers.take(exact ? declared : 64 * 1024)
  let view = new Uint8Array(buffer)
  let received = 0

  const stop = (): void => {
    payload.removeListener('data', onData)
    payload.removeListener('end', onEnd)
    payload.removeListener('error', onEnd)
  }

  function onData (chunk: Buffer | string): void {
    if (typeof chunk === 'string') chunk = Buffer.from(chunk)
    const next = received + chunk.length
    if (next > limit || (payload.receivedEncodedLength ?? 0) > limit) {
      stop()
      buffers.give(buffer)
      done(bodyTooLarge(limit))
      return
    }
    if (next > buffer.byteLength) {
      const larger = buffers.take(Math.min(Math.max(next, 2 * buffer.byteLength), limit))
      const grown = new Uint8Array(larger)
      grown.set(view.subarray(0, received))
      buffers.give(buffer)
      buffer = larger
      view = grown
    }
    view.set(chunk, received)
    received = next
  }

  function onEnd (err?: Error & { statusCode?: number }): void {
    stop()
    if (err != null) {
      buffers.give(buffer)
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400
      done(err)
      return
    }
    if (known && (payload.receivedEncodedLength || received) !== declared) {
      buffers.give(buffer)
      done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH())
      return
    }
    done(null, Buffer.from(buffer, 0, received))
  }

  payload.on('data', onData)
  payload.on('end', onEnd)
  payload.on('error', onEnd)
  payload.resume()
}
