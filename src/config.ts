/**
 * The service's configuration: the only reader of process.env. Every variable has a safe
 * default; a value that is not a valid number for its variable stops start-up with a message.
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import { BUFFER_POOL_BYTES } from './tensor/buffers.js'

export interface Config {
  port: number
  host: string
  logLevel: string
  /** Worker threads in the pool. */
  workers: number
  /** Tasks that may wait for a worker before new work is refused with 503. */
  maxQueue: number
  /** Longest one computation may run in its worker before it is stopped (504). */
  taskTimeoutMs: number
  /** Largest request body in bytes (413). */
  bodyLimitBytes: number
  /** Largest element count of any one tensor: operand, result or intermediate (413). */
  maxElements: number
  /** Largest work of one request in floating-point operations, 2 x multiply-adds (413). */
  maxFlops: number
  /** Largest JSON reply in bytes, counted from the result shapes before computing (413; 0: no limit). */
  maxJsonReplyBytes: number
  /** Most nodes of one graph (POST /v1/graph; 413). */
  maxGraphNodes: number
  /** Replies of this many bytes or more are compressed when the client accepts it (0: never). */
  compressMinBytes: number
  /** How long a drain (SIGTERM/SIGINT) may take before the process exits anyway (default: TASK_TIMEOUT_MS's default + 5 s). */
  shutdownGraceMs: number
  /** Shed new work with 503 while the main thread's event-loop delay is above this (0: off). */
  maxEventLoopDelayMs: number
  /** Shed new work with 503 while the process's resident memory is above this (0: off). */
  maxRssBytes: number
  /** V8 heap limit of each worker thread, in MiB (typed arrays live outside it and are bounded by MAX_ELEMENTS). */
  workerHeapMb: number
  /** Work (2 x multiply-adds) up to which a computation runs inline on the main thread (0: never). */
  inlineMaxFlops: number
  /** Work from which one matmul also gets the threads of idle workers (0: never). */
  splitMinFlops: number
  /** Bodies of this many bytes or more are parsed, validated and decoded in a worker, not on the main thread (0: never). */
  workerParseMinBytes: number
  /** Bytes of recycled buffers each thread (main and every worker) may keep for later requests (0: none). */
  bufferPoolBytes: number
  /** API keys from API_KEYS (empty: none; with none here nor in apiKeysFile, no key is needed). */
  apiKeys: string[]
  /** A file of API keys, one a line, re-read on SIGHUP ('': none). */
  apiKeysFile: string
  /** Whether GET /metrics needs an API key too. */
  metricsRequireKey: boolean
  /** Operation requests per window per API key, or per client address without keys (0: no limit). */
  rateLimitMax: number
  /** Redis for the rate-limit counts, shared by every replica ('': each process counts alone). */
  rateLimitRedisUrl: string
  /** The rate limit's window in milliseconds. */
  rateLimitWindowMs: number
  /** Longest a client may take to send a request's headers (408 and the connection closed). */
  headersTimeoutMs: number
  /** Longest a client may take to send a whole request, headers and body (408 and the connection closed). */
  requestTimeoutMs: number
  /** Longest an idle keep-alive connection stays open between requests. */
  keepAliveTimeoutMs: number
  /** Open connections at most; beyond it new ones are closed at once (0: no cap). */
  maxConnections: number
  /**
   * Which peers are trusted proxies (Fastify's trustProxy): false (none, the default), true (any),
   * a hop count, or addresses, CIDR ranges and proxy-addr's names (loopback, linklocal, uniquelocal).
   * From a trusted peer the client address (rate limits, logs) comes from X-Forwarded-For.
   */
  trustProxy: boolean | number | string[]
  /** Origins allowed by CORS: ['*'] for any, [] for CORS off. */
  corsOrigins: string[]
  /** The worker module (tests only; not read from the environment). */
  workerFile?: string
}

/**
 * Below this much work a worker's round trip costs more than computing on the main thread
 * (measured by bench/crossover.ts; see bench/README.md).
 */
export const INLINE_MAX_FLOPS = 200_000
/** From this much work, one matmul is shared among idle workers (bench/crossover.ts). */
export const SPLIT_MIN_FLOPS = 20_000_000

