/**
 * An answer given before the request's body was read (401, 406, 429, 503 at capacity, 413 from
 * Content-Length, 404, 415 …) waits until the rest of the body has arrived and been discarded,
 * as nginx's lingering close does. Otherwise the connection may close while the client is still
 * sending: a client that asked for `Connection: close` (Python's urllib, HTTP/1.0 clients, some
 * proxies) then gets a broken pipe instead of the status and its Retry-After.
 *
 * The wait is bounded, as nginx bounds its lingering close by time: LINGER_MS, and at most
 * `limitBytes` more bytes (four times BODY_LIMIT_BYTES: a 413's body is over the limit by
 * definition). Past either bound the answer goes out with `Connection: close`, and what is still
 * unread is dropped with the connection.
 */
import type { IncomingMessage } from 'node:http'

/** The longest an early answer waits for the rest of its request's body. */
export const LINGER_MS = 5000

/** Whether some of the request's body is still unread: it has one, and it has not ended. */
export function bodyPending (req: IncomingMessage): boolean {
  if (req.complete || req.readableEnded) return false
  const length = req.headers['content-length']
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined
}

/** Resolves once the request's body has been read to its end (true), or a bound was reached (false). */
export async function drainBody (req: IncomingMessage, limitBytes: number, ms = LINGER_MS): Promise<boolean> {
  if (!bodyPending(req)) return true
  return await new Promise<boolean>((resolve) => {
    let seen = 0
    const finish = (ended: boolean): void => {
      clearTimeout(timer)
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('close', onClose)
      req.off('error', onClose)
      resolve(ended)
    }
    const onData = (chunk: Buffer): void => {
      seen += chunk.length
      if (seen > limitBytes) finish(false)
    }
    const onEnd = (): void => finish(true)
    const onClose = (): void => finish(req.complete)
    const timer = setTimeout(() => finish(false), ms)
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('close', onClose)
    req.on('error', onClose)
    req.resume()
  })
}
