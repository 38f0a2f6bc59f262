/** Starts the compiled service (dist/, `npm run build` first) on a free loopback port for a benchmark. */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** A loopback port that was free a moment ago. */
export async function freePort (): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const { port } = srv.address() as { port: number }
  srv.close()
  return port
}

/** The allocator settings `npm start` gives the service (package.json's start script; the image's ENV has the same). */
export function startTunables (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }
  return /^GLIBC_TUNABLES=(\S+) /.exec(pkg.scripts.start)?.[1] ?? ''
}

/**
 * Spawns `node dist/server.js` as `npm start` does (with its GLIBC_TUNABLES) and the given environment and resolves once /ready answers 200.
 * LOG_LEVEL is `warn` unless `env` sets it; `stdout: 'ignore'` sends the service's stdout (its log) to /dev/null.
 */
export async function startService (
  env: Record<string, string> = {},
  { stdout = 'inherit' }: { stdout?: 'inherit' | 'ignore' } = {}
): Promise<{ base: string, server: ChildProcess }> {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const server = spawn(process.execPath, [...(process.env.SERVE_NODE_ARGS ?? '').split(' ').filter(Boolean), 'dist/server.js'], {
    env: { GLIBC_TUNABLES: startTunables(), ...env, ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: env.LOG_LEVEL ?? 'warn' },
    stdio: ['ignore', stdout, 'inherit']
  })
  for (let i = 0; !(await fetch(`${base}/ready`).then(r => r.ok, () => false)); i++) {
    if (i > 100) throw new Error('the service did not become ready')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return { base, server }
}
