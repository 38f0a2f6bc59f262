/**
 * JSON.parse for request bodies of big tensors, giving exactly the value JSON.parse gives (with
 * Fastify's prototype-poisoning checks, through secure-json-parse) and throwing where it throws.
 *
 * Parsing is mostly the conversion of numbers. The rows of numbers (arrays of 16 or more JSON
 * numbers and nothing else, outside strings) are found and converted by the WebAssembly scanner
 * (asm/parse.ts, Eisel-Lemire: the correctly rounded float64, as JSON.parse). Each row is replaced in the
 * text by a placeholder array holding a per-thread random token and the row's index, which is a
 * valid JSON value exactly where the row was one; JSON.parse reads the rest, and the placeholders
 * are then swapped for arrays of the rows' numbers. The result is the same value in every case.
 */
import { Buffer } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import sjson from 'secure-json-parse'
import { begin, end } from '../kernels/wasm/runtime.js'
import { MAX_BASE64_LENGTH } from '../schemas/tensor.js'
import { buffers } from './buffers.js'

// Fastify's own JSON parser settings: __proto__ and constructor.prototype keys are errors
const PARSE_OPTIONS = { protoAction: 'error', constructorAction: 'error' } as const

/** Below this, JSON.parse alone is as fast (10 KB: 62 µs against 70; 23 KB: 155 against 76). */
export const SCAN_MIN_BYTES = 16384
/** A row holds at least 16 numbers of at least 2 bytes with their commas. */
const MIN_ROW_BYTES = 32
/** Most values one scan converts (the rest of the text is left to JSON.parse). */
const MAX_SCAN_VALUES = 1 << 23

const TOKEN = '\u0000' + randomBytes(16).toString('hex')
const TOKEN_JSON = JSON.stringify(TOKEN)

/** The base64 strings decoded by the scan are those of this many characters and up (and MAX_BASE64_LENGTH at most). */
export const SPAN_MIN_CHARS = 4096
const SPAN_PREFIX = TOKEN + ':'

/** The bytes of the base64 spans of the last parse with `spans`, by index, until a decoder takes them. */
let spanBytes: Array<Uint8Array | null> = []

/**
 * Parses JSON text given as UTF-8 bytes; the value JSON.parse gives, or its throw. With `spans`,
 * the value of every "data" key that is strict base64 of SPAN_MIN_CHARS characters or more is
 * decoded from the bytes by the scan (no string of megabytes is made) and left in the value as a
 * placeholder string, which takeSpan turns into its bytes. (Only for a parse whose value is decoded
 * before the thread does anything else, as in a worker: the next parse drops the spans.)
 */
export function parseJsonBytes (bytes: Uint8Array, options: { spans?: boolean } = {}): unknown {
  spanBytes = []
  const scanned = bytes.length < SCAN_MIN_BYTES ? null : scan(bytes, options.spans === true)
  if (scanned === null) return sjson.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'), PARSE_OPTIONS)
  spanBytes = scanned.spans
  const value = sjson.parse(scanned.text, PARSE_OPTIONS)
  return scanned.rows.length === 0 ? value : restoreRows(value, scanned.rows)
}

/**
 * The bytes of a base64 span of the last parse, given its placeholder (a buffer of this thread's
 * pool, taken once); undefined for any other string.
 */
export function takeSpan (s: string): Uint8Array | undefined {
  if (!s.startsWith(SPAN_PREFIX)) return undefined
  const k = Number(s.slice(SPAN_PREFIX.length))
  const bytes = spanBytes[k] ?? undefined
  if (bytes !== undefined) spanBytes[k] = null
  return bytes
}

/**
 * The text with its rows of numbers (and, with `spans`, its base64 spans) replaced by
 * placeholders, the rows and the spans' bytes; null if it has neither.
 */