/**
 * From this body size, numeric bodies are parsed in a worker rather than on the main thread. Not
 * tuned finely: handing the body over was measured faster at 64x64 (162 KB: 237 -> 276 req/s with
 * JSON.parse; bench/README.md), and it is set above the 16 KB from which the main thread itself
 * uses the WebAssembly row scanner.
 */
export const WORKER_PARSE_MIN_BYTES = 32 * 1024

/** Replies from this size are compressed when the client accepts it: below it, the saving does not pay for the CPU. */
export const COMPRESS_MIN_BYTES = 1024

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export function defaultConfig (): Config {
  const workers = Math.max(1, availableParallelism())
  return {
    port: 3000,
    host: '127.0.0.1',
    logLevel: 'info',
    workers,
    maxQueue: 64,
    taskTimeoutMs: 30000,
    bodyLimitBytes: 64 * 1024 * 1024,
    maxElements: 16777216,
    maxFlops: 2e11,
    maxJsonReplyBytes: 64 * 1024 * 1024,
    maxGraphNodes: 64,
    compressMinBytes: COMPRESS_MIN_BYTES,
    shutdownGraceMs: 35000,
    maxEventLoopDelayMs: 0,
    maxRssBytes: 0,
    workerHeapMb: 512,
    inlineMaxFlops: INLINE_MAX_FLOPS,
    splitMinFlops: SPLIT_MIN_FLOPS,
    workerParseMinBytes: WORKER_PARSE_MIN_BYTES,
    bufferPoolBytes: BUFFER_POOL_BYTES,
    apiKeys: [],
    apiKeysFile: '',
    metricsRequireKey: false,
    rateLimitMax: 0,
    rateLimitWindowMs: 60000,
    rateLimitRedisUrl: '',
    headersTimeoutMs: 10000,
    requestTimeoutMs: 120000,
    keepAliveTimeoutMs: 72000,
    maxConnections: 1024,
    trustProxy: false,
    corsOrigins: []
  }
}

interface NumberVar { key: keyof Config, name: string, min: number, max: number, integer: boolean }

const NUMBER_VARS: NumberVar[] = [
  { key: 'port', name: 'PORT', min: 0, max: 65535, integer: true },
  { key: 'workers', name: 'WORKERS', min: 1, max: 256, integer: true },
  { key: 'maxQueue', name: 'MAX_QUEUE', min: 0, max: 1e6, integer: true },
  { key: 'taskTimeoutMs', name: 'TASK_TIMEOUT_MS', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'bodyLimitBytes', name: 'BODY_LIMIT_BYTES', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'maxElements', name: 'MAX_ELEMENTS', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'maxFlops', name: 'MAX_FLOPS', min: 1, max: 1e18, integer: false },
  { key: 'maxJsonReplyBytes', name: 'MAX_JSON_REPLY_BYTES', min: 0, max: 2 ** 31 - 1, integer: true },
  { key: 'maxGraphNodes', name: 'MAX_GRAPH_NODES', min: 1, max: 10000, integer: true },
  { key: 'compressMinBytes', name: 'COMPRESS_MIN_BYTES', min: 0, max: 2 ** 31 - 1, integer: true },
  { key: 'shutdownGraceMs', name: 'SHUTDOWN_GRACE_MS', min: 0, max: 2 ** 31 - 1, integer: true },
  { key: 'maxEventLoopDelayMs', name: 'MAX_EVENT_LOOP_DELAY_MS', min: 0, max: 2 ** 31 - 1, integer: true },
  { key: 'maxRssBytes', name: 'MAX_RSS_BYTES', min: 0, max: 2 ** 53 - 1, integer: true },
  { key: 'workerHeapMb', name: 'WORKER_HEAP_MB', min: 16, max: 65536, integer: true },
  { key: 'inlineMaxFlops', name: 'INLINE_MAX_FLOPS', min: 0, max: 1e12, integer: false },
  { key: 'splitMinFlops', name: 'SPLIT_MIN_FLOPS', min: 0, max: 1e18, integer: false },
  { key: 'workerParseMinBytes', name: 'WORKER_PARSE_MIN_BYTES', min: 0, max: 2 ** 31 - 1, integer: true },
  { key: 'bufferPoolBytes', name: 'BUFFER_POOL_BYTES', min: 0, max: 2 ** 40, integer: true },
  { key: 'rateLimitMax', name: 'RATE_LIMIT_MAX', min: 0, max: 1e9, integer: true },
  { key: 'rateLimitWindowMs', name: 'RATE_LIMIT_WINDOW_MS', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'headersTimeoutMs', name: 'HEADERS_TIMEOUT_MS', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'requestTimeoutMs', name: 'REQUEST_TIMEOUT_MS', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'keepAliveTimeoutMs', name: 'KEEP_ALIVE_TIMEOUT_MS', min: 1, max: 2 ** 31 - 1, integer: true },
  { key: 'maxConnections', name: 'MAX_CONNECTIONS', min: 0, max: 1e6, integer: true }
]

