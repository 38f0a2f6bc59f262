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

/** Parses JSON text given as UTF-8 bytes; the value JSON.parse gives, or its throw. */
export function parseJsonBytes (bytes: Uint8Array): unknown {
  const scanned = bytes.length < SCAN_MIN_BYTES ? null : scan(bytes)
  if (scanned === null) return sjson.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'), PARSE_OPTIONS)
  return restoreRows(sjson.parse(scanned.text, PARSE_OPTIONS), scanned.rows)
}

/** The text with its rows of numbers replaced by placeholders, and the rows; null if it has none. */
function scan (bytes: Uint8Array): { text: string, rows: Array<number[]> } | null {
  try {
    const ws = begin()
    const len = bytes.length
    const maxValues = Math.min(MAX_SCAN_VALUES, Math.floor(len / 2) + 1)
    const maxRows = Math.floor(len / MIN_ROW_BYTES) + 1
    const text = ws.alloc(len, 1)
    const values = ws.alloc(maxValues, 8)
    const table = ws.alloc(maxRows * 4, 4)
    ws.commit()
    ws.u8(text, len).set(bytes)
    const found = ws.x.scanRows(text, len, values, maxValues, table, maxRows)
    if (found === 0) return null
    const t = ws.i32(table, found * 4)
    const v = ws.f64(values, t[(found - 1) * 4 + 2] + t[(found - 1) * 4 + 3])
    const rows = new Array<number[]>(found)
    const pieces: Buffer[] = []
    let at = 0
    for (let r = 0; r < found; r++) {
      const start = t[r * 4]
      const first = t[r * 4 + 2]
      const count = t[r * 4 + 3]
      const row = new Array<number>(count)
      for (let k = 0; k < count; k++) row[k] = v[first + k]
      rows[r] = row
      pieces.push(Buffer.from(bytes.buffer, bytes.byteOffset + at, start - at), Buffer.from(`[${TOKEN_JSON},${r}]`))
      at = t[r * 4 + 1]
    }
    pieces.push(Buffer.from(bytes.buffer, bytes.byteOffset + at, len - at))
    return { text: Buffer.concat(pieces).toString('utf8'), rows }
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
