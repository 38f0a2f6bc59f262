/** Shared pieces of the deployment tests: paths, the configuration table (docs/configuration.md), processes, ports. */
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { delimiter, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export const MATMUL_BODY = { a: [[1, 2], [3, 4]], b: [[5, 6], [7, 8]] }
export const MATMUL_RESULT = { shape: [2, 2], dtype: 'float64', data: [[19, 22], [43, 50]] }

export function readRepoFile (path: string): string {
  return readFileSync(join(repoRoot, path), 'utf8')
}

/**
 * The rows of the configuration table (docs/configuration.md, before its first "## " section; the
 * README's "Configuration" section once): variable name -> its default column, unquoted.
 */
export function readmeConfiguration (): Map<string, string> {
  const page = readRepoFile('docs/configuration.md')
  const end = page.indexOf('\n## ')
  const section = page.slice(0, end < 0 ? undefined : end)
  const out = new Map<string, string>()
  for (const line of section.split('\n')) {
    const m = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|([^|]*)\|/.exec(line)
    if (m === null) continue
    const def = m[2].trim()
    const literal = /^`([^`]*)`/.exec(def)
    out.set(m[1], literal !== null ? literal[1] : def)
  }
  if (out.size === 0) throw new Error('docs/configuration.md\'s configuration table has no rows')
  return out
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export interface Proc {
  child: ChildProcess
  /** stdout and stderr so far. */
  output: () => string
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>
}

/** Spawns a process and keeps its output for the failure messages. */
export function startProcess (command: string, args: string[], options: SpawnOptions): Proc {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { output += d.toString() })
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
    child.once('error', (err) => {
      output += `\nspawn error: ${err.message}`
      resolve('spawn-error')
    })
  })
  return { child, output: () => output, exited }
}

/** Runs a command to its end; rejects with its output when it fails. */
export async function run (command: string, args: string[], options: SpawnOptions): Promise<string> {
  const p = startProcess(command, args, options)
  const code = await p.exited
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${code}:\n${p.output().slice(-4000)}`)
  return p.output()
}

/** Polls `url` until it answers `status` (default 200), the process dies, or `timeoutMs` passes. */
export async function waitForHttp (url: string, { status = 200, timeoutMs = 30_000, proc }: { status?: number, timeoutMs?: number, proc?: Proc } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let dead = false
  proc?.exited.then(() => { dead = true }, () => {})
  let last = ''
  while (Date.now() < deadline) {
    if (dead) throw new Error(`the process exited before ${url} answered:\n${proc?.output().slice(-4000) ?? ''}`)
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
      await res.arrayBuffer()
      if (res.status === status) return
      last = `status ${res.status}`
    } catch (err) {
      last = (err as Error).message
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})\n${proc?.output().slice(-4000) ?? ''}`)
}

/** Sends a signal to a process we started, if it still runs, and waits (bounded) for its exit. */
export async function stopProcess (proc: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | string | undefined> {
  if (proc === undefined) return undefined
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return await proc.exited
  proc.child.kill(signal)
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs)
  try {
    return await proc.exited
  } finally {
    clearTimeout(timer)
  }
}

/** The path of an executable found on PATH (or in the sbin directories), or null. */
export function which (name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs) {
    if (dir === '') continue
    const path = join(dir, name)
    if (existsSync(path)) return path
  }
  return null
}

/** Whether a test that needs the program at `path` should be skipped: only when it is absent and not in CI. */
export function skipWithout (path: string | null): boolean {
  return (path === null || !existsSync(path)) && (process.env.CI === undefined || process.env.CI === '')
}

/** The environment a child process gets: no npm_* or vitest variables, nothing of this test run. */
export function cleanEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const key of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ']) {
    const v = process.env[key]
    if (v !== undefined) env[key] = v
  }
  return { ...env, ...extra }
}

/** Whether dist/ holds a compiled file, at least as new, for every source file. */
export function distIsFresh (): boolean {
  const src = join(repoRoot, 'src')
  for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue
    const file = join(entry.parentPath, entry.name)
    const out = join(repoRoot, 'dist', relative(src, file).replace(/\.ts$/, '.js'))
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(file).mtimeMs) return false
  }
  return true
}

/** POST /v1/dot to `base` from the local address `from` (any of 127.0.0.0/8), with extra headers; the status. */
export async function dotFrom (base: string, from: string, headers: Record<string, string> = {}): Promise<number> {
  const body = JSON.stringify({ a: [1, 2], b: [3, 4] })
  return await new Promise((resolve, reject) => {
    const req = request(`${base}/v1/dot`, {
      method: 'POST',
      localAddress: from,
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers }
    }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(body)
  })
}