/**
 * What an API key may be: the characters of an RFC 6750 bearer token (b64token), so that the same
 * key works as `Authorization: Bearer <key>` and as `x-api-key: <key>`, at most 512 of them.
 */
const API_KEY = /^[A-Za-z0-9._~+/-]+=*$/
const API_KEY_MAX_LENGTH = 512

function checkApiKey (key: string, source: string, where: string): void {
  if (key.length > API_KEY_MAX_LENGTH || !API_KEY.test(key)) {
    // (the key itself is never quoted: it may be a real one with a typo)
    throw new Error(`${source} is not valid: ${where} is not an API key (1 to ${API_KEY_MAX_LENGTH} of A-Z a-z 0-9 - . _ ~ + /, then any '=')`)
  }
}

const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal']

/**
 * TRUST_PROXY: `true`, `false`, a hop count, or a comma-separated list of addresses, CIDR ranges
 * (`10.0.0.0/8`) and the names loopback, linklocal and uniquelocal. Throws naming the variable.
 */
export function parseTrustProxy (raw: string): boolean | number | string[] {
  const value = raw.trim()
  if (value === 'true') return true
  if (value === 'false') return false
  if (/^[0-9]+$/.test(value)) {
    const hops = Number(value)
    if (hops >= 1 && hops <= 64) return hops
  }
  const entries = value.split(',').map(e => e.trim())
  for (const entry of entries) {
    const [address, bits, ...more] = entry.split('/')
    const family = isIP(address)
    const max = family === 4 ? 32 : 128
    const okBits = bits === undefined || (/^[0-9]{1,3}$/.test(bits) && Number(bits) <= max)
    if (!(PROXY_NAMES.includes(entry) || (family !== 0 && okBits && more.length === 0))) {
      throw new Error(`TRUST_PROXY=${JSON.stringify(raw)} is not valid: ${JSON.stringify(entry)} is not true, false, a hop count from 1 to 64, an address, a CIDR range such as 10.0.0.0/8, or one of ${PROXY_NAMES.join(', ')}`)
    }
  }
  return entries
}

/** The API keys of a comma-separated list (API_KEYS); throws naming the variable on a malformed key. */
export function parseApiKeys (raw: string): string[] {
  const keys = raw.split(',').map((k) => k.trim())
  keys.forEach((key, i) => checkApiKey(key, 'API_KEYS', `entry ${i + 1}`))
  return keys
}

/**
 * The API keys of a key file (API_KEYS_FILE): one a line; blank lines and lines starting with `#`
 * are skipped. Throws naming the variable when the file cannot be read, holds a malformed key, or
 * holds none (an empty file must not turn authentication off).
 */