function scan (bytes: Uint8Array, withSpans: boolean): { text: string, rows: Array<number[]>, spans: Uint8Array[] } | null {
  try {
    const ws = begin()
    const len = bytes.length
    const maxValues = Math.min(MAX_SCAN_VALUES, Math.floor(len / 2) + 1)
    const maxRows = Math.floor(len / MIN_ROW_BYTES) + 1
    const maxSpans = withSpans ? Math.min(4096, Math.floor(len / SPAN_MIN_CHARS) + 1) : 0
    // (reserved for the most the text could hold; what the scan writes is recorded after it)
    const text = ws.alloc(len, 1)
    const spanTable = ws.alloc(maxSpans * 4, 4)
    const spanOut = ws.alloc(withSpans ? Math.floor(len * 3 / 4) + 3 : 0, 1)
    const table = ws.alloc(maxRows * 4, 4)
    const values = ws.alloc(maxValues, 8)
    ws.commit(text + len)
    ws.u8(text, len).set(bytes)
    const found = ws.x.scanRows(text, len, values, maxValues, table, maxRows, spanOut, spanTable, maxSpans, SPAN_MIN_CHARS, MAX_BASE64_LENGTH)
    const spanCount = maxSpans > 0 ? ws.x.spansFound() : 0
    const t = ws.i32(table, found * 4)
    const valueCount = found === 0 ? 0 : t[(found - 1) * 4 + 2] + t[(found - 1) * 4 + 3]
    const st = ws.i32(spanTable, spanCount * 4)
    if (spanCount > 0) ws.used(spanOut + st[(spanCount - 1) * 4 + 2] + st[(spanCount - 1) * 4 + 3])
    if (found > 0) ws.used(values + valueCount * 8)
    if (found === 0 && spanCount === 0) return null
    const v = ws.f64(values, valueCount)
    const rows = new Array<number[]>(found)
    const spans = new Array<Uint8Array>(spanCount)
    const pieces: Buffer[] = []
    let at = 0
    // the rows and the spans, each in text order, merged
    let r = 0
    let k = 0
    while (r < found || k < spanCount) {
      if (k >= spanCount || (r < found && t[r * 4] < st[k * 4])) {
        const first = t[r * 4 + 2]
        const count = t[r * 4 + 3]
        const row = new Array<number>(count)
        for (let j = 0; j < count; j++) row[j] = v[first + j]
        rows[r] = row
        pieces.push(Buffer.from(bytes.buffer, bytes.byteOffset + at, t[r * 4] - at), Buffer.from(`[${TOKEN_JSON},${r}]`))
        at = t[r * 4 + 1]
        r++
      } else {
        const n = st[k * 4 + 3]
        const out = new Uint8Array(buffers.take(n), 0, n)
        out.set(ws.u8(spanOut + st[k * 4 + 2], n))
        spans[k] = out
        pieces.push(Buffer.from(bytes.buffer, bytes.byteOffset + at, st[k * 4] - at), Buffer.from(JSON.stringify(SPAN_PREFIX + String(k))))
        at = st[k * 4 + 1]
        k++
      }
    }
    pieces.push(Buffer.from(bytes.buffer, bytes.byteOffset + at, len - at))
    return { text: Buffer.concat(pieces).toString('utf8'), rows, spans }
  } catch {
    return null // (the module could not take it, e.g. out of memory): JSON.parse reads it all
  } finally {
    end()
  }
}

function rowOf (x: unknown, rows: Array<number[]>): number[] | undefined {
  if (!Array.isArray(x) || x.length !== 2 || x[0] !== TOKEN) return undefined
  return rows[x[1] as number]
}

/** Swaps every placeholder for its row; iterative, since JSON may nest deeper than the stack. */
function restoreRows (value: unknown, rows: Array<number[]>): unknown {
  const top = rowOf(value, rows)
  if (top !== undefined) return top
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const node = stack.pop()
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const x = node[i]
        if (typeof x !== 'object' || x === null) continue
        const row = rowOf(x, rows)
        if (row !== undefined) node[i] = row
        else stack.push(x)
      }
    } else if (typeof node === 'object' && node !== null) {
      const obj = node as Record<string, unknown>
      for (const key of Object.keys(obj)) {
        const x = obj[key]
        if (typeof x !== 'object' || x === null) continue
        const row = rowOf(x, rows)
        if (row !== undefined) obj[key] = row
        else stack.push(x)
      }
    }
  }
  return value
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const NON_FINITE_TOKENS = ['-Infinity', 'Infinity', 'NaN'].map(t => ({ token: t, bytes: Buffer.from(t) }))

/**
 * The first bare NaN, Infinity or -Infinity outside the strings of a JSON text (as Python's
 * json.dumps writes them), with its byte offset; null if there is none. Only called on a text that
 * failed to parse: outside strings these letters are never part of valid JSON.
 */
export function bareNonFinite (bytes: Uint8Array): { token: string, at: number } | null {
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
      continue
    }
    if (c === QUOTE) {
      inString = true
      continue
    }
    for (const { token, bytes: t } of NON_FINITE_TOKENS) {
      if (c === t[0] && bytes.length - i >= t.length && t.every((b, j) => bytes[i + j] === b)) return { token, at: i }
    }
  }
  return null
}

/** The message of a body that is not JSON because of a bare non-finite number: what to send instead. */
export function bareNonFiniteMessage ({ token, at }: { token: string, at: number }): string {
  return `Body is not valid JSON: ${token} at byte ${at} is not a JSON value; send it as the string "${token}" ` +
    '(JSON has no NaN or infinities: the strings "NaN", "Infinity" and "-Infinity" stand for them)'
}