export function readApiKeysFile (path: string): string[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`API_KEYS_FILE=${JSON.stringify(path)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const keys: string[] = []
  text.split(/\r?\n/).forEach((line, i) => {
    const key = line.trim()
    if (key === '' || key.startsWith('#')) return
    checkApiKey(key, `API_KEYS_FILE=${JSON.stringify(path)}`, `line ${i + 1}`)
    keys.push(key)
  })
  if (keys.length === 0) throw new Error(`API_KEYS_FILE=${JSON.stringify(path)} holds no API key`)
  return keys
}

/** The origins of CORS_ORIGINS: `*`, or a comma-separated list of origins such as https://app.example.com. */
export function parseCorsOrigins (raw: string): string[] {
  const origins = raw.split(',').map((o) => o.trim())
  if (origins.length === 1 && origins[0] === '*') return origins
  for (const origin of origins) {
    let parsed: URL | undefined
    try {
      parsed = new URL(origin)
    } catch {}
    if (parsed === undefined || parsed.origin !== origin || !/^https?:$/.test(parsed.protocol)) {
      throw new Error(`CORS_ORIGINS=${JSON.stringify(raw)} is not valid: ${JSON.stringify(origin)} is not an origin such as https://app.example.com (scheme, host and port only, no trailing slash), and * stands alone`)
    }
  }
  return origins
}

/** Reads the configuration from the environment; throws on a malformed value. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const config = defaultConfig()
  const out = config as unknown as Record<string, unknown>
  for (const v of NUMBER_VARS) {
    const raw = env[v.name]
    if (raw === undefined || raw.trim() === '') continue
    const n = Number(raw)
    if (!Number.isFinite(n) || (v.integer && !Number.isInteger(n)) || n < v.min || n > v.max) {
      throw new Error(`${v.name}=${JSON.stringify(raw)} is not valid: expected ${v.integer ? 'an integer' : 'a number'} from ${v.min} to ${v.max}`)
    }
    out[v.key] = n
  }
  if (env.HOST !== undefined && env.HOST.trim() !== '') config.host = env.HOST.trim()
  if (env.LOG_LEVEL !== undefined && env.LOG_LEVEL.trim() !== '') {
    const level = env.LOG_LEVEL.trim()
    if (!LOG_LEVELS.includes(level)) throw new Error(`LOG_LEVEL=${JSON.stringify(level)} is not one of ${LOG_LEVELS.join(', ')}`)
    config.logLevel = level
  }
  if (env.API_KEYS !== undefined && env.API_KEYS.trim() !== '') config.apiKeys = parseApiKeys(env.API_KEYS)
  if (env.API_KEYS_FILE !== undefined && env.API_KEYS_FILE.trim() !== '') {
    config.apiKeysFile = env.API_KEYS_FILE.trim()
    readApiKeysFile(config.apiKeysFile) // read now, so that a bad file stops start-up
  }
  if (env.METRICS_REQUIRE_KEY !== undefined && env.METRICS_REQUIRE_KEY.trim() !== '') {
    const value = env.METRICS_REQUIRE_KEY.trim()
    if (value !== 'true' && value !== 'false') throw new Error(`METRICS_REQUIRE_KEY=${JSON.stringify(value)} is not valid: expected true or false`)
    config.metricsRequireKey = value === 'true'
    if (config.metricsRequireKey && config.apiKeys.length === 0 && config.apiKeysFile === '') {
      throw new Error('METRICS_REQUIRE_KEY=true needs API_KEYS or API_KEYS_FILE: there is no key to require')
    }
  }
  if (env.CORS_ORIGINS !== undefined && env.CORS_ORIGINS.trim() !== '') config.corsOrigins = parseCorsOrigins(env.CORS_ORIGINS)
  if (env.RATE_LIMIT_REDIS_URL !== undefined && env.RATE_LIMIT_REDIS_URL.trim() !== '') {
    const url = env.RATE_LIMIT_REDIS_URL.trim()
    if (!/^rediss?:\/\/[^\s]+$/.test(url)) throw new Error('RATE_LIMIT_REDIS_URL is not valid: expected redis://host:port (or rediss:// for TLS)')
    config.rateLimitRedisUrl = url
  }
  if (env.TRUST_PROXY !== undefined && env.TRUST_PROXY.trim() !== '') config.trustProxy = parseTrustProxy(env.TRUST_PROXY)
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    throw new Error(`HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}) must not be longer than REQUEST_TIMEOUT_MS (${config.requestTimeoutMs}): the headers are part of the request`)
  }
  return config
}
